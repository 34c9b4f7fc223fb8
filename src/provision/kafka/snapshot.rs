//! Observation from one shared snapshot, and writes batched across reconciles: a
//! [`KafkaAdmin`] layer around the real client ([`SnapshotKafka`]).
//!
//! # Reads
//!
//! Every reconcile used to describe its own topics and ACLs, so a resync with nothing changed
//! sent a few requests per topic. Here `describe_topics` and `describe_acls` are answered from
//! one snapshot, shared by every controller:
//!
//! - the *managed topics* are the names reconciles have asked about or created; for each, the
//!   snapshot keeps its partitions, replication factor and the configs set on the topic itself
//!   (`DynamicTopic`: the only ones a plan compares), nothing else;
//! - every ACL binding of the cluster, from one match-any `DescribeAcls`.
//!
//! A *full refresh* describes all managed topics (in requests of at most
//! [`SnapshotSettings::batch_max_items`] topics) and all ACLs (one request). It is made by the
//! first read that finds the snapshot older than [`SnapshotSettings::refresh`] (by default half
//! the resync period, so a reconcile never decides from a snapshot older than that, and drift
//! made outside the operator is seen by the product's next resync after it); reads that arrive
//! meanwhile wait for it and share it. The first read after start does the first fill; the
//! first DataProduct reconcile names every product's topics to it ([`KafkaAdmin::prime_topics`];
//! when a fill came before, or is still waiting for Kafka, the next read refreshes again), so a
//! restart describes them all in one refresh instead of one product at a time.
//!
//! A name never asked about, or one whose state is uncertain (a create answered
//! `TopicAlreadyExists`, so someone else made it; a write that failed or timed out), is
//! described on its own when it is next read, through the same batch window as the writes:
//! names asked for together go out as one describe.
//!
//! The operator's own successful writes update the snapshot before the write returns, so a
//! reconcile right after its own create sees the topic. A refresh or describe that was in
//! flight while a write landed could answer from before the write: the writes of the last few
//! seconds ([`JOURNAL_GRACE`]) are replayed over every answer.
//!
//! A failed refresh keeps the previous snapshot (nothing looks missing), and the reads waiting
//! for it fail with its error (`KafkaUnavailable` while no broker answers); the next read tries
//! again.
//!
//! # Writes
//!
//! `create_topics`, `create_partitions`, `alter_topic_configs`, `create_acls` and `delete_acls`
//! from reconciles that arrive within one batch window ([`SnapshotSettings::batch_window`]) go
//! out as one request (at most `batch_max_items` items; more make more requests). Each caller
//! gets its own items' results, so one bad item fails only its caller. Two callers naming the
//! same topic are never put in one request (Kafka refuses duplicates in one request): the
//! second goes in the next. A window of zero sends each call as it comes.
//!
//! `delete_topics` and the SCRAM calls go straight to the inner client (topic deletions still
//! update the snapshot).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::future::{BoxFuture, join_all, try_join, try_join_all};
use tokio::sync::{Mutex as AsyncMutex, oneshot};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::acl::{AclBinding, AclBindingFilter};
use super::error::{AdminOperation, KafkaAdminError};
use super::scram::{ScramCredentialUpsert, ScramMechanism, ScramUser};
use super::topic::{
    ConfigSource, NewTopic, PartitionIncrease, TopicConfigAlteration, TopicConfigEntry,
    TopicDescription,
};
use super::{BatchResult, KafkaAdmin};

/// The default batch window: long enough to gather the reconciles that run together, short
/// next to a Kafka request (tens of milliseconds under load).
pub const DEFAULT_BATCH_WINDOW: Duration = Duration::from_millis(5);

/// The default cap on items (topics, ACL bindings, filters) per batched request.
pub const DEFAULT_BATCH_MAX_ITEMS: usize = 500;

/// The shortest refresh period allowed.
const MIN_REFRESH: Duration = Duration::from_secs(1);

/// How far back before a read started the operator's own writes are replayed over its answer:
/// a broker's metadata may lag a change the controller accepted by a moment.
pub const JOURNAL_GRACE: Duration = Duration::from_secs(5);

/// How long a write is kept for replay: longer than any read (a call's budget is 15 s).
const JOURNAL_KEEP: Duration = Duration::from_secs(60);

/// How long a failed refresh's error answers reads before the next read tries again (the
/// reachability check reuses its answer for as long).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// How many refresh periods a topic nobody asked about stays in the snapshot (a product
/// resyncs once per resync period, i.e. about two refresh periods).
const FORGET_AFTER_REFRESHES: u32 = 4;

/// How often the snapshot is refreshed and how writes are batched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotSettings {
    /// The oldest a snapshot may be when a read is answered from it; an older one is refreshed
    /// first (at least one second).
    pub refresh: Duration,
    /// How long a write or describe waits for others to share its request; zero sends at once.
    pub batch_window: Duration,
    /// The most items in one request (at least 1).
    pub batch_max_items: usize,
}

impl SnapshotSettings {
    /// Refresh every half resync period, with the default batch window and cap.
    pub fn for_resync(resync: Duration) -> Self {
        Self {
            refresh: resync / 2,
            batch_window: DEFAULT_BATCH_WINDOW,
            batch_max_items: DEFAULT_BATCH_MAX_ITEMS,
        }
    }
}

/// What a plan reads of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TopicSeen {
    partitions: i32,
    replication_factor: i16,
    /// The configs set on the topic itself.
    configs: BTreeMap<String, String>,
}

impl TopicSeen {
    fn from_description(description: &TopicDescription) -> Self {
        Self {
            partitions: description.partitions,
            replication_factor: description.replication_factor,
            configs: description
                .dynamic_configs()
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                .collect(),
        }
    }

    fn description(&self, name: &str) -> TopicDescription {
        TopicDescription {
            name: name.to_owned(),
            partitions: self.partitions,
            replication_factor: self.replication_factor,
            configs: self
                .configs
                .iter()
                .map(|(key, value)| {
                    let entry = TopicConfigEntry {
                        value: Some(value.clone()),
                        source: ConfigSource::DynamicTopic,
                        sensitive: false,
                        read_only: false,
                    };
                    (key.clone(), entry)
                })
                .collect(),
        }
    }
}

/// One managed topic in the snapshot.
#[derive(Debug)]
struct TopicEntry {
    /// `None`: it does not exist.
    seen: Option<TopicSeen>,
    /// `false`: never described, or uncertain since; described again when next read.
    known: bool,
    /// When a reconcile last asked about it (topics nobody asks about are forgotten).
    asked: Instant,
}

