//! Carrying out a DataProduct's [`Plan`]: each write as planned, every failure recorded and
//! the writes that do not depend on a failed one still made. Kafka's steps stop at Kafka's
//! first failure (the next ones would wait for the same broker), the object store's go on per
//! bucket, and the Spark job is applied either way.
//!
//! Kafka answers some writes per item: an item Kafka refuses because of the spec (an invalid
//! config, say) is a problem for the product's owners (`KafkaRefused`, Stalled), not a failure
//! to retry.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};

use super::desired;
use super::plan::{BucketRelease, Cleanup, Plan, Release, SparkWrites};
use crate::api::conditions::Outcome;
use crate::api::data_product::DataProduct;
use crate::controller::applied::Applied;
use crate::controller::apply::{FIELD_MANAGER, apply, delete_ignoring_missing, is_not_found};
use crate::controller::bucket_policies::{BucketPolicies, PolicyWrite};
use crate::controller::{Context, Error, batch_ok, kube_context};
use crate::provision::kafka::{BatchResult, KafkaAdmin, KafkaAdminError, RDKafkaErrorCode};
use crate::provision::storage::ObjectStore;
use crate::provision::storage::bucket_policy::{Part, statements};
use crate::provision::storage::policy::BucketAccess;

/// What applying a plan did.
#[derive(Debug, Default)]
pub struct Done {
    /// Every failure.
    pub applied: Applied,
    /// What Kafka or Kubernetes refused because of the spec: for people to change.
    pub problems: Vec<Outcome>,
    /// Topics and buckets the plan made that were not made.
    pub unmade: BTreeSet<String>,
    /// The removed ports were released (their Event is due).
    pub released: bool,
}

/// The systems a product's writes go to, besides Kubernetes.
pub struct Edges<'a> {
    /// Kafka's admin API.
    pub kafka: &'a dyn KafkaAdmin,
    /// S3 and IAM.
    pub storage: &'a dyn ObjectStore,
    /// The buckets' policies, as last written or read.
    pub policies: &'a BucketPolicies,
}

impl<'a> Edges<'a> {
    /// The edges of the operator's context.
    pub fn of(ctx: &'a Context) -> Self {
        Self {
            kafka: ctx.kafka.as_ref(),
            storage: ctx.storage.as_ref(),
            policies: &ctx.bucket_policies,
        }
    }
}

/// Carry out `plan` for `product`.
pub async fn apply_plan(product: &DataProduct, plan: &Plan, ctx: &Context) -> Done {
    let mut done = apply_edges(product, plan, &Edges::of(ctx)).await;
    apply_spark(product, &plan.spark, ctx, &mut done).await;
    done
}

/// The Kafka and object-store part of `plan`: the removed ports' release, topics and ACLs,
/// buckets and the owner's part of their policies.
pub async fn apply_edges(product: &DataProduct, plan: &Plan, edges: &Edges<'_>) -> Done {
    let mut done = Done::default();
    if !plan.release.is_empty() {
        let failures = done.applied.errors().len();
        release(&plan.release, edges, &mut done.applied).await;
        done.released = done.applied.errors().len() == failures;
    }
    topics(product, plan, edges.kafka, &mut done).await;
    buckets(plan, edges.storage, &mut done).await;
    if let Some(access) = &plan.owner_access {
        let made = access.buckets.iter().filter(|b| !done.unmade.contains(*b));
        let made: Vec<&String> = made.collect();
        if !made.is_empty() {
            let converged = give_owner_access(&access.user, &made, edges).await;
            done.applied.record(converged);
        }
    }
    done
}

