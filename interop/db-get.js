// db-get.js DIR KEY...
//
// Opens the hyperdb in DIR (valueEncoding 'utf-8') and prints, for every KEY,
// the nodes returned by db.get(key) (an array: one node per conflicting value):
// {"<key>":[{"value":utf8|null,"deleted":bool,"feedKey":hex,"seq":n,
//            "clock":[n...]}...]}
// feedKey is db.feeds[node.feed].key; clock is as hyperdb gives it (db.feeds
// order). get is called with {update:false} so an empty db does not wait for
// remote data (otherwise identical to db.get(key, cb)).
'use strict'
const hyperdb = require('hyperdb')
const { parseArgs, hex, step, main } = require('./lib/common')
const { dbReady, closeDb } = require('./lib/db')

main(async function () {
  const { positional } = parseArgs(process.argv.slice(2), {})
  if (positional.length < 1) throw new Error('usage: db-get.js DIR KEY...')

  const db = hyperdb(positional[0], { valueEncoding: 'utf-8' })
  await dbReady(db)

  const result = {}
  for (const key of positional.slice(1)) {
    const nodes = await step('get ' + key, function (cb) { db.get(key, { update: false }, cb) })
    result[key] = nodes.map(function (n) {
      return {
        value: n.value === undefined ? null : n.value,
        deleted: !!n.deleted,
        feedKey: hex(db.feeds[n.feed].key),
        seq: n.seq,
        clock: n.clock
      }
    })
  }

  await closeDb(db)
  return result
})
