// db-ops.js DIR [--key DBKEYHEX [--secret-key HEX]] --ops JSON|@FILE
//
// Opens/creates the hyperdb at DIR (valueEncoding 'utf-8'; with the db key if
// given, and the owner's secret key to create it with a known key pair) and
// applies --ops in order, waiting for each callback:
//   {"type":"put","key":k,"value":utf8}   {"type":"del","key":k}
//   {"type":"batch","ops":[{"type":"put"|"del","key":k,"value":utf8}...]}
//   {"type":"authorize","key":hex}
// Prints {"key":hex,"localKey":hex}.
// Note: batch and authorize use db.heads(), which waits for remote data when
// the db's source feed is empty and the local feed has only its header; such
// an op fails here with a timeout after 10 s.
'use strict'
const hyperdb = require('hyperdb')
const { parseArgs, hex, unhex, parseJson, step, main } = require('./lib/common')
const { dbReady, closeDb } = require('./lib/db')

main(async function () {
  const { positional, flags } = parseArgs(process.argv.slice(2), { key: 'string', 'secret-key': 'string', ops: 'string' })
  if (positional.length !== 1) throw new Error('usage: db-ops.js DIR [--key DBKEYHEX] --ops JSON')
  const ops = parseJson(flags.ops, '--ops')
  if (!Array.isArray(ops)) throw new Error('--ops must be an array')

  const opts = { valueEncoding: 'utf-8' }
  if (flags['secret-key']) opts.secretKey = unhex(flags['secret-key'], '--secret-key')
  const db = flags.key
    ? hyperdb(positional[0], unhex(flags.key, '--key'), opts)
    : hyperdb(positional[0], opts)
  await dbReady(db)

  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]
    const label = 'op ' + i + ' (' + op.type + ')'
    switch (op.type) {
      case 'put':
        await step(label, function (cb) { db.put(op.key, op.value, cb) })
        break
      case 'del':
        await step(label, function (cb) { db.del(op.key, cb) })
        break
      case 'batch':
        if (!Array.isArray(op.ops)) throw new Error(label + ': ops must be an array')
        await step(label, function (cb) { db.batch(op.ops, cb) })
        break
      case 'authorize':
        await step(label, function (cb) { db.authorize(unhex(op.key, 'authorize key'), cb) })
        break
      default:
        throw new Error(label + ': unknown op type ' + JSON.stringify(op.type))
    }
  }

  const result = { key: hex(db.key), localKey: hex(db.local.key) }
  await closeDb(db)
  return result
})
