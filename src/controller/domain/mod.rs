//! The Domain reconciler: a namespace with RBAC and a quota, a Kafka principal with SCRAM
//! credentials, an object-store user with an access key, and a Secret holding both.
//!
//! Each reconcile reads the world, derives what should exist from the spec (see
//! [`desired`]), writes only what differs, and reports kstatus conditions. Deletion waits
//! until the domain has no DataProducts, then removes its identities.

pub mod desired;

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Predicate, predicates};

use super::shared_watch::changed;
use super::stores::{Shared, Stores, Watches};
use kube::{Api, ResourceExt};
use ring::rand::{SecureRandom, SystemRandom};
use tokio_util::sync::CancellationToken;

use self::desired::{Credentials, NamespaceStep, keys};
use super::apply::{DOMAIN_LABEL, apply, apply_status, delete_ignoring_missing};
use super::failure::report_failure;
use super::{
    Context, Error, backoff_key, batch_ok, from_finalizer, kube_context, requeue_after_error,
};
use crate::api::DeletionPolicy;
use crate::api::conditions::{Outcome, Progress, READY, is_true, set_progress};
use crate::api::data_product::DataProduct;
use crate::api::domain::{Domain, DomainStatus};
use crate::config::{SecretString, secret_value};
use crate::provision::kafka::{AclBindingFilter, ScramCredentialUpsert};

/// The finalizer that lets the operator remove a Domain's identities before it goes.
pub const FINALIZER: &str = "datamesh.dev/domain";
const KIND: &str = "Domain";

/// What each reconcile is handed: the shared context and the watches' caches (the products,
/// counted and listed from the cache rather than the API server). It derefs to [`Stores`].
pub type State = Shared;

