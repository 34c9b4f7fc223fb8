//! The catalog: read-only web pages and a JSON API about the mesh, served by every replica
//! (leader or not) from watch caches of its own, so it answers while a standby waits and shows
//! each change as soon as the watch sees it.
//!
//! Routes (GET only):
//! - `/` and `/api/mesh`: domains and their products with health, searchable and filterable
//!   (`?q=`, `health=`, `classification=`, `lifecycle=`);
//! - `/products/NAMESPACE/NAME` and `/api/products/NAMESPACE/NAME`: one product;
//! - `/lineage`, `/lineage.svg` and `/api/lineage`: the whole mesh's lineage;
//!   `/products/NAMESPACE/NAME/lineage.svg`: one product's neighbourhood;
//! - `/api/products/NAMESPACE/NAME/odps`: the product as an ODPS document;
//!   `/api/products/NAMESPACE/NAME/odcs`: its output ports' ODCS contracts (a JSON array), and
//!   `/api/products/NAMESPACE/NAME/odcs/PORT`: one port's; JSON, or YAML with `?format=yaml`.
//!
//! Only metadata and status: no credentials, no data.

pub mod lineage;
pub mod render;
pub mod view;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::access_policy::AccessPolicy;
use crate::api::data_product::DataProduct;
use crate::api::domain::Domain;
use crate::export::{Format, odcs, odps};
use view::{Filter, Objects};

/// The catalog's caches: one watch per kind, independent of the controllers' (which run only
/// while this replica leads).
#[derive(Clone)]
struct Caches {
    client: Client,
    domains: Store<Domain>,
    products: Store<DataProduct>,
    policies: Store<AccessPolicy>,
}

fn watch<K>(client: &Client, shutdown: &CancellationToken) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(Api::<K>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .for_each(|event| async move {
        if let Err(error) = event {
            tracing::debug!(%error, kind = K::kind(&()).as_ref(), "catalog watch error (retrying)");
        }
    });
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = stream => {}
            () = shutdown.cancelled() => {}
        }
    });
    reader
}

/// Serve the catalog on `addr` until `shutdown` is cancelled.
pub async fn serve(
    addr: SocketAddr,
    client: Client,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let caches = Caches {
        client: client.clone(),
        domains: watch(&client, &shutdown),
        products: watch(&client, &shutdown),
        policies: watch(&client, &shutdown),
    };
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving the catalog");
    crate::http::serve_connections(listener, shutdown, move |request| {
        let caches = caches.clone();
        async move { route(&request, &caches).await }
    })
    .await
}

async fn route(request: &Request<Incoming>, caches: &Caches) -> Response<Full<Bytes>> {
    if request.method() != Method::GET {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".into(),
        );
    }
    let (domains, products, policies) = (
        caches.domains.state(),
        caches.products.state(),
        caches.policies.state(),
    );
    let objects = Objects {
        domains: &domains,
        products: &products,
        policies: &policies,
    };
    let query = request.uri().query().unwrap_or("");
    let filter = filter(query);
    let segments: Vec<&str> = request.uri().path().trim_matches('/').split('/').collect();
    match segments.as_slice() {
        [""] => html(render::mesh(&view::mesh(&objects, &filter), &filter)),
        ["api", "mesh"] => json(&view::mesh(&objects, &filter)),
        ["products", namespace, name] => match view::product_page(&objects, namespace, name) {
            Some(page) => html(render::product(&with_events(&caches.client, page).await)),
            None => not_found(),
        },
        ["api", "products", namespace, name] => match view::product_page(&objects, namespace, name)
        {
            Some(page) => json(&with_events(&caches.client, page).await),
            None => not_found(),
        },
        ["api", "products", namespace, name, "odps"] => {
            export_response(&objects, namespace, name, Export::Odps, query)
        }
        ["api", "products", namespace, name, "odcs"] => {
            export_response(&objects, namespace, name, Export::Odcs(None), query)
        }
        ["api", "products", namespace, name, "odcs", port] => {
            export_response(&objects, namespace, name, Export::Odcs(Some(port)), query)
        }
        ["products", namespace, name, "lineage.svg"] => {
            let Some(page) = view::product_page(&objects, namespace, name) else {
                return not_found();
            };
            let center = format!("{}/{}", page.summary.domain, page.summary.name);
            svg(&view::lineage(&objects, Some(&center)))
        }
        ["lineage"] => html(render::lineage()),
        ["lineage.svg"] => svg(&view::lineage(&objects, None)),
        ["api", "lineage"] => json(&view::lineage(&objects, None)),
        _ => not_found(),
    }
}

/// How many of a product's Events its page shows.
const RECENT_EVENTS: usize = 10;

