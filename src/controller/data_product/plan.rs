//! The DataProduct reconciler's decisions. From the product and what [`observe`](super::observe)
//! saw, [`plan`] says every write to make, per system, and what the status will say; deletion
//! has its own plan, [`plan_cleanup`]. Both are pure (no I/O, no clock: `now` is observed), so
//! the unit tests assert on the plan itself.
//!
//! Authority comes from the namespace: a product acts only for the domain that owns it, and of
//! its domain's names only for those no older product claims ([`scope`], which also tells
//! `observe` which topics and buckets to look at).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::ResourceExt;
use serde_json::Value;

use super::desired::{
    self, BucketPlan, InputObservation, SCHEDULED_SPARK_APPLICATION, SPARK_APPLICATION,
    SparkPlatform, TopicPlan, TopicStep,
};
use super::observe::{BucketSeen, Cluster, Observation, Seen, SparkSeen};
use crate::api::DeletionPolicy;
use crate::api::conditions::{Outcome, READY, is_true};
use crate::api::data_product::{DataProduct, InputPortStatus, Lifecycle, PortContract};
use crate::contracts::Verdict;
use crate::controller::apply::{DATA_PRODUCT_LABEL, already_applied, declare};
use crate::controller::domain::desired::storage_user;
use crate::controller::tenancy::OWNED_BY_ANOTHER_DOMAIN;
use crate::governance;
use crate::provision::kafka::{
    AclBinding, AclBindingFilter, AclResourceType, NewTopic, PartitionIncrease,
    TopicConfigAlteration,
};
use crate::provision::kafka::{KafkaSecurityProtocol, ScramMechanism};
use crate::provision::storage::BucketTags;

const KIND: &str = "DataProduct";
/// The Ready reason of a product over its domain's quotas.
pub const QUOTA_EXCEEDED: &str = "QuotaExceeded";
/// The Ready reason of a product that names a topic or bucket an older product keeps.
pub const CLAIMED: &str = "ClaimedByAnotherProduct";

/// What the plan needs to know of the platform, from the operator's settings.
#[derive(Clone, Copy, Debug)]
pub struct Platform<'a> {
    /// Replicas of a topic whose port does not say.
    pub default_replicas: i32,
    /// The S3 endpoint, for the Spark job's S3A settings.
    pub s3_endpoint: &'a str,
    /// The region S3 requests are signed for.
    pub s3_region: &'a str,
    /// Whether S3 is addressed path-style.
    pub s3_path_style: bool,
    /// PEM of the S3 endpoint's CAs, when configured (put in the Spark job's trust store).
    pub s3_ca_bundle: Option<&'a str>,
    /// The Kafka listener, protocol and SCRAM mechanism of the domains' clients.
    pub kafka_bootstrap_servers: &'a str,
    pub kafka_security_protocol: KafkaSecurityProtocol,
    pub kafka_sasl_mechanism: ScramMechanism,
    /// PEM of the brokers' CA for the domains' clients, when configured.
    pub kafka_ca: Option<&'a str>,
    /// The ClusterRole the Spark driver's ServiceAccount is bound to.
    pub spark_driver_cluster_role: &'a str,
}

// ------------------------------------------------------------------------ scope

/// What a product may touch, decided from the watch stores alone.
#[derive(Debug, Default, PartialEq)]
pub struct Scope {
    /// Why nothing is provisioned at all (not its domain's namespace, no Ready domain,
    /// `proposed`, a governance rule or a quota), if so.
    pub gate: Option<Outcome>,
    /// Declared names the product does not get: another domain's, or an older product's.
    pub refused: Vec<Outcome>,
    /// The topics it provisions.
    pub topics: Vec<TopicPlan>,
    /// The buckets it provisions.
    pub buckets: Vec<BucketPlan>,
    /// Topics its status lists that its spec no longer declares (released by deletionPolicy).
    pub removed_topics: Vec<String>,
    /// Buckets its status lists that its spec no longer declares.
    pub removed_buckets: Vec<String>,
}

