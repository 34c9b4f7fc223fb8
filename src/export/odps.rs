//! A DataProduct as an Open Data Product Standard document (ODPS v1.0.0, the version of the
//! standard's published JSON Schema). Pure.
//!
//! | ODPS | from |
//! | --- | --- |
//! | `id`, `name`, `version` | `<domain>.<product>`, `metadata.name`, `metadata.generation` (`0` in a manifest) |
//! | `status`, `domain` | `spec.status`, `spec.domain` |
//! | `description` | `spec.description` |
//! | `tags`, `customProperties` | the classification; the namespace, SLAs, transformation (image, type, schedule; never its arguments) and deletion policy |
//! | `inputPorts` | `spec.inputPorts`: the producer's contract id and version (`latest` when the producer is not among the objects exported), and the access granted (from status) |
//! | `outputPorts` | `spec.outputPorts`: type `kafka` or `s3`, the contract id of [`super::odcs`], and every input port as an input contract |
//! | `team` | the domain, with `spec.owner` as its `owner` |
//! | `productCreatedTs` | `metadata.creationTimestamp` |

use serde::Serialize;
use serde_json::{Value, json};

use super::odcs::{CustomProperty, Description, Team};
use super::{classification, contract_id, created_at, lifecycle, product_id, team, version};
use crate::api::data_product::{DataProduct, PortReference};
use kube::ResourceExt;

/// The ODPS version the documents follow.
pub const API_VERSION: &str = "v1.0.0";

/// One ODPS data product.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductDocument {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub id: String,
    pub name: String,
    pub version: String,
    pub status: String,
    pub domain: String,
    pub description: Description,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub input_ports: Vec<InputPort>,
    pub output_ports: Vec<OutputPort>,
    pub team: Team,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub custom_properties: Vec<CustomProperty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_created_ts: Option<String>,
}

/// An input port: the contract read.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InputPort {
    pub name: String,
    pub version: String,
    pub contract_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub custom_properties: Vec<CustomProperty>,
}

/// An output port: the contract promised.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputPort {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub type_: String,
    pub version: String,
    pub contract_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub input_contracts: Vec<InputContract>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub custom_properties: Vec<CustomProperty>,
}

/// A contract an output port depends on.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InputContract {
    pub id: String,
    pub version: String,
}

/// The version of the contract an input port reads: the producer's, when it is among
/// `known`; else `latest` (an input reads the port's current contract, which the operator
/// keeps compatible while the grant holds).
fn input_version(reference: &PortReference, known: &[&DataProduct]) -> String {
    known
        .iter()
        .find(|p| p.spec.domain == reference.domain && p.name_any() == reference.name)
        .map_or_else(|| "latest".to_owned(), |p| version(p))
}

/// The ODPS document of `product`; `known` are the other products exported with it (to name
/// the versions of the contracts it reads).
pub fn document(product: &DataProduct, known: &[&DataProduct]) -> ProductDocument {
    let name = product.name_any();
    let spec = &product.spec;
    let classification = classification(spec.classification);
    let access = |input: &str| {
        product
            .status
            .as_ref()
            .and_then(|s| s.input_ports.iter().find(|i| i.name == input))
            .and_then(|i| serde_json::to_value(i.access).ok())
    };
    let input_ports: Vec<InputPort> = spec
        .input_ports
        .iter()
        .map(|input| {
            let reference = &input.data_product;
            let mut custom_properties = vec![CustomProperty::new(
                "dataProduct",
                Value::from(product_id(&reference.domain, &reference.name)),
            )];
            if let Some(access) = access(&input.name) {
                custom_properties.push(CustomProperty::new("access", access));
            }
            InputPort {
                name: input.name.clone(),
                version: input_version(reference, known),
                contract_id: contract_id(&reference.domain, &reference.name, &reference.port),
                custom_properties,
            }
        })
        .collect();
    let input_contracts: Vec<InputContract> = input_ports
        .iter()
        .map(|input| InputContract {
            id: input.contract_id.clone(),
            version: input.version.clone(),
        })
        .collect();
    let output_ports = spec
        .output_ports
        .iter()
        .map(|port| {
            let location = spec
                .topic_name(&name, port)
                .map(|topic| ("topic", topic))
                .or_else(|| spec.bucket_name(&name, port).map(|b| ("bucket", b)));
            OutputPort {
                name: port.name.clone(),
                description: port.description.clone(),
                type_: if port.kafka.is_some() { "kafka" } else { "s3" }.to_owned(),
                version: version(product),
                contract_id: contract_id(&spec.domain, &name, &port.name),
                input_contracts: input_contracts.clone(),
                custom_properties: location
                    .map(|(key, value)| CustomProperty::new(key, Value::from(value)))
                    .into_iter()
                    .collect(),
            }
        })
        .collect();
    let mut custom_properties = vec![CustomProperty::new(
        "classification",
        Value::from(classification.clone()),
    )];
    if let Some(namespace) = product.namespace() {
        custom_properties.push(CustomProperty::new("namespace", Value::from(namespace)));
    }
    if !spec.sla.is_empty() {
        custom_properties.push(CustomProperty::new(
            "sla",
            serde_json::to_value(&spec.sla).unwrap_or(Value::Null),
        ));
    }
    if let Some(transformation) = &spec.transformation {
        let spark = &transformation.spark;
        custom_properties.push(CustomProperty::new(
            "transformation",
            json!({
                "engine": "spark",
                "type": spark.type_,
                "image": spark.image,
                "sparkVersion": spark.spark_version,
                "schedule": spark.schedule,
            }),
        ));
    }
    custom_properties.push(CustomProperty::new(
        "deletionPolicy",
        serde_json::to_value(spec.deletion_policy).unwrap_or(Value::Null),
    ));
    ProductDocument {
        api_version: API_VERSION,
        kind: "DataProduct",
        id: product_id(&spec.domain, &name),
        name,
        version: version(product),
        status: lifecycle(spec.status),
        domain: spec.domain.clone(),
        description: Description {
            purpose: spec.description.purpose.clone(),
            usage: spec.description.usage.clone(),
            limitations: spec.description.limitations.clone(),
        },
        tags: vec![format!("classification:{classification}")],
        input_ports,
        output_ports,
        team: team(product),
        custom_properties,
        product_created_ts: created_at(product),
    }
}
