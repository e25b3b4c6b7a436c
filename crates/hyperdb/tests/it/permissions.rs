//! Revoking writers: the scenarios of the permission rule (see
//! `hyperdb::policy`), and a property test that every replica, learning
//! feeds in any order, answers what an oracle computes from the whole
//! history.

use std::collections::BTreeSet;

use hyperdb::{local_sync, AuthorizeOptions, Db, Error, Node, Record};
use proptest::prelude::*;

use crate::causal::{self, answer, setup, Answer, KEYS};
use crate::support::{
    complete_entries, counting_writes, memory_db, sorted_texts, sorted_values as values,
};

fn raw_values(db: &Db, key: &str) -> Vec<String> {
    sorted_texts(&db.snapshot().unwrap().raw().get(key).unwrap())
}

/// An owner and a writer it authorized, synced.
fn owner_and_writer() -> (Db, Db) {
    let owner = memory_db(None);
    let writer = memory_db(Some(*owner.key()));
    owner.authorize(writer.local_key()).unwrap();
    local_sync::sync(&owner, &writer).unwrap();
    (owner, writer)
}

/// The owner makes `admin`'s writer an admin.
fn make_admin(owner: &Db, admin: &Db) {
    let options = AuthorizeOptions {
        admin: true,
        ..Default::default()
    };
    owner.authorize_with(admin.local_key(), options).unwrap();
}

/// Syncs every pair of `dbs`.
fn sync_all(dbs: &[&Db]) {
    for a in dbs {
        for b in dbs {
            if !std::ptr::eq(*a, *b) {
                local_sync::sync(a, b).unwrap();
            }
        }
    }
}

fn refused(result: hyperdb::Result<impl std::fmt::Debug>) -> String {
    match result {
        Err(Error::Refused { what, .. }) => what,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_revoked_writer_keeps_what_the_revoker_had_seen_and_loses_the_rest() {
    let (owner, writer) = owner_and_writer();
    writer.put("a", b"w1").unwrap();
    local_sync::sync(&owner, &writer).unwrap();
    owner.revoke(writer.local_key()).unwrap();
    // Written before the writer learned of the revocation: cut all the same.
    writer.put("a", b"w2").unwrap();
    writer.put("b", b"x").unwrap();
    local_sync::sync(&owner, &writer).unwrap();
    // And after it learned, with a clock that includes it.
    writer.put("c", b"y").unwrap();
    local_sync::sync(&owner, &writer).unwrap();
    for db in [&owner, &writer] {
        assert_eq!(values(db, "a"), ["w1"]);
        assert!(values(db, "b").is_empty());
        assert!(values(db, "c").is_empty());
        let keys: Vec<String> = db.list("").unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a"]);
        // hyperdb 3.5.0's view shows everything.
        assert_eq!(raw_values(db, "a"), ["w2"]);
        assert_eq!(raw_values(db, "c"), ["y"]);
        // The history leaves out what does not count; raw keeps it.
        let history: Vec<String> = db
            .history(false)
            .unwrap()
            .map(|n| n.unwrap().key.clone())
            .filter(|k| !k.is_empty())
            .collect();
        assert_eq!(history, ["a"]);
        let raw: usize = db.snapshot().unwrap().raw().history(false).count();
        assert!(raw > history.len());
        let me = db
            .permissions()
            .unwrap()
            .into_iter()
            .find(|p| p.key == *writer.local_key())
            .unwrap();
        // Header and w1 count: cut from entry 2 on.
        assert_eq!(
            (me.role, me.revoked_from, me.restored),
            ("writer", Some(2), false)
        );
    }
    // The revoked writer stays listed: hyperdb 3.5.0 peers still see it.
    assert!(owner.is_authorized(writer.local_key()).unwrap());
}

#[test]
fn entries_that_do_not_count_are_transparent() {
    let (owner, writer) = owner_and_writer();
    owner.put("k", b"v1").unwrap();
    owner.put("gone", b"still here").unwrap();
    local_sync::sync(&owner, &writer).unwrap();
    let observer = memory_db(Some(*owner.key()));
    owner.revoke(writer.local_key()).unwrap();
    // The writer overwrites and deletes, unaware of the revocation.
    writer.put("k", b"x").unwrap();
    writer.del("gone").unwrap();
    local_sync::sync(&writer, &observer).unwrap();
    assert_eq!(
        values(&observer, "k"),
        ["x"],
        "before the revocation arrives"
    );
    let before = observer.version().unwrap();
    let mut watch = observer.watch("").unwrap();
    local_sync::sync(&owner, &observer).unwrap();
    assert!(
        watch.changed(&observer).unwrap(),
        "the revocation arriving is a change"
    );
    // v1 <- x (does not count): v1 is current; the delete hides nothing.
    assert_eq!(values(&observer, "k"), ["v1"]);
    assert_eq!(values(&observer, "gone"), ["still here"]);
    let listed: Vec<(String, usize)> = observer
        .list("")
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.len()))
        .collect();
    assert_eq!(listed.len(), 2);
    // A diff from before the revocation reports what stopped counting.
    let changes = observer.diff(&before, "").unwrap();
    let mut changed: Vec<(&str, Vec<String>, Vec<String>)> = changes
        .iter()
        .map(|c| {
            let texts = |side: &Option<Vec<std::sync::Arc<Node>>>| {
                side.iter()
                    .flatten()
                    .filter_map(|n| n.value_str())
                    .collect::<Vec<String>>()
            };
            (c.key.as_str(), texts(&c.left), texts(&c.right))
        })
        .collect();
    changed.sort();
    assert_eq!(
        changed,
        [
            ("gone", vec!["still here".to_string()], vec![]),
            ("k", vec!["v1".to_string()], vec!["x".to_string()]),
        ]
    );
    // v1 <- x <- v2: a write that counts supersedes what it had seen.
    local_sync::sync(&owner, &writer).unwrap();
    local_sync::sync(&observer, &owner).unwrap();
    owner.put("k", b"v2").unwrap();
    local_sync::sync(&owner, &observer).unwrap();
    assert_eq!(values(&observer, "k"), ["v2"]);
    // The key's history: v2, then v1 (x left out).
    let steps: Vec<Vec<String>> = observer
        .key_history("k")
        .unwrap()
        .map(|s| s.unwrap().iter().map(|n| n.value_str().unwrap()).collect())
        .collect();
    assert_eq!(steps, [vec!["v2".to_string()], vec!["v1".to_string()]]);
}