/// Decide what the product may touch (see [`Scope`]).
pub fn scope(product: &DataProduct, cluster: &Cluster, default_replicas: i32) -> Scope {
    if let Some(gate) = gate(product, cluster, default_replicas) {
        return Scope {
            gate: Some(gate),
            ..Scope::default()
        };
    }
    let spec = &product.spec;
    let name = product.name_any();
    let everyone = cluster.acting();
    let mut scope = Scope::default();
    for plan in desired::topic_plans(&name, spec) {
        if !desired::topic_in_domain(&plan.topic, &spec.domain) {
            scope
                .refused
                .push(outside_domain("Topic", &plan.topic, &spec.domain));
        } else if let Some(owner) = desired::older_claimant(product, &everyone, &plan.topic) {
            scope.refused.push(claimed("Topic", &plan.topic, &owner));
        } else {
            scope.topics.push(plan);
        }
    }
    for plan in desired::bucket_plans(product) {
        if let Some(other) = cluster
            .owners
            .bucket_domain_other_than(&plan.bucket, &spec.domain)
        {
            scope
                .refused
                .push(another_domains("Bucket", &plan.bucket, other));
        } else if let Some(owner) = desired::older_claimant(product, &everyone, &plan.bucket) {
            scope.refused.push(claimed("Bucket", &plan.bucket, &owner));
        } else {
            scope.buckets.push(plan);
        }
    }
    let (removed_topics, removed_buckets) = desired::removed_outputs(product, &everyone);
    scope.removed_topics = removed_topics;
    // As for a deleted product's (`owned_outputs`): none another domain's name prefixes.
    scope.removed_buckets = removed_buckets
        .into_iter()
        .filter(|b| {
            cluster
                .owners
                .bucket_domain_other_than(b, &spec.domain)
                .is_none()
        })
        .collect();
    scope
}

/// Why the product provisions nothing, if it does not: checked in this order, the first wins.
fn gate(product: &DataProduct, cluster: &Cluster, default_replicas: i32) -> Option<Outcome> {
    let spec = &product.spec;
    let namespace = product.namespace().unwrap_or_default();
    if let Some(refusal) = cluster.owners.refusal(KIND, &namespace, &spec.domain) {
        return Some(refusal);
    }
    let Some(domain) = &cluster.domain else {
        return Some(Outcome::stalled(
            "DomainNotFound",
            format!("Domain {} does not exist; create it first.", spec.domain),
        ));
    };
    if !domain
        .status
        .as_ref()
        .is_some_and(|s| is_true(&s.conditions, READY))
    {
        return Some(Outcome::reconciling(
            "DomainNotReady",
            format!("Waiting for Domain {} to be Ready.", spec.domain),
        ));
    }
    if spec.status == Lifecycle::Proposed {
        return Some(Outcome::stalled(
            "Proposed",
            "spec.status is proposed: nothing is provisioned until it is draft or active.",
        ));
    }
    if let Some(violation) = governance::violations(product, default_replicas)
        .into_iter()
        .next()
    {
        return Some(Outcome::stalled(violation.reason, violation.message));
    }
    desired::quota_violation(product, domain, &cluster.acting())
        .map(|message| Outcome::stalled(QUOTA_EXCEEDED, message))
}

fn another_domains(what: &str, resource: &str, owner: &str) -> Outcome {
    Outcome::stalled(
        OWNED_BY_ANOTHER_DOMAIN,
        format!(
            "{what} {resource} belongs to domain {owner}; this product does not touch it. Rename the product or the port."
        ),
    )
}

fn outside_domain(what: &str, resource: &str, domain: &str) -> Outcome {
    Outcome::stalled(
        OWNED_BY_ANOTHER_DOMAIN,
        format!(
            "{what} {resource} is outside domain {domain}, whose topics all start with \"{domain}.\"; this product does not touch it. Name the topic {domain}.<something>."
        ),
    )
}

fn claimed(what: &str, resource: &str, owner: &str) -> Outcome {
    Outcome::stalled(
        CLAIMED,
        format!(
            "{what} {resource} is managed by {owner}, an older DataProduct; rename this port or delete the other product."
        ),
    )
}

