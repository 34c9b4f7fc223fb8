//! The reconciler's Kafka and storage steps against the in-process fakes: what a first
//! reconcile makes, that a resync with nothing drifted writes nothing, and what deletion does.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::api::conditions::{RECONCILING, STALLED};
use crate::provision::kafka::{
    AclOperation, AclResourceType, AuthorizationRequest, FakeKafka, NewTopic,
};
use crate::provision::storage::{FakeObjectStore, Versioning};

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

/// Run `act` with the owner access of a mesh that has only `product`.
async fn with_owner<T>(
    product: &DataProduct,
    storage: &FakeObjectStore,
    act: impl AsyncFnOnce(&OwnerAccess<'_>) -> T,
) -> T {
    let policies = UserPolicies::new(std::time::Duration::from_secs(300));
    let everyone = [product];
    let namespace = product.namespace().unwrap_or_default();
    let owner = OwnerAccess {
        storage,
        policies: &policies,
        everyone: &everyone,
        namespace: &namespace,
    };
    act(&owner).await
}

async fn provision(
    product: &DataProduct,
    kafka: &FakeKafka,
    storage: &FakeObjectStore,
) -> Observed {
    let mut observed = Observed::default();
    let topics = desired::topic_plans(&product.name_any(), &product.spec);
    apply_topics(product, kafka, 1, &topics, &mut observed)
        .await
        .unwrap();
    with_owner(product, storage, async |owner| {
        apply_buckets(
            product,
            owner,
            &desired::bucket_plans(product),
            &mut observed,
        )
        .await
        .unwrap()
    })
    .await;
    observed
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
    assert_eq!(
        storage.list_user_policies("payments").await.unwrap(),
        [OWNER_POLICY_NAME]
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
    let observed = Observed {
        inputs: vec![InputPortStatus {
            name: "customers".into(),
            access: InputAccess::Pending,
            message: Some("Waiting for an AccessPolicy in domain customers".into()),
        }],
        ..Observed::default()
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
fn a_deprecated_product_carries_a_deprecated_condition() {
    let mut p = orders();
    p.spec.status = Lifecycle::Deprecated;
    let outcome = Outcome::ready("Provisioned", "ok");
    let status = desired_status(
        &p,
        &DataProductStatus::default(),
        &outcome,
        &Observed::default(),
        "k",
        "s",
    );
    assert!(is_true(&status.conditions, DEPRECATED));
    p.spec.status = Lifecycle::Active;
    let status = desired_status(&p, &status, &outcome, &Observed::default(), "k", "s");
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
        let topics = vec!["payments.orders.events".to_owned()];
        let buckets: Vec<String> = desired::bucket_plans(&p)
            .into_iter()
            .map(|plan| plan.bucket)
            .collect();
        let note = release_external(&p, &kafka, &storage, &topics, &buckets, true)
            .await
            .unwrap();
        with_owner(&p, &storage, async |owner| {
            revoke_owner_access(owner, "payments", &buckets)
                .await
                .unwrap()
        })
        .await;
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
            storage
                .list_user_policies("payments")
                .await
                .unwrap()
                .is_empty()
        );
        match policy {
            DeletionPolicy::Retain => {
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
            }
        }
        // Repeating the cleanup (a crash after it) succeeds.
        release_external(&p, &kafka, &storage, &topics, &buckets, true)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_removed_port_releases_its_topic_acls_but_not_the_products_prefixes() {
    let (kafka, storage) = (FakeKafka::with_brokers(1), storage_with_user().await);
    let mut p = orders();
    p.spec.deletion_policy = DeletionPolicy::Delete;
    provision(&p, &kafka, &storage).await;
    let topics = vec!["payments.orders.events".to_owned()];
    let note = release_external(&p, &kafka, &storage, &topics, &[], false)
        .await
        .unwrap();
    assert!(note.contains("Delete"), "{note}");
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