/// Topics: at most one create, one partition increase and one config alteration; then the
/// owner's missing ACLs, except on topics that were not made.
async fn topics(product: &DataProduct, plan: &Plan, kafka: &dyn KafkaAdmin, done: &mut Done) {
    let writes = &plan.topics;
    let name = product.name_any();
    let names: Vec<String> = writes.create.iter().map(|t| t.name.clone()).collect();
    if !names.is_empty() {
        let created = kafka.create_topics(&writes.create).await;
        let Some(made) = settled(created, KafkaAdminError::is_topic_already_exists, done) else {
            done.unmade.extend(names);
            return;
        };
        let unmade = names.iter().enumerate().filter(|(i, _)| !made.contains(i));
        done.unmade.extend(unmade.map(|(_, topic)| topic.clone()));
        tracing::info!(product = %name, topics = made.len(), "created topics");
    }
    if !writes.increase.is_empty() {
        let increased = kafka.create_partitions(&writes.increase).await;
        if settled(increased, |_| false, done).is_none() {
            return;
        }
        tracing::info!(product = %name, topics = writes.increase.len(), "added partitions");
    }
    if !writes.alter.is_empty() {
        let altered = kafka.alter_topic_configs(&writes.alter).await;
        if settled(altered, |_| false, done).is_none() {
            return;
        }
        tracing::info!(product = %name, topics = writes.alter.len(), "set topic configs back to the spec");
    }
    let missing: Vec<_> = plan
        .acls
        .iter()
        .filter(|binding| !done.unmade.contains(&binding.resource_name))
        .cloned()
        .collect();
    if !missing.is_empty() {
        let created = all_ok(kafka.create_acls(&missing).await, |_| false);
        if done.applied.record(created).is_some() {
            tracing::info!(product = %name, acls = missing.len(), "created the owner's ACLs");
        }
    }
}

/// A batched Kafka call that must succeed for every item (but those `ignore`d).
fn all_ok<T>(call: BatchResult<T>, ignore: impl Fn(&KafkaAdminError) -> bool) -> Result<(), Error> {
    batch_ok(call?, ignore).map(|_| ())
}

/// A batched Kafka write's results [`settle`]d, or, when the whole call failed, the failure
/// recorded and `None` (Kafka's later steps would wait for the same broker).
fn settled(
    call: BatchResult<()>,
    ignore: impl Fn(&KafkaAdminError) -> bool,
    done: &mut Done,
) -> Option<BTreeSet<usize>> {
    match call {
        Ok(results) => Some(settle(results, ignore, done)),
        Err(error) => {
            done.applied.record::<()>(Err(error.into()));
            None
        }
    }
}

/// Kafka errors that mean the spec asks for something Kafka refuses: a person must change it.
fn is_rejection(error: &KafkaAdminError) -> bool {
    matches!(error, KafkaAdminError::InvalidInput { .. })
        || matches!(
            error.code(),
            Some(
                RDKafkaErrorCode::InvalidConfig
                    | RDKafkaErrorCode::InvalidReplicationFactor
                    | RDKafkaErrorCode::InvalidPartitions
                    | RDKafkaErrorCode::PolicyViolation
                    | RDKafkaErrorCode::InvalidRequest
                    | RDKafkaErrorCode::InvalidTopic
            )
        )
}

/// Settle one batch's results: refusals become problems, `ignore`d errors pass, any other
/// failure is recorded. Returns the indices that succeeded.
fn settle(
    results: Vec<Result<(), KafkaAdminError>>,
    ignore: impl Fn(&KafkaAdminError) -> bool,
    done: &mut Done,
) -> BTreeSet<usize> {
    let mut ok = BTreeSet::new();
    for (index, result) in results.into_iter().enumerate() {
        match result {
            Ok(()) => {
                ok.insert(index);
            }
            Err(error) if ignore(&error) => {
                ok.insert(index);
            }
            Err(error) if is_rejection(&error) => done
                .problems
                .push(Outcome::stalled("KafkaRefused", error.to_string())),
            Err(error) => {
                done.applied.record::<()>(Err(error.into()));
            }
        }
    }
    ok
}

/// Buckets: each made and set as planned; a failure leaves that bucket unmade (it gets no
/// grant) and the others go on.
async fn buckets(plan: &Plan, storage: &dyn ObjectStore, done: &mut Done) {
    for write in &plan.buckets {
        let bucket = &write.bucket;
        if write.create {
            match storage.ensure_bucket(bucket).await {
                Ok(true) => tracing::info!(%bucket, "created bucket"),
                // Made by someone else since it was observed: the next reconcile looks at it
                // (its tags may name another domain) before anything is written to it.
                Ok(false) => {
                    done.unmade.insert(bucket.clone());
                    continue;
                }
                Err(error) => {
                    done.unmade.insert(bucket.clone());
                    done.applied.record::<()>(Err(error.into()));
                    continue;
                }
            }
        }
        if let Some(enabled) = write.versioning {
            let put = storage.put_versioning(bucket, enabled).await;
            done.applied.record(put.map_err(Error::from));
        }
        if let Some(days) = write.expiration_days {
            let put = storage.put_expiration_days(bucket, days).await;
            done.applied.record(put.map_err(Error::from));
        }
        if let Some(tags) = &write.tags {
            let put = storage.put_tags(bucket, tags).await;
            if done.applied.record(put.map_err(Error::from)).is_none() && write.create {
                // A new bucket without its owner tags is not yet the domain's.
                done.unmade.insert(bucket.clone());
            }
        }
    }
}

