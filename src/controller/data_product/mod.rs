//! The DataProduct reconciler: Kafka topics with the owning domain's ACLs, buckets with
//! versioning, lifecycle, tags and the owner's IAM policy, and the Spark job that makes the
//! product; input ports resolved against the producers' AccessPolicies.
//!
//! Each reconcile is a pipeline: dereference (the Domain, the other products, the policies)
//! -> validate (namespace, lifecycle, quotas, claims; pure, in [`desired`]) -> apply Kafka,
//! storage and Spark, each batched and writing only what differs -> compute kstatus
//! conditions -> write status only when it changed.
//!
//! Ownership: Kafka topics carry no labels, so the DataProducts themselves say who owns what.
//! When two products name the same topic or bucket, the older one (creation time, then
//! namespace/name) keeps it and the newer one is `Stalled` ("managed by <namespace>/<name>");
//! an existing topic or bucket no product claims is adopted.
//!
//! Deletion, behind the finalizer [`FINALIZER`], by `deletionPolicy`:
//! - `Retain` (default): topics and buckets stay with their data. Buckets get the tag
//!   `datamesh.dev/orphaned=true`. Kafka topics have no free-form metadata, so a retained topic
//!   is marked by what it lacks: no DataProduct claims it and its producer ACLs are gone (and an
//!   Event on the deleted product lists it).
//! - `Delete`: topics are deleted and buckets emptied and deleted.
//!
//! Either way the product's ACLs, its buckets in the domain's owner policy and its Spark objects
//! are removed.

pub mod desired;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{Predicate, PredicateConfig, WatchStreamExt, predicates, watcher};
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;

use self::desired::{
    BucketPlan, InputObservation, SCHEDULED_SPARK_APPLICATION, SPARK_APPLICATION, SparkEndpoints,
    TopicPlan, TopicStep,
};
use super::apply::{
    DATA_PRODUCT_LABEL, FIELD_MANAGER, already_applied, apply, apply_status, declare,
    delete_ignoring_missing, is_not_found, managed_children,
};
use super::domain::desired::storage_user;
use super::failure::report_failure;
use super::readable;
use super::stores_ready::StoresReady;
use super::user_policies::{PolicyRequest, PolicyWrite, UserPolicies};
use super::{
    Context, Error, backoff_key, batch_ok, domain_trigger, from_finalizer, kube_context,
    requeue_after_error,
};
use crate::api::DeletionPolicy;
use crate::api::access_policy::AccessPolicy;
use crate::api::conditions::{
    Outcome, Progress, READY, condition, find_condition, is_true, set_condition, set_progress,
};
use crate::api::data_product::{
    DataProduct, DataProductStatus, InputAccess, InputPortStatus, Lifecycle, OutputPortStatus,
    ports_ready,
};
use crate::api::domain::Domain;
use crate::api::naming::kafka_principal;
use crate::controller::tenancy::{OWNED_BY_ANOTHER_DOMAIN, Owners, owned_namespace};
use crate::governance;
use crate::provision::kafka::{
    AclBindingFilter, AclResourceType, KafkaAdmin, KafkaAdminError, NewTopic, PartitionIncrease,
    RDKafkaErrorCode, TopicConfigAlteration,
};
use crate::provision::storage::policy::{BucketAccess, BucketGrant, OWNER_POLICY_NAME};
use crate::provision::storage::{BucketTags, ObjectStore};

/// The finalizer that lets the operator remove a DataProduct's ACLs, access and Spark objects
/// (and, with `deletionPolicy: Delete`, its topics and buckets) before it goes.
pub const FINALIZER: &str = "datamesh.dev/data-product";
/// Condition type set `True` while the product's `spec.status` is `deprecated`.
pub const DEPRECATED: &str = "Deprecated";
const KIND: &str = "DataProduct";
/// Reasons of a product that another product of its domain can unblock by changing or going.
const WAITS_ON_SIBLINGS: &[&str] = &[QUOTA_EXCEEDED, CLAIMED];
/// The Ready reason of a product over its domain's quotas.
const QUOTA_EXCEEDED: &str = "QuotaExceeded";
/// The Ready reason of a product that names a topic or bucket an older product keeps.
const CLAIMED: &str = "ClaimedByAnotherProduct";
/// How many DataProducts are reconciled at once.
const CONCURRENCY: u16 = 32;

/// What each reconcile is handed: the shared context and the watch's view of every product
/// (for claims, quotas and input ports, without listing on every reconcile).
pub struct State {
    /// Clients, settings, events and metrics.
    pub ctx: Arc<Context>,
    /// Every DataProduct in the cluster, as the controller's watch sees it.
    pub products: Store<DataProduct>,
    /// Every Domain, as the Domain watch sees it.
    pub domains: Store<Domain>,
    /// Both stores have listed everything once.
    pub ready: StoresReady,
}

impl State {
    /// Wait until both watches have listed everything once: claims, quotas and inputs compare
    /// with every product and domain.
    async fn ready(&self) -> Result<(), Error> {
        self.ready.wait().await
    }

    /// The Domain called `name`, as the watch last saw it.
    fn domain(&self, name: &str) -> Option<Arc<Domain>> {
        self.domains.get(&ObjectRef::new(name))
    }

    /// Which domain owns which namespace, as the Domains' statuses record it.
    fn owners(&self) -> Owners {
        Owners::of(self.domains.state().iter().map(AsRef::as_ref))
    }