/// A change the operator made, applied to the snapshot (and replayed over answers that may
/// predate it).
#[derive(Debug, Clone)]
enum Effect {
    TopicCreated(String, TopicSeen),
    PartitionsRaised(String, i32),
    ConfigsAltered(TopicConfigAlteration),
    TopicDeleted(String),
    AclsCreated(Vec<AclBinding>),
    AclsDeleted(Vec<AclBinding>),
}

#[derive(Debug, Default)]
struct State {
    topics: HashMap<String, TopicEntry>,
    acls: BTreeSet<AclBinding>,
    /// When the last successful full refresh started; `None` before the first, or after a
    /// write whose outcome is unknown made the ACLs uncertain.
    refreshed: Option<Instant>,
    /// Full refreshes that failed so far, and the last one's error.
    failed_refreshes: u64,
    last_error: Option<KafkaAdminError>,
    failed_at: Option<Instant>,
    /// Whether reconciles have named their topics ([`KafkaAdmin::prime_topics`]).
    primed: bool,
    /// Bumped when priming adds topics: a refresh that was in flight meanwhile described
    /// the names from before, so it must not count as fresh.
    primings: u64,
    journal: VecDeque<(Instant, Effect)>,
}

impl State {
    fn entry(&mut self, name: &str, now: Instant) -> &mut TopicEntry {
        self.topics
            .entry(name.to_owned())
            .or_insert_with(|| TopicEntry {
                seen: None,
                known: false,
                asked: now,
            })
    }

    fn apply(&mut self, effect: &Effect, now: Instant) {
        match effect {
            Effect::TopicCreated(name, seen) => {
                let entry = self.entry(name, now);
                entry.seen = Some(seen.clone());
                entry.known = true;
            }
            Effect::PartitionsRaised(name, total) => {
                if let Some(seen) = self.topics.get_mut(name).and_then(|e| e.seen.as_mut()) {
                    seen.partitions = seen.partitions.max(*total);
                }
            }
            Effect::ConfigsAltered(alteration) => {
                if let Some(seen) = self
                    .topics
                    .get_mut(&alteration.topic)
                    .and_then(|e| e.seen.as_mut())
                {
                    for key in &alteration.delete {
                        seen.configs.remove(key);
                    }
                    seen.configs.extend(alteration.set.clone());
                }
            }
            Effect::TopicDeleted(name) => {
                let entry = self.entry(name, now);
                entry.seen = None;
                entry.known = true;
            }
            Effect::AclsCreated(bindings) => self.acls.extend(bindings.iter().cloned()),
            Effect::AclsDeleted(bindings) => {
                for binding in bindings {
                    self.acls.remove(binding);
                }
            }
        }
    }

    /// Applies the operator's own write and keeps it for replay.
    fn record(&mut self, effect: Effect) {
        let now = Instant::now();
        self.apply(&effect, now);
        while self
            .journal
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > JOURNAL_KEEP)
        {
            self.journal.pop_front();
        }
        self.journal.push_back((now, effect));
    }

    /// Replays the writes recorded since shortly before `started` over an answer read then.
    fn replay_since(&mut self, started: Instant) {
        let since = started.checked_sub(JOURNAL_GRACE).unwrap_or(started);
        let effects: Vec<Effect> = self
            .journal
            .iter()
            .filter(|(at, _)| *at >= since)
            .map(|(_, effect)| effect.clone())
            .collect();
        let now = Instant::now();
        for effect in &effects {
            self.apply(effect, now);
        }
    }

    /// Marks topics uncertain: they are described again when next read.
    fn forget_topics<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        for name in names {
            if let Some(entry) = self.topics.get_mut(name) {
                entry.known = false;
            }
        }
    }
}

/// A call waiting in a batch queue.
struct Waiting<I, O> {
    items: Vec<I>,
    reply: oneshot::Sender<BatchResult<O>>,
}

struct Queue<I, O> {
    waiting: VecDeque<Waiting<I, O>>,
    /// Whether a flush task is running for this queue.
    flushing: bool,
}

impl<I, O> Default for Queue<I, O> {
    fn default() -> Self {
        Self {
            waiting: VecDeque::new(),
            flushing: false,
        }
    }
}

#[derive(Default)]
struct Queues {
    create_topics: Mutex<Queue<NewTopic, ()>>,
    create_partitions: Mutex<Queue<PartitionIncrease, ()>>,
    alter_configs: Mutex<Queue<TopicConfigAlteration, ()>>,
    create_acls: Mutex<Queue<AclBinding, ()>>,
    delete_acls: Mutex<Queue<AclBindingFilter, Vec<AclBinding>>>,
    describe_topics: Mutex<Queue<String, Option<TopicDescription>>>,
}

struct Shared {
    inner: Arc<dyn KafkaAdmin>,
    settings: SnapshotSettings,
    state: Mutex<State>,
    /// Held while a full refresh runs: one at a time, and the reads waiting share it.
    refreshing: AsyncMutex<()>,
    queues: Queues,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves consistent data behind (no await, no panic inside).
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether a failed request certainly changed nothing (it was refused before it was sent).
fn certainly_unsent(error: &KafkaAdminError) -> bool {
    matches!(
        error,
        KafkaAdminError::Unreachable { .. } | KafkaAdminError::InvalidInput { .. }
    )
}

/// One batched Kafka call: its queue, how it is sent, and what it does to the snapshot.
trait Batched: 'static {
    type Item: Clone + Send + Sync + 'static;
    type Out: Send + 'static;
    const API: &'static str;
    const OPERATION: AdminOperation;
    /// Items with the same key never share a request.
    fn key(item: &Self::Item) -> Option<&str>;
    fn queue(queues: &Queues) -> &Mutex<Queue<Self::Item, Self::Out>>;
    fn send<'a>(
        kafka: &'a dyn KafkaAdmin,
        items: &'a [Self::Item],
    ) -> BoxFuture<'a, BatchResult<Self::Out>>;
    /// Updates the snapshot from Kafka's answer to `items`, sent at `started`.
    fn record(
        state: &mut State,
        items: &[Self::Item],
        answer: &BatchResult<Self::Out>,
        started: Instant,
    );
}

struct CreateTopics;
struct CreatePartitions;
struct AlterConfigs;
struct CreateAcls;
struct DeleteAcls;
struct DescribeTopics;

