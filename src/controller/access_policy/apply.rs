//! *Apply*: make the writes of a [`Plan`], system by system, recording every failure in
//! [`Applied`] instead of stopping at the first. The systems are independent of each other: a
//! broker down does not keep a consumer's RBAC or ConfigMaps from following its grants. Within
//! Kafka the steps share one broker and build on each other, so the first Kafka failure ends
//! the Kafka part (the rest would only wait out their own timeouts); within IAM each consumer's
//! policy is its own step.
//!
//! Two writes read first, under locks, because what they write is shared: a consumer's
//! consumer-group ACL with other products' reconciles (see [`converge_group_acls`]), and a
//! bucket's policy with the DataProduct controller, which writes the owner's part of it (see
//! [`BucketPolicies`]). A read made in *observe*, before waiting for the lock, could be stale.

use tokio::sync::Mutex;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::{Api, Client, ResourceExt};

use super::State;
use super::desired::group_binding;
use super::plan::{BucketGrants, ConfigMapPlan, KafkaPlan, Plan, RbacPlan};
use crate::api::naming::kafka_principal;
use crate::controller::applied::Applied;
use crate::controller::bucket_policies::{BucketPolicies, PolicyWrite};
use crate::controller::{Error, batch_ok, kube_context};
use crate::provision::kafka::{AclBindingFilter, AclResourceType, KafkaAdmin};
use crate::provision::storage::ObjectStore;
use crate::provision::storage::bucket_policy::{Part, statements};

/// Serializes the consumer-group ACL section of [`apply_kafka`] across products (see
/// [`converge_group_acls`]).
static GROUP_ACLS: Mutex<()> = Mutex::const_new(());

/// Make the plan's writes (see the module docs).
pub async fn apply(plan: &Plan, state: &State) -> Applied {
    let ctx = &*state.ctx;
    let mut applied = Applied::default();
    apply_kafka(ctx.kafka.as_ref(), &plan.kafka, &mut applied).await;
    apply_buckets(
        ctx.storage.as_ref(),
        &ctx.bucket_policies,
        &plan.buckets,
        &mut applied,
    )
    .await;
    apply_rbac(&ctx.client, &plan.rbac, &mut applied).await;
    apply_config_maps(&ctx.client, &plan.config_maps, &mut applied).await;
    applied
}

/// The topic ACLs, then the consumer-group ACLs (see the module docs for why a failure ends
/// the Kafka part).
pub async fn apply_kafka(kafka: &dyn KafkaAdmin, plan: &KafkaPlan, applied: &mut Applied) {
    if applied
        .record(write_topic_acls(kafka, plan).await)
        .is_some()
    {
        applied.record(converge_group_acls(kafka, plan).await);
    }
}

async fn write_topic_acls(kafka: &dyn KafkaAdmin, plan: &KafkaPlan) -> Result<(), Error> {
    if !plan.create.is_empty() {
        batch_ok(kafka.create_acls(&plan.create).await?, |_| false)?;
        for binding in &plan.create {
            tracing::info!(%binding, "granted");
        }
    }
    if !plan.delete.is_empty() {
        let filters: Vec<AclBindingFilter> =
            plan.delete.iter().map(AclBindingFilter::exact).collect();
        batch_ok(kafka.delete_acls(&filters).await?, |_| false)?;
        for binding in &plan.delete {
            tracing::info!(%binding, "revoked");
        }
    }
    Ok(())
}

