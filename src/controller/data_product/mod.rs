//! The DataProduct reconciler: Kafka topics with the owning domain's ACLs, buckets with
//! versioning, lifecycle, tags and the owner's IAM policy, and the Spark job that makes the
//! product; input ports resolved against the producers' AccessPolicies.
//!
//! Each reconcile has four steps, each in its own module:
//! [`observe`] (the watch stores, then Kafka, the object store and the live Spark objects,
//! read once, before any write) -> [`plan`] (a pure function: every write to make, per
//! system, and what the status will list) -> [`apply`] (the writes, every failure recorded)
//! -> [`report`] (the status and Events, always, failures included). Deletion has the same
//! four steps, with its own plan. [`desired`] builds the objects and names the plan uses.
//!
//! Ownership: Kafka topics carry no labels, so the DataProducts themselves say who owns what.
//! When two products name the same topic or bucket, the older one (creation time, then
//! namespace/name) keeps it and the newer one is `Stalled` ("managed by <namespace>/<name>");
//! an existing topic or bucket no product claims is adopted.
//!
//! Deletion, behind the finalizer [`FINALIZER`], by `deletionPolicy`:
//! - `Retain` (default): topics and buckets stay with their data. Buckets get the tag
//!   `datamesh.dev/orphaned=true`. Kafka topics have no free-form metadata, so a retained topic
//!   is marked by what it lacks: no DataProduct claims it and its producer ACLs are gone (and an
//!   Event on the deleted product lists it).
//! - `Delete`: topics are deleted and buckets emptied and deleted.
//!
//! Either way the product's ACLs, the operator's statements in its kept buckets' policies (the
//! owner's and the consumers') and its Spark objects are removed. A port removed from the spec is released the same way.

pub mod apply;
pub mod desired;
pub mod observe;
pub mod plan;
pub mod report;

use std::sync::Arc;

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Predicate, predicates};
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;

use self::desired::{SCHEDULED_SPARK_APPLICATION, SPARK_APPLICATION};
use self::plan::{CLAIMED, Platform, QUOTA_EXCEEDED};
use super::shared_watch::changed;
use super::stores::{Shared, Stores, Watches};
use super::{Context, Error, backoff_key, domain_trigger, from_finalizer, requeue_after_error};
use crate::api::access_policy::AccessPolicy;
use crate::api::conditions::{READY, find_condition};
use crate::api::data_product::DataProduct;
use crate::provision::storage::Addressing;

/// The finalizer that lets the operator remove a DataProduct's ACLs, access and Spark objects
/// (and, with `deletionPolicy: Delete`, its topics and buckets) before it goes.
pub const FINALIZER: &str = "datamesh.dev/data-product";
/// Condition type set `True` while the product's `spec.status` is `deprecated`.
pub const DEPRECATED: &str = "Deprecated";
const KIND: &str = "DataProduct";
/// Reasons of a product that another product of its domain can unblock by changing or going.
const WAITS_ON_SIBLINGS: &[&str] = &[QUOTA_EXCEEDED, CLAIMED];
/// How many DataProducts are reconciled at once.
const CONCURRENCY: u16 = 32;

/// What each reconcile is handed: the shared context and the watches' caches (every product,
/// for claims, quotas and input ports; the Domains; the AccessPolicies), read without listing.
/// It derefs to [`Stores`]: `state.products`, `state.domains`, `state.policies`,
/// `state.domain(..)`, `state.owners()`, `state.acting_products(..)`, `state.ready()`.
pub type State = Shared;