#[test]
fn a_grant_that_has_seen_the_revocation_restores_later_entries_only() {
    let (owner, writer) = owner_and_writer();
    owner.revoke(writer.local_key()).unwrap();
    writer.put("between", b"1").unwrap();
    local_sync::sync(&owner, &writer).unwrap();
    // Authorizing again needs the owner or an admin, and writes a grant.
    let again = owner.authorize(writer.local_key()).unwrap();
    assert!(matches!(
        again.policy.as_deref(),
        Some(Record::Grant { admin: false, .. })
    ));
    // Entries that have not seen the grant stay out, even written after it.
    writer.put("unaware", b"2").unwrap();
    local_sync::sync(&owner, &writer).unwrap();
    writer.put("after", b"3").unwrap();
    local_sync::sync(&owner, &writer).unwrap();
    for db in [&owner, &writer] {
        assert!(values(db, "between").is_empty());
        assert!(values(db, "unaware").is_empty());
        assert_eq!(values(db, "after"), ["3"]);
        let me = &db.permissions().unwrap()[1];
        assert_eq!((me.revoked_from, me.restored), (Some(1), true));
    }
    // Authorized and not revoked: nothing to do.
    assert!(matches!(
        owner.authorize(writer.local_key()),
        Err(Error::AlreadyAuthorized(_))
    ));
}

#[test]
fn a_grant_concurrent_with_the_revocation_loses() {
    let (owner, writer) = owner_and_writer();
    let admin = memory_db(Some(*owner.key()));
    make_admin(&owner, &admin);
    local_sync::sync(&owner, &admin).unwrap();
    local_sync::sync(&writer, &admin).unwrap();
    // The admin revokes, the owner (not having seen it) grants again: no
    // grant of the owner's is possible for a writer it sees as authorized,
    // so the admin revokes and then grants; the owner revokes concurrently.
    admin.revoke(writer.local_key()).unwrap();
    admin.authorize(writer.local_key()).unwrap();
    owner.revoke(writer.local_key()).unwrap();
    writer.put("late", b"1").unwrap();
    local_sync::sync(&writer, &admin).unwrap();
    writer.put("later", b"2").unwrap();
    for db in [&owner, &writer, &admin] {
        local_sync::sync(db, &owner).unwrap();
        local_sync::sync(db, &writer).unwrap();
        local_sync::sync(db, &admin).unwrap();
    }
    for db in [&owner, &writer, &admin] {
        // The admin's grant has not seen the owner's revocation.
        assert!(values(db, "late").is_empty());
        assert!(values(db, "later").is_empty());
        let me = &db.permissions().unwrap()[db.writer_index(writer.local_key()).unwrap()];
        assert!(!me.restored);
    }
}

