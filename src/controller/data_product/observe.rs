//! What a DataProduct reconcile reads, all of it before any write: the watch stores (its
//! Domain, the products of the mesh, the producers of its inputs and their AccessPolicies),
//! then, for exactly the names [`plan::scope`] lets it touch, Kafka (its topics and its
//! domain's ACLs), the object store (its buckets' tags, versioning and expiry) and its live
//! Spark objects.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use serde_json::Value;

use super::State;
use super::desired::{self, SCHEDULED_SPARK_APPLICATION, SPARK_APPLICATION};
use super::plan::{self, Scope};
use crate::api::access_policy::AccessPolicy;
use crate::api::data_product::DataProduct;
use crate::api::domain::Domain;
use crate::api::naming::kafka_principal;
use crate::controller::apply::is_not_found;
use crate::controller::tenancy::{Owners, owned_namespace};
use crate::controller::{Context, Error, batch_ok, kube_context};
use crate::provision::kafka::{AclBinding, AclBindingFilter, KafkaAdmin, TopicDescription};
use crate::provision::storage::{BucketTags, ObjectStore, Versioning};

/// Everything a reconcile of one product decides from.
pub struct Observation {
    /// The mesh, as the watch stores hold it.
    pub cluster: Cluster,
    /// What the product may touch.
    pub scope: Scope,
    /// Kafka and the object store, for the names in `scope`.
    pub external: Seen,
    /// The product's live Spark objects, by kind.
    pub spark: SparkSeen,
    /// When this was read (for policy expiry).
    pub now: Timestamp,
}

/// The mesh around a product, from the watch stores.
#[derive(Default)]
pub struct Cluster {
    /// Which domain owns which namespace.
    pub owners: Owners,
    /// The product's Domain.
    pub domain: Option<Arc<Domain>>,
    /// Every product that acts for its domain: only these claim names, count against quotas
    /// and hold access.
    pub acting_products: Vec<Arc<DataProduct>>,
    /// What each input port reads, in the order of `spec.inputPorts`.
    pub inputs: Vec<InputSeen>,
    /// The product's output ports that consumers hold grants on, with those consumers, as the
    /// AccessPolicies' statuses record them: whose contracts a change must not break.
    pub granted_ports: BTreeMap<String, Vec<String>>,
}

impl Cluster {
    /// The acting products, borrowed.
    pub fn acting(&self) -> Vec<&DataProduct> {
        self.acting_products.iter().map(AsRef::as_ref).collect()
    }
}

/// An input port's producer, as the stores hold it.
#[derive(Default)]
pub struct InputSeen {
    /// The producing Domain.
    pub domain: Option<Arc<Domain>>,
    /// The producing DataProduct (in that domain's namespace).
    pub producer: Option<Arc<DataProduct>>,
    /// The AccessPolicies in the producer's namespace (none for the product's own domain,
    /// whose principal needs no grant).
    pub policies: Vec<AccessPolicy>,
}

/// Kafka and the object store, as read.
#[derive(Debug, Default)]
pub struct Seen {
    /// The product's topics that exist.
    pub topics: BTreeMap<String, TopicDescription>,
    /// The ACLs of the domain's principal.
    pub acls: Vec<AclBinding>,
    /// The product's buckets (and those it releases).
    pub buckets: BTreeMap<String, BucketSeen>,
}

/// A bucket, as read.
#[derive(Debug, PartialEq)]
pub enum BucketSeen {
    /// It does not exist.
    Missing,
    /// It exists with these tags; `settings` is read only for a bucket the product provisions
    /// and no other domain's tag claims.
    Present {
        /// Its tags.
        tags: BucketTags,
        /// Its versioning and expiry.
        settings: Option<BucketSettings>,
    },
}

/// What the product declares of a bucket, as the bucket has it.
#[derive(Debug, PartialEq)]
pub struct BucketSettings {
    /// Versioning.
    pub versioning: Versioning,
    /// The expiry of the operator's lifecycle rule.
    pub expiration_days: Option<u32>,
}

/// The product's live Spark objects, by kind (`None`: none, or the kind is not installed).
pub type SparkSeen = BTreeMap<&'static str, Option<Value>>;

