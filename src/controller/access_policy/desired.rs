//! What the AccessPolicies of one data product should make, computed from the policies, the
//! product and the domains alone. Pure: no I/O, the current time is passed in.
//!
//! The unit of work is the *product*, not the policy: every reconcile of any policy of a
//! product evaluates all of that product's live policies, derives the union of their grants,
//! and makes the product's ACLs, bucket policies, RBAC and connection ConfigMaps match that
//! union. That is what makes grants count across policies: revoking one policy removes only
//! what no other live policy still gives.
//!
//! Bucket grants are written in the policy of each of the product's buckets (see
//! [`crate::provision::storage::bucket_policy`]), and only on a bucket the product holds: its
//! status lists it, which the DataProduct controller writes once the bucket's tags say it is
//! the domain's. Bucket names are `<domain>-<product>-<port>`, so a product `pay-orders` of a
//! domain `shop` names the bucket of product `orders` of a domain `shop-pay`; the name alone
//! must never open a bucket.
//!
//! Identities: a `domain` consumer is granted as that domain (`User:<domain>` in Kafka, IAM user
//! `<domain>`, its `datamesh-workload` ServiceAccount and its owners in RBAC). A
//! `serviceAccount` consumer has no Kafka or S3 identity of its own: workloads authenticate
//! with their domain's credentials Secret, so the Kafka and S3 grants go to the domain that
//! owns the ServiceAccount's namespace, and only RBAC names the single ServiceAccount.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::ObjectMeta;

use crate::api::access_policy::{Access, AccessPolicy, AccessPolicyStatus, Consumer, Grant};
use crate::api::conditions::{Outcome, set_progress};
use crate::api::data_product::{Classification, DataProduct, Lifecycle};
use crate::api::domain::{Domain, Owner, OwnerKind};
use crate::api::naming::{bucket_name, kafka_principal, topic_name};
use crate::controller::apply::{
    CLASSIFICATION_LABEL, DATA_PRODUCT_LABEL, domain_labels, product_labels,
};
use crate::controller::domain::desired::{WORKLOAD_SERVICE_ACCOUNT, storage_user};
use crate::controller::tenancy::{NAMESPACE_NOT_OWNED, Owners, owned_namespace};
use crate::provision::kafka::{AclBinding, AclOperation, AclPatternType, AclResourceType};
use crate::provision::storage::policy::BucketAccess;

/// Label on a connection ConfigMap naming the producing domain it describes.
pub const SOURCE_DOMAIN_LABEL: &str = "datamesh.dev/source-domain";
/// Label on a connection ConfigMap naming the producing data product it describes.
pub const SOURCE_PRODUCT_LABEL: &str = "datamesh.dev/source-data-product";

/// Where an output port's data lives.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortTarget {
    /// A Kafka topic.
    Topic(String),
    /// An object-storage bucket.
    Bucket(String),
}

/// The producing data product, as grants need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Product {
    /// The owning domain.
    pub domain: String,
    /// The DataProduct's name.
    pub name: String,
    /// Its lifecycle stage.
    pub lifecycle: Lifecycle,
    /// Its classification.
    pub classification: Classification,
    /// Its output ports by name, with where each one's data lives.
    pub ports: BTreeMap<String, PortTarget>,
    /// The buckets it holds (its status lists them): the only buckets its grants reach.
    pub held_buckets: BTreeSet<String>,
    /// It is being deleted: its buckets' consumers lose the access the operator gave them.
    pub deleting: bool,
}

impl Product {
    /// The grant-relevant view of a DataProduct.
    pub fn of(product: &DataProduct) -> Self {
        let name = product.name_any();
        let spec = &product.spec;
        let ports = spec
            .output_ports
            .iter()
            .filter_map(|port| {
                let target = match (spec.topic_name(&name, port), spec.bucket_name(&name, port)) {
                    (Some(topic), _) => PortTarget::Topic(topic),
                    (None, Some(bucket)) => PortTarget::Bucket(bucket),
                    (None, None) => return None,
                };
                Some((port.name.clone(), target))
            })
            .collect();
        let held_buckets = product
            .status
            .iter()
            .flat_map(|status| &status.output_ports)
            .filter_map(|port| port.bucket.clone())
            .collect();
        Self {
            domain: spec.domain.clone(),
            name,
            lifecycle: spec.status,
            classification: spec.classification,
            ports,
            held_buckets,
            deleting: product.metadata.deletion_timestamp.is_some(),
        }
    }
}

/// A domain, as grants need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainInfo {
    /// The Domain's name: its Kafka user and IAM user.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its owners, who get RBAC with its grants.
    pub owners: Vec<Owner>,
}

impl DomainInfo {
    /// The grant-relevant view of a Domain; `None` until it has recorded the namespace it owns
    /// (before that it can neither grant nor be granted anything).
    pub fn of(domain: &Domain) -> Option<Self> {
        Some(Self {
            name: domain.name_any(),
            namespace: owned_namespace(domain)?.to_owned(),
            owners: domain.spec.owners.clone(),
        })
    }
}

/// A Kubernetes RBAC subject, ordered so that sets of them are deterministic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RbacSubject {
    /// `User`, `Group` or `ServiceAccount`.
    pub kind: String,
    /// The subject's name.
    pub name: String,
    /// The namespace, for a ServiceAccount.
    pub namespace: Option<String>,
}

impl RbacSubject {
    fn service_account(namespace: &str, name: &str) -> Self {
        Self {
            kind: "ServiceAccount".into(),
            name: name.to_owned(),
            namespace: Some(namespace.to_owned()),
        }
    }

    fn of_owner(owner: &Owner) -> Self {
        let kind = match owner.kind {
            OwnerKind::User => "User",
            OwnerKind::Group => "Group",
            OwnerKind::ServiceAccount => "ServiceAccount",
        };
        Self {
            kind: kind.into(),
            name: owner.name.clone(),
            namespace: owner.namespace.clone(),
        }
    }

    /// The subject as a RoleBinding lists it.
    pub fn to_subject(&self) -> Subject {
        let api_group = (self.kind != "ServiceAccount").then(|| "rbac.authorization.k8s.io".into());
        Subject {
            kind: self.kind.clone(),
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            api_group,
        }
    }
}

