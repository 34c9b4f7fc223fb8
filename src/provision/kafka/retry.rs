//! Retrying admin calls that failed transiently, inside the call, before the failure reaches
//! the reconciler.
//!
//! A controller failover, a broker restarting or a partition leader moving answers an admin
//! request with `NotController`, `LeaderNotAvailable`, `BrokerNotAvailable` or a network error,
//! and a second try a moment later usually succeeds. Failing the reconcile at once instead
//! shows a `KafkaUnavailable` condition for a blip and waits for the controller's backoff.
//!
//! # Time budget
//!
//! All the attempts of one call share one deadline: the request timeout a single attempt used
//! to have (15 s by default, [`super::client::DEFAULT_REQUEST_TIMEOUT`]). Each attempt gets what
//! is left of it as its own timeout, and another attempt is made only if, after its pause,
//! at least [`MIN_ATTEMPT`] is left. So:
//! - a call still fails within the request timeout (plus the client's small poll margin), as
//!   before retries existed: with a broker down, the reconcile reports `KafkaUnavailable` as
//!   soon as it did (within the 30 s the outage tests allow: 15 s for the call, and the rest for
//!   the status write and the watch);
//! - a broker that does not answer at all uses the whole budget in the first attempt (librdkafka
//!   keeps reconnecting until the timeout), and is not retried: waiting longer would only delay
//!   the report; one that refuses connections is not asked at all (`reachability`), so each
//!   attempt fails at once and the call within about a second;
//! - a quick transient refusal (milliseconds) is retried up to [`ATTEMPTS`] times in all,
//!   200 ms then 800 ms later (±20 % jitter, so that reconciles failing together do not retry
//!   in lockstep), which covers a controller election (typically well under a second in KRaft).
//!
//! Only calls that are safe to repeat go through here: reads, and writes whose repetition is
//! answered in a way the reconciler already accepts (a topic created by an attempt that timed
//! out answers `TopicAlreadyExists` on the retry, a deleted one `UnknownTopicOrPartition`, both
//! read as done; creating an ACL or setting a config or SCRAM credential twice is harmless).
//! Refusals (invalid config, authorization, `TopicAlreadyExists`, ...) are never retried.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use tracing::debug;

use super::error::{AdminOperation, KafkaAdminError};

/// Each item's result, by its index in the batch.
pub(super) type ItemResults<T> = Vec<(usize, Result<T, KafkaAdminError>)>;

/// Attempts in all, the first included.
pub(super) const ATTEMPTS: u32 = 3;

/// Pause before the second and the third attempt (before jitter).
const PAUSES: [Duration; 2] = [Duration::from_millis(200), Duration::from_millis(800)];

/// How much jitter the pauses get, as a fraction.
const JITTER: f64 = 0.2;

/// The least time worth giving another attempt: a healthy cluster answers in milliseconds, but
/// creating topics waits for the controller to apply them.
pub(super) const MIN_ATTEMPT: Duration = Duration::from_secs(1);

/// The attempts of one call and their shared deadline.
#[derive(Debug)]
pub(super) struct Budget {
    deadline: Instant,
    /// Attempts made so far.
    made: u32,
}

impl Budget {
    /// A budget of `total` from now, for all the attempts of one call.
    pub(super) fn new(total: Duration) -> Self {
        Self {
            deadline: Instant::now() + total,
            made: 0,
        }
    }

    /// The timeout of the next attempt, which counts as made: what is left of the budget.
    pub(super) fn attempt(&mut self) -> Duration {
        self.made += 1;
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// After a transient failure: the pause before the next attempt, jittered, if one fits.
    pub(super) fn pause(&self) -> Option<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        pause_before_next(self.made, left).map(|pause| crate::jitter::jittered(pause, JITTER))
    }
}

/// Makes a call that answers as a whole (given each attempt's timeout) until it succeeds, is
/// refused, or no other attempt fits in `total`.
pub(super) async fn call<T, F>(
    operation: AdminOperation,
    total: Duration,
    mut call: impl FnMut(Duration) -> F,
) -> Result<T, KafkaAdminError>
where
    F: Future<Output = Result<T, KafkaAdminError>>,
{
    let mut budget = Budget::new(total);
    loop {
        match call(budget.attempt()).await {
            Err(error) if error.is_transient() => match budget.pause() {
                Some(pause) => {
                    debug!(%operation, attempt = budget.made, %error, ?pause, "retrying a transient failure");
                    tokio::time::sleep(pause).await;
                }
                None => return Err(error),
            },
            result => return result,
        }
    }
}

