//! The reconciler's plan, and the plan applied to the in-process fakes: what a first
//! reconcile makes, that a resync with nothing drifted writes nothing, what a failure while
//! applying reports, and what deletion does.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::apply::{Done, Edges, apply_cleanup_edges, apply_edges};
use super::observe::{self, Cluster, InputSeen, Observation, SparkSeen};
use super::plan::{self, BucketRelease, Plan, Platform};
use super::report::{Provisioned, desired_status, overall_outcome};
use super::*;
use crate::api::DeletionPolicy;
use crate::api::conditions::{Outcome, Progress, RECONCILING, STALLED, is_true, set_progress};
use crate::api::data_product::{
    DataProductStatus, InputAccess, InputPortStatus, Lifecycle, OutputPortStatus,
};
use crate::api::domain::Domain;
use crate::api::domain::{DomainSpec, DomainStatus};
use crate::controller::bucket_policies::BucketPolicies;
use crate::controller::tenancy::Owners;
use crate::provision::kafka::{
    AclOperation, AclResourceType, AdminOperation, AuthorizationRequest, FakeKafka, KafkaAdmin,
    KafkaAdminError, KafkaSecurityProtocol, NewTopic, ScramMechanism, SnapshotKafka,
    SnapshotSettings,
};
use crate::provision::storage::{BucketStore, FakeObjectStore, IdentityStore, Versioning};

const PLATFORM: Platform<'static> = Platform {
    default_replicas: 1,
    s3_endpoint: "http://s3",
    s3_region: "us-east-1",
    s3_path_style: true,
    s3_ca_bundle: None,
    kafka_bootstrap_servers: "kafka:9092",
    kafka_security_protocol: KafkaSecurityProtocol::SaslPlaintext,
    kafka_sasl_mechanism: ScramMechanism::Sha512,
    kafka_ca: None,
    spark_driver_cluster_role: "spark-driver",
};

fn product(spec: serde_json::Value) -> DataProduct {
    let mut p = desired::tests::product("orders", 1, spec);
    p.metadata.generation = Some(1);
    p
}

fn orders() -> DataProduct {
    product(json!({"outputPorts": [
        {"name": "events", "kafka": {"partitions": 3, "retention": "7d", "config": {"cleanup.policy": "delete"}}},
        {"name": "lake", "bucket": {"expireAfterDays": 30}},
    ]}))
}

async fn storage_with_user() -> FakeObjectStore {
    let storage = FakeObjectStore::new();
    storage.ensure_user("payments").await.unwrap();
    storage.clear_calls();
    storage
}

/// The Ready Domain `payments`, owning the namespace `namespace`.
fn payments(namespace: &str) -> Domain {
    let mut domain = Domain::new(
        "payments",
        serde_json::from_value::<DomainSpec>(json!({})).unwrap(),
    );
    let mut status = DomainStatus {
        namespace: Some(namespace.into()),
        ..DomainStatus::default()
    };
    set_progress(
        &mut status.conditions,
        &Outcome::ready("Provisioned", "ok"),
        None,
        &Time(Timestamp::now()),
    );
    domain.status = Some(status);
    domain
}

/// A mesh with the Ready domain `payments` (namespace `payments`) and only `product`.
fn mesh_of(product: &DataProduct) -> Cluster {
    let domain = payments("payments");
    Cluster {
        owners: Owners::of([&domain]),
        domain: Some(Arc::new(domain)),
        acting_products: vec![Arc::new(product.clone())],
        inputs: product
            .spec
            .input_ports
            .iter()
            .map(|_| InputSeen::default())
            .collect(),
        granted_ports: Default::default(),
    }
}

/// What `observe` reads, with the fakes standing in for Kafka and S3.
async fn observe_fakes(
    product: &DataProduct,
    cluster: Cluster,
    kafka: &FakeKafka,
    storage: &FakeObjectStore,
) -> Observation {
    let scope = plan::scope(product, &cluster, PLATFORM.default_replicas);
    let external = observe::external(product, &scope, kafka, storage)
        .await
        .unwrap();
    Observation {
        cluster,
        scope,
        external,
        spark: SparkSeen::new(),
        now: Timestamp::now(),
    }
}

