//! An in-process Kafka for reconciler unit tests, answering like the broker for every call
//! the operator makes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;

use super::acl::{
    self, AclBinding, AclBindingFilter, AclResourceType, AuthorizationRequest,
    CLUSTER_RESOURCE_NAME,
};
use super::batch::{self, Outcomes, topic_resource, user_resource};
use super::error::{AdminOperation, KafkaAdminError, RDKafkaErrorCode};
use super::scram::{
    MAX_SCRAM_ITERATIONS, MIN_SCRAM_ITERATIONS, ScramCredentialInfo, ScramCredentialUpsert,
    ScramMechanism, ScramUser,
};
use super::topic::{
    ConfigSource, NewTopic, PartitionIncrease, TopicConfigAlteration, TopicConfigEntry,
    TopicDescription,
};
use super::{BatchResult, KafkaAdmin};

/// The topic configs the fake knows, with Kafka's defaults. A key outside this list is
/// refused with `InvalidConfig`, as the broker refuses unknown keys.
const TOPIC_CONFIG_DEFAULTS: &[(&str, &str)] = &[
    ("cleanup.policy", "delete"),
    ("compression.type", "producer"),
    ("delete.retention.ms", "86400000"),
    ("file.delete.delay.ms", "60000"),
    ("flush.messages", "9223372036854775807"),
    ("flush.ms", "9223372036854775807"),
    ("index.interval.bytes", "4096"),
    ("local.retention.bytes", "-2"),
    ("local.retention.ms", "-2"),
    ("max.compaction.lag.ms", "9223372036854775807"),
    ("max.message.bytes", "1048588"),
    ("message.timestamp.after.max.ms", "3600000"),
    ("message.timestamp.before.max.ms", "9223372036854775807"),
    ("message.timestamp.type", "CreateTime"),
    ("min.cleanable.dirty.ratio", "0.5"),
    ("min.compaction.lag.ms", "0"),
    ("min.insync.replicas", "1"),
    ("preallocate", "false"),
    ("remote.storage.enable", "false"),
    ("retention.bytes", "-1"),
    ("retention.ms", "604800000"),
    ("segment.bytes", "1073741824"),
    ("segment.index.bytes", "10485760"),
    ("segment.jitter.ms", "0"),
    ("segment.ms", "604800000"),
    ("unclean.leader.election.enable", "false"),
];

#[derive(Debug, Clone)]
struct FakeTopic {
    partitions: i32,
    replication_factor: i16,
    dynamic: BTreeMap<String, String>,
}

#[derive(Clone)]
struct FakeCredential {
    mechanism: ScramMechanism,
    iterations: i32,
    password: String,
}

impl std::fmt::Debug for FakeCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCredential")
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Default)]
struct State {
    topics: BTreeMap<String, FakeTopic>,
    acls: BTreeSet<AclBinding>,
    /// Each user's credentials, at most one per mechanism.
    users: BTreeMap<String, Vec<FakeCredential>>,
    calls: Vec<AdminOperation>,
    outage: Option<KafkaAdminError>,
    /// How long describes take to answer (zero: at once).
    read_latency: Duration,
}

/// An in-process stand-in for a Kafka cluster with the rules the operator relies on:
/// existing topics are not created twice, partitions only grow, unknown config keys and
/// values are refused, ACL filters match like Kafka's, SCRAM iteration bounds hold.
///
/// Besides the [`KafkaAdmin`] calls it records which calls were made (to assert that a
/// resync writes nothing), can fail every request (an outage), can change things behind
/// the operator's back (drift, pre-existing topics), can answer describes slowly (to let a
/// test act while one is in flight), and answers whether a user would authenticate or be
/// authorized.
#[derive(Debug)]
pub struct FakeKafka {
    brokers: i16,
    state: Mutex<State>,
}

impl Default for FakeKafka {
    fn default() -> Self {
        Self::new()
    }
}

fn invalid_config(
    operation: AdminOperation,
    topic: &str,
    key: &str,
    value: &str,
) -> Option<KafkaAdminError> {
    let Some(&(_, default)) = TOPIC_CONFIG_DEFAULTS.iter().find(|(k, _)| *k == key) else {
        return Some(KafkaAdminError::kafka(
            operation,
            topic_resource(topic),
            RDKafkaErrorCode::InvalidConfig,
            format!("Unknown topic config name: {key}"),
        ));
    };
    let valid = match key {
        "cleanup.policy" => value
            .split(',')
            .all(|policy| matches!(policy.trim(), "delete" | "compact")),
        "compression.type" => matches!(
            value,
            "uncompressed" | "zstd" | "lz4" | "snappy" | "gzip" | "producer"
        ),
        "message.timestamp.type" => matches!(value, "CreateTime" | "LogAppendTime"),
        "min.cleanable.dirty.ratio" => value
            .parse::<f64>()
            .is_ok_and(|ratio| (0.0..=1.0).contains(&ratio)),
        _ if default.parse::<i64>().is_ok() => value.parse::<i64>().is_ok(),
        _ if default.parse::<bool>().is_ok() => value.parse::<bool>().is_ok(),
        _ => true,
    };
    (!valid).then(|| {
        KafkaAdminError::kafka(
            operation,
            topic_resource(topic),
            RDKafkaErrorCode::InvalidConfig,
            format!("Invalid value {value} for configuration {key}"),
        )
    })
}

