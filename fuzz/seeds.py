#!/usr/bin/env python3
"""Writes the seed corpus (corpus/TARGET/seed-*): small valid inputs from
which the fuzzer starts. Feed files come from a feed the CLI makes, so run
it after `cargo build -p hyperdb-cli` (python3 fuzz/seeds.py)."""

import hashlib
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(tag, wire, value):
    key = varint(tag << 3 | wire)
    if wire == 0:
        return key + varint(value)
    return key + varint(len(value)) + value


def frame(channel, kind, body):
    header = varint(channel << 4 | kind)
    return varint(len(header) + len(body)) + header + body


def seed(target, name, data):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "seed-" + name), "wb") as f:
        f.write(data)


def main():
    seed("varint", "300", varint(300))
    seed("varint", "max", varint(2**64 - 1))
    seed("rle", "runs", varint(10 << 2 | 3) + varint(2 << 2) + varint(1 << 1 | 1) + b"\x0f")
    seed("bitfield", "page", b"\xff" * 1024 + b"\x00" * 2560 + b"\xf0" * 3584)
    for i, (kind, size, algo) in enumerate([(0, 3328, b""), (1, 64, b"Ed25519"), (2, 40, b"BLAKE2b")]):
        header = bytes([5, 2, 87, kind, 0]) + size.to_bytes(2, "big") + bytes([len(algo)]) + algo
        seed("sleep_header", str(i), header + b"\x00" * (32 - len(header)))
    key = bytes(range(32))
    seed("version", "two", key + varint(5) + bytes(32) + varint(2**40))
    seed("trie", "two-feeds", b"\x02" + varint(3) + varint(1) + varint(0) + varint(7))
    entry = field(1, 2, b"fruit/apple") + field(2, 2, b"red") + field(4, 2, b"\x01\x02")
    entry += field(5, 0, 3) + field(5, 0, 1) + field(6, 0, 1)
    entry += field(7, 2, field(1, 2, key)) + field(8, 2, bytes(32))
    seed("entry", "inflated", entry)
    # The same entry carrying permission records (field 16): a grant of
    # admin limited to a prefix, and a restriction.
    grant = field(1, 0, 1) + field(2, 2, key) + field(3, 0, 1) + field(4, 2, b"config")
    seed("entry", "grant", entry + field(16, 2, grant))
    restrict = field(1, 0, 3) + field(5, 2, b"config") + field(6, 2, key)
    seed("entry", "restrict", entry + field(16, 2, restrict))
    seed("entry", "header", field(1, 2, b"hyperdb"))
    mdns_query = bytes.fromhex("000000000001000000000000") + b"\x28" + b"07" * 20 + b"\x03dat\x05local\x00" + b"\x00\x10\x00\x01"
    seed("mdns", "query", mdns_query)
    # put a, put /a/b, a batch of two, get a, list a, reopen, version,
    # put ab, checkout the version and walk the history.
    seed("model", "ops", bytes([0, 0x00, 0, 7, 0, 0x11, 1, 9, 2, 1, 0x02, 0, 0, 3, 0x15, 0, 1,
                                3, 0x00, 0, 4, 1, 0x00, 0, 5, 6, 0, 0x08, 0, 4, 7, 0, 0x00, 0]))
    # Block, a block the replica holds first (none past 36), which proof
    # nodes to keep, then the bends.
    seed("verify_block", "zero", b"\x05\xff\xff")
    seed("verify_block", "flip", b"\x11\xff\xff" + b"\x00" * 7 + b"\x01")
    # Block 33 bent, its climb cut short (nodes 64 and 69 dropped), the
    # roots 31 and 72 and the signature kept, root 67 held from block 0:
    # a proof that never ties the block to the roots.
    seed("verify_block", "stray-roots", b"\x21\x00\x0c\x01")

    # A stream: feed, handshake, want, request, have, data.
    dk = hashlib.blake2b(b"hypercore", key=bytes([9] * 32), digest_size=32).digest()
    stream = frame(0, 1, field(1, 2, bytes([3] * 32)) + field(2, 0, 1))
    stream += frame(0, 5, field(1, 0, 0) + field(2, 0, 10))
    stream += frame(0, 7, field(1, 0, 3))
    stream += frame(0, 3, field(1, 0, 0) + field(2, 0, 4))
    stream += frame(0, 9, field(1, 0, 0) + field(2, 2, b"block") + field(3, 2, field(1, 0, 2) + field(2, 2, bytes(32)) + field(3, 0, 5)))
    seed("wire_encrypted", "session", b"\x07" + stream)
    seed("session", "session", b"\x07" + stream)
    seed("wire_plain", "session", b"\x05" + frame(0, 0, field(1, 2, dk)) + stream)

    # A feed's files, from a database the CLI makes.
    cli = os.path.join(ROOT, "target", "debug", "hyperdb")
    if not os.path.exists(cli):
        sys.exit("build the CLI first: cargo build -p hyperdb-cli")
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "db")
        subprocess.run([cli, "init", db], check=True, capture_output=True)
        for i in range(5):
            subprocess.run([cli, "put", db, "k/%d" % i, "v%d" % i], check=True, capture_output=True)
        files = b""
        for name in ["key", "secret_key", "tree", "data", "bitfield", "signatures"]:
            with open(os.path.join(db, "source", name), "rb") as f:
                body = f.read()
            files += len(body).to_bytes(2, "little") + body
        seed("feed_open", "five-entries", files)


main()