/// The Domain controller, subscribed to its watches in `watches`; it runs (until `shutdown` is
/// cancelled) once the returned future is polled, while the watches run.
pub fn run(
    ctx: Arc<Context>,
    stores: Arc<Stores>,
    watches: &mut Watches,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + use<> {
    Controller::for_shared_stream(watches.domains.applied(), stores.domains.clone())
        // A product appearing or going changes its domain's count and may unblock deletion.
        // Its status writes change neither, and at thousands of products they would keep
        // every domain reconciling: only a new generation (creation, a spec change, the
        // deletion mark) or a change of finalizers (its removal, then the delete) triggers.
        .watches_shared_stream(
            changed(
                watches.products.touched(),
                predicates::generation.combine(predicates::finalizers),
            ),
            |product| Some(ObjectRef::<Domain>::new(&product.spec.domain)),
        )
        // A child deleted or edited by hand is made again at once, not at the next resync.
        .watches_shared_stream(watches.namespaces.touched(), |namespace| {
            domain_of_child(&*namespace, |_, _| true)
        })
        .watches_shared_stream(watches.service_accounts.touched(), |account| {
            domain_of_child(&*account, |name, _| {
                name == desired::WORKLOAD_SERVICE_ACCOUNT
            })
        })
        .watches_shared_stream(watches.role_bindings.touched(), |binding| {
            domain_of_child(&*binding, |name, _| name == desired::ADMIN_ROLE_BINDING)
        })
        .watches_shared_stream(watches.resource_quotas.touched(), |quota| {
            domain_of_child(&*quota, |name, _| name == desired::RESOURCE_QUOTA)
        })
        .watches_shared_stream(watches.secrets.touched(), |secret| {
            domain_of_child(&*secret, |name, domain| {
                name == desired::credentials_secret_name(domain)
            })
        })
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(reconcile, error_policy, Arc::new(State { ctx, stores }))
        .for_each(|_| futures::future::ready(()))
}

/// The Domain a child of the operator's belongs to (its domain label), when `is_child(name,
/// domain)` says the object is one of that Domain's own children.
fn domain_of_child<K: kube::Resource>(
    child: &K,
    is_child: impl Fn(&str, &str) -> bool,
) -> Option<ObjectRef<Domain>> {
    let meta = child.meta();
    let domain = meta.labels.as_ref()?.get(DOMAIN_LABEL)?;
    is_child(meta.name.as_deref()?, domain).then(|| ObjectRef::new(domain))
}

fn error_policy(object: Arc<Domain>, error: &Error, state: Arc<State>) -> Action {
    requeue_after_error(KIND, &*object, error, &state.ctx)
}

async fn reconcile(domain: Arc<Domain>, state: Arc<State>) -> Result<Action, Error> {
    let ctx = state.ctx.clone();
    let _timer = ctx.metrics.reconcile_started(KIND, &*domain);
    let backoff = backoff_key(KIND, &*domain);
    let api = Api::<Domain>::all(ctx.client.clone());
    let reconciled = finalizer(&api, FINALIZER, domain, |event| async {
        match event {
            Finalizer::Apply(domain) => {
                let applied = apply_domain(&domain, &state).await;
                if let Err(error) = &applied {
                    report_failure(&ctx, &api, &*domain, error).await;
                }
                applied
            }
            Finalizer::Cleanup(domain) => {
                // A deletion that fails (a system down) says so too, while it waits.
                let cleaned = cleanup_domain(&domain, &state).await;
                if let Err(error) = &cleaned {
                    report_failure(&ctx, &api, &*domain, error).await;
                }
                cleaned
            }
        }
    })
    .await
    .map_err(from_finalizer);
    if reconciled.is_ok() {
        ctx.backoff.reset(&backoff);
    }
    reconciled
}

/// Make everything the Domain declares exist, then report it.
async fn apply_domain(domain: &Domain, state: &State) -> Result<Action, Error> {
    let ctx = &*state.ctx;
    let name = domain.name_any();
    let namespace = domain.namespace_name();
    let client = &ctx.client;
    // What the operator has recorded so far (namespace, identities); grows as this runs.
    let mut recorded = domain.status.clone().unwrap_or_default();

    if let Some(outcome) = ctx.reserved_names.refusal(&name, &namespace) {
        report(domain, ctx, &recorded, outcome, None).await?;
        return Ok(ctx.resync());
    }

    // A Domain never moves: its products and grants live in the namespace it recorded. (The
    // CRD refuses the change at admission; this holds where validation was bypassed.)
    if let Some(owned) = recorded.namespace.as_deref()
        && owned != namespace
    {
        let outcome = Outcome::stalled(
            "NamespaceImmutable",
            format!(
                "Domain {name} owns namespace {owned}; spec.namespace cannot change to {namespace}. Set it back to {owned}."
            ),
        );
        report(domain, ctx, &recorded, outcome, None).await?;
        return Ok(ctx.resync());
    }

    // The namespace: created, or kept when it is the domain's; never taken over unmarked.
    let namespaces = Api::<Namespace>::all(client.clone());
    let live = namespaces
        .get_opt(&namespace)
        .await
        .map_err(kube_context(format!("reading namespace {namespace}")))?;
    match desired::namespace_step(&name, &namespace, live.as_ref()) {
        NamespaceStep::Refuse(outcome) => {
            report(domain, ctx, &recorded, outcome, None).await?;
            return Ok(ctx.resync());
        }
        NamespaceStep::Create => {
            // A create, not an apply: if someone made the namespace meanwhile, it is not ours.
            namespaces
                .create(&PostParams::default(), &desired::namespace(domain, true))
                .await
                .map_err(|error| match error {
                    kube::Error::Api(status) if status.code == 409 => {
                        Error::Conflict(format!("creating namespace {namespace}"))
                    }
                    other => kube_context(format!("creating namespace {namespace}"))(other),
                })?;
            tracing::info!(domain = %name, %namespace, "created the domain's namespace");
        }
        NamespaceStep::Keep { created } => {
            apply(&namespaces, &desired::namespace(domain, created))
                .await
                .map_err(kube_context(format!("applying namespace {namespace}")))?;
        }
    }
    // Products and policies in the namespace act for this domain from now on.
    if recorded.namespace.as_deref() != Some(namespace.as_str()) {
        recorded.namespace = Some(namespace.clone());
        record(ctx, &name, &recorded).await?;
    }

    apply(
        &Api::<ServiceAccount>::namespaced(client.clone(), &namespace),
        &desired::service_account(domain),
    )
    .await
    .map_err(kube_context(format!(
        "applying ServiceAccount {namespace}/{}",
        desired::WORKLOAD_SERVICE_ACCOUNT
    )))?;
    apply(
        &Api::<RoleBinding>::namespaced(client.clone(), &namespace),
        &desired::admin_role_binding(domain, &ctx.settings.domain_admin_cluster_role),
    )
    .await
    .map_err(kube_context(format!(
        "applying RoleBinding {namespace}/{}",
        desired::ADMIN_ROLE_BINDING
    )))?;
    let quotas = Api::<ResourceQuota>::namespaced(client.clone(), &namespace);
    match desired::resource_quota(domain) {
        Some(quota) => {
            apply(&quotas, &quota).await.map_err(kube_context(format!(
                "applying ResourceQuota {namespace}/{}",
                desired::RESOURCE_QUOTA
            )))?;
        }
        None => delete_if_ours(&quotas, desired::RESOURCE_QUOTA, &name).await?,
    }

    // The identities: recorded before they are made, so that only the operator's own are ever
    // changed or deleted; one that exists unrecorded belongs to someone else.
    let with_record = Domain {
        status: Some(recorded.clone()),
        ..domain.clone()
    };
    if !desired::identities_recorded(&with_record) {
        let kafka_user = desired::kafka_user(&name);
        let kafka_exists = ctx
            .kafka
            .describe_scram_users(std::slice::from_ref(&kafka_user))
            .await?
            .iter()
            .any(|user| user.user == kafka_user);
        let storage_exists = ctx
            .storage
            .user_exists(&desired::storage_user(&name))
            .await?;
        if let Some(outcome) = desired::unowned_identities(domain, kafka_exists, storage_exists) {
            report(domain, ctx, &recorded, outcome, None).await?;
            return Ok(ctx.resync());
        }
        recorded.kafka_principal = Some(domain.kafka_principal());
        recorded.storage_user = Some(desired::storage_user(&name));
        record(ctx, &name, &recorded).await?;
    }
    ensure_credentials(domain, ctx).await?;

    let products = count_products(state, &namespace).await?;
    // Until the quota controller has counted a new ResourceQuota, the API server refuses every
    // DataProduct in the namespace ("status unknown for quota"): not Ready before then.
    if let Some(quota) = desired::resource_quota(domain) {
        let live = quotas
            .get_opt(desired::RESOURCE_QUOTA)
            .await
            .map_err(kube_context(format!(
                "reading ResourceQuota {namespace}/{}",
                desired::RESOURCE_QUOTA
            )))?;
        if !desired::quota_counted(&quota, live.as_ref()) {
            let outcome = Outcome::reconciling(
                "QuotaPending",
                format!(
                    "Waiting for Kubernetes to count ResourceQuota {namespace}/{}.",
                    desired::RESOURCE_QUOTA
                ),
            );
            report(domain, ctx, &recorded, outcome, Some(products)).await?;
            return Ok(Action::requeue(std::time::Duration::from_secs(1)));
        }
    }
    let outcome = Outcome::ready(
        "DomainReady",
        format!(
            "Namespace {namespace}, Kafka principal User:{kafka} and storage user {storage} are ready; credentials are in Secret {namespace}/{secret}.",
            kafka = desired::kafka_user(&name),
            storage = desired::storage_user(&name),
            secret = desired::credentials_secret_name(&name),
        ),
    );
    report(domain, ctx, &recorded, outcome, Some(products)).await?;
    Ok(ctx.resync())
}

/// Write what the operator has taken for the Domain (its namespace, its identities) into its
/// status before acting on it: only the operator writes a Domain's status, so the record is
/// what later reconciles, and the other controllers, trust.
async fn record(ctx: &Context, name: &str, status: &DomainStatus) -> Result<(), Error> {
    apply_status(&Api::<Domain>::all(ctx.client.clone()), name, status)
        .await
        .map_err(kube_context(format!("recording status of Domain {name}")))
}

/// Make the domain's Kafka and object-store identities exist and the Secret hold their
/// credentials. Credentials already in the Secret are kept (never rotated by accident) as
/// long as the systems still know them; anything missing is made anew.
async fn ensure_credentials(domain: &Domain, ctx: &Context) -> Result<(), Error> {
    let name = domain.name_any();
    let namespace = domain.namespace_name();
    let secret_name = desired::credentials_secret_name(&name);
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), &namespace);
    let existing = secrets
        .get_opt(&secret_name)
        .await
        .map_err(kube_context(format!(
            "reading Secret {namespace}/{secret_name}"
        )))?;
    let stored = |key: &str| {
        existing
            .as_ref()
            .and_then(|secret| secret_value(secret, key))
    };

    // Checking both identities costs a Kafka and two IAM requests, and SeaweedFS answers IAM
    // one request at a time: with thousands of products (each one's creation reconciles its
    // Domain) those checks queued for tens of seconds. What was checked is trusted for one
    // resync period, as long as the Secret still holds what was checked.
    let checked = match (
        stored(keys::KAFKA_PASSWORD),
        stored(keys::S3_ACCESS_KEY_ID),
        stored(keys::S3_SECRET_ACCESS_KEY),
    ) {
        (Some(password), Some(id), Some(secret))
            if ctx.checked_identities.is_fresh(&name, id.expose()) =>
        {
            Some((password, id.expose().to_owned(), secret))
        }
        _ => None,
    };
    let (kafka_password, access_key_id, secret_access_key) = match checked {
        Some(checked) => checked,
        None => {
            let verified = verify_identities(&name, ctx, &stored).await?;
            ctx.checked_identities.record(&name, &verified.1);
            verified
        }
    };

    let secret = desired::credentials_secret(
        domain,
        &Credentials {
            kafka_bootstrap_servers: &ctx.settings.kafka.bootstrap_servers,
            kafka_password: kafka_password.expose(),
            s3_endpoint: &ctx.settings.s3.endpoint,
            s3_region: &ctx.settings.s3.region,
            s3_access_key_id: &access_key_id,
            s3_secret_access_key: secret_access_key.expose(),
        },
    );
    apply(&secrets, &secret)
        .await
        .map_err(kube_context(format!(
            "applying Secret {namespace}/{secret_name}"
        )))?;
    Ok(())
}

