//! What the catalog shows, computed from the watched objects by pure functions: the mesh at a
//! glance, one product's page, and the lineage graph. The HTML pages and the JSON API render
//! exactly these values, so the tests assert on them.
//!
//! Only metadata and status: nothing here reads a Secret or any data.

use std::collections::BTreeMap;

use kube::ResourceExt;
use serde::Serialize;

use crate::api::access_policy::AccessPolicy;
use crate::api::conditions::{Condition, READY, RECONCILING, STALLED, TRUE, find_condition};
use crate::api::data_product::{DataProduct, InputAccess, OutputPort};
use crate::api::domain::Domain;

/// How an object stands, as a person reads it (and as the Argo CD health check shipped with the
/// chart sees it): from its conditions at its current generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Health {
    /// Ready at the current generation.
    Ready,
    /// Stalled at the current generation: a person must act.
    Stalled,
    /// Being reconciled, or the status describes an older generation.
    Reconciling,
    /// Not reconciled yet.
    Pending,
}

impl Health {
    /// The lowercase word pages and filters use.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ready => "ready",
            Health::Stalled => "stalled",
            Health::Reconciling => "reconciling",
            Health::Pending => "pending",
        }
    }
}

/// An object's health with the condition that says why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Standing {
    pub health: Health,
    pub reason: String,
    pub message: String,
}

/// The standing described by `conditions` for an object at `generation`.
pub fn standing(conditions: &[Condition], generation: Option<i64>) -> Standing {
    let current = |type_: &str| {
        find_condition(conditions, type_).filter(|c| {
            c.status == TRUE && (generation.is_none() || c.observed_generation == generation)
        })
    };
    let (health, condition) = if let Some(c) = current(STALLED) {
        (Health::Stalled, Some(c))
    } else if let Some(c) = current(READY) {
        (Health::Ready, Some(c))
    } else if conditions.is_empty() {
        (Health::Pending, None)
    } else {
        (
            Health::Reconciling,
            current(RECONCILING).or_else(|| find_condition(conditions, READY)),
        )
    };
    Standing {
        health,
        reason: condition.map(|c| c.reason.clone()).unwrap_or_default(),
        message: condition
            .map(|c| c.message.clone())
            .unwrap_or_else(|| "not reconciled yet".to_owned()),
    }
}

/// The mesh at a glance: every domain with its products.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Mesh {
    pub domains: Vec<DomainSummary>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DomainSummary {
    pub name: String,
    pub namespace: Option<String>,
    pub description: Option<String>,
    pub standing: Standing,
    /// What the domain owns, as the operator made it (the topics and buckets its products'
    /// status lists, for products in the domain's own namespace): counts, and each one.
    pub topics: usize,
    pub partitions: i64,
    pub buckets: usize,
    pub owned: Vec<OwnedResource>,
    pub products: Vec<ProductSummary>,
}

/// A topic or bucket a domain owns, with what attributes its cost.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OwnedResource {
    /// `topic` or `bucket`.
    pub kind: &'static str,
    pub name: String,
    pub product: String,
    pub port: String,
    pub classification: String,
    /// The partitions the port declares (topics only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i64>,
}