#[test]
fn admins_revoke_writers_but_not_the_owner_or_other_admins() {
    let (owner, writer) = owner_and_writer();
    let admin = memory_db(Some(*owner.key()));
    let other_admin = memory_db(Some(*owner.key()));
    // Only the owner makes admins.
    assert!(refused(writer.authorize_with(
        admin.local_key(),
        AuthorizeOptions {
            admin: true,
            ..Default::default()
        }
    ))
    .contains("only the owner makes admins"));
    make_admin(&owner, &admin);
    make_admin(&owner, &other_admin);
    for db in [&writer, &admin, &other_admin] {
        local_sync::sync(&owner, db).unwrap();
    }
    assert!(refused(admin.revoke(owner.key())).contains("owner cannot be revoked"));
    assert!(refused(admin.revoke(other_admin.local_key())).contains("an admin cannot revoke it"));
    assert!(refused(writer.revoke(admin.local_key())).contains("only the owner and admins"));
    assert!(refused(admin.revoke(admin.local_key())).contains("its own writer"));
    assert!(refused(admin.revoke(&[7; 32])).contains("not a writer"));
    let before = admin
        .feed(admin.writer_index(admin.local_key()).unwrap())
        .unwrap()
        .len();
    assert!(matches!(admin.revoke(&[1; 3]), Err(Error::BadKeyLength(3))));
    assert_eq!(
        admin
            .feed(admin.writer_index(admin.local_key()).unwrap())
            .unwrap()
            .len(),
        before,
        "a refusal writes nothing"
    );
    writer.put("w", b"1").unwrap();
    local_sync::sync(&writer, &admin).unwrap();
    admin.revoke(writer.local_key()).unwrap();
    writer.put("w", b"2").unwrap();
    for db in [&owner, &writer, &admin] {
        local_sync::sync(db, &writer).unwrap();
        local_sync::sync(db, &admin).unwrap();
    }
    assert_eq!(values(&owner, "w"), ["1"]);
    let roles: Vec<&str> = owner
        .permissions()
        .unwrap()
        .iter()
        .map(|p| p.role)
        .collect();
    assert_eq!(roles.iter().filter(|r| **r == "admin").count(), 2);
    assert_eq!(roles[0], "owner");
}

#[test]
fn a_revoked_admins_records_before_the_cut_stay_and_later_ones_are_void() {
    let (owner, writer) = owner_and_writer();
    let second = memory_db(Some(*owner.key()));
    owner.authorize(second.local_key()).unwrap();
    let admin = memory_db(Some(*owner.key()));
    make_admin(&owner, &admin);
    for db in [&writer, &second, &admin] {
        local_sync::sync(&owner, db).unwrap();
    }
    writer.put("w", b"1").unwrap();
    local_sync::sync(&writer, &admin).unwrap();
    admin.revoke(writer.local_key()).unwrap();
    local_sync::sync(&admin, &owner).unwrap();
    // The owner revokes the admin, which meanwhile revokes another writer.
    owner.revoke(admin.local_key()).unwrap();
    second.put("s", b"1").unwrap();
    local_sync::sync(&second, &admin).unwrap();
    admin.revoke(second.local_key()).unwrap();
    writer.put("w", b"2").unwrap();
    second.put("s", b"2").unwrap();
    sync_all(&[&owner, &writer, &second, &admin]);
    for db in [&owner, &writer, &second, &admin] {
        assert_eq!(
            values(db, "w"),
            ["1"],
            "the revocation before the cut stays"
        );
        assert_eq!(values(db, "s"), ["2"], "the one after it is void");
        let roles: Vec<&str> = db.permissions().unwrap().iter().map(|p| p.role).collect();
        assert!(!roles.contains(&"admin"));
    }
}

#[test]
fn several_revocations_cut_at_the_lowest() {
    let (owner, writer) = owner_and_writer();
    let admin = memory_db(Some(*owner.key()));
    make_admin(&owner, &admin);
    local_sync::sync(&owner, &admin).unwrap();
    local_sync::sync(&admin, &writer).unwrap();
    writer.put("a", b"1").unwrap();
    local_sync::sync(&writer, &owner).unwrap();
    writer.put("b", b"2").unwrap();
    local_sync::sync(&writer, &admin).unwrap();
    // The owner had seen "a", the admin "a" and "b".
    owner.revoke(writer.local_key()).unwrap();
    admin.revoke(writer.local_key()).unwrap();
    for db in [&owner, &writer, &admin] {
        local_sync::sync(db, &owner).unwrap();
        local_sync::sync(db, &admin).unwrap();
    }
    for db in [&owner, &writer, &admin] {
        assert_eq!(values(db, "a"), ["1"]);
        assert!(values(db, "b").is_empty());
    }
}