/// Observe, plan and apply `product` against the fakes.
async fn reconcile_fakes(
    product: &DataProduct,
    kafka: &FakeKafka,
    storage: &FakeObjectStore,
) -> (Plan, Done) {
    let policies = BucketPolicies::new(std::time::Duration::from_secs(300));
    let seen = observe_fakes(product, mesh_of(product), kafka, storage).await;
    let plan = plan::plan(product, &seen, &PLATFORM);
    let edges = Edges {
        kafka,
        storage,
        policies: &policies,
    };
    let done = apply_edges(product, &plan, &edges).await;
    (plan, done)
}

/// What exists after a reconcile against the fakes in which nothing failed.
async fn provision(
    product: &DataProduct,
    kafka: &FakeKafka,
    storage: &FakeObjectStore,
) -> Provisioned {
    let (plan, done) = reconcile_fakes(product, kafka, storage).await;
    assert!(done.applied.succeeded(), "{:?}", done.applied.errors());
    Provisioned::of(&plan, &done)
}

/// Delete `product` (its edges) against the fakes; the Event's note.
async fn delete(product: &DataProduct, kafka: &FakeKafka, storage: &FakeObjectStore) -> String {
    let cluster = mesh_of(product);
    let external = observe::cleanup_external(product, &cluster, storage)
        .await
        .unwrap();
    let seen = Observation {
        cluster,
        scope: plan::Scope::default(),
        external,
        spark: SparkSeen::new(),
        now: Timestamp::now(),
    };
    let cleanup = plan::plan_cleanup(product, &seen);
    let policies = BucketPolicies::new(std::time::Duration::from_secs(300));
    let edges = Edges {
        kafka,
        storage,
        policies: &policies,
    };
    let applied = apply_cleanup_edges(&cleanup, &edges).await;
    assert!(applied.succeeded(), "{:?}", applied.errors());
    cleanup.note
}

#[tokio::test]
async fn a_first_reconcile_makes_topics_acls_buckets_and_the_owner_policy() {
    let (kafka, storage) = (FakeKafka::with_brokers(1), storage_with_user().await);
    let p = orders();
    let observed = provision(&p, &kafka, &storage).await;
    assert!(observed.problems.is_empty(), "{:?}", observed.problems);

    let topic = kafka.topic("payments.orders.events").unwrap();
    assert_eq!(topic.partitions, 3);
    assert_eq!(topic.replication_factor, 1);
    assert_eq!(topic.config_value("retention.ms"), Some("604800000"));
    assert_eq!(topic.config_value("cleanup.policy"), Some("delete"));
    for operation in [
        AclOperation::Write,
        AclOperation::Describe,
        AclOperation::Read,
    ] {
        assert!(kafka.is_authorized(&AuthorizationRequest {
            principal: "User:payments",
            host: "10.0.0.1",
            resource_type: AclResourceType::Topic,
            resource_name: "payments.orders.events",
            operation,
        }));
    }
    assert!(!kafka.is_authorized(&AuthorizationRequest {
        principal: "User:marketing",
        host: "10.0.0.1",
        resource_type: AclResourceType::Topic,
        resource_name: "payments.orders.events",
        operation: AclOperation::Write,
    }));

    let bucket = "payments-orders-lake";
    assert_eq!(
        storage.get_versioning(bucket).await.unwrap(),
        Versioning::Enabled
    );
    assert_eq!(storage.get_expiration_days(bucket).await.unwrap(), Some(30));
    assert_eq!(
        storage.get_tags(bucket).await.unwrap()["datamesh.dev/port"],
        "lake"
    );
    assert!(storage.allows("payments", "s3:PutObject", bucket));
    assert!(storage.allows("payments", "s3:GetObject", bucket));
    assert!(!storage.allows("marketing", "s3:GetObject", bucket));
    // Through the bucket's own policy: the domain's user holds no inline policy.
    assert!(storage.bucket_policy(bucket).is_some());
    assert!(
        storage
            .list_user_policies("payments")
            .await
            .unwrap()
            .is_empty()
    );

    let status = desired_status(
        &p,
        &DataProductStatus::default(),
        &overall_outcome(&p, &observed),
        &observed,
        "kafka:9092",
        "http://s3",
    );
    assert!(is_true(&status.conditions, READY));
    assert_eq!(status.ports_ready.as_deref(), Some("2/2"));
    assert_eq!(
        status.output_ports[0].topic.as_deref(),
        Some("payments.orders.events")
    );
    assert_eq!(
        status.output_ports[0].bootstrap_servers.as_deref(),
        Some("kafka:9092")
    );
    assert_eq!(status.output_ports[1].bucket.as_deref(), Some(bucket));
    assert_eq!(
        status.output_ports[1].endpoint.as_deref(),
        Some("http://s3")
    );
}