/// Read everything a reconcile of `product` decides from.
pub async fn observe(
    product: &DataProduct,
    state: &State,
    default_replicas: i32,
) -> Result<Observation, Error> {
    let cluster = cluster(product, state, true);
    let scope = plan::scope(product, &cluster, default_replicas);
    let (external, spark) = if scope.gate.is_some() {
        // It touches nothing, so nothing outside the stores is read either.
        (Seen::default(), SparkSeen::new())
    } else {
        let ctx = &state.ctx;
        // Before the Kafka snapshot's first fill: every product's topics, so that fill
        // describes them all at once (a no-op afterwards, and for the clients themselves).
        ctx.kafka.prime_topics(&|| every_topic(state));
        let external = external(product, &scope, ctx.kafka.as_ref(), ctx.storage.as_ref()).await?;
        (external, spark(ctx, product).await?)
    };
    Ok(Observation {
        cluster,
        scope,
        external,
        spark,
        now: Timestamp::now(),
    })
}

/// The topics every product in the store names.
fn every_topic(state: &State) -> Vec<String> {
    state
        .products
        .state()
        .iter()
        .flat_map(|p| desired::topic_plans(&p.name_any(), &p.spec))
        .map(|plan| plan.topic)
        .collect()
}

/// Read what deleting `product` decides from: the stores, the tags of the buckets it owns
/// (a bucket another domain's tag claims is left alone) and its live Spark objects.
pub async fn observe_cleanup(product: &DataProduct, state: &State) -> Result<Observation, Error> {
    let cluster = cluster(product, state, false);
    let external = cleanup_external(product, &cluster, state.ctx.storage.as_ref()).await?;
    Ok(Observation {
        cluster,
        scope: Scope::default(),
        external,
        spark: spark(&state.ctx, product).await?,
        now: Timestamp::now(),
    })
}

/// The tags of the buckets a deleted product owns (none when it never acted for its domain).
pub async fn cleanup_external(
    product: &DataProduct,
    cluster: &Cluster,
    storage: &dyn ObjectStore,
) -> Result<Seen, Error> {
    let mut external = Seen::default();
    if cluster.owners.acts_for_its_domain(product) {
        let (_, buckets) = plan::owned_outputs(product, cluster);
        for bucket in buckets {
            let seen = bucket_seen(storage, &bucket, None).await?;
            external.buckets.insert(bucket, seen);
        }
    }
    Ok(external)
}

/// The mesh around `product`, from the stores; with `with_inputs`, its inputs' producers and
/// their policies too.
fn cluster(product: &DataProduct, state: &State, with_inputs: bool) -> Cluster {
    let owners = state.owners();
    let acting_products = state.acting_products(&owners);
    let mut cluster = Cluster {
        domain: state.domain(&product.spec.domain),
        acting_products,
        owners,
        inputs: Vec::new(),
        granted_ports: granted_ports(product, state),
    };
    if with_inputs {
        cluster.inputs = inputs(product, state);
    }
    cluster
}

/// Each input port's producer and the policies that may grant it.
fn inputs(product: &DataProduct, state: &State) -> Vec<InputSeen> {
    let all = state.products.state();
    let mut policies: BTreeMap<String, Vec<AccessPolicy>> = BTreeMap::new();
    let mut seen = Vec::with_capacity(product.spec.input_ports.len());
    for input in &product.spec.input_ports {
        let reference = &input.data_product;
        let domain = state.domain(&reference.domain);
        let namespace = domain
            .as_deref()
            .and_then(owned_namespace)
            .map(str::to_owned);
        let producer = all
            .iter()
            .find(|p| {
                p.namespace() == namespace
                    && p.name_any() == reference.name
                    && p.spec.domain == reference.domain
            })
            .cloned();
        let granting = match &namespace {
            Some(namespace) if reference.domain != product.spec.domain => {
                if !policies.contains_key(namespace) {
                    policies.insert(namespace.clone(), policies_in(state, namespace));
                }
                policies.get(namespace).cloned().unwrap_or_default()
            }
            _ => Vec::new(),
        };
        seen.push(InputSeen {
            domain,
            producer,
            policies: granting,
        });
    }
    seen
}

