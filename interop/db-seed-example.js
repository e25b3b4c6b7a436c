// db-seed-example.js DIR
//
// Runs hyperdb's two-writer seed example with directory storage:
//   db1 = hyperdb(DIR/db1); put example/first, example/second ('db1 was here')
//   db2 = hyperdb(DIR/db2, db1.key); put example/third, example/second ('db2 was here')
//   db1.authorize(db2.local.key)
//   s1 = db1.replicate(); s2 = db2.replicate(); s1.pipe(s2).pipe(s1)
//   and waits until both streams have ended (10 s timeout).
// Prints {"db1":{"key":hex,"localKey":hex},"db2":{"key":hex,"localKey":hex}}.
'use strict'
const path = require('path')
const hyperdb = require('hyperdb')
const { parseArgs, hex, step, ready, closeFeeds, main } = require('./lib/common')

main(async function () {
  const { positional } = parseArgs(process.argv.slice(2), {})
  if (positional.length !== 1) throw new Error('usage: db-seed-example.js DIR')
  const dir = positional[0]

  const db1 = hyperdb(path.join(dir, 'db1'), { valueEncoding: 'utf-8' })
  await step('db1 ready', function (cb) { db1.ready(cb) })
  await step('db1 put first', function (cb) { db1.put('example/first', 'db1 was here', cb) })
  await step('db1 put second', function (cb) { db1.put('example/second', 'db1 was here', cb) })

  const db2 = hyperdb(path.join(dir, 'db2'), db1.key, { valueEncoding: 'utf-8' })
  await step('db2 ready', function (cb) { db2.ready(cb) })
  await step('db2 put third', function (cb) { db2.put('example/third', 'db2 was here', cb) })
  await step('db2 put second', function (cb) { db2.put('example/second', 'db2 was here', cb) })

  await step('db1 authorize db2', function (cb) { db1.authorize(db2.local.key, cb) })

  await step('replicate', function (cb) {
    const s1 = db1.replicate()
    const s2 = db2.replicate()
    let ended = 0
    let failed = false
    function onend () { if (++ended === 2) cb(null) }
    function onerror (err) { if (!failed) { failed = true; cb(err) } }
    s1.on('end', onend)
    s2.on('end', onend)
    s1.on('error', onerror)
    s2.on('error', onerror)
    s1.pipe(s2).pipe(s1)
  })

  const result = {
    db1: { key: hex(db1.key), localKey: hex(db1.local.key) },
    db2: { key: hex(db2.key), localKey: hex(db2.local.key) }
  }
  await closeFeeds(db1.feeds.concat(db2.feeds))
  return result
})