/// One consumer's access to one output port, as one policy grants it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortGrant {
    /// The consumer as `status.grants` names it (`domain:<d>` or `serviceAccount:<ns>/<sa>`).
    pub consumer: String,
    /// The domain whose Kafka principal and IAM user carry the grant.
    pub identity: String,
    /// The consumer's namespace, where its connection ConfigMaps go.
    pub namespace: String,
    /// Who may `get` the DataProduct.
    pub subjects: Vec<RbacSubject>,
    /// The output port.
    pub port: String,
    /// Where the port's data lives.
    pub target: PortTarget,
    /// Read or read-write.
    pub access: Access,
}

/// What one policy comes to: its kstatus outcome and the grants it gives now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    /// Ready, or Stalled with the reason.
    pub outcome: Outcome,
    /// What it grants; empty unless the policy is valid, unexpired and the product not retired.
    pub grants: Vec<PortGrant>,
}

impl Evaluation {
    /// A policy that may not act (see [`authority`]): it grants nothing.
    pub fn refused(refusal: Outcome) -> Self {
        Self {
            outcome: refusal,
            grants: vec![],
        }
    }

    fn stalled(reason: &str, message: String) -> Self {
        Self {
            outcome: Outcome::stalled(reason, message),
            grants: vec![],
        }
    }

    /// Nothing granted yet, waiting for something that is expected to arrive on its own.
    fn waiting(reason: &str, message: String) -> Self {
        Self {
            outcome: Outcome::reconciling(reason, message),
            grants: vec![],
        }
    }
}

/// Who the policies of a namespace act for, and the product they may grant on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authority {
    /// No Domain owns the namespace: its policies grant and revoke nothing at all.
    Nobody(Outcome),
    /// The namespace's domain is the producer, whatever any spec says.
    Producer {
        /// The domain that owns the namespace.
        domain: String,
        /// The product the policy names, if it exists and acts for that domain.
        product: Option<Product>,
        /// Why the named product is no product to grant on (its spec names another domain).
        refusal: Option<Outcome>,
    },
}

/// Decide who a policy in `namespace`, naming `product` (as found in that namespace), acts
/// for. A copy of another domain's product (its `spec.domain` names that domain) is no product
/// at all here: the grants of the namespace's domain are computed without it, so it can
/// neither grant access to the other domain's data nor revoke its consumers'.
pub fn authority(namespace: &str, product: Option<&DataProduct>, owners: &Owners) -> Authority {
    let Some(domain) = owners.domain_of(namespace) else {
        let refusal = owners
            .refusal("AccessPolicy", namespace, "")
            .unwrap_or_else(|| Outcome::reconciling(NAMESPACE_NOT_OWNED, namespace.to_owned()));
        return Authority::Nobody(refusal);
    };
    let refusal = product.and_then(|p| owners.refusal("DataProduct", namespace, &p.spec.domain));
    Authority::Producer {
        domain: domain.to_owned(),
        product: product.filter(|_| refusal.is_none()).map(Product::of),
        refusal,
    }
}

/// Whether the policy has an `expiresAt` at or before `now`.
pub fn is_expired(policy: &AccessPolicy, now: Timestamp) -> bool {
    policy
        .spec
        .expires_at
        .as_ref()
        .is_some_and(|expiry| expiry.0 <= now)
}

/// Decide what one policy grants. `product` is the DataProduct it names (`None` when missing);
/// `domains` are all Domains. A deprecated product keeps only the grants the policy already
/// reported in `status.grants`: it accepts no new consumers.
pub fn evaluate(
    policy: &AccessPolicy,
    product: Option<&Product>,
    domains: &[DomainInfo],
    now: Timestamp,
) -> Evaluation {
    let spec = &policy.spec;
    let namespace = policy.namespace().unwrap_or_default();
    let Some(product) = product else {
        // Waited for, not Stalled: delivered from Git, a policy is often applied before its
        // product, and the product's arrival triggers this policy again.
        return Evaluation::waiting(
            "DataProductNotFound",
            format!(
                "DataProduct {namespace}/{} does not exist (yet); the policy grants nothing until it does.",
                spec.data_product
            ),
        );
    };
    let missing_ports: Vec<&str> = spec
        .ports
        .iter()
        .filter(|port| !product.ports.contains_key(*port))
        .map(String::as_str)
        .collect();
    if !missing_ports.is_empty() {
        return Evaluation::stalled(
            "PortNotFound",
            format!(
                "DataProduct {namespace}/{} has no output port {}; the policy grants nothing.",
                product.name,
                missing_ports.join(", ")
            ),
        );
    }

    let mut resolved = Vec::new();
    let mut unresolved = Vec::new();
    for consumer in &spec.consumers {
        match resolve_consumer(consumer, domains) {
            Some(found) => resolved.push(found),
            None => unresolved.push(describe_unresolved(consumer)),
        }
    }
    if !unresolved.is_empty() {
        return Evaluation::stalled(
            "ConsumerNotFound",
            format!("{}; the policy grants nothing.", unresolved.join("; ")),
        );
    }
    if let Some(own) = resolved.iter().find(|c| c.identity == product.domain) {
        return Evaluation::stalled(
            "ConsumerIsProducer",
            format!(
                "Consumer {} belongs to domain {}, which owns {}; a domain needs no grant to its own products. The policy grants nothing.",
                own.key, product.domain, product.name
            ),
        );
    }

    if product.classification == Classification::Restricted {
        let has_purpose = spec
            .purpose
            .as_deref()
            .is_some_and(|p| !p.trim().is_empty());
        if !has_purpose || spec.expires_at.is_none() {
            return Evaluation::stalled(
                "RestrictedNeedsPurposeAndExpiry",
                format!(
                    "DataProduct {} is restricted: a policy for it must set spec.purpose and spec.expiresAt; the policy grants nothing.",
                    product.name
                ),
            );
        }
    }
    if product.lifecycle == Lifecycle::Retired {
        return Evaluation::stalled(
            "ProductRetired",
            format!(
                "DataProduct {} is retired; its grants are revoked.",
                product.name
            ),
        );
    }
    if let Some(expiry) = &spec.expires_at
        && expiry.0 <= now
    {
        return Evaluation::stalled(
            "Expired",
            format!(
                "The policy expired at {}; its grants are revoked.",
                expiry.0
            ),
        );
    }

    let mut grants = Vec::new();
    for consumer in &resolved {
        for (port, target) in &product.ports {
            if !spec.covers_port(port) {
                continue;
            }
            // Not (yet) the product's bucket: granted once the product holds it.
            if let PortTarget::Bucket(bucket) = target
                && !product.held_buckets.contains(bucket)
            {
                continue;
            }
            grants.push(PortGrant {
                consumer: consumer.key.clone(),
                identity: consumer.identity.clone(),
                namespace: consumer.namespace.clone(),
                subjects: consumer.subjects.clone(),
                port: port.clone(),
                target: target.clone(),
                access: spec.access,
            });
        }
    }

    if product.lifecycle == Lifecycle::Deprecated {
        let existing: BTreeSet<(&str, &str)> = policy
            .status
            .iter()
            .flat_map(|status| &status.grants)
            .map(|grant| (grant.consumer.as_str(), grant.port.as_str()))
            .collect();
        let (kept, refused): (Vec<PortGrant>, Vec<PortGrant>) = grants
            .into_iter()
            .partition(|g| existing.contains(&(g.consumer.as_str(), g.port.as_str())));
        if !refused.is_empty() {
            let refused: BTreeSet<String> = refused
                .iter()
                .map(|g| format!("{} on {}", g.consumer, g.port))
                .collect();
            return Evaluation {
                outcome: Outcome::stalled(
                    "ProductDeprecated",
                    format!(
                        "DataProduct {} is deprecated and accepts no new consumers: refused {}; existing grants stay.",
                        product.name,
                        refused.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                ),
                grants: kept,
            };
        }
        grants = kept;
    }

    let message = if grants.is_empty() {
        "The policy covers no output port; nothing is granted.".to_owned()
    } else {
        format!(
            "Granted {} access to {} on {} port(s) of {}.",
            access_word(spec.access),
            spec.consumers
                .iter()
                .map(Consumer::key)
                .collect::<Vec<_>>()
                .join(", "),
            grants
                .iter()
                .map(|g| g.port.as_str())
                .collect::<BTreeSet<_>>()
                .len(),
            product.name
        )
    };
    Evaluation {
        outcome: Outcome::ready("Granted", message),
        grants,
    }
}

fn access_word(access: Access) -> &'static str {
    match access {
        Access::Read => "read",
        Access::ReadWrite => "readWrite",
    }
}

