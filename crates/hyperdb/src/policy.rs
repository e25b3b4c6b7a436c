//! Who may write: revocations with a causal cut-off and per-prefix
//! permissions, decided alike on every replica.
//!
//! hyperdb 3.5.0 lets any authorized writer list a new one, and nothing
//! is ever taken back. This module adds signed permission records
//! ([`Record`], carried in field 16 of an inflated entry, which hyperdb
//! 3.5.0 skips) and decides from them which entries *count*:
//!
//! - The **owner** (the source feed's writer) always counts and cannot be
//!   revoked. Only the owner makes **admins** (a grant record with
//!   `admin`) and only the owner revokes them. An admin's records count
//!   from its entries that have seen the grant that made it admin, up to
//!   the cut of an owner revocation.
//! - **Writers** are authorized as in hyperdb 3.5.0, by being listed: a
//!   listing counts when it is an *origin* listing (its writer had not
//!   seen another writer list the same key; later listings only echo it,
//!   as every writer lists every feed it numbers) in an entry that counts,
//!   by a writer that may write anywhere, and seen by every grant record
//!   of the same writer (a record wins over a listing made without
//!   knowing it). Authorization is retroactive, as in hyperdb 3.5.0. A
//!   grant record of the owner or an admin authorizes too, and may limit
//!   the writer to **prefixes**: it writes only under them (the union of
//!   its grants), and authorizes no one.
//! - A **revocation** of writer W by the owner, or by an admin when W was
//!   never made an admin, cuts W at `clock[W]` of the revoking entry: W's
//!   entries the revoker had seen keep counting, the later ones do not,
//!   whatever W's own clocks claim (its feed is append-only and signed,
//!   so it cannot move an entry before the cut). An entry of W at or past
//!   a cut counts again only when it has seen a grant record for W, by the
//!   owner or an admin, that has seen that revocation, and then within the
//!   prefixes of the restoring grants it has seen: a grant concurrent with
//!   a revocation loses to it, and a plain listing never restores. With
//!   several revocations, every one must be passed.
//! - A **restriction** of prefix P to writers S, by the owner or an admin,
//!   cuts every other writer (not the owner, not an admin) under P at its
//!   `clock`, as a revocation does, for keys under P only. A later
//!   restriction or an unrestriction of P that has seen it lifts it for the
//!   entries that have seen that one. Prefixes match whole components of
//!   hyperdb's keys (`config` covers `config/x` and `/config//x/`, not
//!   `configuration`).
//! - Records count only in inflated entries that count. Everything is
//!   decided from the entries within a view (the heads' causal past), so
//!   replicas holding the same feeds agree whatever order they learned
//!   them in.
//!
//! Reads apply it in lookups (`get.rs`): an entry that does not count is
//! transparent. A lookup that finds it looks again from what it had seen,
//! so it neither gives a value nor hides an older one, and an entry that
//! counts and had seen it still supersedes what it had seen.

use std::sync::Arc;

use crate::db::DbReader;
use crate::error::Result;
use crate::hash::parts;
use crate::messages::PolicyRecord;
use crate::node::Node;

/// A permission change, as an inflated entry carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// Authorizes `writer` (an admin when `admin`, only under `prefixes`
    /// when there are some); after a revocation the grant has seen, it
    /// restores the writer's entries that see it.
    Grant {
        /// The writer's feed key.
        writer: [u8; 32],
        /// Whether it makes the writer an admin.
        admin: bool,
        /// Where the writer may write (none: anywhere).
        prefixes: Vec<String>,
    },
    /// Revokes `writer` from the entries its issuer had not seen on.
    Revoke {
        /// The writer's feed key.
        writer: [u8; 32],
    },
    /// Lets only `writers` (and the owner and admins) write under `prefix`
    /// from the entries the issuer had not seen on.
    Restrict {
        /// The prefix.
        prefix: String,
        /// The writers that still may.
        writers: Vec<[u8; 32]>,
    },
    /// Lifts the restrictions of `prefix` that it has seen.
    Unrestrict {
        /// The prefix.
        prefix: String,
    },
}