fn is_valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn unknown_topic(operation: AdminOperation, name: &str) -> KafkaAdminError {
    KafkaAdminError::kafka(
        operation,
        topic_resource(name),
        RDKafkaErrorCode::UnknownTopicOrPartition,
        "This server does not host this topic-partition.",
    )
}

impl FakeKafka {
    /// A cluster of three brokers, with nothing in it.
    pub fn new() -> Self {
        Self::with_brokers(3)
    }

    /// A cluster of `brokers` brokers: topics may have at most that many replicas.
    pub fn with_brokers(brokers: i16) -> Self {
        Self {
            brokers,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock leaves consistent data behind: every
        // mutation below is a single insert or remove.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the call and returns the outage error, if one is set.
    fn begin(&self, operation: AdminOperation) -> Result<MutexGuard<'_, State>, KafkaAdminError> {
        let mut state = self.state();
        state.calls.push(operation);
        match &state.outage {
            Some(error) => Err(error.clone()),
            None => Ok(state),
        }
    }

    /// Every call made so far, in order.
    pub fn calls(&self) -> Vec<AdminOperation> {
        self.state().calls.clone()
    }

    /// The calls made so far that change something in the cluster.
    pub fn write_calls(&self) -> Vec<AdminOperation> {
        self.calls()
            .into_iter()
            .filter(|op| {
                !matches!(
                    op,
                    AdminOperation::DescribeTopics
                        | AdminOperation::DescribeAcls
                        | AdminOperation::DescribeScramCredentials
                )
            })
            .collect()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        self.state().calls.clear();
    }

    /// Makes every request fail as a whole with `error` (e.g. all brokers down), until
    /// [`FakeKafka::end_outage`].
    pub fn start_outage(&self, error: KafkaAdminError) {
        self.state().outage = Some(error);
    }

    /// Ends an outage started with [`FakeKafka::start_outage`].
    pub fn end_outage(&self) {
        self.state().outage = None;
    }

    /// Makes `describe_topics` and `describe_acls` answer after `latency` (of tokio's clock, so
    /// a test with paused time stays instant), as a loaded broker does.
    pub fn set_read_latency(&self, latency: Duration) {
        self.state().read_latency = latency;
    }

    async fn read_delay(&self) {
        let latency = self.state().read_latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
    }

    /// A topic that exists before the operator looks (someone made it by hand).
    pub fn insert_topic(&self, topic: NewTopic) {
        self.state().topics.insert(
            topic.name,
            FakeTopic {
                partitions: topic.partitions,
                replication_factor: topic.replication_factor,
                dynamic: topic.configs,
            },
        );
    }

    /// Sets a topic config behind the operator's back (drift); `None` removes it.
    /// Returns whether the topic exists.
    pub fn set_topic_config_directly(&self, topic: &str, key: &str, value: Option<&str>) -> bool {
        let mut state = self.state();
        let Some(topic) = state.topics.get_mut(topic) else {
            return false;
        };
        match value {
            Some(value) => topic.dynamic.insert(key.to_owned(), value.to_owned()),
            None => topic.dynamic.remove(key),
        };
        true
    }

    /// A topic as [`KafkaAdmin::describe_topics`] would describe it.
    pub fn topic(&self, name: &str) -> Option<TopicDescription> {
        self.state()
            .topics
            .get(name)
            .map(|topic| describe(name, topic))
    }

    /// The names of all topics.
    pub fn topic_names(&self) -> Vec<String> {
        self.state().topics.keys().cloned().collect()
    }

    /// Every ACL binding, sorted.
    pub fn acls(&self) -> Vec<AclBinding> {
        self.state().acls.iter().cloned().collect()
    }

    /// The users that have SCRAM credentials.
    pub fn scram_user_names(&self) -> Vec<String> {
        self.state().users.keys().cloned().collect()
    }

    /// Whether the user would authenticate with this password (by any mechanism).
    pub fn authenticates(&self, user: &str, password: &str) -> bool {
        self.state().users.get(user).is_some_and(|credentials| {
            credentials
                .iter()
                .any(|credential| credential.password == password)
        })
    }

    /// Whether the user would authenticate with this password by `mechanism`.
    pub fn authenticates_with(
        &self,
        user: &str,
        mechanism: ScramMechanism,
        password: &str,
    ) -> bool {
        self.state().users.get(user).is_some_and(|credentials| {
            credentials.iter().any(|credential| {
                credential.mechanism == mechanism && credential.password == password
            })
        })
    }

    /// Whether the ACLs allow the request, as Kafka's `StandardAuthorizer` decides for a
    /// principal that is not a super user.
    pub fn is_authorized(&self, request: &AuthorizationRequest<'_>) -> bool {
        acl::is_authorized(&self.state().acls, request)
    }
}

fn describe(name: &str, topic: &FakeTopic) -> TopicDescription {
    let mut configs: BTreeMap<String, TopicConfigEntry> = TOPIC_CONFIG_DEFAULTS
        .iter()
        .map(|(key, default)| {
            (
                (*key).to_owned(),
                TopicConfigEntry {
                    value: Some((*default).to_owned()),
                    source: ConfigSource::Default,
                    sensitive: false,
                    read_only: false,
                },
            )
        })
        .collect();
    for (key, value) in &topic.dynamic {
        configs.insert(
            key.clone(),
            TopicConfigEntry {
                value: Some(value.clone()),
                source: ConfigSource::DynamicTopic,
                sensitive: false,
                read_only: false,
            },
        );
    }
    TopicDescription {
        name: name.to_owned(),
        partitions: topic.partitions,
        replication_factor: topic.replication_factor,
        configs,
    }
}

fn for_each_pending<T>(
    outcomes: &mut Outcomes<T>,
    mut answer: impl FnMut(usize) -> Result<T, KafkaAdminError>,
) {
    for index in outcomes.pending() {
        let result = answer(index);
        outcomes.settle(index, result);
    }
}

impl FakeKafka {
    fn create_topics_now(&self, topics: &[NewTopic]) -> BatchResult<()> {
        let operation = AdminOperation::CreateTopics;
        let mut state = self.begin(operation)?;
        let mut outcomes = batch::check_new_topics(topics);
        for_each_pending(&mut outcomes, |index| {
            let topic = &topics[index];
            let resource = topic_resource(&topic.name);
            if !is_valid_topic_name(&topic.name) {
                return Err(KafkaAdminError::kafka(
                    operation,
                    resource,
                    RDKafkaErrorCode::InvalidTopic,
                    format!("Topic name \"{}\" is illegal", topic.name),
                ));
            }
            if state.topics.contains_key(&topic.name) {
                return Err(KafkaAdminError::kafka(
                    operation,
                    resource,
                    RDKafkaErrorCode::TopicAlreadyExists,
                    format!("Topic '{}' already exists.", topic.name),
                ));
            }
            if topic.replication_factor > self.brokers {
                return Err(KafkaAdminError::kafka(
                    operation,
                    resource,
                    RDKafkaErrorCode::InvalidReplicationFactor,
                    format!(
                        "Unable to replicate the partition {} time(s): The target replication factor of {} cannot be reached because only {} broker(s) are registered.",
                        topic.replication_factor, topic.replication_factor, self.brokers
                    ),
                ));
            }
            if let Some(error) = topic
                .configs
                .iter()
                .find_map(|(key, value)| invalid_config(operation, &topic.name, key, value))
            {
                return Err(error);
            }
            state.topics.insert(
                topic.name.clone(),
                FakeTopic {
                    partitions: topic.partitions,
                    replication_factor: topic.replication_factor,
                    dynamic: topic.configs.clone(),
                },
            );
            Ok(())
        });
        Ok(outcomes.finish(|i| topic_resource(&topics[i].name)))
    }