#[tokio::test]
async fn a_resync_with_nothing_drifted_writes_nothing() {
    let (kafka, storage) = (FakeKafka::with_brokers(1), storage_with_user().await);
    let p = orders();
    let first = provision(&p, &kafka, &storage).await;
    let status = desired_status(
        &p,
        &DataProductStatus::default(),
        &overall_outcome(&p, &first),
        &first,
        "k",
        "s",
    );
    kafka.clear_calls();
    storage.clear_calls();

    let again = provision(&p, &kafka, &storage).await;
    assert_eq!(kafka.write_calls(), [], "no Kafka write on a resync");
    assert_eq!(storage.writes(), [], "no S3 write on a resync");
    let mut ready = p.clone();
    ready.status = Some(status.clone());
    let resynced = desired_status(
        &ready,
        &status,
        &overall_outcome(&ready, &again),
        &again,
        "k",
        "s",
    );
    assert_eq!(resynced, status, "no status write on a resync");
}

#[tokio::test]
async fn drift_is_set_back_and_only_for_keys_the_spec_names() {
    let (kafka, storage) = (FakeKafka::with_brokers(1), storage_with_user().await);
    let p = orders();
    provision(&p, &kafka, &storage).await;
    kafka.set_topic_config_directly("payments.orders.events", "retention.ms", Some("1000"));
    kafka.set_topic_config_directly(
        "payments.orders.events",
        "max.message.bytes",
        Some("2000000"),
    );
    storage
        .put_versioning("payments-orders-lake", false)
        .await
        .unwrap();
    storage
        .put_tags("payments-orders-lake", &BTreeMap::new())
        .await
        .unwrap();

    provision(&p, &kafka, &storage).await;
    let topic = kafka.topic("payments.orders.events").unwrap();
    assert_eq!(topic.config_value("retention.ms"), Some("604800000"));
    assert_eq!(
        topic.config_value("max.message.bytes"),
        Some("2000000"),
        "not ours to manage"
    );
    assert_eq!(
        storage
            .get_versioning("payments-orders-lake")
            .await
            .unwrap(),
        Versioning::Enabled
    );
    assert_eq!(
        storage.get_tags("payments-orders-lake").await.unwrap()["datamesh.dev/domain"],
        "payments"
    );
}

#[tokio::test]
async fn partitions_grow_but_never_shrink() {
    let (kafka, storage) = (FakeKafka::with_brokers(1), storage_with_user().await);
    let mut p = orders();
    provision(&p, &kafka, &storage).await;
    p.spec.output_ports[0].kafka.as_mut().unwrap().partitions = 6;
    provision(&p, &kafka, &storage).await;
    assert_eq!(kafka.topic("payments.orders.events").unwrap().partitions, 6);

    p.spec.output_ports[0].kafka.as_mut().unwrap().partitions = 2;
    kafka.clear_calls();
    let observed = provision(&p, &kafka, &storage).await;
    assert_eq!(kafka.topic("payments.orders.events").unwrap().partitions, 6);
    assert_eq!(kafka.write_calls(), [], "a refused topic is left as it is");
    let outcome = overall_outcome(&p, &observed);
    assert_eq!(outcome.progress, Progress::Stalled);
    assert_eq!(outcome.reason, "PartitionDecrease");
    let status = desired_status(
        &p,
        &DataProductStatus::default(),
        &outcome,
        &observed,
        "k",
        "s",
    );
    assert!(is_true(&status.conditions, STALLED));
    assert_eq!(status.ports_ready.as_deref(), Some("1/2"));
}

#[tokio::test]
async fn an_unclaimed_existing_topic_is_adopted() {
    let (kafka, storage) = (FakeKafka::with_brokers(1), storage_with_user().await);
    kafka.insert_topic(NewTopic {
        name: "payments.orders.events".into(),
        partitions: 3,
        replication_factor: 1,
        configs: BTreeMap::new(),
    });
    let observed = provision(&orders(), &kafka, &storage).await;
    assert!(observed.problems.is_empty(), "{:?}", observed.problems);
    assert!(observed.topics.contains("payments.orders.events"));
    assert_eq!(
        kafka
            .topic("payments.orders.events")
            .unwrap()
            .config_value("retention.ms"),
        Some("604800000")
    );
}