struct ResolvedConsumer {
    key: String,
    identity: String,
    namespace: String,
    subjects: Vec<RbacSubject>,
}

fn resolve_consumer(consumer: &Consumer, domains: &[DomainInfo]) -> Option<ResolvedConsumer> {
    match (&consumer.domain, &consumer.service_account) {
        (Some(name), _) => {
            let domain = domains.iter().find(|d| d.name == *name)?;
            let mut subjects = vec![RbacSubject::service_account(
                &domain.namespace,
                WORKLOAD_SERVICE_ACCOUNT,
            )];
            subjects.extend(domain.owners.iter().map(RbacSubject::of_owner));
            Some(ResolvedConsumer {
                key: consumer.key(),
                identity: domain.name.clone(),
                namespace: domain.namespace.clone(),
                subjects,
            })
        }
        (None, Some(sa)) => {
            let domain = domains.iter().find(|d| d.namespace == sa.namespace)?;
            Some(ResolvedConsumer {
                key: consumer.key(),
                identity: domain.name.clone(),
                namespace: domain.namespace.clone(),
                subjects: vec![RbacSubject::service_account(&sa.namespace, &sa.name)],
            })
        }
        (None, None) => None,
    }
}

fn describe_unresolved(consumer: &Consumer) -> String {
    match (&consumer.domain, &consumer.service_account) {
        (Some(name), _) => format!("Domain {name} does not exist or has no namespace yet"),
        (None, Some(sa)) => format!(
            "ServiceAccount {}/{}: namespace {} belongs to no Domain",
            sa.namespace, sa.name, sa.namespace
        ),
        (None, None) => "a consumer names neither a domain nor a ServiceAccount".to_owned(),
    }
}

/// The Kafka ACLs on a topic that carry one grant: Read and Describe (and Write for
/// `readWrite`) on the topic, literally.
pub fn topic_bindings(topic: &str, identity: &str, access: Access) -> Vec<AclBinding> {
    let mut operations = vec![AclOperation::Read, AclOperation::Describe];
    if access == Access::ReadWrite {
        operations.push(AclOperation::Write);
    }
    AclBinding::allow_each(
        AclResourceType::Topic,
        AclPatternType::Literal,
        topic,
        &kafka_principal(identity),
        &operations,
    )
}

/// The consumer-group ACL every Kafka grant needs: Read on the groups prefixed `<domain>.`,
/// so a consumer domain uses groups under its own name and cannot join anyone else's.
pub fn group_binding(identity: &str) -> AclBinding {
    AclBinding::allow(
        AclResourceType::Group,
        AclPatternType::Prefixed,
        format!("{identity}."),
        kafka_principal(identity),
        AclOperation::Read,
    )
}

/// How many ACLs carry a Kafka grant (topic bindings plus the group binding).
pub fn kafka_acl_count(access: Access) -> i32 {
    match access {
        Access::Read => 3,
        Access::ReadWrite => 4,
    }
}

fn bucket_access(access: Access) -> BucketAccess {
    match access {
        Access::Read => BucketAccess::Read,
        Access::ReadWrite => BucketAccess::ReadWrite,
    }
}

/// The union of the grants of a product's live policies, in the terms of each system.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    /// ACLs on the product's topics.
    pub topic_acls: BTreeSet<AclBinding>,
    /// Domains that hold a Kafka grant, and so need their consumer-group ACL.
    pub kafka_identities: BTreeSet<String>,
    /// Bucket access per (IAM user, bucket): the highest level any policy grants.
    pub bucket_access: BTreeMap<(String, String), BucketAccess>,
    /// Who may `get` the DataProduct.
    pub rbac_subjects: BTreeSet<RbacSubject>,
}