/// A consumer's consumer-group ACL is shared by every product it reads: made when it holds a
/// grant on any of them, removed when it holds a topic ACL on none. Products converge in
/// parallel, so without this lock product A could find that a consumer holds no topic ACL any
/// more and remove its group ACL just after product B, granting that consumer a topic, found
/// the group ACL present and left it be: the consumer could read B's topic but not join a
/// group. Each product makes its topic ACLs before taking the lock, so under it whichever of
/// the two comes second sees the other's work; that is why this section reads Kafka again
/// rather than trusting the observation (the operator's Kafka snapshot holds every write of
/// the operator's as soon as it returned, so it sees the other product's). It is held only for this section, a few Kafka calls,
/// so products still converge in parallel otherwise.
async fn converge_group_acls(kafka: &dyn KafkaAdmin, plan: &KafkaPlan) -> Result<(), Error> {
    let _groups = GROUP_ACLS.lock().await;
    for identity in &plan.group_members {
        let group = group_binding(identity);
        let filter = AclBindingFilter::exact(&group);
        if kafka.describe_acls(&filter).await?.is_empty() {
            batch_ok(kafka.create_acls(&[group]).await?, |_| false)?;
        }
    }
    for identity in &plan.group_leavers {
        let filter = AclBindingFilter {
            resource_type: Some(AclResourceType::Topic),
            principal: Some(kafka_principal(identity)),
            ..AclBindingFilter::default()
        };
        // What a describe may still show right after the delete does not count.
        let still_held = kafka
            .describe_acls(&filter)
            .await?
            .iter()
            .any(|binding| !plan.delete.contains(binding));
        if !still_held {
            let group = AclBindingFilter::exact(&group_binding(identity));
            batch_ok(kafka.delete_acls(&[group]).await?, |_| false)?;
        }
    }
    Ok(())
}

/// Make the consumers' part of each bucket's policy hold what the plan gives, and nothing
/// else. Most calls send nothing: the remembered policy already holds it. A bucket that fails
/// does not stop the others.
pub async fn apply_buckets(
    storage: &dyn ObjectStore,
    policies: &BucketPolicies,
    plan: &[BucketGrants],
    applied: &mut Applied,
) {
    for grants in plan {
        let result = converge_bucket(storage, policies, grants).await;
        if let Err(error) = &result {
            tracing::warn!(bucket = %grants.bucket, %error, "could not write the consumers' grants in the bucket's policy");
        }
        applied.record(result);
    }
}

async fn converge_bucket(
    storage: &dyn ObjectStore,
    policies: &BucketPolicies,
    grants: &BucketGrants,
) -> Result<(), Error> {
    // The consumer's Domain makes its IAM user; until then it cannot be named, and the others
    // are granted without it (the reconcile fails, and retries).
    let (principals, missing) = policies.principals(storage, &grants.users).await?;
    let bucket = &grants.bucket;
    let wanted = statements(Part::Grants, bucket, &principals);
    let written = match policies
        .converge(storage, bucket, Part::Grants, &wanted)
        .await
    {
        Ok(PolicyWrite::Unchanged) => Ok(()),
        // Its product let it go after this reconcile read the product (the product's next
        // status no longer lists it, and triggers a reconcile without it).
        Ok(PolicyWrite::Released) => {
            tracing::info!(%bucket, "granted nothing on the bucket: its product released it");
            return Ok(());
        }
        Ok(write) => {
            tracing::info!(%bucket, ?write, consumers = ?grants.users, "wrote the consumers' grants in the bucket's policy");
            Ok(())
        }
        // The bucket went (its product deleted it): nobody can use it, there is nothing to grant.
        Err(error) if error.code() == Some(&crate::provision::storage::ErrorCode::NoSuchBucket) => {
            policies.forget_bucket(bucket);
            return Ok(());
        }
        Err(error) => Err(Error::from(error)),
    };
    written?;
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Blocked(format!(
            "IAM user(s) {} do not exist yet, so bucket {bucket} grants them nothing yet; their Domains make them",
            missing.join(", ")
        )))
    }
}

/// The consumers' Role and RoleBinding: each write its own step.
async fn apply_rbac(client: &Client, plan: &RbacPlan, applied: &mut Applied) {
    match plan {
        RbacPlan::Nothing => {}
        RbacPlan::Apply { role, binding } => {
            let namespace = role.namespace().unwrap_or_default();
            let name = role.name_any();
            let roles = Api::<Role>::namespaced(client.clone(), &namespace);
            applied.record(
                crate::controller::apply::apply(&roles, role)
                    .await
                    .map_err(kube_context(format!("applying Role {namespace}/{name}"))),
            );
            let bindings = Api::<RoleBinding>::namespaced(client.clone(), &namespace);
            applied.record(
                crate::controller::apply::apply(&bindings, binding)
                    .await
                    .map_err(kube_context(format!(
                        "applying RoleBinding {namespace}/{name}"
                    ))),
            );
        }
        RbacPlan::Delete {
            namespace,
            name,
            binding,
            role,
        } => {
            if *binding {
                let bindings = Api::<RoleBinding>::namespaced(client.clone(), namespace);
                applied.record(
                    crate::controller::apply::delete_ignoring_missing(&bindings, name)
                        .await
                        .map_err(kube_context(format!(
                            "deleting RoleBinding {namespace}/{name}"
                        ))),
                );
            }
            if *role {
                let roles = Api::<Role>::namespaced(client.clone(), namespace);
                applied.record(
                    crate::controller::apply::delete_ignoring_missing(&roles, name)
                        .await
                        .map_err(kube_context(format!("deleting Role {namespace}/{name}"))),
                );
            }
        }
    }
}

