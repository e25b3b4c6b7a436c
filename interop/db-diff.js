// db-diff.js DIR VERSIONHEX [--prefix P]
//
// Opens the hyperdb in DIR and prints createDiffStream(checkout(VERSION),
// prefix) in order: [{"left":{"key","values"}|null,"right":{"key","values"}|null}...]
// (values sorted, deleted nodes left out).
'use strict'
const hyperdb = require('hyperdb')
const { parseArgs, step, main } = require('./lib/common')
const { closeDb, loadHeads } = require('./lib/db')

main(async function () {
  const { positional, flags } = parseArgs(process.argv.slice(2), { prefix: 'string' })
  if (positional.length !== 2) throw new Error('usage: db-diff.js DIR VERSIONHEX [--prefix P]')
  const db = hyperdb(positional[0], { valueEncoding: 'utf-8' })
  await step('ready', function (cb) { db.ready(cb) })
  await loadHeads(db)
  const other = db.checkout(Buffer.from(positional[1], 'hex'))
  const stream = db.createDiffStream(other, flags.prefix || '')
  const side = function (nodes) {
    if (!nodes) return null
    const list = [].concat(nodes)
    return { key: list[0].key, values: list.filter(function (n) { return !n.deleted }).map(function (n) { return n.value }).sort() }
  }
  const out = await new Promise(function (resolve, reject) {
    const acc = []
    stream.on('data', function (d) { acc.push({ left: side(d.left), right: side(d.right) }) })
    stream.on('end', function () { resolve(acc) })
    stream.on('error', reject)
  })
  await closeDb(db)
  return out
})
