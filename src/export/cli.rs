//! `datamesh-operator export odcs|odps`: the products of a manifest or of the cluster, exported
//! to stdout or to one file per document. The conversion is [`super::odcs`] and
//! [`super::odps`]; this is only reading and writing.

use std::path::{Path, PathBuf};

use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use super::{
    ExportError, Format, ManifestError, encode, encode_all, odcs, odps, products_from_manifest,
    selected,
};
use crate::api::data_product::DataProduct;

/// Which standard to export to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standard {
    /// Open Data Contract Standard: one contract per output port.
    Odcs,
    /// Open Data Product Standard: one document per product.
    Odps,
}

/// What to export and where.
#[derive(Clone, Debug)]
pub struct Request {
    pub standard: Standard,
    /// A manifest to read (`-`: standard input); the cluster (kubeconfig) when `None`.
    pub file: Option<PathBuf>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub format: Format,
    /// One file per document in this directory, instead of standard output.
    pub out_dir: Option<PathBuf>,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Manifest {
        path: String,
        #[source]
        source: ManifestError,
    },
    #[error("cannot reach the cluster (kubeconfig): {0}")]
    Connect(#[source] Box<kube::Error>),
    #[error("cannot list DataProducts: {0}")]
    List(#[source] Box<kube::Error>),
    #[error("no DataProduct {0}")]
    NotFound(String),
    #[error("DataProduct {product}: {source}")]
    Export {
        product: String,
        #[source]
        source: ExportError,
    },
    #[error("{} of the DataProducts could not be exported:\n{}", .0.len(), .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Several(Vec<CliError>),
    #[error(transparent)]
    Encode(ExportError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

async fn read_products(request: &Request) -> Result<Vec<DataProduct>, CliError> {
    match &request.file {
        Some(path) => {
            let shown = path.display().to_string();
            let text = if path == Path::new("-") {
                std::io::read_to_string(std::io::stdin())
            } else {
                std::fs::read_to_string(path)
            }
            .map_err(|source| CliError::Read {
                path: shown.clone(),
                source,
            })?;
            products_from_manifest(&text).map_err(|source| CliError::Manifest {
                path: shown,
                source,
            })
        }
        None => {
            let client = Client::try_default()
                .await
                .map_err(|e| CliError::Connect(Box::new(e)))?;
            let api: Api<DataProduct> = match &request.namespace {
                Some(namespace) => Api::namespaced(client, namespace),
                None => Api::all(client),
            };
            let list = api
                .list(&ListParams::default())
                .await
                .map_err(|e| CliError::List(Box::new(e)))?;
            Ok(list.items)
        }
    }
}

/// One exported document: a file name stem and its text.
struct Document {
    id: String,
    value: serde_json::Value,
}

fn documents(
    standard: Standard,
    chosen: &[&DataProduct],
    known: &[&DataProduct],
) -> Result<Vec<Document>, CliError> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for product in chosen {
        let label = format!(
            "{}/{}",
            product.namespace().unwrap_or_default(),
            product.name_any()
        );
        let exported: Result<Vec<Document>, ExportError> = match standard {
            Standard::Odcs => odcs::contracts(product)
                .map(|contracts| {
                    contracts
                        .into_iter()
                        .map(|c| {
                            Ok(Document {
                                id: c.id.clone(),
                                value: to_value(&c)?,
                            })
                        })
                        .collect::<Result<Vec<_>, ExportError>>()
                })
                .and_then(|documents| documents),
            Standard::Odps => {
                let document = odps::document(product, known);
                to_value(&document).map(|value| {
                    vec![Document {
                        id: document.id.clone(),
                        value,
                    }]
                })
            }
        };
        match exported {
            Ok(documents) => out.extend(documents),
            Err(source) => errors.push(CliError::Export {
                product: label,
                source,
            }),
        }
    }
    match errors.len() {
        0 => Ok(out),
        1 => Err(errors.remove(0)),
        _ => Err(CliError::Several(errors)),
    }
}

fn to_value<T: serde::Serialize>(document: &T) -> Result<serde_json::Value, ExportError> {
    serde_json::to_value(document).map_err(|e| ExportError::Encode {
        format: "JSON",
        message: e.to_string(),
    })
}

/// Run an export; what it printed to standard output is returned for the caller to write.
pub async fn run(request: &Request) -> Result<String, CliError> {
    let products = read_products(request).await?;
    let known: Vec<&DataProduct> = products.iter().collect();
    let chosen: Vec<&DataProduct> = products
        .iter()
        .filter(|p| selected(p, request.namespace.as_deref(), request.name.as_deref()))
        .collect();
    if chosen.is_empty() {
        let what = match (&request.namespace, &request.name) {
            (Some(ns), Some(name)) => format!("{ns}/{name}"),
            (None, Some(name)) => name.clone(),
            (Some(ns), None) => format!("in namespace {ns}"),
            (None, None) => "at all".to_owned(),
        };
        return Err(CliError::NotFound(what));
    }
    let documents = documents(request.standard, &chosen, &known)?;
    let encoded =
        |value: &serde_json::Value| encode(value, request.format).map_err(CliError::Encode);
    match &request.out_dir {
        None => {
            let values: Vec<&serde_json::Value> = documents.iter().map(|d| &d.value).collect();
            encode_all(&values, request.format).map_err(CliError::Encode)
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|source| CliError::Write {
                path: dir.display().to_string(),
                source,
            })?;
            let (suffix, extension) = match (request.standard, request.format) {
                (Standard::Odcs, Format::Yaml) => ("odcs", "yaml"),
                (Standard::Odcs, Format::Json) => ("odcs", "json"),
                (Standard::Odps, Format::Yaml) => ("odps", "yaml"),
                (Standard::Odps, Format::Json) => ("odps", "json"),
            };
            let mut written = String::new();
            for document in &documents {
                let path = dir.join(format!("{}.{suffix}.{extension}", document.id));
                std::fs::write(&path, encoded(&document.value)?).map_err(|source| {
                    CliError::Write {
                        path: path.display().to_string(),
                        source,
                    }
                })?;
                written.push_str(&format!("{}\n", path.display()));
            }
            Ok(written)
        }
    }
}
