// db-multi.js DIR --steps JSON
//
// Builds a multi-writer hyperdb with several replicas in DIR/<name>, all kept
// open, applying --steps in order (each waits for its callback):
//   {"op":"create","name":"a"}                 owner of a new db
//   {"op":"create","name":"b","of":"a"}        replica of a's db
// A create may give "keyPair":{"key":hex,"secretKey":hex}: the owner's key
// pair, or for a replica the key pair of its local writer (written to
// DIR/<name>/local/ before the db opens, where hyperdb finds it).
//   {"op":"put","db":"a","key":k,"value":v}    {"op":"del","db":"a","key":k}
//   {"op":"batch","db":"a","ops":[{"type":"put"|"del","key","value"}]}
//   {"op":"authorize","db":"a","target":"b"}   a authorizes b's local key
//   {"op":"sync","a":"a","b":"b"}              replicate a <-> b once
//   {"op":"version","db":"a"}                  record a's version (printed
//                                              under "versions" of that db)
// A sync waits for both streams to end; the reference does not always end a
// one-shot replication between two non-owners, so after 3 s of no progress
// it closes the streams (the data has arrived by then) and goes on.
// Prints {name: {"key":hex,"localKey":hex}} for every replica.
'use strict'
const fs = require('fs')
const path = require('path')
const hyperdb = require('hyperdb')
const { parseArgs, hex, unhex, parseJson, step, closeFeeds, main } = require('./lib/common')
const { dbReady, loadHeads } = require('./lib/db')

main(async function () {
  const { positional, flags } = parseArgs(process.argv.slice(2), { steps: 'string' })
  if (positional.length !== 1) throw new Error('usage: db-multi.js DIR --steps JSON')
  const steps = parseJson(flags.steps, '--steps')
  const dbs = {}
  const versions = {}
  const get = function (name) {
    if (!dbs[name]) throw new Error('no replica named ' + name)
    return dbs[name]
  }

  for (let i = 0; i < steps.length; i++) {
    const s = steps[i]
    const label = 'step ' + i + ' (' + s.op + ')'
    switch (s.op) {
      case 'create': {
        const dir = path.join(positional[0], s.name)
        const opts = { valueEncoding: 'utf-8' }
        let key = s.of ? get(s.of).key : null
        if (s.keyPair && s.of) {
          fs.mkdirSync(path.join(dir, 'local'), { recursive: true })
          fs.writeFileSync(path.join(dir, 'local', 'key'), unhex(s.keyPair.key, 'keyPair.key'))
          fs.writeFileSync(path.join(dir, 'local', 'secret_key'), unhex(s.keyPair.secretKey, 'keyPair.secretKey'))
        } else if (s.keyPair) {
          key = unhex(s.keyPair.key, 'keyPair.key')
          opts.secretKey = unhex(s.keyPair.secretKey, 'keyPair.secretKey')
        }
        const db = key ? hyperdb(dir, key, opts) : hyperdb(dir, opts)
        await dbReady(db, label)
        dbs[s.name] = db
        break
      }
      case 'put':
        await step(label, function (cb) { get(s.db).put(s.key, s.value, cb) })
        break
      case 'del':
        await step(label, function (cb) { get(s.db).del(s.key, cb) })
        break
      case 'batch':
        await loadHeads(get(s.db))
        await step(label, function (cb) { get(s.db).batch(s.ops, cb) })
        break
      case 'authorize':
        await loadHeads(get(s.db))
        await step(label, function (cb) { get(s.db).authorize(get(s.target).local.key, cb) })
        break
      case 'version': {
        await loadHeads(get(s.db))
        const v = await step(label, function (cb) { get(s.db).version(cb) })
        versions[s.db] = (versions[s.db] || []).concat(hex(v))
        break
      }
      case 'sync':
        await sync(get(s.a), get(s.b), label)
        await loadHeads(get(s.a))
        await loadHeads(get(s.b))
        break
      default:
        throw new Error(label + ': unknown op ' + JSON.stringify(s.op))
    }
  }

  const result = {}
  let feeds = []
  for (const name of Object.keys(dbs)) {
    result[name] = { key: hex(dbs[name].key), localKey: hex(dbs[name].local.key), versions: versions[name] || [] }
    feeds = feeds.concat(dbs[name].feeds)
  }
  await closeFeeds(feeds)
  return result
})

function sync (a, b, label) {
  return step(label, function (cb) {
    const s1 = a.replicate()
    const s2 = b.replicate()
    let ended = 0
    let done = false
    let idle = null
    function finish (err) {
      if (done) return
      done = true
      clearTimeout(idle)
      cb(err || null)
    }
    function kick () {
      clearTimeout(idle)
      idle = setTimeout(function () {
        s1.destroy()
        s2.destroy()
        finish(null)
      }, 3000)
    }
    function onend () { if (++ended === 2) finish(null) }
    s1.on('end', onend)
    s2.on('end', onend)
    s1.on('data', kick)
    s2.on('data', kick)
    s1.on('error', function (err) { if (!s1.destroyed || !done) finish(err) })
    s2.on('error', function (err) { if (!s2.destroyed || !done) finish(err) })
    kick()
    s1.pipe(s2).pipe(s1)
  }, 30000)
}