/// Make the domain's Kafka SCRAM credential and IAM access key exist and match what the
/// Secret stores (`stored`), creating what is missing. Returns the Kafka password and the
/// access key.
async fn verify_identities(
    name: &str,
    ctx: &Context,
    stored: &impl Fn(&str) -> Option<SecretString>,
) -> Result<(SecretString, String, SecretString), Error> {
    // Kafka: a SCRAM-SHA-512 credential for User:<domain> with the stored password.
    let kafka_user = desired::kafka_user(name);
    let stored_password = stored(keys::KAFKA_PASSWORD);
    let kafka_known = ctx
        .kafka
        .describe_scram_users(std::slice::from_ref(&kafka_user))
        .await?
        .iter()
        .any(|user| user.user == kafka_user && user.has_sha512());
    let kafka_password = match stored_password {
        Some(password) if kafka_known => password,
        stored_password => {
            let password = match stored_password {
                Some(password) => password,
                None => random_secret()?,
            };
            let upserted = ctx
                .kafka
                .upsert_scram_credentials(&[ScramCredentialUpsert::new(
                    &kafka_user,
                    password.expose(),
                )])
                .await?;
            batch_ok(upserted, |_| false)?;
            tracing::info!(domain = %name, user = %kafka_user, "set the domain's SCRAM credential");
            password
        }
    };

    // Object storage: an IAM user with exactly one access key, the one in the Secret.
    let storage_user = desired::storage_user(name);
    ctx.storage.ensure_user(&storage_user).await?;
    let live_keys = ctx.storage.list_access_keys(&storage_user).await?;
    let stored_key = stored(keys::S3_ACCESS_KEY_ID)
        .zip(stored(keys::S3_SECRET_ACCESS_KEY))
        .filter(|(id, _)| live_keys.iter().any(|key| key.access_key_id == id.expose()));
    let (access_key_id, secret_access_key) = match stored_key {
        Some((id, secret)) => (id.expose().to_owned(), secret),
        None => {
            let key = ctx.storage.create_access_key(&storage_user).await?;
            tracing::info!(domain = %name, user = %storage_user, access_key_id = %key.access_key_id, "created the domain's access key");
            (key.access_key_id, key.secret_access_key)
        }
    };
    // Keys a crashed earlier reconcile created but never stored are nobody's: remove them.
    for stale in live_keys
        .iter()
        .filter(|key| key.access_key_id != access_key_id)
    {
        ctx.storage
            .delete_access_key(&storage_user, &stale.access_key_id)
            .await?;
    }

    Ok((kafka_password, access_key_id, secret_access_key))
}

