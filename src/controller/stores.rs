//! The operator's watches: ONE per kind, shared by every controller that needs the kind.
//!
//! [`Watches::new`] makes a [`SharedWatch`] for each of the three CRDs and for each kind of
//! child any controller triggers on; each controller then subscribes to what it needs (its
//! own kind, the kinds it depends on, its children), and [`Watches::run`] drives them all.
//! Every reconcile reads the same three caches, through one [`Stores`] with one readiness gate.
//! Before this, each controller watched for itself: 21 watches, nine of them on the CRDs (a
//! DataProduct was decoded and cached four times), now 12.
//!
//! - The CRDs are watched with [`readable::watch`]: an object that does not decode is left
//!   out, and reported on the object once (by this one watch, so by no controller twice).
//! - Children are watched by their `managed-by` label ([`managed_children`], the one selector
//!   every controller uses), so the operator never caches every RoleBinding or Secret in the
//!   cluster, and as metadata only: triggers need names, labels and owners, and a cached
//!   Secret would hold its data in the operator's memory for nothing.
//! - Every cached object is trimmed first ([`trim_for_cache`]): its `managedFields` and kubectl's
//!   `last-applied-configuration` (a second copy of the whole object, which Argo CD's and
//!   `kubectl apply`'s objects all carry) are never read, and were most of a cached product.
//! - The spark-operator kinds may be missing (their CRDs not installed): their watches then
//!   fail and retry with backoff on their own, blocking no other watch and no readiness (the
//!   gate waits for the three CRD caches only); the product reports SparkOperatorMissing.

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::{self, BoxFuture};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ResourceQuota, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::DynamicObject;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use super::apply::managed_children;
use super::data_product::desired::{SCHEDULED_SPARK_APPLICATION, SPARK_APPLICATION};
use super::data_product::spark_resource;
use super::readable;
use super::shared_watch::SharedWatch;
use super::stores_ready::StoresReady;
use super::{Context, Error};
use crate::api::access_policy::AccessPolicy;
use crate::api::data_product::DataProduct;
use crate::api::domain::Domain;
use crate::controller::tenancy::Owners;

/// A child, as its watch keeps it: metadata only.
pub type Meta<K> = PartialObjectMeta<K>;

/// Every watch the controllers share, before they run: subscribe, then [`Watches::run`].
pub struct Watches {
    pub domains: SharedWatch<Domain>,
    pub products: SharedWatch<DataProduct>,
    pub policies: SharedWatch<AccessPolicy>,
    pub namespaces: SharedWatch<Meta<Namespace>>,
    pub service_accounts: SharedWatch<Meta<ServiceAccount>>,
    pub role_bindings: SharedWatch<Meta<RoleBinding>>,
    pub roles: SharedWatch<Meta<Role>>,
    pub resource_quotas: SharedWatch<Meta<ResourceQuota>>,
    pub secrets: SharedWatch<Meta<Secret>>,
    pub config_maps: SharedWatch<Meta<ConfigMap>>,
    pub spark_applications: SharedWatch<Meta<DynamicObject>>,
    pub scheduled_spark_applications: SharedWatch<Meta<DynamicObject>>,
}

impl Watches {
    /// One watch per kind (none runs until [`Watches::run`]).
    pub fn new(client: &Client) -> Self {
        Self {
            domains: crd::<Domain>(client, "Domain"),
            products: crd::<DataProduct>(client, "DataProduct"),
            policies: crd::<AccessPolicy>(client, "AccessPolicy"),
            namespaces: children(client, "Namespace"),
            service_accounts: children(client, "ServiceAccount"),
            role_bindings: children(client, "RoleBinding"),
            roles: children(client, "Role"),
            resource_quotas: children(client, "ResourceQuota"),
            secrets: children(client, "Secret"),
            config_maps: children(client, "ConfigMap"),
            spark_applications: spark(client, SPARK_APPLICATION),
            scheduled_spark_applications: spark(client, SCHEDULED_SPARK_APPLICATION),
        }
    }

    /// The three CRD caches and their readiness gate, for every reconcile.
    pub fn stores(&self) -> Stores {
        let (domains, products, policies) = (
            self.domains.store(),
            self.products.store(),
            self.policies.store(),
        );
        Stores {
            ready: StoresReady::spawn(vec![
                StoresReady::of("Domain", &domains),
                StoresReady::of("DataProduct", &products),
                StoresReady::of("AccessPolicy", &policies),
            ]),
            domains,
            products,
            policies,
        }
    }

    /// Drive every watch, for good (each retries on its own; one failing stops no other).
    pub fn run(self) -> impl Future<Output = ()> {
        let watches: Vec<BoxFuture<'static, ()>> = vec![
            self.domains.run().boxed(),
            self.products.run().boxed(),
            self.policies.run().boxed(),
            self.namespaces.run().boxed(),
            self.service_accounts.run().boxed(),
            self.role_bindings.run().boxed(),
            self.roles.run().boxed(),
            self.resource_quotas.run().boxed(),
            self.secrets.run().boxed(),
            self.config_maps.run().boxed(),
            self.spark_applications.run().boxed(),
            self.scheduled_spark_applications.run().boxed(),
        ];
        future::join_all(watches).map(|_| ())
    }
}