#[tokio::test]
async fn a_config_kafka_rejects_stalls_the_product_with_kafkas_reason() {
    let (kafka, storage) = (FakeKafka::with_brokers(1), storage_with_user().await);
    let p = product(json!({"outputPorts": [
        {"name": "events", "kafka": {"config": {"cleanup.policy": "sometimes"}}},
    ]}));
    let observed = provision(&p, &kafka, &storage).await;
    let outcome = overall_outcome(&p, &observed);
    assert_eq!(outcome.progress, Progress::Stalled);
    assert_eq!(outcome.reason, "KafkaRefused");
    assert!(
        outcome.message.contains("cleanup.policy"),
        "{}",
        outcome.message
    );
}

#[test]
fn a_pending_input_keeps_the_product_reconciling_and_says_which_grant() {
    let p = orders();
    let observed = Provisioned {
        inputs: vec![InputPortStatus {
            name: "customers".into(),
            access: InputAccess::Pending,
            message: Some("Waiting for an AccessPolicy in domain customers".into()),
        }],
        ..Provisioned::default()
    };
    let outcome = overall_outcome(&p, &observed);
    assert_eq!(outcome.progress, Progress::Reconciling);
    assert!(outcome.message.contains("customers"));
    let status = desired_status(
        &p,
        &DataProductStatus::default(),
        &outcome,
        &observed,
        "k",
        "s",
    );
    assert!(is_true(&status.conditions, RECONCILING));
    assert_eq!(status.input_ports[0].access, InputAccess::Pending);
}

#[test]
fn a_missing_input_is_waited_for_and_a_retired_one_stalls() {
    let p = orders();
    let input = |name: &str, access, message: &str| InputPortStatus {
        name: name.into(),
        access,
        message: Some(message.into()),
    };
    // Delivered from Git, the producer may be applied after its consumer.
    let missing = Provisioned {
        inputs: vec![
            input(
                "ghost",
                InputAccess::NotFound,
                "Domain sales has no data product ghost.",
            ),
            input(
                "customers",
                InputAccess::Pending,
                "Waiting for an AccessPolicy",
            ),
        ],
        ..Provisioned::default()
    };
    let outcome = overall_outcome(&p, &missing);
    assert_eq!(outcome.progress, Progress::Reconciling);
    assert_eq!(outcome.reason, "InputNotFound");
    assert!(
        outcome.message.contains("no data product ghost"),
        "{}",
        outcome.message
    );

    // A retired input never comes back on its own.
    let retired = Provisioned {
        inputs: vec![
            input(
                "old",
                InputAccess::Denied,
                "The port is retired and no longer served.",
            ),
            input(
                "ghost",
                InputAccess::NotFound,
                "Domain sales has no data product ghost.",
            ),
        ],
        ..Provisioned::default()
    };
    let outcome = overall_outcome(&p, &retired);
    assert_eq!(outcome.progress, Progress::Stalled);
    assert_eq!(outcome.reason, "InputUnavailable");
}

#[test]
fn a_deprecated_product_carries_a_deprecated_condition() {
    let mut p = orders();
    p.spec.status = Lifecycle::Deprecated;
    let outcome = Outcome::ready("Provisioned", "ok");
    let status = desired_status(
        &p,
        &DataProductStatus::default(),
        &outcome,
        &Provisioned::default(),
        "k",
        "s",
    );
    assert!(is_true(&status.conditions, DEPRECATED));
    p.spec.status = Lifecycle::Active;
    let status = desired_status(&p, &status, &outcome, &Provisioned::default(), "k", "s");
    assert!(!is_true(&status.conditions, DEPRECATED));
}

#[tokio::test]
async fn retain_keeps_data_and_tags_it_orphaned_while_delete_removes_it() {
    for policy in [DeletionPolicy::Retain, DeletionPolicy::Delete] {
        let (kafka, storage) = (FakeKafka::with_brokers(1), storage_with_user().await);
        let mut p = orders();
        p.spec.deletion_policy = policy;
        provision(&p, &kafka, &storage).await;
        storage
            .put_object("payments-orders-lake", "a.parquet")
            .unwrap();
        let note = delete(&p, &kafka, &storage).await;
        let user_acls: Vec<_> = kafka
            .acls()
            .into_iter()
            .filter(|a| a.resource_type == AclResourceType::Topic)
            .collect();
        assert!(
            user_acls.is_empty(),
            "{policy:?}: the producer ACLs go: {user_acls:?}"
        );
        assert!(
            !storage.allows("payments", "s3:GetObject", "payments-orders-lake"),
            "{policy:?}: the domain keeps no access through the operator"
        );
        match policy {
            DeletionPolicy::Retain => {
                assert_eq!(storage.bucket_policy("payments-orders-lake"), None);
                assert!(kafka.topic("payments.orders.events").is_some());
                assert_eq!(storage.entry_count("payments-orders-lake"), 1);
                assert_eq!(
                    storage.get_tags("payments-orders-lake").await.unwrap()["datamesh.dev/orphaned"],
                    "true"
                );
                assert!(note.contains("Retain"), "{note}");
            }
            DeletionPolicy::Delete => {
                assert!(kafka.topic("payments.orders.events").is_none());
                assert!(!storage.bucket_exists("payments-orders-lake").await.unwrap());
                assert!(note.contains("Delete"), "{note}");
            }
        }
        // Repeating the cleanup (a crash after it) succeeds.
        delete(&p, &kafka, &storage).await;
    }
}