    fn describe_topics_now(&self, names: &[String]) -> BatchResult<Option<TopicDescription>> {
        let state = self.begin(AdminOperation::DescribeTopics)?;
        Ok(names
            .iter()
            .map(|name| Ok(state.topics.get(name).map(|topic| describe(name, topic))))
            .collect())
    }

    fn create_partitions_now(&self, increases: &[PartitionIncrease]) -> BatchResult<()> {
        let operation = AdminOperation::CreatePartitions;
        let mut state = self.begin(operation)?;
        let mut outcomes = batch::check_partition_increases(increases);
        for_each_pending(&mut outcomes, |index| {
            let increase = &increases[index];
            let Some(topic) = state.topics.get_mut(&increase.topic) else {
                return Err(unknown_topic(operation, &increase.topic));
            };
            if increase.total_partitions <= topic.partitions {
                let message = if increase.total_partitions == topic.partitions {
                    format!("Topic already has {} partitions.", topic.partitions)
                } else {
                    format!(
                        "Topic currently has {} partitions, which is higher than the requested {}.",
                        topic.partitions, increase.total_partitions
                    )
                };
                return Err(KafkaAdminError::kafka(
                    operation,
                    topic_resource(&increase.topic),
                    RDKafkaErrorCode::InvalidPartitions,
                    message,
                ));
            }
            topic.partitions = increase.total_partitions;
            Ok(())
        });
        Ok(outcomes.finish(|i| topic_resource(&increases[i].topic)))
    }