/// Calls `done` for each item that succeeded, `uncertain` for each whose outcome is unknown.
fn for_outcomes<'i, I, O>(
    items: &'i [I],
    answer: &BatchResult<O>,
    mut done: impl FnMut(&'i I, &O),
    mut uncertain: impl FnMut(&'i I),
    is_refusal: impl Fn(&KafkaAdminError) -> bool,
) {
    match answer {
        Ok(results) => {
            for (item, result) in items.iter().zip(results) {
                match result {
                    Ok(out) => done(item, out),
                    Err(error) if is_refusal(error) => {}
                    Err(_) => uncertain(item),
                }
            }
        }
        Err(error) if certainly_unsent(error) => {}
        Err(_) => items.iter().for_each(uncertain),
    }
}

/// A refusal Kafka answered that changed nothing: an invalid request, not a lost one.
fn refused(error: &KafkaAdminError) -> bool {
    match error {
        KafkaAdminError::Kafka { .. } => !error.is_transient(),
        KafkaAdminError::InvalidInput { .. } => true,
        _ => false,
    }
}

impl Batched for CreateTopics {
    type Item = NewTopic;
    type Out = ();
    const API: &'static str = "CreateTopics";
    const OPERATION: AdminOperation = AdminOperation::CreateTopics;
    fn key(item: &NewTopic) -> Option<&str> {
        Some(&item.name)
    }
    fn queue(queues: &Queues) -> &Mutex<Queue<NewTopic, ()>> {
        &queues.create_topics
    }
    fn send<'a>(
        kafka: &'a dyn KafkaAdmin,
        items: &'a [NewTopic],
    ) -> BoxFuture<'a, BatchResult<()>> {
        kafka.create_topics(items)
    }
    fn record(state: &mut State, items: &[NewTopic], answer: &BatchResult<()>, _: Instant) {
        let mut created = Vec::new();
        let mut uncertain = Vec::new();
        // Someone else made the topic: it is described when next read.
        let is_refusal = |e: &KafkaAdminError| refused(e) && !e.is_topic_already_exists();
        for_outcomes(
            items,
            answer,
            |topic, ()| created.push(topic),
            |topic| uncertain.push(topic.name.as_str()),
            is_refusal,
        );
        for topic in created {
            let seen = TopicSeen {
                partitions: topic.partitions,
                replication_factor: topic.replication_factor,
                configs: topic.configs.clone(),
            };
            state.record(Effect::TopicCreated(topic.name.clone(), seen));
        }
        state.forget_topics(uncertain);
    }
}

impl Batched for CreatePartitions {
    type Item = PartitionIncrease;
    type Out = ();
    const API: &'static str = "CreatePartitions";
    const OPERATION: AdminOperation = AdminOperation::CreatePartitions;
    fn key(item: &PartitionIncrease) -> Option<&str> {
        Some(&item.topic)
    }
    fn queue(queues: &Queues) -> &Mutex<Queue<PartitionIncrease, ()>> {
        &queues.create_partitions
    }
    fn send<'a>(
        kafka: &'a dyn KafkaAdmin,
        items: &'a [PartitionIncrease],
    ) -> BoxFuture<'a, BatchResult<()>> {
        kafka.create_partitions(items)
    }
    fn record(
        state: &mut State,
        items: &[PartitionIncrease],
        answer: &BatchResult<()>,
        _: Instant,
    ) {
        let mut raised = Vec::new();
        let mut uncertain = Vec::new();
        // Any failure (a count not greater than the current one included) is described again.
        for_outcomes(
            items,
            answer,
            |increase, ()| raised.push(increase),
            |increase| uncertain.push(increase.topic.as_str()),
            |_| false,
        );
        for increase in raised {
            state.record(Effect::PartitionsRaised(
                increase.topic.clone(),
                increase.total_partitions,
            ));
        }
        state.forget_topics(uncertain);
    }
}

impl Batched for AlterConfigs {
    type Item = TopicConfigAlteration;
    type Out = ();
    const API: &'static str = "IncrementalAlterConfigs";
    const OPERATION: AdminOperation = AdminOperation::AlterTopicConfigs;
    fn key(item: &TopicConfigAlteration) -> Option<&str> {
        Some(&item.topic)
    }
    fn queue(queues: &Queues) -> &Mutex<Queue<TopicConfigAlteration, ()>> {
        &queues.alter_configs
    }
    fn send<'a>(
        kafka: &'a dyn KafkaAdmin,
        items: &'a [TopicConfigAlteration],
    ) -> BoxFuture<'a, BatchResult<()>> {
        kafka.alter_topic_configs(items)
    }
    fn record(
        state: &mut State,
        items: &[TopicConfigAlteration],
        answer: &BatchResult<()>,
        _: Instant,
    ) {
        let mut altered = Vec::new();
        let mut uncertain = Vec::new();
        for_outcomes(
            items,
            answer,
            |alteration, ()| altered.push(alteration),
            |alteration| uncertain.push(alteration.topic.as_str()),
            |_| false,
        );
        for alteration in altered {
            state.record(Effect::ConfigsAltered(alteration.clone()));
        }
        state.forget_topics(uncertain);
    }
}

impl Batched for CreateAcls {
    type Item = AclBinding;
    type Out = ();
    const API: &'static str = "CreateAcls";
    const OPERATION: AdminOperation = AdminOperation::CreateAcls;
    fn key(_: &AclBinding) -> Option<&str> {
        None
    }
    fn queue(queues: &Queues) -> &Mutex<Queue<AclBinding, ()>> {
        &queues.create_acls
    }
    fn send<'a>(
        kafka: &'a dyn KafkaAdmin,
        items: &'a [AclBinding],
    ) -> BoxFuture<'a, BatchResult<()>> {
        kafka.create_acls(items)
    }
    fn record(state: &mut State, items: &[AclBinding], answer: &BatchResult<()>, _: Instant) {
        let mut created = Vec::new();
        let mut uncertain = false;
        for_outcomes(
            items,
            answer,
            |binding, ()| created.push(binding.clone()),
            |_| uncertain = true,
            refused,
        );
        if !created.is_empty() {
            state.record(Effect::AclsCreated(created));
        }
        if uncertain {
            // The ACLs are read again, all of them, by the next read.
            state.refreshed = None;
        }
    }
}

impl Batched for DeleteAcls {
    type Item = AclBindingFilter;
    type Out = Vec<AclBinding>;
    const API: &'static str = "DeleteAcls";
    const OPERATION: AdminOperation = AdminOperation::DeleteAcls;
    fn key(_: &AclBindingFilter) -> Option<&str> {
        None
    }
    fn queue(queues: &Queues) -> &Mutex<Queue<AclBindingFilter, Vec<AclBinding>>> {
        &queues.delete_acls
    }
    fn send<'a>(
        kafka: &'a dyn KafkaAdmin,
        items: &'a [AclBindingFilter],
    ) -> BoxFuture<'a, BatchResult<Vec<AclBinding>>> {
        kafka.delete_acls(items)
    }
    fn record(
        state: &mut State,
        items: &[AclBindingFilter],
        answer: &BatchResult<Vec<AclBinding>>,
        _: Instant,
    ) {
        let mut deleted = Vec::new();
        let mut uncertain = false;
        for_outcomes(
            items,
            answer,
            |filter, bindings| {
                deleted.extend(bindings.iter().cloned());
                // What the filter matched is gone, whether or not Kafka listed it.
                deleted.extend(state.acls.iter().filter(|b| filter.matches(b)).cloned());
            },
            |_| uncertain = true,
            refused,
        );
        if !deleted.is_empty() {
            state.record(Effect::AclsDeleted(deleted));
        }
        if uncertain {
            state.refreshed = None;
        }
    }
}