/// Domains whose Kafka and IAM identities were checked recently, with the access key the
/// check found (see `ensure_credentials`).
pub struct CheckedIdentities {
    trust_for: Duration,
    checked: std::sync::Mutex<HashMap<String, (String, Instant)>>,
}

impl CheckedIdentities {
    /// Trust a check for `trust_for` (the resync period).
    pub fn new(trust_for: Duration) -> Self {
        Self {
            trust_for,
            checked: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.checked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `domain`'s identities were checked within the trust period, with this key.
    fn is_fresh(&self, domain: &str, access_key_id: &str) -> bool {
        self.entries()
            .get(domain)
            .is_some_and(|(key, at)| key == access_key_id && at.elapsed() < self.trust_for)
    }

    fn record(&self, domain: &str, access_key_id: &str) {
        self.entries().insert(
            domain.to_owned(),
            (access_key_id.to_owned(), Instant::now()),
        );
    }

    fn forget(&self, domain: &str) {
        self.entries().remove(domain);
    }
}

/// The Domain is being deleted: refuse while it has products, else remove its identities. Only
/// what the operator recorded as the domain's is touched: its namespace (deleted only if the
/// operator created it), and identities it made (never a reserved or unrecorded one).
async fn cleanup_domain(domain: &Domain, state: &State) -> Result<Action, Error> {
    let ctx = &*state.ctx;
    let name = domain.name_any();
    let namespace = domain.namespace_name();
    let current = domain.status.clone().unwrap_or_default();
    let owns_namespace = current.namespace.as_deref() == Some(namespace.as_str());
    if ctx.reserved_names.refusal(&name, &namespace).is_some() || !owns_namespace {
        let note = format!(
            "Domain {name} never owned namespace {namespace} or any identity; nothing was changed."
        );
        ctx.publish(domain, EventType::Normal, "NothingToRemove", note)
            .await;
        return Ok(Action::await_change());
    }
    let remaining = list_products(state, &namespace).await?;
    if !remaining.is_empty() {
        let listed = remaining.join(", ");
        let message = format!(
            "Domain {name} still has {} DataProduct(s): {listed}. Delete them first; the Domain stays until then.",
            remaining.len()
        );
        let outcome = Outcome::stalled("DataProductsRemain", message.clone());
        report(domain, ctx, &current, outcome, Some(remaining.len())).await?;
        ctx.publish(
            domain,
            EventType::Warning,
            "DeletionBlocked",
            message.clone(),
        )
        .await;
        return Err(Error::Blocked(message));
    }

    // A Domain of the same name made again later must be checked from scratch.
    ctx.checked_identities.forget(&name);
    ctx.user_policies.forget_user(&desired::storage_user(&name));
    let kafka_user = desired::kafka_user(&name);
    let storage_user = desired::storage_user(&name);
    let identities_note = if desired::identities_recorded(domain) {
        remove_identities(domain, ctx).await?;
        format!("Removed Kafka principal User:{kafka_user} and storage user {storage_user}")
    } else {
        format!(
            "Kept Kafka user {kafka_user} and storage user {storage_user}, which the operator did not record as made for this Domain"
        )
    };

    // The credentials name identities that no longer exist.
    delete_if_ours(
        &Api::<Secret>::namespaced(ctx.client.clone(), &namespace),
        &desired::credentials_secret_name(&name),
        &name,
    )
    .await?;
    let namespace_note = match domain.spec.deletion_policy {
        DeletionPolicy::Delete => {
            let namespaces = Api::<Namespace>::all(ctx.client.clone());
            let live = namespaces
                .get_opt(&namespace)
                .await
                .map_err(kube_context(format!("reading namespace {namespace}")))?;
            let created = live.is_some_and(|ns| {
                desired::namespace_step(&name, &namespace, Some(&ns))
                    == NamespaceStep::Keep { created: true }
            });
            if created {
                delete_ignoring_missing(&namespaces, &namespace)
                    .await
                    .map_err(kube_context(format!("deleting namespace {namespace}")))?;
                format!("namespace {namespace} deleted")
            } else {
                format!(
                    "namespace {namespace} kept: the operator did not create it (deletionPolicy Delete deletes only a namespace it created)"
                )
            }
        }
        DeletionPolicy::Retain => format!("namespace {namespace} kept (deletionPolicy Retain)"),
    };
    let note = format!("{identities_note}; {namespace_note}.");
    tracing::info!(domain = %name, "{note}");
    ctx.publish(domain, EventType::Normal, "IdentitiesRemoved", note)
        .await;
    Ok(Action::await_change())
}

/// Remove the domain's ACLs, SCRAM credential, access keys, inline policies and IAM user.
async fn remove_identities(domain: &Domain, ctx: &Context) -> Result<(), Error> {
    let name = domain.name_any();
    let kafka_user = desired::kafka_user(&name);
    let deleted = ctx
        .kafka
        .delete_acls(&[AclBindingFilter::for_principal(domain.kafka_principal())])
        .await?;
    batch_ok(deleted, |_| false)?;
    let deleted = ctx
        .kafka
        .delete_scram_credentials(std::slice::from_ref(&kafka_user))
        .await?;
    batch_ok(deleted, |error| error.is_resource_not_found())?;
    let storage_user = desired::storage_user(&name);
    for key in ctx.storage.list_access_keys(&storage_user).await? {
        ctx.storage
            .delete_access_key(&storage_user, &key.access_key_id)
            .await?;
    }
    for policy in ctx.storage.list_user_policies(&storage_user).await? {
        ctx.storage
            .delete_user_policy(&storage_user, &policy)
            .await?;
    }
    ctx.storage.delete_user(&storage_user).await?;
    Ok(())
}

/// Delete an object only if it carries this domain's label, so nothing made by others goes.
async fn delete_if_ours<K>(api: &Api<K>, object: &str, domain: &str) -> Result<(), Error>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let existing = api
        .get_opt(object)
        .await
        .map_err(kube_context(format!("reading {object}")))?;
    if existing.is_some_and(|o| o.labels().get(DOMAIN_LABEL).is_some_and(|d| d == domain)) {
        delete_ignoring_missing(api, object)
            .await
            .map_err(kube_context(format!("deleting {object}")))?;
    }
    Ok(())
}

/// The products in the domain's namespace, from the cache once it has listed them all.
async fn list_products(state: &State, namespace: &str) -> Result<Vec<String>, Error> {
    state.ready().await?;
    Ok(remaining_products(&state.products.state(), namespace))
}

/// How many products the domain has (see [`counted_products`]).
async fn count_products(state: &State, namespace: &str) -> Result<usize, Error> {
    state.ready().await?;
    Ok(counted_products(&state.products.state(), namespace))
}

/// How many products are in `namespace`, not counting those being deleted: the last event of
/// a product's deletion that reaches the Domain is its finalizer's removal, when the product is
/// still cached with its deletion mark. Pure.
fn counted_products(products: &[Arc<DataProduct>], namespace: &str) -> usize {
    products_in(products, namespace)
        .filter(|product| product.metadata.deletion_timestamp.is_none())
        .count()
}

/// The names of the products in `namespace` that still hold the Domain's deletion back. A
/// product whose last finalizer is gone is not one: the API server deletes it with that very
/// write, and the Domain, triggered by that write, must not wait for the deletion's own event
/// (which changes neither generation nor finalizers, so it triggers nothing). Pure.
fn remaining_products(products: &[Arc<DataProduct>], namespace: &str) -> Vec<String> {
    products_in(products, namespace)
        .filter(|product| {
            product.metadata.deletion_timestamp.is_none() || !product.finalizers().is_empty()
        })
        .map(|product| product.name_any())
        .collect()
}

fn products_in<'a>(
    products: &'a [Arc<DataProduct>],
    namespace: &'a str,
) -> impl Iterator<Item = &'a Arc<DataProduct>> {
    products
        .iter()
        .filter(move |product| product.metadata.namespace.as_deref() == Some(namespace))
}

