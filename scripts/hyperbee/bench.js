// node bench.js N
//
// The workload of crates/hyperdb/examples/bench.rs on Hyperbee (a B-tree on
// one hypercore 11 log, what a JavaScript user picks today): N puts one at
// a time, N puts in batches of 1,000, N gets of random keys on a reopened
// database, listing every key and walking the history. Prints
// {"n","put","batch","get","list","history","rss_mb"} in operations per
// second; rss_mb is the process's peak resident memory.
'use strict'
const fs = require('fs')
const os = require('os')
const path = require('path')
const Hypercore = require('hypercore')
const Hyperbee = require('hyperbee')

async function open (dir) {
  const bee = new Hyperbee(new Hypercore(dir), { keyEncoding: 'utf-8', valueEncoding: 'utf-8' })
  await bee.ready()
  return bee
}

function seconds (start) {
  return Number(process.hrtime.bigint() - start) / 1e9
}

async function main () {
  const n = parseInt(process.argv[2] || '20000', 10)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hyperbee-bench-'))
  const key = (i) => 'key/' + (i % 100) + '/' + i

  let db = await open(path.join(dir, 'put'))
  let start = process.hrtime.bigint()
  for (let i = 0; i < n; i++) await db.put(key(i), 'value ' + i)
  const put = n / seconds(start)
  // Each operation is timed with only its own database open (as bench.rs).
  await db.close()

  const batched = await open(path.join(dir, 'batch'))
  start = process.hrtime.bigint()
  for (let i = 0; i < n; i += 1000) {
    const b = batched.batch()
    for (let j = i; j < Math.min(n, i + 1000); j++) await b.put(key(j), 'value ' + j)
    await b.flush()
  }
  const batch = n / seconds(start)
  await batched.close()

  db = await open(path.join(dir, 'put'))
  start = process.hrtime.bigint()
  let x = 12345
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) % 2147483648
    const node = await db.get(key(x % n))
    if (!node) throw new Error('missing ' + key(x % n))
  }
  const get = n / seconds(start)

  start = process.hrtime.bigint()
  let listed = 0
  for await (const _ of db.createReadStream()) listed++ // eslint-disable-line no-unused-vars
  if (listed !== n) throw new Error('listed ' + listed + ' keys, expected ' + n)
  const list = n / seconds(start)

  start = process.hrtime.bigint()
  let walked = 0
  for await (const _ of db.createHistoryStream()) walked++ // eslint-disable-line no-unused-vars
  if (walked !== n) throw new Error('walked ' + walked + ' entries, expected ' + n)
  const history = n / seconds(start)

  await db.close()
  fs.rmSync(dir, { recursive: true, force: true })
  const r = Math.round
  console.log(JSON.stringify({ n, put: r(put), batch: r(batch), get: r(get), list: r(list), history: r(history), rss_mb: r(process.resourceUsage().maxRSS / 1024) }))
}

main().catch((err) => { console.error(err); process.exit(1) })