    /// Every product that acts for its domain (it lives in that domain's namespace). Only these
    /// claim names, count against quotas and hold access: a copy elsewhere takes part in nothing.
    fn acting_products(&self, owners: &Owners) -> Vec<Arc<DataProduct>> {
        self.products
            .state_filter(|product| owners.acts_for_its_domain(product))
    }
}

/// Run the DataProduct controller until `shutdown` is cancelled.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let config = || watcher::Config::default().any_semantic();
    // A product is reconciled when its spec or finalizers change, not on its own status
    // writes: those would add a reconcile per write that finds nothing to do (a third of all
    // reconciles when many products are created at once).
    let (store, writer) = reflector::store();
    let own_events = reflector(
        writer,
        readable::watch::<DataProduct>(client.clone(), config(), true).default_backoff(),
    )
    .applied_objects()
    .predicate_filter(
        predicates::generation.combine(predicates::finalizers),
        PredicateConfig::default(),
    );
    let controller = Controller::for_stream(own_events, store.clone())
        .with_config(controller::Config::default().concurrency(CONCURRENCY))
        // Its children (owned through ownerReferences): one deleted or edited by hand is made
        // again at once, not at the next resync. Without the spark-operator CRDs installed
        // their watches fail and retry with backoff; the product reports SparkOperatorMissing.
        .owns(
            Api::<ServiceAccount>::all(client.clone()),
            managed_children(),
        )
        .owns(Api::<RoleBinding>::all(client.clone()), managed_children())
        .owns_with(
            Api::<DynamicObject>::all_with(client.clone(), &spark_resource(SPARK_APPLICATION)),
            spark_resource(SPARK_APPLICATION),
            managed_children(),
        )
        .owns_with(
            Api::<DynamicObject>::all_with(
                client.clone(),
                &spark_resource(SCHEDULED_SPARK_APPLICATION),
            ),
            spark_resource(SCHEDULED_SPARK_APPLICATION),
            managed_children(),
        );
    let (domains, domain_writer) = reflector::store();
    let domain_events = reflector(
        domain_writer,
        readable::watch::<Domain>(client.clone(), config(), false).default_backoff(),
    )
    .touched_objects()
    .predicate_filter(domain_trigger, PredicateConfig::default());
    let (by_policy, by_product, by_domain) = (store.clone(), store.clone(), store.clone());
    controller
        // A grant given, changed, expired or revoked changes its consumers' input ports.
        .watches_stream(
            readable::watch::<AccessPolicy>(client.clone(), config(), false)
                .default_backoff()
                .touched_objects(),
            move |policy| consumers_of_policy(&by_policy.state(), &policy),
        )
        // A product appearing, changing or going changes its consumers' inputs, and may free a
        // contested name or quota for its domain's products that wait.
        .watches_stream(
            readable::watch::<DataProduct>(client.clone(), config(), false)
                .default_backoff()
                .touched_objects(),
            move |product| affected_by_product(&by_product.state(), &product),
        )
        // A Domain becoming Ready (or its quotas changing) unblocks its products. The reflector
        // stores each event before it triggers, so the reconcile reads that Domain or newer.
        .watches_stream(domain_events, move |domain: Domain| {
            products_of_domain(&by_domain.state(), &domain.name_any())
        })
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(
            reconcile,
            error_policy,
            Arc::new(State {
                ctx,
                ready: StoresReady::spawn(vec![
                    StoresReady::of("DataProduct", &store),
                    StoresReady::of("Domain", &domains),
                ]),
                products: store,
                domains,
            }),
        )
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn reference(product: &DataProduct) -> ObjectRef<DataProduct> {
    ObjectRef::from_obj(product)
}

fn consumers_of_policy(
    all: &[Arc<DataProduct>],
    policy: &AccessPolicy,
) -> Vec<ObjectRef<DataProduct>> {
    let namespace = policy.namespace();
    let Some(producer) = all
        .iter()
        .find(|p| p.namespace() == namespace && p.name_any() == policy.spec.data_product)
    else {
        return vec![];
    };
    readers_of(all, &producer.spec.domain, &producer.name_any())
}

fn readers_of(all: &[Arc<DataProduct>], domain: &str, name: &str) -> Vec<ObjectRef<DataProduct>> {
    all.iter()
        .filter(|p| {
            p.spec
                .input_ports
                .iter()
                .any(|i| i.data_product.domain == domain && i.data_product.name == name)
        })
        .map(|p| reference(p))
        .collect()
}

fn affected_by_product(
    all: &[Arc<DataProduct>],
    changed: &DataProduct,
) -> Vec<ObjectRef<DataProduct>> {
    let mut affected = readers_of(all, &changed.spec.domain, &changed.name_any());
    // Only a sibling stalled on a name or a quota can be unblocked by another product (the name
    // freed, the quota no longer used). Triggering every sibling that is not Ready yet would,
    // while a domain's products are created together, reconcile each of them once per
    // sibling's status write: O(n^2) reconciles.
    affected.extend(
        all.iter()
            .filter(|p| {
                p.spec.domain == changed.spec.domain && p.metadata.uid != changed.metadata.uid
            })
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| find_condition(&s.conditions, READY))
                    .is_some_and(|ready| WAITS_ON_SIBLINGS.contains(&ready.reason.as_str()))
            })
            .map(|p| reference(p)),
    );
    affected
}

fn products_of_domain(all: &[Arc<DataProduct>], domain: &str) -> Vec<ObjectRef<DataProduct>> {
    all.iter()
        .filter(|p| p.spec.domain == domain)
        .map(|p| reference(p))
        .collect()
}

