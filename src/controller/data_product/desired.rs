//! What a DataProduct should have, and what to do about what it has: topics, ACLs, buckets,
//! Spark objects, claims, quotas and input grants, computed from specs and observations
//! alone. Pure: the reconciler in [`super`] reads the world, asks these functions, and writes.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::jiff::Timestamp;
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use crate::api::access_policy::AccessPolicy;
use crate::api::data_product::{
    DataProduct, DataProductSpec, InputAccess, InputPort, InputPortStatus, Lifecycle, OutputPort,
};
use crate::api::domain::Domain;
use crate::api::naming::kafka_principal;
use crate::controller::apply::DOMAIN_LABEL;
use crate::controller::domain::desired::credentials_secret_name;
use crate::provision::kafka::{
    AclBinding, AclOperation, AclPatternType, AclResourceType, CLUSTER_RESOURCE_NAME,
    KafkaSecurityProtocol, NewTopic, PartitionIncrease, ScramMechanism, TopicConfigAlteration,
    TopicDescription, config_drift,
};
use crate::provision::storage::{BucketTags, Versioning};

/// Bucket tag naming the port a bucket serves.
pub const PORT_TAG: &str = "datamesh.dev/port";
/// Bucket tag naming the namespace of the product that made or last adopted the bucket.
pub const NAMESPACE_TAG: &str = "datamesh.dev/namespace";
/// Bucket tag carrying the UID of the product that made or last adopted the bucket.
pub const PRODUCT_UID_TAG: &str = "datamesh.dev/data-product-uid";
/// Bucket tag carrying the product's classification (the same key as the label).
pub const CLASSIFICATION_TAG: &str = crate::controller::apply::CLASSIFICATION_LABEL;
/// Bucket tag set to `true` on a bucket kept (`deletionPolicy: Retain`) after its
/// DataProduct was deleted, so that orphans can be found and attributed.
pub const ORPHANED_TAG: &str = "datamesh.dev/orphaned";
/// Group and version of the kubeflow spark-operator's kinds.
pub const SPARK_API_VERSION: &str = "sparkoperator.k8s.io/v1beta2";
/// The spark-operator kind for a job run once.
pub const SPARK_APPLICATION: &str = "SparkApplication";
/// The spark-operator kind for a job run on a schedule.
pub const SCHEDULED_SPARK_APPLICATION: &str = "ScheduledSparkApplication";

/// The ServiceAccount (and RoleBinding) a product's Spark driver runs as: `<product>-spark`.
pub fn spark_service_account_name(product: &str) -> String {
    format!("{product}-spark")
}

/// Labels of every Kubernetes object made for a product: manager, domain, product and
/// classification.
pub fn product_labels(product: &DataProduct) -> BTreeMap<String, String> {
    crate::controller::apply::product_labels(
        &product.spec.domain,
        &product.name_any(),
        product.spec.classification,
    )
}

// ------------------------------------------------------------------------ Kafka

/// A Kafka output port's topic as the spec declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicPlan {
    /// The output port's name.
    pub port: String,
    /// The topic's name.
    pub topic: String,
    /// The declared partition count.
    pub partitions: i32,
    /// The declared replica count; `None` takes the operator's default at creation and is
    /// never compared afterwards (a changed default must not stall existing products).
    pub replicas: Option<i32>,
    /// The topic configs the spec names (`retention` as `retention.ms`, plus `config`).
    pub configs: BTreeMap<String, String>,
}

/// The topics of a product's Kafka output ports.
pub fn topic_plans(product: &str, spec: &DataProductSpec) -> Vec<TopicPlan> {
    spec.output_ports
        .iter()
        .filter_map(|port| {
            let kafka = port.kafka.as_ref()?;
            let topic = spec.topic_name(product, port)?;
            let mut configs = kafka.config.clone().unwrap_or_default();
            if let Some(ms) = kafka.retention_ms() {
                configs.insert("retention.ms".to_owned(), ms.to_string());
            }
            Some(TopicPlan {
                port: port.name.clone(),
                topic,
                partitions: kafka.partitions,
                replicas: kafka.replicas,
                configs,
            })
        })
        .collect()
}

/// What to do with one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicStep {
    /// It does not exist: create it.
    Create(NewTopic),
    /// It exists (made by us, or adopted): grow it and set back drifted configs; both
    /// `None` means it is as declared and nothing is written.
    Update {
        /// More partitions, when the spec grew.
        increase: Option<PartitionIncrease>,
        /// Configs the spec names whose value on the topic differs.
        alter: Option<TopicConfigAlteration>,
    },
    /// The spec asks for what Kafka cannot do without losing data; the topic is left as it is.
    Refuse {
        /// A CamelCase reason for the Stalled condition.
        reason: &'static str,
        /// What happened and what to do, for a person.
        message: String,
    },
}

/// The topic config keys the operator set on `topic` for the product, as its status records
/// them: those the spec no longer names are removed from the topic.
pub fn previously_set_configs(product: &DataProduct, topic: &str) -> BTreeSet<String> {
    product
        .status
        .iter()
        .flat_map(|status| &status.output_ports)
        .filter(|port| port.topic.as_deref() == Some(topic))
        .flat_map(|port| port.config_keys.iter().cloned())
        .collect()
}

/// Decide what to do with a planned topic, given how Kafka has it (`None`: missing).
pub fn decide_topic(
    plan: &TopicPlan,
    current: Option<&TopicDescription>,
    default_replicas: i32,
    previously: &BTreeSet<String>,
) -> TopicStep {
    let Some(current) = current else {
        let replicas = plan.replicas.unwrap_or(default_replicas);
        return TopicStep::Create(NewTopic {
            name: plan.topic.clone(),
            partitions: plan.partitions,
            replication_factor: i16::try_from(replicas).unwrap_or(i16::MAX),
            configs: plan.configs.clone(),
        });
    };
    if current.partitions > plan.partitions {
        return TopicStep::Refuse {
            reason: "PartitionDecrease",
            message: format!(
                "Topic {} has {} partitions and the spec asks for {}: Kafka cannot remove partitions, so the topic is left as it is. Set partitions back to at least {}.",
                plan.topic, current.partitions, plan.partitions, current.partitions
            ),
        };
    }
    if let Some(replicas) = plan.replicas
        && i32::from(current.replication_factor) != replicas
    {
        return TopicStep::Refuse {
            reason: "ReplicasChanged",
            message: format!(
                "Topic {} has {} replicas and the spec asks for {replicas}: the operator does not reassign replicas, so the topic is left as it is. Set replicas back to {} (or remove it).",
                plan.topic, current.replication_factor, current.replication_factor
            ),
        };
    }
    let increase = (plan.partitions > current.partitions).then(|| PartitionIncrease {
        topic: plan.topic.clone(),
        total_partitions: plan.partitions,
    });
    let drift = config_drift(&plan.configs, previously, current);
    TopicStep::Update {
        increase,
        alter: (!drift.is_empty()).then_some(drift),
    }
}

