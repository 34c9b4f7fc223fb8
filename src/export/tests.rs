//! The exports of the sample products (`config/samples`), read from the manifests as the CLI
//! reads a file.

use serde_json::{Value, json};

use super::*;
use crate::api::data_product::{
    DataProductStatus, InputAccess, InputPortStatus, OutputPortStatus, PortContract, PortSchema,
    SchemaType,
};

fn samples() -> Vec<DataProduct> {
    let text = [
        include_str!("../../config/samples/domains.yaml"),
        include_str!("../../config/samples/payments.yaml"),
        include_str!("../../config/samples/customers.yaml"),
        include_str!("../../config/samples/marketing.yaml"),
    ]
    .join("\n---\n");
    products_from_manifest(&text).unwrap()
}

fn sample(name: &str) -> DataProduct {
    samples()
        .into_iter()
        .find(|p| p.name_any() == name)
        .unwrap()
}

fn as_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap()
}

#[test]
fn a_manifest_yields_its_data_products_only() {
    let products = samples();
    let names: Vec<String> = products.iter().map(|p| p.name_any()).collect();
    assert_eq!(
        names,
        [
            "transactions",
            "chargebacks",
            "profiles",
            "consents",
            "campaign-performance"
        ]
    );
}

#[test]
fn manifests_without_products_or_with_broken_ones_are_refused_with_the_reason() {
    assert!(matches!(
        products_from_manifest("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"),
        Err(ManifestError::Empty)
    ));
    let broken = "apiVersion: datamesh.dev/v1alpha1\nkind: DataProduct\nmetadata: {name: bad}\nspec: {domain: d}\n";
    let error = products_from_manifest(broken).unwrap_err();
    assert!(matches!(error, ManifestError::Invalid { index: 1, .. }));
    assert!(error.to_string().contains("bad"), "{error}");
    assert!(matches!(
        products_from_manifest("a: [1\n"),
        Err(ManifestError::Yaml { index: 1, .. })
    ));
}

#[test]
fn a_list_as_kubectl_prints_it_is_opened() {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "datamesh.dev/v1alpha1", "kind": "DataProduct",
         "metadata": {"name": "orders", "namespace": "payments", "generation": 4},
         "spec": {"domain": "payments", "owner": {"name": "alice"},
                  "description": {"purpose": "p", "usage": "u"}}}
    ]});
    let products = products_from_manifest(&serde_yaml::to_string(&list).unwrap()).unwrap();
    assert_eq!(products.len(), 1);
    assert_eq!(version(&products[0]), "4");
    assert!(selected(&products[0], Some("payments"), Some("orders")));
    assert!(selected(&products[0], None, None));
    assert!(!selected(&products[0], Some("marketing"), None));
}

#[test]
fn each_output_port_is_one_contract_with_the_products_metadata() {
    let product = sample("transactions");
    let contracts = odcs::contracts(&product).unwrap();
    assert_eq!(contracts.len(), 2);
    let events = as_json(&contracts[0]);
    assert_eq!(events["apiVersion"], "v3.1.0");
    assert_eq!(events["kind"], "DataContract");
    assert_eq!(events["id"], "payments.transactions.events");
    assert_eq!(events["version"], "0");
    assert_eq!(events["status"], "active");
    assert_eq!(events["domain"], "payments");
    assert_eq!(
        events["description"]["purpose"],
        product.spec.description.purpose.as_str()
    );
    assert_eq!(
        events["team"],
        json!({"name": "payments", "members": [{"username": "priya.sharma@example.com",
               "name": "Priya Sharma", "role": "owner"}]})
    );
    assert_eq!(events["tags"], json!(["classification:confidential"]));
    assert_eq!(
        events["slaProperties"],
        json!([{"property": "freshness", "value": 1, "unit": "s"},
               {"property": "availability", "value": "99.95", "unit": "percent"},
               {"property": "retention", "value": 7, "unit": "years"}])
    );
    let object = &events["schema"][0];
    assert_eq!(object["name"], "events");
    assert_eq!(object["physicalName"], "payments.transactions.events");
    assert_eq!(object["physicalType"], "topic");
    let properties = object["properties"].as_array().unwrap();
    let names: Vec<&str> = properties
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"paymentId") && names.contains(&"occurredAt"));
    let occurred = properties
        .iter()
        .find(|p| p["name"] == "occurredAt")
        .unwrap();
    assert_eq!(occurred["logicalType"], "timestamp");
    assert_eq!(occurred["required"], true);
    assert_eq!(occurred["classification"], "confidential");
    // No status yet: the Kafka endpoint is not known, so no Kafka server.
    assert_eq!(events.get("servers"), None);

    let archive = as_json(&contracts[1]);
    assert_eq!(archive["id"], "payments.transactions.archive");
    assert_eq!(
        archive["schema"][0]["physicalName"],
        "payments-transactions-archive"
    );
    assert_eq!(archive["schema"][0]["physicalType"], "bucket");
    assert_eq!(
        archive["servers"],
        json!([{"server": "archive", "description": "S3 bucket payments-transactions-archive",
                "type": "s3", "location": "s3://payments-transactions-archive/"}])
    );
}

