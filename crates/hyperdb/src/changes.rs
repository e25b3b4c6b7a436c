//! Who is told that the database changed, and of what.
//!
//! Every local write and every stored input of replicated blocks publishes
//! the keys of the feeds it grew. A [`Subscription`] (a live replication
//! session, a watch) names the feeds it cares about and is woken only when
//! one of those grows, or when the set of feeds the database replicates
//! changes (a writer authorized, a content feed found), which concerns every
//! subscriber. A change published while a subscriber is busy elsewhere is
//! kept for its next [`Subscription::changed`]: nothing is missed, and a
//! burst of changes wakes it once.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

/// The database's list of subscribers.
#[derive(Default)]
pub(crate) struct Changes {
    hub: Mutex<Hub>,
}

#[derive(Default)]
struct Hub {
    subscribers: Vec<Weak<Inner>>,
    /// The feed-set generation last published.
    feed_set: u64,
}

#[derive(Default)]
struct Inner {
    notify: Notify,
    wanted: Mutex<Wanted>,
}

#[derive(Default)]
struct Wanted {
    all: bool,
    feeds: HashSet<[u8; 32]>,
    /// Ordered, so that what a subscriber hears does not depend on a
    /// hash seed (a simulation replays a run exactly).
    changed: BTreeSet<[u8; 32]>,
    feed_set: bool,
}

/// What changed since a subscriber last looked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changed {
    /// The feeds (by key) that grew, among those the subscriber wants.
    pub feeds: Vec<[u8; 32]>,
    /// Whether the set of feeds the database replicates changed: a writer
    /// was authorized or a content feed was found.
    pub feed_set: bool,
}

/// A subscriber to a database's changes, made by
/// [`DbReader::subscribe`](crate::DbReader::subscribe). It wants no feed
/// until told which ([`want`](Self::want), [`want_all`](Self::want_all));
/// changes of the feed set always reach it. Dropping the last clone
/// unsubscribes.
#[derive(Clone)]
pub struct Subscription {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let wanted = self.inner.wanted.lock().expect("changes lock");
        f.debug_struct("Subscription")
            .field("all", &wanted.all)
            .field("feeds", &wanted.feeds.len())
            .finish_non_exhaustive()
    }
}

impl Changes {
    /// No subscribers yet; `feed_set` is the database's feed-set
    /// generation as opened.
    pub(crate) fn new(feed_set: u64) -> Changes {
        Changes {
            hub: Mutex::new(Hub {
                subscribers: Vec::new(),
                feed_set,
            }),
        }
    }

    /// A new subscriber, wanting nothing yet.
    pub(crate) fn subscribe(&self) -> Subscription {
        let inner = Arc::new(Inner::default());
        let mut hub = self.hub.lock().expect("changes lock");
        hub.subscribers.retain(|s| s.strong_count() > 0);
        hub.subscribers.push(Arc::downgrade(&inner));
        Subscription { inner }
    }

    /// Tells every subscriber that wants one of `feeds` that it grew, and
    /// every subscriber when `feed_set` (a generation that moves whenever
    /// the replicated feed set changes) differs from the last one
    /// published. `from` (the publisher's own subscription) is not woken by
    /// its own change.
    pub(crate) fn publish(&self, feeds: &[[u8; 32]], feed_set: u64, from: Option<&Subscription>) {
        let mut hub = self.hub.lock().expect("changes lock");
        let set_changed = hub.feed_set != feed_set;
        hub.feed_set = feed_set;
        let from = from.map(|s| Arc::as_ptr(&s.inner));
        hub.subscribers.retain(|weak| {
            let Some(inner) = weak.upgrade() else {
                return false;
            };
            let mut wanted = inner.wanted.lock().expect("changes lock");
            let mut wake = set_changed && !wanted.feed_set;
            wanted.feed_set |= set_changed;
            if from != Some(Arc::as_ptr(&inner)) {
                for key in feeds {
                    if wanted.all || wanted.feeds.contains(key) {
                        wake |= wanted.changed.insert(*key);
                    }
                }
            }
            drop(wanted);
            if wake {
                // Stores a permit when the subscriber is not waiting.
                inner.notify.notify_one();
            }
            true
        });
    }
}