/// The ACLs the owning domain's principal needs on a product's topics:
/// - each topic (literal): `Write` and `Describe` to produce, `Read` to read its own data back;
/// - transactional ids prefixed `<domain>.<product>.`: `Write` and `Describe`, for
///   transactional (exactly-once) producers;
/// - consumer groups prefixed `<domain>.<product>.`: `Read`, for the owner's own consumers;
/// - the cluster: `IdempotentWrite`. Kafka has no `IdempotentWrite` on topics; since Kafka 3.0
///   `Write` on a topic implies it, and the cluster binding keeps older clients working. It is
///   shared by the domain's products, so deleting one product leaves it (the Domain removes it).
pub fn owner_acls(domain: &str, product: &str, topics: &[String]) -> Vec<AclBinding> {
    let principal = kafka_principal(domain);
    let prefix = format!("{domain}.{product}.");
    let mut acls: Vec<AclBinding> = topics
        .iter()
        .flat_map(|topic| {
            AclBinding::allow_each(
                AclResourceType::Topic,
                AclPatternType::Literal,
                topic,
                &principal,
                &[
                    AclOperation::Write,
                    AclOperation::Describe,
                    AclOperation::Read,
                ],
            )
        })
        .collect();
    if !topics.is_empty() {
        acls.extend(AclBinding::allow_each(
            AclResourceType::TransactionalId,
            AclPatternType::Prefixed,
            &prefix,
            &principal,
            &[AclOperation::Write, AclOperation::Describe],
        ));
        acls.push(AclBinding::allow(
            AclResourceType::Group,
            AclPatternType::Prefixed,
            &prefix,
            &principal,
            AclOperation::Read,
        ));
        acls.push(shared_idempotent_write_acl(domain));
    }
    acls
}

/// The cluster-wide `IdempotentWrite` binding every producing domain shares (see [`owner_acls`]).
pub fn shared_idempotent_write_acl(domain: &str) -> AclBinding {
    AclBinding::allow(
        AclResourceType::Cluster,
        AclPatternType::Literal,
        CLUSTER_RESOURCE_NAME,
        kafka_principal(domain),
        AclOperation::IdempotentWrite,
    )
}

// ------------------------------------------------------------------------ buckets

/// A bucket output port's bucket as the spec declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketPlan {
    /// The output port's name.
    pub port: String,
    /// The bucket's name.
    pub bucket: String,
    /// Whether every version of an object is kept.
    pub versioning: bool,
    /// Days after which objects expire; `None` keeps them.
    pub expire_after_days: Option<u32>,
    /// The bucket's tags, exactly.
    pub tags: BucketTags,
}

/// The buckets of a product's bucket output ports.
pub fn bucket_plans(product: &DataProduct) -> Vec<BucketPlan> {
    let name = product.name_any();
    let spec = &product.spec;
    spec.output_ports
        .iter()
        .filter_map(|port| {
            let bucket_port = port.bucket.as_ref()?;
            Some(BucketPlan {
                port: port.name.clone(),
                bucket: spec.bucket_name(&name, port)?,
                versioning: bucket_port.versioning,
                expire_after_days: bucket_port
                    .expire_after_days
                    .and_then(|days| u32::try_from(days).ok()),
                tags: bucket_tags(product, port),
            })
        })
        .collect()
}

/// The tags of a port's bucket: domain, namespace, product (name and UID), port,
/// classification and manager. The domain tag is the bucket's owner record: no product of
/// another domain adopts, grants or deletes a bucket that carries it.
pub fn bucket_tags(product: &DataProduct, port: &OutputPort) -> BucketTags {
    let mut tags = product_labels(product);
    tags.insert(PORT_TAG.to_owned(), port.name.clone());
    if let Some(namespace) = product.namespace() {
        tags.insert(NAMESPACE_TAG.to_owned(), namespace);
    }
    if let Some(uid) = &product.metadata.uid {
        tags.insert(PRODUCT_UID_TAG.to_owned(), uid.clone());
    }
    tags
}

/// The tags a bucket should carry: what it has (tags others set stay, so adopting a bucket
/// does not erase them) with the product's own tags set, and no longer the orphaned mark.
pub fn merged_tags(live: &BucketTags, ours: &BucketTags) -> BucketTags {
    let mut merged = live.clone();
    merged.remove(ORPHANED_TAG);
    merged.extend(ours.iter().map(|(k, v)| (k.clone(), v.clone())));
    merged
}

/// The other domain a bucket's tags say it belongs to, if they name one other than `domain`.
pub fn tagged_for_another_domain<'a>(tags: &'a BucketTags, domain: &str) -> Option<&'a str> {
    tags.get(DOMAIN_LABEL)
        .map(String::as_str)
        .filter(|owner| *owner != domain)
}

/// Whether `topic` is in `domain`'s part of Kafka: every topic of a domain starts with
/// `<domain>.`, and domain names have no dots, so no two domains share a topic name. That
/// prefix is a topic's owner record (Kafka topics carry no free-form metadata).
pub fn topic_in_domain(topic: &str, domain: &str) -> bool {
    topic
        .strip_prefix(domain)
        .is_some_and(|rest| rest.starts_with('.') && rest.len() > 1)
}

/// The versioning call to make, if any: `Some(true)` enables, `Some(false)` suspends. A bucket
/// that never had versioning and should not have it is left alone (S3 cannot turn it off).
pub fn versioning_change(desired: bool, current: Versioning) -> Option<bool> {
    match (desired, current) {
        (true, Versioning::Enabled) | (false, Versioning::Suspended | Versioning::Unversioned) => {
            None
        }
        (true, _) => Some(true),
        (false, Versioning::Enabled) => Some(false),
    }
}

// ------------------------------------------------------------------------ claims and quotas

/// Orders products by age: the older first (creation time, then namespace and name, so ties
/// have one answer everywhere).
pub fn by_age(a: &DataProduct, b: &DataProduct) -> Ordering {
    let created = |p: &DataProduct| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    created(a)
        .cmp(&created(b))
        .then_with(|| a.namespace().cmp(&b.namespace()))
        .then_with(|| a.name_any().cmp(&b.name_any()))
}

fn same_object(a: &DataProduct, b: &DataProduct) -> bool {
    match (&a.metadata.uid, &b.metadata.uid) {
        (Some(x), Some(y)) => x == y,
        _ => a.namespace() == b.namespace() && a.name_any() == b.name_any(),
    }
}

/// The topics and buckets a product claims.
pub fn claimed_names(product: &DataProduct) -> BTreeSet<String> {
    let name = product.name_any();
    topic_plans(&name, &product.spec)
        .into_iter()
        .map(|plan| plan.topic)
        .chain(bucket_plans(product).into_iter().map(|plan| plan.bucket))
        .collect()
}

/// Whether `product` declares the topic or bucket `resource`: `claimed_names(product)` holds it.
/// Every reconcile asks this of every product, so the default names are compared piece by piece
/// instead of being built.
fn claims(product: &DataProduct, resource: &str) -> bool {
    let name = product.metadata.name.as_deref().unwrap_or_default();
    let spec = &product.spec;
    spec.output_ports.iter().any(|port| {
        let topic = port.kafka.as_ref().is_some_and(|kafka| match &kafka.topic {
            Some(explicit) => explicit == resource,
            None => is_joined(resource, [&spec.domain, name, &port.name], '.'),
        });
        let bucket =
            port.bucket.is_some() && is_joined(resource, [&spec.domain, name, &port.name], '-');
        topic || bucket
    })
}

/// The topics and buckets the product's status lists as its own that its spec no longer
/// declares (a port removed, or renamed): they are released by `deletionPolicy`, like a
/// deleted product's. Only names of the product's domain count, and none that another product
/// in `all` now declares (that one takes it over).
pub fn removed_outputs(product: &DataProduct, all: &[&DataProduct]) -> (Vec<String>, Vec<String>) {
    let Some(status) = &product.status else {
        return (vec![], vec![]);
    };
    let declared = claimed_names(product);
    let domain = &product.spec.domain;
    let free = |name: &String| {
        !declared.contains(name)
            && !all
                .iter()
                .any(|other| !same_object(other, product) && claims(other, name))
    };
    let topics = status
        .output_ports
        .iter()
        .filter_map(|port| port.topic.clone())
        .filter(|topic| topic_in_domain(topic, domain))
        .filter(free)
        .collect();
    let buckets = status
        .output_ports
        .iter()
        .filter_map(|port| port.bucket.clone())
        .filter(|bucket| bucket.starts_with(&format!("{domain}-")))
        .filter(free)
        .collect();
    (topics, buckets)
}