impl Record {
    /// Decodes the message; `None` for kinds this version does not know
    /// (they change nothing) or one with a key that is not 32 bytes.
    pub fn decode(message: &PolicyRecord) -> Option<Record> {
        let writer = || -> Option<[u8; 32]> { message.writer.as_deref()?.try_into().ok() };
        match message.action {
            PolicyRecord::GRANT => Some(Record::Grant {
                writer: writer()?,
                admin: message.admin.unwrap_or(false),
                prefixes: message.prefixes.clone(),
            }),
            PolicyRecord::REVOKE => Some(Record::Revoke { writer: writer()? }),
            PolicyRecord::RESTRICT => Some(Record::Restrict {
                prefix: message.prefix.clone()?,
                writers: message
                    .writers
                    .iter()
                    .map(|w| w.as_slice().try_into().ok())
                    .collect::<Option<_>>()?,
            }),
            PolicyRecord::UNRESTRICT => Some(Record::Unrestrict {
                prefix: message.prefix.clone()?,
            }),
            _ => None,
        }
    }

    /// The message to store.
    pub fn encode(&self) -> PolicyRecord {
        let mut message = PolicyRecord {
            action: 0,
            writer: None,
            admin: None,
            prefixes: Vec::new(),
            prefix: None,
            writers: Vec::new(),
        };
        match self {
            Record::Grant {
                writer,
                admin,
                prefixes,
            } => {
                message.action = PolicyRecord::GRANT;
                message.writer = Some(writer.to_vec());
                message.admin = admin.then_some(true);
                message.prefixes = prefixes.clone();
            }
            Record::Revoke { writer } => {
                message.action = PolicyRecord::REVOKE;
                message.writer = Some(writer.to_vec());
            }
            Record::Restrict { prefix, writers } => {
                message.action = PolicyRecord::RESTRICT;
                message.prefix = Some(prefix.clone());
                message.writers = writers.iter().map(|w| w.to_vec()).collect();
            }
            Record::Unrestrict { prefix } => {
                message.action = PolicyRecord::UNRESTRICT;
                message.prefix = Some(prefix.clone());
            }
        }
        message
    }

    /// The writer it is about (grants and revocations).
    pub fn writer(&self) -> Option<&[u8; 32]> {
        match self {
            Record::Grant { writer, .. } | Record::Revoke { writer } => Some(writer),
            Record::Restrict { .. } | Record::Unrestrict { .. } => None,
        }
    }
}

/// Whether `key` is `prefix` or under it, component by component, as
/// hyperdb splits keys.
pub fn is_under(key: &str, prefix: &str) -> bool {
    let mut key = parts(key);
    parts(prefix).all(|p| key.next() == Some(p))
}

/// Whether two prefixes name the same place.
pub(crate) fn same_prefix(a: &str, b: &str) -> bool {
    parts(a).eq(parts(b))
}

/// What the policy needs of one inflated entry.
#[derive(Clone, Debug)]
struct Marker {
    seq: u64,
    clock: Vec<u64>,
    /// Keys it lists that its writer's earlier inflated entries did not.
    listed: Vec<[u8; 32]>,
    record: Option<Record>,
}

/// Whether entry `seq` of writer `feed` (with `clock`) had seen entry
/// `other_seq` of writer `other`.
fn saw(feed: usize, seq: u64, clock: &[u64], other: usize, other_seq: u64) -> bool {
    if feed == other {
        other_seq < seq
    } else {
        clock.get(other).copied().unwrap_or(0) > other_seq
    }
}

/// Where a writer may write: anywhere, or under some prefixes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Scope {
    anywhere: bool,
    prefixes: Vec<String>,
}

impl Scope {
    fn of_grant(admin: bool, prefixes: &[String]) -> Scope {
        Scope {
            anywhere: admin || prefixes.is_empty(),
            prefixes: prefixes.to_vec(),
        }
    }

    fn add(&mut self, other: &Scope) {
        self.anywhere |= other.anywhere;
        for p in &other.prefixes {
            if !self.prefixes.iter().any(|q| same_prefix(p, q)) {
                self.prefixes.push(p.clone());
            }
        }
    }

    fn allows(&self, key: &str) -> bool {
        self.anywhere || key.is_empty() || self.prefixes.iter().any(|p| is_under(key, p))
    }
}

