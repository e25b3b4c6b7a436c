// feed-proof.js DIR INDEX [--digest N] [--hash]
//
// Opens the existing hypercore 6 feed in DIR (createIfMissing: false) and calls
// feed.proof(INDEX, {digest: N, hash: bool}, cb) (digest defaults to 0).
// Prints {"nodes":[{"index":n,"hash":hex,"size":n}...],"signature":hex|null}.
'use strict'
const hypercore = require('hypercore')
const { parseArgs, hex, step, closeFeeds, main } = require('./lib/common')

function parseUint (s, what) {
  if (!/^[0-9]+$/.test(s || '')) throw new Error('invalid ' + what + ': ' + s)
  return Number(s)
}

main(async function () {
  const { positional, flags } = parseArgs(process.argv.slice(2), { digest: 'string', hash: 'bool' })
  if (positional.length !== 2) throw new Error('usage: feed-proof.js DIR INDEX [--digest N] [--hash]')
  const dir = positional[0]
  const index = parseUint(positional[1], 'INDEX')
  const opts = {
    digest: flags.digest !== undefined ? parseUint(flags.digest, '--digest') : 0,
    hash: !!flags.hash
  }

  const feed = hypercore(dir, { createIfMissing: false }) // never invent a new feed
  feed.on('error', function () {})
  await step('ready', function (cb) { feed._ready(cb) })

  const proof = await step('proof', function (cb) { feed.proof(index, opts, cb) })
  const result = {
    nodes: proof.nodes.map(function (n) {
      return { index: n.index, hash: hex(n.hash), size: n.size }
    }),
    signature: hex(proof.signature)
  }
  await closeFeeds([feed])
  return result
})