/// The connection ConfigMaps: each write its own step.
async fn apply_config_maps(client: &Client, plan: &ConfigMapPlan, applied: &mut Applied) {
    for map in &plan.apply {
        let namespace = map.namespace().unwrap_or_default();
        let name = map.name_any();
        // The consumer's namespace is another domain's: a ConfigMap it made is never replaced.
        let written = crate::controller::apply::apply_unless_foreign(
            &Api::<ConfigMap>::namespaced(client.clone(), &namespace),
            map,
            true,
        )
        .await
        .map_err(kube_context(format!(
            "applying ConfigMap {namespace}/{name}"
        )));
        if applied.record(written) == Some(crate::controller::apply::Applied::Foreign) {
            tracing::warn!(%namespace, configmap = %name, "left a ConfigMap the operator did not make in place of the connection details");
        }
    }
    for (namespace, name) in &plan.delete {
        let api = Api::<ConfigMap>::namespaced(client.clone(), namespace);
        applied.record(
            crate::controller::apply::delete_ignoring_missing(&api, name)
                .await
                .map_err(kube_context(format!(
                    "deleting ConfigMap {namespace}/{name}"
                ))),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::desired::tests::{domains, policy, product};
    use super::super::desired::{self, PortGrant, PortTarget, evaluate};
    use super::super::observe::topic_acls;
    use super::super::plan::{bucket_plan, kafka_plan};
    use super::*;
    use crate::api::conditions::{READY, find_condition};
    use crate::api::data_product::{Classification, Lifecycle};
    use crate::controller::failure::failed_status;
    use crate::provision::kafka::{
        AclBinding, AclOperation, AclPatternType, AdminOperation, AuthorizationRequest, FakeKafka,
        KafkaAdminError,
    };
    use crate::provision::storage::policy::BucketAccess;
    use crate::provision::storage::{BucketStore, FakeObjectStore, IdentityStore};
    use k8s_openapi::jiff::Timestamp;
    use std::time::Duration;

    const TOPIC: &str = "payments.orders.events";
    const BUCKET: &str = "payments-orders-lake";

    fn grants(spec: serde_json::Value) -> Vec<PortGrant> {
        let product = product(Lifecycle::Active, Classification::Internal);
        evaluate(
            &policy("p", spec),
            Some(&product),
            &domains(),
            Timestamp::from_second(0).unwrap(),
        )
        .grants
    }

    fn targets() -> std::collections::BTreeSet<PortTarget> {
        std::collections::BTreeSet::from([
            PortTarget::Topic(TOPIC.into()),
            PortTarget::Bucket(BUCKET.into()),
        ])
    }

    fn may(
        kafka: &FakeKafka,
        who: &str,
        resource_type: AclResourceType,
        name: &str,
        op: AclOperation,
    ) -> bool {
        kafka.is_authorized(&AuthorizationRequest {
            principal: &format!("User:{who}"),
            host: "10.0.0.1",
            resource_type,
            resource_name: name,
            operation: op,
        })
    }

    async fn world() -> (FakeKafka, FakeObjectStore, BucketPolicies) {
        let kafka = FakeKafka::new();
        // The producer's own ACL, made by the DataProduct reconciler: never ours to touch.
        let own = AclBinding::allow(
            AclResourceType::Topic,
            AclPatternType::Literal,
            TOPIC,
            "User:payments",
            AclOperation::Write,
        );
        kafka.create_acls(&[own]).await.unwrap();
        let storage = FakeObjectStore::new();
        for user in ["payments", "marketing", "bi"] {
            storage.ensure_user(user).await.unwrap();
        }
        storage.ensure_bucket(BUCKET).await.unwrap();
        (kafka, storage, remembering())
    }

    fn remembering() -> BucketPolicies {
        BucketPolicies::new(Duration::from_secs(300))
    }

    /// Plan and apply the product's bucket grants for `grants`, as a reconcile does.
    async fn sync_buckets(
        storage: &FakeObjectStore,
        remembered: &BucketPolicies,
        grants: &[PortGrant],
    ) -> Result<(), Error> {
        let product = product(Lifecycle::Active, Classification::Internal);
        let plan = bucket_plan(&product, &desired::desired(grants));
        let mut applied = Applied::default();
        apply_buckets(storage, remembered, &plan, &mut applied).await;
        applied.into_result()
    }

    /// Observe the product's topic ACLs, plan and apply the Kafka writes for `grants`.
    async fn sync_acls(kafka: &FakeKafka, grants: &[PortGrant]) -> Applied {
        let actual = topic_acls(kafka, &targets()).await.unwrap();
        let plan = kafka_plan(&desired::desired(grants), &actual, "payments");
        let mut applied = Applied::default();
        apply_kafka(kafka, &plan, &mut applied).await;
        applied
    }

    async fn sync(
        kafka: &FakeKafka,
        storage: &FakeObjectStore,
        remembered: &BucketPolicies,
        grants: &[PortGrant],
    ) {
        sync_acls(kafka, grants).await.into_result().unwrap();
        sync_buckets(storage, remembered, grants).await.unwrap();
    }

    #[tokio::test]
    async fn read_grants_consume_and_list_get_but_not_produce_or_put() {
        let (kafka, storage, remembered) = world().await;
        let read = grants(
            serde_json::json!({"dataProduct": "orders", "consumers": [{"domain": "marketing"}]}),
        );
        sync(&kafka, &storage, &remembered, &read).await;

        assert!(may(
            &kafka,
            "marketing",
            AclResourceType::Topic,
            TOPIC,
            AclOperation::Read
        ));
        assert!(may(
            &kafka,
            "marketing",
            AclResourceType::Group,
            "marketing.campaigns",
            AclOperation::Read
        ));
        assert!(!may(
            &kafka,
            "marketing",
            AclResourceType::Group,
            "payments.app",
            AclOperation::Read
        ));
        assert!(!may(
            &kafka,
            "marketing",
            AclResourceType::Topic,
            TOPIC,
            AclOperation::Write
        ));
        assert!(!may(
            &kafka,
            "bi",
            AclResourceType::Topic,
            TOPIC,
            AclOperation::Read
        ));
        assert!(storage.allows("marketing", "s3:GetObject", BUCKET));
        assert!(storage.allows("marketing", "s3:ListBucket", BUCKET));
        assert!(!storage.allows("marketing", "s3:PutObject", BUCKET));
        assert!(!storage.allows("bi", "s3:GetObject", BUCKET));

        // A resync that finds everything in place writes nothing, and the remembered bucket
        // policy spares even the S3 read.
        kafka.clear_calls();
        storage.clear_calls();
        sync(&kafka, &storage, &remembered, &read).await;
        assert!(kafka.write_calls().is_empty(), "{:?}", kafka.write_calls());
        assert!(storage.calls().is_empty(), "{:?}", storage.calls());
        // After a restart (nothing remembered) the policies are read, and still not written.
        sync(&kafka, &storage, &remembering(), &read).await;
        assert!(storage.writes().is_empty(), "{:?}", storage.writes());
    }

    #[tokio::test]
    async fn read_write_adds_produce_put_and_delete() {
        let (kafka, storage, remembered) = world().await;
        let rw = grants(
            serde_json::json!({"dataProduct": "orders", "access": "readWrite", "consumers": [{"domain": "marketing"}]}),
        );
        sync(&kafka, &storage, &remembered, &rw).await;
        assert!(may(
            &kafka,
            "marketing",
            AclResourceType::Topic,
            TOPIC,
            AclOperation::Write
        ));
        assert!(storage.allows("marketing", "s3:PutObject", BUCKET));
        assert!(storage.allows("marketing", "s3:DeleteObject", BUCKET));
        // Narrowing back to read takes write away again.
        let read = grants(
            serde_json::json!({"dataProduct": "orders", "consumers": [{"domain": "marketing"}]}),
        );
        sync(&kafka, &storage, &remembered, &read).await;
        assert!(!may(
            &kafka,
            "marketing",
            AclResourceType::Topic,
            TOPIC,
            AclOperation::Write
        ));
        assert!(may(
            &kafka,
            "marketing",
            AclResourceType::Topic,
            TOPIC,
            AclOperation::Read
        ));
        assert!(!storage.allows("marketing", "s3:PutObject", BUCKET));
        assert!(storage.allows("marketing", "s3:GetObject", BUCKET));
    }

    #[tokio::test]
    async fn revoking_one_of_two_overlapping_policies_keeps_what_the_other_gives() {
        let (kafka, storage, remembered) = world().await;
        let everything = grants(
            serde_json::json!({"dataProduct": "orders", "consumers": [{"domain": "marketing"}, {"domain": "bi"}]}),
        );
        let events_only = grants(
            serde_json::json!({"dataProduct": "orders", "ports": ["events"], "consumers": [{"domain": "marketing"}]}),
        );
        let both: Vec<PortGrant> = everything.iter().chain(&events_only).cloned().collect();
        sync(&kafka, &storage, &remembered, &both).await;
        assert!(may(
            &kafka,
            "bi",
            AclResourceType::Topic,
            TOPIC,
            AclOperation::Read
        ));

        // The broad policy goes: marketing keeps the topic through the other, loses the bucket;
        // bi loses everything, including its consumer-group ACL.
        sync(&kafka, &storage, &remembered, &events_only).await;
        assert!(may(
            &kafka,
            "marketing",
            AclResourceType::Topic,
            TOPIC,
            AclOperation::Read
        ));
        assert!(may(
            &kafka,
            "marketing",
            AclResourceType::Group,
            "marketing.x",
            AclOperation::Read
        ));
        assert!(!storage.allows("marketing", "s3:GetObject", BUCKET));
        assert!(!may(
            &kafka,
            "bi",
            AclResourceType::Topic,
            TOPIC,
            AclOperation::Read
        ));
        assert!(!may(
            &kafka,
            "bi",
            AclResourceType::Group,
            "bi.x",
            AclOperation::Read
        ));
        assert!(!storage.allows("bi", "s3:GetObject", BUCKET));

        // The last policy goes: only the producer's own ACL is left.
        sync(&kafka, &storage, &remembered, &[]).await;
        let left: Vec<String> = kafka.acls().iter().map(|b| b.principal.clone()).collect();
        assert_eq!(left, ["User:payments"]);
        assert_eq!(storage.bucket_policy(BUCKET), None, "nothing is left in it");
    }

    #[tokio::test]
    async fn a_bucket_two_policies_grant_stays_when_one_goes() {
        let (_, storage, remembered) = world().await;
        let read = grants(
            serde_json::json!({"dataProduct": "orders", "ports": ["lake"], "consumers": [{"domain": "marketing"}]}),
        );
        let write = grants(
            serde_json::json!({"dataProduct": "orders", "ports": ["lake"], "access": "readWrite",
                "consumers": [{"domain": "marketing"}, {"domain": "bi"}]}),
        );
        let both: Vec<PortGrant> = read.iter().chain(&write).cloned().collect();
        sync_buckets(&storage, &remembered, &both).await.unwrap();
        assert!(storage.allows("marketing", "s3:PutObject", BUCKET));
        assert!(storage.allows("bi", "s3:PutObject", BUCKET));

        // The read-write policy goes: marketing keeps reading through the other, bi loses all.
        sync_buckets(&storage, &remembered, &read).await.unwrap();
        assert!(storage.allows("marketing", "s3:GetObject", BUCKET));
        assert!(!storage.allows("marketing", "s3:PutObject", BUCKET));
        assert!(!storage.allows("bi", "s3:GetObject", BUCKET));

        // The read policy goes instead: the read-write one still gives both everything.
        sync_buckets(&storage, &remembered, &both).await.unwrap();
        sync_buckets(&storage, &remembered, &write).await.unwrap();
        assert!(storage.allows("marketing", "s3:PutObject", BUCKET));
        assert!(storage.allows("bi", "s3:GetObject", BUCKET));
    }

    #[tokio::test]
    async fn the_consumers_part_leaves_the_owners_part_alone() {
        let (_, storage, remembered) = world().await;
        // The DataProduct controller's part: payments owns the bucket.
        let owner_arn = FakeObjectStore::user_arn_of("payments");
        let owner = statements(
            Part::Owner,
            BUCKET,
            &[(BucketAccess::Owner, [owner_arn].into())].into(),
        );
        remembered
            .converge(&storage, BUCKET, Part::Owner, &owner)
            .await
            .unwrap();
        let read = grants(
            serde_json::json!({"dataProduct": "orders", "consumers": [{"domain": "marketing"}]}),
        );
        sync_buckets(&storage, &remembered, &read).await.unwrap();
        assert!(storage.allows("marketing", "s3:GetObject", BUCKET));
        assert!(storage.allows("payments", "s3:PutObject", BUCKET));
        // Converging again with nothing changed sends nothing.
        storage.clear_calls();
        sync_buckets(&storage, &remembered, &read).await.unwrap();
        assert!(storage.calls().is_empty(), "{:?}", storage.calls());

        // The grant goes; the owner's access stays.
        sync_buckets(&storage, &remembered, &[]).await.unwrap();
        assert!(!storage.allows("marketing", "s3:GetObject", BUCKET));
        assert!(storage.allows("payments", "s3:PutObject", BUCKET));
    }

    #[tokio::test]
    async fn a_bucket_the_product_does_not_hold_is_never_written() {
        let (_, storage, remembered) = world().await;
        let mut unheld = product(Lifecycle::Active, Classification::Internal);
        unheld.held_buckets.clear();
        let read = grants(
            serde_json::json!({"dataProduct": "orders", "consumers": [{"domain": "marketing"}]}),
        );
        let plan = bucket_plan(&unheld, &desired::desired(&read));
        assert!(plan.is_empty(), "{plan:?}");
        storage.clear_calls();
        let mut applied = Applied::default();
        apply_buckets(&storage, &remembered, &plan, &mut applied).await;
        assert!(storage.calls().is_empty());
    }

    #[tokio::test]
    async fn a_product_being_deleted_takes_its_consumers_grants_back() {
        let (_, storage, remembered) = world().await;
        let read = grants(
            serde_json::json!({"dataProduct": "orders", "consumers": [{"domain": "marketing"}]}),
        );
        sync_buckets(&storage, &remembered, &read).await.unwrap();
        assert!(storage.allows("marketing", "s3:GetObject", BUCKET));
        let mut deleting = product(Lifecycle::Active, Classification::Internal);
        deleting.deleting = true;
        let plan = bucket_plan(&deleting, &desired::desired(&read));
        assert_eq!(plan.len(), 1);
        assert!(plan[0].users.is_empty());
        let mut applied = Applied::default();
        apply_buckets(&storage, &remembered, &plan, &mut applied).await;
        assert!(applied.succeeded());
        assert!(!storage.allows("marketing", "s3:GetObject", BUCKET));
    }

    #[tokio::test]
    async fn grants_planned_before_the_product_released_its_bucket_are_not_written_after() {
        let (_, storage, remembered) = world().await;
        let read = grants(
            serde_json::json!({"dataProduct": "orders", "consumers": [{"domain": "marketing"}]}),
        );
        // The reconcile read the product while it still held the bucket...
        let product = product(Lifecycle::Active, Classification::Internal);
        let plan = bucket_plan(&product, &desired::desired(&read));
        assert_eq!(plan.len(), 1);
        // ...then the DataProduct controller released it (the port went, the bucket is kept)...
        remembered.release(&storage, BUCKET).await.unwrap();
        // ...and the grants are applied: the bucket is nobody's to grant any more.
        let mut applied = Applied::default();
        apply_buckets(&storage, &remembered, &plan, &mut applied).await;
        assert!(applied.succeeded());
        assert!(!storage.allows("marketing", "s3:GetObject", BUCKET));
        assert_eq!(storage.bucket_policy(BUCKET), None);
    }

    #[tokio::test]
    async fn a_consumer_without_an_iam_user_does_not_stop_the_others() {
        let storage = FakeObjectStore::new();
        storage.ensure_user("bi").await.unwrap();
        storage.ensure_bucket(BUCKET).await.unwrap();
        let remembered = remembering();
        // marketing has no IAM user: its domain is going, or not provisioned yet.
        let for_bi =
            grants(serde_json::json!({"dataProduct": "orders", "consumers": [{"domain": "bi"}]}));
        sync_buckets(&storage, &remembered, &for_bi).await.unwrap();
        assert!(storage.allows("bi", "s3:GetObject", BUCKET));

        // Granting marketing fails (and the reconcile will retry), but bi still gets its level.
        let for_both = grants(
            serde_json::json!({"dataProduct": "orders", "access": "readWrite",
                "consumers": [{"domain": "marketing"}, {"domain": "bi"}]}),
        );
        let result = sync_buckets(&storage, &remembered, &for_both).await;
        assert!(
            result.is_err(),
            "a grant to a missing user is not silently dropped"
        );
        assert!(storage.allows("bi", "s3:PutObject", BUCKET));
    }

    #[tokio::test]
    async fn a_stray_grant_on_a_product_topic_is_revoked() {
        let (kafka, storage, remembered) = world().await;
        let stray = AclBinding::allow(
            AclResourceType::Topic,
            AclPatternType::Literal,
            TOPIC,
            "User:bi",
            AclOperation::Read,
        );
        kafka.create_acls(&[stray]).await.unwrap();
        // A statement of the consumers' part that no policy gives any more (written by an
        // earlier operator, or by hand).
        let stray = statements(
            Part::Grants,
            BUCKET,
            &[(
                BucketAccess::Read,
                [FakeObjectStore::user_arn_of("bi")].into(),
            )]
            .into(),
        );
        let document = crate::provision::storage::policy::PolicyDocument {
            version: "2012-10-17".into(),
            statement: stray,
        };
        storage
            .put_bucket_policy(BUCKET, &document.to_json())
            .await
            .unwrap();
        assert!(storage.allows("bi", "s3:GetObject", BUCKET));
        sync(&kafka, &storage, &remembered, &[]).await;
        assert!(!may(
            &kafka,
            "bi",
            AclResourceType::Topic,
            TOPIC,
            AclOperation::Read
        ));
        assert!(!storage.allows("bi", "s3:GetObject", BUCKET));
        assert!(may(
            &kafka,
            "payments",
            AclResourceType::Topic,
            TOPIC,
            AclOperation::Write
        ));
    }

    #[tokio::test]
    async fn kafka_failing_while_applying_is_reported_as_unavailable_and_the_buckets_go_on() {
        let (kafka, storage, remembered) = world().await;
        let read = grants(
            serde_json::json!({"dataProduct": "orders", "consumers": [{"domain": "marketing"}]}),
        );
        // Observed and planned while the broker answered; it goes away before the writes.
        let actual = topic_acls(&kafka, &targets()).await.unwrap();
        let plan = kafka_plan(&desired::desired(&read), &actual, "payments");
        assert!(!plan.create.is_empty());
        kafka.start_outage(KafkaAdminError::TimedOut {
            operation: AdminOperation::CreateAcls,
            timeout: Duration::from_secs(15),
        });
        kafka.clear_calls();
        let mut applied = Applied::default();
        apply_kafka(&kafka, &plan, &mut applied).await;
        let product = product(Lifecycle::Active, Classification::Internal);
        let buckets = bucket_plan(&product, &desired::desired(&read));
        apply_buckets(&storage, &remembered, &buckets, &mut applied).await;

        assert_eq!(
            kafka.calls(),
            [AdminOperation::CreateAcls],
            "the first Kafka failure ends the Kafka part"
        );
        assert!(
            storage.allows("marketing", "s3:GetObject", BUCKET),
            "IAM does not wait for Kafka"
        );
        let outcome = applied.outcome().expect("a failure to report");
        assert_eq!(outcome.reason, "KafkaUnavailable");
        let mut policy = policy(
            "p",
            serde_json::json!({"dataProduct": "orders", "consumers": [{"domain": "marketing"}]}),
        );
        policy.metadata.generation = Some(3);
        let status = failed_status(&policy, &outcome);
        let ready = find_condition(&status.conditions, READY).unwrap();
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason, "KafkaUnavailable");
        assert_eq!(status.observed_generation, Some(3));
        assert!(matches!(applied.into_result(), Err(Error::Kafka(_))));

        // The broker back, the same plan applies in full.
        kafka.end_outage();
        let mut applied = Applied::default();
        apply_kafka(&kafka, &plan, &mut applied).await;
        assert!(applied.succeeded());
        assert!(may(
            &kafka,
            "marketing",
            AclResourceType::Topic,
            TOPIC,
            AclOperation::Read
        ));
    }
}
