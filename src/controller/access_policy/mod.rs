//! The AccessPolicy reconciler: a producer's grant turned into Kafka ACLs, bucket policies,
//! RBAC and connection ConfigMaps, and revoked just as really.
//!
//! Each reconcile works on the whole *product* the policy names (see [`desired`]): it reads
//! every live policy of that product, the product, the domains and the consumers' products,
//! derives the union of grants, and makes each system match it. So a grant another policy
//! still gives survives the revocation of this one, and a reconcile interrupted anywhere is
//! finished by the next one.
//!
//! Reads come from watch caches, not from the API server: the caches of the policies, Domains
//! and DataProducts every controller shares ([`super::stores`]), fed by the very watches that
//! trigger reconciles, so a cache has seen an event before the reconcile it triggers reads it.
//!
//! Concurrency: policies are reconciled `CONCURRENCY` at a time, but the convergence of one
//! product is serialized in this process (a lock per product), so two policies of the same
//! product never undo each other's work from a stale read, while different products converge
//! in parallel. What is shared has its own lock: a consumer's consumer-group ACL, shared by
//! the products it reads (see [`apply`]), and a bucket's policy, whose owner's part the
//! DataProduct controller writes (one lock per bucket, in
//! [`BucketPolicies`](super::bucket_policies::BucketPolicies)).
//!
//! Bucket grants are the consumers' part of the policy of each bucket the product holds (see
//! [`crate::provision::storage::bucket_policy`] for why access lives on the buckets), so a
//! product's reconcile writes all of it from the union of its own policies alone.
//!
//! Expiry: a policy with `expiresAt` ahead is requeued at that time, not at the resync.
//!
//! Shape: a reconcile is [`observe`] (the stores, the ACLs on the product's topics, the
//! consumers' RBAC and the connection ConfigMaps, read once before any write) → [`plan`] (pure:
//! the writes per system and the status and Events to report) → [`apply`] (every write, each
//! failure recorded, the independent ones going on) → [`report`] (the status, always, failures
//! included). A deletion goes through the same four steps with the policy counting for nothing.

mod apply;
pub mod desired;
mod observe;
mod plan;
mod report;

use std::collections::{BTreeSet, HashMap};
use std::ops::Deref;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Predicate, predicates};
use kube::{Api, ResourceExt};
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio_util::sync::CancellationToken;

use self::desired::{Endpoints, SOURCE_DOMAIN_LABEL, SOURCE_PRODUCT_LABEL, consumers_role_name};
use super::applied::Applied;
use super::apply::DATA_PRODUCT_LABEL;
use super::failure::report_failure;
use super::shared_watch::changed;
use super::stores::{Meta, Stores, Watches};
use super::{Context, Error, backoff_key, domain_trigger, from_finalizer, requeue_after_error};
use crate::api::access_policy::AccessPolicy;
use crate::api::data_product::DataProduct;
use crate::api::domain::Domain;
use crate::controller::tenancy::owned_namespace;

/// The finalizer that lets the operator revoke a policy's grants before it goes.
pub const FINALIZER: &str = "datamesh.dev/access-policy";
const KIND: &str = "AccessPolicy";
/// Margin after `expiresAt` before the expiry reconcile, so a timer that fires a little
/// early does not find the policy still valid.
const EXPIRY_MARGIN: Duration = Duration::from_millis(250);

/// How many AccessPolicies are reconciled at once (those of one product still converge one
/// at a time, see [`ProductLocks`]).
const CONCURRENCY: u16 = 32;

/// What each reconcile is handed: the shared context, the watches' caches of the Domains,
/// DataProducts and AccessPolicies (so a reconcile lists nothing), and the per-product locks.
/// It derefs to [`Stores`]: `state.domains`, `state.products`, `state.policies`,
/// `state.ready()` (every cache has listed once: before that a missing object might only be
/// not listed yet, and a grant computed from it would be wrongly revoked).
pub struct State {
    /// Clients, settings, events and metrics.
    pub ctx: Arc<Context>,
    /// The shared caches.
    pub stores: Arc<Stores>,
    /// One lock per product being converged.
    converging: ProductLocks,
}

impl Deref for State {
    type Target = Stores;

    fn deref(&self) -> &Stores {
        &self.stores
    }
}

/// A product, as its convergence lock knows it: (namespace, DataProduct name).
type ProductKey = (String, String);

