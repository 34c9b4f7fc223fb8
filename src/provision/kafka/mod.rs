//! Kafka: topics, SCRAM credentials and ACLs through the Kafka Admin API.
//!
//! Reconcilers hold an `Arc<dyn KafkaAdmin>`: [`RdKafkaAdmin`] in the operator,
//! [`FakeKafka`] in unit tests. Every call is batched: it takes a slice and returns one
//! result per item, in input order, so one bad item never fails its batch; the outer
//! `Result` fails only when the whole request failed (cluster unreachable, timeout).
//!
//! The controller accepts a change before every broker has applied it, and describe calls
//! are answered from a broker's metadata: a describe right after a change may briefly not
//! show it (the e2e tests measured well under a second). Reconcilers are level-based, so the
//! next pass sees it; they should not treat "not yet visible" as "failed".
//!
//! ```no_run
//! # async fn example() -> Result<(), datamesh_operator::provision::kafka::KafkaAdminError> {
//! use std::sync::Arc;
//! use datamesh_operator::provision::kafka::*;
//!
//! let kafka: Arc<dyn KafkaAdmin> = Arc::new(RdKafkaAdmin::new(&KafkaAdminConfig::new(
//!     "kafka:9093", "admin", "from-a-secret",
//! ))?);
//! let topics = [NewTopic {
//!     name: "payments.orders.events".into(),
//!     partitions: 6,
//!     replication_factor: 1,
//!     configs: [("retention.ms".to_owned(), "604800000".to_owned())].into(),
//! }];
//! for result in kafka.create_topics(&topics).await? {
//!     match result {
//!         Ok(()) => {}
//!         Err(err) if err.is_topic_already_exists() => {}
//!         Err(err) => return Err(err),
//!     }
//! }
//! # Ok(()) }
//! ```

mod acl;
mod batch;
mod client;
mod error;
mod fake;
mod ffi;
mod reachability;
mod retry;
mod scram;
mod snapshot;
mod topic;

use futures::future::BoxFuture;

pub use acl::{
    ANY_HOST, AclBinding, AclBindingFilter, AclOperation, AclPatternType, AclPermission,
    AclResourceType, AuthorizationRequest, CLUSTER_RESOURCE_NAME, is_authorized, user_principal,
};
pub use client::{
    DEFAULT_REQUEST_TIMEOUT, KafkaAdminConfig, KafkaSecurityProtocol, KafkaTls, RdKafkaAdmin,
    ScramLogin,
};
pub use error::{AdminOperation, KafkaAdminError, RDKafkaErrorCode};
pub use fake::FakeKafka;
pub use scram::{
    DEFAULT_SCRAM_ITERATIONS, MAX_SCRAM_ITERATIONS, MIN_SCRAM_ITERATIONS, ScramCredentialInfo,
    ScramCredentialUpsert, ScramMechanism, ScramUser,
};
pub use snapshot::{
    DEFAULT_BATCH_MAX_ITEMS, DEFAULT_BATCH_WINDOW, JOURNAL_GRACE, SnapshotKafka, SnapshotSettings,
};
pub use topic::{
    ConfigSource, NewTopic, PartitionIncrease, TopicConfigAlteration, TopicConfigEntry,
    TopicDescription, config_drift,
};

/// The answer to a batched call: `Err` if the whole request failed, otherwise one result per
/// input item, in input order.
pub type BatchResult<T> = Result<Vec<Result<T, KafkaAdminError>>, KafkaAdminError>;

/// The Kafka Admin API calls the reconcilers need, batched.
///
/// Object-safe so reconcilers can hold an `Arc<dyn KafkaAdmin>`; the fake and the real
/// client answer alike for everything the operator uses.
pub trait KafkaAdmin: Send + Sync {
    /// Creates topics in one request. A topic that exists fails with `TopicAlreadyExists`
    /// (see [`KafkaAdminError::is_topic_already_exists`]); it is not changed.
    fn create_topics<'a>(&'a self, topics: &'a [NewTopic]) -> BoxFuture<'a, BatchResult<()>>;

    /// Describes topics: partitions, replication factor and every config with its source.
    /// `Ok(None)` for a topic that does not exist.
    fn describe_topics<'a>(
        &'a self,
        names: &'a [String],
    ) -> BoxFuture<'a, BatchResult<Option<TopicDescription>>>;

    /// Raises topics' partition counts. Kafka refuses a count that is not greater than the
    /// current one with `InvalidPartitions`: partitions are never removed.
    fn create_partitions<'a>(
        &'a self,
        increases: &'a [PartitionIncrease],
    ) -> BoxFuture<'a, BatchResult<()>>;

    /// Sets and deletes topic configs incrementally: keys not named stay as they are.
    fn alter_topic_configs<'a>(
        &'a self,
        alterations: &'a [TopicConfigAlteration],
    ) -> BoxFuture<'a, BatchResult<()>>;

    /// Deletes topics and their data. Only for `deletionPolicy: Delete`.
    fn delete_topics<'a>(&'a self, names: &'a [String]) -> BoxFuture<'a, BatchResult<()>>;

    /// Creates ACL bindings; creating one that exists succeeds and changes nothing.
    fn create_acls<'a>(&'a self, bindings: &'a [AclBinding]) -> BoxFuture<'a, BatchResult<()>>;

    /// The ACL bindings that match the filter.
    fn describe_acls<'a>(
        &'a self,
        filter: &'a AclBindingFilter,
    ) -> BoxFuture<'a, Result<Vec<AclBinding>, KafkaAdminError>>;

    /// Deletes the ACL bindings matching each filter; each result lists what that filter deleted.
    fn delete_acls<'a>(
        &'a self,
        filters: &'a [AclBindingFilter],
    ) -> BoxFuture<'a, BatchResult<Vec<AclBinding>>>;

    /// Creates or replaces users' SCRAM credentials, each of its own mechanism; a user's
    /// credentials of other mechanisms stay.
    fn upsert_scram_credentials<'a>(
        &'a self,
        upserts: &'a [ScramCredentialUpsert],
    ) -> BoxFuture<'a, BatchResult<()>>;

    /// Deletes users' SCRAM credentials of `mechanism`; a user without one fails with
    /// `ResourceNotFound` (see [`KafkaAdminError::is_resource_not_found`]).
    fn delete_scram_credentials<'a>(
        &'a self,
        users: &'a [String],
        mechanism: ScramMechanism,
    ) -> BoxFuture<'a, BatchResult<()>>;

    /// The users that have SCRAM credentials, sorted by name: among `users`, or all users
    /// when `users` is empty. Users without credentials are simply absent.
    fn describe_scram_users<'a>(
        &'a self,
        users: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<ScramUser>, KafkaAdminError>>;

    /// A hint, before the reconciles' first reads: the topics they are about to describe. The
    /// snapshot ([`SnapshotKafka`]) describes them all together in its first fill, rather than
    /// as each reconcile first asks; it calls `names` only until that fill succeeded. The
    /// clients themselves ignore it.
    fn prime_topics(&self, names: &dyn Fn() -> Vec<String>) {
        let _ = names;
    }
}
