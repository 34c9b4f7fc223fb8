//! Prometheus metrics: a few well-named families, served on `/metrics` by [`crate::http`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the per-kind families.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `Domain`, `DataProduct` or `AccessPolicy`.
    pub kind: String,
}

/// Labels of the error family: the kind and the error's category.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
    /// A short, stable category such as `kubernetes`, `kafka` or `storage`.
    pub reason: String,
}

/// Labels of the request family: the system a request went to and its API operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `kafka`, `s3` or `iam`.
    pub system: String,
    /// The operation's name in that system's API, e.g. `CreateTopics` or `PutBucketTagging`.
    pub operation: String,
}

/// Counts and times the requests the operator sends to Kafka and to S3/IAM. The clients count
/// at the one place each request leaves the process, so the benchmark can tell reads from
/// writes (and a resync that changed nothing from one that wrote), and where the time goes.
#[derive(Clone, Debug)]
pub struct RequestCounter {
    count: Family<RequestLabels, Counter>,
    duration: Family<RequestLabels, Histogram>,
}

impl Default for RequestCounter {
    fn default() -> Self {
        Self {
            count: Family::default(),
            // 1 ms to ~33 s.
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
        }
    }
}

impl RequestCounter {
    /// Count one request of `operation` to `system`; the returned guard records how long it
    /// took when dropped, so keep it until the answer is in.
    pub fn count(&self, system: &str, operation: &str) -> RequestTimer {
        let labels = RequestLabels {
            system: system.into(),
            operation: operation.into(),
        };
        self.count.get_or_create(&labels).inc();
        RequestTimer {
            histogram: self.duration.get_or_create(&labels).clone(),
            started: Instant::now(),
        }
    }
}

/// Records a request's duration when dropped.
#[must_use = "the request is timed until this is dropped"]
pub struct RequestTimer {
    histogram: Histogram,
    started: Instant,
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

/// The operator's metrics, registered once and shared by every controller.
pub struct Metrics {
    registry: Registry,
    requests: RequestCounter,
    reconciles: Family<KindLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<KindLabels, Histogram>,
    leader: Gauge,
    ready: AtomicBool,
    in_flight: InFlight,
}

/// The reconciles running now, so a shutdown that overruns can say which ones it waits for.
#[derive(Default)]
struct InFlight {
    next: AtomicU64,
    running: Mutex<HashMap<u64, (String, String, Instant)>>,
}

impl InFlight {
    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (String, String, Instant)>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("datamesh_operator");
        let reconciles = Family::<KindLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        // 1 ms to ~33 s: a reconcile that talks to Kafka and S3 takes tens of milliseconds.
        let duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        let leader = Gauge::default();
        let requests = RequestCounter::default();
        registry.register("reconciles", "Reconciles run, by kind", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by kind and error category",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "How long a reconcile took, by kind",
            duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this process holds the leader lease and runs the controllers",
            leader.clone(),
        );
        registry.register(
            "external_requests",
            "Requests sent to Kafka and to S3/IAM, by system and operation",
            requests.count.clone(),
        );
        registry.register(
            "external_request_duration_seconds",
            "How long requests to Kafka and to S3/IAM took, by system and operation",
            requests.duration.clone(),
        );
        Self {
            registry,
            requests,
            reconciles,
            errors,
            duration,
            leader,
            ready: AtomicBool::new(false),
            in_flight: InFlight::default(),
        }
    }
}

impl Metrics {
    /// Start timing one reconcile of `kind` on `object`; the returned guard records it (and
    /// stops listing it as running) when dropped.
    pub fn reconcile_started<K: kube::Resource>(
        &self,
        kind: &str,
        object: &K,
    ) -> ReconcileTimer<'_> {
        let meta = object.meta();
        let name = meta.name.clone().unwrap_or_default();
        let object = match &meta.namespace {
            Some(namespace) => format!("{namespace}/{name}"),
            None => name,
        };
        let labels = KindLabels { kind: kind.into() };
        self.reconciles.get_or_create(&labels).inc();
        let id = self.in_flight.next.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        self.in_flight
            .running()
            .insert(id, (kind.to_owned(), object, started));
        ReconcileTimer {
            metrics: self,
            labels,
            started,
            id,
        }
    }

    /// The reconciles running now: kind, object, and for how long, longest first.
    pub fn running_reconciles(&self) -> Vec<(String, String, Duration)> {
        let mut running: Vec<_> = self
            .in_flight
            .running()
            .values()
            .map(|(kind, object, started)| (kind.clone(), object.clone(), started.elapsed()))
            .collect();
        running.sort_by_key(|(_, _, running)| std::cmp::Reverse(*running));
        running
    }

    /// Count one failed reconcile.
    pub fn reconcile_failed(&self, kind: &str, reason: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind: kind.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// The counter the Kafka and S3 clients count their requests with.
    pub fn request_counter(&self) -> RequestCounter {
        self.requests.clone()
    }

    /// Record whether this process leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Mark the process ready (its clients are configured and it can serve `/readyz`).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether the process is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The OpenMetrics text exposition of every family.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Records a reconcile's duration when dropped, so every exit path is measured.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    labels: KindLabels,
    started: Instant,
    id: u64,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics.in_flight.running().remove(&self.id);
        self.metrics
            .duration
            .get_or_create(&self.labels)
            .observe(self.started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_errors_and_durations_are_exposed_by_kind() {
        let metrics = Metrics::default();
        let mut domain = k8s_openapi::api::core::v1::Namespace::default();
        domain.metadata.name = Some("payments".into());
        let timer = metrics.reconcile_started("Domain", &domain);
        assert_eq!(metrics.running_reconciles()[0].1, "payments");
        drop(timer);
        assert!(metrics.running_reconciles().is_empty());
        metrics.reconcile_failed("Domain", "kafka");
        metrics.set_leader(true);
        drop(metrics.request_counter().count("kafka", "CreateTopics"));
        let text = metrics.encode().unwrap();
        assert!(text.contains("datamesh_operator_reconciles_total{kind=\"Domain\"} 1"));
        assert!(text.contains(
            "datamesh_operator_reconcile_errors_total{kind=\"Domain\",reason=\"kafka\"} 1"
        ));
        assert!(
            text.contains("datamesh_operator_reconcile_duration_seconds_count{kind=\"Domain\"} 1")
        );
        assert!(text.contains("datamesh_operator_leader 1"));
        assert!(text.contains(
            "datamesh_operator_external_requests_total{system=\"kafka\",operation=\"CreateTopics\"} 1"
        ));
    }
}