/// Whether `text` is the three `parts` joined by `separator`.
fn is_joined(text: &str, parts: [&str; 3], separator: char) -> bool {
    let [first, second, third] = parts;
    text.strip_prefix(first)
        .and_then(|rest| rest.strip_prefix(separator))
        .and_then(|rest| rest.strip_prefix(second))
        .and_then(|rest| rest.strip_prefix(separator))
        .is_some_and(|rest| rest == third)
}

/// Whether a product's status already lists `resource` as one of its output ports' topic or
/// bucket: it holds it now.
fn holds(product: &DataProduct, resource: &str) -> bool {
    product.status.as_ref().is_some_and(|status| {
        status.output_ports.iter().any(|port| {
            port.topic.as_deref() == Some(resource) || port.bucket.as_deref() == Some(resource)
        })
    })
}

/// Which of two products claiming `resource` keeps it: the one that already holds it (its
/// status lists it), else the older one. Creation times have one-second resolution, so two
/// products made in the same second would otherwise be ordered by name alone.
fn precedence(a: &DataProduct, b: &DataProduct, resource: &str) -> Ordering {
    holds(b, resource)
        .cmp(&holds(a, resource))
        .then_with(|| by_age(a, b))
}

/// The product (as `<namespace>/<name>`) that keeps the topic or bucket `resource` instead of
/// `me`, if any: the one holding it, else the older one. `me` must not touch it.
pub fn older_claimant(me: &DataProduct, all: &[&DataProduct], resource: &str) -> Option<String> {
    all.iter()
        .filter(|other| !same_object(me, other))
        .filter(|other| claims(other, resource))
        .filter(|other| precedence(other, me, resource) == Ordering::Less)
        .min_by(|a, b| precedence(a, b, resource))
        .map(|other| {
            format!(
                "{}/{}",
                other.namespace().unwrap_or_default(),
                other.name_any()
            )
        })
}

/// Why the domain's quotas stop this product, if they do. Products count in order of age:
/// the `n`-th oldest product is over `maxDataProducts` when `n` exceeds it, and over
/// `maxPartitions` when it and the older products together declare more partitions.
/// So an older product is never stalled by a younger one.
pub fn quota_violation(
    me: &DataProduct,
    domain: &Domain,
    siblings: &[&DataProduct],
) -> Option<String> {
    let quotas = domain.spec.quotas.as_ref()?;
    let mut ordered: Vec<&DataProduct> = siblings
        .iter()
        .copied()
        .filter(|p| p.spec.domain == me.spec.domain && !same_object(p, me))
        .filter(|p| by_age(p, me) == Ordering::Less)
        .collect();
    ordered.sort_by(|a, b| by_age(a, b));
    let domain_name = domain.name_any();
    if let Some(max) = quotas.max_data_products {
        let position = ordered.len() + 1;
        if i64::try_from(position).unwrap_or(i64::MAX) > i64::from(max) {
            return Some(format!(
                "Domain {domain_name} allows {max} data product(s) (spec.quotas.maxDataProducts); this is product number {position}. Raise the quota or delete a product."
            ));
        }
    }
    if let Some(max) = quotas.max_partitions {
        let older: i64 = ordered.iter().map(|p| declared_partitions(p)).sum();
        let mine = declared_partitions(me);
        if older + mine > i64::from(max) {
            return Some(format!(
                "Domain {domain_name} allows {max} Kafka partitions (spec.quotas.maxPartitions); older products use {older} and this one declares {mine}. Raise the quota or use fewer partitions."
            ));
        }
    }
    None
}

/// How many partitions a product's Kafka ports declare.
pub fn declared_partitions(product: &DataProduct) -> i64 {
    product
        .spec
        .output_ports
        .iter()
        .filter_map(|p| p.kafka.as_ref())
        .map(|k| i64::from(k.partitions))
        .sum()
}

// ------------------------------------------------------------------------ input ports

/// What an input port may read: the producing domain, product and the policies in the
/// producer's namespace, as read by the reconciler (`None`: not found).
pub struct InputObservation<'a> {
    /// The producing Domain.
    pub domain: Option<&'a Domain>,
    /// The producing DataProduct.
    pub product: Option<&'a DataProduct>,
    /// The AccessPolicies in the producer's namespace.
    pub policies: &'a [AccessPolicy],
}

/// Whether an input port of a product of `consumer_domain` is granted. A port of the
/// consumer's own domain needs no grant (its principal owns it); any other needs a Ready,
/// unexpired AccessPolicy of the producer that names the product, covers the port and lists
/// the consumer's domain.
pub fn resolve_input(
    input: &InputPort,
    consumer_domain: &str,
    seen: &InputObservation<'_>,
    now: Timestamp,
) -> InputPortStatus {
    let reference = &input.data_product;
    let status = |access, message: String| InputPortStatus {
        name: input.name.clone(),
        access,
        message: Some(message),
    };
    let what = format!(
        "port {} of data product {}/{}",
        reference.port, reference.domain, reference.name
    );
    if seen.domain.is_none() {
        return status(
            InputAccess::NotFound,
            format!("Domain {} does not exist.", reference.domain),
        );
    }
    let Some(producer) = seen
        .product
        .filter(|p| p.spec.domain == reference.domain && !is_deleting(p))
    else {
        return status(
            InputAccess::NotFound,
            format!(
                "Domain {} has no data product {}.",
                reference.domain, reference.name
            ),
        );
    };
    if !producer
        .spec
        .output_ports
        .iter()
        .any(|p| p.name == reference.port)
    {
        return status(
            InputAccess::NotFound,
            format!(
                "Data product {}/{} has no output port {}.",
                reference.domain, reference.name, reference.port
            ),
        );
    }
    if producer.spec.status == Lifecycle::Retired {
        return status(
            InputAccess::Denied,
            format!("The {what} is retired and no longer served."),
        );
    }
    if reference.domain == consumer_domain {
        return status(
            InputAccess::Granted,
            format!("The {what} belongs to the same domain."),
        );
    }
    let consumer_key = format!("domain:{consumer_domain}");
    let granting = seen.policies.iter().find(|policy| {
        policy.spec.data_product == reference.name
            && policy.spec.covers_port(&reference.port)
            && policy
                .spec
                .consumers
                .iter()
                .any(|c| c.domain.as_deref() == Some(consumer_domain))
            && policy.spec.expires_at.as_ref().is_none_or(|at| at.0 > now)
            && !is_deleting_policy(policy)
            // What the AccessPolicy reconciler reports it made, not whether the policy is Ready:
            // a policy of a deprecated product is Stalled for new consumers yet keeps serving
            // the grants it already gave.
            && policy.status.as_ref().is_some_and(|s| {
                s.grants.iter().any(|grant| {
                    grant.consumer == consumer_key && grant.port == reference.port
                })
            })
    });
    match granting {
        Some(policy) => status(
            InputAccess::Granted,
            format!(
                "Granted by AccessPolicy {}/{}.",
                policy.namespace().unwrap_or_default(),
                policy.name_any()
            ),
        ),
        None if producer.spec.status == Lifecycle::Deprecated => status(
            InputAccess::Denied,
            format!("The {what} is deprecated: no new access is granted."),
        ),
        None => status(
            InputAccess::Pending,
            format!(
                "Waiting for an AccessPolicy in domain {} that grants domain {consumer_domain} the {what}.",
                reference.domain
            ),
        ),
    }
}