/// The union of grants, in the terms of each system.
pub fn desired<'a>(grants: impl IntoIterator<Item = &'a PortGrant>) -> Desired {
    let mut desired = Desired::default();
    for grant in grants {
        desired.rbac_subjects.extend(grant.subjects.iter().cloned());
        match &grant.target {
            PortTarget::Topic(topic) => {
                desired
                    .topic_acls
                    .extend(topic_bindings(topic, &grant.identity, grant.access));
                desired.kafka_identities.insert(grant.identity.clone());
            }
            PortTarget::Bucket(bucket) => {
                let level = desired
                    .bucket_access
                    .entry((storage_user(&grant.identity), bucket.clone()))
                    .or_insert(bucket_access(grant.access));
                *level = (*level).max(bucket_access(grant.access));
            }
        }
    }
    desired
}

/// The ACL changes that make a product's topics carry exactly the desired grants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AclChanges {
    /// Bindings to create.
    pub create: Vec<AclBinding>,
    /// Bindings to delete.
    pub delete: Vec<AclBinding>,
}

/// Diff the desired topic ACLs against those found on the product's topics. Every `Allow`
/// binding on a product topic for a principal other than the producing domain's is a grant
/// (an AccessPolicy is the only way across domains), so one no policy declares is deleted.
/// The producer's own bindings and `Deny` bindings are never touched.
pub fn acl_changes(
    desired: &BTreeSet<AclBinding>,
    actual: &[AclBinding],
    producer_principal: &str,
) -> AclChanges {
    let actual: BTreeSet<&AclBinding> = actual.iter().collect();
    let create = desired
        .iter()
        .filter(|binding| !actual.contains(binding))
        .cloned()
        .collect();
    let delete = actual
        .iter()
        .filter(|binding| {
            binding.resource_type == AclResourceType::Topic
                && binding.permission == crate::provision::kafka::AclPermission::Allow
                && binding.principal != producer_principal
                && !desired.contains(*binding)
        })
        .map(|binding| (*binding).clone())
        .collect();
    AclChanges { create, delete }
}

/// The Role and RoleBinding that let consumers read a product: named after the product.
pub fn consumers_role_name(product: &str) -> String {
    format!("datamesh-consumers-{product}")
}

fn product_meta(name: &str, namespace: &str, product: &Product) -> ObjectMeta {
    let labels = product_labels(&product.domain, &product.name, product.classification);
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels),
        ..ObjectMeta::default()
    }
}

/// The Role letting consumers `get` the one DataProduct, and nothing else (no Secrets).
pub fn consumers_role(namespace: &str, product: &Product) -> Role {
    Role {
        metadata: product_meta(&consumers_role_name(&product.name), namespace, product),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![crate::api::GROUP.to_owned()]),
            resources: Some(vec!["dataproducts".into()]),
            resource_names: Some(vec![product.name.clone()]),
            verbs: vec!["get".into()],
            non_resource_urls: None,
        }]),
    }
}

/// The RoleBinding of every granted consumer subject to [`consumers_role`].
pub fn consumers_role_binding(
    namespace: &str,
    product: &Product,
    subjects: &BTreeSet<RbacSubject>,
) -> RoleBinding {
    let name = consumers_role_name(&product.name);
    RoleBinding {
        metadata: product_meta(&name, namespace, product),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name,
        },
        subjects: Some(subjects.iter().map(RbacSubject::to_subject).collect()),
    }
}

/// Where a workload connects: the endpoints the ConfigMaps carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// Kafka bootstrap servers.
    pub kafka_bootstrap_servers: String,
    /// The S3 endpoint.
    pub s3_endpoint: String,
}

/// The connection ConfigMaps for granted input ports: for each grant, each consumer
/// DataProduct in the consumer's namespace whose input port reads this product's port gets a
/// ConfigMap named after the input port. Credentials are not here: they stay in the consumer
/// domain's own Secret.
pub fn connection_config_maps<'a>(
    product: &Product,
    grants: impl IntoIterator<Item = &'a PortGrant>,
    consumers: &[DataProduct],
    endpoints: &Endpoints,
) -> Vec<ConfigMap> {
    let mut maps: BTreeMap<(String, String), ConfigMap> = BTreeMap::new();
    for grant in grants {
        for consumer in consumers {
            if consumer.namespace().as_deref() != Some(grant.namespace.as_str()) {
                continue;
            }
            for input in &consumer.spec.input_ports {
                let reference = &input.data_product;
                if reference.domain != product.domain
                    || reference.name != product.name
                    || reference.port != grant.port
                {
                    continue;
                }
                let mut data = BTreeMap::new();
                match &grant.target {
                    PortTarget::Topic(topic) => {
                        data.insert("type".to_owned(), "kafka".to_owned());
                        data.insert(
                            "bootstrapServers".to_owned(),
                            endpoints.kafka_bootstrap_servers.clone(),
                        );
                        data.insert("topic".to_owned(), topic.clone());
                    }
                    PortTarget::Bucket(bucket) => {
                        data.insert("type".to_owned(), "bucket".to_owned());
                        data.insert("bucket".to_owned(), bucket.clone());
                        data.insert("endpoint".to_owned(), endpoints.s3_endpoint.clone());
                    }
                }
                // The consumer's (who pays for it), with the classification of the data it
                // points at, which is the producer's.
                let mut labels = domain_labels(&consumer.spec.domain);
                labels.insert(DATA_PRODUCT_LABEL.to_owned(), consumer.name_any());
                labels.insert(
                    CLASSIFICATION_LABEL.to_owned(),
                    crate::export::classification(product.classification),
                );
                labels.insert(SOURCE_DOMAIN_LABEL.to_owned(), product.domain.clone());
                labels.insert(SOURCE_PRODUCT_LABEL.to_owned(), product.name.clone());
                let map = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(input.name.clone()),
                        namespace: Some(grant.namespace.clone()),
                        labels: Some(labels),
                        ..ObjectMeta::default()
                    },
                    data: Some(data),
                    ..ConfigMap::default()
                };
                maps.insert((grant.namespace.clone(), input.name.clone()), map);
            }
        }
    }
    maps.into_values().collect()
}

