//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does it:
//! two replicas can run, only the holder of the lease reconciles, and a standby takes over
//! once the holder has not renewed for a whole lease duration.
//!
//! Expiry is judged by when *this* process last saw the lease change, not by the holder's
//! `renewTime`, so clock skew between machines cannot hand the lease to two holders. Writes
//! use the lease's `resourceVersion`, so of two candidates racing for it exactly one wins.
//!
//! Leading cannot overlap: the holder leads only until `renew_deadline` after it *sent* its last
//! successful renewal, judged by its own monotonic clock ([`still_leading`]). A standby waits a
//! whole `lease_duration` (longer) from when it *saw* that renewal, which is later than it was
//! sent. Each attempt has its own deadline ([`attempt_timeout`]), so a hung request can neither
//! make the holder miss its later attempts nor keep it believing it leads; and the
//! [`Leadership`] every write of the controllers is fenced by (see
//! [`crate::controller::fence`]) ends at that instant even if no task noticed yet, as after the
//! process was frozen.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The longest releasing the lease on shutdown may take, whatever the timings: shutdown must
/// fit in the pod's termination grace period.
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// What can go wrong holding the lease.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("reading or writing Lease {namespace}/{name}: {source}")]
    Kubernetes {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error(
        "Lease {namespace}/{name}: an acquire or renew attempt got no answer within {timeout:?}"
    )]
    AttemptTimedOut {
        namespace: String,
        name: String,
        timeout: Duration,
    },
    #[error("lost Lease {namespace}/{name}: not renewed within {renew_deadline:?}")]
    Lost {
        namespace: String,
        name: String,
        renew_deadline: Duration,
    },
    #[error("lost Lease {namespace}/{name}: now held by {holder:?}")]
    Deposed {
        namespace: String,
        name: String,
        /// The holder as read.
        holder: Option<String>,
    },
    #[error(
        "leader election timings: {rule} (lease duration {lease_duration:?}, renew deadline {renew_deadline:?}, retry period {retry_period:?})"
    )]
    InvalidTimings {
        rule: &'static str,
        lease_duration: Duration,
        renew_deadline: Duration,
        retry_period: Duration,
    },
}

/// Timings, with client-go's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseTimings {
    /// How long a holder's claim lasts without renewal (whole seconds: the Lease records
    /// seconds).
    lease_duration: Duration,
    /// How long after sending its last successful renewal the holder may still lead.
    renew_deadline: Duration,
    /// How often candidates try to acquire and the holder renews.
    retry_period: Duration,
    /// The longest one acquire or renew attempt (a read and a write) may take.
    attempt_timeout: Duration,
}

impl Default for LeaseTimings {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(5),
        }
    }
}

impl LeaseTimings {
    /// Timings in whole seconds, checked: `lease_duration > renew_deadline > retry_period > 0`.
    /// One attempt may take half the renew deadline, so a hung attempt leaves time for another.
    pub fn from_secs(
        lease_duration: u64,
        renew_deadline: u64,
        retry_period: u64,
    ) -> Result<Self, LeaderError> {
        let lease_duration = Duration::from_secs(lease_duration);
        let renew_deadline = Duration::from_secs(renew_deadline);
        let retry_period = Duration::from_secs(retry_period);
        let invalid = |rule| LeaderError::InvalidTimings {
            rule,
            lease_duration,
            renew_deadline,
            retry_period,
        };
        if retry_period.is_zero() {
            return Err(invalid("the retry period must be positive"));
        }
        if renew_deadline <= retry_period {
            return Err(invalid(
                "the renew deadline must be longer than the retry period",
            ));
        }
        if lease_duration <= renew_deadline {
            return Err(invalid(
                "the lease duration must be longer than the renew deadline",
            ));
        }
        if i32::try_from(lease_duration.as_secs()).is_err() {
            return Err(invalid("the lease duration must fit the Lease's seconds"));
        }
        Ok(Self {
            lease_duration,
            renew_deadline,
            retry_period,
            attempt_timeout: renew_deadline / 2,
        })
    }

    /// How long a holder's claim lasts without renewal.
    pub fn lease_duration(&self) -> Duration {
        self.lease_duration
    }

    /// How long after sending its last successful renewal the holder may still lead.
    pub fn renew_deadline(&self) -> Duration {
        self.renew_deadline
    }

    /// How often candidates try to acquire and the holder renews.
    pub fn retry_period(&self) -> Duration {
        self.retry_period
    }

