//! The catalog's views, pages and graph, from objects as the API server would return them.

use std::sync::Arc;

use serde_json::json;

use super::lineage;
use super::render;
use super::view::{self, Filter, Health, Objects};
use crate::api::access_policy::AccessPolicy;
use crate::api::data_product::DataProduct;
use crate::api::domain::Domain;

fn conditions(
    generation: i64,
    ready: &str,
    stalled: &str,
    reason: &str,
    message: &str,
) -> serde_json::Value {
    json!([
        {"type": "Ready", "status": ready, "observedGeneration": generation, "reason": reason,
         "message": message, "lastTransitionTime": "2026-01-01T00:00:00Z"},
        {"type": "Stalled", "status": stalled, "observedGeneration": generation, "reason": reason,
         "message": message, "lastTransitionTime": "2026-01-01T00:00:00Z"},
    ])
}

fn domain(name: &str) -> Arc<Domain> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "datamesh.dev/v1alpha1", "kind": "Domain",
            "metadata": {"name": name, "generation": 1},
            "spec": {"description": format!("the {name} domain")},
            "status": {"namespace": name, "conditions": conditions(1, "True", "False", "Provisioned", "ok")},
        }))
        .unwrap(),
    )
}

fn product(
    domain: &str,
    name: &str,
    extra: serde_json::Value,
    status: serde_json::Value,
) -> Arc<DataProduct> {
    let mut spec = json!({
        "domain": domain, "owner": {"name": "Alice <a&b>", "email": "alice@example.com"},
        "description": {"purpose": format!("{name} for everyone"), "usage": "read it"},
        "outputPorts": [{"name": "events", "kafka": {"partitions": 3},
                         "schema": {"type": "json", "definition": "{\"type\":\"object\"}"}},
                        {"name": "files", "bucket": {}}],
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "datamesh.dev/v1alpha1", "kind": "DataProduct",
            "metadata": {"name": name, "namespace": domain, "generation": 2},
            "spec": spec, "status": status,
        }))
        .unwrap(),
    )
}

fn policy(namespace: &str, product: &str, consumer: &str) -> Arc<AccessPolicy> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "datamesh.dev/v1alpha1", "kind": "AccessPolicy",
            "metadata": {"name": format!("{consumer}-reads"), "namespace": namespace, "generation": 1},
            "spec": {"dataProduct": product, "consumers": [{"domain": consumer}], "ports": ["events"],
                     "purpose": "reports", "expiresAt": "2027-06-30T00:00:00Z"},
        }))
        .unwrap(),
    )
}

struct Mesh {
    domains: Vec<Arc<Domain>>,
    products: Vec<Arc<DataProduct>>,
    policies: Vec<Arc<AccessPolicy>>,
}

impl Mesh {
    fn objects(&self) -> Objects<'_> {
        Objects {
            domains: &self.domains,
            products: &self.products,
            policies: &self.policies,
        }
    }
}

fn mesh() -> Mesh {
    Mesh {
        domains: vec![domain("sales"), domain("ads")],
        products: vec![
            product(
                "sales",
                "orders",
                json!({"classification": "confidential"}),
                json!({
                    "observedGeneration": 2, "conditions": conditions(2, "True", "False", "Provisioned", "all made"),
                    "outputPorts": [{"name": "events", "topic": "sales.orders.events", "bootstrapServers": "kafka:9092"},
                                    {"name": "files", "bucket": "sales-orders-files", "endpoint": "https://s3"}],
                }),
            ),
            product(
                "ads",
                "campaigns",
                json!({
                    "inputPorts": [{"name": "orders", "dataProduct": {"domain": "sales", "name": "orders", "port": "events"}},
                                   {"name": "gone", "dataProduct": {"domain": "sales", "name": "gone", "port": "events"}}],
                }),
                json!({
                    "observedGeneration": 2,
                    "conditions": conditions(2, "False", "True", "PartitionDecrease", "partitions cannot shrink from 3 to 1"),
                    "inputPorts": [{"name": "orders", "access": "Granted"}, {"name": "gone", "access": "NotFound"}],
                }),
            ),
        ],
        policies: vec![policy("sales", "orders", "ads")],
    }
}