    fn alter_topic_configs_now(&self, alterations: &[TopicConfigAlteration]) -> BatchResult<()> {
        let operation = AdminOperation::AlterTopicConfigs;
        let mut state = self.begin(operation)?;
        let mut outcomes = batch::check_config_alterations(alterations);
        for_each_pending(&mut outcomes, |index| {
            let alteration = &alterations[index];
            let Some(topic) = state.topics.get_mut(&alteration.topic) else {
                return Err(unknown_topic(operation, &alteration.topic));
            };
            let set = alteration.set.iter().map(|(k, v)| (k.as_str(), v.as_str()));
            // Deleting a key only needs the name to be valid; any default value passes.
            let delete = alteration.delete.iter().map(|k| {
                let default = TOPIC_CONFIG_DEFAULTS
                    .iter()
                    .find(|(known, _)| known == k)
                    .map_or("", |(_, default)| *default);
                (k.as_str(), default)
            });
            if let Some(error) = set
                .chain(delete)
                .find_map(|(key, value)| invalid_config(operation, &alteration.topic, key, value))
            {
                return Err(error);
            }
            for (key, value) in &alteration.set {
                topic.dynamic.insert(key.clone(), value.clone());
            }
            for key in &alteration.delete {
                topic.dynamic.remove(key);
            }
            Ok(())
        });
        Ok(outcomes.finish(|i| topic_resource(&alterations[i].topic)))
    }

    fn delete_topics_now(&self, names: &[String]) -> BatchResult<()> {
        let operation = AdminOperation::DeleteTopics;
        let mut state = self.begin(operation)?;
        let mut outcomes = batch::check_topic_names(operation, names);
        for_each_pending(&mut outcomes, |index| {
            match state.topics.remove(&names[index]) {
                Some(_) => Ok(()),
                None => Err(unknown_topic(operation, &names[index])),
            }
        });
        Ok(outcomes.finish(|i| topic_resource(&names[i])))
    }

    fn create_acls_now(&self, bindings: &[AclBinding]) -> BatchResult<()> {
        let operation = AdminOperation::CreateAcls;
        let mut state = self.begin(operation)?;
        let mut outcomes = batch::check_acl_bindings(bindings);
        for_each_pending(&mut outcomes, |index| {
            let binding = &bindings[index];
            let refusal = if binding.resource_name.is_empty() {
                Some("Resource name should not be empty".to_owned())
            } else if binding.resource_type == AclResourceType::Cluster
                && binding.resource_name != CLUSTER_RESOURCE_NAME
            {
                Some(format!(
                    "The only valid name for the CLUSTER resource is {CLUSTER_RESOURCE_NAME}"
                ))
            } else if binding
                .principal
                .split_once(':')
                .is_none_or(|(kind, name)| kind.is_empty() || name.is_empty())
            {
                Some(format!(
                    "Could not parse principal from `{}`",
                    binding.principal
                ))
            } else if binding.host.is_empty() {
                Some("Host should not be empty".to_owned())
            } else {
                None
            };
            if let Some(message) = refusal {
                return Err(KafkaAdminError::kafka(
                    operation,
                    binding.to_string(),
                    RDKafkaErrorCode::InvalidRequest,
                    message,
                ));
            }
            state.acls.insert(binding.clone());
            Ok(())
        });
        Ok(outcomes.finish(|i| bindings[i].to_string()))
    }

    fn describe_acls_now(
        &self,
        filter: &AclBindingFilter,
    ) -> Result<Vec<AclBinding>, KafkaAdminError> {
        let state = self.begin(AdminOperation::DescribeAcls)?;
        Ok(filter.select(&state.acls))
    }

