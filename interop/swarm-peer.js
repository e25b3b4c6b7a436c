// swarm-peer.js DIR [--key DBKEYHEX] [--authorize HEX] [--mdns] [--dht-bootstrap HOST:PORT]
//
// Opens (or creates) the hyperdb in DIR (authorizing a writer first if
// asked) and joins its swarm the way hyperdb 3.5.0 applications did, with
// hyperdiscovery 8 (discovery-swarm 5 with a live replication stream per
// connection), TCP only. Peers are found by multicast DNS with --mdns, by
// the DHT (through the given bootstrap node) with --dht-bootstrap, and are
// added by command. Prints one line
// {"port":n,"key":hex,"localKey":hex,"id":hex} once listening (id: the peer
// id its handshakes send). Then reads commands, one JSON object a line,
// answering each with one line:
//   {"connect":port}   -> {"ok":true}        (adds 127.0.0.1:port as a peer)
//   {"connections":true} -> {"connections":[{"initiator":b,"id":hex}],
//                            "redundant":n, "found":["host:port"]}
//                           (connections past their handshake; peers found)
//   {"put":{"key":k,"value":v}} -> {"ok":true}
//   {"get":k}          -> {"values":[...]}
// When stdin closes it prints {"done":true} and exits.
'use strict'
const hyperdb = require('hyperdb')
const hyperdiscovery = require('hyperdiscovery')
const { parseArgs, hex, unhex, step, main } = require('./lib/common')
const { closeDb, loadHeads } = require('./lib/db')

main(async function () {
  const { positional, flags } = parseArgs(process.argv.slice(2), {
    key: 'string', authorize: 'string', mdns: 'bool', 'dht-bootstrap': 'string'
  })
  if (positional.length !== 1) throw new Error('usage: swarm-peer.js DIR [--key DBKEYHEX]')
  const opts = { valueEncoding: 'utf-8' }
  const db = flags.key ? hyperdb(positional[0], unhex(flags.key, '--key'), opts) : hyperdb(positional[0], opts)
  await step('ready', function (cb) { db.ready(cb) })
  await loadHeads(db)
  if (flags.authorize) {
    await step('authorize', function (cb) { db.authorize(unhex(flags.authorize, '--authorize'), cb) })
  }
  const swarm = hyperdiscovery(db, {
    port: 0,
    utp: false,
    dht: flags['dht-bootstrap'] ? { bootstrap: [flags['dht-bootstrap']] } : false,
    dns: flags.mdns ? { domain: 'dat.local', server: [] } : false
  })
  const found = []
  swarm.on('peer', function (peer) { found.push(peer.host + ':' + peer.port) })
  const live = new Map()
  let redundant = 0
  swarm.on('connection', function (connection, info) {
    live.set(connection, { initiator: info.initiator, id: hex(info.id) })
    // A replication stream the other end closed first finalizes: it ends
    // without 'close', and a later destroy() emits none either.
    const gone = function () { live.delete(connection) }
    connection.on('close', gone)
    connection.on('end', gone)
  })
  swarm.on('redundant-connection', function () { redundant++ })
  swarm.on('error', function () {})
  await step('listen', function (cb) {
    if (swarm.address()) return cb()
    swarm.once('listening', function () { cb() })
  })
  process.stdout.write(JSON.stringify({
    port: swarm.address().port,
    key: hex(db.key),
    localKey: hex(db.local.key),
    id: hex(db.id)
  }) + '\n')
  await new Promise(function (resolve) {
    let pending = ''
    let queue = Promise.resolve()
    process.stdin.on('data', function (chunk) {
      pending += chunk
      let i
      while ((i = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, i).trim()
        pending = pending.slice(i + 1)
        if (line) queue = queue.then(function () { return command(JSON.parse(line)) })
      }
    })
    process.stdin.on('end', function () { queue.then(resolve) })
  })
  await step('leave', function (cb) { swarm.destroy(cb) })
  await closeDb(db)
  return { done: true }

  async function command (cmd) {
    if (cmd.connect !== undefined) {
      swarm.addPeer(db.discoveryKey, { host: '127.0.0.1', port: cmd.connect })
      reply({ ok: true })
    } else if (cmd.connections) {
      // Only streams still open: one ended (`destroyed` is set by both
      // finalize() and destroy()) is no connection any more.
      const open = Array.from(live).filter(([c]) => !c.destroyed).map(([, v]) => v)
      reply({ connections: open, redundant, found })
    } else if (cmd.put) {
      await step('put', function (cb) { db.put(cmd.put.key, cmd.put.value, cb) })
      reply({ ok: true })
    } else if (cmd.get !== undefined) {
      const nodes = await step('get', function (cb) { db.get(cmd.get, cb) })
      const list = Array.isArray(nodes) ? nodes : (nodes ? [nodes] : [])
      reply({ values: list.map(function (n) { return n.value }) })
    } else {
      throw new Error('unknown command ' + JSON.stringify(cmd))
    }
  }
}, { watchdogMs: 120000 })

function reply (value) {
  process.stdout.write(JSON.stringify(value) + '\n')
}
