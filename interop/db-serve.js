// db-serve.js DIR [--key DBKEYHEX] [--live] [--authorize HEX] [--content]
//
// Opens (or creates) the hyperdb in DIR (authorizing a writer first if
// asked) and replicates with every TCP connection on 127.0.0.1 (a free
// port). Prints one line {"port":n,"key":hex,"localKey":hex} once listening.
// Then reads commands, one JSON object a line, from stdin, answering each
// with one line: {"put":{"key":k,"value":v}} -> {"ok":true};
// {"get":k} -> {"values":[...]}. When stdin closes it prints
// {"done":true,"connections":n,"errors":[...]} and exits.
'use strict'
const net = require('net')
const hyperdb = require('hyperdb')
const { parseArgs, hex, unhex, step, main } = require('./lib/common')
const { closeDb, loadHeads } = require('./lib/db')

main(async function () {
  const { positional, flags } = parseArgs(process.argv.slice(2), { key: 'string', live: 'bool', authorize: 'string', content: 'bool' })
  if (positional.length !== 1) throw new Error('usage: db-serve.js DIR [--key DBKEYHEX] [--live]')
  const opts = { valueEncoding: 'utf-8', contentFeed: !!flags.content }
  const db = flags.key ? hyperdb(positional[0], unhex(flags.key, '--key'), opts) : hyperdb(positional[0], opts)
  await step('ready', function (cb) { db.ready(cb) })
  await loadHeads(db)
  if (flags.authorize) {
    await step('authorize', function (cb) { db.authorize(unhex(flags.authorize, '--authorize'), cb) })
  }
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
    let pending = ''
    let queue = Promise.resolve()
    process.stdin.on('data', function (chunk) {
      pending += chunk
      let i
      while ((i = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, i).trim()
        pending = pending.slice(i + 1)
        if (line) queue = queue.then(function () { return command(db, JSON.parse(line)) })
      }
    })
    process.stdin.on('end', function () { queue.then(resolve) })
  })
  server.close()
  await closeDb(db)
  return { done: true, connections, errors }
}, { watchdogMs: 300000 })

async function command (db, cmd) {
  if (cmd.put) {
    await step('put', function (cb) { db.put(cmd.put.key, cmd.put.value, cb) })
    process.stdout.write(JSON.stringify({ ok: true }) + '\n')
  } else if (cmd.get !== undefined) {
    const nodes = await step('get', function (cb) { db.get(cmd.get, { update: false }, cb) })
    const values = (nodes || []).filter(function (n) { return !n.deleted }).map(function (n) { return n.value })
    process.stdout.write(JSON.stringify({ values }) + '\n')
  } else {
    throw new Error('unknown command ' + JSON.stringify(cmd))
  }
}