/// Where grants for a product live when the product itself is gone: the conventional topic
/// and bucket names of every port any policy reported, so their grants can still be revoked.
pub fn targets_from_status<'a>(
    producer_domain: &str,
    product: &str,
    statuses: impl IntoIterator<Item = &'a AccessPolicyStatus>,
) -> BTreeSet<PortTarget> {
    let mut targets = BTreeSet::new();
    for grant in statuses.into_iter().flat_map(|s| &s.grants) {
        if grant.kafka_acls.is_some() {
            targets.insert(PortTarget::Topic(topic_name(
                producer_domain,
                product,
                &grant.port,
            )));
        }
        if grant.bucket.is_some() {
            targets.insert(PortTarget::Bucket(bucket_name(
                producer_domain,
                product,
                &grant.port,
            )));
        }
    }
    targets
}

/// `status.grants` for one policy's grants, sorted by consumer and port.
pub fn status_grants(grants: &[PortGrant]) -> Vec<Grant> {
    let mut out: Vec<Grant> = grants
        .iter()
        .map(|grant| Grant {
            consumer: grant.consumer.clone(),
            port: grant.port.clone(),
            kafka_acls: matches!(grant.target, PortTarget::Topic(_))
                .then(|| kafka_acl_count(grant.access)),
            bucket: matches!(grant.target, PortTarget::Bucket(_)).then_some(grant.access),
        })
        .collect();
    out.sort_by(|a, b| (&a.consumer, &a.port).cmp(&(&b.consumer, &b.port)));
    out.dedup();
    out
}

/// The status a policy should show. Unchanged conditions keep their transition time, so an
/// unchanged world gives an equal status and no write.
pub fn desired_status(
    policy: &AccessPolicy,
    current: &AccessPolicyStatus,
    evaluation: &Evaluation,
    now: Timestamp,
) -> AccessPolicyStatus {
    let mut status = current.clone();
    set_progress(
        &mut status.conditions,
        &evaluation.outcome,
        policy.metadata.generation,
        &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now),
    );
    status.observed_generation = policy.metadata.generation;
    status.grants = status_grants(&evaluation.grants);
    status
}

/// What changed between two `status.grants` lists: (granted, revoked), each as
/// `consumer on port` phrases.
pub fn grant_transitions(before: &[Grant], after: &[Grant]) -> (Vec<String>, Vec<String>) {
    let phrase = |g: &Grant| format!("{} on {}", g.consumer, g.port);
    let before_set: BTreeSet<String> = before.iter().map(phrase).collect();
    let after_set: BTreeSet<String> = after.iter().map(phrase).collect();
    (
        after_set.difference(&before_set).cloned().collect(),
        before_set.difference(&after_set).cloned().collect(),
    )
}