/// Compute the status from the outcome and what was recorded (`current`), and write it only
/// when it changed; publish an Event when the Domain becomes Ready or stalls.
async fn report(
    domain: &Domain,
    ctx: &Context,
    current: &DomainStatus,
    outcome: Outcome,
    products: Option<usize>,
) -> Result<(), Error> {
    let name = domain.name_any();
    let status = desired_status(domain, current, &outcome, products);
    if status == *current {
        return Ok(());
    }
    let was_ready = is_true(&current.conditions, READY);
    apply_status(&Api::<Domain>::all(ctx.client.clone()), &name, &status)
        .await
        .map_err(kube_context(format!("writing status of Domain {name}")))?;
    match outcome.progress {
        Progress::Ready if !was_ready => {
            ctx.publish(domain, EventType::Normal, &outcome.reason, outcome.message)
                .await;
        }
        Progress::Stalled => {
            ctx.publish(domain, EventType::Warning, &outcome.reason, outcome.message)
                .await;
        }
        _ => {}
    }
    Ok(())
}

/// The status a Domain should show. Pure: unchanged conditions keep their transition time,
/// so equal input gives an equal status and no write.
pub fn desired_status(
    domain: &Domain,
    current: &DomainStatus,
    outcome: &Outcome,
    products: Option<usize>,
) -> DomainStatus {
    let name = domain.name_any();
    let mut status = current.clone();
    let now = Time(Timestamp::now());
    set_progress(
        &mut status.conditions,
        outcome,
        domain.metadata.generation,
        &now,
    );
    status.observed_generation = domain.metadata.generation;
    if outcome.progress == Progress::Ready {
        status.namespace = Some(domain.namespace_name());
        status.kafka_principal = Some(domain.kafka_principal());
        status.storage_user = Some(desired::storage_user(&name));
        status.credentials_secret = Some(desired::credentials_secret_name(&name));
    }
    if let Some(products) = products {
        status.data_products = Some(i32::try_from(products).unwrap_or(i32::MAX));
    }
    status
}

