//! The reconcilers, one per kind, and what they share: the [`Context`], the watches and their
//! caches (one watch per kind, see [`stores`]), the error type, the write helpers and leader
//! election.

pub mod access_policy;
pub mod applied;
pub mod apply;
pub mod bucket_policies;
pub mod data_product;
pub mod domain;
pub mod failure;
pub mod fence;
pub mod leader;
pub mod readable;
pub mod shared_watch;
pub mod stores;
pub mod stores_ready;
pub mod tenancy;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Resource, ResourceExt};

use self::bucket_policies::BucketPolicies;
use crate::api::conditions::{READY, is_true};
use crate::api::domain::Domain;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::provision::kafka::{KafkaAdmin, KafkaAdminError};
use crate::provision::storage::{ObjectStore, StorageError};

/// What every reconciler is handed: clients for each system, settings, events and metrics.
pub struct Context {
    /// The Kubernetes client (the operator's own ServiceAccount in a cluster).
    pub client: Client,
    /// Where Kafka and S3 are, and the resync period.
    pub settings: Settings,
    /// Kafka Admin API.
    pub kafka: Arc<dyn KafkaAdmin>,
    /// The CA certificate (PEM) the domains' Kafka clients verify the brokers with, copied
    /// into each credentials Secret; `None` when they connect without TLS or trust the
    /// system's CAs.
    pub domain_kafka_ca: Option<String>,
    /// S3 and IAM.
    pub storage: Arc<dyn ObjectStore>,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The managed buckets' policies, as last written or read, and the users' ARNs.
    pub bucket_policies: BucketPolicies,
    /// The domains whose Kafka and IAM identities were checked recently.
    pub checked_identities: domain::CheckedIdentities,
    /// The names no Domain may take (see [`tenancy::ReservedNames`]).
    pub reserved_names: tenancy::ReservedNames,
    /// Per-object retry delays after failures.
    pub backoff: failure::Backoff,
    /// PEM of the CAs the S3 endpoint's certificate is checked against, when configured: each
    /// domain's credentials Secret carries it, so that its workloads trust the endpoint too.
    pub s3_ca_bundle: Option<String>,
}

impl Context {
    /// A context for the given clients, for an operator running in `operator_namespace`.
    /// Events are reported as `datamesh-operator`.
    pub fn new(
        client: Client,
        settings: Settings,
        operator_namespace: &str,
        kafka: Arc<dyn KafkaAdmin>,
        domain_kafka_ca: Option<String>,
        storage: Arc<dyn ObjectStore>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let reporter = Reporter {
            controller: "datamesh-operator".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            bucket_policies: BucketPolicies::new(settings.resync),
            checked_identities: domain::CheckedIdentities::new(settings.resync),
            reserved_names: tenancy::ReservedNames::from_settings(&settings, operator_namespace),
            backoff: failure::Backoff::default(),
            s3_ca_bundle: None,
            client,
            settings,
            kafka,
            domain_kafka_ca,
            storage,
            metrics,
        }
    }

    /// The context with `pem` as the S3 CA bundle handed to domains (see
    /// [`Context::s3_ca_bundle`]).
    pub fn with_s3_ca_bundle(mut self, pem: Option<String>) -> Self {
        self.s3_ca_bundle = pem;
        self
    }

    /// Come back after the resync period, give or take a tenth at random, so that objects made
    /// together do not all resync together.
    pub fn resync(&self) -> Action {
        Action::requeue(crate::jitter::jittered(self.settings.resync, 0.1))
    }

    /// Publish an Event on `object`. Failing to publish is logged, never fatal: an Event is
    /// a courtesy to people, not part of the declared state.
    pub async fn publish<K>(&self, object: &K, type_: EventType, reason: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(%error, object = %object.name_any(), reason, "could not publish an Event");
        }
    }
}

/// Why a reconcile failed. Each variant is a category used as the `reason` label of the
/// error metric; the message says which object and which call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {context}: {source}")]
    Kubernetes {
        context: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaAdminError),
    #[error("object storage: {0}")]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Blocked(String),
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// The object changed between the watch's copy and our write (the finalizer's patch tests
    /// the list it replaces): nothing is wrong, the next reconcile reads the newer copy.
    #[error("{0}: the object changed meanwhile")]
    Conflict(String),
}

