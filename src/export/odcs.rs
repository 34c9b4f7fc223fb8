//! A DataProduct's output ports as Open Data Contract Standard contracts (ODCS v3.1.0, the
//! newest version the standard has published a JSON Schema for): one contract per output
//! port. Pure.
//!
//! | ODCS | from |
//! | --- | --- |
//! | `id` | `<domain>.<product>.<port>` |
//! | `name`, `version` | `<product> <port>`, the product's `metadata.generation` (`0` in a manifest) |
//! | `status`, `domain` | `spec.status` (the lifecycle), `spec.domain` |
//! | `description` | `spec.description` (purpose, usage, limitations) |
//! | `team` | the domain, with `spec.owner` as its member of role `owner` |
//! | `slaProperties` | `spec.sla` |
//! | `tags`, `customProperties` | the classification, namespace, product and port |
//! | `schema[0]` | the port: topic or bucket as `physicalName`, its schema's fields as properties (the contract in force, `status.contracts`, else `spec`), each carrying the classification |
//! | `servers[0]` | Kafka: the bootstrap servers (from status) and the schema language as format; S3: `s3://<bucket>/` and the endpoint (from status) |
//! | `contractCreatedTs` | `metadata.creationTimestamp` |
//!
//! Nothing secret is in a DataProduct, and nothing here reads anything else.

use serde::Serialize;
use serde_json::Value;

use super::schema::{self, SchemaError};
use super::{ExportError, classification, contract_id, created_at, lifecycle, team, version};
use crate::api::data_product::{DataProduct, OutputPort, PortSchema, SchemaType, SlaProperty};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

/// The ODCS version the contracts follow.
pub const API_VERSION: &str = "v3.1.0";

/// One ODCS data contract.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DataContract {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub id: String,
    pub name: String,
    pub version: String,
    pub status: String,
    pub domain: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    pub description: Description,
    pub team: Team,
    pub schema: Vec<SchemaObject>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<Server>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sla_properties: Vec<Sla>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub custom_properties: Vec<CustomProperty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contract_created_ts: Option<String>,
}

/// `description`: purpose, usage, limitations.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Description {
    pub purpose: String,
    pub usage: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limitations: Option<String>,
}

/// `team` (the ODCS 3.1 object form).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Team {
    pub name: String,
    pub members: Vec<TeamMember>,
}

/// A member of a team.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TeamMember {
    /// The e-mail address when known, else the name.
    pub username: String,
    pub name: String,
    pub role: String,
}

/// A key and a value (ODCS and ODPS `customProperties`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CustomProperty {
    pub property: String,
    pub value: Value,
}

impl CustomProperty {
    pub fn new(property: &str, value: Value) -> Self {
        Self {
            property: property.to_owned(),
            value,
        }
    }
}

/// A `schema` entry: one port's dataset.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaObject {
    pub name: String,
    pub physical_name: String,
    pub physical_type: String,
    pub logical_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<SchemaProperty>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub custom_properties: Vec<CustomProperty>,
}

/// A field of a dataset (ODCS `SchemaProperty`; `items` only for arrays).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaProperty {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logical_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logical_type_options: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub physical_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classification: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<SchemaProperty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Box<SchemaProperty>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub custom_properties: Vec<CustomProperty>,
}

impl SchemaProperty {
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ..Self::default()
        }
    }
}

/// Where the dataset is: a Kafka cluster or an S3 bucket.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerKind {
    Kafka {
        host: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        format: Option<String>,
    },
    S3 {
        location: String,
        #[serde(rename = "endpointUrl", skip_serializing_if = "Option::is_none")]
        endpoint_url: Option<String>,
    },
}

/// A `servers` entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Server {
    pub server: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(flatten)]
    pub kind: ServerKind,
}

/// A `slaProperties` entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sla {
    pub property: String,
    pub value: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

fn sla(sla: &SlaProperty) -> Sla {
    Sla {
        property: sla.property.clone(),
        value: match &sla.value {
            IntOrString::Int(n) => Value::from(*n),
            IntOrString::String(s) => Value::from(s.clone()),
        },
        unit: sla.unit.clone(),
    }
}

/// The contracts of every output port of `product`, in the order of its ports.
pub fn contracts(product: &DataProduct) -> Result<Vec<DataContract>, ExportError> {
    product
        .spec
        .output_ports
        .iter()
        .map(|port| contract(product, port))
        .collect()
}

/// The schema in force on a port: the one its consumers were granted (`status.contracts`),
/// else the spec's.
fn schema_in_force<'a>(product: &'a DataProduct, port: &'a OutputPort) -> Option<&'a PortSchema> {
    product
        .status
        .as_ref()
        .and_then(|status| status.contracts.iter().find(|c| c.port == port.name))
        .map(|c| &c.schema)
        .or(port.schema.as_ref())
}