/// The topics and buckets the operator made for `product` (its status), with the declared
/// partitions of each topic.
fn owned_resources(product: &DataProduct) -> Vec<OwnedResource> {
    let Some(status) = product.status.as_ref() else {
        return Vec::new();
    };
    let classification = word(&product.spec.classification);
    let name = product.name_any();
    status
        .output_ports
        .iter()
        .filter_map(|made| {
            let declared = product
                .spec
                .output_ports
                .iter()
                .find(|p| p.name == made.name);
            let (kind, resource, partitions) = match (&made.topic, &made.bucket) {
                (Some(topic), _) => (
                    "topic",
                    topic.clone(),
                    declared
                        .and_then(|p| p.kafka.as_ref())
                        .map(|k| i64::from(k.partitions)),
                ),
                (None, Some(bucket)) => ("bucket", bucket.clone(), None),
                (None, None) => return None,
            };
            Some(OwnedResource {
                kind,
                name: resource,
                product: name.clone(),
                port: made.name.clone(),
                classification: classification.clone(),
                partitions,
            })
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProductSummary {
    pub namespace: String,
    pub name: String,
    pub domain: String,
    pub purpose: String,
    pub owner: String,
    pub classification: String,
    pub lifecycle: String,
    pub standing: Standing,
}

/// Which products a filter of the mesh page keeps: a search text (in names, domain, purpose or
/// owner) and, when set, one health, classification or lifecycle.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub text: String,
    pub health: Option<String>,
    pub classification: Option<String>,
    pub lifecycle: Option<String>,
}

impl Filter {
    fn keeps(&self, product: &ProductSummary) -> bool {
        let text = self.text.trim().to_lowercase();
        let matches_text = text.is_empty()
            || [
                &product.name,
                &product.domain,
                &product.purpose,
                &product.owner,
            ]
            .iter()
            .any(|field| field.to_lowercase().contains(&text));
        let is = |wanted: &Option<String>, value: &str| {
            wanted.as_deref().is_none_or(|w| w.is_empty() || w == value)
        };
        matches_text
            && is(&self.health, product.standing.health.as_str())
            && is(&self.classification, &product.classification)
            && is(&self.lifecycle, &product.lifecycle)
    }
}

/// The watched objects, as one snapshot.
pub struct Objects<'a> {
    pub domains: &'a [std::sync::Arc<Domain>],
    pub products: &'a [std::sync::Arc<DataProduct>],
    pub policies: &'a [std::sync::Arc<AccessPolicy>],
}

fn word<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn summary(product: &DataProduct) -> ProductSummary {
    let status = product.status.as_ref();
    ProductSummary {
        namespace: product.namespace().unwrap_or_default(),
        name: product.name_any(),
        domain: product.spec.domain.clone(),
        purpose: product.spec.description.purpose.clone(),
        owner: product.spec.owner.name.clone(),
        classification: word(&product.spec.classification),
        lifecycle: word(&product.spec.status),
        standing: standing(
            status.map(|s| s.conditions.as_slice()).unwrap_or_default(),
            product.metadata.generation,
        ),
    }
}

/// The mesh page: domains by name, each with the products that name it, filtered.
pub fn mesh(objects: &Objects<'_>, filter: &Filter) -> Mesh {
    let mut by_domain: BTreeMap<String, Vec<ProductSummary>> = BTreeMap::new();
    // Owned by the domain whose namespace the product is in (where the operator acts for it),
    // whatever its spec claims.
    let namespaces: BTreeMap<String, String> = objects
        .domains
        .iter()
        .filter_map(|d| {
            let namespace = d.status.as_ref()?.namespace.clone()?;
            Some((namespace, d.name_any()))
        })
        .collect();
    let mut owned: BTreeMap<String, Vec<OwnedResource>> = BTreeMap::new();
    for product in objects.products {
        let owner = product
            .namespace()
            .and_then(|ns| namespaces.get(&ns))
            .filter(|owner| **owner == product.spec.domain);
        if let Some(owner) = owner {
            owned
                .entry(owner.clone())
                .or_default()
                .extend(owned_resources(product));
        }
        let summary = summary(product);
        if filter.keeps(&summary) {
            by_domain
                .entry(summary.domain.clone())
                .or_default()
                .push(summary);
        }
    }
    let mut domains: Vec<DomainSummary> = objects
        .domains
        .iter()
        .map(|domain| {
            let name = domain.name_any();
            let status = domain.status.as_ref();
            let mut products = by_domain.remove(&name).unwrap_or_default();
            products.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
            let mut owned = owned.remove(&name).unwrap_or_default();
            owned.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
            let topics = owned.iter().filter(|r| r.kind == "topic").count();
            let partitions = owned.iter().filter_map(|r| r.partitions).sum();
            let buckets = owned.iter().filter(|r| r.kind == "bucket").count();
            DomainSummary {
                namespace: status.and_then(|s| s.namespace.clone()),
                description: domain.spec.description.clone(),
                standing: standing(
                    status.map(|s| s.conditions.as_slice()).unwrap_or_default(),
                    domain.metadata.generation,
                ),
                topics,
                partitions,
                buckets,
                owned,
                products,
                name,
            }
        })
        .filter(|domain| filter == &Filter::default() || !domain.products.is_empty())
        .collect();
    domains.sort_by(|a, b| a.name.cmp(&b.name));
    Mesh { domains }
}

/// One product's page.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProductPage {
    pub summary: ProductSummary,
    pub usage: String,
    pub limitations: Option<String>,
    pub owner_email: Option<String>,
    pub sla: Vec<String>,
    pub output_ports: Vec<PortView>,
    pub consumers: Vec<ConsumerView>,
    pub input_ports: Vec<InputView>,
    pub transformation: Option<TransformationView>,
    pub conditions: Vec<ConditionView>,
    /// The product's most recent Events, newest first (filled in by the server, which reads
    /// them from the API server on each request: they are not watched).
    pub events: Vec<EventView>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventView {
    /// When it last happened (RFC 3339).
    pub time: String,
    /// `Normal` or `Warning`.
    pub type_: String,
    pub reason: String,
    pub note: String,
    /// How often it happened.
    pub count: i32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PortView {
    pub name: String,
    pub description: Option<String>,
    /// `topic` or `bucket`.
    pub kind: String,
    /// The topic or bucket name.
    pub resource: String,
    /// Where to connect: bootstrap servers or the S3 endpoint, once provisioned.
    pub endpoint: Option<String>,
    pub schema_type: Option<String>,
    /// The schema as written, pretty-printed when it is JSON.
    pub schema: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConsumerView {
    pub policy: String,
    pub consumer: String,
    /// The ports covered; empty covers all of them.
    pub ports: Vec<String>,
    pub access: String,
    pub purpose: Option<String>,
    pub expires_at: Option<String>,
    pub standing: Standing,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InputView {
    pub name: String,
    /// `domain/product/port`.
    pub source: String,
    pub access: String,
    pub message: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TransformationView {
    pub kind: String,
    pub image: String,
    pub schedule: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConditionView {
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

fn pretty_schema(definition: &str) -> String {
    serde_json::from_str::<serde_json::Value>(definition)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| definition.to_owned())
}

fn port_view(product: &DataProduct, port: &OutputPort) -> PortView {
    let name = product.name_any();
    let live = product
        .status
        .as_ref()
        .and_then(|s| s.output_ports.iter().find(|p| p.name == port.name));
    let (kind, resource, endpoint) = match product.spec.topic_name(&name, port) {
        Some(topic) => (
            "topic",
            topic,
            live.and_then(|p| p.bootstrap_servers.clone()),
        ),
        None => (
            "bucket",
            product.spec.bucket_name(&name, port).unwrap_or_default(),
            live.and_then(|p| p.endpoint.clone()),
        ),
    };
    PortView {
        name: port.name.clone(),
        description: port.description.clone(),
        kind: kind.to_owned(),
        resource,
        endpoint,
        schema_type: port.schema.as_ref().map(|s| word(&s.type_)),
        schema: port
            .schema
            .as_ref()
            .and_then(|s| s.definition.as_deref())
            .map(pretty_schema),
    }
}

/// The page of the product `name` in `namespace`, or `None` when there is none.
pub fn product_page(objects: &Objects<'_>, namespace: &str, name: &str) -> Option<ProductPage> {
    let product = objects
        .products
        .iter()
        .find(|p| p.namespace().as_deref() == Some(namespace) && p.name_any() == name)?;
    let status = product.status.as_ref();
    let consumers = objects
        .policies
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(namespace) && p.spec.data_product == name)
        .flat_map(|policy| {
            let standing = standing(
                policy
                    .status
                    .as_ref()
                    .map(|s| s.conditions.as_slice())
                    .unwrap_or_default(),
                policy.metadata.generation,
            );
            policy
                .spec
                .consumers
                .iter()
                .map(move |consumer| ConsumerView {
                    policy: policy.name_any(),
                    consumer: consumer.key(),
                    ports: policy.spec.ports.clone(),
                    access: word(&policy.spec.access),
                    purpose: policy.spec.purpose.clone(),
                    expires_at: policy.spec.expires_at.as_ref().map(|t| t.0.to_string()),
                    standing: standing.clone(),
                })
        })
        .collect();
    let input_ports = product
        .spec
        .input_ports
        .iter()
        .map(|input| {
            let live = status.and_then(|s| s.input_ports.iter().find(|p| p.name == input.name));
            let source = &input.data_product;
            InputView {
                name: input.name.clone(),
                source: format!("{}/{}/{}", source.domain, source.name, source.port),
                access: live
                    .map(|p| word(&p.access))
                    .unwrap_or_else(|| "Pending".to_owned()),
                message: live.and_then(|p| p.message.clone()),
            }
        })
        .collect();
    Some(ProductPage {
        summary: summary(product),
        usage: product.spec.description.usage.clone(),
        limitations: product.spec.description.limitations.clone(),
        owner_email: product.spec.owner.email.clone(),
        sla: product
            .spec
            .sla
            .iter()
            .map(|sla| {
                let value = match &sla.value {
                    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i) => {
                        i.to_string()
                    }
                    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => {
                        s.clone()
                    }
                };
                format!(
                    "{} {} {}",
                    sla.property,
                    value,
                    sla.unit.as_deref().unwrap_or("")
                )
                .trim_end()
                .to_owned()
            })
            .collect(),
        output_ports: product
            .spec
            .output_ports
            .iter()
            .map(|p| port_view(product, p))
            .collect(),
        consumers,
        input_ports,
        transformation: product
            .spec
            .transformation
            .as_ref()
            .map(|t| TransformationView {
                kind: word(&t.spark.type_),
                image: t.spark.image.clone(),
                schedule: t.spark.schedule.clone(),
            }),
        conditions: status
            .map(|s| {
                s.conditions
                    .iter()
                    .map(|c| ConditionView {
                        type_: c.type_.clone(),
                        status: c.status.clone(),
                        reason: c.reason.clone(),
                        message: c.message.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        events: Vec::new(),
    })
}

/// The lineage graph: products as nodes, input ports as edges from the product read to the
/// product reading, each with its access.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Lineage {
    pub nodes: Vec<LineageNode>,
    pub edges: Vec<LineageEdge>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct LineageNode {
    /// `domain/product`.
    pub id: String,
    /// The product's namespace, for its page; `None` for an input naming no product.
    pub namespace: Option<String>,
    pub health: Health,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct LineageEdge {
    pub from: String,
    pub to: String,
    /// `from`'s port read.
    pub port: String,
    /// The input port's access: Granted, Pending, NotFound or Denied.
    pub access: String,
}

/// The lineage of the whole mesh, or (with `around`, a `domain/product` id) of the products
/// one input port away from that product, either way.
pub fn lineage(objects: &Objects<'_>, around: Option<&str>) -> Lineage {
    let id = |domain: &str, name: &str| format!("{domain}/{name}");
    let mut nodes: BTreeMap<String, LineageNode> = objects
        .products
        .iter()
        .map(|p| {
            let node = LineageNode {
                id: id(&p.spec.domain, &p.name_any()),
                namespace: p.namespace(),
                health: summary(p).standing.health,
            };
            (node.id.clone(), node)
        })
        .collect();
    let mut edges = Vec::new();
    for product in objects.products {
        let to = id(&product.spec.domain, &product.name_any());
        let status = product.status.as_ref();
        for input in &product.spec.input_ports {
            let source = &input.data_product;
            let access = status
                .and_then(|s| s.input_ports.iter().find(|p| p.name == input.name))
                .map(|p| p.access)
                .unwrap_or(InputAccess::Pending);
            edges.push(LineageEdge {
                from: id(&source.domain, &source.name),
                to: to.clone(),
                port: source.port.clone(),
                access: word(&access),
            });
        }
    }
    for edge in &edges {
        nodes
            .entry(edge.from.clone())
            .or_insert_with(|| LineageNode {
                id: edge.from.clone(),
                namespace: None,
                health: Health::Pending,
            });
    }
    if let Some(center) = around {
        edges.retain(|e| e.from == center || e.to == center);
        nodes.retain(|id, _| id == center || edges.iter().any(|e| &e.from == id || &e.to == id));
    }
    edges.sort();
    Lineage {
        nodes: nodes.into_values().collect(),
        edges,
    }
}