/// A lock per product, so policies of different products converge in parallel while two
/// policies of the same product never do. An entry lives only while someone holds or waits
/// for its lock, so the map stays as small as the work under way.
#[derive(Default)]
struct ProductLocks {
    /// Only held to look up, insert or remove an entry, never across an `.await`.
    locks: std::sync::Mutex<HashMap<ProductKey, Arc<Mutex<()>>>>,
}

impl ProductLocks {
    /// Wait for the product's lock; it is released (and its entry dropped if nobody else
    /// wants it) when the returned guard goes.
    async fn lock(&self, namespace: &str, product: &str) -> ProductGuard<'_> {
        // The guard exists before the wait, so a wait given up (a cancelled reconcile) drops
        // the entry just as a release does.
        let mut held = ProductGuard {
            locks: self,
            key: (namespace.to_owned(), product.to_owned()),
            guard: None,
        };
        let lock = self.entries().entry(held.key.clone()).or_default().clone();
        held.guard = Some(lock.lock_owned().await);
        held
    }

    /// The map, even if a thread panicked holding it: every update of it is a single
    /// insert or remove, so it is never left half-changed.
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<ProductKey, Arc<Mutex<()>>>> {
        self.locks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries().len()
    }
}

/// A held product lock (see [`ProductLocks::lock`]).
struct ProductGuard<'a> {
    locks: &'a ProductLocks,
    key: ProductKey,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for ProductGuard<'_> {
    fn drop(&mut self) {
        // Release first, so the count below no longer includes this guard's handle (a wait
        // given up has already dropped its handle with its future).
        self.guard.take();
        let mut entries = self.locks.entries();
        // Handles are only taken under the map's lock: when the map holds the last one,
        // nobody holds or waits for the product's lock, and nobody can start to.
        if entries
            .get(&self.key)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            entries.remove(&self.key);
        }
    }
}

/// A predicate: whether the product is being deleted.
fn deletion(product: &DataProduct) -> Option<u64> {
    Some(u64::from(product.metadata.deletion_timestamp.is_some()))
}

/// A predicate: the buckets the product's status lists as held.
fn held_buckets(product: &DataProduct) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for port in product
        .status
        .iter()
        .flat_map(|status| &status.output_ports)
    {
        port.bucket.hash(&mut hasher);
    }
    Some(hasher.finish())
}