// ------------------------------------------------------------------------ the plan

/// Every write a reconcile makes, per system, and what the status will list.
#[derive(Debug, Default)]
pub struct Plan {
    /// Why the product is not Ready whatever the writes do (the gate, refused names, topic
    /// changes Kafka cannot make), most serious first once sorted by the report.
    pub problems: Vec<Outcome>,
    /// What goes of the ports removed from the spec.
    pub release: Release,
    /// Topics to create, grow and set back.
    pub topics: TopicWrites,
    /// The owner's ACLs that are missing.
    pub acls: Vec<AclBinding>,
    /// Buckets to create or set right.
    pub buckets: Vec<BucketWrite>,
    /// The owning domain's part of the policy of each bucket the product holds; `None` when
    /// it holds none.
    pub owner_access: Option<OwnerAccess>,
    /// The Spark job.
    pub spark: SparkWrites,
    /// Each input port's access.
    pub inputs: Vec<InputPortStatus>,
    /// Topics the status lists as the product's, if their writes succeed.
    pub held_topics: BTreeSet<String>,
    /// Of those, the ones left as they are because the spec asks what Kafka cannot do.
    pub refused_topics: BTreeSet<String>,
    /// Buckets the status lists as the product's, if their writes succeed.
    pub held_buckets: BTreeSet<String>,
    /// The contract in force on each output port with a schema, for the status; `None` keeps
    /// what the status records (a product that provisions nothing decides no contract).
    pub contracts: Option<Vec<PortContract>>,
}

/// Topic writes, each batched into one Kafka call.
#[derive(Debug, Default, PartialEq)]
pub struct TopicWrites {
    /// Topics to create.
    pub create: Vec<NewTopic>,
    /// Partitions to add.
    pub increase: Vec<PartitionIncrease>,
    /// Configs to set back to the spec (or to the broker's default).
    pub alter: Vec<TopicConfigAlteration>,
}

impl TopicWrites {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.increase.is_empty() && self.alter.is_empty()
    }
}

/// The writes for one bucket; a bucket as declared has none and is not listed.
#[derive(Debug, PartialEq)]
pub struct BucketWrite {
    /// The bucket.
    pub bucket: String,
    /// It does not exist yet.
    pub create: bool,
    /// `Some(true)` enables versioning, `Some(false)` suspends it.
    pub versioning: Option<bool>,
    /// The expiry to set, when it differs (`Some(None)` removes it).
    pub expiration_days: Option<Option<u32>>,
    /// The tags to write, when they differ.
    pub tags: Option<BucketTags>,
}

/// The owning domain's access to the product's buckets, written in each bucket's policy
/// (see [`crate::provision::storage::bucket_policy`]). A bucket the product lets go of loses
/// the operator's statements when it is released (see [`BucketRelease::Tag`]).
#[derive(Clone, Debug, PartialEq)]
pub struct OwnerAccess {
    /// The domain's IAM user.
    pub user: String,
    /// The buckets whose policy must give it owner access.
    pub buckets: BTreeSet<String>,
}

/// The Spark job's writes.
#[derive(Debug, Default)]
pub struct SparkWrites {
    /// Kinds whose object of this product exists but is no longer wanted (after a schedule
    /// was added or removed, or the transformation removed).
    pub delete: Vec<&'static str>,
    /// The job to run, if the product has a transformation.
    pub run: Option<SparkRun>,
}

/// The transformation's objects, applied server-side.
#[derive(Debug)]
pub struct SparkRun {
    /// `SparkApplication` or `ScheduledSparkApplication`.
    pub kind: &'static str,
    /// The object, carrying its declared digest.
    pub object: Value,
    /// Whether the live object already holds it (then it is not written).
    pub unchanged: bool,
    /// The driver's ServiceAccount.
    pub service_account: ServiceAccount,
    /// Its RoleBinding.
    pub role_binding: RoleBinding,
    /// The ConfigMap with the job's trust store, when a CA is configured.
    pub truststore: Option<ConfigMap>,
}

