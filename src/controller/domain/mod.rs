//! The Domain reconciler: a namespace with RBAC and a quota, a Kafka principal with SCRAM
//! credentials, an object-store user with an access key, and a Secret holding both.
//!
//! Each reconcile takes four steps, each in its own module: [`observe`] reads the namespace,
//! the Secret, the quota and the identities once, before any write; [`plan`] decides, purely,
//! every write and the status (the objects themselves are built by [`desired`]); [`apply`]
//! makes the writes, keeping every failure; [`report`] writes the status, failures included.
//! Deletion takes the same steps: it waits until the domain has no DataProducts, then removes
//! what the operator made for it.

mod apply;
pub mod desired;
mod observe;
mod plan;
mod report;

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Predicate, predicates};

use super::shared_watch::changed;
use super::stores::{Shared, Stores, Watches};
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;

use self::plan::CleanupPlan;
use super::applied::Applied;
use super::apply::DOMAIN_LABEL;
use super::failure::report_failure;
use super::{Context, Error, backoff_key, from_finalizer, requeue_after_error};
use crate::api::data_product::DataProduct;
use crate::api::domain::Domain;

/// The finalizer that lets the operator remove a Domain's identities before it goes.
pub const FINALIZER: &str = "datamesh.dev/domain";
const KIND: &str = "Domain";

/// What each reconcile is handed: the shared context and the watches' caches (the products,
/// counted and listed from the cache rather than the API server). It derefs to [`Stores`].
pub type State = Shared;