fn schema_word(type_: SchemaType) -> &'static str {
    match type_ {
        SchemaType::Json => "json",
        SchemaType::Avro => "avro",
        SchemaType::Protobuf => "protobuf",
    }
}

/// The properties of a port's schema, each marked with the product's classification.
fn properties(
    port: &OutputPort,
    schema: &PortSchema,
    classification: &str,
) -> Result<Vec<SchemaProperty>, ExportError> {
    let Some(definition) = schema.definition.as_deref() else {
        return Ok(Vec::new());
    };
    let mapped = match schema.type_ {
        SchemaType::Json => schema::json_properties(definition),
        SchemaType::Avro => schema::avro_properties(definition),
        SchemaType::Protobuf => Ok(Vec::new()),
    };
    let mut properties = mapped.map_err(|source: SchemaError| ExportError::Schema {
        port: port.name.clone(),
        source,
    })?;
    for property in &mut properties {
        property.classification = Some(classification.to_owned());
    }
    Ok(properties)
}

/// The contract of one output port.
pub fn contract(product: &DataProduct, port: &OutputPort) -> Result<DataContract, ExportError> {
    let name = product.name_any();
    let spec = &product.spec;
    let classification = classification(spec.classification);
    let status_port = product
        .status
        .as_ref()
        .and_then(|status| status.output_ports.iter().find(|p| p.name == port.name));
    let schema = schema_in_force(product, port);
    let (physical_name, physical_type) =
        match (spec.topic_name(&name, port), spec.bucket_name(&name, port)) {
            (Some(topic), _) => (topic, "topic"),
            (None, Some(bucket)) => (bucket, "bucket"),
            (None, None) => (port.name.clone(), "unknown"),
        };
    let mut object_properties = Vec::new();
    if let Some(schema) = schema {
        object_properties.push(CustomProperty::new(
            "schemaType",
            Value::from(schema_word(schema.type_)),
        ));
        // No ODCS 3.1 mapping for Protocol Buffers: the definition itself is the contract.
        if schema.type_ == SchemaType::Protobuf
            && let Some(definition) = &schema.definition
        {
            object_properties.push(CustomProperty::new(
                "schemaDefinition",
                Value::from(definition.clone()),
            ));
        }
    }
    let schema_object = SchemaObject {
        name: port.name.clone(),
        physical_name: physical_name.clone(),
        physical_type: physical_type.to_owned(),
        logical_type: "object",
        description: port.description.clone(),
        properties: match schema {
            Some(schema) => properties(port, schema, &classification)?,
            None => Vec::new(),
        },
        custom_properties: object_properties,
    };
    let server = if port.kafka.is_some() {
        // The bootstrap servers are known once the operator made the topic.
        status_port
            .and_then(|p| p.bootstrap_servers.clone())
            .map(|host| Server {
                server: port.name.clone(),
                description: Some(format!("Kafka topic {physical_name}")),
                kind: ServerKind::Kafka {
                    host,
                    format: schema.map(|s| schema_word(s.type_).to_owned()),
                },
            })
    } else {
        Some(Server {
            server: port.name.clone(),
            description: Some(format!("S3 bucket {physical_name}")),
            kind: ServerKind::S3 {
                location: format!("s3://{physical_name}/"),
                endpoint_url: status_port.and_then(|p| p.endpoint.clone()),
            },
        })
    };
    let mut custom_properties = vec![
        CustomProperty::new("classification", Value::from(classification.clone())),
        CustomProperty::new("dataProduct", Value::from(name.clone())),
        CustomProperty::new("outputPort", Value::from(port.name.clone())),
    ];
    if let Some(namespace) = product.namespace() {
        custom_properties.push(CustomProperty::new("namespace", Value::from(namespace)));
    }
    Ok(DataContract {
        api_version: API_VERSION,
        kind: "DataContract",
        id: contract_id(&spec.domain, &name, &port.name),
        name: format!("{name} {}", port.name),
        version: version(product),
        status: lifecycle(spec.status),
        domain: spec.domain.clone(),
        tags: vec![format!("classification:{classification}")],
        description: Description {
            purpose: spec.description.purpose.clone(),
            usage: spec.description.usage.clone(),
            limitations: spec.description.limitations.clone(),
        },
        team: team(product),
        schema: vec![schema_object],
        servers: server.into_iter().collect(),
        sla_properties: spec.sla.iter().map(sla).collect(),
        custom_properties,
        contract_created_ts: created_at(product),
    })
}