/// The watch of a CRD: every object, decoded one by one, the unreadable reported once.
fn crd<K>(client: &Client, kind: &'static str) -> SharedWatch<K>
where
    K: Resource<DynamicType = ()>
        + DeserializeOwned
        + Clone
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let config = watcher::Config::default().any_semantic();
    SharedWatch::new(
        kind,
        (),
        readable::watch::<K>(client.clone(), config)
            .modify(trim_for_cache)
            .default_backoff(),
    )
}

/// The watch of the operator's children of one kind: labelled ones only, metadata only.
fn children<K>(client: &Client, kind: &'static str) -> SharedWatch<Meta<K>>
where
    K: Resource<DynamicType = ()>
        + DeserializeOwned
        + Clone
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    SharedWatch::new(
        kind,
        (),
        watcher::watcher(Api::<Meta<K>>::all(client.clone()), managed_children())
            .modify(trim_for_cache)
            .default_backoff(),
    )
}

fn spark(client: &Client, kind: &'static str) -> SharedWatch<Meta<DynamicObject>> {
    let resource = spark_resource(kind);
    SharedWatch::new(
        kind,
        resource.clone(),
        watcher::watcher(
            Api::<Meta<DynamicObject>>::all_with(client.clone(), &resource),
            managed_children(),
        )
        .modify(trim_for_cache)
        .default_backoff(),
    )
}

/// kubectl's copy of the object it last applied, which client-side apply (and Argo CD) write.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drop what no controller reads before an object is cached: its field managers and kubectl's
/// last-applied copy. Both grow with the object (together often larger than it), and the
/// operator never reads either: it applies server-side as its own field manager.
pub fn trim_for_cache<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// What every reconcile reads instead of listing: the caches of the three CRDs, filled by the
/// very watches that trigger the reconciles (so each holds the event that caused a reconcile,
/// see [`super::shared_watch`]), and one readiness gate over them.
pub struct Stores {
    /// Every Domain.
    pub domains: Store<Domain>,
    /// Every DataProduct.
    pub products: Store<DataProduct>,
    /// Every AccessPolicy.
    pub policies: Store<AccessPolicy>,
    ready: StoresReady,
}

impl Stores {
    /// Wait until every cache has listed its kind once: before that, an object missing from a
    /// cache may only be not listed yet (a quota undercounted, a grant wrongly revoked, a
    /// domain deleted under its products).
    pub async fn ready(&self) -> Result<(), Error> {
        self.ready.wait().await
    }

    /// The Domain called `name`, as the watch last saw it.
    pub fn domain(&self, name: &str) -> Option<Arc<Domain>> {
        self.domains.get(&ObjectRef::new(name))
    }

    /// Which domain owns which namespace, as the Domains' statuses record it.
    pub fn owners(&self) -> Owners {
        Owners::of(self.domains.state().iter().map(AsRef::as_ref))
    }

    /// Every product that acts for its domain (it lives in that domain's namespace). Only these
    /// claim names, count against quotas and hold access: a copy elsewhere takes part in nothing.
    pub fn acting_products(&self, owners: &Owners) -> Vec<Arc<DataProduct>> {
        self.products
            .state_filter(|product| owners.acts_for_its_domain(product))
    }
}

/// What a controller's reconciles are handed when it needs nothing of its own beyond the
/// context and the stores; a controller with more (locks) has its own `State`, built the same
/// way. Derefs to [`Stores`], so a reconcile reads `state.products`, `state.domain(..)`.
pub struct Shared {
    /// Clients, settings, events and metrics.
    pub ctx: Arc<Context>,
    /// The shared caches.
    pub stores: Arc<Stores>,
}

impl Deref for Shared {
    type Target = Stores;

    fn deref(&self) -> &Stores {
        &self.stores
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
    use std::collections::BTreeMap;

    #[test]
    fn a_cached_object_keeps_its_own_annotations_but_no_field_managers_or_kubectl_copy() {
        let mut namespace = Namespace::default();
        namespace.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some("kubectl".into()),
            ..ManagedFieldsEntry::default()
        }]);
        namespace.metadata.annotations = Some(BTreeMap::from([
            (
                LAST_APPLIED.to_owned(),
                "{\"kind\":\"Namespace\"}".to_owned(),
            ),
            ("datamesh.dev/created-for".to_owned(), "payments".to_owned()),
        ]));
        trim_for_cache(&mut namespace);
        assert_eq!(namespace.metadata.managed_fields, None);
        assert_eq!(
            namespace.metadata.annotations,
            Some(BTreeMap::from([(
                "datamesh.dev/created-for".to_owned(),
                "payments".to_owned()
            )]))
        );

        let mut only_kubectl = Namespace::default();
        only_kubectl.metadata.annotations =
            Some(BTreeMap::from([(LAST_APPLIED.to_owned(), "{}".to_owned())]));
        trim_for_cache(&mut only_kubectl);
        assert_eq!(only_kubectl.metadata.annotations, None);
    }
}