/// What goes of outputs a product releases (removed ports, or the deleted product's).
#[derive(Debug, Default, PartialEq)]
pub struct Release {
    /// The owner's ACLs on the released topics (and, for a whole product, its prefixes).
    pub acls: Vec<AclBindingFilter>,
    /// Topics to delete (`deletionPolicy: Delete`).
    pub delete_topics: Vec<String>,
    /// Buckets to empty and delete, or to tag as orphaned.
    pub buckets: Vec<BucketRelease>,
    /// What was released, for the Event; empty when nothing was.
    pub note: String,
}

impl Release {
    /// Whether nothing is released.
    pub fn is_empty(&self) -> bool {
        self.note.is_empty()
    }
}

/// What happens to one released bucket.
#[derive(Debug, PartialEq)]
pub enum BucketRelease {
    /// Emptied and deleted.
    Delete(String),
    /// Kept with these tags (its own plus the orphaned mark), and without the operator's
    /// statements in its policy: neither the owning domain nor any consumer keeps access
    /// through the operator to a bucket no product holds.
    Tag(String, BucketTags),
}

/// Plan a reconcile of a product that is not being deleted.
pub fn plan(product: &DataProduct, seen: &Observation, platform: &Platform<'_>) -> Plan {
    let scope = &seen.scope;
    if let Some(gate) = &scope.gate {
        return Plan {
            problems: vec![gate.clone()],
            ..Plan::default()
        };
    }
    let spec = &product.spec;
    let name = product.name_any();
    let mut plan = Plan {
        problems: scope.refused.clone(),
        release: release(
            product,
            &seen.external,
            &scope.removed_topics,
            &scope.removed_buckets,
            false,
        ),
        ..Plan::default()
    };

    for topic in &scope.topics {
        let previously = desired::previously_set_configs(product, &topic.topic);
        let current = seen.external.topics.get(&topic.topic);
        match desired::decide_topic(topic, current, platform.default_replicas, &previously) {
            TopicStep::Create(new) => plan.topics.create.push(new),
            TopicStep::Update { increase, alter } => {
                plan.topics.increase.extend(increase);
                plan.topics.alter.extend(alter);
            }
            TopicStep::Refuse { reason, message } => {
                plan.refused_topics.insert(topic.topic.clone());
                plan.problems.push(Outcome::stalled(reason, message));
            }
        }
        plan.held_topics.insert(topic.topic.clone());
    }
    let held: Vec<String> = plan.held_topics.iter().cloned().collect();
    plan.acls = desired::owner_acls(&spec.domain, &name, &held)
        .into_iter()
        .filter(|binding| !seen.external.acls.contains(binding))
        .collect();

    for bucket in &scope.buckets {
        match seen.external.buckets.get(&bucket.bucket) {
            Some(BucketSeen::Present { tags, settings }) => {
                if let Some(other) = desired::tagged_for_another_domain(tags, &spec.domain) {
                    plan.problems
                        .push(another_domains("Bucket", &bucket.bucket, other));
                    continue;
                }
                let settings = settings.as_ref();
                let write = BucketWrite {
                    bucket: bucket.bucket.clone(),
                    create: false,
                    versioning: settings
                        .and_then(|s| desired::versioning_change(bucket.versioning, s.versioning)),
                    expiration_days: settings
                        .filter(|s| s.expiration_days != bucket.expire_after_days)
                        .map(|_| bucket.expire_after_days),
                    tags: Some(desired::merged_tags(tags, &bucket.tags))
                        .filter(|merged| merged != tags),
                };
                if write.versioning.is_some()
                    || write.expiration_days.is_some()
                    || write.tags.is_some()
                {
                    plan.buckets.push(write);
                }
            }
            // Missing (or not observed, which only a bug would cause): made from nothing.
            Some(BucketSeen::Missing) | None => plan.buckets.push(BucketWrite {
                bucket: bucket.bucket.clone(),
                create: true,
                versioning: bucket.versioning.then_some(true),
                expiration_days: bucket.expire_after_days.map(Some),
                tags: Some(bucket.tags.clone()),
            }),
        }
        plan.held_buckets.insert(bucket.bucket.clone());
    }
    plan.owner_access = (!plan.held_buckets.is_empty()).then(|| OwnerAccess {
        user: storage_user(&product.spec.domain),
        buckets: plan.held_buckets.clone(),
    });

    let (contracts, broken) = contracts(product, &seen.cluster.granted_ports);
    plan.contracts = Some(contracts);
    plan.problems.extend(broken);

    let (inputs, locations) = inputs(product, &seen.cluster, seen.now);
    plan.inputs = inputs;
    plan.spark = spark(product, &locations, &seen.spark, platform);
    plan
}

