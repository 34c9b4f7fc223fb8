//! Standard exports of the mesh's products: each DataProduct as an Open Data Product Standard
//! document ([`odps`]) and each of its output ports as an Open Data Contract Standard contract
//! ([`odcs`]), built from the object alone by pure functions. `datamesh-operator export` and
//! the catalog's API serve them.
//!
//! Ids are the mesh's names: a product is `<domain>.<product>`, a port's contract
//! `<domain>.<product>.<port>`. A version is the product's `metadata.generation` (the API
//! server's count of its spec changes; `0` for an object read from a manifest).

pub mod cli;
pub mod odcs;
pub mod odps;
pub mod schema;

#[cfg(test)]
mod tests;

use kube::ResourceExt;
use serde::{Deserialize, Serialize};

use crate::api::data_product::{Classification, DataProduct, Lifecycle};
use odcs::{Team, TeamMember};

/// Why a product could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("output port {port}: {source}")]
    Schema {
        port: String,
        #[source]
        source: schema::SchemaError,
    },
    #[error("cannot encode the export as {format}: {message}")]
    Encode {
        format: &'static str,
        message: String,
    },
}

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("document {index} is not YAML: {source}")]
    Yaml {
        index: usize,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("document {index} ({name}) is not a valid DataProduct: {source}")]
    Invalid {
        index: usize,
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("no DataProduct (apiVersion datamesh.dev/v1alpha1) in the manifest")]
    Empty,
}

/// The id of a product: `<domain>.<product>`.
pub fn product_id(domain: &str, product: &str) -> String {
    format!("{domain}.{product}")
}

/// The id of a port's contract: `<domain>.<product>.<port>`.
pub fn contract_id(domain: &str, product: &str, port: &str) -> String {
    format!("{domain}.{product}.{port}")
}

/// A product's version: its `metadata.generation`, `0` when it has none (a manifest).
pub fn version(product: &DataProduct) -> String {
    product.metadata.generation.unwrap_or(0).to_string()
}

fn word<T: Serialize>(value: T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// `public`, `internal`, `confidential` or `restricted`.
pub fn classification(classification: Classification) -> String {
    word(classification)
}

/// `proposed`, `draft`, `active`, `deprecated` or `retired`: the words of both standards.
pub fn lifecycle(lifecycle: Lifecycle) -> String {
    word(lifecycle)
}

/// `metadata.creationTimestamp` as RFC 3339.
fn created_at(product: &DataProduct) -> Option<String> {
    product
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.to_string())
}

/// The team accountable for a product: its domain, with its owner.
fn team(product: &DataProduct) -> Team {
    let owner = &product.spec.owner;
    Team {
        name: product.spec.domain.clone(),
        members: vec![TeamMember {
            username: owner.email.clone().unwrap_or_else(|| owner.name.clone()),
            name: owner.name.clone(),
            role: "owner".to_owned(),
        }],
    }
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// YAML; several documents as a stream separated by `---`.
    Yaml,
    /// JSON; several documents as one array.
    Json,
}

/// One document in `format`.
pub fn encode<T: Serialize>(document: &T, format: Format) -> Result<String, ExportError> {
    match format {
        Format::Yaml => serde_yaml::to_string(document)
            .map(|yaml| quote_yaml11_ambiguities(&yaml))
            .map_err(|e| ExportError::Encode {
                format: "YAML",
                message: e.to_string(),
            }),
        Format::Json => serde_json::to_string_pretty(document)
            .map(|mut text| {
                text.push('\n');
                text
            })
            .map_err(|e| ExportError::Encode {
                format: "JSON",
                message: e.to_string(),
            }),
    }
}

/// `serde_yaml` writes YAML 1.2, where `2026-01-01T00:00:00Z`, `9:30` or `yes` are strings, and
/// leaves them unquoted; YAML 1.1 readers (PyYAML, and so many tools that read contracts) take
/// them for a timestamp, a number and a boolean. This quotes such plain scalars (a quoted
/// scalar means the same string in both), leaving block scalars (`|`, `>`) as they are.
fn quote_yaml11_ambiguities(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len());
    // The indentation of the line that opened a block scalar, while inside it.
    let mut block: Option<usize> = None;
    for line in yaml.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(parent) = block {
            if line.trim().is_empty() || indent > parent {
                out.push_str(line);
                out.push('\n');
                continue;
            }
            block = None;
        }
        let (prefix, value) = split_value(line);
        if value.starts_with('|') || value.starts_with('>') {
            block = Some(indent);
        }
        out.push_str(prefix);
        if is_yaml11_ambiguous(value) {
            out.push('\'');
            out.push_str(&value.replace('\'', "''"));
            out.push('\'');
        } else {
            out.push_str(value);
        }
        out.push('\n');
    }
    out
}