#[test]
fn status_gives_the_servers_and_the_contract_in_force() {
    let mut product = sample("transactions");
    product.metadata.generation = Some(7);
    let in_force = r#"{"type": "object", "required": ["paymentId"], "properties": {"paymentId": {"type": "string"}}}"#;
    product.status = Some(DataProductStatus {
        output_ports: vec![
            OutputPortStatus {
                name: "events".into(),
                topic: Some("payments.transactions.events".into()),
                bootstrap_servers: Some("kafka:9093".into()),
                ..OutputPortStatus::default()
            },
            OutputPortStatus {
                name: "archive".into(),
                bucket: Some("payments-transactions-archive".into()),
                endpoint: Some("https://s3.example.com".into()),
                ..OutputPortStatus::default()
            },
        ],
        contracts: vec![PortContract {
            port: "events".into(),
            schema: PortSchema {
                type_: SchemaType::Json,
                definition: Some(in_force.into()),
            },
        }],
        ..DataProductStatus::default()
    });
    let contracts = odcs::contracts(&product).unwrap();
    let events = as_json(&contracts[0]);
    assert_eq!(events["version"], "7");
    assert_eq!(
        events["servers"],
        json!([{"server": "events", "description": "Kafka topic payments.transactions.events",
                "type": "kafka", "host": "kafka:9093", "format": "json"}])
    );
    // The schema consumers were granted, not the spec's newer one.
    assert_eq!(
        events["schema"][0]["properties"].as_array().unwrap().len(),
        1
    );
    assert_eq!(
        as_json(&contracts[1])["servers"][0]["endpointUrl"],
        "https://s3.example.com"
    );
}

#[test]
fn avro_ports_map_their_fields() {
    let contracts = odcs::contracts(&sample("profiles")).unwrap();
    let changes = as_json(&contracts[0]);
    assert_eq!(changes["schema"][0]["customProperties"][0]["value"], "avro");
    let properties = changes["schema"][0]["properties"].as_array().unwrap();
    let updated = properties
        .iter()
        .find(|p| p["name"] == "updatedAt")
        .unwrap();
    assert_eq!(updated["logicalType"], "timestamp");
    assert_eq!(updated["physicalType"], "timestamp-millis");
    let email = properties.iter().find(|p| p["name"] == "email").unwrap();
    assert_eq!(email.get("required"), None);
    assert_eq!(email["classification"], "restricted");
}

#[test]
fn an_unreadable_schema_names_its_port() {
    let mut product = sample("consents");
    product.spec.output_ports[0].schema = Some(PortSchema {
        type_: SchemaType::Avro,
        definition: Some("{not avro".into()),
    });
    let error = odcs::contracts(&product).unwrap_err();
    assert!(
        error.to_string().starts_with("output port events:"),
        "{error}"
    );
}

#[test]
fn the_product_document_links_inputs_and_outputs_by_contract() {
    let products = samples();
    let known: Vec<&DataProduct> = products.iter().collect();
    let mut campaign = sample("campaign-performance");
    campaign.status = Some(DataProductStatus {
        input_ports: vec![InputPortStatus {
            name: "transactions".into(),
            access: InputAccess::Granted,
            message: None,
        }],
        ..DataProductStatus::default()
    });
    let document = as_json(&odps::document(&campaign, &known));
    assert_eq!(document["apiVersion"], "v1.0.0");
    assert_eq!(document["kind"], "DataProduct");
    assert_eq!(document["id"], "marketing.campaign-performance");
    assert_eq!(document["status"], "active");
    assert_eq!(document["domain"], "marketing");
    let inputs = document["inputPorts"].as_array().unwrap();
    assert_eq!(inputs.len(), 3);
    assert_eq!(inputs[0]["contractId"], "payments.transactions.events");
    assert_eq!(inputs[0]["version"], "0");
    assert_eq!(
        inputs[0]["customProperties"],
        json!([{"property": "dataProduct", "value": "payments.transactions"},
               {"property": "access", "value": "Granted"}])
    );
    let outputs = document["outputPorts"].as_array().unwrap();
    assert_eq!(outputs[0]["type"], "s3");
    assert_eq!(
        outputs[0]["contractId"],
        "marketing.campaign-performance.reports"
    );
    assert_eq!(outputs[1]["type"], "kafka");
    assert_eq!(outputs[1]["inputContracts"].as_array().unwrap().len(), 3);
    let transformation = document["customProperties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["property"] == "transformation")
        .unwrap();
    assert_eq!(transformation["value"]["schedule"], "15 * * * *");
    // The job's arguments may carry anything: they are not exported.
    assert_eq!(transformation["value"].get("arguments"), None);

    // A producer not exported alongside: its contract's version is not known.
    let alone = as_json(&odps::document(&campaign, &[]));
    assert_eq!(alone["inputPorts"][0]["version"], "latest");
}

#[test]
fn several_documents_are_a_yaml_stream_or_a_json_array() {
    let contracts = odcs::contracts(&sample("transactions")).unwrap();
    let yaml = encode_all(&contracts, Format::Yaml).unwrap();
    let documents: Vec<Value> = serde_yaml::Deserializer::from_str(&yaml)
        .map(|d| Value::deserialize(d).unwrap())
        .collect();
    assert_eq!(documents.len(), 2);
    assert_eq!(documents[1]["id"], "payments.transactions.archive");
    let json: Value = serde_json::from_str(&encode_all(&contracts, Format::Json).unwrap()).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
}

#[test]
fn yaml_quotes_what_yaml_1_1_readers_would_take_for_another_type() {
    let document = json!({
        "createdTs": "2026-01-01T00:00:00Z",
        "day": "2026-01-01",
        "at": "9:30",
        "answer": "yes",
        "list": ["no", "plain", "1_000"],
        "text": "a line\nkey: 2026-01-01\n",
        "fine": "active",
    });
    let yaml = encode(&document, Format::Yaml).unwrap();
    for quoted in [
        "createdTs: '2026-01-01T00:00:00Z'",
        "day: '2026-01-01'",
        "at: '9:30'",
        "answer: 'yes'",
        "- 'no'",
        "- '1_000'",
        "fine: active",
        "  key: 2026-01-01",
    ] {
        assert!(yaml.contains(quoted), "{quoted} in\n{yaml}");
    }
    // The same document for a YAML 1.2 reader.
    let back: Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(back, document);
}