/// The contract each output port keeps, and why a proposed one is refused. A port's schema as
/// the spec has it becomes its contract unless consumers hold a grant on the port and the new
/// schema would break them (see [`crate::contracts`]): then the port keeps the contract in
/// force and the product is Stalled with the differences, until the producer publishes the
/// change elsewhere or the consumers are off. A port without consumers takes any change.
pub fn contracts(
    product: &DataProduct,
    granted: &BTreeMap<String, Vec<String>>,
) -> (Vec<PortContract>, Vec<Outcome>) {
    let recorded = product
        .status
        .as_ref()
        .map(|status| status.contracts.as_slice())
        .unwrap_or_default();
    let mut kept = Vec::new();
    let mut refused = Vec::new();
    for port in &product.spec.output_ports {
        let in_force = recorded.iter().find(|c| c.port == port.name);
        let consumers = granted.get(&port.name).filter(|c| !c.is_empty());
        let proposed = port.schema.as_ref().map(|schema| PortContract {
            port: port.name.clone(),
            schema: schema.clone(),
        });
        let (Some(in_force), Some(consumers)) = (in_force, consumers) else {
            kept.extend(proposed);
            continue;
        };
        let verdict = match &proposed {
            None => Verdict::Breaking(vec!["the schema was removed".to_owned()]),
            Some(p) if p.schema == in_force.schema => Verdict::Compatible,
            Some(p) if p.schema.type_ != in_force.schema.type_ => Verdict::Breaking(vec![format!(
                "the schema language changed from {:?} to {:?}",
                in_force.schema.type_, p.schema.type_
            )]),
            Some(p) => crate::contracts::compare(
                p.schema.type_,
                in_force.schema.definition.as_deref().unwrap_or_default(),
                p.schema.definition.as_deref().unwrap_or_default(),
            ),
        };
        match verdict {
            Verdict::Compatible => kept.extend(proposed),
            Verdict::Breaking(differences) => {
                kept.push(in_force.clone());
                refused.push(Outcome::stalled(
                    "ContractBreaking",
                    format!(
                        "The new schema of output port {} would break its consumers ({}): {}. \
                         The port keeps its contract. Publish the change on a new port (or a new \
                         version of the product), or end the consumers' grants first.",
                        port.name,
                        consumers.join(", "),
                        differences.join("; ")
                    ),
                ));
            }
            Verdict::Invalid(why) => {
                kept.push(in_force.clone());
                refused.push(Outcome::stalled(
                    "ContractInvalid",
                    format!(
                        "The new schema of output port {} cannot be read: {why}. The port keeps its contract.",
                        port.name
                    ),
                ));
            }
        }
    }
    (kept, refused)
}

/// Each input port's access, and where the inputs whose producer is known are (for the Spark
/// job's environment).
fn inputs(
    product: &DataProduct,
    cluster: &Cluster,
    now: k8s_openapi::jiff::Timestamp,
) -> (Vec<InputPortStatus>, BTreeMap<String, String>) {
    let mut statuses = Vec::new();
    let mut locations = BTreeMap::new();
    for (input, seen) in product.spec.input_ports.iter().zip(&cluster.inputs) {
        let producer = seen.producer.as_deref();
        statuses.push(desired::resolve_input(
            input,
            &product.spec.domain,
            &InputObservation {
                domain: seen.domain.as_deref(),
                product: producer,
                policies: &seen.policies,
            },
            now,
        ));
        let reference = &input.data_product;
        if let Some(producer) = producer
            && let Some(port) = producer
                .spec
                .output_ports
                .iter()
                .find(|p| p.name == reference.port)
            && let Some(location) =
                desired::port_location(&producer.spec, &producer.name_any(), port)
        {
            locations.insert(input.name.clone(), location);
        }
    }
    (statuses, locations)
}

