// bench-db.js N
//
// Throughput of the reference (hyperdb 3.5.0) on a file-backed database:
// N puts one at a time, N puts in batches of 1,000, N gets of random keys on
// a reopened database, listing every key and walking the history. Prints
// {"n","put","batch","get","list","history"} in operations per second,
// and rss_mb, the process's peak resident memory.
'use strict'
const fs = require('fs')
const os = require('os')
const path = require('path')
const hyperdb = require('hyperdb')
const { step, main } = require('./lib/common')
const { closeDb } = require('./lib/db')

main(async function () {
  const n = parseInt(process.argv[2] || '20000', 10)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hyperdb-bench-js-'))
  const key = function (i) { return 'key/' + (i % 100) + '/' + i }
  const long = 600000

  let db = hyperdb(path.join(dir, 'put'), { valueEncoding: 'utf-8' })
  await step('ready', function (cb) { db.ready(cb) })
  let start = process.hrtime.bigint()
  for (let i = 0; i < n; i++) {
    await step('put', function (cb) { db.put(key(i), 'value ' + i, cb) }, long)
  }
  const put = n / seconds(start)
  // Each operation is timed with only its own database open (as bench.rs).
  await closeDb(db)

  const batched = hyperdb(path.join(dir, 'batch'), { valueEncoding: 'utf-8' })
  await step('ready', function (cb) { batched.ready(cb) })
  // Timed: each batch, not building its operations (as bench.rs).
  let batching = 0
  for (let i = 0; i < n; i += 1000) {
    const ops = []
    for (let j = i; j < Math.min(n, i + 1000); j++) ops.push({ type: 'put', key: key(j), value: 'value ' + j })
    start = process.hrtime.bigint()
    await step('batch', function (cb) { batched.batch(ops, cb) }, long)
    batching += seconds(start)
  }
  const batch = n / batching
  await closeDb(batched)

  db = hyperdb(path.join(dir, 'put'), { valueEncoding: 'utf-8' })
  await step('ready', function (cb) { db.ready(cb) })
  start = process.hrtime.bigint()
  let x = 12345
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) % 2147483648
    const k = key(x % n)
    await step('get', function (cb) { db.get(k, cb) }, long)
  }
  const get = n / seconds(start)

  start = process.hrtime.bigint()
  const all = await step('list', function (cb) { db.list('', cb) }, long)
  if (all.length !== n) throw new Error('listed ' + all.length + ' keys, expected ' + n)
  const list = n / seconds(start)

  start = process.hrtime.bigint()
  const walked = await step('history', function (cb) {
    let count = 0
    db.createHistoryStream().on('data', function () { count++ }).on('end', function () { cb(null, count) }).on('error', cb)
  }, long)
  if (walked !== n) throw new Error('walked ' + walked + ' entries, expected ' + n)
  const history = n / seconds(start)

  await closeDb(db)
  fs.rmSync(dir, { recursive: true, force: true })
  return { n, put: Math.round(put), batch: Math.round(batch), get: Math.round(get), list: Math.round(list), history: Math.round(history), rss_mb: Math.round(process.resourceUsage().maxRSS / 1024) }
})

function seconds (start) {
  return Number(process.hrtime.bigint() - start) / 1e9
}
