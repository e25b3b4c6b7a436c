// feed-read.js DIR
//
// Opens the existing hypercore 6 feed in DIR (createIfMissing: false, so a
// folder without a stored key is an error, not a fresh feed) and prints
// {"key","discoveryKey","length","byteLength","writable":bool,
//  "blocks":[hex|null...],            // feed.get(i,{wait:false}); null when !feed.has(i)
//  "audit":{"valid":n,"invalid":n},    // feed.audit(), run after reading the blocks
//  "signatureValid":bool|null,         // verify(length-1, signature(length-1)); null when empty
//  "signatureError":string|null}       // why signatureValid is false (extra, informative)
'use strict'
const hypercore = require('hypercore')
const { parseArgs, hex, step, closeFeeds, main } = require('./lib/common')

main(async function () {
  const { positional } = parseArgs(process.argv.slice(2), {})
  const dir = positional[0]
  if (!dir || positional.length !== 1) throw new Error('usage: feed-read.js DIR')

  const feed = hypercore(dir, { createIfMissing: false }) // never invent a new feed
  feed.on('error', function () {})
  await step('ready', function (cb) { feed._ready(cb) })

  const length = feed.length
  const blocks = []
  for (let i = 0; i < length; i++) {
    if (!feed.has(i)) { blocks.push(null); continue }
    const block = await step('get ' + i, function (cb) { feed.get(i, { wait: false }, cb) })
    blocks.push(hex(block))
  }

  const audit = await step('audit', function (cb) { feed.audit(cb) })

  let signatureValid = null
  let signatureError = null
  if (length > 0) {
    try {
      const sig = await step('signature', function (cb) { feed.signature(length - 1, cb) })
      await step('verify', function (cb) { feed.verify(length - 1, sig.signature, cb) })
      signatureValid = true
    } catch (err) {
      if (/^timeout/.test(err.message)) throw err
      signatureValid = false
      signatureError = err.message
    }
  }

  const result = {
    key: hex(feed.key),
    discoveryKey: hex(feed.discoveryKey),
    length: length,
    byteLength: feed.byteLength,
    writable: feed.writable,
    blocks: blocks,
    audit: { valid: audit.valid, invalid: audit.invalid },
    signatureValid: signatureValid,
    signatureError: signatureError
  }
  await closeFeeds([feed])
  return result
})
