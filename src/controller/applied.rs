//! What applying a plan did. Every reconciler's *apply* step runs each write of its plan and
//! records each failure here instead of stopping at the first: one broken system does not hide
//! another, the writes that can go on do, and *report* tells the object's owners about all of
//! them.

use super::Error;
use super::failure::failure_outcome;
use crate::api::conditions::{Outcome, Progress};

/// The failures of one apply, in the order the steps ran.
#[derive(Debug, Default)]
pub struct Applied {
    errors: Vec<Error>,
}

impl Applied {
    /// Keep a step's error, if any, and hand back its value otherwise.
    pub fn record<T>(&mut self, step: Result<T, Error>) -> Option<T> {
        match step {
            Ok(value) => Some(value),
            Err(error) => {
                self.errors.push(error);
                None
            }
        }
    }

    /// Whether every step succeeded.
    pub fn succeeded(&self) -> bool {
        self.errors.is_empty()
    }

    /// Every failure, in order.
    pub fn errors(&self) -> &[Error] {
        &self.errors
    }

    /// What the failures mean to the object's owners: the most serious one's reason (Stalled
    /// before Reconciling, then the first), with every failure's message. `None` when nothing
    /// failed, or only in ways not worth a status change (see [`failure_outcome`]).
    pub fn outcome(&self) -> Option<Outcome> {
        let outcomes: Vec<Outcome> = self.errors.iter().filter_map(failure_outcome).collect();
        let lead = outcomes
            .iter()
            .find(|o| o.progress == Progress::Stalled)
            .or_else(|| outcomes.first())?;
        let mut message = lead.message.clone();
        let others: Vec<&str> = outcomes
            .iter()
            .filter(|o| !std::ptr::eq(*o, lead))
            .map(|o| o.message.as_str())
            .collect();
        if !others.is_empty() {
            message.push_str(&format!(" Also: {}", others.join(" ")));
        }
        Some(Outcome::new(lead.progress, lead.reason.clone(), message))
    }

    /// The reconcile's result: `Ok`, or the first failure, which the controller's error policy
    /// counts and retries with backoff (the others are in the status and the log).
    pub fn into_result(self) -> Result<(), Error> {
        for later in self.errors.iter().skip(1) {
            tracing::warn!(error = %later, "a further step failed too");
        }
        match self.errors.into_iter().next() {
            None => Ok(()),
            Some(first) => Err(first),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::kafka::{AdminOperation, KafkaAdminError};
    use crate::provision::storage::{ErrorCode, Operation, StorageError, Subject};
    use std::time::Duration;

    fn kafka_down() -> Error {
        Error::Kafka(KafkaAdminError::TimedOut {
            operation: AdminOperation::DescribeTopics,
            timeout: Duration::from_secs(15),
        })
    }

    fn storage_denied() -> Error {
        Error::Storage(StorageError::Service {
            operation: Operation::CreateBucket,
            subject: Subject::Bucket("sales-orders-lake".into()),
            status: 403,
            code: ErrorCode::AccessDenied,
            message: "Access Denied".into(),
        })
    }

    #[test]
    fn every_failure_is_kept_and_the_most_serious_leads() {
        let mut applied = Applied::default();
        assert_eq!(applied.record(Ok::<_, Error>(7)), Some(7));
        assert_eq!(applied.record::<()>(Err(kafka_down())), None);
        assert_eq!(applied.record::<()>(Err(storage_denied())), None);
        assert!(!applied.succeeded());
        assert_eq!(applied.errors().len(), 2);
        let outcome = applied.outcome().unwrap();
        assert_eq!(outcome.reason, "StorageAccessDenied", "Stalled leads");
        assert!(
            outcome.message.contains("Kafka is unavailable"),
            "{}",
            outcome.message
        );
        assert!(
            matches!(applied.into_result(), Err(Error::Kafka(_))),
            "first for the backoff"
        );
    }

    #[test]
    fn nothing_failed_nothing_to_report() {
        let applied = Applied::default();
        assert!(applied.succeeded());
        assert_eq!(applied.outcome(), None);
        assert!(applied.into_result().is_ok());

        let mut conflict = Applied::default();
        conflict.record::<()>(Err(Error::Conflict("finalizers".into())));
        assert_eq!(
            conflict.outcome(),
            None,
            "a stale copy is not a failure to show"
        );
    }
}