impl Subscription {
    /// Wants exactly `feeds` (by key) from now on; changes already
    /// published for other feeds are forgotten.
    pub fn want(&self, feeds: impl IntoIterator<Item = [u8; 32]>) {
        let mut wanted = self.inner.wanted.lock().expect("changes lock");
        wanted.all = false;
        wanted.feeds = feeds.into_iter().collect();
        let Wanted { feeds, changed, .. } = &mut *wanted;
        changed.retain(|k| feeds.contains(k));
    }

    /// Whether this subscription wants exactly `feeds` already (so a
    /// caller can skip rebuilding the set).
    pub fn wants_exactly(&self, feeds: &[[u8; 32]]) -> bool {
        let wanted = self.inner.wanted.lock().expect("changes lock");
        !wanted.all
            && wanted.feeds.len() == feeds.len()
            && feeds.iter().all(|k| wanted.feeds.contains(k))
    }

    /// Wants every feed, including ones the database learns of later.
    pub fn want_all(&self) {
        self.inner.wanted.lock().expect("changes lock").all = true;
    }

    /// What changed since the last call, without waiting; `None` when
    /// nothing did.
    pub fn try_changed(&self) -> Option<Changed> {
        let mut wanted = self.inner.wanted.lock().expect("changes lock");
        if wanted.changed.is_empty() && !wanted.feed_set {
            return None;
        }
        let feed_set = std::mem::take(&mut wanted.feed_set);
        Some(Changed {
            feeds: std::mem::take(&mut wanted.changed).into_iter().collect(),
            feed_set,
        })
    }

    /// Waits until something this subscription wants changes (or the feed
    /// set does), and says what. Cancel-safe: a change is kept until a call
    /// returns it.
    pub async fn changed(&self) -> Changed {
        loop {
            if let Some(changed) = self.try_changed() {
                return changed;
            }
            self.inner.notify.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_subscribers_that_want_a_feed_hear_of_it() {
        let changes = Changes::default();
        let (a, b, all) = (
            changes.subscribe(),
            changes.subscribe(),
            changes.subscribe(),
        );
        a.want([[1; 32]]);
        b.want([[2; 32]]);
        all.want_all();
        changes.publish(&[[1; 32]], 0, None);
        assert_eq!(a.try_changed().unwrap().feeds, vec![[1; 32]]);
        assert_eq!(b.try_changed(), None);
        assert_eq!(all.try_changed().unwrap().feeds, vec![[1; 32]]);
        // A change is reported once.
        assert_eq!(a.try_changed(), None);
    }

    #[test]
    fn a_feed_set_change_reaches_everyone_but_a_publisher_skips_its_own_growth() {
        let changes = Changes::default();
        let (a, b) = (changes.subscribe(), changes.subscribe());
        a.want([[1; 32]]);
        b.want([[1; 32]]);
        changes.publish(&[[1; 32]], 7, Some(&a));
        assert_eq!(
            a.try_changed(),
            Some(Changed {
                feeds: vec![],
                feed_set: true
            })
        );
        assert_eq!(
            b.try_changed(),
            Some(Changed {
                feeds: vec![[1; 32]],
                feed_set: true
            })
        );
        // The same generation again is no change of the feed set.
        changes.publish(&[], 7, None);
        assert_eq!(a.try_changed(), None);
    }

    #[tokio::test]
    async fn a_change_made_while_nobody_waits_is_not_lost() {
        let changes = Changes::default();
        let a = changes.subscribe();
        a.want([[3; 32]]);
        changes.publish(&[[3; 32]], 0, None);
        changes.publish(&[[3; 32]], 0, None);
        let changed = tokio::time::timeout(std::time::Duration::from_secs(5), a.changed())
            .await
            .expect("woken");
        assert_eq!(changed.feeds, vec![[3; 32]]);
        // Both publications were one change; nothing is left.
        assert_eq!(a.try_changed(), None);
    }

    #[test]
    fn a_dropped_subscription_leaves_the_list() {
        let changes = Changes::default();
        let a = changes.subscribe();
        drop(a);
        let _b = changes.subscribe();
        changes.publish(&[], 0, None);
        assert_eq!(changes.hub.lock().unwrap().subscribers.len(), 1);
    }
}