/// A fresh credential: 32 random bytes, hex-encoded.
fn random_secret() -> Result<SecretString, Error> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Blocked("the system random number generator failed".into()))?;
    Ok(SecretString::new(
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditions::{READY, STALLED};
    use crate::api::domain::DomainSpec;

    fn product(
        namespace: &str,
        name: &str,
        deleting: bool,
        finalizers: &[&str],
    ) -> Arc<DataProduct> {
        let mut product: DataProduct = serde_json::from_value(serde_json::json!({
            "apiVersion": "datamesh.dev/v1alpha1", "kind": "DataProduct",
            "metadata": {"name": name, "namespace": namespace,
                         "finalizers": finalizers},
            "spec": {"domain": "payments", "description": {"purpose": "p", "usage": "u"},
                     "owner": {"name": "alice"}}
        }))
        .unwrap();
        if deleting {
            product.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        }
        Arc::new(product)
    }

    #[test]
    fn a_product_holds_its_domain_back_until_its_last_finalizer_goes() {
        let products = [
            product("payments", "kept", false, &[]),
            product("payments", "going", true, &["datamesh.dev/data-product"]),
            product("payments", "gone", true, &[]),
            product("marketing", "elsewhere", false, &[]),
        ];
        assert_eq!(remaining_products(&products, "payments"), ["kept", "going"]);
        assert!(remaining_products(&products, "bi").is_empty());
    }

    #[test]
    fn products_being_deleted_do_not_count() {
        let products = [
            product("payments", "kept", false, &[]),
            product("payments", "going", true, &["datamesh.dev/data-product"]),
            product("marketing", "elsewhere", false, &[]),
        ];
        assert_eq!(counted_products(&products, "payments"), 1);
        assert_eq!(counted_products(&products, "marketing"), 1);
    }
    fn domain() -> Domain {
        let mut d = Domain::new(
            "payments",
            serde_yaml::from_str::<DomainSpec>("{}").unwrap(),
        );
        d.metadata.generation = Some(3);
        d
    }

    #[test]
    fn a_checked_identity_is_trusted_for_its_key_until_forgotten_or_stale() {
        let checked = CheckedIdentities::new(Duration::from_secs(300));
        assert!(!checked.is_fresh("payments", "AK1"));
        checked.record("payments", "AK1");
        assert!(checked.is_fresh("payments", "AK1"));
        assert!(
            !checked.is_fresh("payments", "AK2"),
            "another key is checked again"
        );
        assert!(!checked.is_fresh("customers", "AK1"));
        checked.forget("payments");
        assert!(!checked.is_fresh("payments", "AK1"));
        let stale = CheckedIdentities::new(Duration::ZERO);
        stale.record("payments", "AK1");
        assert!(!stale.is_fresh("payments", "AK1"));
    }

    #[test]
    fn a_ready_domain_reports_where_its_things_are() {
        let status = desired_status(
            &domain(),
            &DomainStatus::default(),
            &Outcome::ready("DomainReady", "ok"),
            Some(2),
        );
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.namespace.as_deref(), Some("payments"));
        assert_eq!(status.kafka_principal.as_deref(), Some("User:payments"));
        assert_eq!(
            status.credentials_secret.as_deref(),
            Some("payments-credentials")
        );
        assert_eq!(status.data_products, Some(2));
        assert!(is_true(&status.conditions, READY));
    }

    #[test]
    fn the_same_outcome_twice_gives_the_same_status() {
        let first = desired_status(
            &domain(),
            &DomainStatus::default(),
            &Outcome::ready("DomainReady", "ok"),
            Some(0),
        );
        let second = desired_status(
            &domain(),
            &first,
            &Outcome::ready("DomainReady", "ok"),
            Some(0),
        );
        assert_eq!(
            first, second,
            "an unchanged domain must not cause a status write"
        );
    }

    #[test]
    fn a_blocked_deletion_is_stalled_with_the_reason() {
        let status = desired_status(
            &domain(),
            &DomainStatus::default(),
            &Outcome::stalled("DataProductsRemain", "still has orders"),
            Some(1),
        );
        assert!(is_true(&status.conditions, STALLED));
        assert!(!is_true(&status.conditions, READY));
        assert_eq!(status.kafka_principal, None);
    }

    #[test]
    fn random_secrets_differ_and_are_long() {
        let (a, b) = (random_secret().unwrap(), random_secret().unwrap());
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 64);
    }
}