#[test]
fn the_mesh_lists_every_domain_with_its_products_health_and_what_it_owns() {
    let m = mesh();
    let view = view::mesh(&m.objects(), &Filter::default());
    let names: Vec<_> = view.domains.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["ads", "sales"]);
    let sales = &view.domains[1];
    assert_eq!((sales.topics, sales.partitions, sales.buckets), (1, 3, 1));
    let owned: Vec<(&str, &str, Option<i64>, &str)> = sales
        .owned
        .iter()
        .map(|r| {
            (
                r.kind,
                r.name.as_str(),
                r.partitions,
                r.classification.as_str(),
            )
        })
        .collect();
    assert_eq!(
        owned,
        [
            ("bucket", "sales-orders-files", None, "confidential"),
            ("topic", "sales.orders.events", Some(3), "confidential"),
        ]
    );
    // ads' product made nothing yet (no ports in its status): it owns nothing.
    assert_eq!(view.domains[0].owned, []);
    assert_eq!(sales.products[0].standing.health, Health::Ready);
    assert_eq!(sales.products[0].classification, "confidential");
    let campaigns = &view.domains[0].products[0];
    assert_eq!(campaigns.standing.health, Health::Stalled);
    assert_eq!(campaigns.standing.reason, "PartitionDecrease");
}

#[test]
fn a_product_in_another_domains_namespace_is_not_that_domains() {
    let mut m = mesh();
    // ads' team writes a product claiming sales, in its own namespace, and a status by hand.
    m.products.push(product(
        "sales",
        "squatter",
        json!({}),
        json!({"outputPorts": [{"name": "events", "topic": "sales.squatter.events"}]}),
    ));
    let mut moved = (*m.products[2]).clone();
    moved.metadata.namespace = Some("ads".into());
    m.products[2] = Arc::new(moved);
    let view = view::mesh(&m.objects(), &Filter::default());
    let sales = view.domains.iter().find(|d| d.name == "sales").unwrap();
    assert_eq!(sales.topics, 1, "{:?}", sales.owned);
    let ads = view.domains.iter().find(|d| d.name == "ads").unwrap();
    assert_eq!(ads.topics, 0);
    let html = render::mesh(&view, &Filter::default());
    assert!(html.contains("<code>sales.orders.events</code>"));
    assert!(!html.contains("sales.squatter.events"));
}

#[test]
fn filters_keep_what_matches() {
    let m = mesh();
    let stalled = Filter {
        health: Some("stalled".into()),
        ..Filter::default()
    };
    let view = view::mesh(&m.objects(), &stalled);
    assert_eq!(view.domains.len(), 1);
    assert_eq!(view.domains[0].products[0].name, "campaigns");
    let text = Filter {
        text: "ORDERS FOR".into(),
        ..Filter::default()
    };
    assert_eq!(
        view::mesh(&m.objects(), &text).domains[0].products[0].name,
        "orders"
    );
    let none = Filter {
        classification: Some("restricted".into()),
        ..Filter::default()
    };
    assert!(view::mesh(&m.objects(), &none).domains.is_empty());
}

#[test]
fn an_older_generations_ready_is_not_ready() {
    let conditions: Vec<_> =
        serde_json::from_value(conditions(1, "True", "False", "Provisioned", "ok")).unwrap();
    assert_eq!(
        view::standing(&conditions, Some(2)).health,
        Health::Reconciling
    );
    assert_eq!(view::standing(&conditions, Some(1)).health, Health::Ready);
    assert_eq!(view::standing(&[], Some(1)).health, Health::Pending);
}

#[test]
fn a_product_page_shows_ports_consumers_inputs_and_conditions() {
    let m = mesh();
    let page = view::product_page(&m.objects(), "sales", "orders").unwrap();
    assert_eq!(page.output_ports[0].resource, "sales.orders.events");
    assert_eq!(page.output_ports[0].endpoint.as_deref(), Some("kafka:9092"));
    assert_eq!(
        page.output_ports[0].schema.as_deref(),
        Some("{\n  \"type\": \"object\"\n}")
    );
    assert_eq!(page.output_ports[1].resource, "sales-orders-files");
    assert_eq!(page.consumers[0].consumer, "domain:ads");
    assert_eq!(page.consumers[0].ports, ["events"]);
    assert_eq!(page.consumers[0].purpose.as_deref(), Some("reports"));
    let campaigns = view::product_page(&m.objects(), "ads", "campaigns").unwrap();
    let inputs: Vec<_> = campaigns
        .input_ports
        .iter()
        .map(|i| (i.source.as_str(), i.access.as_str()))
        .collect();
    assert_eq!(
        inputs,
        [
            ("sales/orders/events", "Granted"),
            ("sales/gone/events", "NotFound")
        ]
    );
    assert!(
        view::product_page(&m.objects(), "ads", "orders").is_none(),
        "a product is found in its own namespace only"
    );
}