/// Each output port of `product` that a policy of its namespace grants, with the consumers.
fn granted_ports(product: &DataProduct, state: &State) -> BTreeMap<String, Vec<String>> {
    let name = product.name_any();
    let mut granted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for policy in state.policies.state_filter(|policy| {
        policy.namespace() == product.namespace() && policy.spec.data_product == name
    }) {
        for grant in policy.status.iter().flat_map(|status| &status.grants) {
            granted
                .entry(grant.port.clone())
                .or_default()
                .push(grant.consumer.clone());
        }
    }
    granted
}

/// The AccessPolicies in `namespace`, from the shared cache.
fn policies_in(state: &State, namespace: &str) -> Vec<AccessPolicy> {
    state
        .policies
        .state_filter(|policy| policy.namespace().as_deref() == Some(namespace))
        .iter()
        .map(|policy| AccessPolicy::clone(policy))
        .collect()
}

/// Kafka and the object store, for the names in `scope`: one describe of the topics, one of
/// the domain's ACLs (both answered from the operator's shared Kafka snapshot, see
/// `provision::kafka::SnapshotKafka`), and each bucket's tags (then, for a bucket no other domain's tag claims,
/// its versioning and expiry).
pub async fn external(
    product: &DataProduct,
    scope: &Scope,
    kafka: &dyn KafkaAdmin,
    storage: &dyn ObjectStore,
) -> Result<Seen, Error> {
    let mut seen = Seen::default();
    if !scope.topics.is_empty() {
        let names: Vec<String> = scope.topics.iter().map(|t| t.topic.clone()).collect();
        let described = batch_ok(kafka.describe_topics(&names).await?, |_| false)?;
        seen.topics = names
            .into_iter()
            .zip(described)
            .filter_map(|(name, topic)| Some((name, topic?)))
            .collect();
        seen.acls = kafka
            .describe_acls(&AclBindingFilter::for_principal(kafka_principal(
                &product.spec.domain,
            )))
            .await?;
    }
    for bucket in &scope.buckets {
        let state = bucket_seen(storage, &bucket.bucket, Some(&product.spec.domain)).await?;
        seen.buckets.insert(bucket.bucket.clone(), state);
    }
    for bucket in &scope.removed_buckets {
        let state = bucket_seen(storage, bucket, None).await?;
        seen.buckets.insert(bucket.clone(), state);
    }
    Ok(seen)
}

/// One bucket: whether it exists and its tags; with `settings_for` a domain, also its
/// versioning and expiry, unless its tags say it is another domain's (nothing more of it is
/// read then).
async fn bucket_seen(
    storage: &dyn ObjectStore,
    bucket: &str,
    settings_for: Option<&str>,
) -> Result<BucketSeen, Error> {
    let Some(tags) = storage.get_tags_if_exists(bucket).await? else {
        return Ok(BucketSeen::Missing);
    };
    let ours = settings_for
        .is_some_and(|domain| desired::tagged_for_another_domain(&tags, domain).is_none());
    let settings = if ours {
        Some(BucketSettings {
            versioning: storage.get_versioning(bucket).await?,
            expiration_days: storage.get_expiration_days(bucket).await?,
        })
    } else {
        None
    };
    Ok(BucketSeen::Present { tags, settings })
}

/// The product's live Spark objects. A kind that is not installed has none (and a product
/// that has a transformation then says `SparkOperatorMissing` when it is applied).
async fn spark(ctx: &Context, product: &DataProduct) -> Result<SparkSeen, Error> {
    let name = product.name_any();
    let namespace = product.namespace().unwrap_or_default();
    let mut seen = SparkSeen::new();
    for kind in [SPARK_APPLICATION, SCHEDULED_SPARK_APPLICATION] {
        let live = match super::spark_api(ctx, &namespace, kind).get_opt(&name).await {
            Ok(live) => live,
            // The kind is not installed (the API server has no such path): nothing to see,
            // and a product without a transformation must not fail on it.
            Err(error) if is_not_found(&error) => None,
            Err(error) => {
                return Err(kube_context(format!("reading {kind} {namespace}/{name}"))(
                    error,
                ));
            }
        };
        let live = live
            .as_ref()
            .map(serde_json::to_value)
            .transpose()
            .ok()
            .flatten();
        seen.insert(kind, live);
    }
    Ok(seen)
}