/// The product as the status of its last reconcile shows it: `orders` holding both ports.
fn orders_provisioned() -> DataProduct {
    let mut p = orders();
    p.status = Some(DataProductStatus {
        output_ports: vec![
            OutputPortStatus {
                name: "events".into(),
                topic: Some("payments.orders.events".into()),
                ..OutputPortStatus::default()
            },
            OutputPortStatus {
                name: "lake".into(),
                bucket: Some("payments-orders-lake".into()),
                ..OutputPortStatus::default()
            },
        ],
        ..DataProductStatus::default()
    });
    p
}

#[tokio::test]
async fn a_removed_port_releases_its_topic_acls_but_not_the_products_prefixes() {
    let (kafka, storage) = (FakeKafka::with_brokers(1), storage_with_user().await);
    let mut p = orders_provisioned();
    p.spec.deletion_policy = DeletionPolicy::Delete;
    provision(&p, &kafka, &storage).await;
    p.spec.output_ports.retain(|port| port.name != "events");
    let (plan, done) = reconcile_fakes(&p, &kafka, &storage).await;
    assert_eq!(plan.release.delete_topics, ["payments.orders.events"]);
    assert!(
        plan.release.note.contains("Delete"),
        "{}",
        plan.release.note
    );
    assert!(done.applied.succeeded(), "{:?}", done.applied.errors());
    assert!(done.released, "its Event is due");
    assert!(kafka.topic("payments.orders.events").is_none());
    let left: Vec<AclResourceType> = kafka.acls().iter().map(|a| a.resource_type).collect();
    assert!(
        !left.contains(&AclResourceType::Topic),
        "the removed topic's ACLs go: {left:?}"
    );
    for kept in [AclResourceType::TransactionalId, AclResourceType::Group] {
        assert!(
            left.contains(&kept),
            "{kept:?} stays for the product's other ports"
        );
    }
    assert!(
        storage.bucket_exists("payments-orders-lake").await.unwrap(),
        "the bucket port was not removed"
    );
}

#[tokio::test]
async fn a_removed_bucket_port_is_retained_tagged_orphaned_and_no_longer_granted() {
    let (kafka, storage) = (FakeKafka::with_brokers(1), storage_with_user().await);
    let mut p = orders_provisioned();
    provision(&p, &kafka, &storage).await;
    p.spec.output_ports.retain(|port| port.name != "lake");
    let (plan, done) = reconcile_fakes(&p, &kafka, &storage).await;
    assert!(matches!(
        plan.release.buckets.as_slice(),
        [BucketRelease::Tag(bucket, tags)]
            if bucket == "payments-orders-lake" && tags["datamesh.dev/orphaned"] == "true"
    ));
    assert!(
        plan.owner_access
            .as_ref()
            .is_none_or(|a| !a.buckets.contains("payments-orders-lake")),
        "{:?}",
        plan.owner_access
    );
    assert!(done.applied.succeeded(), "{:?}", done.applied.errors());
    assert!(storage.bucket_exists("payments-orders-lake").await.unwrap());
    assert!(!storage.allows("payments", "s3:GetObject", "payments-orders-lake"));
    assert_eq!(storage.bucket_policy("payments-orders-lake"), None);
}