/// Make each bucket's policy give the domain's IAM user `user` owner access. The user is
/// made by the Domain controller; until it exists, nothing can name it.
async fn give_owner_access(
    user: &str,
    buckets: &[&String],
    edges: &Edges<'_>,
) -> Result<(), Error> {
    let owner = [(BucketAccess::Owner, [user.to_owned()].into())].into();
    let (principals, missing) = edges.policies.principals(edges.storage, &owner).await?;
    if !missing.is_empty() {
        return Err(Error::Blocked(format!(
            "IAM user {user} does not exist yet; its Domain makes it"
        )));
    }
    let mut first_error = None;
    for bucket in buckets {
        let owner = statements(Part::Owner, bucket, &principals);
        match edges
            .policies
            .converge(edges.storage, bucket, Part::Owner, &owner)
            .await
        {
            Ok(PolicyWrite::Unchanged) => {}
            Ok(write) => {
                tracing::info!(%bucket, %user, ?write, "gave the owning domain its access in the bucket's policy")
            }
            Err(error) => {
                tracing::warn!(%bucket, %error, "could not write the bucket's policy");
                first_error.get_or_insert(error);
            }
        }
    }
    first_error.map_or(Ok(()), |error| Err(error.into()))
}

/// Take the operator's statements, the owner's and the consumers' alike, out of a released
/// bucket's policy; no grant is written on it again until it is owned again.
async fn withdraw_access(bucket: &str, edges: &Edges<'_>) -> Result<(), Error> {
    let writes = edges.policies.release(edges.storage, bucket).await?;
    for (part, write) in writes {
        if write != PolicyWrite::Unchanged {
            tracing::info!(%bucket, ?part, ?write, "withdrew the operator's access from the released bucket's policy");
        }
    }
    Ok(())
}

/// Release outputs as planned: ACLs, then topics, then buckets, each failure recorded.
async fn release(release: &Release, edges: &Edges<'_>, applied: &mut Applied) {
    if !release.acls.is_empty() {
        let deleted = all_ok(edges.kafka.delete_acls(&release.acls).await, |_| false);
        applied.record(deleted);
    }
    if !release.delete_topics.is_empty() {
        let deleted = all_ok(
            edges.kafka.delete_topics(&release.delete_topics).await,
            KafkaAdminError::is_unknown_topic,
        );
        applied.record(deleted);
    }
    let storage = edges.storage;
    for bucket in &release.buckets {
        let released = match bucket {
            BucketRelease::Delete(bucket) => {
                async {
                    let removed = storage.empty_bucket(bucket).await?;
                    storage.delete_bucket(bucket).await?;
                    edges.policies.forget_bucket(bucket);
                    tracing::info!(%bucket, objects = removed, "deleted bucket");
                    Ok::<(), Error>(())
                }
                .await
            }
            BucketRelease::Tag(bucket, tags) => match storage.put_tags(bucket, tags).await {
                Ok(()) => withdraw_access(bucket, edges).await,
                Err(error) => Err(error.into()),
            },
        };
        applied.record(released);
    }
}