/// The DataProduct controller, subscribed to its watches in `watches`; it runs (until
/// `shutdown` is cancelled) once the returned future is polled, while the watches run.
pub fn run(
    ctx: Arc<Context>,
    stores: Arc<Stores>,
    watches: &mut Watches,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + use<> {
    let store = stores.products.clone();
    // A product is reconciled when its spec or finalizers change, not on its own status
    // writes: those would add a reconcile per write that finds nothing to do (a third of all
    // reconciles when many products are created at once).
    let own_events = changed(
        watches.products.applied(),
        predicates::generation.combine(predicates::finalizers),
    );
    let controller = Controller::for_shared_stream(own_events, store.clone())
        .with_config(controller::Config::default().concurrency(CONCURRENCY))
        // Its children (owned through ownerReferences): one deleted or edited by hand is made
        // again at once, not at the next resync. Without the spark-operator CRDs installed
        // their watches fail and retry with backoff; the product reports SparkOperatorMissing.
        .owns_shared_stream(watches.service_accounts.touched())
        .owns_shared_stream(watches.role_bindings.touched())
        // The Spark trust store ConfigMap (the connection ConfigMaps of AccessPolicies have
        // no DataProduct owner, so they do not map to a product here).
        .owns_shared_stream(watches.config_maps.touched())
        .watches_shared_stream_with(
            watches.spark_applications.touched(),
            |child| owning_products(&*child),
            spark_resource(SPARK_APPLICATION),
        )
        .watches_shared_stream_with(
            watches.scheduled_spark_applications.touched(),
            |child| owning_products(&*child),
            spark_resource(SCHEDULED_SPARK_APPLICATION),
        );
    let domain_events = changed(watches.domains.touched(), domain_trigger);
    let (by_policy, by_product, by_domain) = (store.clone(), store.clone(), store);
    controller
        // A grant given, changed, expired or revoked changes its consumers' input ports, and
        // whether the granted product's contracts may change.
        .watches_shared_stream(watches.policies.touched(), move |policy| {
            consumers_of_policy(&by_policy.state(), &policy)
        })
        // A product appearing, changing or going changes its consumers' inputs, and may free a
        // contested name or quota for its domain's products that wait.
        .watches_shared_stream(watches.products.touched(), move |product| {
            affected_by_product(&by_product.state(), &product)
        })
        // A Domain becoming Ready (or its quotas changing) unblocks its products. The shared
        // watch stores each event before it triggers, so the reconcile reads that Domain or newer.
        .watches_shared_stream(domain_events, move |domain| {
            products_of_domain(&by_domain.state(), &domain.name_any())
        })
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(reconcile, error_policy, Arc::new(State { ctx, stores }))
        .for_each(|_| futures::future::ready(()))
}

/// The DataProducts that own `child` (its ownerReferences), for the children whose kind is
/// only known at run time (the spark-operator's).
fn owning_products<C: kube::Resource>(child: &C) -> Vec<ObjectRef<DataProduct>> {
    let meta = child.meta();
    meta.owner_references
        .iter()
        .flatten()
        .filter_map(|owner| ObjectRef::from_owner_ref(meta.namespace.as_deref(), owner, ()))
        .collect()
}

fn reference(product: &DataProduct) -> ObjectRef<DataProduct> {
    ObjectRef::from_obj(product)
}

fn consumers_of_policy(
    all: &[Arc<DataProduct>],
    policy: &AccessPolicy,
) -> Vec<ObjectRef<DataProduct>> {
    let namespace = policy.namespace();
    let Some(producer) = all
        .iter()
        .find(|p| p.namespace() == namespace && p.name_any() == policy.spec.data_product)
    else {
        return vec![];
    };
    let mut affected = readers_of(all, &producer.spec.domain, &producer.name_any());
    affected.push(reference(producer));
    affected
}

fn readers_of(all: &[Arc<DataProduct>], domain: &str, name: &str) -> Vec<ObjectRef<DataProduct>> {
    all.iter()
        .filter(|p| {
            p.spec
                .input_ports
                .iter()
                .any(|i| i.data_product.domain == domain && i.data_product.name == name)
        })
        .map(|p| reference(p))
        .collect()
}

fn affected_by_product(
    all: &[Arc<DataProduct>],
    changed: &DataProduct,
) -> Vec<ObjectRef<DataProduct>> {
    let mut affected = readers_of(all, &changed.spec.domain, &changed.name_any());
    // Only a sibling stalled on a name or a quota can be unblocked by another product (the name
    // freed, the quota no longer used). Triggering every sibling that is not Ready yet would,
    // while a domain's products are created together, reconcile each of them once per
    // sibling's status write: O(n^2) reconciles.
    affected.extend(
        all.iter()
            .filter(|p| {
                p.spec.domain == changed.spec.domain && p.metadata.uid != changed.metadata.uid
            })
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| find_condition(&s.conditions, READY))
                    .is_some_and(|ready| WAITS_ON_SIBLINGS.contains(&ready.reason.as_str()))
            })
            .map(|p| reference(p)),
    );
    affected
}

