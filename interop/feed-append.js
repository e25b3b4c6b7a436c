// feed-append.js DIR [--key HEX --secret-key HEX] --batches JSON
//
// Creates (or reopens) a hypercore 6 feed in DIR (directory storage) and
// appends to it. --batches is a JSON array of arrays of hex strings; each
// inner array is ONE feed.append(arrayOfBuffers) call, done sequentially.
// With --key/--secret-key the feed uses that key pair.
//
// Prints {"key","secretKey","discoveryKey","length","byteLength"}.
'use strict'
const hypercore = require('hypercore')
const { parseArgs, hex, unhex, parseJson, step, closeFeeds, main } = require('./lib/common')

main(async function () {
  const { positional, flags } = parseArgs(process.argv.slice(2), {
    key: 'string', 'secret-key': 'string', batches: 'string'
  })
  const dir = positional[0]
  if (!dir || positional.length !== 1) throw new Error('usage: feed-append.js DIR [--key HEX --secret-key HEX] --batches JSON')
  const batches = parseJson(flags.batches, '--batches')
  if (!Array.isArray(batches)) throw new Error('--batches must be an array of arrays')

  let feed
  if (flags.key) {
    const opts = {}
    if (flags['secret-key']) opts.secretKey = unhex(flags['secret-key'], '--secret-key')
    feed = hypercore(dir, unhex(flags.key, '--key'), opts)
  } else {
    if (flags['secret-key']) throw new Error('--secret-key needs --key')
    feed = hypercore(dir)
  }
  feed.on('error', function () {}) // open errors are reported through ready/append
  await step('ready', function (cb) { feed._ready(cb) })

  for (const batch of batches) {
    if (!Array.isArray(batch)) throw new Error('each batch must be an array of hex strings')
    const bufs = batch.map(function (h) { return unhex(h, 'block') })
    await step('append', function (cb) { feed.append(bufs, cb) })
  }

  const result = {
    key: hex(feed.key),
    secretKey: hex(feed.secretKey),
    discoveryKey: hex(feed.discoveryKey),
    length: feed.length,
    byteLength: feed.byteLength
  }
  await closeFeeds([feed])
  return result
})