impl Batched for DescribeTopics {
    type Item = String;
    type Out = Option<TopicDescription>;
    const API: &'static str = "DescribeTopics";
    const OPERATION: AdminOperation = AdminOperation::DescribeTopics;
    fn key(_: &String) -> Option<&str> {
        None
    }
    fn queue(queues: &Queues) -> &Mutex<Queue<String, Option<TopicDescription>>> {
        &queues.describe_topics
    }
    fn send<'a>(
        kafka: &'a dyn KafkaAdmin,
        items: &'a [String],
    ) -> BoxFuture<'a, BatchResult<Option<TopicDescription>>> {
        kafka.describe_topics(items)
    }
    fn record(
        state: &mut State,
        items: &[String],
        answer: &BatchResult<Option<TopicDescription>>,
        started: Instant,
    ) {
        let Ok(results) = answer else {
            return;
        };
        let now = Instant::now();
        for (name, result) in items.iter().zip(results) {
            if let Ok(described) = result {
                let entry = state.entry(name, now);
                entry.seen = described.as_ref().map(TopicSeen::from_description);
                entry.known = true;
            }
        }
        state.replay_since(started);
    }
}

/// The calls going out in one request.
struct Batch<I, O> {
    calls: Vec<Waiting<I, O>>,
    items: usize,
    keys: HashSet<String>,
}

/// Groups the waiting calls into requests of at most `cap` items with no key twice; calls
/// that do not fit stay queued for the next round.
fn take_batches<B: Batched>(
    waiting: &mut VecDeque<Waiting<B::Item, B::Out>>,
    cap: usize,
) -> Vec<Vec<Waiting<B::Item, B::Out>>> {
    /// More requests than this at once wait for the next round.
    const MAX_REQUESTS: usize = 8;
    let mut batches: Vec<Batch<B::Item, B::Out>> = Vec::new();
    let mut left = VecDeque::new();
    while let Some(call) = waiting.pop_front() {
        let keys: Vec<&str> = call.items.iter().filter_map(B::key).collect();
        let fits = |batch: &Batch<B::Item, B::Out>| {
            (batch.calls.is_empty() || batch.items + call.items.len() <= cap)
                && keys.iter().all(|key| !batch.keys.contains(*key))
        };
        let slot = match batches.iter().position(fits) {
            Some(slot) => slot,
            None if batches.len() < MAX_REQUESTS => {
                batches.push(Batch {
                    calls: Vec::new(),
                    items: 0,
                    keys: HashSet::new(),
                });
                batches.len() - 1
            }
            None => {
                left.push_back(call);
                continue;
            }
        };
        let keys: Vec<String> = keys.into_iter().map(str::to_owned).collect();
        let batch = &mut batches[slot];
        batch.items += call.items.len();
        batch.keys.extend(keys);
        batch.calls.push(call);
    }
    *waiting = left;
    batches.into_iter().map(|batch| batch.calls).collect()
}