fn is_deleting(product: &DataProduct) -> bool {
    product.metadata.deletion_timestamp.is_some()
}

fn is_deleting_policy(policy: &AccessPolicy) -> bool {
    policy.metadata.deletion_timestamp.is_some()
}

// ------------------------------------------------------------------------ Spark

/// Where a Spark job finds the platform and how it connects, for its configuration.
pub struct SparkPlatform<'a> {
    /// The S3 endpoint (`fs.s3a.endpoint`).
    pub s3_endpoint: &'a str,
    /// The region S3 requests are signed for (`fs.s3a.endpoint.region`).
    pub s3_region: &'a str,
    /// Path-style addressing (`fs.s3a.path.style.access`).
    pub s3_path_style: bool,
    /// The listener the domains' clients use.
    pub kafka_bootstrap_servers: &'a str,
    /// The domains' protocol: `SASL_SSL` or `SASL_PLAINTEXT`.
    pub kafka_security_protocol: KafkaSecurityProtocol,
    /// The domains' SCRAM mechanism.
    pub kafka_sasl_mechanism: ScramMechanism,
    /// Whether the job gets the trust store ConfigMap (an S3 or Kafka CA is configured).
    pub truststore: bool,
}

/// The prefix of the Spark properties that hold a job's Kafka client options: a job passes
/// each `spark.datamesh.kafka.<option>` as the Kafka source's or sink's `kafka.<option>`.
pub const SPARK_KAFKA_PREFIX: &str = "spark.datamesh.kafka.";
/// Where the trust store ConfigMap is mounted in the driver and executor pods.
pub const TRUSTSTORE_MOUNT_PATH: &str = "/etc/datamesh/truststore";
/// The trust store's key in its ConfigMap (and so its file name under the mount path).
pub const TRUSTSTORE_KEY: &str = "truststore.jks";
/// The AWS SDK (v2) credentials provider that reads `AWS_ACCESS_KEY_ID` and
/// `AWS_SECRET_ACCESS_KEY` from the environment, which the domain's Secret fills.
pub const S3A_ENV_CREDENTIALS: &str =
    "software.amazon.awssdk.auth.credentials.EnvironmentVariableCredentialsProvider";
/// Kafka's config provider that resolves `${env:NAME}` in client options.
pub const KAFKA_ENV_CONFIG_PROVIDER: &str =
    "org.apache.kafka.common.config.provider.EnvVarConfigProvider";

/// The ConfigMap holding a product's Spark trust store: `<product>-spark-truststore`.
pub fn spark_truststore_name(product: &str) -> String {
    format!("{product}-spark-truststore")
}

/// The ConfigMap with the JKS trust store (the platform's S3 and Kafka CAs, see
/// [`crate::truststore`]) that the job's JVMs use as `javax.net.ssl.trustStore`. Owned by the
/// product, so it goes with it. Certificates are public: a ConfigMap, not a Secret.
pub fn spark_truststore(product: &DataProduct, jks: Vec<u8>) -> ConfigMap {
    let name = product.name_any();
    ConfigMap {
        metadata: child_meta(product, &spark_truststore_name(&name)),
        binary_data: Some(BTreeMap::from([(
            TRUSTSTORE_KEY.to_owned(),
            ByteString(jks),
        )])),
        ..ConfigMap::default()
    }
}

/// The Kafka client options of a job, as Spark properties under [`SPARK_KAFKA_PREFIX`]: the
/// bootstrap servers, protocol and mechanism, and a JAAS config whose user and password Kafka's
/// `EnvVarConfigProvider` reads from `KAFKA_USERNAME` and `KAFKA_PASSWORD` (the domain's
/// Secret), so the object holds no secret. With TLS the JVM's trust store applies.
fn spark_kafka_options(platform: &SparkPlatform<'_>) -> BTreeMap<String, String> {
    let mut options = BTreeMap::from([
        ("bootstrap.servers", platform.kafka_bootstrap_servers.to_owned()),
        ("security.protocol", platform.kafka_security_protocol.as_str().to_owned()),
        ("sasl.mechanism", platform.kafka_sasl_mechanism.as_str().to_owned()),
        (
            "sasl.jaas.config",
            "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"${env:KAFKA_USERNAME}\" password=\"${env:KAFKA_PASSWORD}\";".to_owned(),
        ),
        ("config.providers", "env".to_owned()),
        ("config.providers.env.class", KAFKA_ENV_CONFIG_PROVIDER.to_owned()),
        // The provider may read these two variables and no other.
        (
            "config.providers.env.param.allowlist.pattern",
            "^KAFKA_(USERNAME|PASSWORD)$".to_owned(),
        ),
    ]);
    if platform.kafka_security_protocol.uses_tls() && platform.truststore {
        options.insert(
            "ssl.truststore.location",
            format!("{TRUSTSTORE_MOUNT_PATH}/{TRUSTSTORE_KEY}"),
        );
        options.insert("ssl.truststore.type", "JKS".to_owned());
    }
    options
        .into_iter()
        .map(|(key, value)| (format!("{SPARK_KAFKA_PREFIX}{key}"), value))
        .collect()
}

/// The ServiceAccount a product's Spark driver runs as.
pub fn spark_service_account(product: &DataProduct) -> ServiceAccount {
    let name = product.name_any();
    ServiceAccount {
        metadata: child_meta(product, &spark_service_account_name(&name)),
        ..ServiceAccount::default()
    }
}

/// The RoleBinding of the driver's ServiceAccount to the Spark driver ClusterRole, in the
/// product's namespace: the driver may create its executor pods there and nowhere else.
pub fn spark_role_binding(product: &DataProduct, cluster_role: &str) -> RoleBinding {
    let name = product.name_any();
    RoleBinding {
        metadata: child_meta(product, &spark_service_account_name(&name)),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: cluster_role.to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: spark_service_account_name(&name),
            namespace: product.namespace(),
            api_group: None,
        }]),
    }
}

fn child_meta(product: &DataProduct, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: product.namespace(),
        labels: Some(product_labels(product)),
        owner_references: product.controller_owner_ref(&()).map(|r| vec![r]),
        ..ObjectMeta::default()
    }
}

/// The environment variable carrying an output or input port's location:
/// `DATAMESH_OUTPUT_<PORT>` / `DATAMESH_INPUT_<PORT>`, upper-cased with `-` as `_`.
pub fn port_env_name(direction: &str, port: &str) -> String {
    format!(
        "DATAMESH_{direction}_{}",
        port.to_ascii_uppercase().replace('-', "_")
    )
}

/// Where a port's data is: its topic name, or `s3a://<bucket>/` for a bucket.
pub fn port_location(spec: &DataProductSpec, product: &str, port: &OutputPort) -> Option<String> {
    spec.topic_name(product, port).or_else(|| {
        spec.bucket_name(product, port)
            .map(|bucket| format!("s3a://{bucket}/"))
    })
}

