// db-list.js DIR [--prefix P] [--reverse] [--shallow] [--gt]
//
// Opens the hyperdb in DIR and prints the reference's iterator output in
// order: [{"key":k,"values":[v...]}...] (deleted nodes left out of values;
// --shallow is {recursive: false}).
'use strict'
const hyperdb = require('hyperdb')
const { parseArgs, step, main } = require('./lib/common')
const { closeDb, loadHeads } = require('./lib/db')

main(async function () {
  const { positional, flags } = parseArgs(process.argv.slice(2), {
    prefix: 'string', reverse: 'bool', shallow: 'bool', gt: 'bool'
  })
  if (positional.length !== 1) throw new Error('usage: db-list.js DIR [--prefix P] [--reverse] [--shallow] [--gt]')
  const db = hyperdb(positional[0], { valueEncoding: 'utf-8' })
  await step('ready', function (cb) { db.ready(cb) })
  await loadHeads(db)
  const ite = db.iterator(flags.prefix || '', { reverse: !!flags.reverse, recursive: !flags.shallow, gt: !!flags.gt })
  const out = []
  while (true) {
    const nodes = await step('next', function (cb) { ite.next(cb) })
    if (!nodes) break
    const list = [].concat(nodes)
    out.push({ key: list[0].key, values: list.filter(function (n) { return !n.deleted }).map(function (n) { return n.value }).sort() })
  }
  await closeDb(db)
  return out
})