fn error_policy(object: Arc<DataProduct>, error: &Error, state: Arc<State>) -> Action {
    requeue_after_error(KIND, &*object, error, &state.ctx)
}

async fn reconcile(product: Arc<DataProduct>, state: Arc<State>) -> Result<Action, Error> {
    let _timer = state.ctx.metrics.reconcile_started(KIND, &*product);
    let backoff = backoff_key(KIND, &*product);
    let namespace = product.namespace().unwrap_or_default();
    let api = Api::<DataProduct>::namespaced(state.ctx.client.clone(), &namespace);
    state.ready().await?;
    let reconciled = finalizer(&api, FINALIZER, product, |event| async {
        match event {
            Finalizer::Apply(product) => {
                let applied = apply_product(&product, &state).await;
                if let Err(error) = &applied {
                    report_failure(&state.ctx, &api, &*product, error).await;
                }
                applied
            }
            Finalizer::Cleanup(product) => {
                // A deletion that fails (a system down) says so too, while it waits.
                let cleaned = cleanup_product(&product, &state).await;
                if let Err(error) = &cleaned {
                    report_failure(&state.ctx, &api, &*product, error).await;
                }
                cleaned
            }
        }
    })
    .await
    .map_err(from_finalizer);
    if reconciled.is_ok() {
        state.ctx.backoff.reset(&backoff);
    }
    reconciled
}

/// What a reconcile found and made, for the status.
#[derive(Default)]
struct Observed {
    /// Problems that stop the product from being Ready, most serious first once sorted.
    problems: Vec<Outcome>,
    /// Topics that exist and belong to the product.
    topics: BTreeSet<String>,
    /// Topics that exist but differ from the spec in a way that was refused.
    refused: BTreeSet<String>,
    /// Buckets that exist as declared.
    buckets: BTreeSet<String>,
    /// The input ports' access.
    inputs: Vec<InputPortStatus>,
}

/// Make everything the DataProduct declares exist, then report it.
async fn apply_product(product: &DataProduct, state: &State) -> Result<Action, Error> {
    let ctx = &state.ctx;
    let name = product.name_any();
    let namespace = product.namespace().unwrap_or_default();
    let spec = &product.spec;
    let resync = ctx.resync();

    // Authority comes from the namespace: a product acts only for the domain that owns it.
    let owners = state.owners();
    let domain = state.domain(&spec.domain);
    let gate = match (owners.refusal(KIND, &namespace, &spec.domain), &domain) {
        (Some(refusal), _) => Some(refusal),
        (None, None) => Some(Outcome::stalled(
            "DomainNotFound",
            format!("Domain {} does not exist; create it first.", spec.domain),
        )),
        (None, Some(domain))
            if !domain
                .status
                .as_ref()
                .is_some_and(|s| is_true(&s.conditions, READY)) =>
        {
            Some(Outcome::reconciling(
                "DomainNotReady",
                format!("Waiting for Domain {} to be Ready.", spec.domain),
            ))
        }
        (None, Some(_)) if spec.status == Lifecycle::Proposed => Some(Outcome::stalled(
            "Proposed",
            "spec.status is proposed: nothing is provisioned until it is draft or active.",
        )),
        (None, Some(domain)) => {
            let broken = governance::violations(product, ctx.settings.kafka.default_replicas);
            match broken.into_iter().next() {
                Some(violation) => Some(Outcome::stalled(violation.reason, violation.message)),
                None => {
                    let acting = state.acting_products(&owners);
                    let siblings: Vec<&DataProduct> = acting.iter().map(AsRef::as_ref).collect();
                    desired::quota_violation(product, domain, &siblings)
                        .map(|message| Outcome::stalled(QUOTA_EXCEEDED, message))
                }
            }
        }
    };
    if let Some(outcome) = gate {
        report(product, ctx, outcome, &Observed::default()).await?;
        return Ok(resync);
    }

    let all = state.acting_products(&owners);
    let everyone: Vec<&DataProduct> = all.iter().map(AsRef::as_ref).collect();
    let mut observed = Observed::default();

    // Names: only the domain's own (a topic under `<domain>.`, a bucket no longer domain's
    // name prefixes), and of those, the older product keeps a contested one.
    let mut topic_plans = Vec::new();
    for plan in desired::topic_plans(&name, spec) {
        if !desired::topic_in_domain(&plan.topic, &spec.domain) {
            observed
                .problems
                .push(outside_domain("Topic", &plan.topic, &spec.domain));
            continue;
        }
        match desired::older_claimant(product, &everyone, &plan.topic) {
            Some(owner) => observed
                .problems
                .push(claimed("Topic", &plan.topic, &owner)),
            None => topic_plans.push(plan),
        }
    }
    let mut bucket_plans = Vec::new();
    for plan in desired::bucket_plans(product) {
        if let Some(other) = owners.bucket_domain_other_than(&plan.bucket, &spec.domain) {
            observed
                .problems
                .push(another_domains("Bucket", &plan.bucket, other));
            continue;
        }
        match desired::older_claimant(product, &everyone, &plan.bucket) {
            Some(owner) => observed
                .problems
                .push(claimed("Bucket", &plan.bucket, &owner)),
            None => bucket_plans.push(plan),
        }
    }

    // Ports removed from the spec go the way a deleted product's ports go, by deletionPolicy.
    let (removed_topics, removed_buckets) = desired::removed_outputs(product, &everyone);
    if !removed_topics.is_empty() || !removed_buckets.is_empty() {
        let note = release_external(
            product,
            ctx.kafka.as_ref(),
            ctx.storage.as_ref(),
            &removed_topics,
            &removed_buckets,
            false,
        )
        .await?;
        tracing::info!(product = %name, %namespace, "output ports removed: {note}");
        ctx.publish(
            product,
            EventType::Normal,
            "PortsRemoved",
            format!("Output ports removed from the spec: {note}"),
        )
        .await;
    }

    let default_replicas = ctx.settings.kafka.default_replicas;
    apply_topics(
        product,
        ctx.kafka.as_ref(),
        default_replicas,
        &topic_plans,
        &mut observed,
    )
    .await?;
    let owner = OwnerAccess {
        storage: ctx.storage.as_ref(),
        policies: &ctx.user_policies,
        everyone: &everyone,
        namespace: &namespace,
    };
    apply_buckets(product, &owner, &bucket_plans, &mut observed).await?;
    let input_locations = resolve_inputs(product, state, &mut observed).await?;
    apply_spark(product, ctx, &input_locations, &mut observed).await?;

    let outcome = overall_outcome(product, &observed);
    report(product, ctx, outcome, &observed).await?;
    Ok(resync)
}