#[tokio::test]
async fn a_product_outside_its_domains_namespace_plans_nothing_and_reads_nothing() {
    let (kafka, storage) = (FakeKafka::with_brokers(1), storage_with_user().await);
    let mut p = orders();
    p.metadata.namespace = Some("marketing".into());
    let cluster = mesh_of(&p);
    let scope = plan::scope(&p, &cluster, 1);
    assert_eq!(
        scope.gate.as_ref().map(|g| g.reason.as_str()),
        Some("NamespaceNotOwned")
    );
    assert!(scope.topics.is_empty() && scope.buckets.is_empty());
    let seen = observe_fakes(&p, cluster, &kafka, &storage).await;
    assert_eq!(kafka.calls(), [], "nothing read from Kafka");
    assert_eq!(storage.calls(), [], "nothing read from S3");
    let plan = plan::plan(&p, &seen, &PLATFORM);
    assert!(plan.topics.is_empty() && plan.acls.is_empty() && plan.buckets.is_empty());
    assert!(plan.owner_access.is_none() && plan.spark.run.is_none());
    assert_eq!(plan.problems.len(), 1);
}

#[tokio::test]
async fn kafka_failing_while_applying_is_reported_and_the_buckets_still_get_made() {
    let (kafka, storage) = (FakeKafka::with_brokers(1), storage_with_user().await);
    let p = orders();
    let seen = observe_fakes(&p, mesh_of(&p), &kafka, &storage).await;
    let plan = plan::plan(&p, &seen, &PLATFORM);
    assert_eq!(plan.topics.create.len(), 1);
    kafka.start_outage(KafkaAdminError::TimedOut {
        operation: AdminOperation::CreateTopics,
        timeout: std::time::Duration::from_secs(15),
    });
    let policies = BucketPolicies::new(std::time::Duration::from_secs(300));
    let edges = Edges {
        kafka: &kafka,
        storage: &storage,
        policies: &policies,
    };
    let done = apply_edges(&p, &plan, &edges).await;
    assert_eq!(
        done.applied.errors().len(),
        1,
        "{:?}",
        done.applied.errors()
    );
    let outcome = done.applied.outcome().unwrap();
    assert_eq!(outcome.reason, "KafkaUnavailable");
    assert_eq!(outcome.progress, Progress::Reconciling);
    assert!(done.unmade.contains("payments.orders.events"));
    assert!(
        storage.bucket_exists("payments-orders-lake").await.unwrap(),
        "the object store's steps do not depend on Kafka's"
    );
    assert!(storage.allows("payments", "s3:PutObject", "payments-orders-lake"));
    assert!(done.applied.into_result().is_err(), "retried with backoff");
}

#[tokio::test]
async fn a_bucket_another_domain_tagged_is_refused_and_not_written() {
    let (kafka, storage) = (FakeKafka::with_brokers(1), storage_with_user().await);
    storage.ensure_bucket("payments-orders-lake").await.unwrap();
    let foreign = BTreeMap::from([("datamesh.dev/domain".to_owned(), "marketing".to_owned())]);
    storage
        .put_tags("payments-orders-lake", &foreign)
        .await
        .unwrap();
    storage.clear_calls();
    let (plan, done) = reconcile_fakes(&orders(), &kafka, &storage).await;
    assert!(plan.buckets.is_empty(), "{:?}", plan.buckets);
    assert!(
        plan.problems
            .iter()
            .any(|p| p.reason == crate::controller::tenancy::OWNED_BY_ANOTHER_DOMAIN)
    );
    assert!(done.applied.succeeded());
    assert_eq!(
        storage.get_tags("payments-orders-lake").await.unwrap(),
        foreign
    );
    assert!(!storage.allows("payments", "s3:GetObject", "payments-orders-lake"));
}

#[test]
fn a_removed_bucket_another_domains_name_prefixes_is_not_released() {
    // Domain `payments-eu`'s buckets start with `payments-`, as this domain's do: a bucket its
    // name prefixes is its own, whatever this product's status lists.
    let mut p = orders_provisioned();
    p.spec.output_ports.retain(|port| port.name != "lake");
    if let Some(status) = p.status.as_mut() {
        status.output_ports.push(OutputPortStatus {
            name: "theirs".into(),
            bucket: Some("payments-eu-orders-lake".into()),
            ..OutputPortStatus::default()
        });
    }
    let mut cluster = mesh_of(&p);
    let mut other = payments("payments-eu");
    other.metadata.name = Some("payments-eu".into());
    let domains = [cluster.domain.as_deref().unwrap().clone(), other];
    cluster.owners = Owners::of(domains.iter());
    let scope = plan::scope(&p, &cluster, 1);
    assert_eq!(scope.removed_buckets, ["payments-orders-lake"]);
}

// ------------------------------------------------------------------------ contracts

const ORDER_SCHEMA: &str = r#"{"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}, "note": {"type": "string"}}}"#;

