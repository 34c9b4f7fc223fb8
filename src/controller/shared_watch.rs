//! One watch of a kind, its cache, and any number of trigger streams fed from it.
//!
//! Why not kube-runtime's own fan-out (`store_shared` + `Writer::subscribe`): in 5.0 its
//! dispatcher passes on applied objects only, never deletions (kube-rs/kube#1590, still open),
//! and a `ReflectHandle` whose object is gone from the store by the time it is polled returns
//! `Pending` without a wake-up. A child deleted by hand would then never reach its owner, and a
//! deleted product never free its siblings' quota. So the watch here feeds a plain reflector
//! and hands each subscriber, through its own unbounded channel, every applied and (if asked)
//! deleted object, as the `Arc<K>` streams `Controller::for_shared_stream`,
//! `watches_shared_stream` and `owns_shared_stream` take. Unbounded, because a controller
//! drains its triggers into its scheduler (which merges repeats) as fast as they come, and a
//! bounded channel would let one slow subscriber stall the watch for every other.
//!
//! Ordering: `kube::runtime::reflector` applies each event to the store *before* it yields the
//! event (`writer.apply_watcher_event(&ev)` then `yield`), and [`SharedWatch::run`] sends to
//! subscribers only after that, so a reconcile a subscriber triggers reads a store that holds
//! the event or a newer one. A (re)list is passed on once it is complete (at `InitDone`, when
//! the store has swapped in the new list), not object by object while it is only buffered.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, future};
use kube::Resource;
use kube::runtime::Predicate;
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::watcher::{self, Event};

/// One watch of kind `K` and its store, before it runs: subscribe, then [`SharedWatch::run`].
pub struct SharedWatch<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    kind: &'static str,
    store: Store<K>,
    writer: Writer<K>,
    events: BoxStream<'static, Result<Event<K>, watcher::Error>>,
    subscribers: Vec<Subscriber<K>>,
}

/// Where one trigger stream gets its objects.
struct Subscriber<K> {
    sender: mpsc::UnboundedSender<Arc<K>>,
    /// Whether it is told of deletions too (a controller's own trigger is not: a deleted object
    /// has nothing left to reconcile).
    deletions: bool,
}

impl<K> SharedWatch<K>
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
{
    /// A watch of `kind` from `events` (a watcher stream, retrying on its own).
    pub fn new(
        kind: &'static str,
        dyntype: K::DynamicType,
        events: impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
    ) -> Self {
        let writer = Writer::new(dyntype);
        Self {
            kind,
            store: writer.as_reader(),
            writer,
            events: events.boxed(),
            subscribers: Vec::new(),
        }
    }

    /// The cache this watch fills.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Every object created or changed, and every object after each (re)list.
    pub fn applied(&mut self) -> impl Stream<Item = Arc<K>> + Send + 'static + use<K> {
        self.subscribe(false)
    }

    /// As [`SharedWatch::applied`], and every object deleted (as last seen).
    pub fn touched(&mut self) -> impl Stream<Item = Arc<K>> + Send + 'static + use<K> {
        self.subscribe(true)
    }

    fn subscribe(&mut self, deletions: bool) -> mpsc::UnboundedReceiver<Arc<K>> {
        let (sender, receiver) = mpsc::unbounded();
        self.subscribers.push(Subscriber { sender, deletions });
        receiver
    }

    /// Watch for good: fill the store, then pass each change on (see the module docs). Watch
    /// errors are logged (once per failing spell); the watcher retries with backoff, and the
    /// other watches go on.
    pub async fn run(self) {
        let Self {
            kind,
            store,
            writer,
            events,
            mut subscribers,
        } = self;
        let mut events = std::pin::pin!(reflector::reflector(writer, events));
        // Whether the watch is failing: one that keeps failing (the spark-operator kinds where
        // their CRDs are not installed) warns once, not at every retry. Each retry starts with
        // `Init` before its list fails, so only a list completed or a change seen is recovery.
        let mut failing = false;
        while let Some(event) = events.next().await {
            match &event {
                Err(error) if !failing => {
                    tracing::warn!(kind, %error, "watch failed; retrying with backoff");
                    failing = true;
                }
                Err(error) => tracing::debug!(kind, %error, "watch still failing"),
                Ok(Event::InitDone | Event::Apply(_) | Event::Delete(_)) if failing => {
                    tracing::info!(kind, "watch recovered");
                    failing = false;
                }
                Ok(_) => {}
            }
            match event {
                // The reflector has stored it already.
                Ok(Event::Apply(object)) => send(&mut subscribers, &Arc::new(object), false),
                Ok(Event::Delete(object)) => send(&mut subscribers, &Arc::new(object), true),
                // The new list is in the store now (it was buffered until here).
                Ok(Event::InitDone) => {
                    for object in store.state() {
                        send(&mut subscribers, &object, false);
                    }
                }
                Ok(Event::Init | Event::InitApply(_)) | Err(_) => {}
            }
        }
    }
}

