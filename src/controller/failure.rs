//! A failed reconcile is reported where people look: the object's `Ready` condition turns
//! `False` with a reason naming the system that failed (`KafkaUnavailable`,
//! `StorageAccessDenied`, ...) and a message saying what failed, a Warning Event says the same,
//! and the error metric counts it by that reason. The rest of the status (endpoints, grants)
//! stays as the last successful reconcile left it: a transient outage does not erase where
//! things are.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::jitter::jittered;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::apply::apply_status;
use super::{Context, Error};
use crate::api::conditions::{Condition, Outcome, set_progress};
use crate::api::{AccessPolicy, DataProduct, Domain};
use crate::provision::kafka::{KafkaAdminError, RDKafkaErrorCode};
use crate::provision::storage::StorageError;

fn now() -> Time {
    Time(Timestamp::now())
}

/// The label a failed reconcile is counted under: the reason its object shows, or the error's
/// category when it shows none.
pub fn failure_reason(error: &Error) -> String {
    failure_outcome(error).map_or_else(|| error.category().to_owned(), |outcome| outcome.reason)
}

/// What a failed reconcile means to the object's owners, or `None` when it is not worth a
/// status change (the object changed meanwhile, and the next reconcile reads the new copy; or a
/// blocked deletion, which reports itself).
pub fn failure_outcome(error: &Error) -> Option<Outcome> {
    let outcome = match error {
        Error::Conflict(_) | Error::Blocked(_) => return None,
        Error::Kafka(kafka) => kafka_outcome(kafka),
        Error::Storage(storage) => storage_outcome(storage),
        Error::Kubernetes { .. } => Outcome::reconciling(
            "KubernetesApiError",
            format!("{error}. The operator retries."),
        ),
        Error::Finalizer(_) => {
            Outcome::reconciling("FinalizerFailed", format!("{error}. The operator retries."))
        }
    };
    Some(outcome)
}

fn kafka_outcome(error: &KafkaAdminError) -> Outcome {
    use RDKafkaErrorCode as Code;
    // What the admin client retries inside a call, plus a client that could not be made and
    // librdkafka's generic failure: either way Kafka did not answer.
    let unreachable = error.is_transient()
        || matches!(error, KafkaAdminError::Client { .. })
        || error.code() == Some(Code::Fail);
    let denied = matches!(
        error.code(),
        Some(
            Code::ClusterAuthorizationFailed
                | Code::TopicAuthorizationFailed
                | Code::GroupAuthorizationFailed
                | Code::SaslAuthenticationFailed
                | Code::Authentication
        )
    );
    if denied {
        Outcome::stalled(
            "KafkaAccessDenied",
            format!(
                "Kafka refused the operator: {error}. A platform engineer must give the operator's Kafka user the rights it needs."
            ),
        )
    } else if unreachable {
        Outcome::reconciling(
            "KafkaUnavailable",
            format!("Kafka is unavailable: {error}. The operator retries until it answers."),
        )
    } else {
        Outcome::reconciling(
            "KafkaRequestFailed",
            format!("A Kafka request failed: {error}. The operator retries."),
        )
    }
}

fn storage_outcome(error: &StorageError) -> Outcome {
    if error.is_access_denied() {
        Outcome::stalled(
            "StorageAccessDenied",
            format!(
                "The object store refused the operator: {error}. A platform engineer must give the operator's S3 identity the rights it needs."
            ),
        )
    } else if error.is_transient() {
        Outcome::reconciling(
            "StorageUnavailable",
            format!(
                "The object store is unavailable: {error}. The operator retries until it answers."
            ),
        )
    } else {
        Outcome::reconciling(
            "StorageRequestFailed",
            format!("An object-store request failed: {error}. The operator retries."),
        )
    }
}

/// Per-object retry delays after failures: doubling from one second up to half a minute (so an
/// object is back within about that long of its system's return), each
/// with up to a fifth more or less at random, so that objects failing together (a broker
/// down) do not retry in lockstep. A success forgets the object's failures.
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

/// The first retry delay.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest retry delay.
const LONGEST_RETRY: Duration = Duration::from_secs(30);

impl Backoff {
    /// The delay before retrying `key` once more, counting this failure.
    pub fn next_delay(&self, key: &str) -> Duration {
        let failures = {
            let mut entries = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
            let count = entries.entry(key.to_owned()).or_default();
            *count = count.saturating_add(1);
            *count
        };
        jittered(retry_delay(failures), 0.2)
    }