/// A product whose port `events` has `schema` in its spec and `in_force` in its status.
fn with_contract(schema: &str, in_force: &str) -> DataProduct {
    let mut p = product(json!({
        "domain": "payments", "owner": {"name": "o"},
        "description": {"purpose": "p", "usage": "u"},
        "outputPorts": [{"name": "events", "kafka": {"partitions": 1},
                         "schema": {"type": "json", "definition": schema}}],
    }));
    p.status = Some(
        serde_json::from_value(json!({
            "contracts": [{"port": "events", "schema": {"type": "json", "definition": in_force}}],
        }))
        .unwrap(),
    );
    p
}

fn granted(port: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    [(port.to_owned(), vec!["domain:marketing".to_owned()])].into()
}

#[test]
fn a_breaking_schema_change_with_consumers_keeps_the_contract_and_stalls() {
    let without_note =
        r#"{"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}"#;
    let p = with_contract(without_note, ORDER_SCHEMA);
    let (kept, refused) = plan::contracts(&p, &granted("events"));
    assert_eq!(
        kept[0].schema.definition.as_deref(),
        Some(ORDER_SCHEMA),
        "the old contract stays"
    );
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].progress, Progress::Stalled);
    assert_eq!(refused[0].reason, "ContractBreaking");
    assert!(
        refused[0].message.contains("domain:marketing")
            && refused[0].message.contains("`note` removed"),
        "{}",
        refused[0].message
    );
}

#[test]
fn a_breaking_schema_change_without_consumers_goes_through() {
    let without_note =
        r#"{"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}"#;
    let p = with_contract(without_note, ORDER_SCHEMA);
    let (kept, refused) = plan::contracts(&p, &granted("other-port"));
    assert!(refused.is_empty());
    assert_eq!(kept[0].schema.definition.as_deref(), Some(without_note));
}

#[test]
fn a_compatible_schema_change_with_consumers_goes_through() {
    let with_currency = r#"{"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}, "note": {"type": "string"}, "currency": {"type": "string"}}}"#;
    let p = with_contract(with_currency, ORDER_SCHEMA);
    let (kept, refused) = plan::contracts(&p, &granted("events"));
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(kept[0].schema.definition.as_deref(), Some(with_currency));
}

#[tokio::test]
async fn a_gated_product_decides_no_contract() {
    let (kafka, storage) = (FakeKafka::with_brokers(1), storage_with_user().await);
    let mut p = with_contract("{}", ORDER_SCHEMA);
    p.metadata.namespace = Some("marketing".into());
    let cluster = mesh_of(&p);
    let seen = observe_fakes(&p, cluster, &kafka, &storage).await;
    let plan = plan::plan(&p, &seen, &PLATFORM);
    assert!(
        plan.contracts.is_none(),
        "the status keeps the contract in force"
    );
}

#[tokio::test]
async fn a_job_gets_a_trust_store_of_the_configured_cas_and_none_without() {
    let (kafka, storage) = (FakeKafka::with_brokers(1), storage_with_user().await);
    let p = product(json!({
        "outputPorts": [{"name": "lake", "bucket": {}}],
        "transformation": {"spark": {"image": "spark:4", "mainApplicationFile": "s3a://b/job.py",
                                     "sparkVersion": "4.1.1"}},
    }));
    let seen = observe_fakes(&p, mesh_of(&p), &kafka, &storage).await;

    let plan = plan::plan(&p, &seen, &PLATFORM);
    let run = plan.spark.run.as_ref().unwrap();
    assert!(run.truststore.is_none(), "no CA configured: the JVM's own");
    assert!(run.object["spec"]["driver"].get("javaOptions").is_none());

    let s3_ca = include_str!("../../../tests/data/ca-a.pem");
    let kafka_ca = include_str!("../../../tests/data/ca-b.pem");
    let tls = Platform {
        s3_ca_bundle: Some(s3_ca),
        kafka_ca: Some(kafka_ca),
        kafka_security_protocol: KafkaSecurityProtocol::SaslSsl,
        ..PLATFORM
    };
    let plan = plan::plan(&p, &seen, &tls);
    let run = plan.spark.run.as_ref().unwrap();
    let store = run.truststore.as_ref().unwrap();
    let jks = &store.binary_data.as_ref().unwrap()["truststore.jks"].0;
    assert_eq!(
        jks,
        &crate::truststore::jks_from_pem(&[s3_ca, kafka_ca]).unwrap(),
        "both CAs, S3's first"
    );
    let spec = &run.object["spec"];
    assert_eq!(
        spec["driver"]["configMaps"][0]["name"],
        "orders-spark-truststore"
    );
    assert_eq!(
        spec["sparkConf"]["spark.datamesh.kafka.security.protocol"],
        "SASL_SSL"
    );

    // A Kafka CA without TLS is not trusted for anything: the S3 CA alone.
    let plaintext = Platform {
        s3_ca_bundle: Some(s3_ca),
        kafka_ca: Some(kafka_ca),
        ..PLATFORM
    };
    let plan = plan::plan(&p, &seen, &plaintext);
    let store = plan
        .spark
        .run
        .as_ref()
        .unwrap()
        .truststore
        .as_ref()
        .unwrap();
    assert_eq!(
        store.binary_data.as_ref().unwrap()["truststore.jks"].0,
        crate::truststore::jks_from_pem(&[s3_ca]).unwrap()
    );
}

