//! One readiness gate over several watch caches, for any number of waiting reconciles.
//!
//! Why not `Store::wait_until_ready` in each reconcile: in kube-runtime 5.0 it polls one
//! shared oneshot receiver, which keeps only the waker of the last task that polled it. When
//! a controller starts, its first reconciles (up to its concurrency) all wait at once, and
//! all but one were never woken: they hung for good, starving the controller and blocking
//! its graceful shutdown. Here a single task waits for the stores (re-asking, so that no
//! other waiter can take its wake-up), and the reconciles wait on a `watch` channel, which
//! wakes every waiter.

use std::time::Duration;

use futures::future::BoxFuture;
use kube::runtime::reflector::Store;
use kube::runtime::reflector::store::WriterDropped;
use tokio::sync::watch;

use super::Error;

/// How often the gate's task asks a store again whether it is ready.
const RECHECK: Duration = Duration::from_millis(100);

/// Whether every store has listed its kind once: `None` while waiting, `Some(Err(kind))`
/// when the watch of `kind` stopped first.
type Readiness = Option<Result<(), &'static str>>;

/// A cloneable wait for "every store has seen its first full list".
#[derive(Clone)]
pub struct StoresReady(watch::Receiver<Readiness>);

impl StoresReady {
    /// Start waiting for `stores` (each named by its kind, for the error).
    pub fn spawn(
        stores: Vec<(&'static str, BoxFuture<'static, Result<(), WriterDropped>>)>,
    ) -> Self {
        let (sender, receiver) = watch::channel(None);
        tokio::spawn(async move {
            for (kind, ready) in stores {
                if ready.await.is_err() {
                    sender.send_replace(Some(Err(kind)));
                    return;
                }
            }
            sender.send_replace(Some(Ok(())));
        });
        Self(receiver)
    }

    /// The readiness wait of one store, for [`StoresReady::spawn`].
    pub fn of<K>(
        kind: &'static str,
        store: &Store<K>,
    ) -> (&'static str, BoxFuture<'static, Result<(), WriterDropped>>)
    where
        K: kube::Resource + Clone + Send + Sync + 'static,
        K::DynamicType: std::hash::Hash + Eq + Clone + Send + Sync,
    {
        let store = store.clone();
        (
            kind,
            Box::pin(async move {
                // Asked afresh every 100 ms: another waiter on the same store (the controller's
                // own runner waits on its store too) may take the wake-up, but a fresh poll
                // sees a value that has arrived.
                loop {
                    if let Ok(ready) = tokio::time::timeout(RECHECK, store.wait_until_ready()).await
                    {
                        return ready;
                    }
                }
            }),
        )
    }

    /// Wait until every store is ready.
    pub async fn wait(&self) -> Result<(), Error> {
        let mut receiver = self.0.clone();
        let readiness = receiver
            .wait_for(Option::is_some)
            .await
            .map_err(|_| Error::Blocked("the watch caches were dropped".into()))?;
        match *readiness {
            Some(Err(kind)) => Err(Error::Blocked(format!("the {kind} watch stopped"))),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;

    use crate::api::domain::{Domain, DomainSpec};

    #[tokio::test]
    async fn every_waiter_wakes_when_the_stores_are_ready() {
        let (store, mut writer) = reflector::store::<Domain>();
        let ready = StoresReady::spawn(vec![StoresReady::of("Domain", &store)]);
        // Many reconciles waiting at once, as when a controller starts.
        let waiters: Vec<_> = (0..16)
            .map(|_| {
                let ready = ready.clone();
                tokio::spawn(async move { ready.wait().await })
            })
            .collect();
        tokio::task::yield_now().await;
        writer.apply_watcher_event(&Event::Init);
        let spec: DomainSpec = serde_json::from_value(serde_json::json!({})).unwrap();
        writer.apply_watcher_event(&Event::InitApply(Domain::new("payments", spec)));
        writer.apply_watcher_event(&Event::InitDone);
        for waiter in waiters {
            let woke = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await;
            assert!(matches!(woke, Ok(Ok(Ok(())))), "a waiter was never woken");
        }
    }
}
