// db-history.js DIR [--keys K1,K2,...]
//
// Opens the hyperdb in DIR and prints its version and histories:
// {"version":hex, "feeds":[hex...], "history":[{"feed":hex,"seq":n,"key":k}...], "reverse":[...],
//  "keyHistory":{k:[[{"feed":hex,"seq":n,"value":v|null,"deleted":bool}...]...]}}
// (history and reverse are createHistoryStream without and with reverse;
// keyHistory is createKeyHistoryStream for each of --keys; feeds is db.feeds
// in order, which decides ties between concurrent writes and which the
// reference builds in the order its feed files finish opening).
'use strict'
const hyperdb = require('hyperdb')
const { parseArgs, hex, step, main } = require('./lib/common')
const { closeDb, loadHeads } = require('./lib/db')

function collect (stream) {
  return new Promise(function (resolve, reject) {
    const out = []
    stream.on('data', function (d) { out.push(d) })
    stream.on('end', function () { resolve(out) })
    stream.on('error', reject)
  })
}

main(async function () {
  const { positional, flags } = parseArgs(process.argv.slice(2), { keys: 'string' })
  if (positional.length !== 1) throw new Error('usage: db-history.js DIR [--keys K1,K2]')
  const db = hyperdb(positional[0], { valueEncoding: 'utf-8' })
  await step('ready', function (cb) { db.ready(cb) })
  await loadHeads(db)
  const version = await step('version', function (cb) { db.version(cb) })
  const node = function (n) { return { feed: hex(db.feeds[n.feed].key), seq: n.seq, key: n.key } }
  const history = (await collect(db.createHistoryStream())).map(node)
  const reverse = (await collect(db.createHistoryStream({ reverse: true }))).map(node)
  const keyHistory = {}
  for (const k of (flags.keys ? flags.keys.split(',') : [])) {
    const steps = await collect(db.createKeyHistoryStream(k))
    keyHistory[k] = steps.map(function (nodes) {
      return [].concat(nodes).map(function (n) {
        return { feed: hex(db.feeds[n.feed].key), seq: n.seq, value: n.value === undefined ? null : n.value, deleted: !!n.deleted }
      })
    })
  }
  const feeds = db.feeds.map(function (f) { return hex(f.key) })
  const result = { version: hex(version), feeds, history, reverse, keyHistory }
  await closeDb(db)
  return result
})