/// Sends the `pending` items of a batch (`send` gets the items to send and the attempt's
/// timeout, and answers per item), then sends again only the items that failed transiently,
/// or all of them again when the whole request failed transiently, while attempts fit in
/// `total`. Each item ends with its last answer; an item never answered for is left out (the
/// caller reports it). Fails as a whole only when no attempt answered for any item.
pub(super) async fn items<T, F>(
    operation: AdminOperation,
    total: Duration,
    pending: Vec<usize>,
    mut send: impl FnMut(Vec<usize>, Duration) -> F,
) -> Result<ItemResults<T>, KafkaAdminError>
where
    F: Future<Output = Result<ItemResults<T>, KafkaAdminError>>,
{
    let mut budget = Budget::new(total);
    let mut settled: std::collections::BTreeMap<usize, Result<T, KafkaAdminError>> =
        std::collections::BTreeMap::new();
    let mut to_send = pending;
    loop {
        let failure = match send(to_send.clone(), budget.attempt()).await {
            Ok(answers) => {
                settled.extend(answers);
                to_send.retain(|index| {
                    settled.get(index).is_some_and(|result| {
                        result.as_ref().is_err_and(KafkaAdminError::is_transient)
                    })
                });
                if to_send.is_empty() {
                    break;
                }
                None
            }
            Err(error) if error.is_transient() => Some(error),
            // A refusal of the whole request: the items answered before keep their answers.
            Err(error) if settled.is_empty() => return Err(error),
            Err(_) => break,
        };
        let Some(pause) = budget.pause() else {
            match failure {
                Some(error) if settled.is_empty() => return Err(error),
                // Items a retry could not reach keep the transient failure they had.
                _ => break,
            }
        };
        debug!(%operation, attempt = budget.made, items = to_send.len(), ?pause, "retrying items that failed transiently");
        tokio::time::sleep(pause).await;
    }
    Ok(settled.into_iter().collect())
}