fn products_of_domain(all: &[Arc<DataProduct>], domain: &str) -> Vec<ObjectRef<DataProduct>> {
    all.iter()
        .filter(|p| p.spec.domain == domain)
        .map(|p| reference(p))
        .collect()
}

fn error_policy(object: Arc<DataProduct>, error: &Error, state: Arc<State>) -> Action {
    requeue_after_error(KIND, &*object, error, &state.ctx)
}

async fn reconcile(product: Arc<DataProduct>, state: Arc<State>) -> Result<Action, Error> {
    let _timer = state.ctx.metrics.reconcile_started(KIND, &*product);
    let backoff = backoff_key(KIND, &*product);
    let namespace = product.namespace().unwrap_or_default();
    let api = Api::<DataProduct>::namespaced(state.ctx.client.clone(), &namespace);
    state.ready().await?;
    let reconciled = finalizer(&api, FINALIZER, product, |event| async {
        match event {
            Finalizer::Apply(product) => provision(&product, &state).await,
            Finalizer::Cleanup(product) => release(&product, &state).await,
        }
    })
    .await
    .map_err(from_finalizer);
    if reconciled.is_ok() {
        state.ctx.backoff.reset(&backoff);
    }
    reconciled
}

/// Make everything the product declares exist, and say so: observe -> plan -> apply -> report.
async fn provision(product: &DataProduct, state: &State) -> Result<Action, Error> {
    let ctx = &state.ctx;
    let platform = Platform {
        default_replicas: ctx.settings.kafka.default_replicas,
        s3_endpoint: &ctx.settings.s3.endpoint,
        s3_region: &ctx.settings.s3.region,
        s3_path_style: ctx.settings.s3.addressing == Addressing::Path,
        s3_ca_bundle: ctx.s3_ca_bundle.as_deref(),
        kafka_bootstrap_servers: &ctx.settings.kafka.domain_bootstrap_servers,
        kafka_security_protocol: ctx.settings.kafka.domain_security_protocol,
        kafka_sasl_mechanism: ctx.settings.kafka.sasl_mechanism,
        kafka_ca: ctx.domain_kafka_ca.as_deref(),
        spark_driver_cluster_role: &ctx.settings.spark_driver_cluster_role,
    };
    let observation = match observe::observe(product, state, platform.default_replicas).await {
        Ok(observation) => observation,
        Err(error) => return report::unobserved(product, error, ctx).await,
    };
    let plan = plan::plan(product, &observation, &platform);
    let done = apply::apply_plan(product, &plan, ctx).await;
    report::report(product, &plan, done, ctx).await
}

/// The product is being deleted: its access and Spark objects go, and its topics and buckets
/// are kept or deleted by `deletionPolicy`. The same four steps.
async fn release(product: &DataProduct, state: &State) -> Result<Action, Error> {
    let ctx = &state.ctx;
    let observation = match observe::observe_cleanup(product, state).await {
        Ok(observation) => observation,
        Err(error) => return report::unobserved(product, error, ctx).await,
    };
    let cleanup = plan::plan_cleanup(product, &observation);
    let applied = apply::apply_cleanup(product, &cleanup, ctx).await;
    report::report_cleanup(product, &cleanup, applied, ctx).await
}

pub(crate) fn spark_resource(kind: &str) -> ApiResource {
    let plural = if kind == SPARK_APPLICATION {
        "sparkapplications"
    } else {
        "scheduledsparkapplications"
    };
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("sparkoperator.k8s.io", "v1beta2", kind),
        plural,
    )
}

fn spark_api(ctx: &Context, namespace: &str, kind: &str) -> Api<DynamicObject> {
    Api::namespaced_with(ctx.client.clone(), namespace, &spark_resource(kind))
}

#[cfg(test)]
mod tests;
