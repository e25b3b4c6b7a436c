// Helpers shared by the hyperdb scripts.
'use strict'
const { step, closeFeeds } = require('./common')

// Waits for db.ready (10 s timeout).
function dbReady (db, label) {
  return step(label || 'db ready', function (cb) { db.ready(cb) })
}

// Loads every writer reachable from the current heads into db.feeds without
// waiting for remote data (db.heads() would wait forever on an empty db).
function loadHeads (db) {
  return step('heads', function (cb) { db._getHeads(false, cb) })
}

// Closes all feeds of the db (hyperdb 3.5.0 has no db.close()).
function closeDb (db) {
  return closeFeeds(db.feeds.concat(db.contentFeeds || []))
}

module.exports = { dbReady, loadHeads, closeDb }
