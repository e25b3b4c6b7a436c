// dht-node.js [HOST]
//
// A BitTorrent DHT node of the kind hyperdb 3.5.0's swarm used
// (bittorrent-dht 7), on HOST (127.0.0.1), bootstrapping from nobody: the
// bootstrap node of offline tests. Prints one line {"port":n} once
// listening; when stdin closes it prints {"done":true} and exits.
'use strict'
const DHT = require('bittorrent-dht')
const { step, main } = require('./lib/common')

main(async function () {
  const host = process.argv[2] || '127.0.0.1'
  const dht = new DHT({ bootstrap: false })
  await step('listen', function (cb) { dht.listen(0, host, function () { cb() }) })
  process.stdout.write(JSON.stringify({ port: dht.address().port }) + '\n')
  await new Promise(function (resolve) {
    process.stdin.on('data', function () {})
    process.stdin.on('end', resolve)
  })
  await step('destroy', function (cb) { dht.destroy(cb) })
  return { done: true }
}, { watchdogMs: 300000 })
