//! Differences between two views of a database under a prefix, as
//! hyperdb 3.5.0's diff stream reports them, and watching a prefix.

use std::sync::Arc;

use crate::db::DbReader;
use crate::error::Result;
use crate::iter::IterOptions;
use crate::node::Node;

/// One difference: the key's current writes on the left (the newer view)
/// and on the right (the older one); `None` where the key has none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The key.
    pub key: String,
    /// Its writes in the left view.
    pub left: Option<Vec<Arc<Node>>>,
    /// Its writes in the right view.
    pub right: Option<Vec<Arc<Node>>>,
}

type Entry = (String, Vec<Arc<Node>>);

/// The keys whose writes differ between two listings in the reference's
/// iteration order, merged as its differ does: equal keys are compared,
/// otherwise the side whose path sorts first (`digits@key`) is reported
/// alone and advanced.
pub(crate) fn merge(left: Vec<Entry>, right: Vec<Entry>) -> Vec<Change> {
    let sort_key = |(key, nodes): &Entry| {
        let digits: String = nodes[0].path.iter().map(|d| char::from(b'0' + d)).collect();
        format!("{digits}@{key}")
    };
    let (mut l, mut r) = (left.into_iter().peekable(), right.into_iter().peekable());
    let mut changes = Vec::new();
    loop {
        match (l.peek(), r.peek()) {
            (None, None) => return changes,
            (Some(_), None) | (None, Some(_)) => {
                let left = l.next();
                let right = r.next();
                let key = left
                    .as_ref()
                    .or(right.as_ref())
                    .map(|e| e.0.clone())
                    .expect("one side");
                changes.push(Change {
                    key,
                    left: left.map(|e| e.1),
                    right: right.map(|e| e.1),
                });
            }
            (Some(a), Some(b)) => {
                if a.0 == b.0 {
                    let (a, b) = (l.next().expect("peeked"), r.next().expect("peeked"));
                    let same = a.1.len() == b.1.len()
                        && a.1
                            .iter()
                            .zip(&b.1)
                            .all(|(x, y)| x.feed == y.feed && x.seq == y.seq);
                    if !same {
                        changes.push(Change {
                            key: a.0,
                            left: Some(a.1),
                            right: Some(b.1),
                        });
                    }
                } else if sort_key(a) < sort_key(b) {
                    let a = l.next().expect("peeked");
                    changes.push(Change {
                        key: a.0,
                        left: Some(a.1),
                        right: None,
                    });
                } else {
                    let b = r.next().expect("peeked");
                    changes.push(Change {
                        key: b.0,
                        left: None,
                        right: Some(b.1),
                    });
                }
            }
        }
    }
}

impl crate::Checkout<'_> {
    /// What changed under `prefix` between `older` (the right side) and
    /// this view (the left side). Each side reads as it is set: under the
    /// permission rule, or raw.
    pub fn diff(&self, older: &crate::Checkout<'_>, prefix: &str) -> Result<Vec<Change>> {
        let right: Vec<Entry> = older
            .iter(prefix, IterOptions::default())?
            .collect::<Result<_>>()?;
        let left: Vec<Entry> = self
            .iter(prefix, IterOptions::default())?
            .collect::<Result<_>>()?;
        Ok(merge(left, right))
    }
}

/// What a watch compares: the nodes closest to its prefix, and the policy.
pub(crate) type Watched = (
    Vec<(usize, u64)>,
    Option<std::sync::Arc<crate::policy::Policy>>,
);

impl DbReader {
    /// What changed under `prefix` between the database as it was at
    /// `version` (the right side) and now (the left side).
    pub fn diff(&self, version: &[u8], prefix: &str) -> Result<Vec<Change>> {
        self.snapshot()?.diff(&self.checkout(version)?, prefix)
    }

    /// Starts watching `prefix`: [`Watch::changed`] then says whether
    /// anything under it changed since the last call.
    pub fn watch(&self, prefix: &str) -> Result<Watch> {
        let watched = self.prefix_nodes(prefix)?;
        Ok(Watch {
            prefix: crate::hash::normalize(prefix).to_string(),
            watched,
        })
    }
}

/// A watched prefix (see [`DbReader::watch`]).
#[derive(Clone, Debug)]
pub struct Watch {
    prefix: String,
    watched: Watched,
}

impl Watch {
    /// The prefix watched.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether something under the prefix changed (a local write, one
    /// that arrived by replication, or what counts, when a revocation
    /// arrived) since the watch started or since the
    /// last call that returned true.
    pub fn changed(&mut self, db: &DbReader) -> Result<bool> {
        let watched = db.prefix_nodes(&self.prefix)?;
        if watched == self.watched {
            return Ok(false);
        }
        self.watched = watched;
        Ok(true)
    }
}