fn another_domains(what: &str, resource: &str, owner: &str) -> Outcome {
    Outcome::stalled(
        OWNED_BY_ANOTHER_DOMAIN,
        format!(
            "{what} {resource} belongs to domain {owner}; this product does not touch it. Rename the product or the port."
        ),
    )
}

fn outside_domain(what: &str, resource: &str, domain: &str) -> Outcome {
    Outcome::stalled(
        OWNED_BY_ANOTHER_DOMAIN,
        format!(
            "{what} {resource} is outside domain {domain}, whose topics all start with \"{domain}.\"; this product does not touch it. Name the topic {domain}.<something>."
        ),
    )
}

fn claimed(what: &str, resource: &str, owner: &str) -> Outcome {
    Outcome::stalled(
        CLAIMED,
        format!(
            "{what} {resource} is managed by {owner}, an older DataProduct; rename this port or delete the other product."
        ),
    )
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

/// Settle one batch's results: refusals become Stalled problems, `ignore`d errors pass, any
/// other failure fails the reconcile (to be retried). Returns the indices that succeeded.
fn settle(
    results: Vec<Result<(), KafkaAdminError>>,
    ignore: impl Fn(&KafkaAdminError) -> bool,
    observed: &mut Observed,
) -> Result<BTreeSet<usize>, Error> {
    let mut ok = BTreeSet::new();
    for (index, result) in results.into_iter().enumerate() {
        match result {
            Ok(()) => {
                ok.insert(index);
            }
            Err(error) if ignore(&error) => {
                ok.insert(index);
            }
            Err(error) if is_rejection(&error) => observed
                .problems
                .push(Outcome::stalled("KafkaRefused", error.to_string())),
            Err(error) => return Err(Error::Kafka(error)),
        }
    }
    Ok(ok)
}

/// Topics: one describe for all, then at most one create, one partition increase and one
/// config alteration; then the owner's ACLs (one describe, at most one create).
async fn apply_topics(
    product: &DataProduct,
    kafka: &dyn KafkaAdmin,
    default_replicas: i32,
    plans: &[TopicPlan],
    observed: &mut Observed,
) -> Result<(), Error> {
    if plans.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = plans.iter().map(|p| p.topic.clone()).collect();
    let described = batch_ok(kafka.describe_topics(&names).await?, |_| false)?;
    let mut creates: Vec<NewTopic> = Vec::new();
    let mut increases: Vec<PartitionIncrease> = Vec::new();
    let mut alterations: Vec<TopicConfigAlteration> = Vec::new();
    for (plan, current) in plans.iter().zip(&described) {
        let previously = desired::previously_set_configs(product, &plan.topic);
        match desired::decide_topic(plan, current.as_ref(), default_replicas, &previously) {
            TopicStep::Create(topic) => creates.push(topic),
            TopicStep::Update { increase, alter } => {
                observed.topics.insert(plan.topic.clone());
                increases.extend(increase);
                alterations.extend(alter);
            }
            TopicStep::Refuse { reason, message } => {
                observed.topics.insert(plan.topic.clone());
                observed.refused.insert(plan.topic.clone());
                observed.problems.push(Outcome::stalled(reason, message));
            }
        }
    }
    let product_name = product.name_any();
    if !creates.is_empty() {
        let results = kafka.create_topics(&creates).await?;
        for index in settle(results, KafkaAdminError::is_topic_already_exists, observed)? {
            observed.topics.insert(creates[index].name.clone());
        }
        tracing::info!(product = %product_name, topics = creates.len(), "created topics");
    }
    if !increases.is_empty() {
        let results = kafka.create_partitions(&increases).await?;
        settle(results, |_| false, observed)?;
        tracing::info!(product = %product_name, topics = increases.len(), "added partitions");
    }
    if !alterations.is_empty() {
        let results = kafka.alter_topic_configs(&alterations).await?;
        settle(results, |_| false, observed)?;
        tracing::info!(product = %product_name, topics = alterations.len(), "set topic configs back to the spec");
    }

    let owned: Vec<String> = observed.topics.iter().cloned().collect();
    let wanted = desired::owner_acls(&product.spec.domain, &product_name, &owned);
    if wanted.is_empty() {
        return Ok(());
    }
    let have = kafka
        .describe_acls(&AclBindingFilter::for_principal(kafka_principal(
            &product.spec.domain,
        )))
        .await?;
    let missing: Vec<_> = wanted.into_iter().filter(|b| !have.contains(b)).collect();
    if !missing.is_empty() {
        batch_ok(kafka.create_acls(&missing).await?, |_| false)?;
        tracing::info!(product = %product_name, acls = missing.len(), "created the owner's ACLs");
    }
    Ok(())
}

/// Where a product's owner access is decided: the domain's one owner policy covers the
/// buckets of all its products (see [`crate::controller::user_policies`] for why).
struct OwnerAccess<'a> {
    storage: &'a dyn ObjectStore,
    policies: &'a UserPolicies,
    everyone: &'a [&'a DataProduct],
    namespace: &'a str,
}