    /// Forget `key`'s failures: it reconciled.
    pub fn reset(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

/// The delay after `failures` failures in a row, before jitter. Pure.
pub fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_RETRY
        .saturating_mul(1 << doublings)
        .min(LONGEST_RETRY)
}

/// A kind whose status carries kstatus conditions.
pub trait Conditioned:
    Resource<DynamicType = ()> + Clone + std::fmt::Debug + DeserializeOwned
{
    /// Its status type.
    type Status: Default + Clone + PartialEq + Serialize;
    /// The status as stored, or an empty one.
    fn current_status(&self) -> Self::Status;
    /// The status's conditions.
    fn conditions_of(status: &mut Self::Status) -> &mut Vec<Condition>;
    /// Set the generation the status describes.
    fn observe(status: &mut Self::Status, generation: Option<i64>);
}

macro_rules! conditioned {
    ($kind:ty, $status:ty) => {
        impl Conditioned for $kind {
            type Status = $status;
            fn current_status(&self) -> Self::Status {
                self.status.clone().unwrap_or_default()
            }
            fn conditions_of(status: &mut Self::Status) -> &mut Vec<Condition> {
                &mut status.conditions
            }
            fn observe(status: &mut Self::Status, generation: Option<i64>) {
                status.observed_generation = generation;
            }
        }
    };
}
conditioned!(Domain, crate::api::DomainStatus);
conditioned!(DataProduct, crate::api::DataProductStatus);
conditioned!(AccessPolicy, crate::api::AccessPolicyStatus);

/// The status an object shows after `outcome`: its conditions set, the rest as it was. Pure.
pub fn failed_status<K: Conditioned>(object: &K, outcome: &Outcome) -> K::Status {
    let mut status = object.current_status();
    let generation = object.meta().generation;
    set_progress(K::conditions_of(&mut status), outcome, generation, &now());
    K::observe(&mut status, generation);
    status
}

/// Report a failed reconcile on `object` (see the module docs). Failing to report is logged:
/// the reconcile's own error is what gets retried.
pub async fn report_failure<K: Conditioned>(
    ctx: &Context,
    api: &Api<K>,
    object: &K,
    error: &Error,
) {
    if let Some(outcome) = failure_outcome(error) {
        report_outcome(ctx, api, object, outcome).await;
    }
}

/// Report what a failed apply means (see [`super::applied::Applied::outcome`]) on `object`:
/// its `Ready` condition and a Warning Event, the rest of its status as it was. Failing to
/// report is logged: the failure itself is what gets retried.
pub async fn report_outcome<K: Conditioned>(
    ctx: &Context,
    api: &Api<K>,
    object: &K,
    outcome: Outcome,
) {
    let status = failed_status(object, &outcome);
    if status == object.current_status() {
        return;
    }
    let name = object.name_any();
    if let Err(write_error) = apply_status(api, &name, &status).await {
        tracing::warn!(object = %name, error = %write_error, "could not report a failure in status");
        return;
    }
    ctx.publish(object, EventType::Warning, &outcome.reason, outcome.message)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditions::{READY, find_condition};
    use crate::provision::kafka::AdminOperation;
    use crate::provision::storage::{ErrorCode, Operation, Subject};
    use std::time::Duration;

    #[test]
    fn retries_back_off_per_object_with_jitter_and_a_success_resets_them() {
        assert_eq!(retry_delay(1), Duration::from_secs(1));
        assert_eq!(retry_delay(2), Duration::from_secs(2));
        assert_eq!(retry_delay(5), Duration::from_secs(16));
        assert_eq!(retry_delay(6), Duration::from_secs(30));
        assert_eq!(retry_delay(40), Duration::from_secs(30));
        let backoff = Backoff::default();
        let first = backoff.next_delay("DataProduct/payments/orders");
        assert!(
            first >= Duration::from_millis(800) && first <= Duration::from_millis(1200),
            "{first:?}"
        );
        backoff.next_delay("DataProduct/payments/orders");
        let third = backoff.next_delay("DataProduct/payments/orders");
        assert!(
            third >= Duration::from_millis(3200) && third <= Duration::from_millis(4800),
            "{third:?}"
        );
        let other = backoff.next_delay("DataProduct/payments/refunds");
        assert!(
            other <= Duration::from_millis(1200),
            "another object has its own count"
        );
        backoff.reset("DataProduct/payments/orders");
        assert!(backoff.next_delay("DataProduct/payments/orders") <= Duration::from_millis(1200));
    }

    #[test]
    fn each_failure_names_its_system() {
        let timed_out = Error::Kafka(KafkaAdminError::TimedOut {
            operation: AdminOperation::DescribeTopics,
            timeout: Duration::from_secs(10),
        });
        let outcome = failure_outcome(&timed_out).unwrap();
        assert_eq!(outcome.reason, "KafkaUnavailable");
        assert!(
            outcome.message.contains("no answer from Kafka"),
            "{}",
            outcome.message
        );

        let denied = Error::Storage(StorageError::Service {
            operation: Operation::CreateBucket,
            subject: Subject::Bucket("payments-orders-lake".into()),
            status: 403,
            code: ErrorCode::AccessDenied,
            message: "Access Denied".into(),
        });
        let outcome = failure_outcome(&denied).unwrap();
        assert_eq!(outcome.reason, "StorageAccessDenied");
        assert_eq!(outcome.progress, crate::api::conditions::Progress::Stalled);

        let unavailable = Error::Storage(StorageError::Service {
            operation: Operation::PutBucketTagging,
            subject: Subject::Bucket("payments-orders-lake".into()),
            status: 503,
            code: ErrorCode::Other("SlowDown".into()),
            message: "Please reduce your request rate.".into(),
        });
        assert_eq!(
            failure_outcome(&unavailable).unwrap().reason,
            "StorageUnavailable"
        );
        assert_eq!(failure_outcome(&Error::Conflict("x".into())), None);
    }

    #[test]
    fn a_failure_turns_ready_false_and_keeps_the_rest_of_the_status() {
        let mut product = crate::controller::data_product::desired::tests::product(
            "orders",
            1,
            serde_json::json!({}),
        );
        product.metadata.generation = Some(2);
        let mut status = crate::api::DataProductStatus {
            ports_ready: Some("1/1".into()),
            ..Default::default()
        };
        set_progress(
            &mut status.conditions,
            &Outcome::ready("Provisioned", "ok"),
            Some(1),
            &now(),
        );
        product.status = Some(status);
        let outcome = Outcome::reconciling("KafkaUnavailable", "Kafka is unavailable");
        let failed = failed_status(&product, &outcome);
        let ready = find_condition(&failed.conditions, READY).unwrap();
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason, "KafkaUnavailable");
        assert_eq!(
            ready.observed_generation,
            Some(2),
            "not stale Ready at an old generation"
        );
        assert_eq!(failed.observed_generation, Some(2));
        assert_eq!(failed.ports_ready.as_deref(), Some("1/1"), "endpoints stay");
    }
}
