//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does it:
//! two replicas can run, only the holder of the lease reconciles, and a standby takes over
//! once the holder has not renewed for a whole lease duration.
//!
//! Expiry is judged by when *this* process last saw the lease change, not by the holder's
//! `renewTime`, so clock skew between machines cannot hand the lease to two holders. Writes
//! use the lease's `resourceVersion`, so of two candidates racing for it exactly one wins.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

/// What can go wrong holding the lease.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("reading or writing Lease {namespace}/{name}: {source}")]
    Kubernetes {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("lost Lease {namespace}/{name}: not renewed within {renew_deadline:?}")]
    Lost {
        namespace: String,
        name: String,
        renew_deadline: Duration,
    },
}

/// Timings, with client-go's defaults.
#[derive(Clone, Debug)]
pub struct LeaseTimings {
    /// How long a holder's claim lasts without renewal.
    pub lease_duration: Duration,
    /// How long the holder keeps trying to renew before it gives up leading.
    pub renew_deadline: Duration,
    /// How often candidates try to acquire and the holder renews.
    pub retry_period: Duration,
}

impl Default for LeaseTimings {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
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

/// A candidate for one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    timings: LeaseTimings,
    /// The last lease record seen (holder, renew time) and when we first saw it.
    observed: Option<(Option<String>, Option<MicroTime>, Instant)>,
}

impl LeaderElector {
    /// A candidate named `identity` (unique per process: the pod name, or host and pid).
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: String,
        timings: LeaseTimings,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            identity,
            timings,
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

    /// One attempt to acquire or renew. `Ok(true)` while we hold the lease.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, LeaderError> {
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.error(e))?;
        let spec = current.as_ref().and_then(|lease| lease.spec.as_ref());
        let unchanged_for = self.observe(spec);
        let now = MicroTime(Timestamp::now());
        let duration_seconds = i32::try_from(self.timings.lease_duration.as_secs()).unwrap_or(15);
        let result = match decide(
            spec,
            &self.identity,
            unchanged_for,
            self.timings.lease_duration,
        ) {
            Decision::Wait => return Ok(false),
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
                    return Ok(false);
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
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(self.error(error)),
        }
    }

    /// Give the lease up so a standby takes over at once instead of after it expires.
    pub async fn release(&mut self) -> Result<(), LeaderError> {
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
            match self.try_acquire_or_renew().await {
                Ok(true) => return true,
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "leader election attempt failed"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(self.timings.retry_period) => {}
            }
        }
    }

    /// Renew every retry period while `leading` is not cancelled. Returns an error (and
    /// cancels `leading`) when renewal failed for longer than the renew deadline.
    pub async fn keep_renewing(&mut self, leading: &CancellationToken) -> Result<(), LeaderError> {
        let mut last_renewed = Instant::now();
        loop {
            tokio::select! {
                () = leading.cancelled() => return Ok(()),
                () = tokio::time::sleep(self.timings.retry_period) => {}
            }
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewed = Instant::now(),
                Ok(false) => tracing::warn!("another candidate holds the lease"),
                Err(error) => tracing::warn!(%error, "renewing the leader lease failed"),
            }
            if last_renewed.elapsed() > self.timings.renew_deadline {
                leading.cancel();
                return Err(LeaderError::Lost {
                    namespace: self.namespace.clone(),
                    name: self.name.clone(),
                    renew_deadline: self.timings.renew_deadline,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(15);

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
}
