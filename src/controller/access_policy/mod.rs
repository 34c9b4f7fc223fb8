//! The AccessPolicy reconciler: a producer's grant turned into Kafka ACLs, bucket policies,
//! RBAC and connection ConfigMaps, and revoked just as really.
//!
//! Each reconcile works on the whole *product* the policy names (see [`desired`]): it reads
//! every live policy of that product, the product, the domains and the consumers' products,
//! derives the union of grants, and makes each system match it. So a grant another policy
//! still gives survives the revocation of this one, and a reconcile interrupted anywhere is
//! finished by the next one.
//!
//! Reads come from watch caches, not from the API server: the caches of the policies, Domains
//! and DataProducts every controller shares ([`super::stores`]), fed by the very watches that
//! trigger reconciles, so a cache has seen an event before the reconcile it triggers reads it.
//!
//! Concurrency: policies are reconciled `CONCURRENCY` at a time, but the convergence of one
//! product is serialized in this process (a lock per product), so two policies of the same
//! product never undo each other's work from a stale read, while different products converge
//! in parallel. What products share has its own lock: a consumer's consumer-group ACL (see
//! [`sync_kafka`]), and a consumer's bucket grants policy (one lock per user, in
//! [`UserPolicies`]).
//!
//! Bucket grants: a consumer domain holds ONE inline IAM policy, [`GRANTS_POLICY_NAME`], with
//! every bucket any producer's live policies grant it, not one policy per bucket. SeaweedFS
//! rewrites and reloads its whole IAM configuration on each `PutUserPolicy` (7 ms with no
//! policies, 1.5 s with 600), so N per-bucket policies cost N writes of O(N) each. A product's
//! reconcile says only what it needs in each consumer's policy and which of its buckets must
//! leave it; the remembered copy usually shows that nothing is to be sent (see
//! [`BucketSync`]).
//!
//! Expiry: a policy with `expiresAt` ahead is requeued at that time, not at the resync.

pub mod desired;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Deref;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Predicate, predicates};
use kube::{Api, ResourceExt};
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio_util::sync::CancellationToken;

use self::desired::{
    Authority, DomainInfo, Endpoints, PortGrant, PortTarget, Product, SOURCE_DOMAIN_LABEL,
    SOURCE_PRODUCT_LABEL, acl_changes, consumer_bucket_grants, consumers_role,
    consumers_role_binding, consumers_role_name, evaluate, group_binding, user_bucket_grants,
};
use super::apply::{
    Applied, DATA_PRODUCT_LABEL, MANAGED_BY, MANAGED_BY_LABEL, apply, apply_status,
    apply_unless_foreign, delete_ignoring_missing,
};
use super::failure::report_failure;
use super::shared_watch::changed;
use super::stores::{Meta, Stores, Watches};
use super::user_policies::{PolicyRequest, PolicyWrite, UserPolicies};
use super::{
    Context, Error, backoff_key, batch_ok, domain_trigger, from_finalizer, kube_context,
    requeue_after_error,
};
use crate::api::access_policy::{AccessPolicy, AccessPolicyStatus};
use crate::api::conditions::Progress;
use crate::api::data_product::DataProduct;
use crate::api::domain::Domain;
use crate::api::naming::kafka_principal;
use crate::controller::domain::desired::storage_user;
use crate::controller::tenancy::{Owners, owned_namespace};
use crate::provision::kafka::{AclBindingFilter, AclPatternType, AclResourceType, KafkaAdmin};
use crate::provision::storage::ObjectStore;
use crate::provision::storage::policy::{BucketGrant, GRANTS_POLICY_NAME};

/// The finalizer that lets the operator revoke a policy's grants before it goes.
pub const FINALIZER: &str = "datamesh.dev/access-policy";
const KIND: &str = "AccessPolicy";
/// Margin after `expiresAt` before the expiry reconcile, so a timer that fires a little
/// early does not find the policy still valid.
const EXPIRY_MARGIN: Duration = Duration::from_millis(250);

/// How many AccessPolicies are reconciled at once (those of one product still converge one
/// at a time, see [`ProductLocks`]).
const CONCURRENCY: u16 = 32;

/// Serializes the consumer-group ACL section of [`sync_kafka`] across products (see there).
static GROUP_ACLS: Mutex<()> = Mutex::const_new(());

/// What each reconcile is handed: the shared context, the watches' caches of the Domains,
/// DataProducts and AccessPolicies (so a reconcile lists nothing), and the per-product locks.
/// It derefs to [`Stores`]: `state.domains`, `state.products`, `state.policies`,
/// `state.ready()` (every cache has listed once: before that a missing object might only be
/// not listed yet, and a grant computed from it would be wrongly revoked).
pub struct State {
    /// Clients, settings, events and metrics.
    pub ctx: Arc<Context>,
    /// The shared caches.
    pub stores: Arc<Stores>,
    /// One lock per product being converged.
    converging: ProductLocks,
}

impl Deref for State {
    type Target = Stores;

    fn deref(&self) -> &Stores {
        &self.stores
    }
}

/// A product, as its convergence lock knows it: (namespace, DataProduct name).
type ProductKey = (String, String);

/// A lock per product, so policies of different products converge in parallel while two
/// policies of the same product never do. An entry lives only while someone holds or waits
/// for its lock, so the map stays as small as the work under way.
#[derive(Default)]
struct ProductLocks {
    /// Only held to look up, insert or remove an entry, never across an `.await`.
    locks: std::sync::Mutex<HashMap<ProductKey, Arc<Mutex<()>>>>,
}