/// A cut of one writer by a revocation that counts.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Cut {
    /// The writer's first entry that no longer counts.
    at: u64,
    /// The revoking entry.
    by: (usize, u64),
    /// Grants that have seen the revocation: an entry that has seen one
    /// of them passes this cut, within its scope.
    restores: Vec<(usize, u64, Scope)>,
}

/// A restriction that counts.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Restriction {
    prefix: String,
    /// The writers it lets write there, by number.
    members: Vec<usize>,
    /// Member keys, as the record gave them.
    keys: Vec<[u8; 32]>,
    /// The restricting entry's clock.
    clock: Vec<u64>,
    /// Restrictions and unrestrictions of the same prefix that have seen
    /// it: an entry that has seen one of them passes this one.
    lifted_by: Vec<(usize, u64)>,
}

/// A writer's standing under the policy of one view.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Standing {
    authorized: bool,
    /// An admin now (by the owner's latest record about it).
    admin: bool,
    /// The owner made it an admin at some point: no admin may revoke it.
    ever_admin: bool,
    /// This replica's own writer, which no one lists: its entries count
    /// here (as in hyperdb 3.5.0), though it is not authorized.
    local_only: bool,
    /// The owner's admin grants of it (seqs in the owner's feed), and its
    /// revocations (seq, cut).
    admin_grants: Vec<u64>,
    admin_revokes: Vec<(u64, u64)>,
    /// Where its entries before any cut may write.
    scope: Scope,
    cuts: Vec<Cut>,
}

impl Standing {
    /// Whether entry `seq` (with `clock`) of this writer may act as an
    /// admin: it has seen an admin grant, and every owner revocation it
    /// is past was followed by an admin grant it has seen.
    fn admin_at(&self, feed: usize, seq: u64, clock: &[u64]) -> bool {
        feed != 0
            && self
                .admin_grants
                .iter()
                .any(|&g| saw(feed, seq, clock, 0, g))
            && self.admin_revokes.iter().all(|&(r, cut)| {
                seq < cut
                    || self
                        .admin_grants
                        .iter()
                        .any(|&g| g > r && saw(feed, seq, clock, 0, g))
            })
    }

    /// Where entry `seq` (with `clock`) may write, when it passes every
    /// cut: `None` when it does not.
    fn scope_at(&self, feed: usize, seq: u64, clock: &[u64]) -> Option<Scope> {
        let mut restored = Scope::default();
        let mut past_a_cut = false;
        for cut in &self.cuts {
            if seq < cut.at {
                continue;
            }
            past_a_cut = true;
            let mut passed = false;
            for (f, s, scope) in &cut.restores {
                if saw(feed, seq, clock, *f, *s) {
                    passed = true;
                    restored.add(scope);
                }
            }
            if !passed {
                return None;
            }
        }
        Some(if past_a_cut {
            restored
        } else {
            self.scope.clone()
        })
    }
}

/// Which entries count in one view of the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Policy {
    writers: Vec<Standing>,
    restrictions: Vec<Restriction>,
}

/// How one writer stands under the policy, as [`DbReader::permissions`]
/// reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permission {
    /// The writer's feed key.
    pub key: [u8; 32],
    /// `owner`, `admin`, `writer`, or `none` (not authorized).
    pub role: &'static str,
    /// The prefixes it may write under; `None`: anywhere.
    pub prefixes: Option<Vec<String>>,
    /// The writer's first entry a revocation cut off (its entries from
    /// there on do not count), when a revocation counts.
    pub revoked_from: Option<u64>,
    /// Whether a later grant that saw every revocation restores the
    /// writer's entries that have seen it.
    pub restored: bool,
    /// The owner made it an admin at some point (so no admin may revoke
    /// it, even after the owner revoked that role).
    pub ever_admin: bool,
}

/// A restriction in force, as [`DbReader::restrictions`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestrictionInfo {
    /// The prefix.
    pub prefix: String,
    /// The writers that still may write there (besides the owner and
    /// admins).
    pub writers: Vec<[u8; 32]>,
}

