// db-content.js DIR [--key DBKEYHEX] [--append TEXT] [--put KEY=VALUE] [--read]
//
// Opens (or creates) the hyperdb in DIR with content feeds ({contentFeed:
// true}), appends TEXT to the local content feed and puts KEY=VALUE if
// asked. Prints {"key","localKey","contentKey","content":[...]} where
// content lists, for each feed of the db, its content feed's blocks as text
// ([] when unknown or empty) with --read.
'use strict'
const hyperdb = require('hyperdb')
const { parseArgs, hex, unhex, step, main } = require('./lib/common')
const { closeDb, loadHeads } = require('./lib/db')

main(async function () {
  const { positional, flags } = parseArgs(process.argv.slice(2), {
    key: 'string', append: 'string', put: 'string', read: 'bool'
  })
  if (positional.length !== 1) throw new Error('usage: db-content.js DIR [--key HEX] [--append TEXT] [--put K=V] [--read]')
  const opts = { valueEncoding: 'utf-8', contentFeed: true }
  const db = flags.key ? hyperdb(positional[0], unhex(flags.key, '--key'), opts) : hyperdb(positional[0], opts)
  await step('ready', function (cb) { db.ready(cb) })
  await loadHeads(db)
  if (flags.append) await step('append', function (cb) { db.localContent.append(flags.append, cb) })
  if (flags.put) {
    const i = flags.put.indexOf('=')
    await step('put', function (cb) { db.put(flags.put.slice(0, i), flags.put.slice(i + 1), cb) })
  }
  const content = []
  if (flags.read) {
    for (let i = 0; i < db.feeds.length; i++) {
      const feed = db.contentFeeds[i]
      const blocks = []
      if (feed) {
        await step('content ready', function (cb) { feed.ready(cb) })
        for (let j = 0; j < feed.length; j++) {
          if (!feed.has(j)) { blocks.push(null); continue }
          blocks.push((await step('get', function (cb) { feed.get(j, cb) })).toString())
        }
      }
      content.push(blocks)
    }
  }
  const result = { key: hex(db.key), localKey: hex(db.local.key), contentKey: hex(db.localContent.key), content }
  await closeDb(db)
  return result
})