impl Shared {
    /// Sends `items` in the next batch of their kind and returns their results.
    async fn submit<B: Batched>(self: &Arc<Self>, items: Vec<B::Item>) -> BatchResult<B::Out> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        if self.settings.batch_window.is_zero() {
            let started = Instant::now();
            let answer = B::send(self.inner.as_ref(), &items).await;
            B::record(&mut lock(&self.state), &items, &answer, started);
            return answer;
        }
        let (reply, answer) = oneshot::channel();
        let start_flush = {
            let mut queue = lock(B::queue(&self.queues));
            queue.waiting.push_back(Waiting { items, reply });
            !std::mem::replace(&mut queue.flushing, true)
        };
        if start_flush {
            let shared = Arc::clone(self);
            tokio::spawn(async move { shared.flush::<B>().await });
        }
        answer.await.unwrap_or_else(|_| {
            Err(KafkaAdminError::unexpected(
                B::OPERATION,
                "the batch was dropped before Kafka answered",
            ))
        })
    }

    /// After the window, sends what is queued, round after round, until the queue is empty.
    async fn flush<B: Batched>(self: Arc<Self>) {
        tokio::time::sleep(self.settings.batch_window).await;
        loop {
            let batches = {
                let mut queue = lock(B::queue(&self.queues));
                if queue.waiting.is_empty() {
                    queue.flushing = false;
                    return;
                }
                take_batches::<B>(&mut queue.waiting, self.settings.batch_max_items.max(1))
            };
            join_all(batches.into_iter().map(|calls| self.send_batch::<B>(calls))).await;
        }
    }

    async fn send_batch<B: Batched>(&self, calls: Vec<Waiting<B::Item, B::Out>>) {
        let items: Vec<B::Item> = calls
            .iter()
            .flat_map(|call| call.items.iter().cloned())
            .collect();
        debug!(
            api = B::API,
            callers = calls.len(),
            items = items.len(),
            "sending a batch"
        );
        let started = Instant::now();
        let answer = B::send(self.inner.as_ref(), &items).await;
        B::record(&mut lock(&self.state), &items, &answer, started);
        match answer {
            Err(error) => {
                for call in calls {
                    let _ = call.reply.send(Err(error.clone()));
                }
            }
            Ok(results) if results.len() != items.len() => {
                let error = KafkaAdminError::unexpected(
                    B::OPERATION,
                    format!(
                        "Kafka answered {} results for {} items",
                        results.len(),
                        items.len()
                    ),
                );
                for call in calls {
                    let _ = call.reply.send(Err(error.clone()));
                }
            }
            Ok(results) => {
                let mut results = results.into_iter();
                for call in calls {
                    let mine = results.by_ref().take(call.items.len()).collect();
                    // The caller may have gone (its reconcile was cancelled): nothing to tell.
                    let _ = call.reply.send(Ok(mine));
                }
            }
        }
    }

    fn refresh_period(&self) -> Duration {
        self.settings.refresh.max(MIN_REFRESH)
    }

    fn is_fresh(&self, state: &State) -> bool {
        state
            .refreshed
            .is_some_and(|at| at.elapsed() < self.refresh_period())
    }

    /// Makes sure the snapshot is younger than the refresh period: refreshes it, or waits for
    /// the refresh under way and shares its outcome.
    async fn ensure_fresh(&self) -> Result<(), KafkaAdminError> {
        let failed_before = {
            let state = lock(&self.state);
            if self.is_fresh(&state) {
                return Ok(());
            }
            if let (Some(error), Some(at)) = (&state.last_error, state.failed_at)
                && at.elapsed() < RETRY_AFTER_FAILURE
            {
                return Err(error.clone());
            }
            state.failed_refreshes
        };
        let _refreshing = self.refreshing.lock().await;
        {
            let state = lock(&self.state);
            if self.is_fresh(&state) {
                return Ok(());
            }
            if state.failed_refreshes != failed_before {
                // The refresh this call waited for failed: share its error rather than ask
                // again at once.
                if let Some(error) = &state.last_error {
                    return Err(error.clone());
                }
            }
        }
        self.refresh().await
    }

    /// Describes every managed topic and every ACL, and replaces the snapshot with the answer.
    async fn refresh(&self) -> Result<(), KafkaAdminError> {
        let started = Instant::now();
        let (names, primings): (Vec<String>, u64) = {
            let mut state = lock(&self.state);
            let forget = self.refresh_period() * FORGET_AFTER_REFRESHES;
            state
                .topics
                .retain(|_, entry| started.duration_since(entry.asked) < forget);
            (state.topics.keys().cloned().collect(), state.primings)
        };
        let cap = self.settings.batch_max_items.max(1);
        let inner = self.inner.as_ref();
        let any = AclBindingFilter::any();
        let topics = try_join_all(names.chunks(cap).map(|chunk| inner.describe_topics(chunk)));
        let answer = try_join(inner.describe_acls(&any), topics).await;
        let mut state = lock(&self.state);
        let (acls, described) = match answer {
            Ok(answer) => answer,
            Err(error) => {
                state.failed_refreshes += 1;
                state.last_error = Some(error.clone());
                state.failed_at = Some(Instant::now());
                warn!(%error, topics = names.len(), "refreshing the Kafka snapshot failed; keeping the previous one");
                return Err(error);
            }
        };
        let now = Instant::now();
        let mut failed = 0usize;
        for (name, result) in names.iter().zip(described.into_iter().flatten()) {
            let entry = state.entry(name, now);
            match result {
                Ok(described) => {
                    entry.seen = described.as_ref().map(TopicSeen::from_description);
                    entry.known = true;
                }
                Err(error) => {
                    failed += 1;
                    debug!(%error, topic = %name, "describing a topic failed; it is described again when read");
                    entry.known = false;
                }
            }
        }
        state.acls = acls.into_iter().collect();
        state.replay_since(started);
        // Topics primed while this refresh was in flight (an AccessPolicy's read started it
        // before the first DataProduct reconcile named every topic) are not in it: the next
        // read refreshes again with them, rather than each product describing its own.
        state.refreshed = (state.primings == primings).then_some(started);
        state.last_error = None;
        state.failed_at = None;
        debug!(
            topics = names.len(),
            failed,
            acls = state.acls.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "refreshed the Kafka snapshot"
        );
        Ok(())
    }

    async fn describe_topics(
        self: &Arc<Self>,
        names: &[String],
    ) -> BatchResult<Option<TopicDescription>> {
        self.ensure_fresh().await?;
        let now = Instant::now();
        let unknown: Vec<String> = {
            let mut state = lock(&self.state);
            let mut unknown = Vec::new();
            for name in names {
                let entry = state.entry(name, now);
                entry.asked = now;
                if !entry.known && !unknown.contains(name) {
                    unknown.push(name.clone());
                }
            }
            unknown
        };
        let mut failures: HashMap<String, KafkaAdminError> = HashMap::new();
        if !unknown.is_empty() {
            let results = self.submit::<DescribeTopics>(unknown.clone()).await?;
            for (name, result) in unknown.into_iter().zip(results) {
                if let Err(error) = result {
                    failures.insert(name, error);
                }
            }
        }
        let state = lock(&self.state);
        Ok(names
            .iter()
            .map(|name| match failures.get(name) {
                Some(error) => Err(error.clone()),
                None => Ok(state
                    .topics
                    .get(name)
                    .and_then(|entry| entry.seen.as_ref())
                    .map(|seen| seen.description(name))),
            })
            .collect())
    }

    async fn describe_acls(
        &self,
        filter: &AclBindingFilter,
    ) -> Result<Vec<AclBinding>, KafkaAdminError> {
        self.ensure_fresh().await?;
        Ok(filter.select(&lock(&self.state).acls))
    }

    async fn delete_topics(&self, names: &[String]) -> BatchResult<()> {
        let answer = self.inner.delete_topics(names).await;
        let mut state = lock(&self.state);
        match &answer {
            Ok(results) => {
                for (name, result) in names.iter().zip(results) {
                    match result {
                        Ok(()) => state.record(Effect::TopicDeleted(name.clone())),
                        Err(error) if error.is_unknown_topic() => {
                            state.record(Effect::TopicDeleted(name.clone()));
                        }
                        Err(_) => state.forget_topics([name.as_str()]),
                    }
                }
            }
            Err(error) if certainly_unsent(error) => {}
            Err(_) => state.forget_topics(names.iter().map(String::as_str)),
        }
        answer
    }
}

/// The [`KafkaAdmin`] the operator runs with: reads from one shared snapshot, writes batched
/// across reconciles (see the module docs), around the real client.
#[derive(Clone)]
pub struct SnapshotKafka {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SnapshotKafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotKafka")
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

impl SnapshotKafka {
    /// Wraps `inner`. Must be used inside a Tokio runtime (batches are sent from tasks).
    pub fn new(inner: Arc<dyn KafkaAdmin>, settings: SnapshotSettings) -> Self {
        Self {
            shared: Arc::new(Shared {
                inner,
                settings,
                state: Mutex::new(State::default()),
                refreshing: AsyncMutex::new(()),
                queues: Queues::default(),
            }),
        }
    }
}

impl KafkaAdmin for SnapshotKafka {
    fn create_topics<'a>(&'a self, topics: &'a [NewTopic]) -> BoxFuture<'a, BatchResult<()>> {
        Box::pin(self.shared.submit::<CreateTopics>(topics.to_vec()))
    }

