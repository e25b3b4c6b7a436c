// bench-replicate.js N
//
// Replication throughput of the reference: a database of N entries (written
// in batches of 1,000) replicated one-shot to an empty replica over loopback
// TCP. Prints {"n","entries_per_second"}.
'use strict'
const fs = require('fs')
const os = require('os')
const net = require('net')
const path = require('path')
const hyperdb = require('hyperdb')
const { step, main } = require('./lib/common')
const { closeDb } = require('./lib/db')

main(async function () {
  const n = parseInt(process.argv[2] || '100000', 10)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hyperdb-replicate-bench-js-'))
  const long = 3600000
  const owner = hyperdb(path.join(dir, 'owner'), { valueEncoding: 'utf-8' })
  await step('ready', function (cb) { owner.ready(cb) })
  for (let i = 0; i < n; i += 1000) {
    const ops = []
    for (let j = i; j < Math.min(n, i + 1000); j++) ops.push({ type: 'put', key: 'key/' + (j % 100) + '/' + j, value: 'value ' + j })
    await step('batch', function (cb) { owner.batch(ops, cb) }, long)
  }
  const replica = hyperdb(path.join(dir, 'replica'), owner.key, { valueEncoding: 'utf-8' })
  await step('ready', function (cb) { replica.ready(cb) })
  const server = net.createServer(function (socket) {
    socket.pipe(owner.replicate()).pipe(socket)
  })
  await step('listen', function (cb) { server.listen(0, '127.0.0.1', cb) })
  const start = process.hrtime.bigint()
  await step('replicate', function (cb) {
    const socket = net.connect(server.address().port, '127.0.0.1')
    const stream = replica.replicate()
    const source = replica.source
    function check () {
      if (source.length === n + 1 && source.downloaded(0, n + 1) === n + 1) cb(null)
    }
    source.on('download', check)
    stream.on('error', cb)
    socket.pipe(stream).pipe(socket)
  }, long)
  const seconds = Number(process.hrtime.bigint() - start) / 1e9
  server.close()
  await closeDb(owner)
  await closeDb(replica)
  fs.rmSync(dir, { recursive: true, force: true })
  return { n, entries_per_second: Math.round(n / seconds) }
}, { watchdogMs: 3600000 })
