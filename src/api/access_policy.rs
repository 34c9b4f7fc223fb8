//! `AccessPolicy`: a producer's grant of read (or read-write) access to its product.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::conditions::Condition;
use super::naming::DNS_LABEL_PATTERN;

/// The declared state of an access policy: a grant, written by a producing domain in
/// its own namespace, that lets other domains (or single ServiceAccounts) read one of
/// its data products. It is the only way data crosses domains: the operator turns it
/// into Kafka ACLs, bucket access and RBAC, and revokes them when the policy is
/// deleted, narrowed or expires.
// Each `printcolumn(...)` repeats `type_ = ...`, which clippy takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "datamesh.dev",
    version = "v1alpha1",
    kind = "AccessPolicy",
    plural = "accesspolicies",
    namespaced,
    status = "AccessPolicyStatus",
    derive = "PartialEq",
    shortname = "ap",
    category = "datamesh",
    doc = "A producer's grant of access to one of its data products, to whole domains or single ServiceAccounts; the only way data crosses domains. Lives in the producer's namespace.",
    printcolumn(
        name = "Product",
        type_ = "string",
        json_path = ".spec.dataProduct",
        description = "The data product the policy grants access to"
    ),
    printcolumn(
        name = "Access",
        type_ = "string",
        json_path = ".spec.access",
        description = "read or readWrite"
    ),
    printcolumn(
        name = "Expires",
        // A string, not a date: kubectl shows a future date as "<invalid>".
        type_ = "string",
        json_path = ".spec.expiresAt",
        description = "When the grants are revoked"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether every grant exists as declared"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        description = "Why the object is or is not Ready",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicySpec {
    /// The name of the DataProduct, in this namespace, that the policy grants access to.
    #[schemars(length(min = 1, max = 63), pattern(DNS_LABEL_PATTERN))]
    pub data_product: String,

    /// The names of the product's output ports the policy covers. Empty or unset covers
    /// all of them, including ports added later.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        inner(length(min = 1, max = 63), pattern(DNS_LABEL_PATTERN))
    )]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub ports: Vec<String>,

    /// Who is granted access: each entry is a whole domain (`domain: marketing`, for its
    /// workloads and owners) or a single ServiceAccount
    /// (`serviceAccount: {namespace: bi, name: dashboards}`).
    #[schemars(length(min = 1, max = 64))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self.all(c, self.exists_one(d, d == c))", "message": "consumers must not repeat"}
    ]))]
    pub consumers: Vec<Consumer>,

    /// What the consumers may do: `read` (the default: consume topics, list and get
    /// objects) or `readWrite` (also produce to topics, put and delete objects).
    #[serde(default)]
    pub access: Access,

    /// Why the consumers need the data. Required by governance for `restricted` products.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub purpose: Option<String>,

    /// When the grants end (RFC 3339, e.g. `2027-06-30T00:00:00Z`); the operator revokes
    /// them at that time. Unset never expires. Required by governance for `restricted`
    /// products.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
}

/// A consumer of a grant: exactly one of a domain or a ServiceAccount.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.domain) != has(self.serviceAccount)",
     "message": "a consumer sets exactly one of domain or serviceAccount"}
]))]
pub struct Consumer {
    /// A whole domain, by its Domain name: its Kafka principal, object-store user,
    /// ServiceAccount and owners are granted access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), pattern(DNS_LABEL_PATTERN))]
    pub domain: Option<String>,
    /// A single ServiceAccount, which may read the product and its connection details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<ServiceAccountReference>,
}

/// A ServiceAccount by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountReference {
    /// The ServiceAccount's namespace.
    #[schemars(length(min = 1, max = 63), pattern(DNS_LABEL_PATTERN))]
    pub namespace: String,
    /// The ServiceAccount's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// What a grant allows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Access {
    /// Consume topics; list and get objects.
    #[default]
    Read,
    /// Also produce to topics; put and delete objects.
    ReadWrite,
}

/// What the operator observed and granted for an AccessPolicy.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicyStatus {
    /// `Ready`, `Reconciling` and `Stalled` (kstatus), each with the generation it describes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// What is granted, per consumer and port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<Grant>,
}

/// One consumer's access to one port.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    /// The consumer: `domain:<name>` or `serviceAccount:<namespace>/<name>`.
    pub consumer: String,
    /// The output port.
    pub port: String,
    /// How many Kafka ACLs carry the grant, for a Kafka port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_acls: Option<i32>,
    /// The bucket access granted, for a bucket port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<Access>,
}

impl Consumer {
    /// The consumer as `status.grants` names it: `domain:<name>` or
    /// `serviceAccount:<namespace>/<name>`.
    pub fn key(&self) -> String {
        match (&self.domain, &self.service_account) {
            (Some(domain), _) => format!("domain:{domain}"),
            (None, Some(sa)) => format!("serviceAccount:{}/{}", sa.namespace, sa.name),
            (None, None) => String::new(),
        }
    }
}

impl AccessPolicySpec {
    /// Whether the policy covers the output port named `port` (an empty `ports` covers all).
    pub fn covers_port(&self, port: &str) -> bool {
        self.ports.is_empty() || self.ports.iter().any(|p| p == port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_policy_reads_all_ports_forever() {
        let spec: AccessPolicySpec = serde_json::from_value(serde_json::json!({
            "dataProduct": "orders",
            "consumers": [{"domain": "marketing"}],
        }))
        .unwrap();
        assert_eq!(spec.access, Access::Read);
        assert!(spec.covers_port("events") && spec.covers_port("lake"));
        assert_eq!(spec.expires_at, None);
        assert_eq!(spec.consumers[0].key(), "domain:marketing");
    }

    #[test]
    fn a_full_policy_round_trips() {
        let json = serde_json::json!({
            "dataProduct": "orders",
            "ports": ["events"],
            "consumers": [{"domain": "marketing"}, {"serviceAccount": {"namespace": "bi", "name": "dashboards"}}],
            "access": "readWrite",
            "purpose": "campaign analytics",
            "expiresAt": "2027-06-30T00:00:00Z",
        });
        let spec: AccessPolicySpec = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(spec.access, Access::ReadWrite);
        assert!(spec.covers_port("events") && !spec.covers_port("lake"));
        assert_eq!(spec.consumers[1].key(), "serviceAccount:bi/dashboards");
        assert_eq!(serde_json::to_value(&spec).unwrap(), json);
    }
}
