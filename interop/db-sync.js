// db-sync.js DIR PORT [--key DBKEYHEX] [--live] [--put KEY=VALUE] [--expect KEY=VALUE]
//
// Opens (or creates, as a replica of --key) the hyperdb in DIR, connects to
// 127.0.0.1:PORT and replicates. One-shot: waits for the stream to end (or
// for 3 s without traffic). Live: after connecting, puts --put, then waits
// until `get` of the --expect key returns that value (20 s at most), then
// closes. Prints {"key","localKey","ended":bool,"error":string|null}.
'use strict'
const net = require('net')
const hyperdb = require('hyperdb')
const { parseArgs, hex, unhex, step, main } = require('./lib/common')
const { closeDb, loadHeads } = require('./lib/db')

main(async function () {
  const { positional, flags } = parseArgs(process.argv.slice(2), {
    key: 'string', live: 'bool', put: 'string', expect: 'string'
  })
  if (positional.length !== 2) throw new Error('usage: db-sync.js DIR PORT [--key DBKEYHEX] [--live] [--put K=V] [--expect K=V]')
  const opts = { valueEncoding: 'utf-8' }
  const db = flags.key ? hyperdb(positional[0], unhex(flags.key, '--key'), opts) : hyperdb(positional[0], opts)
  await step('ready', function (cb) { db.ready(cb) })
  await loadHeads(db)
  const socket = net.connect(parseInt(positional[1], 10), '127.0.0.1')
  const stream = db.replicate({ live: !!flags.live })
  let ended = false
  let error = null
  const finished = new Promise(function (resolve) {
    let idle = null
    function kick () {
      clearTimeout(idle)
      idle = setTimeout(resolve, 3000)
    }
    stream.on('data', kick)
    stream.on('end', function () { ended = true; resolve() })
    stream.on('error', function (err) { error = String(err.message || err); resolve() })
    socket.on('error', function (err) { error = error || String(err.message || err); resolve() })
    socket.on('close', function () { resolve() })
    kick()
  })
  socket.pipe(stream).pipe(socket)
  if (flags.live) {
    if (flags.put) {
      const [k, v] = splitPair(flags.put)
      await step('put', function (cb) { db.put(k, v, cb) })
    }
    if (flags.expect) {
      const [k, v] = splitPair(flags.expect)
      const deadline = Date.now() + 20000
      while (true) {
        const nodes = await step('get', function (cb) { db.get(k, { update: false }, cb) })
        if (nodes && nodes.some(function (n) { return n.value === v })) break
        if (Date.now() > deadline) throw new Error('did not see ' + flags.expect + ' within 20 s')
        await new Promise(function (resolve) { setTimeout(resolve, 100) })
      }
    }
    // Let our own put reach the other side before closing.
    await new Promise(function (resolve) { setTimeout(resolve, 500) })
    stream.destroy()
    socket.destroy()
  } else {
    await finished
    socket.destroy()
  }
  const result = { key: hex(db.key), localKey: hex(db.local.key), ended, error }
  await closeDb(db)
  return result
}, { watchdogMs: 120000 })

function splitPair (s) {
  const i = s.indexOf('=')
  if (i < 0) throw new Error('expected KEY=VALUE, got ' + s)
  return [s.slice(0, i), s.slice(i + 1)]
}