/// The Domain controller, subscribed to its watches in `watches`; it runs (until `shutdown` is
/// cancelled) once the returned future is polled, while the watches run.
pub fn run(
    ctx: Arc<Context>,
    stores: Arc<Stores>,
    watches: &mut Watches,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + use<> {
    Controller::for_shared_stream(watches.domains.applied(), stores.domains.clone())
        // A product appearing or going changes its domain's count and may unblock deletion.
        // Its status writes change neither, and at thousands of products they would keep
        // every domain reconciling: only a new generation (creation, a spec change, the
        // deletion mark) or a change of finalizers (its removal, then the delete) triggers.
        .watches_shared_stream(
            changed(
                watches.products.touched(),
                predicates::generation.combine(predicates::finalizers),
            ),
            |product| Some(ObjectRef::<Domain>::new(&product.spec.domain)),
        )
        // A child deleted or edited by hand is made again at once, not at the next resync.
        .watches_shared_stream(watches.namespaces.touched(), |namespace| {
            domain_of_child(&*namespace, |_, _| true)
        })
        .watches_shared_stream(watches.service_accounts.touched(), |account| {
            domain_of_child(&*account, |name, _| {
                name == desired::WORKLOAD_SERVICE_ACCOUNT
            })
        })
        .watches_shared_stream(watches.role_bindings.touched(), |binding| {
            domain_of_child(&*binding, |name, _| name == desired::ADMIN_ROLE_BINDING)
        })
        .watches_shared_stream(watches.resource_quotas.touched(), |quota| {
            domain_of_child(&*quota, |name, _| name == desired::RESOURCE_QUOTA)
        })
        .watches_shared_stream(watches.secrets.touched(), |secret| {
            domain_of_child(&*secret, |name, domain| {
                name == desired::credentials_secret_name(domain)
            })
        })
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(reconcile, error_policy, Arc::new(State { ctx, stores }))
        .for_each(|_| futures::future::ready(()))
}

/// The Domain a child of the operator's belongs to (its domain label), when `is_child(name,
/// domain)` says the object is one of that Domain's own children.
fn domain_of_child<K: kube::Resource>(
    child: &K,
    is_child: impl Fn(&str, &str) -> bool,
) -> Option<ObjectRef<Domain>> {
    let meta = child.meta();
    let domain = meta.labels.as_ref()?.get(DOMAIN_LABEL)?;
    is_child(meta.name.as_deref()?, domain).then(|| ObjectRef::new(domain))
}

fn error_policy(object: Arc<Domain>, error: &Error, state: Arc<State>) -> Action {
    requeue_after_error(KIND, &*object, error, &state.ctx)
}

async fn reconcile(domain: Arc<Domain>, state: Arc<State>) -> Result<Action, Error> {
    let ctx = state.ctx.clone();
    let _timer = ctx.metrics.reconcile_started(KIND, &*domain);
    let backoff = backoff_key(KIND, &*domain);
    let api = Api::<Domain>::all(ctx.client.clone());
    let reconciled = finalizer(&api, FINALIZER, domain, |event| async {
        match event {
            Finalizer::Apply(domain) => apply_domain(&domain, &state).await,
            Finalizer::Cleanup(domain) => cleanup_domain(&domain, &state).await,
        }
    })
    .await
    .map_err(from_finalizer);
    if reconciled.is_ok() {
        ctx.backoff.reset(&backoff);
    }
    reconciled
}

/// Make everything the Domain declares exist, then report it: observe, plan, apply, report.
async fn apply_domain(domain: &Domain, state: &State) -> Result<Action, Error> {
    let ctx = &*state.ctx;
    let observation = match observe::observe(domain, state).await {
        Ok(observation) => observation,
        Err(error) => return Err(read_failed(domain, ctx, error).await),
    };
    let plan = plan::plan(
        domain,
        &observation,
        &ctx.reserved_names,
        &ctx.settings.domain_admin_cluster_role,
        &Time(Timestamp::now()),
    );
    let done = apply::apply(domain, &plan, observation.failed_reads, ctx).await;
    report::report(domain, &plan, done, ctx).await
}

/// The Domain is being deleted: refuse while it has products, else remove what the operator
/// made for it (see [`plan::cleanup_plan`]), in the same four steps.
async fn cleanup_domain(domain: &Domain, state: &State) -> Result<Action, Error> {
    let ctx = &*state.ctx;
    let observation = match observe::observe_cleanup(domain, state).await {
        Ok(observation) => observation,
        Err(error) => return Err(read_failed(domain, ctx, error).await),
    };
    let plan = plan::cleanup_plan(
        domain,
        &observation,
        &ctx.reserved_names,
        &Time(Timestamp::now()),
    );
    let applied = match &plan {
        CleanupPlan::Remove(removal) => {
            apply::remove(domain, removal, observation.failed_reads, ctx).await
        }
        CleanupPlan::NothingToRemove { .. } | CleanupPlan::Blocked { .. } => Applied::default(),
    };
    report::report_cleanup(domain, &plan, applied, ctx).await
}

/// A Kubernetes read failed before anything was planned: say so on the Domain, and retry.
async fn read_failed(domain: &Domain, ctx: &Context, error: Error) -> Error {
    report_failure(ctx, &Api::<Domain>::all(ctx.client.clone()), domain, &error).await;
    error
}

/// Domains whose Kafka and IAM identities were checked recently, with the access key the
/// check found (see `observe`, which trusts a recent check instead of reading them again).
pub struct CheckedIdentities {
    trust_for: Duration,
    checked: std::sync::Mutex<HashMap<String, (String, Instant)>>,
}

impl CheckedIdentities {
    /// Trust a check for `trust_for` (the resync period).
    pub fn new(trust_for: Duration) -> Self {
        Self {
            trust_for,
            checked: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.checked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `domain`'s identities were checked within the trust period, with this key.
    fn is_fresh(&self, domain: &str, access_key_id: &str) -> bool {
        self.entries()
            .get(domain)
            .is_some_and(|(key, at)| key == access_key_id && at.elapsed() < self.trust_for)
    }

    fn record(&self, domain: &str, access_key_id: &str) {
        self.entries().insert(
            domain.to_owned(),
            (access_key_id.to_owned(), Instant::now()),
        );
    }

    fn forget(&self, domain: &str) {
        self.entries().remove(domain);
    }
}

/// The products in the domain's namespace, from the cache once it has listed them all.
async fn list_products(state: &State, namespace: &str) -> Result<Vec<String>, Error> {
    state.ready().await?;
    Ok(remaining_products(&state.products.state(), namespace))
}

/// How many products the domain has (see [`counted_products`]).
async fn count_products(state: &State, namespace: &str) -> Result<usize, Error> {
    state.ready().await?;
    Ok(counted_products(&state.products.state(), namespace))
}

/// How many products are in `namespace`, not counting those being deleted: the last event of
/// a product's deletion that reaches the Domain is its finalizer's removal, when the product is
/// still cached with its deletion mark. Pure.
fn counted_products(products: &[Arc<DataProduct>], namespace: &str) -> usize {
    products_in(products, namespace)
        .filter(|product| product.metadata.deletion_timestamp.is_none())
        .count()
}

/// The names of the products in `namespace` that still hold the Domain's deletion back. A
/// product whose last finalizer is gone is not one: the API server deletes it with that very
/// write, and the Domain, triggered by that write, must not wait for the deletion's own event
/// (which changes neither generation nor finalizers, so it triggers nothing). Pure.
fn remaining_products(products: &[Arc<DataProduct>], namespace: &str) -> Vec<String> {
    products_in(products, namespace)
        .filter(|product| {
            product.metadata.deletion_timestamp.is_none() || !product.finalizers().is_empty()
        })
        .map(|product| product.name_any())
        .collect()
}

fn products_in<'a>(
    products: &'a [Arc<DataProduct>],
    namespace: &'a str,
) -> impl Iterator<Item = &'a Arc<DataProduct>> {
    products
        .iter()
        .filter(move |product| product.metadata.namespace.as_deref() == Some(namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(
        namespace: &str,
        name: &str,
        deleting: bool,
        finalizers: &[&str],
    ) -> Arc<DataProduct> {
        let mut product: DataProduct = serde_json::from_value(serde_json::json!({
            "apiVersion": "datamesh.dev/v1alpha1", "kind": "DataProduct",
            "metadata": {"name": name, "namespace": namespace,
                         "finalizers": finalizers},
            "spec": {"domain": "payments", "description": {"purpose": "p", "usage": "u"},
                     "owner": {"name": "alice"}}
        }))
        .unwrap();
        if deleting {
            product.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        }
        Arc::new(product)
    }

    #[test]
    fn a_product_holds_its_domain_back_until_its_last_finalizer_goes() {
        let products = [
            product("payments", "kept", false, &[]),
            product("payments", "going", true, &["datamesh.dev/data-product"]),
            product("payments", "gone", true, &[]),
            product("marketing", "elsewhere", false, &[]),
        ];
        assert_eq!(remaining_products(&products, "payments"), ["kept", "going"]);
        assert!(remaining_products(&products, "bi").is_empty());
    }

    #[test]
    fn products_being_deleted_do_not_count() {
        let products = [
            product("payments", "kept", false, &[]),
            product("payments", "going", true, &["datamesh.dev/data-product"]),
            product("marketing", "elsewhere", false, &[]),
        ];
        assert_eq!(counted_products(&products, "payments"), 1);
        assert_eq!(counted_products(&products, "marketing"), 1);
    }

    #[test]
    fn a_checked_identity_is_trusted_for_its_key_until_forgotten_or_stale() {
        let checked = CheckedIdentities::new(Duration::from_secs(300));
        assert!(!checked.is_fresh("payments", "AK1"));
        checked.record("payments", "AK1");
        assert!(checked.is_fresh("payments", "AK1"));
        assert!(
            !checked.is_fresh("payments", "AK2"),
            "another key is checked again"
        );
        assert!(!checked.is_fresh("customers", "AK1"));
        checked.forget("payments");
        assert!(!checked.is_fresh("payments", "AK1"));
        let stale = CheckedIdentities::new(Duration::ZERO);
        stale.record("payments", "AK1");
        assert!(!stale.is_fresh("payments", "AK1"));
    }
}