impl OwnerAccess<'_> {
    /// Make the domain's owner policy hold `needed` and none of `gone`.
    async fn converge(
        &self,
        domain: &str,
        needed: &BTreeSet<BucketGrant>,
        gone: &BTreeSet<String>,
    ) -> Result<(), Error> {
        let user = storage_user(domain);
        let request = PolicyRequest {
            user: &user,
            policy: OWNER_POLICY_NAME,
            needed,
            gone,
        };
        let write = self
            .policies
            .converge(self.storage, &request, || {
                desired::domain_owner_grants(domain, self.namespace, self.everyone)
            })
            .await?;
        if write != PolicyWrite::Unchanged {
            tracing::info!(%domain, ?write, "wrote the domain's owner policy");
        }
        Ok(())
    }
}

/// Buckets: exist, with versioning, expiry and tags as declared; then the owning domain's
/// owner policy covers them (and no longer a bucket the product stopped declaring).
async fn apply_buckets(
    product: &DataProduct,
    owner: &OwnerAccess<'_>,
    plans: &[BucketPlan],
    observed: &mut Observed,
) -> Result<(), Error> {
    let storage = owner.storage;
    let domain = &product.spec.domain;
    let mut kept = Vec::new();
    for plan in plans {
        let bucket = &plan.bucket;
        let tags = if storage.ensure_bucket(bucket).await? {
            tracing::info!(%bucket, "created bucket");
            BucketTags::new()
        } else {
            // An existing bucket: adopted only if no other domain's tag says it is that domain's.
            let tags = storage.get_tags(bucket).await?;
            if let Some(other) = desired::tagged_for_another_domain(&tags, domain) {
                observed
                    .problems
                    .push(another_domains("Bucket", bucket, other));
                continue;
            }
            tags
        };
        kept.push(plan);
        let versioning = storage.get_versioning(bucket).await?;
        if let Some(enabled) = desired::versioning_change(plan.versioning, versioning) {
            storage.put_versioning(bucket, enabled).await?;
        }
        if storage.get_expiration_days(bucket).await? != plan.expire_after_days {
            storage
                .put_expiration_days(bucket, plan.expire_after_days)
                .await?;
        }
        let merged = desired::merged_tags(&tags, &plan.tags);
        if merged != tags {
            storage.put_tags(bucket, &merged).await?;
        }
        observed.buckets.insert(bucket.clone());
    }
    let needed: BTreeSet<BucketGrant> = kept
        .iter()
        .map(|plan| BucketGrant::new(plan.bucket.clone(), BucketAccess::Owner))
        .collect();
    // Buckets the status shows as this product's that it no longer declares (or keeps).
    let gone: BTreeSet<String> = product
        .status
        .iter()
        .flat_map(|status| &status.output_ports)
        .filter_map(|port| port.bucket.clone())
        .filter(|bucket| !kept.iter().any(|plan| &plan.bucket == bucket))
        .collect();
    owner.converge(&product.spec.domain, &needed, &gone).await
}

/// Each input port's access, and the locations of the inputs whose producer is known (for the
/// Spark job's environment).
async fn resolve_inputs(
    product: &DataProduct,
    state: &State,
    observed: &mut Observed,
) -> Result<BTreeMap<String, String>, Error> {
    let ctx = &state.ctx;
    let mut locations = BTreeMap::new();
    if product.spec.input_ports.is_empty() {
        return Ok(locations);
    }
    let all = state.products.state();
    let mut policies: BTreeMap<String, Vec<AccessPolicy>> = BTreeMap::new();
    let now = Timestamp::now();
    for input in &product.spec.input_ports {
        let reference = &input.data_product;
        let producer_domain = state.domain(&reference.domain);
        let producer_domain = producer_domain.as_deref();
        let producer_namespace =
            producer_domain.and_then(|domain| owned_namespace(domain).map(str::to_owned));
        let producer = all
            .iter()
            .find(|p| {
                p.namespace() == producer_namespace
                    && p.name_any() == reference.name
                    && p.spec.domain == reference.domain
            })
            .map(AsRef::as_ref);
        let granting: &[AccessPolicy] = match &producer_namespace {
            Some(ns) if reference.domain != product.spec.domain => {
                if !policies.contains_key(ns) {
                    let listed = Api::<AccessPolicy>::namespaced(ctx.client.clone(), ns)
                        .list(&ListParams::default())
                        .await
                        .map_err(kube_context(format!("listing AccessPolicies in {ns}")))?;
                    policies.insert(ns.clone(), listed.items);
                }
                policies.get(ns).map(Vec::as_slice).unwrap_or_default()
            }
            _ => &[],
        };
        let status = desired::resolve_input(
            input,
            &product.spec.domain,
            &InputObservation {
                domain: producer_domain,
                product: producer,
                policies: granting,
            },
            now,
        );
        if let Some(producer) = producer
            && let Some(port) = producer
                .spec
                .output_ports
                .iter()
                .find(|p| p.name == reference.port)
            && let Some(location) =
                desired::port_location(&producer.spec, &producer.name_any(), port)
        {
            locations.insert(input.name.clone(), location);
        }
        observed.inputs.push(status);
    }
    Ok(locations)
}