/// The Spark job: the wanted kind applied (with its ServiceAccount and RoleBinding) unless
/// the live one already holds it, and this product's object of the other kind deleted.
fn spark(
    product: &DataProduct,
    inputs: &BTreeMap<String, String>,
    live: &SparkSeen,
    platform: &Platform<'_>,
) -> SparkWrites {
    // The CAs were checked at start-up (the operator does not start with an unusable one), so
    // a bundle that makes no trust store here is no bundle at all.
    let kafka_ca = platform
        .kafka_ca
        .filter(|_| platform.kafka_security_protocol.uses_tls());
    let bundles: Vec<&str> = platform.s3_ca_bundle.into_iter().chain(kafka_ca).collect();
    let jks = crate::truststore::jks_from_pem(&bundles).ok();
    let spark_platform = SparkPlatform {
        s3_endpoint: platform.s3_endpoint,
        s3_region: platform.s3_region,
        s3_path_style: platform.s3_path_style,
        kafka_bootstrap_servers: platform.kafka_bootstrap_servers,
        kafka_security_protocol: platform.kafka_security_protocol,
        kafka_sasl_mechanism: platform.kafka_sasl_mechanism,
        truststore: jks.is_some(),
    };
    let wanted = desired::spark_object(product, inputs, &spark_platform);
    let delete = stale_spark_kinds(product, live, wanted.as_ref().map(|(kind, _)| *kind));
    let run = wanted.map(|(kind, mut object)| {
        declare(&mut object);
        let unchanged = live
            .get(kind)
            .and_then(Option::as_ref)
            .is_some_and(|live| already_applied(&object, live));
        SparkRun {
            kind,
            object,
            unchanged,
            service_account: desired::spark_service_account(product),
            role_binding: desired::spark_role_binding(product, platform.spark_driver_cluster_role),
            truststore: jks.map(|jks| desired::spark_truststore(product, jks)),
        }
    });
    SparkWrites { delete, run }
}

/// The kinds other than `wanted` of which a live object of this product exists (by its label:
/// an object of the same name someone else made is not ours to delete).
fn stale_spark_kinds(
    product: &DataProduct,
    live: &SparkSeen,
    wanted: Option<&'static str>,
) -> Vec<&'static str> {
    let name = product.name_any();
    [SPARK_APPLICATION, SCHEDULED_SPARK_APPLICATION]
        .into_iter()
        .filter(|kind| Some(*kind) != wanted)
        .filter(|kind| {
            live.get(kind)
                .and_then(Option::as_ref)
                .is_some_and(|object| {
                    object["metadata"]["labels"][DATA_PRODUCT_LABEL].as_str() == Some(name.as_str())
                })
        })
        .collect()
}

// ------------------------------------------------------------------------ release