    /// The longest one acquire or renew attempt may take.
    pub fn attempt_timeout(&self) -> Duration {
        self.attempt_timeout
    }
}

/// Whether a holder that sent its last successful renewal at `last_renewal_sent` still leads
/// at `now`. Pure. Counted from when the request was sent, not from when it was answered: the
/// lease on the server can be no older than that.
pub fn still_leading(
    last_renewal_sent: Option<Instant>,
    now: Instant,
    renew_deadline: Duration,
) -> bool {
    last_renewal_sent.is_some_and(|sent| now.saturating_duration_since(sent) < renew_deadline)
}

/// How long the next acquire or renew attempt may take: its own timeout, and for a holder
/// never past the moment it stops leading. Pure.
pub fn attempt_timeout(
    timings: &LeaseTimings,
    leading_until: Option<Instant>,
    now: Instant,
) -> Duration {
    match leading_until {
        Some(until) => timings
            .attempt_timeout
            .min(until.saturating_duration_since(now)),
        None => timings.attempt_timeout,
    }
}

/// Until when this process may act as the leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tenure {
    /// Leader election is off: a single replica always leads.
    Unconditional,
    /// Leading until this instant, unless a renewal moves it on.
    Until(Instant),
    /// Not leading (not yet, or no more).
    NotLeading,
}

#[derive(Debug)]
struct TenureState {
    last_renewal_sent: Option<Instant>,
    ended: bool,
}

/// Whether this process leads, shared by the elector (which renews it) and everything that
/// must stop writing the moment it does not ([`crate::controller::fence`]).
#[derive(Debug)]
pub struct Leadership {
    /// `None`: leader election is off.
    renew_deadline: Option<Duration>,
    state: Mutex<TenureState>,
}

impl Leadership {
    /// Leader election is off: always leading.
    pub fn unconditional() -> Arc<Self> {
        Arc::new(Self {
            renew_deadline: None,
            state: Mutex::new(TenureState {
                last_renewal_sent: None,
                ended: false,
            }),
        })
    }