/// The page with the product's recent Events (events.k8s.io), read now. A page without them is
/// still worth showing: a failed read leaves the list empty and is logged.
async fn with_events(client: &Client, mut page: view::ProductPage) -> view::ProductPage {
    let api: Api<Event> = Api::namespaced(client.clone(), &page.summary.namespace);
    let selector = format!(
        "regarding.kind=DataProduct,regarding.name={}",
        page.summary.name
    );
    let listed = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        api.list(&ListParams::default().fields(&selector)),
    )
    .await;
    let events = match listed {
        Ok(Ok(list)) => list.items,
        Ok(Err(error)) => {
            tracing::warn!(%error, product = %page.summary.name, "catalog: cannot list the product's Events");
            return page;
        }
        Err(_) => {
            tracing::warn!(product = %page.summary.name, "catalog: listing the product's Events timed out");
            return page;
        }
    };
    let mut views: Vec<view::EventView> = events
        .into_iter()
        .map(|event| {
            let time = event
                .series
                .as_ref()
                .map(|s| s.last_observed_time.0.to_string())
                .or_else(|| event.event_time.as_ref().map(|t| t.0.to_string()))
                .or_else(|| {
                    event
                        .deprecated_last_timestamp
                        .as_ref()
                        .map(|t| t.0.to_string())
                })
                .unwrap_or_default();
            view::EventView {
                time,
                type_: event.type_.unwrap_or_default(),
                reason: event.reason.unwrap_or_default(),
                note: event.note.unwrap_or_default(),
                count: event.series.map_or(1, |s| s.count),
            }
        })
        .collect();
    views.sort_by(|a, b| b.time.cmp(&a.time));
    views.truncate(RECENT_EVENTS);
    page.events = views;
    page
}

fn export_response(
    objects: &Objects<'_>,
    namespace: &str,
    name: &str,
    which: Export<'_>,
    query: &str,
) -> Response<Full<Bytes>> {
    let format =
        if form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == "format" && v == "yaml") {
            Format::Yaml
        } else {
            Format::Json
        };
    match export(objects, namespace, name, which, format) {
        Exported::Document(content_type, body) => {
            respond(StatusCode::OK, content_type, body.into())
        }
        Exported::NotFound => not_found(),
        Exported::Failed(message) => respond(
            StatusCode::UNPROCESSABLE_ENTITY,
            "text/plain",
            format!("{message}\n").into(),
        ),
    }
}

/// Which export of a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Export<'a> {
    /// Its ODPS document.
    Odps,
    /// Its ODCS contracts: all, or one port's.
    Odcs(Option<&'a str>),
}

/// An export, as the API answers it.
#[derive(Debug, PartialEq, Eq)]
pub enum Exported {
    /// A content type and the document.
    Document(&'static str, String),
    /// No such product or port.
    NotFound,
    /// The product cannot be exported (e.g. a schema that does not parse): why.
    Failed(String),
}

/// A product's export from the watched objects, in `format`. Pure.
pub fn export(
    objects: &Objects<'_>,
    namespace: &str,
    name: &str,
    which: Export<'_>,
    format: Format,
) -> Exported {
    let Some(product) = objects
        .products
        .iter()
        .find(|p| crate::export::selected(p, Some(namespace), Some(name)))
    else {
        return Exported::NotFound;
    };
    let content_type = match format {
        Format::Json => "application/json",
        Format::Yaml => "application/yaml",
    };
    let encoded = match which {
        Export::Odps => {
            let known: Vec<&DataProduct> = objects.products.iter().map(|p| p.as_ref()).collect();
            crate::export::encode(&odps::document(product, &known), format)
        }
        Export::Odcs(port) => {
            let contracts = match odcs::contracts(product) {
                Ok(contracts) => contracts,
                Err(error) => return Exported::Failed(error.to_string()),
            };
            match port {
                None => crate::export::encode_all(&contracts, format),
                Some(port) => match product
                    .spec
                    .output_ports
                    .iter()
                    .position(|p| p.name == port)
                    .and_then(|i| contracts.get(i))
                {
                    Some(contract) => crate::export::encode(contract, format),
                    None => return Exported::NotFound,
                },
            }
        }
    };
    match encoded {
        Ok(body) => Exported::Document(content_type, body),
        Err(error) => Exported::Failed(error.to_string()),
    }
}

fn filter(query: &str) -> Filter {
    let mut filter = Filter::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let value = value.into_owned();
        match key.as_ref() {
            "q" => filter.text = value,
            "health" => filter.health = Some(value),
            "classification" => filter.classification = Some(value),
            "lifecycle" => filter.lifecycle = Some(value),
            _ => {}
        }
    }
    filter
}

fn respond(status: StatusCode, content_type: &str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

fn html(page: String) -> Response<Full<Bytes>> {
    respond(StatusCode::OK, "text/html; charset=utf-8", page.into())
}

fn json<T: Serialize>(value: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => respond(StatusCode::OK, "application/json", body.into()),
        Err(_) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            "encoding failed\n".into(),
        ),
    }
}

fn svg(lineage: &view::Lineage) -> Response<Full<Bytes>> {
    match lineage::svg(lineage) {
        Some(svg) => respond(StatusCode::OK, "image/svg+xml", svg.into()),
        None => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            "the graph could not be laid out\n".into(),
        ),
    }
}

fn not_found() -> Response<Full<Bytes>> {
    respond(StatusCode::NOT_FOUND, "text/plain", "not found\n".into())
}