impl ProductLocks {
    /// Wait for the product's lock; it is released (and its entry dropped if nobody else
    /// wants it) when the returned guard goes.
    async fn lock(&self, namespace: &str, product: &str) -> ProductGuard<'_> {
        // The guard exists before the wait, so a wait given up (a cancelled reconcile) drops
        // the entry just as a release does.
        let mut held = ProductGuard {
            locks: self,
            key: (namespace.to_owned(), product.to_owned()),
            guard: None,
        };
        let lock = self.entries().entry(held.key.clone()).or_default().clone();
        held.guard = Some(lock.lock_owned().await);
        held
    }

    /// The map, even if a thread panicked holding it: every update of it is a single
    /// insert or remove, so it is never left half-changed.
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<ProductKey, Arc<Mutex<()>>>> {
        self.locks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries().len()
    }
}

/// A held product lock (see [`ProductLocks::lock`]).
struct ProductGuard<'a> {
    locks: &'a ProductLocks,
    key: ProductKey,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for ProductGuard<'_> {
    fn drop(&mut self) {
        // Release first, so the count below no longer includes this guard's handle (a wait
        // given up has already dropped its handle with its future).
        self.guard.take();
        let mut entries = self.locks.entries();
        // Handles are only taken under the map's lock: when the map holds the last one,
        // nobody holds or waits for the product's lock, and nobody can start to.
        if entries
            .get(&self.key)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            entries.remove(&self.key);
        }
    }
}

