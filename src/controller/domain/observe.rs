//! Read, once and before any write, what the plan for a Domain depends on: its namespace, its
//! credentials Secret and quota, how many products it has, and whether its Kafka and IAM
//! users exist. Nothing is written here.
//!
//! A Domain refused before its namespace (a reserved name, a moved namespace) has nothing
//! read, and one whose namespace is not its own has nothing read beyond that namespace: what
//! it is refused for does not depend on whether Kafka or the object store answers.

use k8s_openapi::api::core::v1::{Namespace, ResourceQuota, Secret};
use kube::{Api, ResourceExt};

use super::desired::{self, NamespaceStep, keys};
use super::{State, count_products, list_products, plan};
use crate::api::DeletionPolicy;
use crate::api::domain::Domain;
use crate::config::secret_value;
use crate::controller::{Context, Error, kube_context};
use crate::provision::storage::{AccessKeyMetadata, UserTags};

/// What a Domain's reconcile found.
#[derive(Debug, Default)]
pub struct Observation {
    /// The namespace the Domain names (`None`: it does not exist, or was not read).
    pub namespace: Option<Namespace>,
    /// The credentials Secret.
    pub secret: Option<Secret>,
    /// The domain's ResourceQuota.
    pub quota: Option<ResourceQuota>,
    /// How many DataProducts the domain has, not counting those being deleted.
    pub products: usize,
    /// The Kafka and IAM identities.
    pub identities: Identities,
    /// Reads of Kafka or the object store that failed. The plan goes on without what they
    /// would have said, and apply reports them with its own failures.
    pub failed_reads: Vec<Error>,
}

/// What is known about the domain's Kafka and IAM identities.
#[derive(Debug, Default)]
pub enum Identities {
    /// Not read (the Domain was refused first), or a read failed.
    #[default]
    Unknown,
    /// Recorded as the operator's, and checked within the resync period with the credentials
    /// the Secret still holds: trusted, not read again (see `CheckedIdentities`).
    Trusted,
    /// As Kafka and the object store answered.
    Seen(LiveIdentities),
}

/// The domain's identities as Kafka and the object store answered.
#[derive(Debug, Default)]
pub struct LiveIdentities {
    /// The Kafka SCRAM user exists (with any mechanism).
    pub kafka_user: bool,
    /// It has a credential of the configured SCRAM mechanism, the one the Secret's password
    /// is for.
    pub kafka_credential: bool,
    /// The IAM user exists.
    pub storage_user: bool,
    /// The IAM user's access keys.
    pub access_keys: Vec<AccessKeyMetadata>,
    /// The IAM user's tags; `None` when the user does not exist or the store does not
    /// implement user tags (`NotImplemented`), so none are written.
    pub storage_user_tags: Option<UserTags>,
}

/// Read what [`plan::plan`] needs for `domain`.
pub async fn observe(domain: &Domain, state: &State) -> Result<Observation, Error> {
    let ctx = &*state.ctx;
    let mut observation = Observation::default();
    if plan::early_refusal(domain, &ctx.reserved_names).is_some() {
        return Ok(observation);
    }
    let name = domain.name_any();
    let namespace = domain.namespace_name();
    observation.namespace = Api::<Namespace>::all(ctx.client.clone())
        .get_opt(&namespace)
        .await
        .map_err(kube_context(format!("reading namespace {namespace}")))?;
    if let NamespaceStep::Refuse(_) =
        desired::namespace_step(&name, &namespace, observation.namespace.as_ref())
    {
        return Ok(observation);
    }

    let secret_name = desired::credentials_secret_name(&name);
    observation.secret = Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(&secret_name)
        .await
        .map_err(kube_context(format!(
            "reading Secret {namespace}/{secret_name}"
        )))?;
    observation.quota = Api::<ResourceQuota>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(desired::RESOURCE_QUOTA)
        .await
        .map_err(kube_context(format!(
            "reading ResourceQuota {namespace}/{}",
            desired::RESOURCE_QUOTA
        )))?;
    observation.products = count_products(state, &namespace).await?;

    // Checking both identities costs a Kafka and two IAM requests, and SeaweedFS answers IAM
    // one request at a time: with thousands of products (each one's creation reconciles its
    // Domain) those checks queued for tens of seconds. What was checked is trusted for one
    // resync period, as long as the Secret still holds what was checked. Identities not yet
    // recorded are always read: whether someone else's exist decides whether they are taken.
    if desired::identities_recorded(domain) && trusted(&name, observation.secret.as_ref(), ctx) {
        observation.identities = Identities::Trusted;
    } else {
        match read_identities(&name, ctx).await {
            Ok(live) => observation.identities = Identities::Seen(live),
            Err(error) => observation.failed_reads.push(error),
        }
    }
    Ok(observation)
}