/// How long until the policy's `expiresAt`, if it lies ahead.
pub fn until_expiry(policy: &AccessPolicy, now: Timestamp) -> Option<std::time::Duration> {
    let expiry = policy.spec.expires_at.as_ref()?;
    let millis = expiry.0.as_millisecond() - now.as_millisecond();
    u64::try_from(millis)
        .ok()
        .filter(|ms| *ms > 0)
        .map(std::time::Duration::from_millis)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::access_policy::AccessPolicySpec;
    use crate::api::conditions::Progress;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    pub fn product(lifecycle: Lifecycle, classification: Classification) -> Product {
        Product {
            domain: "payments".into(),
            name: "orders".into(),
            lifecycle,
            classification,
            ports: BTreeMap::from([
                (
                    "events".to_owned(),
                    PortTarget::Topic("payments.orders.events".into()),
                ),
                (
                    "lake".to_owned(),
                    PortTarget::Bucket("payments-orders-lake".into()),
                ),
            ]),
            held_buckets: BTreeSet::from(["payments-orders-lake".to_owned()]),
            deleting: false,
        }
    }

    pub fn domains() -> Vec<DomainInfo> {
        ["payments", "marketing", "bi"]
            .into_iter()
            .map(|name| DomainInfo {
                name: name.into(),
                namespace: format!("{name}-ns"),
                owners: vec![Owner {
                    kind: OwnerKind::Group,
                    name: format!("{name}-team"),
                    namespace: None,
                }],
            })
            .collect()
    }

    pub fn policy(name: &str, spec: serde_json::Value) -> AccessPolicy {
        let spec: AccessPolicySpec = serde_json::from_value(spec).unwrap();
        let mut policy = AccessPolicy::new(name, spec);
        policy.metadata.namespace = Some("payments-ns".into());
        policy.metadata.generation = Some(1);
        policy
    }

    #[test]
    fn a_policy_acts_only_for_its_namespace_domain_and_never_on_a_copied_product() {
        use crate::api::domain::{DomainSpec, DomainStatus};
        let domain = |name: &str| {
            let mut d = Domain::new(
                name,
                serde_json::from_value::<DomainSpec>(serde_json::json!({})).unwrap(),
            );
            d.status = Some(DomainStatus {
                namespace: Some(name.to_owned()),
                ..DomainStatus::default()
            });
            d
        };
        let domains = [domain("payments"), domain("mallory")];
        let owners = Owners::of(&domains);
        let product_in = |namespace: &str, claimed: &str| {
            let mut p = crate::controller::data_product::desired::tests::product(
                "orders",
                1,
                serde_json::json!({"domain": claimed, "outputPorts": [{"name": "events", "kafka": {}}]}),
            );
            p.metadata.namespace = Some(namespace.to_owned());
            p
        };

        // The producer's own product: granted on, as the producer.
        let real = product_in("payments", "payments");
        match authority("payments", Some(&real), &owners) {
            Authority::Producer {
                domain,
                product,
                refusal,
            } => {
                assert_eq!(domain, "payments");
                assert_eq!(
                    product.map(|p| p.ports),
                    Some(BTreeMap::from([(
                        "events".to_owned(),
                        PortTarget::Topic("payments.orders.events".to_owned())
                    )]))
                );
                assert_eq!(refusal, None);
            }
            other => panic!("{other:?}"),
        }
        // Mallory's copy naming payments: mallory is the producer, with no product at all, so
        // nothing on payments' topic can be granted or revoked.
        let copy = product_in("mallory", "payments");
        match authority("mallory", Some(&copy), &owners) {
            Authority::Producer {
                domain,
                product,
                refusal,
            } => {
                assert_eq!(domain, "mallory");
                assert_eq!(product, None);
                assert_eq!(refusal.map(|r| r.reason), Some("WrongNamespace".to_owned()));
            }
            other => panic!("{other:?}"),
        }
        // A namespace no Domain owns: nobody.
        match authority("scratch", Some(&product_in("scratch", "payments")), &owners) {
            Authority::Nobody(refusal) => assert_eq!(refusal.reason, NAMESPACE_NOT_OWNED),
            other => panic!("{other:?}"),
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    fn active() -> Product {
        product(Lifecycle::Active, Classification::Internal)
    }

    #[test]
    fn a_domain_consumer_gets_every_port_by_default() {
        let p = policy(
            "p",
            serde_json::json!({"dataProduct": "orders", "consumers": [{"domain": "marketing"}]}),
        );
        let evaluation = evaluate(&p, Some(&active()), &domains(), at(0));
        assert_eq!(evaluation.outcome.progress, Progress::Ready);
        let ports: Vec<_> = evaluation.grants.iter().map(|g| g.port.as_str()).collect();
        assert_eq!(ports, ["events", "lake"]);
        let grant = &evaluation.grants[0];
        assert_eq!(grant.identity, "marketing");
        assert_eq!(grant.namespace, "marketing-ns");
        assert_eq!(
            grant.subjects,
            [
                RbacSubject::service_account("marketing-ns", "datamesh-workload"),
                RbacSubject {
                    kind: "Group".into(),
                    name: "marketing-team".into(),
                    namespace: None
                }
            ]
        );
    }

    #[test]
    fn a_service_account_consumer_is_granted_as_its_namespace_domain() {
        let p = policy(
            "p",
            serde_json::json!({"dataProduct": "orders", "ports": ["events"],
                "consumers": [{"serviceAccount": {"namespace": "bi-ns", "name": "dashboards"}}]}),
        );
        let evaluation = evaluate(&p, Some(&active()), &domains(), at(0));
        assert_eq!(evaluation.grants.len(), 1);
        let grant = &evaluation.grants[0];
        assert_eq!(grant.consumer, "serviceAccount:bi-ns/dashboards");
        assert_eq!(grant.identity, "bi");
        assert_eq!(
            grant.subjects,
            [RbacSubject::service_account("bi-ns", "dashboards")]
        );
    }

    #[test]
    fn missing_product_waits_missing_port_or_consumer_stalls_and_all_grant_nothing() {
        let p = policy(
            "p",
            serde_json::json!({"dataProduct": "orders", "consumers": [{"domain": "marketing"}]}),
        );
        // A product not applied yet is waited for (GitOps applies in any order).
        let none = evaluate(&p, None, &domains(), at(0));
        assert_eq!(none.outcome.reason, "DataProductNotFound");
        assert_eq!(none.outcome.progress, Progress::Reconciling);
        assert!(none.grants.is_empty());

        let p = policy(
            "p",
            serde_json::json!({"dataProduct": "orders", "ports": ["nope"], "consumers": [{"domain": "marketing"}]}),
        );
        let port = evaluate(&p, Some(&active()), &domains(), at(0));
        assert_eq!(port.outcome.progress, Progress::Stalled);
        assert!(port.outcome.message.contains("nope"), "{port:?}");
        assert!(port.grants.is_empty());

        let p = policy(
            "p",
            serde_json::json!({"dataProduct": "orders",
                "consumers": [{"domain": "marketing"}, {"domain": "ghost"},
                              {"serviceAccount": {"namespace": "nowhere", "name": "x"}}]}),
        );
        let consumer = evaluate(&p, Some(&active()), &domains(), at(0));
        assert_eq!(consumer.outcome.reason, "ConsumerNotFound");
        assert!(consumer.outcome.message.contains("ghost"));
        assert!(consumer.outcome.message.contains("nowhere"));
        assert!(consumer.grants.is_empty());
    }

    #[test]
    fn the_producer_cannot_be_its_own_consumer() {
        let p = policy(
            "p",
            serde_json::json!({"dataProduct": "orders", "consumers": [{"domain": "payments"}]}),
        );
        let evaluation = evaluate(&p, Some(&active()), &domains(), at(0));
        assert_eq!(evaluation.outcome.reason, "ConsumerIsProducer");
        assert!(evaluation.grants.is_empty());
    }

    #[test]
    fn restricted_products_need_purpose_and_expiry() {
        let restricted = product(Lifecycle::Active, Classification::Restricted);
        let p = policy(
            "p",
            serde_json::json!({"dataProduct": "orders", "consumers": [{"domain": "marketing"}],
                "purpose": "fraud analysis"}),
        );
        let evaluation = evaluate(&p, Some(&restricted), &domains(), at(0));
        assert_eq!(evaluation.outcome.reason, "RestrictedNeedsPurposeAndExpiry");
        assert!(evaluation.grants.is_empty());

        let p = policy(
            "p",
            serde_json::json!({"dataProduct": "orders", "consumers": [{"domain": "marketing"}],
                "purpose": "fraud analysis", "expiresAt": "2030-01-01T00:00:00Z"}),
        );
        let evaluation = evaluate(&p, Some(&restricted), &domains(), at(0));
        assert_eq!(evaluation.outcome.progress, Progress::Ready);
        assert_eq!(evaluation.grants.len(), 2);
    }

    #[test]
    fn expiry_and_retirement_revoke() {
        let p = policy(
            "p",
            serde_json::json!({"dataProduct": "orders", "consumers": [{"domain": "marketing"}],
                "expiresAt": "1970-01-01T00:01:40Z"}),
        );
        assert_eq!(
            evaluate(&p, Some(&active()), &domains(), at(99))
                .grants
                .len(),
            2
        );
        assert_eq!(
            until_expiry(&p, at(99)),
            Some(std::time::Duration::from_secs(1))
        );
        let expired = evaluate(&p, Some(&active()), &domains(), at(100));
        assert_eq!(expired.outcome.reason, "Expired");
        assert!(expired.grants.is_empty());
        assert!(is_expired(&p, at(100)));
        assert_eq!(until_expiry(&p, at(100)), None);

        let retired = product(Lifecycle::Retired, Classification::Internal);
        let p = policy(
            "p",
            serde_json::json!({"dataProduct": "orders", "consumers": [{"domain": "marketing"}]}),
        );
        let evaluation = evaluate(&p, Some(&retired), &domains(), at(0));
        assert_eq!(evaluation.outcome.reason, "ProductRetired");
        assert!(evaluation.grants.is_empty());
    }

    #[test]
    fn a_deprecated_product_keeps_existing_grants_and_refuses_new_ones() {
        let deprecated = product(Lifecycle::Deprecated, Classification::Internal);
        let mut p = policy(
            "p",
            serde_json::json!({"dataProduct": "orders", "ports": ["events"],
                "consumers": [{"domain": "marketing"}, {"domain": "bi"}]}),
        );
        p.status = Some(AccessPolicyStatus {
            grants: vec![Grant {
                consumer: "domain:marketing".into(),
                port: "events".into(),
                kafka_acls: Some(3),
                bucket: None,
            }],
            ..AccessPolicyStatus::default()
        });
        let evaluation = evaluate(&p, Some(&deprecated), &domains(), at(0));
        assert_eq!(evaluation.outcome.reason, "ProductDeprecated");
        assert!(evaluation.outcome.message.contains("domain:bi on events"));
        let kept: Vec<_> = evaluation
            .grants
            .iter()
            .map(|g| g.consumer.as_str())
            .collect();
        assert_eq!(kept, ["domain:marketing"]);
    }

    #[test]
    fn read_gives_read_describe_and_the_group_prefix_read_write_adds_write() {
        let read = topic_bindings("payments.orders.events", "marketing", Access::Read);
        let ops: Vec<_> = read.iter().map(|b| b.operation).collect();
        assert_eq!(ops, [AclOperation::Read, AclOperation::Describe]);
        assert!(
            read.iter()
                .all(|b| b.principal == "User:marketing"
                    && b.pattern_type == AclPatternType::Literal)
        );
        let rw = topic_bindings("payments.orders.events", "marketing", Access::ReadWrite);
        assert!(rw.iter().any(|b| b.operation == AclOperation::Write));
        let group = group_binding("marketing");
        assert_eq!(group.resource_type, AclResourceType::Group);
        assert_eq!(group.pattern_type, AclPatternType::Prefixed);
        assert_eq!(group.resource_name, "marketing.");
        assert_eq!(kafka_acl_count(Access::Read), 1 + read.len() as i32);
        assert_eq!(kafka_acl_count(Access::ReadWrite), 1 + rw.len() as i32);
    }

    fn grants_of(spec: serde_json::Value) -> Vec<PortGrant> {
        evaluate(&policy("p", spec), Some(&active()), &domains(), at(0)).grants
    }

    #[test]
    fn overlapping_policies_union_and_take_the_highest_bucket_access() {
        let read = grants_of(
            serde_json::json!({"dataProduct": "orders", "consumers": [{"domain": "marketing"}]}),
        );
        let write = grants_of(
            serde_json::json!({"dataProduct": "orders", "ports": ["lake"], "access": "readWrite", "consumers": [{"domain": "marketing"}]}),
        );
        let both = desired(read.iter().chain(&write));
        assert_eq!(
            both.bucket_access[&("marketing".to_owned(), "payments-orders-lake".to_owned())],
            BucketAccess::ReadWrite
        );
        assert_eq!(both.topic_acls.len(), 2);
        assert_eq!(
            both.kafka_identities,
            BTreeSet::from(["marketing".to_owned()])
        );
        let only_read = desired(&read);
        assert_eq!(
            only_read.bucket_access[&("marketing".to_owned(), "payments-orders-lake".to_owned())],
            BucketAccess::Read
        );
    }

    #[test]
    fn a_bucket_the_product_does_not_hold_is_granted_nothing() {
        // Product `orders` names `payments-orders-lake`, but its status does not list it: the
        // bucket is not (yet) the product's, or belongs to another domain whose name makes the
        // same bucket name (domain `payments-orders`, product `lake`...).
        let mut unheld = active();
        unheld.held_buckets.clear();
        let policy = policy(
            "p",
            serde_json::json!({"dataProduct": "orders", "consumers": [{"domain": "marketing"}]}),
        );
        let evaluation = evaluate(&policy, Some(&unheld), &domains(), at(0));
        let targets: Vec<&PortTarget> = evaluation.grants.iter().map(|g| &g.target).collect();
        assert_eq!(
            targets,
            [&PortTarget::Topic("payments.orders.events".into())],
            "the topic is granted, the bucket is not"
        );
        assert!(desired(&evaluation.grants).bucket_access.is_empty());
        // Naming the bucket's port is no error: the grant comes once the product holds it.
        let lake_only = self::policy(
            "lake",
            serde_json::json!({"dataProduct": "orders", "ports": ["lake"], "consumers": [{"domain": "marketing"}]}),
        );
        let waiting = evaluate(&lake_only, Some(&unheld), &domains(), at(0));
        assert!(waiting.grants.is_empty());
        assert_ne!(waiting.outcome.reason, "PortNotFound");
    }

    #[test]
    fn acl_diff_revokes_only_undeclared_grants_and_never_the_producers_own() {
        let wanted: BTreeSet<AclBinding> =
            topic_bindings("payments.orders.events", "marketing", Access::Read)
                .into_iter()
                .collect();
        let mut actual: Vec<AclBinding> =
            topic_bindings("payments.orders.events", "marketing", Access::ReadWrite);
        actual.extend(topic_bindings(
            "payments.orders.events",
            "payments",
            Access::ReadWrite,
        ));
        actual.extend(topic_bindings("payments.orders.events", "bi", Access::Read));
        let changes = acl_changes(&wanted, &actual, "User:payments");
        assert!(changes.create.is_empty());
        let deleted: BTreeSet<_> = changes
            .delete
            .iter()
            .map(|b| (b.principal.as_str(), b.operation))
            .collect();
        assert_eq!(
            deleted,
            BTreeSet::from([
                ("User:marketing", AclOperation::Write),
                ("User:bi", AclOperation::Read),
                ("User:bi", AclOperation::Describe),
            ])
        );
        let fresh = acl_changes(&wanted, &[], "User:payments");
        assert_eq!(fresh.create.len(), 2);
        assert!(fresh.delete.is_empty());
    }

    #[test]
    fn the_role_reads_only_the_product_and_binds_every_subject() {
        let grants = grants_of(
            serde_json::json!({"dataProduct": "orders", "consumers": [{"domain": "marketing"}]}),
        );
        let role = consumers_role("payments-ns", &active());
        let labels = role.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["datamesh.dev/domain"], "payments");
        assert_eq!(labels["datamesh.dev/data-product"], "orders");
        assert_eq!(labels["datamesh.dev/classification"], "internal");
        let rules = role.rules.unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].verbs, ["get"]);
        assert_eq!(
            rules[0].resources.as_deref(),
            Some(&["dataproducts".to_owned()][..])
        );
        assert_eq!(
            rules[0].resource_names.as_deref(),
            Some(&["orders".to_owned()][..])
        );
        let binding =
            consumers_role_binding("payments-ns", &active(), &desired(&grants).rbac_subjects);
        let subjects = binding.subjects.unwrap();
        assert_eq!(subjects.len(), 2);
        assert!(subjects.iter().any(|s| s.kind == "ServiceAccount"
            && s.name == "datamesh-workload"
            && s.namespace.as_deref() == Some("marketing-ns")
            && s.api_group.is_none()));
        assert!(
            subjects
                .iter()
                .any(|s| s.kind == "Group" && s.name == "marketing-team")
        );
        assert_eq!(binding.role_ref.name, "datamesh-consumers-orders");
    }

    pub fn consumer_product(namespace: &str, input: &str, port: &str) -> DataProduct {
        let spec = serde_json::from_value(serde_json::json!({
            "domain": namespace.trim_end_matches("-ns"),
            "description": {"purpose": "p", "usage": "u"},
            "owner": {"name": "bob"},
            "inputPorts": [{"name": input, "dataProduct": {"domain": "payments", "name": "orders", "port": port}}],
        }))
        .unwrap();
        let mut product = DataProduct::new("campaigns", spec);
        product.metadata.namespace = Some(namespace.into());
        product
    }

    #[test]
    fn connection_config_maps_follow_the_consumers_input_ports() {
        let grants = grants_of(
            serde_json::json!({"dataProduct": "orders", "consumers": [{"domain": "marketing"}]}),
        );
        let endpoints = Endpoints {
            kafka_bootstrap_servers: "kafka:9092".into(),
            s3_endpoint: "http://s3:8333".into(),
        };
        let consumers = [
            consumer_product("marketing-ns", "orders-in", "events"),
            consumer_product("bi-ns", "not-granted", "events"),
        ];
        let maps = connection_config_maps(&active(), &grants, &consumers, &endpoints);
        assert_eq!(maps.len(), 1, "only the granted namespace's input port");
        let map = &maps[0];
        assert_eq!(map.metadata.name.as_deref(), Some("orders-in"));
        assert_eq!(map.metadata.namespace.as_deref(), Some("marketing-ns"));
        let data = map.data.as_ref().unwrap();
        assert_eq!(data["type"], "kafka");
        assert_eq!(data["topic"], "payments.orders.events");
        assert_eq!(data["bootstrapServers"], "kafka:9092");
        let labels = map.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[SOURCE_DOMAIN_LABEL], "payments");
        assert_eq!(labels[SOURCE_PRODUCT_LABEL], "orders");
        assert_eq!(labels["datamesh.dev/domain"], "marketing", "the consumer's");
        assert_eq!(labels["datamesh.dev/data-product"], "campaigns");
        assert_eq!(
            labels["datamesh.dev/classification"], "internal",
            "of the data it points at"
        );

        let lake = [consumer_product("marketing-ns", "lake-in", "lake")];
        let maps = connection_config_maps(&active(), &grants, &lake, &endpoints);
        let data = maps[0].data.as_ref().unwrap();
        assert_eq!(data["type"], "bucket");
        assert_eq!(data["bucket"], "payments-orders-lake");
        assert_eq!(data["endpoint"], "http://s3:8333");
        assert!(!data.contains_key("topic"));

        assert!(connection_config_maps(&active(), &grants, &[], &endpoints).is_empty());
    }

    #[test]
    fn status_lists_grants_per_consumer_and_port_and_is_stable() {
        let p = policy(
            "p",
            serde_json::json!({"dataProduct": "orders", "access": "readWrite", "consumers": [{"domain": "marketing"}]}),
        );
        let evaluation = evaluate(&p, Some(&active()), &domains(), at(0));
        let status = desired_status(&p, &AccessPolicyStatus::default(), &evaluation, at(5));
        assert_eq!(
            status.grants,
            [
                Grant {
                    consumer: "domain:marketing".into(),
                    port: "events".into(),
                    kafka_acls: Some(4),
                    bucket: None
                },
                Grant {
                    consumer: "domain:marketing".into(),
                    port: "lake".into(),
                    kafka_acls: None,
                    bucket: Some(Access::ReadWrite)
                },
            ]
        );
        assert_eq!(status.observed_generation, Some(1));
        let again = desired_status(&p, &status, &evaluation, at(50));
        assert_eq!(again, status, "an unchanged world writes no status");
        let (granted, revoked) = grant_transitions(&[], &status.grants);
        assert_eq!(granted.len(), 2);
        assert!(revoked.is_empty());
        let (granted, revoked) = grant_transitions(&status.grants, &status.grants[..1]);
        assert!(granted.is_empty());
        assert_eq!(revoked, ["domain:marketing on lake"]);
    }

    #[test]
    fn targets_of_a_vanished_product_come_from_status() {
        let status = AccessPolicyStatus {
            grants: vec![
                Grant {
                    consumer: "domain:marketing".into(),
                    port: "events".into(),
                    kafka_acls: Some(3),
                    bucket: None,
                },
                Grant {
                    consumer: "domain:marketing".into(),
                    port: "lake".into(),
                    kafka_acls: None,
                    bucket: Some(Access::Read),
                },
            ],
            ..AccessPolicyStatus::default()
        };
        let targets = targets_from_status("payments", "orders", [&status]);
        assert_eq!(
            targets,
            BTreeSet::from([
                PortTarget::Topic("payments.orders.events".into()),
                PortTarget::Bucket("payments-orders-lake".into())
            ])
        );
        let _ = Time(at(0));
    }
}