fn spark_resource(kind: &str) -> ApiResource {
    let plural = if kind == SPARK_APPLICATION {
        "sparkapplications"
    } else {
        "scheduledsparkapplications"
    };
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("sparkoperator.k8s.io", "v1beta2", kind),
        plural,
    )
}

fn spark_api(ctx: &Context, namespace: &str, kind: &str) -> Api<DynamicObject> {
    Api::namespaced_with(ctx.client.clone(), namespace, &spark_resource(kind))
}

/// The transformation: ServiceAccount, RoleBinding and the spark-operator object, applied
/// server-side; the other kind (after a schedule was added or removed) is deleted.
async fn apply_spark(
    product: &DataProduct,
    ctx: &Context,
    inputs: &BTreeMap<String, String>,
    observed: &mut Observed,
) -> Result<(), Error> {
    let name = product.name_any();
    let namespace = product.namespace().unwrap_or_default();
    let endpoints = SparkEndpoints {
        s3_endpoint: &ctx.settings.s3.endpoint,
    };
    let wanted = desired::spark_object(product, inputs, &endpoints);
    for kind in [SPARK_APPLICATION, SCHEDULED_SPARK_APPLICATION] {
        if wanted.as_ref().is_none_or(|(k, _)| *k != kind) {
            delete_spark_object(ctx, &namespace, kind, &name).await?;
        }
    }
    let Some((kind, object)) = wanted else {
        return Ok(());
    };
    let sa_name = desired::spark_service_account_name(&name);
    apply(
        &Api::<ServiceAccount>::namespaced(ctx.client.clone(), &namespace),
        &desired::spark_service_account(product),
    )
    .await
    .map_err(kube_context(format!(
        "applying ServiceAccount {namespace}/{sa_name}"
    )))?;
    apply(
        &Api::<RoleBinding>::namespaced(ctx.client.clone(), &namespace),
        &desired::spark_role_binding(product, &ctx.settings.spark_driver_cluster_role),
    )
    .await
    .map_err(kube_context(format!(
        "applying RoleBinding {namespace}/{sa_name}"
    )))?;

    let api = spark_api(ctx, &namespace, kind);
    let live = api
        .get_opt(&name)
        .await
        .map_err(kube_context(format!("reading {kind} {namespace}/{name}")))?;
    let mut object = object;
    declare(&mut object);
    let unchanged = live
        .as_ref()
        .and_then(|live| serde_json::to_value(live).ok())
        .is_some_and(|live| already_applied(&object, &live));
    if unchanged {
        return Ok(());
    }
    match api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await
    {
        Ok(_) => {
            tracing::info!(product = %name, kind, "applied the Spark application");
            Ok(())
        }
        Err(error) if is_not_found(&error) => {
            observed.problems.push(Outcome::stalled(
                "SparkOperatorMissing",
                format!(
                    "The {kind} kind (sparkoperator.k8s.io/v1beta2) is not installed; install the kubeflow spark-operator to run this product's transformation."
                ),
            ));
            Ok(())
        }
        Err(error) if matches!(&error, kube::Error::Api(s) if s.code == 422) => {
            observed.problems.push(Outcome::stalled(
                "SparkApplicationInvalid",
                error.to_string(),
            ));
            Ok(())
        }
        Err(error) => Err(kube_context(format!("applying {kind} {namespace}/{name}"))(
            error,
        )),
    }
}

/// Delete a spark-operator object of this product, if it exists and is ours. A missing kind
/// (no spark-operator installed) is nothing to delete.
async fn delete_spark_object(
    ctx: &Context,
    namespace: &str,
    kind: &str,
    name: &str,
) -> Result<(), Error> {
    let api = spark_api(ctx, namespace, kind);
    let live = match api.get_opt(name).await {
        Ok(live) => live,
        Err(error) if is_not_found(&error) => None,
        Err(error) => {
            return Err(kube_context(format!("reading {kind} {namespace}/{name}"))(
                error,
            ));
        }
    };
    let ours = live.is_some_and(|o| {
        o.labels()
            .get(DATA_PRODUCT_LABEL)
            .is_some_and(|p| p == name)
    });
    if ours {
        delete_ignoring_missing(&api, name)
            .await
            .map_err(kube_context(format!("deleting {kind} {namespace}/{name}")))?;
    }
    Ok(())
}

/// The one outcome the conditions show: the first Stalled problem, else the first
/// Reconciling one, else the inputs' state, else Ready.
fn overall_outcome(product: &DataProduct, observed: &Observed) -> Outcome {
    for progress in [Progress::Stalled, Progress::Reconciling] {
        if let Some(problem) = observed.problems.iter().find(|p| p.progress == progress) {
            return problem.clone();
        }
    }
    let unavailable: Vec<String> = observed
        .inputs
        .iter()
        .filter(|i| matches!(i.access, InputAccess::NotFound | InputAccess::Denied))
        .map(|i| format!("{}: {}", i.name, i.message.clone().unwrap_or_default()))
        .collect();
    if !unavailable.is_empty() {
        return Outcome::stalled("InputUnavailable", unavailable.join(" "));
    }
    let pending: Vec<String> = observed
        .inputs
        .iter()
        .filter(|i| i.access == InputAccess::Pending)
        .map(|i| format!("{}: {}", i.name, i.message.clone().unwrap_or_default()))
        .collect();
    if !pending.is_empty() {
        return Outcome::reconciling("AccessPending", pending.join(" "));
    }
    let declared = product.spec.output_ports.len();
    Outcome::ready(
        "Provisioned",
        format!(
            "{declared} output port(s) provisioned and {} input port(s) granted.",
            observed.inputs.len()
        ),
    )
}