/// Pass `object` to every subscriber that wants it, forgetting those that went away.
fn send<K>(subscribers: &mut Vec<Subscriber<K>>, object: &Arc<K>, deleted: bool) {
    subscribers.retain(|subscriber| {
        (deleted && !subscriber.deletions)
            || subscriber.sender.unbounded_send(object.clone()).is_ok()
    });
}

/// How long [`changed`] remembers an object it has not seen again (as kube's
/// `predicate_filter`: long enough to spare needless reconciles, short enough that objects
/// long gone do not pile up).
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Only the objects whose `predicate` hash differs from the last one seen for the same object
/// (namespace, name, uid): `predicate_filter` for the `Arc<K>` streams of a [`SharedWatch`].
/// An object for which the predicate has no value always passes.
pub fn changed<K, P>(
    objects: impl Stream<Item = Arc<K>> + Send + 'static,
    predicate: P,
) -> impl Stream<Item = Arc<K>> + Send + 'static
where
    K: Resource + Send + Sync + 'static,
    P: Predicate<K> + Send + 'static,
{
    let mut seen = Seen::default();
    objects.filter(move |object| {
        let passes = match predicate.hash_property(object) {
            Some(hash) => seen.changed(object.meta(), hash, Instant::now()),
            None => true,
        };
        future::ready(passes)
    })
}

/// An object, as [`changed`] tells objects apart: a new object of the same name is another.
type Key = (Option<String>, Option<String>, Option<String>);

/// The last hash of each object [`changed`] saw, and when.
#[derive(Default)]
struct Seen {
    hashes: HashMap<Key, (u64, Instant)>,
    last_forgotten: Option<Instant>,
}

impl Seen {
    /// Whether `hash` differs from what was last seen of the object (or it was not seen within
    /// [`FORGET_AFTER`]); remembers it either way. `now` is the caller's clock.
    fn changed(
        &mut self,
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        hash: u64,
        now: Instant,
    ) -> bool {
        // Forget what was not seen for a while, at most once per period: memory hygiene only,
        // since an old entry counts as absent below anyway.
        let forget = self
            .last_forgotten
            .is_none_or(|last| now.duration_since(last) >= FORGET_AFTER);
        if forget {
            self.hashes
                .retain(|_, (_, seen)| now.duration_since(*seen) < FORGET_AFTER);
            self.last_forgotten = Some(now);
        }
        let key = (meta.namespace.clone(), meta.name.clone(), meta.uid.clone());
        match self.hashes.entry(key) {
            Entry::Occupied(mut entry) => {
                let (last, seen) = *entry.get();
                entry.insert((hash, now));
                last != hash || now.duration_since(seen) >= FORGET_AFTER
            }
            Entry::Vacant(entry) => {
                entry.insert((hash, now));
                true
            }
        }
    }
}