#[test]
fn a_restoring_grant_not_yet_arrived_holds_the_entries_that_saw_it() {
    let (owner, writer) = owner_and_writer();
    owner.revoke(writer.local_key()).unwrap();
    local_sync::sync(&owner, &writer).unwrap();
    owner.authorize(writer.local_key()).unwrap();
    local_sync::sync(&owner, &writer).unwrap();
    writer.put("k", b"restored").unwrap();
    // An observer with the writer's whole feed, but the owner's only up to
    // the revocation.
    let observer = memory_db(Some(*owner.key()));
    let revoked_at = owner.feed(0).unwrap().len() - 1;
    local_sync::copy_feed(&owner, &observer, owner.key(), Some(revoked_at)).unwrap();
    observer.heads().unwrap();
    local_sync::copy_feed(&writer, &observer, writer.local_key(), None).unwrap();
    assert!(values(&observer, "k").is_empty(), "pending");
    local_sync::sync(&owner, &observer).unwrap();
    assert_eq!(values(&observer, "k"), ["restored"]);
}

#[test]
fn a_checkout_decides_with_its_own_past() {
    let (owner, writer) = owner_and_writer();
    writer.put("k", b"1").unwrap();
    local_sync::sync(&owner, &writer).unwrap();
    let before = owner.version().unwrap();
    owner.revoke(writer.local_key()).unwrap();
    writer.put("k", b"2").unwrap();
    local_sync::sync(&owner, &writer).unwrap();
    let old = owner.checkout(&before).unwrap();
    assert_eq!(old.get("k").unwrap()[0].value_str().unwrap(), "1");
    assert_eq!(values(&owner, "k"), ["1"]);
    assert_eq!(raw_values(&owner, "k"), ["2"]);
}

fn limited(prefixes: &[&str]) -> AuthorizeOptions {
    AuthorizeOptions {
        prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
        ..Default::default()
    }
}