impl Policy {
    /// Whether `node` counts in answers.
    pub(crate) fn counts(&self, node: &Node) -> bool {
        let feed = node.feed;
        if feed == 0 {
            return true;
        }
        let Some(standing) = self.writers.get(feed) else {
            return false;
        };
        if !(standing.authorized || standing.local_only) {
            return false;
        }
        let Some(scope) = standing.scope_at(feed, node.seq, &node.clock) else {
            return false;
        };
        if !(standing.local_only || scope.allows(&node.key)) {
            return false;
        }
        let restricted = |x: &Restriction| {
            is_under(&node.key, &x.prefix)
                && node.seq >= x.clock.get(feed).copied().unwrap_or(0)
                && !x.members.contains(&feed)
                && !x
                    .lifted_by
                    .iter()
                    .any(|&(f, s)| saw(feed, node.seq, &node.clock, f, s))
        };
        if node.key.is_empty() || !self.restrictions.iter().any(restricted) {
            return true;
        }
        standing.admin_at(feed, node.seq, &node.clock)
    }
}

/// Decides the policy from every writer's inflated entries (`chains[id]`,
/// ascending), `local` being this replica's writer (shown to itself while
/// no one lists it, as hyperdb 3.5.0 does) and `id` the writer number of a
/// key.
fn evaluate(chains: &[&[Marker]], local: usize, id: &dyn Fn(&[u8; 32]) -> Option<usize>) -> Policy {
    let n = chains.len();
    let mut policy = Policy {
        writers: vec![Standing::default(); n],
        restrictions: Vec::new(),
    };
    if n == 0 {
        return policy;
    }
    policy.writers[0].authorized = true;
    policy.writers[0].scope.anywhere = true;
    // Every record with its issuer, and the writer it names, if known here.
    let records: Vec<(usize, &Marker, &Record, Option<usize>)> = chains
        .iter()
        .enumerate()
        .flat_map(|(feed, chain)| {
            chain.iter().filter_map(move |m| {
                let record = m.record.as_ref()?;
                Some((feed, m, record, record.writer().and_then(id)))
            })
        })
        .collect();
    // The owner's records, in its feed's order: admins made and revoked.
    for &(feed, m, record, w) in &records {
        let Some(w) = w.filter(|&w| feed == 0 && w != 0) else {
            continue;
        };
        let standing = &mut policy.writers[w];
        match record {
            Record::Grant { admin: true, .. } => {
                standing.admin_grants.push(m.seq);
                standing.admin = true;
                standing.ever_admin = true;
            }
            Record::Revoke { .. } => {
                standing
                    .admin_revokes
                    .push((m.seq, m.clock.get(w).copied().unwrap_or(0)));
                standing.admin = false;
            }
            _ => {}
        }
    }
    let may_manage = |policy: &Policy, feed: usize, m: &Marker| {
        feed == 0 || policy.writers[feed].admin_at(feed, m.seq, &m.clock)
    };
    // Revocations that count.
    for &(feed, m, record, w) in &records {
        let (Record::Revoke { .. }, Some(w)) = (record, w) else {
            continue;
        };
        let may = w != 0
            && w != feed
            && may_manage(&policy, feed, m)
            && (feed == 0 || !policy.writers[w].ever_admin);
        if may {
            policy.writers[w].cuts.push(Cut {
                at: m.clock.get(w).copied().unwrap_or(0),
                by: (feed, m.seq),
                restores: Vec::new(),
            });
        }
    }
    // Grant records: they authorize, widen the scope, and restore the
    // cuts they have seen.
    let mut grants: Vec<Vec<(usize, &Marker)>> = vec![Vec::new(); n];
    for &(feed, m, record, w) in &records {
        let (
            Record::Grant {
                admin, prefixes, ..
            },
            Some(w),
        ) = (record, w)
        else {
            continue;
        };
        let may = w != 0 && w != feed && (feed == 0 || (!admin && may_manage(&policy, feed, m)));
        if !may {
            continue;
        }
        let scope = Scope::of_grant(*admin, prefixes);
        grants[w].push((feed, m));
        let standing = &mut policy.writers[w];
        standing.authorized = true;
        standing.scope.add(&scope);
        for cut in &mut standing.cuts {
            if saw(feed, m.seq, &m.clock, cut.by.0, cut.by.1) {
                cut.restores.push((feed, m.seq, scope.clone()));
            }
        }
    }
    // Restrictions, and what lifts them.
    let mut prefix_records = Vec::new();
    for &(feed, m, record, _) in &records {
        let prefix = match record {
            Record::Restrict { prefix, .. } | Record::Unrestrict { prefix } => prefix,
            _ => continue,
        };
        if may_manage(&policy, feed, m) {
            prefix_records.push((feed, m, record, prefix));
        }
    }
    for &(feed, m, record, prefix) in &prefix_records {
        let Record::Restrict { writers, .. } = record else {
            continue;
        };
        let lifted_by = prefix_records
            .iter()
            .filter(|&&(f, o, _, p)| {
                (f, o.seq) != (feed, m.seq)
                    && same_prefix(p, prefix)
                    && saw(f, o.seq, &o.clock, feed, m.seq)
            })
            .map(|&(f, o, _, _)| (f, o.seq))
            .collect();
        policy.restrictions.push(Restriction {
            prefix: prefix.clone(),
            members: writers.iter().filter_map(id).collect(),
            keys: writers.clone(),
            clock: m.clock.clone(),
            lifted_by,
        });
    }
    // Listings: each writer's first listing of each key; an origin listing
    // had seen no other writer's first listing of it. A listing entry that
    // carries a grant record for the key is that grant, not a plain one.
    // Grouped by the writer listed: a database's writers all list each
    // other, and only listings of one writer are compared.
    let mut first: Vec<Vec<(usize, &Marker)>> = vec![Vec::new(); n];
    for (feed, chain) in chains.iter().enumerate() {
        for m in chain.iter() {
            for key in &m.listed {
                if let Some(w) = id(key).filter(|&w| w != feed) {
                    first[w].push((feed, m));
                }
            }
        }
    }
    let mut origins: Vec<(usize, &Marker, usize)> = Vec::new();
    for (w, listings) in first.iter().enumerate() {
        for &(feed, m) in listings {
            let granted_here = matches!(
                &m.record,
                Some(Record::Grant { writer, .. }) if id(writer) == Some(w)
            );
            let echo = listings
                .iter()
                .any(|&(f, o)| f != feed && saw(feed, m.seq, &m.clock, f, o.seq));
            if !granted_here && !echo {
                origins.push((feed, m, w));
            }
        }
    }
    // A plain listing grants only what every grant record of the writer
    // has seen: a record (limited to prefixes, say) wins over a listing
    // made without knowing it.
    let origins: Vec<(usize, &Marker, usize)> = origins
        .into_iter()
        .filter(|&(feed, m, w)| {
            grants[w]
                .iter()
                .all(|&(f, g)| saw(f, g.seq, &g.clock, feed, m.seq))
        })
        .collect();
    loop {
        let mut changed = false;
        for &(feed, m, w) in &origins {
            let issuer = &policy.writers[feed];
            let anywhere = issuer
                .scope_at(feed, m.seq, &m.clock)
                .is_some_and(|s| s.anywhere);
            let may = issuer.authorized && anywhere;
            if may && !(policy.writers[w].authorized && policy.writers[w].scope.anywhere) {
                policy.writers[w].authorized = true;
                policy.writers[w].scope.anywhere = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    if local < n && first[local].is_empty() {
        policy.writers[local].local_only = true;
    }
    policy
}

/// The inflated entries read so far of one writer.
#[derive(Default)]
struct Chain {
    /// Entries below this seq have been looked at.
    scanned: u64,
    markers: Vec<Marker>,
}

/// Every writer's chain, the policy of the last view asked for, and the
/// last policy decided, with how many of each writer's inflated entries
/// it was decided from.
#[derive(Default)]
pub(crate) struct Memo {
    chains: Vec<Chain>,
    last: Option<Last>,
    decided: Option<(Vec<usize>, Option<Arc<Policy>>)>,
}

/// The last view a policy was decided for.
struct Last {
    /// Its heads, as (writer, seq), and which writers were counted.
    heads: Vec<(usize, u64)>,
    included: Vec<bool>,
    /// How much of every writer it holds.
    lengths: Vec<u64>,
    policy: Option<Arc<Policy>>,
}

impl DbReader {
    /// The policy of the view whose heads are `heads`: `None` while no
    /// entry in it carries a record (everything counts as in hyperdb
    /// 3.5.0).
    pub(crate) fn policy_for(&self, heads: &[Arc<Node>]) -> Result<Option<Arc<Policy>>> {
        // Lock-free, as a lookup is: writers' shared parts only.
        let writers = self.registry.len();
        let shared = |u: usize| self.registry.get(u).expect("a known writer");
        let is_included = |u: usize| {
            shared(u)
                .included
                .load(std::sync::atomic::Ordering::Acquire)
        };
        let mut memo = self.policy.lock();
        // A lookup asks for the same view as the one before it, mostly:
        // answered without allocating.
        if let Some(last) = &memo.last {
            let same_heads = last.heads.len() == heads.len()
                && last
                    .heads
                    .iter()
                    .zip(heads)
                    .all(|(&(feed, seq), h)| (feed, seq) == (h.feed, h.seq));
            let same_writers = last.included.len() == writers
                && (0..writers).all(|u| last.included[u] == is_included(u));
            if same_heads && same_writers {
                return Ok(last.policy.clone());
            }
        }
        let included: Vec<bool> = (0..writers).map(is_included).collect();
        let at: Vec<(usize, u64)> = heads.iter().map(|h| (h.feed, h.seq)).collect();
        let lengths: Vec<u64> = (0..writers)
            .map(|u| {
                if !included[u] {
                    return 0;
                }
                heads
                    .iter()
                    .map(|h| {
                        if h.feed == u {
                            h.seq + 1
                        } else {
                            h.clock.get(u).copied().unwrap_or(0)
                        }
                    })
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        if let Some(last) = &mut memo.last {
            if last.lengths == lengths {
                last.heads = at;
                last.included = included;
                return Ok(last.policy.clone());
            }
        }
        if memo.chains.len() < writers {
            memo.chains.resize_with(writers, Chain::default);
        }
        // Each writer's inflated entries in the view: a count of the ones
        // kept, or (when some are not stored here) the ones found.
        let mut partial: Vec<Option<Vec<Marker>>> = Vec::with_capacity(writers);
        let mut counts = Vec::with_capacity(writers);
        for (u, &length) in lengths.iter().enumerate() {
            let (count, found) = self.chain(&mut memo.chains[u], u, length)?;
            counts.push(count);
            partial.push(found);
        }
        let whole = partial.iter().all(Option::is_none);
        let reuse = match &memo.decided {
            Some((from, policy)) if whole && *from == counts => Some(policy.clone()),
            _ => None,
        };
        let policy = match reuse {
            // Plain writes since: the same records, the same policy.
            Some(policy) => policy,
            None => {
                let chains: Vec<&[Marker]> = partial
                    .iter()
                    .zip(&memo.chains)
                    .zip(&counts)
                    .map(|((found, chain), &count)| match found {
                        Some(found) => &found[..],
                        None => &chain.markers[..count],
                    })
                    .collect();
                let policy = if chains.iter().any(|c| c.iter().any(|m| m.record.is_some())) {
                    let ids: std::collections::HashMap<[u8; 32], usize> =
                        (0..writers).map(|u| (shared(u).key, u)).collect();
                    let id = |key: &[u8; 32]| ids.get(key).copied();
                    Some(Arc::new(evaluate(&chains, self.local, &id)))
                } else {
                    None
                };
                if whole {
                    memo.decided = Some((counts, policy.clone()));
                }
                policy
            }
        };
        memo.last = Some(Last {
            heads: at,
            included,
            lengths,
            policy: policy.clone(),
        });
        Ok(policy)
    }

    /// Writer `id`'s inflated entries below `length`, reading back along
    /// the `inflate` pointers from where `chain` left off and keeping what
    /// it finds there: how many of `chain`'s markers are below `length`,
    /// or, when an entry on the way is not stored here (yet), the markers
    /// found, which are not kept (the walk starts over when asked again).
    fn chain(
        &self,
        chain: &mut Chain,
        id: usize,
        length: u64,
    ) -> Result<(usize, Option<Vec<Marker>>)> {
        if length <= chain.scanned {
            return Ok((chain.markers.partition_point(|m| m.seq < length), None));
        }
        let mut found = Vec::new();
        let mut seq = length - 1;
        // An entry that does not decode ends the walk: its signed bytes are
        // the same on every replica, so they all stop there.
        let mut whole = true;
        let mut read = |seq: u64| match self.scan_node(id, seq) {
            Err(e) if e.is_undecodable() => Ok(None),
            Ok(None) => {
                whole = false;
                Ok(None)
            }
            other => other,
        };
        while seq >= chain.scanned.max(1) {
            let Some(node) = read(seq)? else {
                break;
            };
            let inflated = if node.feeds.is_some() {
                node
            } else if node.inflate >= chain.scanned.max(1) && node.inflate < seq {
                match read(node.inflate)? {
                    Some(n) if n.feeds.is_some() => n,
                    _ => break,
                }
            } else {
                break;
            };
            found.push(inflated.clone());
            if inflated.seq <= 1 {
                break;
            }
            seq = inflated.seq - 1;
        }
        let mut markers = if whole {
            std::mem::take(&mut chain.markers)
        } else {
            chain.markers.clone()
        };
        if !found.is_empty() {
            // Oldest first; each lists what the ones before did not.
            let mut before: std::collections::HashSet<[u8; 32]> = markers
                .iter()
                .flat_map(|m| m.listed.iter().copied())
                .collect();
            for node in found.into_iter().rev() {
                let feeds = node.feeds.as_deref().unwrap_or(&[]);
                let listed: Vec<[u8; 32]> = feeds
                    .iter()
                    .filter(|k| before.insert(**k))
                    .copied()
                    .collect();
                let record = node.policy.as_deref().cloned();
                if !listed.is_empty() || record.is_some() {
                    markers.push(Marker {
                        seq: node.seq,
                        clock: node.clock.clone(),
                        listed,
                        record,
                    });
                }
            }
        }
        if !whole {
            return Ok((markers.len(), Some(markers)));
        }
        chain.markers = markers;
        chain.scanned = length;
        Ok((chain.markers.len(), None))
    }

    /// Whether the writer with feed `key` may write now: authorized, and
    /// not revoked (or authorized again since). [`DbReader::is_authorized`]
    /// answers as hyperdb 3.5.0 does, which never revokes.
    pub fn may_write(&self, key: &[u8]) -> Result<bool> {
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| crate::Error::BadKeyLength(key.len()))?;
        Ok(self
            .permissions()?
            .iter()
            .any(|p| p.key == key && p.role != "none" && (p.revoked_from.is_none() || p.restored)))
    }

    /// The restrictions in force in the current view: every restriction
    /// that counts and that no later one of its prefix (which has seen it)
    /// lifts.
    pub fn restrictions(&self) -> Result<Vec<RestrictionInfo>> {
        let heads = self.heads()?;
        let Some(policy) = self.policy_for(&heads)? else {
            return Ok(Vec::new());
        };
        Ok(policy
            .restrictions
            .iter()
            .filter(|x| x.lifted_by.is_empty())
            .map(|x| RestrictionInfo {
                prefix: x.prefix.clone(),
                writers: x.keys.clone(),
            })
            .collect())
    }

    /// Every writer's standing under the policy of the current view: its
    /// role, and from which of its entries on it is revoked.
    pub fn permissions(&self) -> Result<Vec<Permission>> {
        let heads = self.heads()?;
        let policy = self.policy_for(&heads)?;
        let writers = self.writers();
        Ok(writers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let standing = policy.as_ref().and_then(|p| p.writers.get(i));
                let authorized = standing.map_or(w.authorized, |s| s.authorized);
                let standing = standing.filter(|_| authorized);
                let role = if i == 0 {
                    "owner"
                } else if standing.is_some_and(|s| s.admin) {
                    "admin"
                } else if authorized {
                    "writer"
                } else {
                    "none"
                };
                let cuts = standing.map_or(&[][..], |s| &s.cuts[..]);
                let prefixes = standing
                    .filter(|s| i != 0 && !s.scope.anywhere && !s.local_only)
                    .map(|s| s.scope.prefixes.clone());
                Permission {
                    key: w.key,
                    role,
                    prefixes,
                    revoked_from: cuts.iter().map(|c| c.at).min(),
                    restored: !cuts.is_empty() && cuts.iter().all(|c| !c.restores.is_empty()),
                    ever_admin: standing.is_some_and(|s| s.ever_admin),
                }
            })
            .collect())
    }
}
