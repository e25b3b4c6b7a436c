// feed-put.js DIR KEYHEX --blocks JSON
//
// Opens (creating if needed) a read-only clone hypercore(DIR, key) and, in
// order, calls feed.put(index, value, {nodes, signature}, cb) for each element
// of --blocks: [{"index":n,"value":hex|null,
//               "nodes":[{"index":n,"hash":hex,"size":n}...],"signature":hex|null}].
// Stops at the first error.
// Prints {"results":[{"ok":true}|{"ok":false,"error":msg}...],"length":n,
//         "blocks":[hex|null...]}  (blocks: get {wait:false} for i < length).
'use strict'
const hypercore = require('hypercore')
const { parseArgs, hex, unhex, parseJson, step, closeFeeds, main } = require('./lib/common')

main(async function () {
  const { positional, flags } = parseArgs(process.argv.slice(2), { blocks: 'string' })
  if (positional.length !== 2) throw new Error('usage: feed-put.js DIR KEYHEX --blocks JSON')
  const dir = positional[0]
  const key = unhex(positional[1], 'KEYHEX')
  if (key.length !== 32) throw new Error('KEYHEX must be 32 bytes')
  const puts = parseJson(flags.blocks, '--blocks')
  if (!Array.isArray(puts)) throw new Error('--blocks must be an array')

  const feed = hypercore(dir, key)
  feed.on('error', function () {})
  await step('ready', function (cb) { feed._ready(cb) })

  const results = []
  for (const p of puts) {
    const proof = {
      nodes: (p.nodes || []).map(function (n) {
        return { index: n.index, hash: unhex(n.hash, 'node hash'), size: n.size }
      }),
      signature: p.signature === null || p.signature === undefined ? null : unhex(p.signature, 'signature')
    }
    const value = p.value === null || p.value === undefined ? null : unhex(p.value, 'value')
    try {
      await step('put ' + p.index, function (cb) { feed.put(p.index, value, proof, cb) })
      results.push({ ok: true })
    } catch (err) {
      if (/^timeout/.test(err.message)) throw err
      results.push({ ok: false, error: err.message })
      break
    }
  }

  const length = feed.length
  const blocks = []
  for (let i = 0; i < length; i++) {
    if (!feed.has(i)) { blocks.push(null); continue }
    blocks.push(hex(await step('get ' + i, function (cb) { feed.get(i, { wait: false }, cb) })))
  }

  await closeFeeds([feed])
  return { results: results, length: length, blocks: blocks }
})