impl Error {
    /// The metric label of this error's category.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Kubernetes { .. } => "kubernetes",
            Self::Kafka(_) => "kafka",
            Self::Storage(_) => "storage",
            Self::Blocked(_) => "blocked",
            Self::Finalizer(_) => "finalizer",
            Self::Conflict(_) => "conflict",
        }
    }
}

/// The first failure of a batched Kafka call, if any; items for which `ignore` holds are
/// not failures (e.g. deleting what is already gone).
pub fn batch_ok<T>(
    results: Vec<Result<T, KafkaAdminError>>,
    ignore: impl Fn(&KafkaAdminError) -> bool,
) -> Result<Vec<T>, Error> {
    let mut oks = Vec::with_capacity(results.len());
    for result in results {
        match result {
            Ok(value) => oks.push(value),
            Err(error) if ignore(&error) => {}
            Err(error) => return Err(Error::Kafka(error)),
        }
    }
    Ok(oks)
}

/// Unwrap what `kube::runtime::finalizer` reports: the reconciler's own error as it was, and
/// a failure of the finalizer bookkeeping itself as [`Error::Finalizer`].
pub fn from_finalizer(error: kube::runtime::finalizer::Error<Error>) -> Error {
    match error {
        kube::runtime::finalizer::Error::ApplyFailed(error)
        | kube::runtime::finalizer::Error::CleanupFailed(error) => error,
        kube::runtime::finalizer::Error::AddFinalizer(kube::Error::Api(status))
        | kube::runtime::finalizer::Error::RemoveFinalizer(kube::Error::Api(status))
            if status.code == 409 || status.code == 422 =>
        {
            Error::Conflict("updating the finalizers".into())
        }
        // The object went while its finalizer was being removed: nothing is left to do.
        kube::runtime::finalizer::Error::RemoveFinalizer(kube::Error::Api(status))
            if status.code == 404 =>
        {
            Error::Conflict("removing the finalizer of an object already gone".into())
        }
        other => Error::Finalizer(other.to_string()),
    }
}

/// The hash of what products and policies depend on in a Domain, for `predicate_filter`:
/// its spec (by generation), its finalizers (its deletion) and whether it is Ready. Not its
/// status counts: every product created changes those, and each change would otherwise
/// reconcile all of the domain's products and policies again.
pub fn domain_trigger(domain: &Domain) -> Option<u64> {
    let mut hasher = DefaultHasher::new();
    domain.metadata.generation.hash(&mut hasher);
    domain.metadata.finalizers.hash(&mut hasher);
    domain
        .status
        .as_ref()
        .is_some_and(|status| is_true(&status.conditions, READY))
        .hash(&mut hasher);
    Some(hasher.finish())
}

/// Attach context to a Kubernetes API error.
pub fn kube_context(context: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let context = context.into();
    move |source| Error::Kubernetes {
        context,
        source: Box::new(source),
    }
}

/// What to do after a failed reconcile of `object`: retry, backing off per object, with the
/// error counted by reason and logged.
pub fn requeue_after_error<K: Resource>(
    kind: &str,
    object: &K,
    error: &Error,
    ctx: &Context,
) -> Action {
    let reason = failure::failure_reason(error);
    ctx.metrics.reconcile_failed(kind, &reason);
    match error {
        // Waiting on a person (e.g. a Domain that still has products): retry calmly.
        Error::Blocked(_) => Action::requeue(Duration::from_secs(30)),
        // A stale copy: by now the watch has the newer one.
        Error::Conflict(_) => {
            tracing::debug!(kind, %error, "retrying on a newer copy");
            Action::requeue(Duration::from_millis(200))
        }
        _ => {
            let delay = ctx.backoff.next_delay(&backoff_key(kind, object));
            tracing::warn!(kind, %reason, %error, retry_in = ?delay, "reconcile failed");
            Action::requeue(delay)
        }
    }
}

/// The key of an object's failures in [`Context::backoff`].
pub fn backoff_key<K: Resource>(kind: &str, object: &K) -> String {
    let meta = object.meta();
    format!(
        "{kind}/{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}