/// The AccessPolicy controller, subscribed to its watches in `watches`; it runs (until
/// `shutdown` is cancelled) once the returned future is polled, while the watches run.
pub fn run(
    ctx: Arc<Context>,
    stores: Arc<Stores>,
    watches: &mut Watches,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + use<> {
    let policies = stores.policies.clone();
    let controller = Controller::for_shared_stream(watches.policies.applied(), policies.clone())
        .with_config(controller::Config::default().concurrency(CONCURRENCY));
    let (by_product, by_domain) = (policies.clone(), policies.clone());
    let (by_role, by_binding, by_map) = (policies.clone(), policies.clone(), policies);
    // The Domain and DataProduct triggers come from the watches that fill the stores the
    // reconciles read, and each event is stored before it is passed on (see
    // `shared_watch`), so a reconcile never reads a store older than the event that caused
    // it. (With triggers from watches of their own, the trigger could win that race, and the
    // reconcile converge on the old state with nothing left to trigger it again.)
    //
    // Grants depend on a product's spec, existence and deletion, and on the buckets it holds
    // (bucket grants go only on those), not on the rest of its status, which changes several
    // times while the product is provisioned.
    let product_events = changed(
        watches.products.touched(),
        predicates::generation
            .combine(predicates::finalizers)
            .combine(deletion)
            .combine(held_buckets),
    );
    let domain_events = changed(watches.domains.touched(), domain_trigger);
    let domains_by_map = stores.domains.clone();
    controller
        // A product appearing, changing ports or lifecycle, or a consumer adding an input
        // port changes what its policies make.
        .watches_shared_stream(product_events, move |product| {
            let namespace = product.namespace();
            let name = product.name_any();
            let read: BTreeSet<String> = product
                .spec
                .input_ports
                .iter()
                .map(|input| input.data_product.name.clone())
                .collect();
            by_product
                .state()
                .into_iter()
                .filter(|policy| {
                    (policy.namespace() == namespace && policy.spec.data_product == name)
                        || read.contains(&policy.spec.data_product)
                })
                .map(|policy| ObjectRef::from_obj(&*policy))
                .collect::<Vec<_>>()
        })
        // A consumer domain appearing (or going) resolves (or breaks) the policies naming it.
        .watches_shared_stream(domain_events, move |domain| {
            let name = domain.name_any();
            let namespace = domain.namespace_name();
            by_domain
                .state()
                .into_iter()
                .filter(|policy| {
                    policy.namespace().as_deref() == Some(namespace.as_str())
                        || policy.spec.consumers.iter().any(|consumer| {
                            consumer.domain.as_deref() == Some(name.as_str())
                                || consumer
                                    .service_account
                                    .as_ref()
                                    .is_some_and(|sa| sa.namespace == namespace)
                        })
                })
                .map(|policy| ObjectRef::from_obj(&*policy))
                .collect::<Vec<_>>()
        })
        // The consumers' Role and RoleBinding and the connection ConfigMaps: one deleted or
        // edited by hand is made again at once, not at the next resync.
        .watches_shared_stream(watches.roles.touched(), move |role| {
            policies_of_consumers_rbac(&by_role, &*role)
        })
        .watches_shared_stream(watches.role_bindings.touched(), move |binding| {
            policies_of_consumers_rbac(&by_binding, &*binding)
        })
        .watches_shared_stream(watches.config_maps.touched(), move |map| {
            policies_of_connection_map(&by_map, &domains_by_map, &map)
        })
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(
            reconcile,
            error_policy,
            Arc::new(State {
                ctx,
                stores,
                converging: ProductLocks::default(),
            }),
        )
        .for_each(|_| futures::future::ready(()))
}

/// The policies of the product whose consumers' Role or RoleBinding `child` is.
fn policies_of_consumers_rbac<K: kube::Resource>(
    policies: &Store<AccessPolicy>,
    child: &K,
) -> Vec<ObjectRef<AccessPolicy>> {
    let meta = child.meta();
    let Some(product) = meta
        .labels
        .as_ref()
        .and_then(|labels| labels.get(DATA_PRODUCT_LABEL))
        .filter(|product| meta.name.as_deref() == Some(consumers_role_name(product).as_str()))
    else {
        return vec![];
    };
    policies_naming(policies, meta.namespace.as_deref(), product)
}

/// The policies of the product whose connection details `map` (in a consumer's namespace)
/// carries: those in the producing domain's namespace that name it.
fn policies_of_connection_map(
    policies: &Store<AccessPolicy>,
    domains: &Store<Domain>,
    map: &Meta<ConfigMap>,
) -> Vec<ObjectRef<AccessPolicy>> {
    let labels = map.labels();
    let (Some(domain), Some(product)) = (
        labels.get(SOURCE_DOMAIN_LABEL),
        labels.get(SOURCE_PRODUCT_LABEL),
    ) else {
        return vec![];
    };
    let Some(domain) = domains.get(&ObjectRef::new(domain)) else {
        return vec![];
    };
    policies_naming(policies, owned_namespace(&domain), product)
}

fn policies_naming(
    policies: &Store<AccessPolicy>,
    namespace: Option<&str>,
    product: &str,
) -> Vec<ObjectRef<AccessPolicy>> {
    policies
        .state()
        .iter()
        .filter(|policy| {
            policy.namespace().as_deref() == namespace && policy.spec.data_product == product
        })
        .map(|policy| ObjectRef::from_obj(&**policy))
        .collect()
}

fn error_policy(object: Arc<AccessPolicy>, error: &Error, state: Arc<State>) -> Action {
    requeue_after_error(KIND, &*object, error, &state.ctx)
}

async fn reconcile(policy: Arc<AccessPolicy>, state: Arc<State>) -> Result<Action, Error> {
    let _timer = state.ctx.metrics.reconcile_started(KIND, &*policy);
    let backoff = backoff_key(KIND, &*policy);
    let namespace = policy.namespace().unwrap_or_default();
    let api = Api::<AccessPolicy>::namespaced(state.ctx.client.clone(), &namespace);
    // A product's grants are the union over what the stores hold: wait until they hold it all.
    state.ready().await?;
    let reconciled = finalizer(&api, FINALIZER, policy, |event| async {
        match event {
            // Grant what the policy declares (with its product's other live policies), report
            // it, and come back at expiry.
            Finalizer::Apply(policy) => {
                let now = Timestamp::now();
                reconcile_product(&policy, &state, &api, false, now).await?;
                Ok(requeue(&policy, now, state.ctx.settings.resync))
            }
            // The policy is being deleted: revoke what only it gave, then let it go. A deletion
            // that fails (a system down) says so too, while it waits.
            Finalizer::Cleanup(policy) => {
                reconcile_product(&policy, &state, &api, true, Timestamp::now()).await?;
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(from_finalizer);
    if reconciled.is_ok() {
        state.ctx.backoff.reset(&backoff);
    }
    reconciled
}

/// Observe, plan and apply under the product's lock, then report on `policy`. When `leaving`,
/// `policy` is being deleted and counts for nothing.
async fn reconcile_product(
    policy: &AccessPolicy,
    state: &State,
    api: &Api<AccessPolicy>,
    leaving: bool,
    now: Timestamp,
) -> Result<(), Error> {
    let (plan, applied) = match converge_product(policy, state, leaving, now).await {
        Ok(done) => done,
        // Nothing was written: observing failed (a system down).
        Err(error) => {
            report_failure(&state.ctx, api, policy, &error).await;
            return Err(error);
        }
    };
    report::report(policy, &plan, applied, state).await
}

/// Observe, plan and apply under the product's lock (see the module docs), so that two
/// policies of one product never converge at once. Reporting needs no lock: it writes only
/// `policy`'s own status.
async fn converge_product(
    policy: &AccessPolicy,
    state: &State,
    leaving: bool,
    now: Timestamp,
) -> Result<(plan::Plan, Applied), Error> {
    let namespace = policy.namespace().unwrap_or_default();
    let _one_at_a_time = state
        .converging
        .lock(&namespace, &policy.spec.data_product)
        .await;
    // Observe only once the lock is ours: a view read while waiting could be older than the
    // one the previous holder converged on, and converging on it would undo that work.
    let observation = observe::observe(policy, state).await?;
    let endpoints = Endpoints {
        kafka_bootstrap_servers: state.ctx.settings.kafka.domain_bootstrap_servers.clone(),
        s3_endpoint: state.ctx.settings.s3.endpoint.clone(),
    };
    let plan = plan::plan(policy, &observation, leaving, &endpoints, now);
    let applied = apply::apply(&plan, state).await;
    Ok((plan, applied))
}

/// When to reconcile a policy again: at its expiry, if that comes before the resync.
fn requeue(policy: &AccessPolicy, now: Timestamp, resync: Duration) -> Action {
    let after = match desired::until_expiry(policy, now) {
        Some(left) => (left + EXPIRY_MARGIN).min(resync),
        None => resync,
    };
    Action::requeue(after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_product_converges_at_a_time_and_others_in_parallel() {
        let locks = ProductLocks::default();
        let held = locks.lock("payments-ns", "orders").await;
        // Another product's lock is free...
        let other =
            tokio::time::timeout(Duration::from_secs(1), locks.lock("payments-ns", "refunds"))
                .await
                .expect("another product's lock is free");
        drop(other);
        // ...and so is a product of the same name in another namespace.
        let elsewhere = tokio::time::timeout(Duration::from_secs(1), locks.lock("bi-ns", "orders"))
            .await
            .expect("another namespace's product's lock is free");
        drop(elsewhere);
        // The same product's lock waits for the holder.
        let mut waiting = Box::pin(locks.lock("payments-ns", "orders"));
        assert!(
            tokio::time::timeout(Duration::from_millis(50), waiting.as_mut())
                .await
                .is_err(),
            "two policies of one product converged at once"
        );
        drop(held);
        let next = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("the lock passes on once released");
        // The released lock's entry stays while the next one holds it, and goes with it.
        assert_eq!(locks.len(), 1);
        drop(next);
        assert_eq!(locks.len(), 0, "unused locks are dropped");

        // A wait given up leaves nothing behind either.
        let held = locks.lock("payments-ns", "orders").await;
        let mut waiting = Box::pin(locks.lock("payments-ns", "orders"));
        assert!(
            tokio::time::timeout(Duration::from_millis(10), waiting.as_mut())
                .await
                .is_err()
        );
        drop(held);
        assert_eq!(locks.len(), 1, "the waiter still wants it");
        drop(waiting);
        assert_eq!(locks.len(), 0);
    }
}