/// Whether the Secret holds every credential and the identities were checked recently with
/// its access key.
fn trusted(name: &str, secret: Option<&Secret>, ctx: &Context) -> bool {
    let stored = |key: &str| secret.and_then(|secret| secret_value(secret, key));
    stored(keys::KAFKA_PASSWORD).is_some()
        && stored(keys::S3_SECRET_ACCESS_KEY).is_some()
        && stored(keys::S3_ACCESS_KEY_ID)
            .is_some_and(|id| ctx.checked_identities.is_fresh(name, id.expose()))
}

async fn read_identities(name: &str, ctx: &Context) -> Result<LiveIdentities, Error> {
    let kafka_user = desired::kafka_user(name);
    let described = ctx
        .kafka
        .describe_scram_users(std::slice::from_ref(&kafka_user))
        .await?;
    let user = described.iter().find(|user| user.user == kafka_user);
    let storage_user = desired::storage_user(name);
    let storage_exists = ctx.storage.user_exists(&storage_user).await?;
    let access_keys = if storage_exists {
        ctx.storage.list_access_keys(&storage_user).await?
    } else {
        Vec::new()
    };
    let storage_user_tags = if storage_exists {
        match ctx.storage.user_tags(&storage_user).await {
            Ok(tags) => Some(tags),
            Err(error) if error.is_not_implemented() => {
                tracing::debug!(user = %storage_user, %error, "the object store has no IAM user tags");
                None
            }
            Err(error) => return Err(error.into()),
        }
    } else {
        None
    };
    Ok(LiveIdentities {
        kafka_user: user.is_some(),
        kafka_credential: user.is_some_and(|user| user.has(ctx.settings.kafka.sasl_mechanism)),
        storage_user: storage_exists,
        access_keys,
        storage_user_tags,
    })
}

/// What deleting a Domain found.
#[derive(Debug, Default)]
pub struct CleanupObservation {
    /// The domain's DataProducts, by name (those being deleted included: the Domain waits for
    /// them to be gone).
    pub products: Vec<String>,
    /// The credentials Secret.
    pub secret: Option<Secret>,
    /// The namespace, read when the policy may delete it.
    pub namespace: Option<Namespace>,
    /// What the IAM user holds; `None` when not read (identities not the operator's) or the
    /// read failed (in `failed_reads`).
    pub storage: Option<StorageHoldings>,
    /// Reads of the object store that failed.
    pub failed_reads: Vec<Error>,
}

/// The IAM user's access keys and inline policies.
#[derive(Debug, Default)]
pub struct StorageHoldings {
    pub access_keys: Vec<String>,
    pub policies: Vec<String>,
}

/// Read what [`plan::cleanup_plan`] needs for `domain`, which is being deleted.
pub async fn observe_cleanup(domain: &Domain, state: &State) -> Result<CleanupObservation, Error> {
    let ctx = &*state.ctx;
    let mut observation = CleanupObservation::default();
    if !plan::owns_anything(domain, &ctx.reserved_names) {
        return Ok(observation);
    }
    let name = domain.name_any();
    let namespace = domain.namespace_name();
    observation.products = list_products(state, &namespace).await?;
    if !observation.products.is_empty() {
        return Ok(observation);
    }
    let secret_name = desired::credentials_secret_name(&name);
    observation.secret = Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(&secret_name)
        .await
        .map_err(kube_context(format!("reading {secret_name}")))?;
    if domain.spec.deletion_policy == DeletionPolicy::Delete {
        observation.namespace = Api::<Namespace>::all(ctx.client.clone())
            .get_opt(&namespace)
            .await
            .map_err(kube_context(format!("reading namespace {namespace}")))?;
    }
    if desired::identities_recorded(domain) {
        match read_storage_holdings(&desired::storage_user(&name), ctx).await {
            Ok(held) => observation.storage = Some(held),
            Err(error) => observation.failed_reads.push(error),
        }
    }
    Ok(observation)
}

async fn read_storage_holdings(user: &str, ctx: &Context) -> Result<StorageHoldings, Error> {
    let access_keys = ctx
        .storage
        .list_access_keys(user)
        .await?
        .into_iter()
        .map(|key| key.access_key_id)
        .collect();
    let policies = ctx.storage.list_user_policies(user).await?;
    Ok(StorageHoldings {
        access_keys,
        policies,
    })
}