    fn delete_acls_now(&self, filters: &[AclBindingFilter]) -> BatchResult<Vec<AclBinding>> {
        let operation = AdminOperation::DeleteAcls;
        let mut state = self.begin(operation)?;
        let mut outcomes = batch::check_acl_filters(operation, filters);
        for_each_pending(&mut outcomes, |index| {
            let deleted: Vec<AclBinding> = state
                .acls
                .iter()
                .filter(|binding| filters[index].matches(binding))
                .cloned()
                .collect();
            for binding in &deleted {
                state.acls.remove(binding);
            }
            Ok(deleted)
        });
        Ok(outcomes.finish(|i| filters[i].to_string()))
    }

    fn upsert_scram_credentials_now(&self, upserts: &[ScramCredentialUpsert]) -> BatchResult<()> {
        let operation = AdminOperation::UpsertScramCredentials;
        let mut state = self.begin(operation)?;
        let mut outcomes = batch::check_scram_upserts(upserts);
        for_each_pending(&mut outcomes, |index| {
            let upsert = &upserts[index];
            if !(MIN_SCRAM_ITERATIONS..=MAX_SCRAM_ITERATIONS).contains(&upsert.iterations) {
                return Err(KafkaAdminError::kafka(
                    operation,
                    user_resource(&upsert.user),
                    RDKafkaErrorCode::UnacceptableCredential,
                    format!(
                        "Iterations {} not in the range {MIN_SCRAM_ITERATIONS}..{MAX_SCRAM_ITERATIONS}",
                        upsert.iterations
                    ),
                ));
            }
            let credentials = state.users.entry(upsert.user.clone()).or_default();
            credentials.retain(|credential| credential.mechanism != upsert.mechanism);
            credentials.push(FakeCredential {
                mechanism: upsert.mechanism,
                iterations: upsert.iterations,
                password: upsert.password.clone(),
            });
            Ok(())
        });
        Ok(outcomes.finish(|i| user_resource(&upserts[i].user)))
    }

    fn delete_scram_credentials_now(
        &self,
        users: &[String],
        mechanism: ScramMechanism,
    ) -> BatchResult<()> {
        let operation = AdminOperation::DeleteScramCredentials;
        let mut state = self.begin(operation)?;
        let mut outcomes = batch::check_scram_deletions(users);
        for_each_pending(&mut outcomes, |index| {
            let credentials = state.users.get_mut(&users[index]);
            let removed = credentials.is_some_and(|credentials| {
                let before = credentials.len();
                credentials.retain(|credential| credential.mechanism != mechanism);
                credentials.len() < before
            });
            if state.users.get(&users[index]).is_some_and(Vec::is_empty) {
                state.users.remove(&users[index]);
            }
            if removed {
                Ok(())
            } else {
                Err(KafkaAdminError::kafka(
                    operation,
                    user_resource(&users[index]),
                    RDKafkaErrorCode::ResourceNotFound,
                    "Attempt to delete a user credential that does not exist",
                ))
            }
        });
        Ok(outcomes.finish(|i| user_resource(&users[i])))
    }

    fn describe_scram_users_now(
        &self,
        users: &[String],
    ) -> Result<Vec<ScramUser>, KafkaAdminError> {
        let state = self.begin(AdminOperation::DescribeScramCredentials)?;
        Ok(state
            .users
            .iter()
            .filter(|(user, _)| users.is_empty() || users.contains(user))
            .map(|(user, credentials)| ScramUser {
                user: user.clone(),
                credentials: credentials
                    .iter()
                    .map(|credential| ScramCredentialInfo {
                        mechanism: credential.mechanism,
                        iterations: credential.iterations,
                    })
                    .collect(),
            })
            .collect())
    }
}

impl KafkaAdmin for FakeKafka {
    fn create_topics<'a>(&'a self, topics: &'a [NewTopic]) -> BoxFuture<'a, BatchResult<()>> {
        Box::pin(async move { self.create_topics_now(topics) })
    }