/// The pause before another attempt after `made` attempts, with `left` of the budget; `None`
/// when all attempts are made or the next one would have less than [`MIN_ATTEMPT`] (counting
/// the pause at its longest, with jitter).
fn pause_before_next(made: u32, left: Duration) -> Option<Duration> {
    if made >= ATTEMPTS {
        return None;
    }
    let pause = *PAUSES.get(usize::try_from(made).ok()?.checked_sub(1)?)?;
    let longest = pause.mul_f64(1.0 + JITTER);
    (left >= longest + MIN_ATTEMPT).then_some(pause)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::kafka::error::RDKafkaErrorCode;

    fn kafka(code: RDKafkaErrorCode) -> KafkaAdminError {
        KafkaAdminError::kafka(AdminOperation::CreateTopics, "topic t", code, "m")
    }

    #[test]
    fn unavailability_is_transient_and_refusals_are_not() {
        use RDKafkaErrorCode as Code;
        for code in [
            Code::RequestTimedOut,
            Code::OperationTimedOut,
            Code::BrokerNotAvailable,
            Code::LeaderNotAvailable,
            Code::NotController,
            Code::NetworkException,
            Code::AllBrokersDown,
            Code::DestroyBroker,
        ] {
            assert!(kafka(code).is_transient(), "{code:?}");
        }
        for code in [
            Code::InvalidConfig,
            Code::TopicAlreadyExists,
            Code::TopicAuthorizationFailed,
            Code::ClusterAuthorizationFailed,
            Code::SaslAuthenticationFailed,
            Code::InvalidPartitions,
            Code::UnknownTopicOrPartition,
            Code::PolicyViolation,
            Code::Fail,
        ] {
            assert!(!kafka(code).is_transient(), "{code:?}");
        }
        assert!(
            KafkaAdminError::TimedOut {
                operation: AdminOperation::CreateTopics,
                timeout: Duration::from_secs(15),
            }
            .is_transient()
        );
        assert!(
            !KafkaAdminError::invalid_input(AdminOperation::CreateTopics, "topic t", "NUL")
                .is_transient()
        );
        assert!(
            !KafkaAdminError::Client {
                bootstrap_servers: "b:1".into(),
                reason: "bad config".into(),
            }
            .is_transient()
        );
    }

    #[test]
    fn three_attempts_200_then_800_ms_apart() {
        let plenty = Duration::from_secs(15);
        assert_eq!(
            pause_before_next(1, plenty),
            Some(Duration::from_millis(200))
        );
        assert_eq!(
            pause_before_next(2, plenty),
            Some(Duration::from_millis(800))
        );
        assert_eq!(pause_before_next(3, plenty), None);
        assert_eq!(pause_before_next(0, plenty), None, "nothing to retry yet");
    }

    #[test]
    fn no_attempt_is_made_that_the_budget_cannot_give_a_second() {
        // A first attempt that waited out most of the 15 s (a broker that does not answer)
        // leaves too little for another: the failure is reported at once.
        assert_eq!(pause_before_next(1, Duration::from_millis(500)), None);
        let needed = Duration::from_millis(240) + MIN_ATTEMPT;
        assert_eq!(
            pause_before_next(1, needed - Duration::from_millis(1)),
            None
        );
        assert_eq!(
            pause_before_next(1, needed),
            Some(Duration::from_millis(200))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_share_one_deadline() {
        let mut budget = Budget::new(Duration::from_secs(15));
        assert_eq!(budget.attempt(), Duration::from_secs(15));
        tokio::time::advance(Duration::from_secs(2)).await;
        let pause = budget.pause().expect("a quick failure is retried");
        assert!(pause >= Duration::from_millis(160) && pause <= Duration::from_millis(240));
        tokio::time::advance(pause).await;
        let second = budget.attempt();
        assert_eq!(second, Duration::from_secs(13) - pause);
        tokio::time::advance(second).await;
        assert_eq!(
            budget.pause(),
            None,
            "the second attempt used up the budget"
        );
    }

    fn transient() -> KafkaAdminError {
        kafka(RDKafkaErrorCode::NotController)
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_items_that_failed_transiently_are_sent_again() {
        let mut sent: Vec<Vec<usize>> = Vec::new();
        let results = items(
            AdminOperation::CreateTopics,
            Duration::from_secs(15),
            vec![0, 1, 2, 3],
            |items: Vec<usize>, _timeout| {
                sent.push(items.clone());
                let first = sent.len() == 1;
                std::future::ready(Ok(items
                    .iter()
                    .map(|&i| {
                        let result = match i {
                            1 if first => Err(transient()),
                            2 => Err(kafka(RDKafkaErrorCode::InvalidConfig)),
                            3 => Err(transient()),
                            _ => Ok(i),
                        };
                        (i, result)
                    })
                    .collect()))
            },
        )
        .await
        .unwrap();
        assert_eq!(sent, [vec![0, 1, 2, 3], vec![1, 3], vec![3]]);
        assert_eq!(results[0], (0, Ok(0)));
        assert_eq!(results[1], (1, Ok(1)), "recovered on the second attempt");
        assert_eq!(
            results[2],
            (2, Err(kafka(RDKafkaErrorCode::InvalidConfig))),
            "a refusal is not retried"
        );
        assert_eq!(
            results[3],
            (3, Err(transient())),
            "three attempts, then reported"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_whole_request_failing_transiently_is_sent_again() {
        let mut attempts = 0;
        let results = items(
            AdminOperation::CreateAcls,
            Duration::from_secs(15),
            vec![0, 1],
            |items: Vec<usize>, _timeout| {
                attempts += 1;
                std::future::ready(if attempts == 1 {
                    Err(transient())
                } else {
                    Ok(items.iter().map(|&i| (i, Ok(()))).collect())
                })
            },
        )
        .await
        .unwrap();
        assert_eq!(attempts, 2);
        assert_eq!(results, [(0, Ok(())), (1, Ok(()))]);

        let refused: Result<ItemResults<()>, _> = items(
            AdminOperation::CreateAcls,
            Duration::from_secs(15),
            vec![0],
            |_: Vec<usize>, _timeout| {
                std::future::ready(Err(kafka(RDKafkaErrorCode::ClusterAuthorizationFailed)))
            },
        )
        .await;
        assert_eq!(
            refused.unwrap_err(),
            kafka(RDKafkaErrorCode::ClusterAuthorizationFailed)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_waited_out_its_timeout_is_not_made_again() {
        let mut timeouts = Vec::new();
        let result: Result<(), _> = call(
            AdminOperation::DescribeAcls,
            Duration::from_secs(15),
            |timeout| {
                timeouts.push(timeout);
                async move {
                    // A broker that does not answer: the attempt takes its whole timeout.
                    tokio::time::advance(timeout).await;
                    Err(KafkaAdminError::TimedOut {
                        operation: AdminOperation::DescribeAcls,
                        timeout,
                    })
                }
            },
        )
        .await;
        assert!(matches!(result, Err(KafkaAdminError::TimedOut { .. })));
        assert_eq!(timeouts, [Duration::from_secs(15)]);

        let mut made = 0;
        let recovered = call(
            AdminOperation::DescribeAcls,
            Duration::from_secs(15),
            |_timeout| {
                made += 1;
                std::future::ready(if made < 3 { Err(transient()) } else { Ok(made) })
            },
        )
        .await;
        assert_eq!(recovered, Ok(3));
    }
}