#[test]
fn lineage_has_one_edge_per_input_port_with_its_access() {
    let m = mesh();
    let graph = view::lineage(&m.objects(), None);
    let edges: Vec<_> = graph
        .edges
        .iter()
        .map(|e| (e.from.as_str(), e.to.as_str(), e.access.as_str()))
        .collect();
    assert_eq!(
        edges,
        [
            ("sales/gone", "ads/campaigns", "NotFound"),
            ("sales/orders", "ads/campaigns", "Granted")
        ]
    );
    let ids: Vec<_> = graph.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["ads/campaigns", "sales/gone", "sales/orders"]);
    let around = view::lineage(&m.objects(), Some("sales/orders"));
    assert_eq!(around.edges.len(), 1);
    assert_eq!(around.nodes.len(), 2);

    let svg = lineage::svg(&graph).unwrap();
    assert!(svg.contains("<svg"), "{svg}");
    for id in ["ads/campaigns", "sales/orders", "sales/gone"] {
        assert!(svg.contains(id), "{id} drawn");
    }
    assert!(
        svg.contains(lineage::access_colour("Granted"))
            && svg.contains(lineage::access_colour("NotFound"))
    );
}

#[test]
fn pages_escape_what_objects_say() {
    let m = mesh();
    let page = render::product(&view::product_page(&m.objects(), "sales", "orders").unwrap());
    assert!(page.contains("Alice &lt;a&amp;b&gt;"));
    assert!(!page.contains("<a&b>"));
    let html = render::mesh(
        &view::mesh(&m.objects(), &Filter::default()),
        &Filter::default(),
    );
    assert!(
        html.contains("data-product=\"ads/campaigns\"")
            && html.contains("partitions cannot shrink from 3 to 1")
    );
}

#[test]
fn exports_are_served_per_product_and_port() {
    use super::{Export, Exported, export};
    use crate::export::Format;
    let mesh = mesh();
    let objects = mesh.objects();
    let Exported::Document(content_type, body) =
        export(&objects, "sales", "orders", Export::Odps, Format::Json)
    else {
        panic!("no ODPS document")
    };
    assert_eq!(content_type, "application/json");
    let document: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(document["id"], "sales.orders");
    assert_eq!(document["version"], "2");

    let Exported::Document(_, body) = export(
        &objects,
        "sales",
        "orders",
        Export::Odcs(None),
        Format::Json,
    ) else {
        panic!("no contracts")
    };
    let contracts: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(contracts.as_array().unwrap().len(), 2);
    assert_eq!(contracts[0]["servers"][0]["host"], "kafka:9092");

    let Exported::Document(content_type, body) = export(
        &objects,
        "sales",
        "orders",
        Export::Odcs(Some("files")),
        Format::Yaml,
    ) else {
        panic!("no contract")
    };
    assert_eq!(content_type, "application/yaml");
    let contract: serde_json::Value = serde_yaml::from_str(&body).unwrap();
    assert_eq!(contract["id"], "sales.orders.files");

    for (namespace, name, which) in [
        ("sales", "orders", Export::Odcs(Some("nope"))),
        ("ads", "orders", Export::Odps),
        ("sales", "missing", Export::Odcs(None)),
    ] {
        assert_eq!(
            export(&objects, namespace, name, which, Format::Json),
            Exported::NotFound
        );
    }
}

#[test]
fn a_product_page_links_its_exports() {
    let mesh = mesh();
    let page = view::product_page(&mesh.objects(), "sales", "orders").unwrap();
    let html = render::product(&page);
    assert!(html.contains("href=\"/api/products/sales/orders/odps?format=yaml\""));
    assert!(html.contains("href=\"/api/products/sales/orders/odcs/events?format=yaml\""));
}