    fn describe_topics<'a>(
        &'a self,
        names: &'a [String],
    ) -> BoxFuture<'a, BatchResult<Option<TopicDescription>>> {
        Box::pin(async move {
            self.read_delay().await;
            self.describe_topics_now(names)
        })
    }

    fn create_partitions<'a>(
        &'a self,
        increases: &'a [PartitionIncrease],
    ) -> BoxFuture<'a, BatchResult<()>> {
        Box::pin(async move { self.create_partitions_now(increases) })
    }

    fn alter_topic_configs<'a>(
        &'a self,
        alterations: &'a [TopicConfigAlteration],
    ) -> BoxFuture<'a, BatchResult<()>> {
        Box::pin(async move { self.alter_topic_configs_now(alterations) })
    }

    fn delete_topics<'a>(&'a self, names: &'a [String]) -> BoxFuture<'a, BatchResult<()>> {
        Box::pin(async move { self.delete_topics_now(names) })
    }

    fn create_acls<'a>(&'a self, bindings: &'a [AclBinding]) -> BoxFuture<'a, BatchResult<()>> {
        Box::pin(async move { self.create_acls_now(bindings) })
    }

    fn describe_acls<'a>(
        &'a self,
        filter: &'a AclBindingFilter,
    ) -> BoxFuture<'a, Result<Vec<AclBinding>, KafkaAdminError>> {
        Box::pin(async move {
            self.read_delay().await;
            self.describe_acls_now(filter)
        })
    }

    fn delete_acls<'a>(
        &'a self,
        filters: &'a [AclBindingFilter],
    ) -> BoxFuture<'a, BatchResult<Vec<AclBinding>>> {
        Box::pin(async move { self.delete_acls_now(filters) })
    }

    fn upsert_scram_credentials<'a>(
        &'a self,
        upserts: &'a [ScramCredentialUpsert],
    ) -> BoxFuture<'a, BatchResult<()>> {
        Box::pin(async move { self.upsert_scram_credentials_now(upserts) })
    }

    fn delete_scram_credentials<'a>(
        &'a self,
        users: &'a [String],
        mechanism: ScramMechanism,
    ) -> BoxFuture<'a, BatchResult<()>> {
        Box::pin(async move { self.delete_scram_credentials_now(users, mechanism) })
    }

    fn describe_scram_users<'a>(
        &'a self,
        users: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<ScramUser>, KafkaAdminError>> {
        Box::pin(async move { self.describe_scram_users_now(users) })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::provision::kafka::{AclOperation, AclPatternType, user_principal};

    fn new_topic(name: &str, partitions: i32, configs: &[(&str, &str)]) -> NewTopic {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor: 1,
            configs: configs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[tokio::test]
    async fn creates_a_batch_where_bad_items_fail_alone() {
        let kafka: Arc<dyn KafkaAdmin> = Arc::new(FakeKafka::with_brokers(1));
        let topics = [
            new_topic("a.b.c", 3, &[("retention.ms", "1000")]),
            new_topic("bad config", 1, &[]),
            new_topic("a.b.d", 1, &[("retention.ms", "soon")]),
            new_topic("a.b.e", 1, &[("no.such.key", "1")]),
            NewTopic {
                replication_factor: 2,
                ..new_topic("a.b.f", 1, &[])
            },
            new_topic("a.b.g", 2, &[]),
        ];
        let results = kafka.create_topics(&topics).await.unwrap();
        assert!(results[0].is_ok());
        assert_eq!(
            results[1].as_ref().unwrap_err().code(),
            Some(RDKafkaErrorCode::InvalidTopic)
        );
        assert_eq!(
            results[2].as_ref().unwrap_err().code(),
            Some(RDKafkaErrorCode::InvalidConfig)
        );
        assert_eq!(
            results[3].as_ref().unwrap_err().code(),
            Some(RDKafkaErrorCode::InvalidConfig)
        );
        assert_eq!(
            results[4].as_ref().unwrap_err().code(),
            Some(RDKafkaErrorCode::InvalidReplicationFactor)
        );
        assert!(results[5].is_ok());

        let again = kafka.create_topics(&topics[..1]).await.unwrap();
        assert!(again[0].as_ref().unwrap_err().is_topic_already_exists());
    }

    #[tokio::test]
    async fn describes_partitions_and_dynamic_configs_and_none_for_missing_topics() {
        let kafka = FakeKafka::new();
        kafka
            .create_topics(&[new_topic("t", 6, &[("cleanup.policy", "compact")])])
            .await
            .unwrap();
        let described = kafka
            .describe_topics(&names(&["t", "missing"]))
            .await
            .unwrap();
        let topic = described[0].as_ref().unwrap().as_ref().unwrap();
        assert_eq!(topic.partitions, 6);
        assert_eq!(topic.replication_factor, 1);
        assert_eq!(
            topic.dynamic_configs(),
            BTreeMap::from([("cleanup.policy", "compact")])
        );
        assert_eq!(topic.config_value("retention.ms"), Some("604800000"));
        assert_eq!(described[1], Ok(None));
    }

    #[tokio::test]
    async fn partitions_only_grow() {
        let kafka = FakeKafka::new();
        kafka
            .create_topics(&[new_topic("t", 3, &[])])
            .await
            .unwrap();
        let increase = |topic: &str, total| PartitionIncrease {
            topic: topic.into(),
            total_partitions: total,
        };
        let results = kafka
            .create_partitions(&[increase("t", 2), increase("t", 3), increase("missing", 9)])
            .await
            .unwrap();
        assert_eq!(
            results[0].as_ref().unwrap_err().code(),
            Some(RDKafkaErrorCode::InvalidPartitions)
        );
        // The second names the same topic again, so it is refused before Kafka sees it.
        assert!(matches!(
            results[1],
            Err(KafkaAdminError::InvalidInput { .. })
        ));
        assert!(results[2].as_ref().unwrap_err().is_unknown_topic());
        assert_eq!(kafka.topic("t").unwrap().partitions, 3);

        let results = kafka.create_partitions(&[increase("t", 3)]).await.unwrap();
        assert_eq!(
            results[0].as_ref().unwrap_err().code(),
            Some(RDKafkaErrorCode::InvalidPartitions)
        );
        let results = kafka.create_partitions(&[increase("t", 8)]).await.unwrap();
        assert!(results[0].is_ok());
        assert_eq!(kafka.topic("t").unwrap().partitions, 8);
    }

    #[tokio::test]
    async fn alters_configs_incrementally() {
        let kafka = FakeKafka::new();
        kafka
            .create_topics(&[new_topic(
                "t",
                1,
                &[("retention.ms", "1000"), ("max.message.bytes", "2000")],
            )])
            .await
            .unwrap();
        let alteration = TopicConfigAlteration {
            topic: "t".into(),
            set: [("cleanup.policy".to_owned(), "compact".to_owned())].into(),
            delete: ["retention.ms".to_owned()].into(),
        };
        let bad = TopicConfigAlteration {
            topic: "missing".into(),
            ..TopicConfigAlteration::default()
        };
        let results = kafka.alter_topic_configs(&[alteration, bad]).await.unwrap();
        assert!(results[0].is_ok());
        assert!(results[1].as_ref().unwrap_err().is_unknown_topic());
        let topic = kafka.topic("t").unwrap();
        assert_eq!(
            topic.dynamic_configs(),
            BTreeMap::from([("cleanup.policy", "compact"), ("max.message.bytes", "2000")])
        );
    }

    #[tokio::test]
    async fn config_drift_is_found_and_repaired_then_nothing_is_written() {
        let kafka = FakeKafka::new();
        let spec: BTreeMap<String, String> =
            [("retention.ms".to_owned(), "604800000".to_owned())].into();
        kafka
            .create_topics(&[NewTopic {
                configs: spec.clone(),
                ..new_topic("t", 1, &[])
            }])
            .await
            .unwrap();
        assert!(kafka.set_topic_config_directly("t", "retention.ms", Some("1")));

        let topic = kafka.topic("t").unwrap();
        let drift = super::super::config_drift(&spec, &Default::default(), &topic);
        assert_eq!(drift.set, spec);
        kafka.alter_topic_configs(&[drift]).await.unwrap();

        kafka.clear_calls();
        let described = kafka.describe_topics(&names(&["t"])).await.unwrap();
        let topic = described[0].as_ref().unwrap().as_ref().unwrap();
        assert!(super::super::config_drift(&spec, &Default::default(), topic).is_empty());
        assert!(kafka.write_calls().is_empty());
    }

    #[tokio::test]
    async fn deletes_topics() {
        let kafka = FakeKafka::new();
        kafka
            .create_topics(&[new_topic("t", 1, &[])])
            .await
            .unwrap();
        let results = kafka
            .delete_topics(&names(&["t", "t", "missing"]))
            .await
            .unwrap();
        assert!(results[0].is_ok());
        assert!(matches!(
            results[1],
            Err(KafkaAdminError::InvalidInput { .. })
        ));
        assert!(results[2].as_ref().unwrap_err().is_unknown_topic());
        assert!(kafka.topic_names().is_empty());
    }

    #[tokio::test]
    async fn acls_are_created_once_described_by_filter_and_deleted_exactly() {
        let kafka = FakeKafka::new();
        let payments = user_principal("payments");
        let marketing = user_principal("marketing");
        let mut bindings = AclBinding::allow_each(
            AclResourceType::Topic,
            AclPatternType::Literal,
            "payments.orders.events",
            &payments,
            &[
                AclOperation::Write,
                AclOperation::Describe,
                AclOperation::IdempotentWrite,
            ],
        );
        bindings.push(AclBinding::allow(
            AclResourceType::Group,
            AclPatternType::Prefixed,
            "marketing.",
            &marketing,
            AclOperation::Read,
        ));
        bindings.push(bindings[0].clone());
        bindings.push(AclBinding::allow(
            AclResourceType::Cluster,
            AclPatternType::Literal,
            "not-the-cluster",
            &payments,
            AclOperation::IdempotentWrite,
        ));
        let results = kafka.create_acls(&bindings).await.unwrap();
        assert!(results[..5].iter().all(Result::is_ok), "{results:?}");
        assert_eq!(
            results[5].as_ref().unwrap_err().code(),
            Some(RDKafkaErrorCode::InvalidRequest)
        );
        assert_eq!(kafka.acls().len(), 4);

        let of_payments = kafka
            .describe_acls(&AclBindingFilter::for_principal(&payments))
            .await
            .unwrap();
        assert_eq!(of_payments.len(), 3);

        let request = AuthorizationRequest {
            principal: &payments,
            host: "127.0.0.1",
            resource_type: AclResourceType::Topic,
            resource_name: "payments.orders.events",
            operation: AclOperation::Write,
        };
        assert!(kafka.is_authorized(&request));
        let deleted = kafka
            .delete_acls(&[
                AclBindingFilter::exact(&bindings[0]),
                AclBindingFilter::exact(&bindings[0]),
            ])
            .await
            .unwrap();
        assert_eq!(deleted[0].as_ref().unwrap(), &vec![bindings[0].clone()]);
        assert_eq!(deleted[1].as_ref().unwrap(), &Vec::<AclBinding>::new());
        assert!(!kafka.is_authorized(&request));
        assert_eq!(kafka.acls().len(), 3);
    }

    #[tokio::test]
    async fn scram_credentials_are_upserted_described_and_deleted() {
        let kafka = FakeKafka::new();
        let results = kafka
            .upsert_scram_credentials(&[
                ScramCredentialUpsert::new("payments", "p1"),
                ScramCredentialUpsert {
                    iterations: 100,
                    ..ScramCredentialUpsert::new("weak", "p")
                },
            ])
            .await
            .unwrap();
        assert!(results[0].is_ok());
        assert_eq!(
            results[1].as_ref().unwrap_err().code(),
            Some(RDKafkaErrorCode::UnacceptableCredential)
        );
        assert!(kafka.authenticates("payments", "p1"));
        assert!(!format!("{kafka:?}").contains("p1"));
        assert!(!kafka.authenticates("payments", "p2"));

        kafka
            .upsert_scram_credentials(&[ScramCredentialUpsert::new("payments", "p2")])
            .await
            .unwrap();
        assert!(kafka.authenticates("payments", "p2"));

        let all = kafka.describe_scram_users(&[]).await.unwrap();
        assert_eq!(all.len(), 1);
        assert!(all[0].has_sha512());
        assert!(
            kafka
                .describe_scram_users(&names(&["nobody"]))
                .await
                .unwrap()
                .is_empty()
        );

        kafka
            .upsert_scram_credentials(&[ScramCredentialUpsert::new("payments", "p256")
                .with_mechanism(ScramMechanism::Sha256)])
            .await
            .unwrap();
        assert!(kafka.authenticates_with("payments", ScramMechanism::Sha256, "p256"));
        assert!(!kafka.authenticates_with("payments", ScramMechanism::Sha512, "p256"));
        let all = kafka.describe_scram_users(&[]).await.unwrap();
        assert!(all[0].has(ScramMechanism::Sha256) && all[0].has_sha512());

        let results = kafka
            .delete_scram_credentials(&names(&["payments", "nobody"]), ScramMechanism::Sha512)
            .await
            .unwrap();
        assert!(results[0].is_ok());
        assert!(results[1].as_ref().unwrap_err().is_resource_not_found());
        assert!(!kafka.authenticates("payments", "p2"));
        assert!(
            kafka.authenticates("payments", "p256"),
            "the other mechanism's stays"
        );
        let results = kafka
            .delete_scram_credentials(&names(&["payments"]), ScramMechanism::Sha256)
            .await
            .unwrap();
        assert!(results[0].is_ok());
        assert!(kafka.scram_user_names().is_empty());
    }

    #[tokio::test]
    async fn an_outage_fails_whole_requests_and_is_recorded() {
        let kafka = FakeKafka::new();
        kafka.start_outage(KafkaAdminError::kafka(
            AdminOperation::CreateTopics,
            "request",
            RDKafkaErrorCode::AllBrokersDown,
            "all brokers are down",
        ));
        assert!(
            kafka
                .create_topics(&[new_topic("t", 1, &[])])
                .await
                .is_err()
        );
        assert!(kafka.describe_acls(&AclBindingFilter::any()).await.is_err());
        kafka.end_outage();
        assert!(
            kafka
                .create_topics(&[new_topic("t", 1, &[])])
                .await
                .unwrap()[0]
                .is_ok()
        );
        assert_eq!(
            kafka.calls(),
            [
                AdminOperation::CreateTopics,
                AdminOperation::DescribeAcls,
                AdminOperation::CreateTopics
            ]
        );
        assert_eq!(kafka.write_calls().len(), 2);
    }
}
