// db-dump.js DIR
//
// Opens the hyperdb in DIR (valueEncoding 'binary'), loads all writers
// reachable from the heads, and prints
// {"key","discoveryKey","localKey",
//  "feeds":[{"key":hex,"length":n,"entries":[entry|null...]}...],  // db.feeds order
//  "keys":{"<key>":[hex|null...sorted]},                          // db.list('')
//  "authorized":{"<feedKeyHex>":bool}}                            // db.authorized(key)
// entries are the blocks i >= 1 (block 0 is the header) decoded with
// messages.InflatedEntry: {"seq","key","value":hex|null,"deleted","trie":hex,
// "clock":[n...],"inflate","feeds":[hex...]|null,"contentFeed":hex|null};
// "feeds" is null when the message has no feeds and is not itself inflated
// (inflate !== seq); an entry is null when the block is not stored locally.
'use strict'
const hyperdb = require('hyperdb')
const messages = require('hyperdb/lib/messages')
const { parseArgs, hex, step, main } = require('./lib/common')
const { dbReady, loadHeads, closeDb } = require('./lib/db')

function decodeEntry (seq, buf) {
  const e = messages.InflatedEntry.decode(buf)
  const inflated = e.inflate === seq
  return {
    seq: seq,
    key: e.key,
    value: hex(e.value),
    deleted: !!e.deleted,
    trie: hex(e.trie),
    clock: e.clock,
    inflate: e.inflate,
    feeds: (e.feeds.length || inflated) ? e.feeds.map(function (f) { return hex(f.key) }) : null,
    contentFeed: hex(e.contentFeed)
  }
}

main(async function () {
  const { positional } = parseArgs(process.argv.slice(2), {})
  if (positional.length !== 1) throw new Error('usage: db-dump.js DIR')

  const db = hyperdb(positional[0], { valueEncoding: 'binary' })
  await dbReady(db)
  await loadHeads(db)

  const feeds = []
  for (const feed of db.feeds) {
    const entries = []
    for (let i = 1; i < feed.length; i++) {
      if (!feed.has(i)) { entries.push(null); continue }
      const buf = await step('get ' + i, function (cb) { feed.get(i, { wait: false }, cb) })
      entries.push(decodeEntry(i, buf))
    }
    feeds.push({ key: hex(feed.key), length: feed.length, entries: entries })
  }

  const keys = {}
  // db.list waits for remote data when the db is empty: skip it then.
  const list = db._waitForUpdate() ? [] : await step('list', function (cb) { db.list('', cb) })
  for (const nodes of list) {
    const values = nodes.map(function (n) { return hex(n.value) })
    values.sort(function (a, b) {
      if (a === b) return 0
      if (a === null) return -1
      if (b === null) return 1
      return a < b ? -1 : 1
    })
    keys[nodes[0].key] = values
  }

  const authorized = {}
  for (const feed of db.feeds) {
    authorized[hex(feed.key)] = await step('authorized', function (cb) { db.authorized(feed.key, cb) })
  }

  const result = {
    key: hex(db.key),
    discoveryKey: hex(db.discoveryKey),
    localKey: hex(db.local.key),
    feeds: feeds,
    keys: keys,
    authorized: authorized
  }
  await closeDb(db)
  return result
})