/// Compute the status and write it only when it changed; publish Events on transitions.
async fn report(
    product: &DataProduct,
    ctx: &Context,
    outcome: Outcome,
    observed: &Observed,
) -> Result<(), Error> {
    let name = product.name_any();
    let namespace = product.namespace().unwrap_or_default();
    let current = product.status.clone().unwrap_or_default();
    let status = desired_status(
        product,
        &current,
        &outcome,
        observed,
        &ctx.settings.kafka.bootstrap_servers,
        &ctx.settings.s3.endpoint,
    );
    if status == current {
        return Ok(());
    }
    let was_ready = is_true(&current.conditions, READY);
    let was_deprecated = is_true(&current.conditions, DEPRECATED);
    apply_status(
        &Api::<DataProduct>::namespaced(ctx.client.clone(), &namespace),
        &name,
        &status,
    )
    .await
    .map_err(kube_context(format!(
        "writing status of DataProduct {namespace}/{name}"
    )))?;
    if product.spec.status == Lifecycle::Deprecated && !was_deprecated {
        ctx.publish(
            product,
            EventType::Warning,
            "Deprecated",
            format!("Data product {namespace}/{name} is deprecated: consumers should move away; no new access is granted."),
        )
        .await;
    }
    match outcome.progress {
        Progress::Ready if !was_ready => {
            ctx.publish(product, EventType::Normal, &outcome.reason, outcome.message)
                .await;
        }
        Progress::Stalled => {
            ctx.publish(
                product,
                EventType::Warning,
                &outcome.reason,
                outcome.message,
            )
            .await;
        }
        _ => {}
    }
    Ok(())
}

/// The status a DataProduct should show. Pure: unchanged conditions keep their transition
/// time, so equal input gives an equal status and no write.
fn desired_status(
    product: &DataProduct,
    current: &DataProductStatus,
    outcome: &Outcome,
    observed: &Observed,
    bootstrap_servers: &str,
    s3_endpoint: &str,
) -> DataProductStatus {
    let name = product.name_any();
    let spec = &product.spec;
    let generation = product.metadata.generation;
    let now = Time(Timestamp::now());
    let mut status = current.clone();
    set_progress(&mut status.conditions, outcome, generation, &now);
    let deprecated = spec.status == Lifecycle::Deprecated;
    if deprecated || find_condition(&status.conditions, DEPRECATED).is_some() {
        let (reason, message) = if deprecated {
            (
                "Deprecated",
                "The product is deprecated: consumers should move to its successor; no new access is granted.",
            )
        } else {
            ("NotDeprecated", "The product is not deprecated.")
        };
        set_condition(
            &mut status.conditions,
            condition(DEPRECATED, deprecated, reason, message, generation, now),
        );
    }
    status.observed_generation = generation;
    let plans = desired::topic_plans(&name, spec);
    let mut ready = 0;
    status.output_ports = spec
        .output_ports
        .iter()
        .filter_map(|port| {
            if let Some(topic) = spec.topic_name(&name, port) {
                observed.topics.contains(&topic).then(|| {
                    if !observed.refused.contains(&topic) {
                        ready += 1;
                    }
                    OutputPortStatus {
                        name: port.name.clone(),
                        config_keys: port_config_keys(&plans, &topic),
                        topic: Some(topic),
                        bootstrap_servers: Some(bootstrap_servers.to_owned()),
                        ..OutputPortStatus::default()
                    }
                })
            } else {
                let bucket = spec.bucket_name(&name, port)?;
                observed.buckets.contains(&bucket).then(|| {
                    ready += 1;
                    OutputPortStatus {
                        name: port.name.clone(),
                        bucket: Some(bucket),
                        endpoint: Some(s3_endpoint.to_owned()),
                        ..OutputPortStatus::default()
                    }
                })
            }
        })
        .collect();
    status.ports_ready = Some(ports_ready(ready, spec.output_ports.len()));
    status.input_ports = observed.inputs.clone();
    status
}

/// The config keys the spec sets on `topic`, which the status records as set by the operator.
fn port_config_keys(plans: &[TopicPlan], topic: &str) -> Vec<String> {
    plans
        .iter()
        .filter(|plan| plan.topic == topic)
        .flat_map(|plan| plan.configs.keys().cloned())
        .collect()
}