/// Carry out a deletion's plan: the release (a kept bucket's policy included), then the Spark objects, the
/// driver's RoleBinding and ServiceAccount.
pub async fn apply_cleanup(product: &DataProduct, cleanup: &Cleanup, ctx: &Context) -> Applied {
    let mut applied = apply_cleanup_edges(cleanup, &Edges::of(ctx)).await;
    let name = product.name_any();
    let namespace = product.namespace().unwrap_or_default();
    delete_spark_objects(ctx, &namespace, &name, &cleanup.spark, &mut applied).await;
    let account = desired::spark_service_account_name(&name);
    let deleted = delete_ignoring_missing(
        &Api::<RoleBinding>::namespaced(ctx.client.clone(), &namespace),
        &account,
    )
    .await
    .map_err(kube_context(format!(
        "deleting RoleBinding {namespace}/{account}"
    )));
    applied.record(deleted);
    let deleted = delete_ignoring_missing(
        &Api::<ServiceAccount>::namespaced(ctx.client.clone(), &namespace),
        &account,
    )
    .await
    .map_err(kube_context(format!(
        "deleting ServiceAccount {namespace}/{account}"
    )));
    applied.record(deleted);
    applied
}

/// The Kafka and object-store part of a deletion.
pub async fn apply_cleanup_edges(cleanup: &Cleanup, edges: &Edges<'_>) -> Applied {
    let mut applied = Applied::default();
    release(&cleanup.release, edges, &mut applied).await;
    applied
}

/// The Spark job: this product's objects of kinds no longer wanted deleted, then the
/// ServiceAccount, RoleBinding and the wanted object applied server-side (the object only when
/// the live one does not already hold it). A missing spark-operator or an object the API
/// server refuses is a problem for people, not a failure to retry.
async fn apply_spark(product: &DataProduct, spark: &SparkWrites, ctx: &Context, done: &mut Done) {
    let name = product.name_any();
    let namespace = product.namespace().unwrap_or_default();
    delete_spark_objects(ctx, &namespace, &name, &spark.delete, &mut done.applied).await;
    let Some(run) = &spark.run else {
        return;
    };
    let account = desired::spark_service_account_name(&name);
    let applied_account = apply(
        &Api::<ServiceAccount>::namespaced(ctx.client.clone(), &namespace),
        &run.service_account,
    )
    .await
    .map_err(kube_context(format!(
        "applying ServiceAccount {namespace}/{account}"
    )));
    let applied_binding = apply(
        &Api::<RoleBinding>::namespaced(ctx.client.clone(), &namespace),
        &run.role_binding,
    )
    .await
    .map_err(kube_context(format!(
        "applying RoleBinding {namespace}/{account}"
    )));
    let mut ready = done.applied.record(applied_account).is_some()
        & done.applied.record(applied_binding).is_some();
    if let Some(truststore) = &run.truststore {
        let store = desired::spark_truststore_name(&name);
        let applied_store = apply(
            &Api::<ConfigMap>::namespaced(ctx.client.clone(), &namespace),
            truststore,
        )
        .await
        .map_err(kube_context(format!(
            "applying ConfigMap {namespace}/{store}"
        )));
        ready &= done.applied.record(applied_store).is_some();
    }
    if !ready || run.unchanged {
        return;
    }
    let kind = run.kind;
    let patched = super::spark_api(ctx, &namespace, kind)
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&run.object),
        )
        .await;
    match patched {
        Ok(_) => tracing::info!(product = %name, kind, "applied the Spark application"),
        Err(error) if is_not_found(&error) => done.problems.push(Outcome::stalled(
            "SparkOperatorMissing",
            format!(
                "The {kind} kind (sparkoperator.k8s.io/v1beta2) is not installed; install the kubeflow spark-operator to run this product's transformation."
            ),
        )),
        Err(error) if matches!(&error, kube::Error::Api(s) if s.code == 422) => done
            .problems
            .push(Outcome::stalled("SparkApplicationInvalid", error.to_string())),
        Err(error) => {
            done.applied
                .record::<()>(Err(kube_context(format!("applying {kind} {namespace}/{name}"))(
                    error,
                )));
        }
    }
}

/// Delete the product's Spark objects of `kinds` (the plan checked they are its own).
async fn delete_spark_objects(
    ctx: &Context,
    namespace: &str,
    name: &str,
    kinds: &[&'static str],
    applied: &mut Applied,
) {
    for kind in kinds {
        let deleted = delete_ignoring_missing(&super::spark_api(ctx, namespace, kind), name)
            .await
            .map_err(kube_context(format!("deleting {kind} {namespace}/{name}")));
        applied.record(deleted);
    }
}