/// The AccessPolicy controller, subscribed to its watches in `watches`; it runs (until
/// `shutdown` is cancelled) once the returned future is polled, while the watches run.
pub fn run(
    ctx: Arc<Context>,
    stores: Arc<Stores>,
    watches: &mut Watches,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + use<> {
    let policies = stores.policies.clone();
    let controller = Controller::for_shared_stream(watches.policies.applied(), policies.clone())
        .with_config(controller::Config::default().concurrency(CONCURRENCY));
    let (by_product, by_domain) = (policies.clone(), policies.clone());
    let (by_role, by_binding, by_map) = (policies.clone(), policies.clone(), policies);
    // The Domain and DataProduct triggers come from the watches that fill the stores the
    // reconciles read, and each event is stored before it is passed on (see
    // `shared_watch`), so a reconcile never reads a store older than the event that caused
    // it. (With triggers from watches of their own, the trigger could win that race, and the
    // reconcile converge on the old state with nothing left to trigger it again.)
    //
    // Grants depend on a product's spec and existence, never on its status, which changes
    // several times while the product is provisioned.
    let product_events = changed(
        watches.products.touched(),
        predicates::generation.combine(predicates::finalizers),
    );
    let domain_events = changed(watches.domains.touched(), domain_trigger);
    let domains_by_map = stores.domains.clone();
    controller
        // A product appearing, changing ports or lifecycle, or a consumer adding an input
        // port changes what its policies make.
        .watches_shared_stream(product_events, move |product| {
            let namespace = product.namespace();
            let name = product.name_any();
            let read: BTreeSet<String> = product
                .spec
                .input_ports
                .iter()
                .map(|input| input.data_product.name.clone())
                .collect();
            by_product
                .state()
                .into_iter()
                .filter(|policy| {
                    (policy.namespace() == namespace && policy.spec.data_product == name)
                        || read.contains(&policy.spec.data_product)
                })
                .map(|policy| ObjectRef::from_obj(&*policy))
                .collect::<Vec<_>>()
        })
        // A consumer domain appearing (or going) resolves (or breaks) the policies naming it.
        .watches_shared_stream(domain_events, move |domain| {
            let name = domain.name_any();
            let namespace = domain.namespace_name();
            by_domain
                .state()
                .into_iter()
                .filter(|policy| {
                    policy.namespace().as_deref() == Some(namespace.as_str())
                        || policy.spec.consumers.iter().any(|consumer| {
                            consumer.domain.as_deref() == Some(name.as_str())
                                || consumer
                                    .service_account
                                    .as_ref()
                                    .is_some_and(|sa| sa.namespace == namespace)
                        })
                })
                .map(|policy| ObjectRef::from_obj(&*policy))
                .collect::<Vec<_>>()
        })
        // The consumers' Role and RoleBinding and the connection ConfigMaps: one deleted or
        // edited by hand is made again at once, not at the next resync.
        .watches_shared_stream(watches.roles.touched(), move |role| {
            policies_of_consumers_rbac(&by_role, &*role)
        })
        .watches_shared_stream(watches.role_bindings.touched(), move |binding| {
            policies_of_consumers_rbac(&by_binding, &*binding)
        })
        .watches_shared_stream(watches.config_maps.touched(), move |map| {
            policies_of_connection_map(&by_map, &domains_by_map, &map)
        })
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(
            reconcile,
            error_policy,
            Arc::new(State {
                ctx,
                stores,
                converging: ProductLocks::default(),
            }),
        )
        .for_each(|_| futures::future::ready(()))
}

/// The policies of the product whose consumers' Role or RoleBinding `child` is.
fn policies_of_consumers_rbac<K: kube::Resource>(
    policies: &Store<AccessPolicy>,
    child: &K,
) -> Vec<ObjectRef<AccessPolicy>> {
    let meta = child.meta();
    let Some(product) = meta
        .labels
        .as_ref()
        .and_then(|labels| labels.get(DATA_PRODUCT_LABEL))
        .filter(|product| meta.name.as_deref() == Some(consumers_role_name(product).as_str()))
    else {
        return vec![];
    };
    policies_naming(policies, meta.namespace.as_deref(), product)
}

/// The policies of the product whose connection details `map` (in a consumer's namespace)
/// carries: those in the producing domain's namespace that name it.
fn policies_of_connection_map(
    policies: &Store<AccessPolicy>,
    domains: &Store<Domain>,
    map: &Meta<ConfigMap>,
) -> Vec<ObjectRef<AccessPolicy>> {
    let labels = map.labels();
    let (Some(domain), Some(product)) = (
        labels.get(SOURCE_DOMAIN_LABEL),
        labels.get(SOURCE_PRODUCT_LABEL),
    ) else {
        return vec![];
    };
    let Some(domain) = domains.get(&ObjectRef::new(domain)) else {
        return vec![];
    };
    policies_naming(policies, owned_namespace(&domain), product)
}

fn policies_naming(
    policies: &Store<AccessPolicy>,
    namespace: Option<&str>,
    product: &str,
) -> Vec<ObjectRef<AccessPolicy>> {
    policies
        .state()
        .iter()
        .filter(|policy| {
            policy.namespace().as_deref() == namespace && policy.spec.data_product == product
        })
        .map(|policy| ObjectRef::from_obj(&**policy))
        .collect()
}

fn error_policy(object: Arc<AccessPolicy>, error: &Error, state: Arc<State>) -> Action {
    requeue_after_error(KIND, &*object, error, &state.ctx)
}

async fn reconcile(policy: Arc<AccessPolicy>, state: Arc<State>) -> Result<Action, Error> {
    let _timer = state.ctx.metrics.reconcile_started(KIND, &*policy);
    let backoff = backoff_key(KIND, &*policy);
    let namespace = policy.namespace().unwrap_or_default();
    let api = Api::<AccessPolicy>::namespaced(state.ctx.client.clone(), &namespace);
    // A product's grants are the union over what the stores hold: wait until they hold it all.
    state.ready().await?;
    let reconciled = finalizer(&api, FINALIZER, policy, |event| async {
        match event {
            Finalizer::Apply(policy) => {
                let applied = apply_policy(&policy, &state).await;
                if let Err(error) = &applied {
                    report_failure(&state.ctx, &api, &*policy, error).await;
                }
                applied
            }
            Finalizer::Cleanup(policy) => {
                // A deletion that fails (a system down) says so too, while it waits.
                let cleaned = cleanup_policy(&policy, &state).await;
                if let Err(error) = &cleaned {
                    report_failure(&state.ctx, &api, &*policy, error).await;
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

/// Grant what the policy declares (together with its product's other live policies), then
/// report it; come back at expiry.
async fn apply_policy(policy: &AccessPolicy, state: &State) -> Result<Action, Error> {
    let ctx = &*state.ctx;
    let now = Timestamp::now();
    let evaluation = converge_product(policy, state, false, now).await?;
    let Some(evaluation) = evaluation else {
        return Err(Error::Blocked(format!(
            "AccessPolicy {} was not evaluated",
            policy.name_any()
        )));
    };
    report(policy, ctx, &evaluation, now).await?;
    let requeue = match desired::until_expiry(policy, now) {
        Some(left) => (left + EXPIRY_MARGIN).min(ctx.settings.resync),
        None => ctx.settings.resync,
    };
    Ok(Action::requeue(requeue))
}

/// The policy is being deleted: revoke what only it gave, then let it go.
async fn cleanup_policy(policy: &AccessPolicy, state: &State) -> Result<Action, Error> {
    let ctx = &*state.ctx;
    converge_product(policy, state, true, Timestamp::now()).await?;
    let granted = policy
        .status
        .as_ref()
        .map(|status| status.grants.as_slice())
        .unwrap_or_default();
    if !granted.is_empty() {
        let (_, revoked) = desired::grant_transitions(granted, &[]);
        let note = format!(
            "Policy deleted: revoked {} (access another policy still gives stays).",
            revoked.join(", ")
        );
        tracing::info!(policy = %policy.name_any(), namespace = ?policy.namespace(), "{note}");
        ctx.publish(policy, EventType::Normal, "Revoked", note)
            .await;
    }
    Ok(Action::await_change())
}

/// Everything a product's grants depend on, read in one go.
struct Scope {
    product: Option<Arc<DataProduct>>,
    /// Which domain owns which namespace: a policy acts only for its namespace's domain.
    owners: Owners,
    domains: Vec<DomainInfo>,
    /// The policies in the producer's namespace that name the same product.
    policies: Vec<Arc<AccessPolicy>>,
    /// The DataProducts with an input port reading a product of this name: the candidates
    /// for connection ConfigMaps (which also match the producer's domain and the port).
    consumers: Vec<DataProduct>,
}

/// Read the scope from the watch caches. Even the product itself comes from its store rather
/// than a GET: the store has seen every product event that triggered a reconcile before that
/// reconcile runs (see [`run`]), and any later change triggers the product's policies again,
/// so a GET would only narrow a window the next reconcile closes anyway.
fn read_scope(
    domains: &Store<Domain>,
    products: &Store<DataProduct>,
    policies: &Store<AccessPolicy>,
    namespace: &str,
    product: &str,
) -> Scope {
    let found = products.get(&ObjectRef::new(product).within(namespace));
    let all_domains = domains.state();
    let owners = Owners::of(all_domains.iter().map(AsRef::as_ref));
    let domains = all_domains
        .iter()
        .filter_map(|domain| DomainInfo::of(domain))
        .collect();
    let policies = policies.state_filter(|policy| {
        policy.namespace().as_deref() == Some(namespace) && policy.spec.data_product == product
    });
    // Cloning only the few readers, not every product in the cluster.
    let consumers = products
        .state_filter(|consumer| {
            consumer
                .spec
                .input_ports
                .iter()
                .any(|input| input.data_product.name == product)
        })
        .iter()
        .map(|consumer| DataProduct::clone(consumer))
        .collect();
    Scope {
        product: found,
        owners,
        domains,
        policies,
        consumers,
    }
}

/// [`converge`] under the product's lock (see the module docs).
async fn converge_product(
    policy: &AccessPolicy,
    state: &State,
    leaving: bool,
    now: Timestamp,
) -> Result<Option<desired::Evaluation>, Error> {
    let namespace = policy.namespace().unwrap_or_default();
    let _one_at_a_time = state
        .converging
        .lock(&namespace, &policy.spec.data_product)
        .await;
    // Read only once the lock is ours: a view read while waiting could be older than the one
    // the previous holder converged on, and converging on it would undo that work.
    let scope = read_scope(
        &state.domains,
        &state.products,
        &state.policies,
        &namespace,
        &policy.spec.data_product,
    );
    converge(policy, state, &scope, leaving, now).await
}

/// Make the product's grants match the union of its live policies. When `leaving`, `policy`
/// is being deleted and counts for nothing. Returns `policy`'s own evaluation (unless leaving).
async fn converge(
    policy: &AccessPolicy,
    state: &State,
    scope: &Scope,
    leaving: bool,
    now: Timestamp,
) -> Result<Option<desired::Evaluation>, Error> {
    let ctx = &*state.ctx;
    let namespace = policy.namespace().unwrap_or_default();
    let product_name = &policy.spec.data_product;
    // Authority comes from the namespace, never from a spec (see `desired::authority`).
    let (producer, product, refusal) =
        match desired::authority(&namespace, scope.product.as_deref(), &scope.owners) {
            Authority::Nobody(refusal) => {
                return Ok((!leaving).then(|| desired::Evaluation::refused(refusal)));
            }
            Authority::Producer {
                domain,
                product,
                refusal,
            } => (domain, product, refusal),
        };

    let mut grants: Vec<PortGrant> = Vec::new();
    for other in &scope.policies {
        let live = other.metadata.deletion_timestamp.is_none();
        if other.name_any() != policy.name_any() && live {
            grants.extend(evaluate(other, product.as_ref(), &scope.domains, now).grants);
        }
    }
    let own = (!leaving).then(|| match &refusal {
        Some(refusal) => desired::Evaluation::refused(refusal.clone()),
        None => evaluate(policy, product.as_ref(), &scope.domains, now),
    });
    if let Some(own) = &own {
        grants.extend(own.grants.iter().cloned());
    }

    // Ports the product has now, plus those any policy reported granting (a port removed
    // from the product, or the product gone), so their grants are revoked too.
    let statuses = scope
        .policies
        .iter()
        .filter_map(|p| p.status.as_ref())
        .chain(policy.status.as_ref());
    let mut targets = desired::targets_from_status(&producer, product_name, statuses);
    if let Some(product) = &product {
        targets.extend(product.ports.values().cloned());
    }

    let wanted = desired::desired(&grants);
    sync_kafka(ctx.kafka.as_ref(), &producer, &targets, &wanted).await?;
    // What other products' live policies give a consumer, for when its aggregated grants
    // policy must be recomputed: read from the stores then, not on every reconcile.
    let elsewhere = |consumer: &DomainInfo| {
        let others = state.policies.state_filter(|other| {
            other.namespace().as_deref() != Some(namespace.as_str())
                || other.spec.data_product != *product_name
        });
        consumer_bucket_grants(
            consumer,
            others.iter().map(AsRef::as_ref),
            |other| {
                let key = ObjectRef::new(&other.spec.data_product)
                    .within(&other.namespace().unwrap_or_default());
                state
                    .products
                    .get(&key)
                    .filter(|found| scope.owners.acts_for_its_domain(found))
                    .map(|found| Product::of(&found))
            },
            &scope.domains,
            now,
        )
    };
    let buckets = BucketSync {
        storage: ctx.storage.as_ref(),
        policies: &ctx.user_policies,
        producer: &producer,
        domains: &scope.domains,
        elsewhere: &elsewhere,
    };
    buckets.sync(&targets, &wanted).await?;
    match &product {
        Some(product) if !wanted.rbac_subjects.is_empty() => {
            let roles = Api::<Role>::namespaced(ctx.client.clone(), &namespace);
            let bindings = Api::<RoleBinding>::namespaced(ctx.client.clone(), &namespace);
            let name = consumers_role_name(&product.name);
            apply(&roles, &consumers_role(&namespace, product))
                .await
                .map_err(kube_context(format!("applying Role {namespace}/{name}")))?;
            apply(
                &bindings,
                &consumers_role_binding(&namespace, product, &wanted.rbac_subjects),
            )
            .await
            .map_err(kube_context(format!(
                "applying RoleBinding {namespace}/{name}"
            )))?;
        }
        _ => delete_rbac(ctx, &namespace, product_name).await?,
    }
    let endpoints = Endpoints {
        kafka_bootstrap_servers: ctx.settings.kafka.bootstrap_servers.clone(),
        s3_endpoint: ctx.settings.s3.endpoint.clone(),
    };
    let maps = match &product {
        Some(product) => {
            desired::connection_config_maps(product, &grants, &scope.consumers, &endpoints)
        }
        None => vec![],
    };
    sync_config_maps(ctx, &producer, product_name, &maps).await?;
    Ok(own)
}

/// Make the ACLs on the product's topics (`targets`) carry exactly the `wanted` grants;
/// `producer`'s own ACLs are never touched. Topic ACLs to match the grants; the consumer-group
/// ACL for every domain holding a Kafka grant, removed once the domain holds no topic ACL at
/// all (that part under a lock all products share: see the comment there).
pub async fn sync_kafka(
    kafka: &dyn KafkaAdmin,
    producer: &str,
    targets: &BTreeSet<PortTarget>,
    wanted: &desired::Desired,
) -> Result<(), Error> {
    let mut actual = Vec::new();
    for target in targets {
        if let PortTarget::Topic(topic) = target {
            let filter = AclBindingFilter::for_resource(
                AclResourceType::Topic,
                AclPatternType::Literal,
                topic.clone(),
            );
            actual.extend(kafka.describe_acls(&filter).await?);
        }
    }
    let changes = acl_changes(&wanted.topic_acls, &actual, &kafka_principal(producer));
    if !changes.create.is_empty() {
        batch_ok(kafka.create_acls(&changes.create).await?, |_| false)?;
        for binding in &changes.create {
            tracing::info!(%binding, "granted");
        }
    }
    if !changes.delete.is_empty() {
        let filters: Vec<AclBindingFilter> =
            changes.delete.iter().map(AclBindingFilter::exact).collect();
        batch_ok(kafka.delete_acls(&filters).await?, |_| false)?;
        for binding in &changes.delete {
            tracing::info!(%binding, "revoked");
        }
    }

    // A consumer's consumer-group ACL is shared by every product it reads: made when it holds
    // a grant on any of them, removed when it holds a topic ACL on none. Products converge in
    // parallel, so without this lock product A could find that a consumer holds no topic ACL
    // any more and remove its group ACL just after product B, granting that consumer a topic,
    // found the group ACL present and left it be: the consumer could read B's topic but not
    // join a group. Each product makes its topic ACLs (above) before taking the lock, so under
    // it whichever of the two comes second sees the other's work. It is held only for this
    // section, a few Kafka calls, so products still converge in parallel otherwise.
    let _groups = GROUP_ACLS.lock().await;
    for identity in &wanted.kafka_identities {
        let group = group_binding(identity);
        let filter = AclBindingFilter::exact(&group);
        if kafka.describe_acls(&filter).await?.is_empty() {
            batch_ok(kafka.create_acls(&[group]).await?, |_| false)?;
        }
    }
    let losing: BTreeSet<&str> = changes
        .delete
        .iter()
        .filter_map(|binding| binding.principal.strip_prefix("User:"))
        .filter(|identity| !wanted.kafka_identities.contains(*identity))
        .collect();
    for identity in losing {
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
            .any(|binding| !changes.delete.contains(binding));
        if !still_held {
            let group = AclBindingFilter::exact(&group_binding(identity));
            batch_ok(kafka.delete_acls(&[group]).await?, |_| false)?;
        }
    }
    Ok(())
}

/// Where a product's bucket grants are written: each consumer domain's one aggregated grants
/// policy ([`GRANTS_POLICY_NAME`]), which also carries every other producer's grants to it
/// (see [`crate::controller::user_policies`] for why one policy per user, not per bucket).
pub struct BucketSync<'a> {
    /// The S3 service's IAM.
    pub storage: &'a dyn ObjectStore,
    /// The remembered grants policies, shared by every reconcile.
    pub policies: &'a UserPolicies,
    /// The product's domain: its own access is its owner policy, never a grant.
    pub producer: &'a str,
    /// Every Domain: the consumers whose grants policy may hold this product's buckets.
    pub domains: &'a [DomainInfo],
    /// The bucket grants the live policies of every *other* product give a consumer domain.
    /// Called only when a consumer's policy must be recomputed.
    pub elsewhere: &'a (dyn Fn(&DomainInfo) -> BTreeSet<BucketGrant> + Sync),
}

impl BucketSync<'_> {
    /// Make every consumer's grants policy hold what `wanted` gives it on the product's buckets
    /// (`targets`) and nothing else of them. A bucket belongs to exactly one product, so the
    /// product's buckets a consumer is not granted can be taken out of its policy without
    /// looking at other products. Most calls send nothing: the remembered policy already
    /// holds the grants and lacks the rest. A consumer that fails does not stop the others;
    /// the first error is returned once all were tried.
    pub async fn sync(
        &self,
        targets: &BTreeSet<PortTarget>,
        wanted: &desired::Desired,
    ) -> Result<(), Error> {
        let buckets: BTreeSet<&String> = targets
            .iter()
            .filter_map(|target| match target {
                PortTarget::Bucket(bucket) => Some(bucket),
                PortTarget::Topic(_) => None,
            })
            .collect();
        if buckets.is_empty() {
            return Ok(());
        }
        let mut first_error = None;
        for consumer in self.domains.iter().filter(|d| d.name != self.producer) {
            if let Err(error) = self.sync_consumer(consumer, &buckets, wanted).await {
                tracing::warn!(consumer = %consumer.name, %error, "could not converge bucket grants");
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn sync_consumer(
        &self,
        consumer: &DomainInfo,
        buckets: &BTreeSet<&String>,
        wanted: &desired::Desired,
    ) -> Result<(), Error> {
        let user = storage_user(&consumer.name);
        let needed = user_bucket_grants(&wanted.bucket_access, &user);
        let gone: BTreeSet<String> = buckets
            .iter()
            .filter(|bucket| !needed.iter().any(|grant| grant.bucket == ***bucket))
            .map(|bucket| (*bucket).clone())
            .collect();
        let request = PolicyRequest {
            user: &user,
            policy: GRANTS_POLICY_NAME,
            needed: &needed,
            gone: &gone,
        };
        let result = self
            .policies
            .converge(self.storage, &request, || {
                let mut all = (self.elsewhere)(consumer);
                all.extend(needed.iter().cloned());
                all
            })
            .await;
        match result {
            Ok(PolicyWrite::Unchanged) => Ok(()),
            Ok(write) => {
                tracing::info!(%user, ?write, granted = ?needed, revoked = ?gone, "wrote the consumer's grants policy");
                Ok(())
            }
            // Only revoking, from a user that does not exist (its Domain being deleted, or not
            // provisioned yet): it holds nothing to revoke. A user missing while it needs a grant
            // is an error, so the reconcile retries until the Domain controller has made it.
            Err(error) if needed.is_empty() && error.is_no_such_entity() => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}

/// Apply the wanted connection ConfigMaps and delete the ones this product's grants made
/// that are no longer wanted.
async fn sync_config_maps(
    ctx: &Context,
    producer: &str,
    product: &str,
    maps: &[ConfigMap],
) -> Result<(), Error> {
    let mut keep = BTreeSet::new();
    for map in maps {
        let namespace = map.namespace().unwrap_or_default();
        let name = map.name_any();
        // The consumer's namespace is another domain's: a ConfigMap it made is never replaced.
        let applied = apply_unless_foreign(
            &Api::<ConfigMap>::namespaced(ctx.client.clone(), &namespace),
            map,
            true,
        )
        .await
        .map_err(kube_context(format!(
            "applying ConfigMap {namespace}/{name}"
        )))?;
        if applied == Applied::Foreign {
            tracing::warn!(%namespace, configmap = %name, "left a ConfigMap the operator did not make in place of the connection details");
        }
        keep.insert((namespace, name));
    }
    let selector = format!("{SOURCE_DOMAIN_LABEL}={producer},{SOURCE_PRODUCT_LABEL}={product}");
    let existing = Api::<ConfigMap>::all(ctx.client.clone())
        .list_metadata(&ListParams::default().labels(&selector))
        .await
        .map_err(kube_context(format!("listing ConfigMaps with {selector}")))?;
    for map in existing.items {
        let namespace = map.namespace().unwrap_or_default();
        let name = map.name_any();
        if keep.contains(&(namespace.clone(), name.clone())) {
            continue;
        }
        let api = Api::<ConfigMap>::namespaced(ctx.client.clone(), &namespace);
        delete_ignoring_missing(&api, &name)
            .await
            .map_err(kube_context(format!(
                "deleting ConfigMap {namespace}/{name}"
            )))?;
    }
    Ok(())
}

/// Remove the consumers' Role and RoleBinding of a product, if the operator made them.
async fn delete_rbac(ctx: &Context, namespace: &str, product: &str) -> Result<(), Error> {
    let name = consumers_role_name(product);
    let bindings = Api::<RoleBinding>::namespaced(ctx.client.clone(), namespace);
    if let Some(binding) = bindings.get_opt(&name).await.map_err(kube_context(format!(
        "reading RoleBinding {namespace}/{name}"
    )))? && is_managed(binding.labels())
    {
        delete_ignoring_missing(&bindings, &name)
            .await
            .map_err(kube_context(format!(
                "deleting RoleBinding {namespace}/{name}"
            )))?;
    }
    let roles = Api::<Role>::namespaced(ctx.client.clone(), namespace);
    if let Some(role) = roles
        .get_opt(&name)
        .await
        .map_err(kube_context(format!("reading Role {namespace}/{name}")))?
        && is_managed(role.labels())
    {
        delete_ignoring_missing(&roles, &name)
            .await
            .map_err(kube_context(format!("deleting Role {namespace}/{name}")))?;
    }
    Ok(())
}

fn is_managed(labels: &BTreeMap<String, String>) -> bool {
    labels
        .get(MANAGED_BY_LABEL)
        .is_some_and(|v| v == MANAGED_BY)
}

/// Write the status if it changed; publish Events for grants made and revoked, and when the
/// policy stalls.
async fn report(
    policy: &AccessPolicy,
    ctx: &Context,
    evaluation: &desired::Evaluation,
    now: Timestamp,
) -> Result<(), Error> {
    let name = policy.name_any();
    let namespace = policy.namespace().unwrap_or_default();
    let current: AccessPolicyStatus = policy.status.clone().unwrap_or_default();
    let status = desired::desired_status(policy, &current, evaluation, now);
    if status == current {
        return Ok(());
    }
    let api = Api::<AccessPolicy>::namespaced(ctx.client.clone(), &namespace);
    apply_status(&api, &name, &status)
        .await
        .map_err(kube_context(format!(
            "writing status of AccessPolicy {namespace}/{name}"
        )))?;

    let (granted, revoked) = desired::grant_transitions(&current.grants, &status.grants);
    if !granted.is_empty() {
        ctx.publish(
            policy,
            EventType::Normal,
            "Granted",
            format!("Granted {}.", granted.join(", ")),
        )
        .await;
    }
    if !revoked.is_empty() {
        ctx.publish(
            policy,
            EventType::Normal,
            "Revoked",
            format!("Revoked {}.", revoked.join(", ")),
        )
        .await;
    }
    let outcome = &evaluation.outcome;
    let was_stalled =
        crate::api::conditions::is_true(&current.conditions, crate::api::conditions::STALLED);
    if outcome.progress == Progress::Stalled && !was_stalled {
        ctx.publish(
            policy,
            EventType::Warning,
            &outcome.reason,
            outcome.message.clone(),
        )
        .await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::desired::tests::{consumer_product, domains, policy, product};
    use super::*;
    use crate::api::data_product::{Classification, Lifecycle};
    use crate::api::domain::{DomainSpec, DomainStatus};
    use crate::provision::kafka::{AclBinding, AclOperation, AuthorizationRequest, FakeKafka};
    use crate::provision::storage::FakeObjectStore;
    use kube::runtime::{reflector, watcher};

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

    fn targets() -> BTreeSet<PortTarget> {
        BTreeSet::from([
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

    async fn world() -> (FakeKafka, FakeObjectStore, UserPolicies) {
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
        (kafka, storage, remembering())
    }

    fn remembering() -> UserPolicies {
        UserPolicies::new(Duration::from_secs(300))
    }

    /// No other product grants anything.
    fn nowhere(_: &DomainInfo) -> BTreeSet<BucketGrant> {
        BTreeSet::new()
    }

    async fn sync_buckets(
        storage: &FakeObjectStore,
        remembered: &UserPolicies,
        grants: &[PortGrant],
        elsewhere: &(dyn Fn(&DomainInfo) -> BTreeSet<BucketGrant> + Sync),
    ) -> Result<(), Error> {
        let domains = domains();
        let buckets = BucketSync {
            storage,
            policies: remembered,
            producer: "payments",
            domains: &domains,
            elsewhere,
        };
        buckets.sync(&targets(), &desired::desired(grants)).await
    }

    async fn sync(
        kafka: &FakeKafka,
        storage: &FakeObjectStore,
        remembered: &UserPolicies,
        grants: &[PortGrant],
    ) {
        let wanted = desired::desired(grants);
        sync_kafka(kafka, "payments", &targets(), &wanted)
            .await
            .unwrap();
        sync_buckets(storage, remembered, grants, &nowhere)
            .await
            .unwrap();
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

        // A resync that finds everything in place writes nothing, and the remembered grants
        // policies spare even the IAM reads.
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
        assert!(
            storage
                .list_user_policies("marketing")
                .await
                .unwrap()
                .is_empty()
        );
        assert!(storage.list_user_policies("bi").await.unwrap().is_empty());
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
        sync_buckets(&storage, &remembered, &both, &nowhere)
            .await
            .unwrap();
        assert!(storage.allows("marketing", "s3:PutObject", BUCKET));
        assert!(storage.allows("bi", "s3:PutObject", BUCKET));

        // The read-write policy goes: marketing keeps reading through the other, bi loses all.
        sync_buckets(&storage, &remembered, &read, &nowhere)
            .await
            .unwrap();
        assert!(storage.allows("marketing", "s3:GetObject", BUCKET));
        assert!(!storage.allows("marketing", "s3:PutObject", BUCKET));
        assert!(!storage.allows("bi", "s3:GetObject", BUCKET));

        // The read policy goes instead: the read-write one still gives both everything.
        sync_buckets(&storage, &remembered, &both, &nowhere)
            .await
            .unwrap();
        sync_buckets(&storage, &remembered, &write, &nowhere)
            .await
            .unwrap();
        assert!(storage.allows("marketing", "s3:PutObject", BUCKET));
        assert!(storage.allows("bi", "s3:GetObject", BUCKET));
    }

    #[tokio::test]
    async fn one_policy_per_consumer_carries_every_producers_buckets() {
        let (_, storage, remembered) = world().await;
        const REPORTS: &str = "bi-reports-lake";
        // Another product's policy gives marketing read access to bi's reports bucket.
        let reports = |consumer: &DomainInfo| {
            if consumer.name == "marketing" {
                BTreeSet::from([BucketGrant::new(
                    REPORTS,
                    crate::provision::storage::policy::BucketAccess::Read,
                )])
            } else {
                BTreeSet::new()
            }
        };
        let read = grants(
            serde_json::json!({"dataProduct": "orders", "consumers": [{"domain": "marketing"}]}),
        );
        sync_buckets(&storage, &remembered, &read, &reports)
            .await
            .unwrap();
        assert!(storage.allows("marketing", "s3:GetObject", BUCKET));
        assert!(storage.allows("marketing", "s3:GetObject", REPORTS));
        assert_eq!(
            storage.list_user_policies("marketing").await.unwrap(),
            [GRANTS_POLICY_NAME]
        );
        // Converging again with nothing changed sends nothing.
        storage.clear_calls();
        sync_buckets(&storage, &remembered, &read, &reports)
            .await
            .unwrap();
        assert!(storage.calls().is_empty(), "{:?}", storage.calls());

        // This product's grant goes; the other product's stays.
        sync_buckets(&storage, &remembered, &[], &reports)
            .await
            .unwrap();
        assert!(!storage.allows("marketing", "s3:GetObject", BUCKET));
        assert!(storage.allows("marketing", "s3:GetObject", REPORTS));
    }

    #[tokio::test]
    async fn a_consumer_without_an_iam_user_does_not_stop_the_others() {
        let storage = FakeObjectStore::new();
        storage.ensure_user("bi").await.unwrap();
        let remembered = remembering();
        // marketing (converged before bi) has no IAM user: its domain is going, or not
        // provisioned yet. Revoking this product's bucket from it is nothing to do, even
        // though rewriting its policy (for another product's grant) fails.
        let elsewhere = |consumer: &DomainInfo| {
            BTreeSet::from_iter((consumer.name == "marketing").then(|| {
                BucketGrant::new(
                    "bi-reports-lake",
                    crate::provision::storage::policy::BucketAccess::Read,
                )
            }))
        };
        let for_bi =
            grants(serde_json::json!({"dataProduct": "orders", "consumers": [{"domain": "bi"}]}));
        sync_buckets(&storage, &remembered, &for_bi, &elsewhere)
            .await
            .unwrap();
        assert!(storage.allows("bi", "s3:GetObject", BUCKET));

        // Granting marketing fails (and the reconcile will retry), but bi still gets its level.
        let for_both = grants(
            serde_json::json!({"dataProduct": "orders", "access": "readWrite",
                "consumers": [{"domain": "marketing"}, {"domain": "bi"}]}),
        );
        let result = sync_buckets(&storage, &remembered, &for_both, &nowhere).await;
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
        storage
            .put_user_policy(
                "bi",
                GRANTS_POLICY_NAME,
                &crate::provision::storage::policy::consumer_policy(
                    BUCKET,
                    crate::provision::storage::policy::BucketAccess::Read,
                ),
            )
            .await
            .unwrap();
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

    /// A store that has seen a full list of `objects`.
    fn store_of<K>(objects: impl IntoIterator<Item = K>) -> Store<K>
    where
        K: kube::Resource<DynamicType = ()> + Clone + 'static,
    {
        let (store, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Init);
        for object in objects {
            writer.apply_watcher_event(&watcher::Event::InitApply(object));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        store
    }

    fn data_product(namespace: &str, name: &str) -> DataProduct {
        let spec = serde_json::from_value(serde_json::json!({
            "domain": namespace.trim_end_matches("-ns"),
            "description": {"purpose": "p", "usage": "u"},
            "owner": {"name": "bob"},
            "outputPorts": [{"name": "events", "kafka": {"partitions": 1}}],
        }))
        .unwrap();
        let mut product = DataProduct::new(name, spec);
        product.metadata.namespace = Some(namespace.into());
        product
    }

    #[test]
    fn the_scope_is_read_from_the_stores() {
        let domains = store_of(["payments", "marketing"].map(|name| {
            let spec: DomainSpec =
                serde_json::from_value(serde_json::json!({"namespace": format!("{name}-ns")}))
                    .unwrap();
            let mut domain = Domain::new(name, spec);
            domain.status = Some(DomainStatus {
                namespace: Some(format!("{name}-ns")),
                ..DomainStatus::default()
            });
            domain
        }));
        let mut reader = consumer_product("marketing-ns", "orders-in", "events");
        reader.metadata.name = Some("reader".into());
        let mut bystander = data_product("marketing-ns", "bystander");
        bystander.spec.input_ports.clear();
        let products = store_of([
            data_product("payments-ns", "orders"),
            data_product("other-ns", "orders"),
            reader,
            bystander,
        ]);
        let orders =
            serde_json::json!({"dataProduct": "orders", "consumers": [{"domain": "marketing"}]});
        let mut elsewhere = policy("elsewhere", orders.clone());
        elsewhere.metadata.namespace = Some("other-ns".into());
        let policies = store_of([
            policy("a", orders.clone()),
            policy("b", orders),
            policy(
                "c",
                serde_json::json!({"dataProduct": "refunds", "consumers": [{"domain": "marketing"}]}),
            ),
            elsewhere,
        ]);

        let scope = read_scope(&domains, &products, &policies, "payments-ns", "orders");
        let found = scope.product.as_deref().map(|p| p.namespace());
        assert_eq!(found, Some(Some("payments-ns".to_owned())));
        let mut domain_names: Vec<&str> = scope.domains.iter().map(|d| d.name.as_str()).collect();
        domain_names.sort_unstable();
        assert_eq!(domain_names, ["marketing", "payments"]);
        let mut names: Vec<String> = scope.policies.iter().map(|p| p.name_any()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["a", "b"],
            "only this namespace's policies of this product"
        );
        let consumers: Vec<String> = scope.consumers.iter().map(|p| p.name_any()).collect();
        assert_eq!(consumers, ["reader"], "only the products reading it");

        let gone = read_scope(&domains, &products, &policies, "payments-ns", "ghost");
        assert!(gone.product.is_none());
        assert!(gone.policies.is_empty());
        assert!(gone.consumers.is_empty());
    }

    #[tokio::test]
    async fn one_product_converges_at_a_time_and_others_in_parallel() {
        let locks = ProductLocks::default();
        let held = locks.lock("payments-ns", "orders").await;
        // Another product's lock is free...
        let other =
            tokio::time::timeout(Duration::from_secs(1), locks.lock("payments-ns", "refunds"))
                .await
                .expect("another product's lock is free");
        drop(other);
        // ...and so is a product of the same name in another namespace.
        let elsewhere = tokio::time::timeout(Duration::from_secs(1), locks.lock("bi-ns", "orders"))
            .await
            .expect("another namespace's product's lock is free");
        drop(elsewhere);
        // The same product's lock waits for the holder.
        let mut waiting = Box::pin(locks.lock("payments-ns", "orders"));
        assert!(
            tokio::time::timeout(Duration::from_millis(50), waiting.as_mut())
                .await
                .is_err(),
            "two policies of one product converged at once"
        );
        drop(held);
        let next = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("the lock passes on once released");
        // The released lock's entry stays while the next one holds it, and goes with it.
        assert_eq!(locks.len(), 1);
        drop(next);
        assert_eq!(locks.len(), 0, "unused locks are dropped");

        // A wait given up leaves nothing behind either.
        let held = locks.lock("payments-ns", "orders").await;
        let mut waiting = Box::pin(locks.lock("payments-ns", "orders"));
        assert!(
            tokio::time::timeout(Duration::from_millis(10), waiting.as_mut())
                .await
                .is_err()
        );
        drop(held);
        assert_eq!(locks.len(), 1, "the waiter still wants it");
        drop(waiting);
        assert_eq!(locks.len(), 0);
    }
}