    fn describe_topics<'a>(
        &'a self,
        names: &'a [String],
    ) -> BoxFuture<'a, BatchResult<Option<TopicDescription>>> {
        Box::pin(self.shared.describe_topics(names))
    }

    fn create_partitions<'a>(
        &'a self,
        increases: &'a [PartitionIncrease],
    ) -> BoxFuture<'a, BatchResult<()>> {
        Box::pin(self.shared.submit::<CreatePartitions>(increases.to_vec()))
    }

    fn alter_topic_configs<'a>(
        &'a self,
        alterations: &'a [TopicConfigAlteration],
    ) -> BoxFuture<'a, BatchResult<()>> {
        Box::pin(self.shared.submit::<AlterConfigs>(alterations.to_vec()))
    }

    fn delete_topics<'a>(&'a self, names: &'a [String]) -> BoxFuture<'a, BatchResult<()>> {
        Box::pin(self.shared.delete_topics(names))
    }

    fn create_acls<'a>(&'a self, bindings: &'a [AclBinding]) -> BoxFuture<'a, BatchResult<()>> {
        Box::pin(self.shared.submit::<CreateAcls>(bindings.to_vec()))
    }

    fn describe_acls<'a>(
        &'a self,
        filter: &'a AclBindingFilter,
    ) -> BoxFuture<'a, Result<Vec<AclBinding>, KafkaAdminError>> {
        Box::pin(self.shared.describe_acls(filter))
    }

    fn delete_acls<'a>(
        &'a self,
        filters: &'a [AclBindingFilter],
    ) -> BoxFuture<'a, BatchResult<Vec<AclBinding>>> {
        Box::pin(self.shared.submit::<DeleteAcls>(filters.to_vec()))
    }

    fn upsert_scram_credentials<'a>(
        &'a self,
        upserts: &'a [ScramCredentialUpsert],
    ) -> BoxFuture<'a, BatchResult<()>> {
        self.shared.inner.upsert_scram_credentials(upserts)
    }

    fn delete_scram_credentials<'a>(
        &'a self,
        users: &'a [String],
        mechanism: ScramMechanism,
    ) -> BoxFuture<'a, BatchResult<()>> {
        self.shared.inner.delete_scram_credentials(users, mechanism)
    }

    fn describe_scram_users<'a>(
        &'a self,
        users: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<ScramUser>, KafkaAdminError>> {
        self.shared.inner.describe_scram_users(users)
    }

    fn prime_topics(&self, names: &dyn Fn() -> Vec<String>) {
        if lock(&self.shared.state).primed {
            return;
        }
        let names = names();
        let now = Instant::now();
        let mut state = lock(&self.shared.state);
        let before = state.topics.len();
        for name in &names {
            state.entry(name, now);
        }
        if state.topics.len() > before {
            // A fill came first (an AccessPolicy's read of the ACLs), or is in flight: the next
            // read refreshes again, with these topics, rather than describing them product by
            // product.
            state.refreshed = None;
            state.primings += 1;
        }
        state.primed = true;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use futures::future::join_all;

    use super::*;
    use crate::provision::kafka::{
        AclOperation, AclPatternType, AclResourceType, FakeKafka, RDKafkaErrorCode,
    };

    const REFRESH: Duration = Duration::from_secs(10);

    fn layer(fake: &Arc<FakeKafka>) -> SnapshotKafka {
        let inner: Arc<dyn KafkaAdmin> = fake.clone();
        SnapshotKafka::new(
            inner,
            SnapshotSettings {
                refresh: REFRESH,
                batch_window: DEFAULT_BATCH_WINDOW,
                batch_max_items: DEFAULT_BATCH_MAX_ITEMS,
            },
        )
    }

    fn topic(name: &str) -> NewTopic {
        NewTopic {
            name: name.into(),
            partitions: 1,
            replication_factor: 1,
            configs: BTreeMap::from([("retention.ms".to_owned(), "604800000".to_owned())]),
        }
    }

    fn names(count: usize) -> Vec<String> {
        (0..count).map(|i| format!("d.p{i}.events")).collect()
    }

    /// A cluster that already holds `count` topics (a restart's), and their names.
    fn cluster_with_topics(count: usize) -> (Arc<FakeKafka>, Vec<String>) {
        let fake = Arc::new(FakeKafka::new());
        let names = names(count);
        for name in &names {
            fake.insert_topic(topic(name));
        }
        (fake, names)
    }

    fn producer_acl(topic: &str) -> AclBinding {
        AclBinding::allow(
            AclResourceType::Topic,
            AclPatternType::Literal,
            topic,
            "User:d",
            AclOperation::Write,
        )
    }

    fn count(fake: &FakeKafka, operation: AdminOperation) -> usize {
        fake.calls().iter().filter(|op| **op == operation).count()
    }

    fn outage() -> KafkaAdminError {
        KafkaAdminError::Unreachable {
            operation: AdminOperation::DescribeAcls,
            bootstrap_servers: "kafka:9093".into(),
            reason: "connection refused".into(),
        }
    }

    /// What one product's observe reads: its topic, and its domain's ACLs.
    async fn observe_product(kafka: &SnapshotKafka, name: &str) -> Option<TopicDescription> {
        kafka
            .describe_acls(&AclBindingFilter::for_principal("User:d"))
            .await
            .unwrap();
        kafka
            .describe_topics(&[name.to_owned()])
            .await
            .unwrap()
            .remove(0)
            .unwrap()
    }

    /// Makes `count` products' topics and ACLs through the layer, then lets the snapshot age past
    /// its refresh period, and returns how many describes a resync of them all then sends.
    async fn describes_of_a_resync(products: usize) -> (usize, usize) {
        let fake = Arc::new(FakeKafka::new());
        let kafka = layer(&fake);
        let names = names(products);
        let topics: Vec<NewTopic> = names.iter().map(|name| topic(name)).collect();
        let acls: Vec<AclBinding> = names.iter().map(|name| producer_acl(name)).collect();
        join_all(names.iter().map(|name| observe_product(&kafka, name))).await;
        kafka.create_topics(&topics).await.unwrap();
        kafka.create_acls(&acls).await.unwrap();
        tokio::time::advance(REFRESH + Duration::from_secs(1)).await;
        fake.clear_calls();
        // The resync: products one after the other, as their jittered requeues come.
        for name in &names {
            assert!(observe_product(&kafka, name).await.is_some(), "{name}");
        }
        assert!(
            fake.write_calls().is_empty(),
            "a resync with nothing changed writes nothing"
        );
        (
            count(&fake, AdminOperation::DescribeTopics),
            count(&fake, AdminOperation::DescribeAcls),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_resync_sends_the_same_describes_for_10_or_300_products() {
        let small = describes_of_a_resync(10).await;
        let large = describes_of_a_resync(300).await;
        assert_eq!(
            small,
            (1, 1),
            "one refresh: one topic describe, one ACL describe"
        );
        assert_eq!(large, small, "the count does not grow with the topics");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cold_start_shares_one_fill_and_batches_the_unknown_names() {
        let fake = Arc::new(FakeKafka::new());
        let kafka = layer(&fake);
        let names = names(200);
        let seen = join_all(names.iter().map(|name| observe_product(&kafka, name))).await;
        assert!(seen.iter().all(Option::is_none));
        assert_eq!(count(&fake, AdminOperation::DescribeAcls), 1);
        assert_eq!(
            count(&fake, AdminOperation::DescribeTopics),
            1,
            "200 products' first describes, asked together, are one request"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_restart_primed_with_every_topic_fills_them_in_one_refresh() {
        let (fake, names) = cluster_with_topics(1200);
        let kafka = layer(&fake);
        // An AccessPolicy's read comes first and fills the ACLs, with no topic known yet.
        kafka
            .describe_acls(&AclBindingFilter::for_principal("User:d"))
            .await
            .unwrap();
        let all = names.clone();
        kafka.prime_topics(&|| all.clone());
        for name in &names {
            assert!(observe_product(&kafka, name).await.is_some(), "{name}");
        }
        assert_eq!(
            count(&fake, AdminOperation::DescribeAcls),
            2,
            "the fill, then the refresh"
        );
        assert_eq!(
            count(&fake, AdminOperation::DescribeTopics),
            3,
            "1,200 topics in requests of 500, however the products come"
        );
        kafka.prime_topics(&|| panic!("not asked again once primed"));
    }

    #[tokio::test(start_paused = true)]
    async fn topics_primed_while_the_first_fill_is_in_flight_are_filled_by_the_next_refresh() {
        let (fake, names) = cluster_with_topics(1200);
        fake.set_read_latency(Duration::from_millis(100));
        let kafka = layer(&fake);
        // An AccessPolicy's read starts the first fill with no topic known yet, and the first
        // DataProduct reconcile names every topic while that fill is waiting for Kafka.
        let filter = AclBindingFilter::for_principal("User:d");
        let all = names.clone();
        let prime_meanwhile = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            kafka.prime_topics(&|| all.clone());
        };
        let (filled, ()) = tokio::join!(kafka.describe_acls(&filter), prime_meanwhile);
        filled.unwrap();
        assert_eq!(count(&fake, AdminOperation::DescribeTopics), 0);
        for name in &names {
            assert!(observe_product(&kafka, name).await.is_some(), "{name}");
        }
        assert_eq!(
            count(&fake, AdminOperation::DescribeTopics),
            3,
            "1,200 topics in requests of 500 by the refresh after the fill, not one per product"
        );
        assert_eq!(count(&fake, AdminOperation::DescribeAcls), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_creates_coalesce_into_one_request_each() {
        let fake = Arc::new(FakeKafka::new());
        let kafka = layer(&fake);
        let names = names(50);
        observe_product(&kafka, "d.first.events").await;
        let created = join_all(names.iter().map(|name| {
            let kafka = &kafka;
            async move {
                let topics = [topic(name)];
                let topic_results = kafka.create_topics(&topics).await.unwrap();
                let acl_results = kafka.create_acls(&[producer_acl(name)]).await.unwrap();
                topic_results.into_iter().chain(acl_results)
            }
        }))
        .await;
        assert!(created.into_iter().flatten().all(|result| result.is_ok()));
        assert_eq!(count(&fake, AdminOperation::CreateTopics), 1);
        assert_eq!(count(&fake, AdminOperation::CreateAcls), 1);
        assert_eq!(fake.topic_names().len(), 50);
        assert_eq!(fake.acls().len(), 50);

        // Each sees its own write at once, with no describe of its topic.
        fake.clear_calls();
        let seen = observe_product(&kafka, &names[7]).await.unwrap();
        assert_eq!(seen.dynamic_configs()["retention.ms"], "604800000");
        assert!(
            !fake.calls().contains(&AdminOperation::DescribeTopics),
            "{:?}",
            fake.calls()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_is_capped_and_more_items_make_more_requests() {
        let fake = Arc::new(FakeKafka::new());
        let inner: Arc<dyn KafkaAdmin> = fake.clone();
        let kafka = SnapshotKafka::new(
            inner,
            SnapshotSettings {
                refresh: REFRESH,
                batch_window: DEFAULT_BATCH_WINDOW,
                batch_max_items: 10,
            },
        );
        let names = names(25);
        join_all(names.iter().map(|name| {
            let kafka = &kafka;
            async move { kafka.create_topics(&[topic(name)]).await.unwrap() }
        }))
        .await;
        assert_eq!(count(&fake, AdminOperation::CreateTopics), 3);
        assert_eq!(fake.topic_names().len(), 25);
    }

    #[tokio::test(start_paused = true)]
    async fn one_bad_item_fails_only_its_caller() {
        let fake = Arc::new(FakeKafka::new());
        let kafka = layer(&fake);
        let mut bad = topic("d.bad.events");
        bad.configs.insert("cleanup.policy".into(), "shred".into());
        let good = [topic("d.a.events"), topic("d.b.events")];
        let (a, bad_result, b) = tokio::join!(
            kafka.create_topics(std::slice::from_ref(&good[0])),
            kafka.create_topics(std::slice::from_ref(&bad)),
            kafka.create_topics(std::slice::from_ref(&good[1])),
        );
        assert_eq!(count(&fake, AdminOperation::CreateTopics), 1, "one request");
        assert!(a.unwrap()[0].is_ok());
        assert!(b.unwrap()[0].is_ok());
        let refused = bad_result.unwrap().remove(0).unwrap_err();
        assert_eq!(refused.code(), Some(RDKafkaErrorCode::InvalidConfig));
        assert_eq!(
            fake.topic_names(),
            ["d.a.events", "d.b.events"],
            "the others were made"
        );
        let seen = kafka.describe_topics(&["d.bad.events".to_owned()]).await;
        assert_eq!(seen.unwrap().remove(0).unwrap(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_whole_request_failure_reaches_every_caller_of_the_batch() {
        let fake = Arc::new(FakeKafka::new());
        let kafka = layer(&fake);
        fake.start_outage(outage());
        let (one, two) = ([producer_acl("d.a.events")], [producer_acl("d.b.events")]);
        let (a, b) = tokio::join!(kafka.create_acls(&one), kafka.create_acls(&two));
        assert!(a.unwrap_err().is_transient());
        assert!(b.unwrap_err().is_transient());
        assert_eq!(count(&fake, AdminOperation::CreateAcls), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn two_callers_of_one_topic_never_share_a_request() {
        let fake = Arc::new(FakeKafka::new());
        let kafka = layer(&fake);
        let one = [topic("d.same.events")];
        let two = [topic("d.same.events")];
        let (first, second) = tokio::join!(kafka.create_topics(&one), kafka.create_topics(&two));
        let mut results = vec![first.unwrap().remove(0), second.unwrap().remove(0)];
        results.sort_by_key(Result::is_err);
        assert!(results[0].is_ok());
        assert!(
            results[1]
                .as_ref()
                .is_err_and(KafkaAdminError::is_topic_already_exists),
            "as if sent alone, not refused as a duplicate: {results:?}"
        );
        assert_eq!(count(&fake, AdminOperation::CreateTopics), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn drift_made_outside_appears_after_a_refresh() {
        let fake = Arc::new(FakeKafka::new());
        let kafka = layer(&fake);
        let name = "d.orders.events";
        observe_product(&kafka, name).await;
        kafka.create_topics(&[topic(name)]).await.unwrap();
        kafka.create_acls(&[producer_acl(name)]).await.unwrap();

        // Someone alters the config and deletes the ACL with Kafka's own tools.
        assert!(fake.set_topic_config_directly(name, "retention.ms", Some("1000")));
        let inner: &dyn KafkaAdmin = fake.as_ref();
        inner
            .delete_acls(&[AclBindingFilter::exact(&producer_acl(name))])
            .await
            .unwrap();
        // Within the refresh period the snapshot answers, without asking Kafka.
        let seen = observe_product(&kafka, name).await.unwrap();
        assert_eq!(seen.dynamic_configs()["retention.ms"], "604800000");

        tokio::time::advance(REFRESH).await;
        let seen = observe_product(&kafka, name).await.unwrap();
        assert_eq!(
            seen.dynamic_configs()["retention.ms"],
            "1000",
            "the drift is seen"
        );
        let acls = kafka
            .describe_acls(&AclBindingFilter::for_principal("User:d"))
            .await
            .unwrap();
        assert!(acls.is_empty(), "the deleted ACL is seen missing: {acls:?}");

        // A topic deleted outside is seen missing after the next refresh, and made again.
        inner.delete_topics(&[name.to_owned()]).await.unwrap();
        tokio::time::advance(REFRESH).await;
        assert_eq!(observe_product(&kafka, name).await, None);
        assert!(kafka.create_topics(&[topic(name)]).await.unwrap()[0].is_ok());
        assert!(observe_product(&kafka, name).await.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_topic_made_by_someone_else_between_refreshes_is_described_when_create_finds_it() {
        let fake = Arc::new(FakeKafka::new());
        let kafka = layer(&fake);
        let name = "d.adopted.events";
        assert_eq!(observe_product(&kafka, name).await, None);
        let mut theirs = topic(name);
        theirs.partitions = 3;
        theirs.configs = BTreeMap::from([("retention.ms".to_owned(), "1".to_owned())]);
        fake.insert_topic(theirs);

        let created = kafka.create_topics(&[topic(name)]).await.unwrap().remove(0);
        assert!(created.is_err_and(|e| e.is_topic_already_exists()));
        fake.clear_calls();
        let seen = observe_product(&kafka, name).await.unwrap();
        assert_eq!(seen.partitions, 3);
        assert_eq!(seen.dynamic_configs()["retention.ms"], "1");
        assert_eq!(count(&fake, AdminOperation::DescribeTopics), 1, "it alone");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_keeps_the_old_snapshot_and_says_kafka_is_unavailable() {
        let fake = Arc::new(FakeKafka::new());
        let kafka = layer(&fake);
        let name = "d.orders.events";
        observe_product(&kafka, name).await;
        kafka.create_topics(&[topic(name)]).await.unwrap();
        kafka.create_acls(&[producer_acl(name)]).await.unwrap();

        fake.start_outage(outage());
        tokio::time::advance(REFRESH).await;
        fake.clear_calls();
        let filter = AclBindingFilter::for_principal("User:d");
        let reads = join_all((0..20).map(|_| kafka.describe_acls(&filter))).await;
        assert!(
            reads
                .iter()
                .all(|read| read.as_ref().is_err_and(KafkaAdminError::is_transient)),
            "{reads:?}"
        );
        assert_eq!(
            count(&fake, AdminOperation::DescribeAcls),
            1,
            "the reads share the failed attempt"
        );
        {
            let state = lock(&kafka.shared.state);
            assert!(state.topics[name].seen.is_some(), "nothing looks missing");
            assert_eq!(state.acls.len(), 1);
        }

        fake.end_outage();
        tokio::time::advance(RETRY_AFTER_FAILURE).await;
        let seen = observe_product(&kafka, name).await;
        assert!(seen.is_some(), "the next read refreshes");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refresh_in_flight_does_not_undo_a_write_that_landed_meanwhile() {
        let fake = Arc::new(FakeKafka::new());
        let kafka = layer(&fake);
        let name = "d.orders.events";
        observe_product(&kafka, name).await;
        let started = Instant::now();
        kafka.create_topics(&[topic(name)]).await.unwrap();
        {
            // An answer read before the create, arriving after it.
            let mut state = lock(&kafka.shared.state);
            let entry = state.entry(name, started);
            entry.seen = None;
            state.replay_since(started);
            assert!(state.topics[name].seen.is_some());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn deleting_acls_and_topics_updates_the_snapshot() {
        let fake = Arc::new(FakeKafka::new());
        let kafka = layer(&fake);
        let name = "d.orders.events";
        observe_product(&kafka, name).await;
        kafka.create_topics(&[topic(name)]).await.unwrap();
        kafka.create_acls(&[producer_acl(name)]).await.unwrap();
        let deleted = kafka
            .delete_acls(&[AclBindingFilter::for_principal("User:d")])
            .await
            .unwrap();
        assert_eq!(deleted[0].as_ref().unwrap().len(), 1);
        kafka.delete_topics(&[name.to_owned()]).await.unwrap();
        fake.clear_calls();
        assert_eq!(observe_product(&kafka, name).await, None);
        assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_window_sends_each_call_as_it_comes() {
        let fake = Arc::new(FakeKafka::new());
        let inner: Arc<dyn KafkaAdmin> = fake.clone();
        let kafka = SnapshotKafka::new(
            inner,
            SnapshotSettings {
                refresh: REFRESH,
                batch_window: Duration::ZERO,
                batch_max_items: DEFAULT_BATCH_MAX_ITEMS,
            },
        );
        observe_product(&kafka, "d.first.events").await;
        fake.clear_calls();
        let (one, two) = ([topic("d.a.events")], [topic("d.b.events")]);
        let (a, b) = tokio::join!(kafka.create_topics(&one), kafka.create_topics(&two));
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(count(&fake, AdminOperation::CreateTopics), 2);
        fake.clear_calls();
        assert!(observe_product(&kafka, "d.a.events").await.is_some());
        assert!(!fake.calls().contains(&AdminOperation::DescribeTopics));
    }
}