    /// Leading only while the lease is renewed within `renew_deadline`; not yet leading.
    pub fn elected(renew_deadline: Duration) -> Arc<Self> {
        Arc::new(Self {
            renew_deadline: Some(renew_deadline),
            state: Mutex::new(TenureState {
                last_renewal_sent: None,
                ended: false,
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, TenureState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Until when this process leads, as of `now`.
    pub fn tenure(&self, now: Instant) -> Tenure {
        let Some(renew_deadline) = self.renew_deadline else {
            return Tenure::Unconditional;
        };
        let state = self.state();
        match state.last_renewal_sent {
            Some(sent) if !state.ended && still_leading(Some(sent), now, renew_deadline) => {
                Tenure::Until(sent + renew_deadline)
            }
            _ => Tenure::NotLeading,
        }
    }

    /// Whether this process leads now.
    pub fn is_leading(&self) -> bool {
        self.tenure(Instant::now()) != Tenure::NotLeading
    }

    /// A renewal sent at `sent` succeeded.
    pub(crate) fn renewed(&self, sent: Instant) {
        let mut state = self.state();
        if state.last_renewal_sent.is_none_or(|last| last < sent) {
            state.last_renewal_sent = Some(sent);
        }
    }

    /// Stop leading now, whatever the clock says (the lease was lost or is being released).
    pub fn end(&self) {
        self.state().ended = true;
    }
}

/// What a candidate should do with the lease as it finds it.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// No lease exists yet: create it, holding it.
    Create,
    /// We hold it: renew it.
    Renew,
    /// Nobody holds it, or the holder let it expire: take it over.
    TakeOver,
    /// Someone else holds it and it has not expired.
    Wait,
}

/// Decide from the lease as read and how long ago we last saw it change. Pure.
fn decide(
    lease: Option<&LeaseSpec>,
    identity: &str,
    unchanged_for: Duration,
    lease_duration: Duration,
) -> Decision {
    let Some(spec) = lease else {
        return Decision::Create;
    };
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == identity => Decision::Renew,
        None | Some("") => Decision::TakeOver,
        Some(_) => {
            let claimed = spec
                .lease_duration_seconds
                .map(|seconds| Duration::from_secs(u64::try_from(seconds).unwrap_or(0)))
                .unwrap_or(lease_duration);
            if unchanged_for > claimed {
                Decision::TakeOver
            } else {
                Decision::Wait
            }
        }
    }
}

/// What one acquire or renew attempt found.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    /// We hold the lease; the write that says so was sent at the recorded instant.
    Holding,
    /// Someone else holds it (`None`: our write lost a race to another writer).
    HeldBy(Option<String>),
}

/// A candidate for one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    timings: LeaseTimings,
    leadership: Arc<Leadership>,
    /// The last lease record seen (holder, renew time) and when we first saw it.
    observed: Option<(Option<String>, Option<MicroTime>, Instant)>,
}

impl LeaderElector {
    /// A candidate named `identity` (unique per process: the pod name, or host and pid).
    /// `client` must not be fenced by `leadership`: it is what acquires it.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: String,
        timings: LeaseTimings,
        leadership: Arc<Leadership>,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            identity,
            timings,
            leadership,
            observed: None,
        }
    }

    /// This candidate's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn error(&self, source: kube::Error) -> LeaderError {
        LeaderError::Kubernetes {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            source,
        }
    }

    fn lost(&self) -> LeaderError {
        LeaderError::Lost {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            renew_deadline: self.timings.renew_deadline,
        }
    }

    /// How long the lease record has looked the same to us.
    fn observe(&mut self, spec: Option<&LeaseSpec>) -> Duration {
        let holder = spec.and_then(|s| s.holder_identity.clone());
        let renew = spec.and_then(|s| s.renew_time.clone());
        match &self.observed {
            Some((seen_holder, seen_renew, since))
                if *seen_holder == holder && *seen_renew == renew =>
            {
                since.elapsed()
            }
            _ => {
                self.observed = Some((holder, renew, Instant::now()));
                Duration::ZERO
            }
        }
    }

    /// One attempt to acquire or renew, without a deadline of its own: see [`Self::attempt`].
    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, LeaderError> {
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.error(e))?;
        let spec = current.as_ref().and_then(|lease| lease.spec.as_ref());
        let unchanged_for = self.observe(spec);
        let now = MicroTime(Timestamp::now());
        let duration_seconds = i32::try_from(self.timings.lease_duration.as_secs()).unwrap_or(15);
        let decision = decide(
            spec,
            &self.identity,
            unchanged_for,
            self.timings.lease_duration,
        );
        let sent = Instant::now();
        let result = match decision {
            Decision::Wait => {
                return Ok(Attempt::HeldBy(
                    spec.and_then(|spec| spec.holder_identity.clone()),
                ));
            }
            Decision::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        namespace: Some(self.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(duration_seconds),
                        acquire_time: Some(now.clone()),
                        renew_time: Some(now),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            decision @ (Decision::Renew | Decision::TakeOver) => {
                let Some(mut lease) = current.clone() else {
                    return Ok(Attempt::HeldBy(None));
                };
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                if decision == Decision::TakeOver {
                    spec.holder_identity = Some(self.identity.clone());
                    spec.acquire_time = Some(now.clone());
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.lease_duration_seconds = Some(duration_seconds);
                spec.renew_time = Some(now);
                // resourceVersion is kept from the read: a concurrent writer makes this a 409.
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(lease) => {
                self.observe(lease.spec.as_ref());
                self.leadership.renewed(sent);
                Ok(Attempt::Holding)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Attempt::HeldBy(None)),
            Err(error) => Err(self.error(error)),
        }
    }

    /// One attempt to acquire or renew, abandoned when it takes longer than
    /// [`attempt_timeout`] allows.
    pub async fn attempt(&mut self) -> Result<Attempt, LeaderError> {
        let now = Instant::now();
        let leading_until = match self.leadership.tenure(now) {
            Tenure::Until(until) => Some(until),
            Tenure::Unconditional | Tenure::NotLeading => None,
        };
        let timeout = attempt_timeout(&self.timings, leading_until, now);
        with_deadline(timeout, self.try_acquire_or_renew())
            .await
            .unwrap_or_else(|| {
                Err(LeaderError::AttemptTimedOut {
                    namespace: self.namespace.clone(),
                    name: self.name.clone(),
                    timeout,
                })
            })
    }

    /// Give the lease up so a standby takes over at once instead of after it expires. Stops
    /// leading first. Bounded by the attempt timeout and by [`RELEASE_TIMEOUT`].
    pub async fn release(&mut self) -> Result<(), LeaderError> {
        self.leadership.end();
        let timeout = self.timings.attempt_timeout.min(RELEASE_TIMEOUT);
        with_deadline(timeout, self.try_release())
            .await
            .unwrap_or_else(|| {
                Err(LeaderError::AttemptTimedOut {
                    namespace: self.namespace.clone(),
                    name: self.name.clone(),
                    timeout,
                })
            })
    }

    async fn try_release(&self) -> Result<(), LeaderError> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.error(e))?
        else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(error) => Err(self.error(error)),
        }
    }

    /// Wait until we hold the lease, or `shutdown` is cancelled (then `false`).
    pub async fn acquire(&mut self, shutdown: &CancellationToken) -> bool {
        loop {
            let attempt = tokio::select! {
                () = shutdown.cancelled() => return false,
                attempt = self.attempt() => attempt,
            };
            match attempt {
                Ok(Attempt::Holding) => return true,
                Ok(Attempt::HeldBy(holder)) => {
                    tracing::debug!(?holder, "another candidate holds the lease");
                }
                Err(error) => tracing::warn!(%error, "leader election attempt failed"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(self.timings.retry_period) => {}
            }
        }
    }

    /// Renew every retry period for as long as we lead, and return why we no longer do:
    /// another holder was read, or no renewal succeeded within the renew deadline of the
    /// last successful one being sent (failures and conflicts are retried until then). Ends the [`Leadership`] before returning. Never
    /// returns while we lead: the caller ends it by dropping this future.
    pub async fn keep_renewing(&mut self) -> LeaderError {
        let lost = self.renew_until_lost().await;
        self.leadership.end();
        lost
    }

    async fn renew_until_lost(&mut self) -> LeaderError {
        loop {
            let now = Instant::now();
            let Tenure::Until(leading_until) = self.leadership.tenure(now) else {
                return self.lost();
            };
            tokio::time::sleep_until((now + self.timings.retry_period).min(leading_until)).await;
            if !self.leadership.is_leading() {
                return self.lost();
            }
            match self.attempt().await {
                Ok(Attempt::Holding) => {}
                Ok(Attempt::HeldBy(Some(holder))) => {
                    return LeaderError::Deposed {
                        namespace: self.namespace.clone(),
                        name: self.name.clone(),
                        holder: Some(holder),
                    };
                }
                // The lease changed between our read and our write: perhaps a renewal of ours
                // that timed out here but landed there. The next attempt reads who holds it;
                // the clock ends the leadership meanwhile if need be.
                Ok(Attempt::HeldBy(None)) => {
                    tracing::warn!("the lease changed while renewing it (409): trying again");
                }
                Err(error) => tracing::warn!(%error, "renewing the leader lease failed"),
            }
        }
    }
}

