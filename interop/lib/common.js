// Shared helpers for the interop scripts driven by the Rust tests (crates/testkit).
//
// Contract of every script: exactly one JSON document on stdout, exit 0 on
// success; on failure the error goes to stderr and the exit code is 1.
// Buffers are lowercase hex strings in JSON.
'use strict'

const STEP_TIMEOUT_MS = 10000
const WATCHDOG_MS = parseInt(process.env.INTEROP_WATCHDOG_MS || "60000", 10)

let printed = false

// Parses argv (without node and script) into positional args and flags.
// `spec` maps flag names (without `--`) to 'string' or 'bool'.
function parseArgs (argv, spec) {
  const positional = []
  const flags = {}
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a.startsWith('--')) {
      const name = a.slice(2)
      const kind = spec[name]
      if (!kind) throw new Error('unknown flag ' + a)
      if (kind === 'bool') {
        flags[name] = true
      } else {
        if (i + 1 >= argv.length) throw new Error('missing value for ' + a)
        flags[name] = argv[++i]
      }
    } else {
      positional.push(a)
    }
  }
  return { positional, flags }
}

// Buffer (or null/undefined) -> lowercase hex (or null).
function hex (buf) {
  if (buf === null || buf === undefined) return null
  return Buffer.from(buf).toString('hex')
}

// Hex string (or null/undefined) -> Buffer (or null). Validates the input.
function unhex (str, what) {
  if (str === null || str === undefined) return null
  if (typeof str !== 'string' || !/^([0-9a-fA-F]{2})*$/.test(str)) {
    throw new Error('invalid hex' + (what ? ' for ' + what : '') + ': ' + JSON.stringify(str))
  }
  return Buffer.from(str, 'hex')
}

// Parses a JSON command line argument with a helpful error.
// Parses a JSON argument; `@PATH` reads it from a file (for input larger
// than a command line holds).
function parseJson (str, what) {
  if (str === undefined) throw new Error('missing ' + what)
  if (str.startsWith('@')) str = require('fs').readFileSync(str.slice(1), 'utf8')
  try {
    return JSON.parse(str)
  } catch (err) {
    throw new Error('invalid JSON for ' + what + ': ' + err.message)
  }
}

// Calls `fn(cb)` and returns a promise of the callback's result; rejects on
// error or if the callback does not come within 10 s.
function step (label, fn, ms) {
  return new Promise(function (resolve, reject) {
    let done = false
    const timer = setTimeout(function () {
      if (done) return
      done = true
      reject(new Error('timeout after ' + (ms || STEP_TIMEOUT_MS) + ' ms: ' + label))
    }, ms || STEP_TIMEOUT_MS)
    try {
      fn(function (err, val) {
        if (done) return
        done = true
        clearTimeout(timer)
        if (err) reject(err)
        else resolve(val)
      })
    } catch (err) {
      done = true
      clearTimeout(timer)
      reject(err)
    }
  })
}

// Like `step` but for callbacks that do not pass an error (e.g. feed.ready).
function ready (label, obj) {
  return step(label, function (cb) {
    obj.ready(function (err) { cb(err || null) })
  })
}

// Closes a list of hypercore feeds (waiting for every close callback).
async function closeFeeds (feeds) {
  for (const f of feeds) {
    if (!f) continue
    await step('close feed', function (cb) { f.close(cb) })
  }
}

function fail (err) {
  if (printed) return
  printed = true
  process.stderr.write('error: ' + ((err && err.stack) || String(err)) + '\n', function () {
    process.exit(1)
  })
}

// Prints the single JSON document and exits 0.
function output (obj) {
  if (printed) return
  printed = true
  process.stdout.write(JSON.stringify(obj) + '\n', function () {
    process.exit(0)
  })
}

// Runs an async main function; prints its result as JSON or fails.
// A global watchdog makes sure the script never hangs.
function main (fn, opts) {
  const ms = (opts && opts.watchdogMs) || WATCHDOG_MS
  const watchdog = setTimeout(function () {
    fail(new Error('watchdog: script did not finish within ' + ms + ' ms'))
  }, ms)
  watchdog.unref()
  process.on('uncaughtException', fail)
  process.on('unhandledRejection', fail)
  process.on('exit', function (code) {
    if (!printed) {
      process.stderr.write('error: script ended without producing output (event loop drained)\n')
      process.exitCode = 1
    }
  })
  Promise.resolve().then(fn).then(output, fail)
}

module.exports = { parseArgs, hex, unhex, parseJson, step, ready, closeFeeds, output, fail, main, STEP_TIMEOUT_MS }