/// The spark-operator object for a product's transformation: a `SparkApplication`, or a
/// `ScheduledSparkApplication` when it has a schedule; `None` without a transformation.
/// Returns the kind and the object. A `retired` product's job is suspended (`suspend: true`,
/// which both kinds support), not deleted, so its history stays visible.
///
/// The job's environment (driver and executors) carries `DATAMESH_DOMAIN`,
/// `DATAMESH_DATA_PRODUCT`, `DATAMESH_OUTPUT_<PORT>` (topic, or `s3a://<bucket>/`),
/// `DATAMESH_INPUT_<PORT>` for each input whose producer is known, and every key of the
/// domain's credentials Secret (`envFrom`): `KAFKA_BOOTSTRAP_SERVERS`, `KAFKA_USERNAME`,
/// `KAFKA_PASSWORD`, `AWS_ACCESS_KEY_ID`, ... `hadoopConf` points S3A at the endpoint and
/// region, with the addressing style and the credentials from the environment; `sparkConf`
/// holds the Kafka client options (see [`spark_kafka_options`]); with a trust store, its
/// ConfigMap is mounted at [`TRUSTSTORE_MOUNT_PATH`] and named by `javaOptions`.
pub fn spark_object(
    product: &DataProduct,
    inputs: &BTreeMap<String, String>,
    platform: &SparkPlatform<'_>,
) -> Option<(&'static str, Value)> {
    let spark = &product.spec.transformation.as_ref()?.spark;
    let name = product.name_any();
    let domain = &product.spec.domain;
    let mut env = vec![
        json!({"name": "DATAMESH_DOMAIN", "value": domain}),
        json!({"name": "DATAMESH_DATA_PRODUCT", "value": name}),
    ];
    for port in &product.spec.output_ports {
        if let Some(location) = port_location(&product.spec, &name, port) {
            env.push(json!({"name": port_env_name("OUTPUT", &port.name), "value": location}));
        }
    }
    for (input, location) in inputs {
        env.push(json!({"name": port_env_name("INPUT", input), "value": location}));
    }
    let env_from = json!([{"secretRef": {"name": credentials_secret_name(domain)}}]);
    let labels = product_labels(product);
    let mut driver = json!({
        "serviceAccount": spark_service_account_name(&name),
        "labels": labels,
        "env": env,
        "envFrom": env_from,
    });
    let mut executor = json!({"labels": labels, "env": env, "envFrom": env_from});
    if platform.truststore {
        let mount = json!([{"name": spark_truststore_name(&name), "path": TRUSTSTORE_MOUNT_PATH}]);
        let java = format!(
            "-Djavax.net.ssl.trustStore={TRUSTSTORE_MOUNT_PATH}/{TRUSTSTORE_KEY} -Djavax.net.ssl.trustStoreType=JKS"
        );
        for pod in [&mut driver, &mut executor] {
            pod["configMaps"] = mount.clone();
            pod["javaOptions"] = json!(java);
        }
    }
    if let Some(resources) = &spark.driver {
        if let Some(cores) = resources.cores {
            driver["cores"] = json!(cores);
        }
        if let Some(memory) = &resources.memory {
            driver["memory"] = json!(memory);
        }
    }
    if let Some(resources) = &spark.executor {
        if let Some(cores) = resources.cores {
            executor["cores"] = json!(cores);
        }
        if let Some(memory) = &resources.memory {
            executor["memory"] = json!(memory);
        }
        if let Some(instances) = resources.instances {
            executor["instances"] = json!(instances);
        }
    }
    let spark_type = serde_json::to_value(spark.type_).unwrap_or(json!("Python"));
    let mut app = json!({
        "type": spark_type,
        "mode": "cluster",
        "sparkVersion": spark.spark_version,
        "image": spark.image,
        "mainApplicationFile": spark.main_application_file,
        "arguments": spark.arguments,
        "restartPolicy": {"type": "Never"},
        "sparkConf": spark_kafka_options(platform),
        "hadoopConf": {
            "fs.s3a.endpoint": platform.s3_endpoint,
            "fs.s3a.endpoint.region": platform.s3_region,
            "fs.s3a.path.style.access": platform.s3_path_style.to_string(),
            "fs.s3a.aws.credentials.provider": S3A_ENV_CREDENTIALS,
        },
        "driver": driver,
        "executor": executor,
    });
    if let Some(main_class) = &spark.main_class {
        app["mainClass"] = json!(main_class);
    }
    let suspend = product.spec.status == Lifecycle::Retired;
    let meta = child_meta(product, &name);
    let (kind, spec) = match &spark.schedule {
        Some(schedule) => (
            SCHEDULED_SPARK_APPLICATION,
            json!({
                "schedule": schedule,
                "suspend": suspend,
                "concurrencyPolicy": "Forbid",
                "template": app,
            }),
        ),
        None => {
            app["suspend"] = json!(suspend);
            (SPARK_APPLICATION, app)
        }
    };
    Some((
        kind,
        json!({
            "apiVersion": SPARK_API_VERSION,
            "kind": kind,
            "metadata": meta,
            "spec": spec,
        }),
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::access_policy::{AccessPolicySpec, AccessPolicyStatus, Grant};
    use crate::api::conditions::{Outcome, set_progress};
    use crate::api::data_product::DataProductSpec;
    use crate::api::domain::DomainSpec;
    use crate::provision::kafka::{ConfigSource, TopicConfigEntry};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    pub(crate) fn product(name: &str, created: i64, spec: serde_json::Value) -> DataProduct {
        let mut base = json!({
            "domain": "payments",
            "description": {"purpose": "p", "usage": "u"},
            "owner": {"name": "alice"},
        });
        if let (Some(base), Some(extra)) = (base.as_object_mut(), spec.as_object()) {
            base.extend(extra.clone());
        }
        let spec: DataProductSpec = serde_json::from_value(base).unwrap();
        let mut p = DataProduct::new(name, spec);
        p.metadata.namespace = Some("payments".into());
        p.metadata.uid = Some(format!("uid-{name}"));
        p.metadata.creation_timestamp = Some(Time(Timestamp::from_second(created).unwrap()));
        p
    }

    fn described(plan: &TopicPlan, partitions: i32, replicas: i16) -> TopicDescription {
        TopicDescription {
            name: plan.topic.clone(),
            partitions,
            replication_factor: replicas,
            configs: plan
                .configs
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        TopicConfigEntry {
                            value: Some(v.clone()),
                            source: ConfigSource::DynamicTopic,
                            sensitive: false,
                            read_only: false,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn kafka_ports_become_topics_with_retention_and_config() {
        let p = product(
            "orders",
            1,
            json!({"outputPorts": [
                {"name": "events", "kafka": {"partitions": 6, "retention": "7d", "config": {"cleanup.policy": "delete"}}},
                {"name": "audit", "kafka": {"topic": "payments.audit-v2", "replicas": 3}},
                {"name": "lake", "bucket": {}}
            ]}),
        );
        let plans = topic_plans("orders", &p.spec);
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[0].topic, "payments.orders.events");
        assert_eq!(plans[0].partitions, 6);
        assert_eq!(plans[0].configs["retention.ms"], "604800000");
        assert_eq!(plans[0].configs["cleanup.policy"], "delete");
        assert_eq!(plans[1].topic, "payments.audit-v2");
        assert_eq!(plans[1].replicas, Some(3));
        match decide_topic(&plans[0], None, 2, &BTreeSet::new()) {
            TopicStep::Create(topic) => {
                assert_eq!(topic.replication_factor, 2, "the default applies");
                assert_eq!(topic.partitions, 6);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_existing_topic_as_declared_needs_nothing_and_growth_is_applied() {
        let p = product(
            "orders",
            1,
            json!({"outputPorts": [{"name": "events", "kafka": {"partitions": 6, "retention": "1d"}}]}),
        );
        let plan = &topic_plans("orders", &p.spec)[0];
        assert_eq!(
            decide_topic(plan, Some(&described(plan, 6, 1)), 1, &BTreeSet::new()),
            TopicStep::Update {
                increase: None,
                alter: None
            }
        );
        match decide_topic(plan, Some(&described(plan, 3, 1)), 1, &BTreeSet::new()) {
            TopicStep::Update {
                increase: Some(increase),
                alter: None,
            } => assert_eq!(increase.total_partitions, 6),
            other => panic!("{other:?}"),
        }
        let mut drifted = described(plan, 6, 1);
        drifted.configs.get_mut("retention.ms").unwrap().value = Some("1000".into());
        match decide_topic(plan, Some(&drifted), 1, &BTreeSet::new()) {
            TopicStep::Update {
                increase: None,
                alter: Some(alter),
            } => assert_eq!(alter.set["retention.ms"], "86400000"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn shrinking_or_changing_replicas_is_refused() {
        let p = product(
            "orders",
            1,
            json!({"outputPorts": [{"name": "events", "kafka": {"partitions": 2, "replicas": 1}}]}),
        );
        let plan = &topic_plans("orders", &p.spec)[0];
        match decide_topic(plan, Some(&described(plan, 6, 1)), 1, &BTreeSet::new()) {
            TopicStep::Refuse { reason, message } => {
                assert_eq!(reason, "PartitionDecrease");
                assert!(message.contains("6 partitions"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        match decide_topic(plan, Some(&described(plan, 2, 3)), 1, &BTreeSet::new()) {
            TopicStep::Refuse { reason, .. } => assert_eq!(reason, "ReplicasChanged"),
            other => panic!("{other:?}"),
        }
        // Unset replicas are never compared: a changed operator default stalls nothing.
        let unset = TopicPlan {
            replicas: None,
            ..plan.clone()
        };
        assert!(matches!(
            decide_topic(&unset, Some(&described(plan, 2, 3)), 1, &BTreeSet::new()),
            TopicStep::Update { .. }
        ));
    }

    #[test]
    fn the_owner_may_produce_transactionally_and_read_back() {
        let acls = owner_acls("payments", "orders", &["payments.orders.events".into()]);
        let has = |rt, pt, name: &str, op| {
            acls.iter().any(|a| {
                a.resource_type == rt
                    && a.pattern_type == pt
                    && a.resource_name == name
                    && a.operation == op
                    && a.principal == "User:payments"
            })
        };
        use AclOperation::*;
        use AclPatternType::*;
        use AclResourceType::*;
        for op in [Write, Describe, Read] {
            assert!(has(Topic, Literal, "payments.orders.events", op), "{op:?}");
        }
        assert!(has(TransactionalId, Prefixed, "payments.orders.", Write));
        assert!(has(TransactionalId, Prefixed, "payments.orders.", Describe));
        assert!(has(Group, Prefixed, "payments.orders.", Read));
        assert!(has(
            Cluster,
            Literal,
            CLUSTER_RESOURCE_NAME,
            IdempotentWrite
        ));
        assert!(owner_acls("payments", "orders", &[]).is_empty());
    }

    #[test]
    fn bucket_ports_become_tagged_buckets() {
        let p = product(
            "orders",
            1,
            json!({"classification": "confidential", "outputPorts": [
                {"name": "lake", "bucket": {"expireAfterDays": 30}},
                {"name": "raw", "bucket": {"versioning": false}}
            ]}),
        );
        let plans = bucket_plans(&p);
        assert_eq!(plans[0].bucket, "payments-orders-lake");
        assert!(plans[0].versioning);
        assert_eq!(plans[0].expire_after_days, Some(30));
        assert_eq!(plans[0].tags["datamesh.dev/domain"], "payments");
        assert_eq!(plans[0].tags["datamesh.dev/data-product"], "orders");
        assert_eq!(plans[0].tags["datamesh.dev/port"], "lake");
        assert_eq!(plans[0].tags["datamesh.dev/classification"], "confidential");
        assert_eq!(
            plans[0].tags["app.kubernetes.io/managed-by"],
            "datamesh-operator"
        );
        assert!(!plans[1].versioning);
        assert_eq!(plans[1].expire_after_days, None);
    }

    #[test]
    fn adopting_a_bucket_keeps_the_tags_others_set_and_drops_the_orphaned_mark() {
        let live = BucketTags::from([
            ("cost-center".to_owned(), "42".to_owned()),
            (ORPHANED_TAG.to_owned(), "true".to_owned()),
            (PORT_TAG.to_owned(), "old".to_owned()),
        ]);
        let ours = BucketTags::from([(PORT_TAG.to_owned(), "lake".to_owned())]);
        assert_eq!(
            merged_tags(&live, &ours),
            BucketTags::from([
                ("cost-center".to_owned(), "42".to_owned()),
                (PORT_TAG.to_owned(), "lake".to_owned()),
            ])
        );
        let settled = merged_tags(&live, &ours);
        assert_eq!(
            merged_tags(&settled, &ours),
            settled,
            "no write once merged"
        );
    }

    #[test]
    fn versioning_is_only_changed_when_it_differs() {
        assert_eq!(versioning_change(true, Versioning::Unversioned), Some(true));
        assert_eq!(versioning_change(true, Versioning::Suspended), Some(true));
        assert_eq!(versioning_change(true, Versioning::Enabled), None);
        assert_eq!(versioning_change(false, Versioning::Enabled), Some(false));
        assert_eq!(versioning_change(false, Versioning::Unversioned), None);
        assert_eq!(versioning_change(false, Versioning::Suspended), None);
    }

    #[test]
    fn the_older_product_keeps_a_contested_topic() {
        let older = product(
            "orders",
            10,
            json!({"outputPorts": [{"name": "events", "kafka": {}}]}),
        );
        let newer = product(
            "copycat",
            20,
            json!({"outputPorts": [{"name": "x", "kafka": {"topic": "payments.orders.events"}}]}),
        );
        let all = [&older, &newer];
        assert_eq!(
            older_claimant(&newer, &all, "payments.orders.events").as_deref(),
            Some("payments/orders")
        );
        assert_eq!(older_claimant(&older, &all, "payments.orders.events"), None);
        assert_eq!(older_claimant(&newer, &all, "payments.copycat.x"), None);
    }

    #[test]
    fn claims_match_default_and_explicit_names_exactly() {
        let p = product(
            "orders",
            10,
            json!({"outputPorts": [
                {"name": "events", "kafka": {}},
                {"name": "audit", "kafka": {"topic": "legacy.audit"}},
                {"name": "lake", "bucket": {}},
            ]}),
        );
        for name in claimed_names(&p) {
            assert!(claims(&p, &name), "{name}");
        }
        for other in [
            "payments.orders.event",
            "payments.orders.events.x",
            "payments-orders-events",
            "payments.orders.audit",
            "payments.orders.lake",
            "payments-orders-lakes",
        ] {
            assert!(!claims(&p, other), "{other}");
        }
    }

    #[test]
    fn outputs_the_status_lists_but_the_spec_no_longer_declares_are_released() {
        use crate::api::data_product::{DataProductStatus, OutputPortStatus};
        let mut p = product(
            "orders",
            10,
            json!({"outputPorts": [{"name": "events", "kafka": {}}]}),
        );
        let listed = |topic: Option<&str>, bucket: Option<&str>| OutputPortStatus {
            name: "x".into(),
            topic: topic.map(str::to_owned),
            bucket: bucket.map(str::to_owned),
            ..OutputPortStatus::default()
        };
        p.status = Some(DataProductStatus {
            output_ports: vec![
                listed(Some("payments.orders.events"), None),
                listed(Some("payments.orders.audit"), None),
                listed(None, Some("payments-orders-lake")),
                listed(Some("marketing.orders.audit"), None),
                listed(None, Some("payments-orders-taken")),
            ],
            ..DataProductStatus::default()
        });
        // Another product of the domain now declares one of the removed buckets: it takes it
        // over, so it is not released.
        let mut taker = product(
            "orders",
            20,
            json!({"outputPorts": [{"name": "taken", "bucket": {}}]}),
        );
        taker.metadata.namespace = Some("elsewhere".into());
        taker.metadata.uid = Some("uid-another-orders".into());
        let all = [&p, &taker];
        let (topics, buckets) = removed_outputs(&p, &all);
        assert_eq!(
            topics,
            ["payments.orders.audit"],
            "still-declared and foreign topics stay"
        );
        assert_eq!(buckets, ["payments-orders-lake"]);
        assert_eq!(
            removed_outputs(&product("new", 1, json!({})), &[]),
            (vec![], vec![])
        );
    }

    #[test]
    fn the_product_holding_a_topic_keeps_it_even_when_made_in_the_same_second() {
        let mut holder = product(
            "orders",
            10,
            json!({"outputPorts": [{"name": "events", "kafka": {}}]}),
        );
        holder.status = Some(crate::api::data_product::DataProductStatus {
            output_ports: vec![crate::api::data_product::OutputPortStatus {
                name: "events".into(),
                topic: Some("payments.orders.events".into()),
                ..Default::default()
            }],
            ..Default::default()
        });
        // Same second, and a name that sorts first: without the hold it would win.
        let rival = product(
            "aaa",
            10,
            json!({"outputPorts": [{"name": "x", "kafka": {"topic": "payments.orders.events"}}]}),
        );
        let all = [&holder, &rival];
        assert_eq!(
            older_claimant(&rival, &all, "payments.orders.events").as_deref(),
            Some("payments/orders")
        );
        assert_eq!(
            older_claimant(&holder, &all, "payments.orders.events"),
            None
        );
    }

    fn domain_with(quotas: serde_json::Value) -> Domain {
        let spec: DomainSpec = serde_json::from_value(json!({"quotas": quotas})).unwrap();
        Domain::new("payments", spec)
    }

    #[test]
    fn quotas_stall_the_youngest_products_only() {
        let ports =
            |n: i32| json!({"outputPorts": [{"name": "events", "kafka": {"partitions": n}}]});
        let a = product("a", 1, ports(4));
        let b = product("b", 2, ports(4));
        let c = product("c", 3, ports(4));
        let all = [&a, &b, &c];
        let count = domain_with(json!({"maxDataProducts": 2}));
        assert_eq!(quota_violation(&a, &count, &all), None);
        assert_eq!(quota_violation(&b, &count, &all), None);
        let message = quota_violation(&c, &count, &all).unwrap();
        assert!(message.contains("maxDataProducts"), "{message}");
        let partitions = domain_with(json!({"maxPartitions": 10}));
        assert_eq!(quota_violation(&b, &partitions, &all), None);
        let message = quota_violation(&c, &partitions, &all).unwrap();
        assert!(message.contains("older products use 8"), "{message}");
        assert_eq!(quota_violation(&c, &domain_with(json!({})), &all), None);
    }

    fn policy(product: &str, consumer: &str, ready: bool, expires: Option<i64>) -> AccessPolicy {
        let spec: AccessPolicySpec = serde_json::from_value(json!({
            "dataProduct": product, "ports": ["events"], "consumers": [{"domain": consumer}],
        }))
        .unwrap();
        let mut p = AccessPolicy::new("grant", spec);
        p.metadata.namespace = Some("payments".into());
        p.spec.expires_at = expires.map(|s| Time(Timestamp::from_second(s).unwrap()));
        let mut status = AccessPolicyStatus::default();
        if ready {
            // What the AccessPolicy reconciler records once it made the grant.
            status.grants.push(Grant {
                consumer: format!("domain:{consumer}"),
                port: "events".into(),
                kafka_acls: Some(2),
                bucket: None,
            });
        }
        let outcome = if ready {
            Outcome::ready("Granted", "ok")
        } else {
            Outcome::reconciling("Working", "wait")
        };
        set_progress(
            &mut status.conditions,
            &outcome,
            Some(1),
            &Time(Timestamp::from_second(0).unwrap()),
        );
        p.status = Some(status);
        p
    }

    #[test]
    fn inputs_are_granted_pending_or_not_found() {
        let producer = product(
            "orders",
            1,
            json!({"outputPorts": [{"name": "events", "kafka": {}}, {"name": "lake", "bucket": {}}]}),
        );
        let producer_domain = domain_with(json!({}));
        let input = |port: &str| -> InputPort {
            serde_json::from_value(json!({"name": "in", "dataProduct": {"domain": "payments", "name": "orders", "port": port}})).unwrap()
        };
        let now = Timestamp::from_second(1000).unwrap();
        let resolve = |port: &str,
                       policies: &[AccessPolicy],
                       domain: Option<&Domain>,
                       product: Option<&DataProduct>| {
            resolve_input(
                &input(port),
                "marketing",
                &InputObservation {
                    domain,
                    product,
                    policies,
                },
                now,
            )
            .access
        };
        let d = Some(&producer_domain);
        let p = Some(&producer);
        assert_eq!(resolve("events", &[], None, None), InputAccess::NotFound);
        assert_eq!(resolve("events", &[], d, None), InputAccess::NotFound);
        assert_eq!(resolve("nope", &[], d, p), InputAccess::NotFound);
        assert_eq!(resolve("events", &[], d, p), InputAccess::Pending);
        let good = policy("orders", "marketing", true, Some(2000));
        assert_eq!(
            resolve("events", std::slice::from_ref(&good), d, p),
            InputAccess::Granted
        );
        assert_eq!(
            resolve("lake", &[good], d, p),
            InputAccess::Pending,
            "the policy covers events only"
        );
        for bad in [
            policy("orders", "marketing", false, None),
            policy("orders", "marketing", true, Some(500)),
            policy("orders", "finance", true, None),
            policy("other", "marketing", true, None),
        ] {
            assert_eq!(resolve("events", &[bad], d, p), InputAccess::Pending);
        }
        // The same domain reads its own products without a grant.
        let own = resolve_input(
            &input("events"),
            "payments",
            &InputObservation {
                domain: d,
                product: p,
                policies: &[],
            },
            now,
        );
        assert_eq!(own.access, InputAccess::Granted);
    }

    #[test]
    fn a_scheduled_transformation_is_a_scheduled_spark_application_with_its_ports() {
        let p = product(
            "orders",
            1,
            json!({
                "outputPorts": [{"name": "events", "kafka": {}}, {"name": "raw-lake", "bucket": {}}],
                "transformation": {"spark": {"image": "spark:4", "mainApplicationFile": "local:///job.py",
                                             "sparkVersion": "4.0.1", "schedule": "@hourly",
                                             "executor": {"instances": 2}}},
            }),
        );
        let inputs = BTreeMap::from([(
            "customers".to_owned(),
            "customers.profiles.changes".to_owned(),
        )]);
        let endpoints = SparkPlatform {
            s3_endpoint: "http://s3:8333",
            s3_region: "us-east-1",
            s3_path_style: true,
            kafka_bootstrap_servers: "kafka:9093",
            kafka_security_protocol: KafkaSecurityProtocol::SaslPlaintext,
            kafka_sasl_mechanism: ScramMechanism::Sha512,
            truststore: false,
        };
        let (kind, object) = spark_object(&p, &inputs, &endpoints).unwrap();
        assert_eq!(kind, SCHEDULED_SPARK_APPLICATION);
        assert_eq!(object["spec"]["schedule"], "@hourly");
        assert_eq!(object["spec"]["suspend"], false);
        let template = &object["spec"]["template"];
        assert_eq!(template["type"], "Python");
        assert_eq!(template["driver"]["serviceAccount"], "orders-spark");
        assert_eq!(template["executor"]["instances"], 2);
        assert_eq!(
            template["driver"]["envFrom"][0]["secretRef"]["name"],
            "payments-credentials"
        );
        let env: BTreeMap<&str, &str> = template["driver"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
            .collect();
        assert_eq!(env["DATAMESH_OUTPUT_EVENTS"], "payments.orders.events");
        assert_eq!(
            env["DATAMESH_OUTPUT_RAW_LAKE"],
            "s3a://payments-orders-raw-lake/"
        );
        assert_eq!(
            env["DATAMESH_INPUT_CUSTOMERS"],
            "customers.profiles.changes"
        );
        assert_eq!(
            object["metadata"]["labels"]["datamesh.dev/data-product"],
            "orders"
        );

        let mut retired = p.clone();
        retired.spec.status = Lifecycle::Retired;
        if let Some(t) = retired.spec.transformation.as_mut() {
            t.spark.schedule = None;
        }
        let (kind, object) = spark_object(&retired, &BTreeMap::new(), &endpoints).unwrap();
        assert_eq!(kind, SPARK_APPLICATION);
        assert_eq!(
            object["spec"]["suspend"], true,
            "a retired product's job is suspended"
        );
        assert!(spark_object(&product("x", 1, json!({})), &inputs, &endpoints).is_none());
    }

    #[test]
    fn a_spark_job_is_told_how_to_reach_s3_and_kafka_without_any_secret_in_the_object() {
        let p = product(
            "orders",
            1,
            json!({"transformation": {"spark": {"image": "spark:4", "mainApplicationFile": "s3a://b/job.py",
                                                "sparkVersion": "4.1.1"}}}),
        );
        let platform = SparkPlatform {
            s3_endpoint: "https://s3:8333",
            s3_region: "eu-west-1",
            s3_path_style: false,
            kafka_bootstrap_servers: "kafka:9094",
            kafka_security_protocol: KafkaSecurityProtocol::SaslSsl,
            kafka_sasl_mechanism: ScramMechanism::Sha256,
            truststore: true,
        };
        let (kind, object) = spark_object(&p, &BTreeMap::new(), &platform).unwrap();
        assert_eq!(kind, SPARK_APPLICATION);
        let spec = &object["spec"];
        assert_eq!(
            spec["hadoopConf"],
            json!({
                "fs.s3a.endpoint": "https://s3:8333",
                "fs.s3a.endpoint.region": "eu-west-1",
                "fs.s3a.path.style.access": "false",
                "fs.s3a.aws.credentials.provider": S3A_ENV_CREDENTIALS,
            })
        );
        assert_eq!(
            spec["sparkConf"],
            json!({
                "spark.datamesh.kafka.bootstrap.servers": "kafka:9094",
                "spark.datamesh.kafka.security.protocol": "SASL_SSL",
                "spark.datamesh.kafka.sasl.mechanism": "SCRAM-SHA-256",
                "spark.datamesh.kafka.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"${env:KAFKA_USERNAME}\" password=\"${env:KAFKA_PASSWORD}\";",
                "spark.datamesh.kafka.config.providers": "env",
                "spark.datamesh.kafka.config.providers.env.class": KAFKA_ENV_CONFIG_PROVIDER,
                "spark.datamesh.kafka.config.providers.env.param.allowlist.pattern": "^KAFKA_(USERNAME|PASSWORD)$",
                "spark.datamesh.kafka.ssl.truststore.location": "/etc/datamesh/truststore/truststore.jks",
                "spark.datamesh.kafka.ssl.truststore.type": "JKS",
            })
        );
        for pod in ["driver", "executor"] {
            assert_eq!(
                spec[pod]["configMaps"],
                json!([{"name": "orders-spark-truststore", "path": "/etc/datamesh/truststore"}])
            );
            assert_eq!(
                spec[pod]["javaOptions"],
                "-Djavax.net.ssl.trustStore=/etc/datamesh/truststore/truststore.jks -Djavax.net.ssl.trustStoreType=JKS"
            );
            assert_eq!(
                spec[pod]["envFrom"],
                json!([{"secretRef": {"name": "payments-credentials"}}])
            );
        }

        let plaintext = SparkPlatform {
            kafka_security_protocol: KafkaSecurityProtocol::SaslPlaintext,
            truststore: false,
            ..platform
        };
        let (_, object) = spark_object(&p, &BTreeMap::new(), &plaintext).unwrap();
        let spec = &object["spec"];
        assert!(spec["driver"].get("configMaps").is_none());
        assert!(spec["executor"].get("javaOptions").is_none());
        assert!(
            spec["sparkConf"]
                .get("spark.datamesh.kafka.ssl.truststore.location")
                .is_none()
        );

        let store = spark_truststore(&p, vec![1, 2, 3]);
        assert_eq!(
            store.metadata.name.as_deref(),
            Some("orders-spark-truststore")
        );
        assert_eq!(
            store.binary_data.unwrap()["truststore.jks"].0,
            vec![1, 2, 3]
        );
        assert_eq!(
            store.metadata.owner_references.unwrap()[0].kind,
            "DataProduct"
        );
    }

    #[test]
    fn the_spark_driver_is_bound_to_the_driver_role_in_its_namespace() {
        let p = product("orders", 1, json!({}));
        let binding = spark_role_binding(&p, "datamesh-spark-driver");
        assert_eq!(binding.metadata.name.as_deref(), Some("orders-spark"));
        assert_eq!(binding.role_ref.name, "datamesh-spark-driver");
        let subject = &binding.subjects.unwrap()[0];
        assert_eq!(
            (
                subject.kind.as_str(),
                subject.name.as_str(),
                subject.namespace.as_deref()
            ),
            ("ServiceAccount", "orders-spark", Some("payments"))
        );
        assert_eq!(
            spark_service_account(&p).metadata.owner_references.unwrap()[0].kind,
            "DataProduct"
        );
    }

    #[test]
    fn every_child_carries_domain_product_and_classification() {
        let p = product(
            "orders",
            1,
            json!({"classification": "restricted",
                   "outputPorts": [{"name": "lake", "bucket": {}}],
                   "transformation": {"spark": {"image": "spark:4", "mainApplicationFile": "local:///job.py",
                                                "sparkVersion": "4.0.1"}}}),
        );
        let want = BTreeMap::from([
            ("app.kubernetes.io/managed-by", "datamesh-operator"),
            ("datamesh.dev/domain", "payments"),
            ("datamesh.dev/data-product", "orders"),
            ("datamesh.dev/classification", "restricted"),
        ]);
        let has_all = |labels: &BTreeMap<String, String>| {
            want.iter()
                .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        };
        assert!(has_all(
            spark_service_account(&p).metadata.labels.as_ref().unwrap()
        ));
        assert!(has_all(
            spark_role_binding(&p, "r")
                .metadata
                .labels
                .as_ref()
                .unwrap()
        ));
        let (_, object) = spark_object(
            &p,
            &BTreeMap::new(),
            &SparkPlatform {
                s3_endpoint: "http://s3",
                s3_region: "us-east-1",
                s3_path_style: true,
                kafka_bootstrap_servers: "kafka:9093",
                kafka_security_protocol: KafkaSecurityProtocol::SaslSsl,
                kafka_sasl_mechanism: ScramMechanism::Sha512,
                truststore: true,
            },
        )
        .unwrap();
        for labels in [
            &object["metadata"]["labels"],
            &object["spec"]["driver"]["labels"],
            &object["spec"]["executor"]["labels"],
        ] {
            let labels: BTreeMap<String, String> = serde_json::from_value(labels.clone()).unwrap();
            assert!(has_all(&labels), "{labels:?}");
        }
        let tags = &bucket_plans(&p)[0].tags;
        assert!(has_all(tags), "{tags:?}");
    }
}