/// Release `topics` and `buckets` by the product's `deletionPolicy`: the owner's ACLs on the
/// topics go (and, for the `whole_product`, its transactional-id and group prefixes; the
/// cluster-wide IdempotentWrite is the domain's and stays); `Retain` keeps topics and tags
/// buckets orphaned, `Delete` deletes both with their data. A bucket another domain's tag
/// claims, or one already gone, is left alone.
pub fn release(
    product: &DataProduct,
    seen: &Seen,
    topics: &[String],
    buckets: &[String],
    whole_product: bool,
) -> Release {
    if topics.is_empty() && buckets.is_empty() {
        return Release::default();
    }
    let spec = &product.spec;
    let shared = desired::shared_idempotent_write_acl(&spec.domain);
    let acls = desired::owner_acls(&spec.domain, &product.name_any(), topics)
        .iter()
        .filter(|b| **b != shared)
        .filter(|b| whole_product || b.resource_type == AclResourceType::Topic)
        .map(AclBindingFilter::exact)
        .collect();
    let ours = |bucket: &String| match seen.buckets.get(bucket) {
        Some(BucketSeen::Present { tags, .. })
            if desired::tagged_for_another_domain(tags, &spec.domain).is_none() =>
        {
            Some(tags)
        }
        _ => None,
    };
    let (delete_topics, released, note) = match spec.deletion_policy {
        DeletionPolicy::Delete => (
            topics.to_vec(),
            buckets
                .iter()
                .filter(|bucket| ours(bucket).is_some())
                .map(|bucket| BucketRelease::Delete(bucket.clone()))
                .collect(),
            format!(
                "deletionPolicy Delete: deleted topics [{}] and buckets [{}] with their data.",
                topics.join(", "),
                buckets.join(", ")
            ),
        ),
        DeletionPolicy::Retain => (
            vec![],
            buckets
                .iter()
                .filter_map(|bucket| {
                    let mut tags = ours(bucket)?.clone();
                    tags.insert(desired::ORPHANED_TAG.to_owned(), "true".to_owned());
                    Some(BucketRelease::Tag(bucket.clone(), tags))
                })
                .collect(),
            format!(
                "deletionPolicy Retain: kept topics [{}] (no DataProduct claims them and their producer ACLs are removed) and buckets [{}] (tagged {}=true) with their data.",
                topics.join(", "),
                buckets.join(", "),
                desired::ORPHANED_TAG
            ),
        ),
    };
    Release {
        acls,
        delete_topics,
        buckets: released,
        note,
    }
}

/// What deleting a product does.
#[derive(Debug, Default)]
pub struct Cleanup {
    /// Its outputs, by deletionPolicy (empty for a product that never acted for its domain).
    pub release: Release,
    /// Its Spark objects to delete, by kind.
    pub spark: Vec<&'static str>,
    /// What the Event on the deleted product says.
    pub note: String,
}

/// Plan the deletion of a product: only what it owns (its domain's names that no older
/// product claims) is released; a product that never acted for its domain releases nothing
/// outside its namespace. Its Spark objects, ServiceAccount and RoleBinding always go.
pub fn plan_cleanup(product: &DataProduct, seen: &Observation) -> Cleanup {
    let spark = stale_spark_kinds(product, &seen.spark, None);
    let spec = &product.spec;
    if !seen.cluster.owners.acts_for_its_domain(product) {
        return Cleanup {
            spark,
            note: format!(
                "Nothing outside namespace {} was changed: the product never acted for domain {}, which does not own this namespace.",
                product.namespace().unwrap_or_default(),
                spec.domain
            ),
            ..Cleanup::default()
        };
    }
    let (topics, buckets) = owned_outputs(product, &seen.cluster);
    let release = release(product, &seen.external, &topics, &buckets, true);
    Cleanup {
        note: release.note.clone(),
        release,
        spark,
    }
}

/// The topics and buckets a deleted product owns: its domain's names, and of those none an
/// older product claims.
pub fn owned_outputs(product: &DataProduct, cluster: &Cluster) -> (Vec<String>, Vec<String>) {
    let spec = &product.spec;
    let everyone = cluster.acting();
    let topics = desired::topic_plans(&product.name_any(), spec)
        .into_iter()
        .map(|p| p.topic)
        .filter(|t| desired::topic_in_domain(t, &spec.domain))
        .filter(|t| desired::older_claimant(product, &everyone, t).is_none())
        .collect();
    let buckets = desired::bucket_plans(product)
        .into_iter()
        .map(|p| p.bucket)
        .filter(|b| {
            cluster
                .owners
                .bucket_domain_other_than(b, &spec.domain)
                .is_none()
        })
        .filter(|b| desired::older_claimant(product, &everyone, b).is_none())
        .collect();
    (topics, buckets)
}
