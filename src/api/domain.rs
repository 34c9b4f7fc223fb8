//! `Domain`: a team's slice of the mesh, and the identities it acts with.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DeletionPolicy;
use super::conditions::Condition;
use super::naming::{DNS_LABEL_PATTERN, kafka_principal};

/// The declared state of a domain of the data mesh: a team that owns data products.
/// The operator gives it a namespace for its DataProducts and AccessPolicies, RBAC for
/// its owners, quotas, and its own identities in Kafka and object storage, with their
/// credentials in a Secret of that namespace.
// Each `printcolumn(...)` repeats `type_ = ...`, which clippy takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "datamesh.dev",
    version = "v1alpha1",
    kind = "Domain",
    status = "DomainStatus",
    derive = "PartialEq",
    shortname = "dom",
    category = "datamesh",
    doc = "A domain of the data mesh: a team that owns data products, with its namespace, owners, quotas and identities in Kafka and object storage. Cluster-scoped; its name prefixes every topic and bucket of its products.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the domain's namespace, RBAC and identities exist as declared"
    ),
    printcolumn(
        name = "Namespace",
        type_ = "string",
        json_path = ".status.namespace",
        description = "The namespace of the domain's data products"
    ),
    printcolumn(
        name = "Products",
        type_ = "integer",
        json_path = ".status.dataProducts",
        description = "How many DataProducts the domain has"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        description = "Why the object is or is not Ready",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 63")
        .message("metadata.name of a Domain must be a DNS label (lowercase letters, digits and '-', at most 63 characters, no dots): it names the domain's namespace, Kafka principal, topics and buckets"),
    validation = Rule::new("!self.metadata.name.startsWith('xn--') && !self.metadata.name.startsWith('sthree-') && !self.metadata.name.startsWith('amzn-s3-demo-')")
        .message("metadata.name of a Domain must not start with xn--, sthree- or amzn-s3-demo-: S3 reserves these prefixes for bucket names, and every bucket of the domain starts with its name"),
    validation = Rule::new("(has(self.spec.__namespace__) ? self.spec.__namespace__ : self.metadata.name) != 'default' && !(has(self.spec.__namespace__) ? self.spec.__namespace__ : self.metadata.name).startsWith('kube-')")
        .message("spec.namespace (or metadata.name when spec.namespace is unset) must not be 'default' or a 'kube-' system namespace")
        .field_path(".spec.namespace"),
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.__namespace__) == has(oldSelf.__namespace__) && (!has(self.__namespace__) || self.__namespace__ == oldSelf.__namespace__)",
     "message": "spec.namespace is immutable: it cannot be set, unset or changed after the Domain is created, since the domain's products live there; create a new Domain instead",
     "fieldPath": ".namespace"}
]))]
pub struct DomainSpec {
    /// What the domain is about, in a sentence or two, for the mesh's catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,

    /// The people, groups and service accounts that own the domain. Each is bound to the
    /// `datamesh-domain-admin` ClusterRole in the domain's namespace, so they can manage
    /// its DataProducts and AccessPolicies. Without owners only cluster administrators can.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub owners: Vec<Owner>,

    /// The namespace the operator creates and labels for the domain's DataProducts and
    /// AccessPolicies. Defaults to the Domain's name. Cannot be set, unset or changed
    /// after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63), pattern(DNS_LABEL_PATTERN))]
    pub namespace: Option<String>,

    /// Limits on what the domain may declare; unset means no limit. Products past a
    /// limit are not provisioned and show a Stalled condition that says which limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quotas: Option<DomainQuotas>,

    /// What happens to the domain's namespace when the Domain is deleted: `Retain` (the
    /// default) keeps it and everything in it, `Delete` deletes it. A Domain that still
    /// has DataProducts cannot be deleted; its Kafka principal and object-store user
    /// are removed either way.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// A subject that owns a domain, as in a Kubernetes RBAC RoleBinding.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.kind == 'ServiceAccount' ? has(self.__namespace__) : !has(self.__namespace__)",
     "message": "an owner sets namespace if and only if its kind is ServiceAccount"}
]))]
pub struct Owner {
    /// The kind of subject: `User`, `Group` or `ServiceAccount`.
    pub kind: OwnerKind,
    /// The subject's name, as the cluster's authenticator reports it (a user name or
    /// e-mail, a group name, or a ServiceAccount name).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The ServiceAccount's namespace; set for (and only for) `kind: ServiceAccount`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63), pattern(DNS_LABEL_PATTERN))]
    pub namespace: Option<String>,
}

/// The kind of an owner subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum OwnerKind {
    /// A user, as the cluster's authenticator names it.
    User,
    /// A group, as the cluster's authenticator names it.
    Group,
    /// A Kubernetes ServiceAccount.
    ServiceAccount,
}

/// Limits on a domain's use of the mesh.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DomainQuotas {
    /// The most DataProducts the domain may have. `0` freezes the domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_data_products: Option<i32>,
    /// The most Kafka partitions all of the domain's topics may have together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_partitions: Option<i32>,
}

/// What the operator observed and made for a Domain.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DomainStatus {
    /// `Ready`, `Reconciling` and `Stalled` (kstatus), each with the generation it describes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The namespace made for the domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// How many DataProducts the domain has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_products: Option<i32>,
    /// How many Kafka partitions the domain's topics have together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// The Kafka principal the domain's producers and consumers authenticate as, e.g. `User:payments`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_principal: Option<String>,
    /// The object-storage (IAM) user the domain's workloads authenticate as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_user: Option<String>,
    /// The Secret, in the domain's namespace, holding the domain's Kafka and
    /// object-storage credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
}

impl Domain {
    /// The namespace of the domain's products: `spec.namespace`, or the Domain's name.
    pub fn namespace_name(&self) -> String {
        self.spec
            .namespace
            .clone()
            .unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }

    /// The domain's Kafka principal, `User:<domain>`.
    pub fn kafka_principal(&self) -> String {
        kafka_principal(self.metadata.name.as_deref().unwrap_or_default())
    }
}