/// The DataProduct is being deleted: remove its access and Spark objects, and keep or
/// delete its topics and buckets by `deletionPolicy`.
async fn cleanup_product(product: &DataProduct, state: &State) -> Result<Action, Error> {
    let ctx = &state.ctx;
    let name = product.name_any();
    let namespace = product.namespace().unwrap_or_default();
    let spec = &product.spec;
    let owners = state.owners();
    let note = if owners.acts_for_its_domain(product) {
        let all = state.acting_products(&owners);
        let everyone: Vec<&DataProduct> = all.iter().map(AsRef::as_ref).collect();
        // Only what this product owns: its domain's names, and of those not one an older
        // product claims.
        let topics: Vec<String> = desired::topic_plans(&name, spec)
            .into_iter()
            .map(|p| p.topic)
            .filter(|t| desired::topic_in_domain(t, &spec.domain))
            .filter(|t| desired::older_claimant(product, &everyone, t).is_none())
            .collect();
        let buckets: Vec<String> = desired::bucket_plans(product)
            .into_iter()
            .map(|p| p.bucket)
            .filter(|b| owners.bucket_domain_other_than(b, &spec.domain).is_none())
            .filter(|b| desired::older_claimant(product, &everyone, b).is_none())
            .collect();

        let note = release_external(
            product,
            ctx.kafka.as_ref(),
            ctx.storage.as_ref(),
            &topics,
            &buckets,
            true,
        )
        .await?;
        let owner = OwnerAccess {
            storage: ctx.storage.as_ref(),
            policies: &ctx.user_policies,
            everyone: &everyone,
            namespace: &namespace,
        };
        revoke_owner_access(&owner, &spec.domain, &buckets).await?;
        note
    } else {
        // It never acted for any domain, so it holds nothing outside its namespace.
        format!(
            "Nothing outside namespace {namespace} was changed: the product never acted for domain {}, which does not own this namespace.",
            spec.domain
        )
    };

    for kind in [SPARK_APPLICATION, SCHEDULED_SPARK_APPLICATION] {
        delete_spark_object(ctx, &namespace, kind, &name).await?;
    }
    let sa_name = desired::spark_service_account_name(&name);
    delete_ignoring_missing(
        &Api::<RoleBinding>::namespaced(ctx.client.clone(), &namespace),
        &sa_name,
    )
    .await
    .map_err(kube_context(format!(
        "deleting RoleBinding {namespace}/{sa_name}"
    )))?;
    delete_ignoring_missing(
        &Api::<ServiceAccount>::namespaced(ctx.client.clone(), &namespace),
        &sa_name,
    )
    .await
    .map_err(kube_context(format!(
        "deleting ServiceAccount {namespace}/{sa_name}"
    )))?;

    tracing::info!(product = %name, %namespace, "{note}");
    ctx.publish(product, EventType::Normal, "Deleted", note)
        .await;
    Ok(Action::await_change())
}

/// Remove a deleted product's ACLs, and keep (tagged as orphaned) or delete its
/// topics and buckets by `deletionPolicy`. Returns what was done, for the Event.
async fn release_external(
    product: &DataProduct,
    kafka: &dyn KafkaAdmin,
    storage: &dyn ObjectStore,
    topics: &[String],
    buckets: &[String],
    whole_product: bool,
) -> Result<String, Error> {
    let name = product.name_any();
    let spec = &product.spec;
    // The owner's ACLs on these topics; the cluster-wide IdempotentWrite is the domain's. When
    // only some ports go, the product's transactional-id and group prefixes stay for the rest.
    let shared = desired::shared_idempotent_write_acl(&spec.domain);
    let filters: Vec<AclBindingFilter> = desired::owner_acls(&spec.domain, &name, topics)
        .iter()
        .filter(|b| **b != shared)
        .filter(|b| whole_product || b.resource_type == AclResourceType::Topic)
        .map(AclBindingFilter::exact)
        .collect();
    if !filters.is_empty() {
        batch_ok(kafka.delete_acls(&filters).await?, |_| false)?;
    }

    let note = match spec.deletion_policy {
        DeletionPolicy::Delete => {
            if !topics.is_empty() {
                batch_ok(
                    kafka.delete_topics(topics).await?,
                    KafkaAdminError::is_unknown_topic,
                )?;
            }
            for bucket in buckets {
                // A bucket another domain's tag claims was never this product's.
                if !storage.bucket_exists(bucket).await?
                    || desired::tagged_for_another_domain(
                        &storage.get_tags(bucket).await?,
                        &spec.domain,
                    )
                    .is_some()
                {
                    continue;
                }
                let removed = storage.empty_bucket(bucket).await?;
                storage.delete_bucket(bucket).await?;
                tracing::info!(%bucket, objects = removed, "deleted bucket");
            }
            format!(
                "deletionPolicy Delete: deleted topics [{}] and buckets [{}] with their data.",
                topics.join(", "),
                bucket_list(buckets)
            )
        }
        DeletionPolicy::Retain => {
            for bucket in buckets {
                if storage.bucket_exists(bucket).await? {
                    let mut tags = storage.get_tags(bucket).await?;
                    if desired::tagged_for_another_domain(&tags, &spec.domain).is_some() {
                        continue;
                    }
                    tags.insert(desired::ORPHANED_TAG.to_owned(), "true".to_owned());
                    storage.put_tags(bucket, &tags).await?;
                }
            }
            format!(
                "deletionPolicy Retain: kept topics [{}] (no DataProduct claims them and their producer ACLs are removed) and buckets [{}] (tagged {}=true) with their data.",
                topics.join(", "),
                bucket_list(buckets),
                desired::ORPHANED_TAG
            )
        }
    };

    Ok(note)
}

/// The domain's owner policy stops covering a deleted product's buckets. A domain whose IAM
/// user is already gone has no policy left to change.
async fn revoke_owner_access(
    owner: &OwnerAccess<'_>,
    domain: &str,
    buckets: &[String],
) -> Result<(), Error> {
    let gone: BTreeSet<String> = buckets.iter().cloned().collect();
    match owner.converge(domain, &BTreeSet::new(), &gone).await {
        Err(Error::Storage(error)) if error.is_no_such_entity() => Ok(()),
        other => other,
    }
}

fn bucket_list(buckets: &[String]) -> String {
    buckets.join(", ")
}

#[cfg(test)]
mod tests;