#[test]
fn a_writer_limited_to_prefixes_writes_only_under_them() {
    let owner = memory_db(None);
    let writer = memory_db(Some(*owner.key()));
    let other = memory_db(Some(*owner.key()));
    owner
        .authorize_with(writer.local_key(), limited(&["config"]))
        .unwrap();
    local_sync::sync(&owner, &writer).unwrap();
    writer.put("config/a", b"1").unwrap();
    writer.put("/config//b/", b"2").unwrap();
    writer.put("configuration/x", b"3").unwrap();
    // One batch, allowed and forbidden keys: each entry decides alone.
    writer
        .batch(&[
            hyperdb::Op::Put {
                key: "config/c".into(),
                value: b"4".to_vec(),
            },
            hyperdb::Op::Put {
                key: "elsewhere".into(),
                value: b"5".to_vec(),
            },
        ])
        .unwrap();
    // It authorizes no one.
    assert!(refused(writer.authorize(other.local_key())).contains("authorizes no one"));
    local_sync::sync(&owner, &writer).unwrap();
    for db in [&owner, &writer] {
        let keys: Vec<String> = db.list("").unwrap().into_iter().map(|(k, _)| k).collect();
        let mut keys = keys;
        keys.sort();
        assert_eq!(keys, ["config//b/", "config/a", "config/c"]);
        assert_eq!(raw_values(db, "configuration/x"), ["3"]);
        let me = &db.permissions().unwrap()[db.writer_index(writer.local_key()).unwrap()];
        assert_eq!(me.prefixes, Some(vec!["config".to_string()]));
    }
    // Widening adds prefixes; what it has already is nothing to do.
    assert!(matches!(
        owner.authorize_with(writer.local_key(), limited(&["config/deeper"])),
        Err(Error::AlreadyAuthorized(_))
    ));
    owner
        .authorize_with(writer.local_key(), limited(&["elsewhere"]))
        .unwrap();
    assert_eq!(values(&owner, "elsewhere"), ["5"], "grants are retroactive");
    // A writer that may write anywhere is not limited by a grant.
    owner.authorize(other.local_key()).unwrap();
    assert!(
        refused(owner.authorize_with(other.local_key(), limited(&["x"])))
            .contains("may already write anywhere")
    );
    // Nor is a prefix the whole database.
    assert!(matches!(
        owner.authorize_with(&[9; 32], limited(&["/"])),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn a_limited_grant_wins_over_a_listing_made_without_knowing_it() {
    let (owner, other) = owner_and_writer();
    let limited_writer = memory_db(Some(*owner.key()));
    owner
        .authorize_with(limited_writer.local_key(), limited(&["config"]))
        .unwrap();
    // Another writer, not having seen that, authorizes it plainly (as
    // hyperdb 3.5.0 lets any writer do).
    other.authorize(limited_writer.local_key()).unwrap();
    sync_all(&[&owner, &other, &limited_writer]);
    limited_writer.put("config/a", b"1").unwrap();
    limited_writer.put("elsewhere", b"1").unwrap();
    sync_all(&[&owner, &other, &limited_writer]);
    for db in [&owner, &other, &limited_writer] {
        assert_eq!(values(db, "config/a"), ["1"]);
        assert!(values(db, "elsewhere").is_empty());
    }
}

#[test]
fn restricting_a_prefix_cuts_other_writers_there_until_it_is_lifted() {
    let (owner, w1) = owner_and_writer();
    let w2 = memory_db(Some(*owner.key()));
    let admin = memory_db(Some(*owner.key()));
    owner.authorize(w2.local_key()).unwrap();
    make_admin(&owner, &admin);
    let all = [&owner, &w1, &w2, &admin];
    sync_all(&all);
    w1.put("config/x", b"1").unwrap();
    local_sync::sync(&w1, &owner).unwrap();
    assert!(refused(w1.restrict("config", &[])).contains("only the owner or an admin"));
    assert!(refused(owner.restrict("config", &[*owner.key()])).contains("database key"));
    assert!(refused(owner.restrict("config", &[[8; 32]])).contains("not a writer"));
    owner.restrict("config", &[*w2.local_key()]).unwrap();
    // Concurrent writes, unaware of the restriction.
    w1.put("config/x", b"2").unwrap();
    w1.put("/config//y/", b"2").unwrap();
    w1.put("configuration/z", b"2").unwrap();
    w2.put("config/w", b"2").unwrap();
    admin.put("config/admin", b"2").unwrap();
    sync_all(&all);
    for db in all {
        assert_eq!(values(db, "config/x"), ["1"], "earlier writes stay");
        assert!(values(db, "config//y/").is_empty());
        assert_eq!(
            values(db, "configuration/z"),
            ["2"],
            "a component, not a string prefix"
        );
        assert_eq!(values(db, "config/w"), ["2"], "a member");
        assert_eq!(values(db, "config/admin"), ["2"], "an admin");
        let restrictions = db.restrictions().unwrap();
        assert_eq!(restrictions.len(), 1);
        assert_eq!(restrictions[0].prefix, "config");
        assert_eq!(restrictions[0].writers, [*w2.local_key()]);
    }
    // Lifted for the entries that have seen the lifting.
    assert!(refused(owner.unrestrict("docs")).contains("not restricted"));
    owner.unrestrict("config").unwrap();
    w1.put("config/x", b"3").unwrap();
    sync_all(&all);
    assert_eq!(values(&owner, "config/x"), ["1"], "not seen the lifting");
    w1.put("config/x", b"4").unwrap();
    sync_all(&all);
    for db in all {
        assert_eq!(values(db, "config/x"), ["4"]);
        assert!(db.restrictions().unwrap().is_empty());
    }
    // Read-only for all but the owner and admins.
    admin.restrict("config", &[]).unwrap();
    sync_all(&all);
    w2.put("config/w", b"3").unwrap();
    owner.put("config/o", b"3").unwrap();
    sync_all(&all);
    for db in all {
        assert_eq!(values(db, "config/w"), ["2"]);
        assert_eq!(values(db, "config/o"), ["3"]);
    }
}

/// Appends to `db`'s own feed an entry carrying `record`, bypassing every
/// check, as a modified peer could: a copy of its latest entry (which must
/// be a key-"" entry, so its trie suits), inflated, with the record.
fn forge(db: &Db, record: Record) {
    let local = db.writer_index(db.local_key()).unwrap();
    let len = db.feed(local).unwrap().len();
    let mut entry = db.raw_entry(local, len - 1).unwrap().unwrap();
    assert_eq!(entry.key, "", "forge after an authorization or a record");
    if entry.feeds.is_empty() {
        let inflated = entry.inflate.unwrap();
        entry.feeds = db.raw_entry(local, inflated).unwrap().unwrap().feeds;
    }
    entry.inflate = Some(len);
    entry.policy = Some(record.encode());
    db.with_feed_mut(local, |f| f.append(&entry.to_bytes()))
        .unwrap()
        .unwrap();
}

#[test]
fn forged_records_and_back_dated_clocks_do_not_count() {
    let (owner, writer) = owner_and_writer();
    let admin = memory_db(Some(*owner.key()));
    let other_admin = memory_db(Some(*owner.key()));
    let plain = memory_db(Some(*owner.key()));
    make_admin(&owner, &admin);
    make_admin(&owner, &other_admin);
    owner.authorize(plain.local_key()).unwrap();
    let all = [&owner, &writer, &admin, &other_admin, &plain];
    sync_all(&all);
    writer.put("w", b"1").unwrap();
    sync_all(&all);
    // Legitimate: the admin revokes the writer. Forged after it: the admin
    // revokes the owner and the other admin; the plain writer (after a
    // plain authorization) revokes the other admin, makes itself an admin
    // and restricts a prefix; the revoked writer grants itself again.
    admin.revoke(writer.local_key()).unwrap();
    forge(
        &admin,
        Record::Revoke {
            writer: *owner.key(),
        },
    );
    forge(
        &admin,
        Record::Revoke {
            writer: *other_admin.local_key(),
        },
    );
    plain.authorize(&[5; 32]).unwrap();
    let no_prefixes = Vec::new();
    forge(
        &plain,
        Record::Revoke {
            writer: *other_admin.local_key(),
        },
    );
    forge(
        &plain,
        Record::Grant {
            writer: *plain.local_key(),
            admin: true,
            prefixes: no_prefixes.clone(),
        },
    );
    forge(
        &plain,
        Record::Restrict {
            prefix: "o".into(),
            writers: vec![],
        },
    );
    sync_all(&all);
    writer.authorize(&[6; 32]).unwrap();
    forge(
        &writer,
        Record::Grant {
            writer: *writer.local_key(),
            admin: false,
            prefixes: no_prefixes,
        },
    );
    sync_all(&all);
    owner.put("own", b"2").unwrap();
    other_admin.put("o", b"2").unwrap();
    sync_all(&all);
    // The revoked writer back-dates an entry: a clock from before the
    // revocation, on an entry past its cut.
    let local = writer.writer_index(writer.local_key()).unwrap();
    let mut early = writer.raw_entry(local, 1).unwrap().unwrap();
    early.key = "w".into();
    early.value = Some(b"back-dated".to_vec());
    writer
        .with_feed_mut(local, |f| f.append(&early.to_bytes()))
        .unwrap()
        .unwrap();
    sync_all(&all);
    for db in all {
        assert_eq!(values(db, "own"), ["2"], "the owner is not revoked");
        assert_eq!(
            values(db, "o"),
            ["2"],
            "nor the other admin, nor restricted"
        );
        assert_eq!(values(db, "w"), ["1"], "the cut holds");
        let roles: Vec<&str> = db.permissions().unwrap().iter().map(|p| p.role).collect();
        let role = |d: &Db| roles[db.writer_index(d.local_key()).unwrap()];
        assert_eq!(
            (role(&owner), role(&admin), role(&other_admin), role(&plain)),
            ("owner", "admin", "admin", "writer")
        );
        let me = &db.permissions().unwrap()[db.writer_index(writer.local_key()).unwrap()];
        assert!(!me.restored, "a writer cannot restore itself");
        assert!(db.restrictions().unwrap().is_empty());
    }
}

// The property test: random histories of three replicas (the causal
// test's steps) with the owner revoking, granting again, restricting and
// lifting restrictions.

const PREFIXES: [&str; 2] = ["a", "c"];

#[derive(Clone, Debug)]
enum Step {
    Causal(causal::Step),
    Revoke { writer: usize },
    Grant { writer: usize },
    Restrict { prefix: usize, members: u8 },
    Unrestrict { prefix: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        9 => causal::step().prop_map(Step::Causal),
        1 => (1..3usize).prop_map(|writer| Step::Revoke { writer }),
        1 => (1..3usize).prop_map(|writer| Step::Grant { writer }),
        1 => (0..PREFIXES.len(), 0..4u8).prop_map(|(prefix, members)| Step::Restrict { prefix, members }),
        1 => (0..PREFIXES.len()).prop_map(|prefix| Step::Unrestrict { prefix }),
    ]
}

/// The rule evaluated on every complete entry held here, written
/// independently of the library: the owner's revocations cut a writer at
/// the owner's clock, and only an owner grant after the revocation, seen
/// by the entry, lets a later entry count; the owner's restrictions cut
/// the writers they leave out, under their prefix, until a later record
/// of the prefix the entry has seen.
fn oracle(db: &Db) -> impl Fn(&Node) -> bool {
    let entries = complete_entries(db);
    let keys: Vec<[u8; 32]> = db.writers().iter().map(|w| w.key).collect();
    let owner: Vec<(u64, Record)> = entries
        .iter()
        .filter(|n| n.feed == 0)
        .filter_map(|n| Some((n.seq, n.policy.as_deref()?.clone())))
        .collect();
    let clock_of = move |seq: u64| {
        entries
            .iter()
            .find(|e| e.feed == 0 && e.seq == seq)
            .unwrap()
            .clock
            .clone()
    };
    let under = |key: &str, prefix: &str| key == prefix || key.starts_with(&format!("{prefix}/"));
    move |n: &Node| {
        if n.feed == 0 {
            return true;
        }
        let key = keys[n.feed];
        let seen_by_n = |seq: u64| n.clock.first().copied().unwrap_or(0) > seq;
        let restricted = owner.iter().any(|(x, record)| {
            let Record::Restrict { prefix, writers } = record else {
                return false;
            };
            under(&n.key, prefix)
                && n.seq >= clock_of(*x).get(n.feed).copied().unwrap_or(0)
                && !writers.contains(&key)
                && !owner.iter().any(|(y, later)| {
                    let p = match later {
                        Record::Restrict { prefix, .. } | Record::Unrestrict { prefix } => prefix,
                        _ => return false,
                    };
                    p == prefix && y > x && seen_by_n(*y)
                })
        });
        if restricted {
            return false;
        }
        owner.iter().all(|(r, record)| {
            let Record::Revoke { writer } = record else {
                return true;
            };
            if *writer != key {
                return true;
            }
            n.seq < clock_of(*r).get(n.feed).copied().unwrap_or(0)
                || owner.iter().any(|(g, grant)| {
                    matches!(grant, Record::Grant { writer, .. } if *writer == key)
                        && g > r
                        && seen_by_n(*g)
                })
        })
    }
}

fn run(steps: &[Step], order_seed: u64) -> Result<(), TestCaseError> {
    let mut dbs = setup();
    let keys: Vec<[u8; 32]> = dbs.iter().map(|d| *d.local_key()).collect();
    for step in steps {
        match *step {
            Step::Causal(ref step) => causal::apply(&mut dbs, &keys, step),
            Step::Revoke { writer } => match dbs[0].revoke(&keys[writer]) {
                Ok(_) | Err(Error::Refused { .. }) => {}
                Err(e) => panic!("{e}"),
            },
            Step::Grant { writer } => match dbs[0].authorize(&keys[writer]) {
                Ok(_) | Err(Error::AlreadyAuthorized(_)) => {}
                Err(e) => panic!("{e}"),
            },
            Step::Restrict { prefix, members } => {
                let members: Vec<[u8; 32]> = (1..3)
                    .filter(|w| members & (1 << (w - 1)) != 0)
                    .map(|w| keys[w])
                    .collect();
                dbs[0].restrict(PREFIXES[prefix], &members).unwrap();
            }
            Step::Unrestrict { prefix } => match dbs[0].unrestrict(PREFIXES[prefix]) {
                Ok(_) | Err(Error::Refused { .. }) => {}
                Err(e) => panic!("{e}"),
            },
        }
    }
    for (r, db) in dbs.iter().enumerate() {
        let counts = oracle(db);
        let writers = db.writers();
        for key in KEYS {
            let expected: Answer = counting_writes(db, key, &counts)
                .iter()
                .map(|n| (writers[n.feed].key, n.seq))
                .collect();
            prop_assert_eq!(answer(db, key), expected, "replica {} key {}", r, key);
        }
    }
    // An observer learning replica 0's feeds in a shuffled order answers
    // as replica 0 does.
    let observer = causal::observer(&dbs[0], &keys, order_seed);
    local_sync::sync(&dbs[0], &observer).unwrap();
    for key in KEYS {
        prop_assert_eq!(
            answer(&observer, key),
            answer(&dbs[0], key),
            "observer, key {}",
            key
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_replica_in_every_order_answers_the_rule_on_the_whole_history(
        steps in proptest::collection::vec(step(), 1..30),
        seed in any::<u64>(),
    ) {
        run(&steps, seed)?;
    }
}

/// Every live key of a raw view with its values as text.
fn raw_listing(db: &Db) -> std::collections::BTreeMap<String, BTreeSet<String>> {
    db.snapshot()
        .unwrap()
        .raw()
        .list("")
        .unwrap()
        .into_iter()
        .map(|(k, nodes)| (k, nodes.iter().map(|n| n.value_str().unwrap()).collect()))
        .collect()
}

/// hyperdb 3.5.0 opens a database holding permission records, replicates
/// it (its one-shot sync ends), and shows what our raw view shows, also
/// of its own writes under a prefix the rule makes read-only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_reads_and_replicates_a_database_with_permissions() {
    use crate::support::js_values;
    use testkit::node;
    let tmp = tempfile::tempdir().unwrap();
    let path = |name: &str| tmp.path().join(name);
    let owner = Db::open(path("owner")).unwrap();
    let options = hyperdb::OpenOptions {
        key: Some(*owner.key()),
        ..Default::default()
    };
    let writer = Db::open_with(path("writer"), options.clone()).unwrap();
    let admin = Db::open_with(path("admin"), options).unwrap();
    owner.authorize(writer.local_key()).unwrap();
    make_admin(&owner, &admin);
    local_sync::sync(&owner, &writer).unwrap();
    local_sync::sync(&owner, &admin).unwrap();
    writer.put("kept", b"1").unwrap();
    local_sync::sync(&writer, &owner).unwrap();
    owner.revoke(writer.local_key()).unwrap();
    writer.put("kept", b"2").unwrap();
    writer.put("cut", b"3").unwrap();
    local_sync::sync(&owner, &writer).unwrap();
    local_sync::sync(&owner, &admin).unwrap();
    assert_eq!(values(&owner, "kept"), ["1"]);
    let raw = raw_listing(&owner);
    assert_eq!(raw["kept"], ["2".to_string()].into());
    assert_eq!(raw["cut"], ["3".to_string()].into());
    let key = hex::encode(owner.key());

    // The reference opens the owner's folder as it is.
    let dir = path("owner");
    let dump = tokio::task::spawn_blocking(move || node("db-dump.js", &[dir.to_str().unwrap()]))
        .await
        .unwrap();
    assert_eq!(js_values(&dump), raw);
    for db in [&writer, &admin] {
        let hex_key = hex::encode(db.local_key());
        assert_eq!(dump["authorized"][&hex_key], true, "{dump}");
    }

    // And replicates it from a Rust server: the one-shot sync ends.
    let (port, server) =
        crate::replicate_interop::serve(owner.clone(), hyperdb::ReplicateOptions::default()).await;
    let js_dir = path("js");
    let sync = |key: Option<String>| {
        let dir = js_dir.clone();
        tokio::task::spawn_blocking(move || {
            let mut args = vec![dir.to_str().unwrap().to_string(), port.to_string()];
            args.extend(key.into_iter().flat_map(|k| ["--key".to_string(), k]));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            node("db-sync.js", &args)
        })
    };
    let out = sync(Some(key.clone())).await.unwrap();
    assert_eq!(out["error"], serde_json::Value::Null, "{out}");
    let dump = node("db-dump.js", &[js_dir.to_str().unwrap()]);
    assert_eq!(js_values(&dump), raw);

    // A JS writer under a read-only prefix: the reference shows its write,
    // the rule does not.
    let js_local = hex::decode(out["localKey"].as_str().unwrap()).unwrap();
    owner.authorize(&js_local).unwrap();
    owner.restrict("config", &[]).unwrap();
    let out = sync(None).await.unwrap();
    assert_eq!(out["error"], serde_json::Value::Null, "{out}");
    let ops = r#"[{"type":"put","key":"config/x","value":"js"},{"type":"put","key":"free","value":"js"}]"#;
    let dir = js_dir.clone();
    tokio::task::spawn_blocking(move || node("db-ops.js", &[dir.to_str().unwrap(), "--ops", ops]))
        .await
        .unwrap();
    let out = sync(None).await.unwrap();
    assert_eq!(out["error"], serde_json::Value::Null, "{out}");
    server.abort();
    assert_eq!(values(&owner, "free"), ["js"]);
    assert!(values(&owner, "config/x").is_empty());
    assert_eq!(raw_values(&owner, "config/x"), ["js"]);
    let dump = node("db-dump.js", &[js_dir.to_str().unwrap()]);
    assert_eq!(js_values(&dump), raw_listing(&owner));
    assert_eq!(js_values(&dump)["config/x"], ["js".to_string()].into());
}