/// A line of block YAML as what comes before its scalar value (indentation, `- `, `key: `) and
/// the value (empty when there is none, or when the key itself is quoted).
fn split_value(line: &str) -> (&str, &str) {
    let mut start = line.len() - line.trim_start().len();
    while line[start..].starts_with("- ") {
        start += 2;
    }
    let rest = &line[start..];
    if rest.starts_with(['\'', '"']) {
        return (line, "");
    }
    match rest.find(": ") {
        Some(colon) => line.split_at(start + colon + 2),
        None if rest.ends_with(':') => (line, ""),
        // A bare list item.
        None if start > 0 && line[..start].trim_end().ends_with('-') => line.split_at(start),
        None => (line, ""),
    }
}

/// Whether a plain scalar reads as something other than a string in YAML 1.1: a date or
/// timestamp, a sexagesimal or underscored number, or a yes/no/on/off/y/n boolean.
fn is_yaml11_ambiguous(value: &str) -> bool {
    let bytes = value.as_bytes();
    if value.is_empty() || value.starts_with(['\'', '"']) {
        return false;
    }
    let date_like = bytes.len() >= 8
        && bytes[..4].iter().all(u8::is_ascii_digit)
        && bytes[4] == b'-'
        && bytes[5].is_ascii_digit();
    let numeric = value
        .chars()
        .all(|c| c.is_ascii_digit() || "_:.+-".contains(c))
        && value.chars().any(|c| c.is_ascii_digit())
        && value.contains([':', '_']);
    let boolean = ["y", "n", "yes", "no", "on", "off"]
        .iter()
        .any(|word| value.eq_ignore_ascii_case(word));
    date_like || numeric || boolean
}

/// Several documents in `format`: a YAML stream, or a JSON array.
pub fn encode_all<T: Serialize>(documents: &[T], format: Format) -> Result<String, ExportError> {
    match format {
        Format::Yaml => {
            let mut out = String::new();
            for document in documents {
                out.push_str("---\n");
                out.push_str(&encode(document, Format::Yaml)?);
            }
            Ok(out)
        }
        Format::Json => encode(&documents, Format::Json),
    }
}

/// The DataProducts of a manifest: a YAML stream of objects (other kinds are skipped, `List`s
/// are opened, as `kubectl get -o yaml` prints them).
pub fn products_from_manifest(text: &str) -> Result<Vec<DataProduct>, ManifestError> {
    let mut products = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let index = index + 1;
        let value = serde_json::Value::deserialize(document)
            .map_err(|source| ManifestError::Yaml { index, source })?;
        let items = match value.get("kind").and_then(serde_json::Value::as_str) {
            Some("List") => value
                .get("items")
                .and_then(serde_json::Value::as_array)
                .cloned()
                .unwrap_or_default(),
            _ => vec![value],
        };
        for item in items {
            let is_product = item.get("apiVersion").and_then(serde_json::Value::as_str)
                == Some("datamesh.dev/v1alpha1")
                && item.get("kind").and_then(serde_json::Value::as_str) == Some("DataProduct");
            if !is_product {
                continue;
            }
            let name = item
                .pointer("/metadata/name")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("unnamed")
                .to_owned();
            let product =
                serde_json::from_value(item).map_err(|source| ManifestError::Invalid {
                    index,
                    name,
                    source,
                })?;
            products.push(product);
        }
    }
    if products.is_empty() {
        return Err(ManifestError::Empty);
    }
    Ok(products)
}

/// Whether `product` is `namespace/name` (either may be unset: any).
pub fn selected(product: &DataProduct, namespace: Option<&str>, name: Option<&str>) -> bool {
    namespace.is_none_or(|ns| product.namespace().as_deref() == Some(ns))
        && name.is_none_or(|n| product.name_any() == n)
}