impl<K> Debug for SharedWatch<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedWatch")
            .field("kind", &self.kind)
            .field("subscribers", &self.subscribers.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::predicates;
    use kube::runtime::reflector::ObjectRef;

    fn map(name: &str, uid: &str, generation: i64) -> ConfigMap {
        let mut map = ConfigMap::default();
        map.metadata.name = Some(name.into());
        map.metadata.namespace = Some("payments".into());
        map.metadata.uid = Some(uid.into());
        map.metadata.generation = Some(generation);
        map
    }

    fn names(received: &[Arc<ConfigMap>]) -> Vec<String> {
        received
            .iter()
            .map(|m| m.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    /// Everything a subscription holds right now, without waiting.
    fn drain(stream: &mut (impl Stream<Item = Arc<ConfigMap>> + Unpin)) -> Vec<Arc<ConfigMap>> {
        let mut received = Vec::new();
        while let Some(Some(object)) = stream.next().now_or_never() {
            received.push(object);
        }
        received
    }

    #[tokio::test]
    async fn subscribers_get_a_list_once_it_is_stored_and_deletions_only_if_asked() {
        let (source, events) = mpsc::unbounded();
        let mut watch = SharedWatch::<ConfigMap>::new("ConfigMap", (), events);
        let store = watch.store();
        let mut applied = Box::pin(watch.applied());
        let mut touched = Box::pin(watch.touched());
        let running = tokio::spawn(watch.run());
        let send = |event| source.unbounded_send(Ok(event)).unwrap();

        send(Event::Init);
        send(Event::InitApply(map("a", "1", 1)));
        tokio::task::yield_now().await;
        // A list still being read is not passed on: the store does not hold it yet.
        assert!(drain(&mut applied).is_empty());
        send(Event::InitDone);
        let first = applied.next().await.unwrap();
        assert_eq!(names(&[first]), ["a"]);
        assert!(store.get(&ObjectRef::new("a").within("payments")).is_some());

        send(Event::Apply(map("b", "2", 1)));
        send(Event::Delete(map("a", "1", 1)));
        send(Event::Apply(map("c", "3", 1)));
        let listed = touched.next().await.unwrap();
        assert_eq!(names(&[listed]), ["a"], "the list, as touched sees it");
        let mut seen = Vec::new();
        while seen.len() < 3 {
            seen.push(touched.next().await.unwrap());
        }
        assert_eq!(names(&seen), ["b", "a", "c"]);
        let mut applied_seen = Vec::new();
        while applied_seen.len() < 2 {
            applied_seen.push(applied.next().await.unwrap());
        }
        assert_eq!(names(&applied_seen), ["b", "c"]);
        // Each object passed on was in the store by then (or, deleted, gone from it).
        assert!(store.get(&ObjectRef::new("a").within("payments")).is_none());
        assert!(store.get(&ObjectRef::new("c").within("payments")).is_some());
        running.abort();
    }

    #[tokio::test]
    async fn a_subscriber_that_went_away_does_not_stop_the_others() {
        let events = futures::stream::iter([
            Ok(Event::Apply(map("a", "1", 1))),
            Ok(Event::Apply(map("b", "2", 1))),
        ]);
        let mut watch = SharedWatch::<ConfigMap>::new("ConfigMap", (), events);
        drop(watch.touched());
        let mut kept = Box::pin(watch.applied());
        watch.run().await;
        assert_eq!(names(&drain(&mut kept)), ["a", "b"]);
    }

    #[tokio::test]
    async fn changed_passes_an_object_only_when_its_hash_changes() {
        let objects = futures::stream::iter(
            [
                map("a", "1", 1),
                map("a", "1", 1), // a status write: same generation
                map("b", "2", 1), // another object
                map("a", "1", 2), // a spec change
                map("a", "9", 2), // deleted and made again: another object
                map("a", "9", 2),
            ]
            .map(Arc::new),
        );
        let passed: Vec<_> = changed(objects, predicates::generation).collect().await;
        let passed: Vec<_> = passed
            .iter()
            .map(|m| {
                (
                    m.metadata.name.clone(),
                    m.metadata.uid.clone(),
                    m.metadata.generation,
                )
            })
            .collect();
        let expected = [("a", "1", 1), ("b", "2", 1), ("a", "1", 2), ("a", "9", 2)]
            .map(|(n, u, g)| (Some(n.to_owned()), Some(u.to_owned()), Some(g)));
        assert_eq!(passed, expected);
    }

    #[tokio::test]
    async fn changed_passes_what_the_predicate_cannot_hash() {
        let mut no_generation = map("a", "1", 1);
        no_generation.metadata.generation = None;
        let objects = futures::stream::iter([no_generation.clone(), no_generation].map(Arc::new));
        let passed: Vec<_> = changed(objects, predicates::generation).collect().await;
        assert_eq!(passed.len(), 2);
    }

    #[test]
    fn an_object_not_seen_for_long_counts_as_new_and_old_entries_are_forgotten() {
        let mut seen = Seen::default();
        let t0 = Instant::now();
        let a = map("a", "1", 1).metadata;
        let b = map("b", "2", 1).metadata;
        assert!(seen.changed(&a, 7, t0));
        assert!(seen.changed(&b, 7, t0));
        assert!(!seen.changed(&a, 7, t0 + Duration::from_secs(60)));
        // An hour on, the clean-up forgets `b` (unseen since t0), so it passes again, and
        // keeps `a` (seen at 60 s).
        let t1 = t0 + FORGET_AFTER + Duration::from_secs(30);
        assert!(seen.changed(&b, 7, t1));
        assert_eq!(seen.hashes.len(), 2);
        // Unseen for an hour, `a` counts as new even before the next clean-up.
        let t2 = t0 + Duration::from_secs(60) + FORGET_AFTER;
        assert!(seen.changed(&a, 7, t2));
        assert!(!seen.changed(&a, 7, t2 + Duration::from_secs(1)));
    }
}