/// `future`'s output, or `None` when it did not finish within `timeout` (then it is dropped,
/// which abandons its request).
async fn with_deadline<F: Future>(timeout: Duration, future: F) -> Option<F::Output> {
    tokio::time::timeout(timeout, future).await.ok()
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::Full;

    use super::*;

    const LEASE: Duration = Duration::from_secs(15);
    const RENEW: Duration = Duration::from_secs(10);

    fn held_by(holder: Option<&str>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_missing_lease_is_created() {
        assert_eq!(decide(None, "a", Duration::ZERO, LEASE), Decision::Create);
    }

    #[test]
    fn the_holder_renews() {
        assert_eq!(
            decide(
                Some(&held_by(Some("a"))),
                "a",
                Duration::from_secs(60),
                LEASE
            ),
            Decision::Renew
        );
    }

    #[test]
    fn a_live_lease_of_another_holder_is_left_alone() {
        assert_eq!(
            decide(
                Some(&held_by(Some("b"))),
                "a",
                Duration::from_secs(14),
                LEASE
            ),
            Decision::Wait
        );
    }

    #[test]
    fn an_expired_lease_is_taken_over() {
        assert_eq!(
            decide(
                Some(&held_by(Some("b"))),
                "a",
                Duration::from_secs(16),
                LEASE
            ),
            Decision::TakeOver
        );
    }

    #[test]
    fn a_released_lease_is_taken_over_at_once() {
        assert_eq!(
            decide(Some(&held_by(None)), "a", Duration::ZERO, LEASE),
            Decision::TakeOver
        );
        assert_eq!(
            decide(Some(&held_by(Some(""))), "a", Duration::ZERO, LEASE),
            Decision::TakeOver
        );
    }

    #[test]
    fn leading_lasts_the_renew_deadline_from_when_the_renewal_was_sent() {
        let sent = Instant::now();
        assert!(!still_leading(None, sent, RENEW), "never renewed");
        assert!(still_leading(Some(sent), sent, RENEW));
        assert!(still_leading(
            Some(sent),
            sent + RENEW - Duration::from_millis(1),
            RENEW
        ));
        assert!(!still_leading(Some(sent), sent + RENEW, RENEW));
        assert!(!still_leading(Some(sent), sent + LEASE, RENEW));
        // A `now` read before a renewal recorded by another task is not a negative age.
        assert!(still_leading(
            Some(sent + Duration::from_secs(1)),
            sent,
            RENEW
        ));
    }

    #[test]
    fn an_attempt_never_outlasts_the_leadership() {
        let timings = LeaseTimings::default();
        let now = Instant::now();
        assert_eq!(attempt_timeout(&timings, None, now), Duration::from_secs(5));
        assert_eq!(
            attempt_timeout(&timings, Some(now + Duration::from_secs(8)), now),
            Duration::from_secs(5)
        );
        assert_eq!(
            attempt_timeout(&timings, Some(now + Duration::from_secs(2)), now),
            Duration::from_secs(2)
        );
        assert_eq!(
            attempt_timeout(&timings, Some(now), now + Duration::from_secs(1)),
            Duration::ZERO
        );
    }

    #[test]
    fn timings_are_checked() {
        assert_eq!(
            LeaseTimings::from_secs(15, 10, 2).ok(),
            Some(LeaseTimings::default())
        );
        for (lease, renew, retry) in [(10, 10, 2), (15, 16, 2), (15, 2, 2), (15, 10, 0)] {
            assert!(
                matches!(
                    LeaseTimings::from_secs(lease, renew, retry),
                    Err(LeaderError::InvalidTimings { .. })
                ),
                "{lease}/{renew}/{retry} must be refused"
            );
        }
        let timings = LeaseTimings::from_secs(6, 4, 1).ok();
        assert_eq!(
            timings.map(|t| t.attempt_timeout()),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn leadership_follows_renewals_and_ends_for_good() {
        let leadership = Leadership::elected(RENEW);
        let start = Instant::now();
        assert_eq!(leadership.tenure(start), Tenure::NotLeading);
        leadership.renewed(start);
        assert_eq!(leadership.tenure(start), Tenure::Until(start + RENEW));
        let later = start + Duration::from_secs(2);
        leadership.renewed(later);
        leadership.renewed(start); // an older renewal answered late does not move it back
        assert_eq!(leadership.tenure(later), Tenure::Until(later + RENEW));
        assert_eq!(leadership.tenure(later + RENEW), Tenure::NotLeading);
        leadership.end();
        assert_eq!(leadership.tenure(later), Tenure::NotLeading);
        leadership.renewed(later + Duration::from_secs(1));
        assert_eq!(leadership.tenure(later), Tenure::NotLeading);
        assert_eq!(
            Leadership::unconditional().tenure(start),
            Tenure::Unconditional
        );
    }

    /// An API server that answers every request with `answer`, or never (`None`).
    #[derive(Clone)]
    struct FakeApiServer {
        answer: Option<Arc<Answer>>,
        /// How long each answer takes.
        delay: Duration,
        requests: Arc<AtomicUsize>,
    }

    type Answer = dyn Fn(&Request<kube::client::Body>) -> Response<Full<Bytes>> + Send + Sync;

    impl FakeApiServer {
        fn hung() -> Self {
            Self {
                answer: None,
                delay: Duration::ZERO,
                requests: Arc::default(),
            }
        }

        fn answering(delay: Duration, answer: Arc<Answer>) -> Self {
            Self {
                answer: Some(answer),
                delay,
                requests: Arc::default(),
            }
        }
    }

    impl tower_service::Service<Request<kube::client::Body>> for FakeApiServer {
        type Response = Response<Full<Bytes>>;
        type Error = Infallible;
        type Future =
            std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Infallible>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: Request<kube::client::Body>) -> Self::Future {
            self.requests.fetch_add(1, Ordering::SeqCst);
            match &self.answer {
                Some(answer) => {
                    let response = answer(&request);
                    let delay = self.delay;
                    Box::pin(async move {
                        tokio::time::sleep(delay).await;
                        Ok(response)
                    })
                }
                None => Box::pin(std::future::pending()),
            }
        }
    }

    fn elector(server: FakeApiServer, leadership: Arc<Leadership>) -> LeaderElector {
        LeaderElector::new(
            Client::new(server, "datamesh-system"),
            "datamesh-system",
            "datamesh-operator",
            "a".into(),
            LeaseTimings::default(),
            leadership,
        )
    }

    fn lease_held_by(holder: &str) -> Response<Full<Bytes>> {
        let lease = serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "datamesh-operator", "namespace": "datamesh-system", "resourceVersion": "7"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15},
        });
        Response::new(Full::new(Bytes::from(lease.to_string())))
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_attempt_is_abandoned_at_its_own_deadline() {
        let server = FakeApiServer::hung();
        let mut elector = elector(server.clone(), Leadership::elected(RENEW));
        let start = Instant::now();
        let attempt = elector.attempt().await;
        assert!(
            matches!(attempt, Err(LeaderError::AttemptTimedOut { timeout, .. }) if timeout == Duration::from_secs(5)),
            "{attempt:?}"
        );
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert_eq!(server.requests.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_api_server_cannot_keep_a_leader_leading_past_the_renew_deadline() {
        let server = FakeApiServer::hung();
        let leadership = Leadership::elected(RENEW);
        let mut elector = elector(server.clone(), leadership.clone());
        // The last successful renewal was sent 3 s ago.
        let sent = Instant::now();
        leadership.renewed(sent);
        tokio::time::advance(Duration::from_secs(3)).await;
        let lost = elector.keep_renewing().await;
        assert!(matches!(lost, LeaderError::Lost { .. }), "{lost:?}");
        assert_eq!(
            sent.elapsed(),
            RENEW,
            "stopped exactly at the renew deadline"
        );
        assert!(!leadership.is_leading());
        // Attempts at 5 s (hung until 10 s, cut at the deadline): not one renewal in time.
        assert!(server.requests.load(Ordering::SeqCst) >= 1);
    }

    #[tokio::test(start_paused = true)]
    async fn another_holder_ends_the_leadership_at_once() {
        let server = FakeApiServer::answering(Duration::ZERO, Arc::new(|_| lease_held_by("b")));
        let leadership = Leadership::elected(RENEW);
        let mut elector = elector(server, leadership.clone());
        let sent = Instant::now();
        leadership.renewed(sent);
        let lost = elector.keep_renewing().await;
        assert!(
            matches!(&lost, LeaderError::Deposed { holder: Some(holder), .. } if holder == "b"),
            "{lost:?}"
        );
        assert_eq!(sent.elapsed(), LeaseTimings::default().retry_period());
        assert!(!leadership.is_leading());
    }

    #[tokio::test(start_paused = true)]
    async fn a_successful_renewal_counts_from_when_it_was_sent() {
        // Each answer takes 2 s: the read from 0 to 2 s, the write from 2 to 4 s.
        let server =
            FakeApiServer::answering(Duration::from_secs(2), Arc::new(|_| lease_held_by("a")));
        let leadership = Leadership::elected(RENEW);
        let mut elector = elector(server.clone(), leadership.clone());
        let start = Instant::now();
        assert_eq!(elector.attempt().await.ok(), Some(Attempt::Holding));
        assert_eq!(start.elapsed(), Duration::from_secs(4));
        assert_eq!(server.requests.load(Ordering::SeqCst), 2);
        assert_eq!(
            leadership.tenure(Instant::now()),
            Tenure::Until(start + Duration::from_secs(2) + RENEW)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn conflicting_renewals_are_retried_until_the_renew_deadline() {
        let server = FakeApiServer::answering(
            Duration::ZERO,
            Arc::new(|request| {
                if request.method() == http::Method::GET {
                    lease_held_by("a")
                } else {
                    let conflict = serde_json::json!({
                        "kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "message": "the object has been modified", "reason": "Conflict", "code": 409,
                    });
                    let mut response = Response::new(Full::new(Bytes::from(conflict.to_string())));
                    *response.status_mut() = http::StatusCode::CONFLICT;
                    response
                }
            }),
        );
        let leadership = Leadership::elected(RENEW);
        let mut elector = elector(server.clone(), leadership.clone());
        let sent = Instant::now();
        leadership.renewed(sent);
        let lost = elector.keep_renewing().await;
        assert!(matches!(lost, LeaderError::Lost { .. }), "{lost:?}");
        assert_eq!(sent.elapsed(), RENEW);
        // A read and a write every retry period: 2, 4, 6 and 8 s.
        assert_eq!(server.requests.load(Ordering::SeqCst), 8);
    }
}