/// Observe, plan and apply `product` through any Kafka admin (here the snapshot layer).
async fn reconcile_through(
    product: &DataProduct,
    kafka: &dyn KafkaAdmin,
    storage: &FakeObjectStore,
) -> Done {
    let policies = BucketPolicies::new(std::time::Duration::from_secs(300));
    let cluster = mesh_of(product);
    let scope = plan::scope(product, &cluster, PLATFORM.default_replicas);
    let external = observe::external(product, &scope, kafka, storage)
        .await
        .unwrap();
    let seen = Observation {
        cluster,
        scope,
        external,
        spark: SparkSeen::new(),
        now: Timestamp::now(),
    };
    let plan = plan::plan(product, &seen, &PLATFORM);
    let edges = Edges {
        kafka,
        storage,
        policies: &policies,
    };
    apply_edges(product, &plan, &edges).await
}

/// `count` products of domain `payments`, each with one topic.
fn streams(count: usize) -> Vec<DataProduct> {
    (0..count)
        .map(|i| {
            let spec = json!({"outputPorts": [
                {"name": "events", "kafka": {"partitions": 1, "retention": "7d"}},
            ]});
            let mut p = desired::tests::product(&format!("stream{i}"), 1, spec);
            p.metadata.generation = Some(1);
            p
        })
        .collect()
}

fn calls_of(kafka: &FakeKafka, operation: AdminOperation) -> usize {
    kafka.calls().iter().filter(|op| **op == operation).count()
}

#[tokio::test(start_paused = true)]
async fn through_the_snapshot_products_made_together_share_requests_and_a_resync_costs_the_same_for_5_or_60()
 {
    let resync = std::time::Duration::from_secs(300);
    let mut resync_requests = Vec::new();
    for count in [5, 60] {
        let fake = Arc::new(FakeKafka::with_brokers(1));
        let kafka = SnapshotKafka::new(fake.clone(), SnapshotSettings::for_resync(resync));
        let storage = storage_with_user().await;
        let products = streams(count);

        let first = futures::future::join_all(
            products
                .iter()
                .map(|p| reconcile_through(p, &kafka, &storage)),
        )
        .await;
        assert!(first.iter().all(|done| done.applied.succeeded()));
        assert_eq!(fake.topic_names().len(), count);
        assert_eq!(calls_of(&fake, AdminOperation::CreateTopics), 1, "{count}");
        assert_eq!(calls_of(&fake, AdminOperation::CreateAcls), 1, "{count}");
        assert_eq!(
            calls_of(&fake, AdminOperation::DescribeTopics),
            1,
            "{count}"
        );

        // A resync, product after product, once the snapshot is older than half the period.
        tokio::time::advance(resync / 2).await;
        fake.clear_calls();
        for p in &products {
            assert!(
                reconcile_through(p, &kafka, &storage)
                    .await
                    .applied
                    .succeeded()
            );
        }
        assert_eq!(fake.write_calls(), [], "nothing changed, nothing written");
        resync_requests.push(fake.calls().len());

        // Drift made outside is set back by the first resync after the next refresh.
        let topic = "payments.stream0.events";
        assert!(fake.set_topic_config_directly(topic, "retention.ms", Some("1000")));
        tokio::time::advance(resync / 2).await;
        assert!(
            reconcile_through(&products[0], &kafka, &storage)
                .await
                .applied
                .succeeded()
        );
        assert_eq!(
            fake.topic(topic).unwrap().config_value("retention.ms"),
            Some("604800000")
        );
    }
    assert_eq!(
        resync_requests,
        [2, 2],
        "one DescribeAcls, one DescribeTopics"
    );
}
