// db-serve.js DIR [--key DBKEYHEX] [--live]
//
// Opens (or creates) the hyperdb in DIR and replicates with every TCP
// connection on 127.0.0.1 (a free port). Prints one line
// {"port":n,"key":hex,"localKey":hex} once listening, then serves until its
// stdin closes; then prints {"done":true,"connections":n,"errors":[...]}.
'use strict'
const net = require('net')
const hyperdb = require('hyperdb')
const { parseArgs, hex, unhex, step, main } = require('./lib/common')
const { closeDb, loadHeads } = require('./lib/db')

main(async function () {
  const { positional, flags } = parseArgs(process.argv.slice(2), { key: 'string', live: 'bool' })
  if (positional.length !== 1) throw new Error('usage: db-serve.js DIR [--key DBKEYHEX] [--live]')
  const opts = { valueEncoding: 'utf-8' }
  const db = flags.key ? hyperdb(positional[0], unhex(flags.key, '--key'), opts) : hyperdb(positional[0], opts)
  await step('ready', function (cb) { db.ready(cb) })
  await loadHeads(db)
  let connections = 0
  const errors = []
  const server = net.createServer(function (socket) {
    connections++
    const stream = db.replicate({ live: !!flags.live })
    stream.on('error', function (err) { errors.push(String(err.message || err)) })
    socket.on('error', function () {})
    socket.pipe(stream).pipe(socket)
  })
  await step('listen', function (cb) { server.listen(0, '127.0.0.1', cb) })
  process.stdout.write(JSON.stringify({ port: server.address().port, key: hex(db.key), localKey: hex(db.local.key) }) + '\n')
  await new Promise(function (resolve) {
    process.stdin.on('data', function () {})
    process.stdin.on('end', resolve)
    process.stdin.on('close', resolve)
  })
  server.close()
  await closeDb(db)
  return { done: true, connections, errors }
}, { watchdogMs: 300000 })
