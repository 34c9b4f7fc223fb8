//! Carry out a Domain's [`Plan`] (or [`CleanupPlan`]'s removal): every step runs and every
//! failure is kept in [`Applied`], except the steps that depend on a failed one. The order is
//! the plan's: the namespace, then the status record (before anything it names is acted on),
//! then the namespace's objects and the identities.

use k8s_openapi::api::core::v1::{Namespace, ResourceQuota, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use ring::rand::{SecureRandom, SystemRandom};

use super::desired::{self, Credentials};
use super::plan::{
    AccessKeyStep, Children, CredentialsPlan, KafkaCredential, NamespaceWrite, Plan, Removal,
    StorageRemoval,
};
use crate::api::domain::Domain;
use crate::config::SecretString;
use crate::controller::applied::Applied;
use crate::controller::apply::{apply as apply_object, apply_status, delete_ignoring_missing};
use crate::controller::{Context, Error, batch_ok, kube_context};
use crate::provision::kafka::{
    AclBindingFilter, KafkaAdmin, ScramCredentialUpsert, ScramMechanism,
};
use crate::provision::storage::ObjectStore;

/// What applying a Domain's plan did.
#[derive(Debug)]
pub struct Done {
    /// Every failure, the observation's failed reads first.
    pub applied: Applied,
    /// Whether the plan's record was written: the status as stored now includes it.
    pub recorded: bool,
}

/// Run `plan` for `domain`. `failed_reads` are the observation's, reported with the rest.
pub async fn apply(domain: &Domain, plan: &Plan, failed_reads: Vec<Error>, ctx: &Context) -> Done {
    let mut applied = Applied::default();
    for error in failed_reads {
        applied.record::<()>(Err(error));
    }
    let mut done = Done {
        applied,
        recorded: false,
    };
    let Some(write) = &plan.namespace else {
        return done;
    };
    let applied = &mut done.applied;
    if applied.record(namespace(write, ctx).await).is_none() {
        return done;
    }
    if let Some(status) = &plan.record {
        let name = domain.name_any();
        let written = apply_status(&Api::<Domain>::all(ctx.client.clone()), &name, status)
            .await
            .map_err(kube_context(format!("recording status of Domain {name}")));
        if applied.record(written).is_none() {
            return done;
        }
        done.recorded = true;
    }
    let applied = &mut done.applied;
    if let Some(children) = &plan.children {
        apply_children(children, &domain.namespace_name(), ctx, applied).await;
    }
    if let Some(credentials) = &plan.credentials {
        ensure_credentials(domain, credentials, ctx, applied).await;
    }
    done
}

async fn namespace(write: &NamespaceWrite, ctx: &Context) -> Result<(), Error> {
    let namespaces = Api::<Namespace>::all(ctx.client.clone());
    match write {
        NamespaceWrite::Create(namespace) => {
            let name = namespace.name_any();
            namespaces
                .create(&PostParams::default(), namespace)
                .await
                .map_err(|error| match error {
                    // Someone made it meanwhile: it is not the domain's; the next reconcile
                    // reads it and decides again.
                    kube::Error::Api(status) if status.code == 409 => {
                        Error::Conflict(format!("creating namespace {name}"))
                    }
                    other => kube_context(format!("creating namespace {name}"))(other),
                })?;
            tracing::info!(namespace = %name, "created the domain's namespace");
        }
        NamespaceWrite::Apply(namespace) => {
            apply_object(&namespaces, namespace)
                .await
                .map_err(kube_context(format!(
                    "applying namespace {}",
                    namespace.name_any()
                )))?;
        }
    }
    Ok(())
}

/// The ServiceAccount, RoleBinding and quota, each on its own.
async fn apply_children(
    children: &Children,
    namespace: &str,
    ctx: &Context,
    applied: &mut Applied,
) {
    let client = &ctx.client;
    applied.record(
        apply_object(
            &Api::<ServiceAccount>::namespaced(client.clone(), namespace),
            &children.service_account,
        )
        .await
        .map_err(kube_context(format!(
            "applying ServiceAccount {namespace}/{}",
            desired::WORKLOAD_SERVICE_ACCOUNT
        ))),
    );
    applied.record(
        apply_object(
            &Api::<RoleBinding>::namespaced(client.clone(), namespace),
            &children.role_binding,
        )
        .await
        .map_err(kube_context(format!(
            "applying RoleBinding {namespace}/{}",
            desired::ADMIN_ROLE_BINDING
        ))),
    );
    let quotas = Api::<ResourceQuota>::namespaced(client.clone(), namespace);
    if let Some(quota) = &children.quota {
        applied.record(
            apply_object(&quotas, quota)
                .await
                .map_err(kube_context(format!(
                    "applying ResourceQuota {namespace}/{}",
                    desired::RESOURCE_QUOTA
                ))),
        );
    } else if children.delete_quota {
        applied.record(
            delete_ignoring_missing(&quotas, desired::RESOURCE_QUOTA)
                .await
                .map_err(kube_context(format!(
                    "deleting ResourceQuota {namespace}/{}",
                    desired::RESOURCE_QUOTA
                ))),
        );
    }
}

/// Make the identities match the plan and the Secret hold their credentials. The Secret is
/// written only when both credentials are known to work.
async fn ensure_credentials(
    domain: &Domain,
    plan: &CredentialsPlan,
    ctx: &Context,
    applied: &mut Applied,
) {
    let name = domain.name_any();
    let failures_before = applied.errors().len();
    let kafka_password = applied.record(
        kafka_credential(
            &name,
            &plan.kafka,
            ctx.settings.kafka.sasl_mechanism,
            &*ctx.kafka,
        )
        .await,
    );
    let storage_user = desired::storage_user(&name);
    let user_ready = !plan.create_storage_user
        || applied
            .record(
                ctx.storage
                    .ensure_user(&storage_user)
                    .await
                    .map_err(Error::from),
            )
            .is_some();
    if user_ready && let Some(tags) = &plan.tag_storage_user {
        match ctx.storage.tag_user(&storage_user, tags).await {
            Ok(()) => {}
            // Attribution is worth having, not worth failing the Domain for.
            Err(error) if error.is_not_implemented() => {
                tracing::debug!(user = %storage_user, %error, "the object store has no IAM user tags");
            }
            Err(error) => {
                applied.record::<()>(Err(error.into()));
            }
        }
    }
    let access_key = match &plan.access_key {
        AccessKeyStep::Keep { id, secret } => Some((id.clone(), secret.clone())),
        AccessKeyStep::Create if user_ready && kafka_password.is_some() => {
            applied.record(create_access_key(&storage_user, &*ctx.storage).await)
        }
        AccessKeyStep::Create => None,
    };
    for stale in &plan.stale_keys {
        applied.record(
            ctx.storage
                .delete_access_key(&storage_user, stale)
                .await
                .map_err(Error::from),
        );
    }
    let (Some(kafka_password), Some((access_key_id, secret_access_key))) =
        (kafka_password, access_key)
    else {
        return;
    };
    let secret = desired::credentials_secret(
        domain,
        &Credentials {
            kafka_bootstrap_servers: &ctx.settings.kafka.domain_bootstrap_servers,
            kafka_security_protocol: ctx.settings.kafka.domain_security_protocol,
            kafka_sasl_mechanism: ctx.settings.kafka.sasl_mechanism,
            kafka_ca_certificate: ctx.domain_kafka_ca.as_deref(),
            kafka_password: kafka_password.expose(),
            s3_endpoint: &ctx.settings.s3.endpoint,
            s3_region: &ctx.settings.s3.region,
            s3_access_key_id: &access_key_id,
            s3_secret_access_key: secret_access_key.expose(),
            s3_ca_bundle: ctx.s3_ca_bundle.as_deref(),
        },
    );
    let namespace = domain.namespace_name();
    let written = applied.record(
        apply_object(
            &Api::<Secret>::namespaced(ctx.client.clone(), &namespace),
            &secret,
        )
        .await
        .map_err(kube_context(format!(
            "applying Secret {namespace}/{}",
            desired::credentials_secret_name(&name)
        ))),
    );
    if written.is_some() && plan.remember_check && applied.errors().len() == failures_before {
        ctx.checked_identities.record(&name, &access_key_id);
    }
}

/// Make Kafka's SCRAM credential of `mechanism` (the configured one) for the domain's user
/// the planned one; returns the password the Secret holds.
pub(super) async fn kafka_credential(
    name: &str,
    step: &KafkaCredential,
    mechanism: ScramMechanism,
    kafka: &dyn KafkaAdmin,
) -> Result<SecretString, Error> {
    let password = match step {
        KafkaCredential::Keep(password) => return Ok(password.clone()),
        KafkaCredential::Set(password) => password.clone(),
        KafkaCredential::Generate => random_secret()?,
    };
    let kafka_user = desired::kafka_user(name);
    let upserted = kafka
        .upsert_scram_credentials(&[
            ScramCredentialUpsert::new(&kafka_user, password.expose()).with_mechanism(mechanism)
        ])
        .await?;
    batch_ok(upserted, |_| false)?;
    tracing::info!(domain = %name, user = %kafka_user, %mechanism, "set the domain's SCRAM credential");
    Ok(password)
}

async fn create_access_key(
    user: &str,
    storage: &dyn ObjectStore,
) -> Result<(String, SecretString), Error> {
    let key = storage.create_access_key(user).await?;
    tracing::info!(user, access_key_id = %key.access_key_id, "created the domain's access key");
    Ok((key.access_key_id, key.secret_access_key))
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

/// Remove what `removal` lists for `domain`. The Secret and the namespace wait for the
/// identities: they go only once every identity step (and every read) succeeded.
pub async fn remove(
    domain: &Domain,
    removal: &Removal,
    failed_reads: Vec<Error>,
    ctx: &Context,
) -> Applied {
    let mut applied = Applied::default();
    for error in failed_reads {
        applied.record::<()>(Err(error));
    }
    let name = domain.name_any();
    // A Domain of the same name made again later must be checked from scratch.
    ctx.checked_identities.forget(&name);
    ctx.bucket_policies
        .forget_user(&desired::storage_user(&name));
    if removal.kafka {
        applied.record(remove_kafka_identity(domain, &*ctx.kafka).await);
    }
    if let Some(storage) = &removal.storage {
        remove_storage_user(storage, &*ctx.storage, &mut applied).await;
    }
    if !applied.succeeded() {
        return applied;
    }
    let namespace = domain.namespace_name();
    if removal.delete_secret {
        let secret = desired::credentials_secret_name(&name);
        applied.record(
            delete_ignoring_missing(
                &Api::<Secret>::namespaced(ctx.client.clone(), &namespace),
                &secret,
            )
            .await
            .map_err(kube_context(format!("deleting {secret}"))),
        );
    }
    if removal.delete_namespace {
        applied.record(
            delete_ignoring_missing(&Api::<Namespace>::all(ctx.client.clone()), &namespace)
                .await
                .map_err(kube_context(format!("deleting namespace {namespace}"))),
        );
    }
    applied
}

/// Remove the domain principal's ACLs and its SCRAM credentials, of either mechanism: one
/// set while another mechanism was configured is the operator's too, and would otherwise
/// outlive the Domain.
async fn remove_kafka_identity(domain: &Domain, kafka: &dyn KafkaAdmin) -> Result<(), Error> {
    let deleted = kafka
        .delete_acls(&[AclBindingFilter::for_principal(domain.kafka_principal())])
        .await?;
    batch_ok(deleted, |_| false)?;
    let kafka_user = desired::kafka_user(&domain.name_any());
    for mechanism in ScramMechanism::ALL {
        let deleted = kafka
            .delete_scram_credentials(std::slice::from_ref(&kafka_user), mechanism)
            .await?;
        batch_ok(deleted, |error| error.is_resource_not_found())?;
    }
    Ok(())
}

/// Remove the IAM user's access keys and inline policies, then the user once they are gone.
async fn remove_storage_user(
    removal: &StorageRemoval,
    storage: &dyn ObjectStore,
    applied: &mut Applied,
) {
    let user = &removal.user;
    let mut emptied = true;
    for key in &removal.access_keys {
        emptied &= applied
            .record(
                storage
                    .delete_access_key(user, key)
                    .await
                    .map_err(Error::from),
            )
            .is_some();
    }
    for policy in &removal.policies {
        emptied &= applied
            .record(
                storage
                    .delete_user_policy(user, policy)
                    .await
                    .map_err(Error::from),
            )
            .is_some();
    }
    if emptied {
        applied.record(storage.delete_user(user).await.map_err(Error::from));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::api::conditions::{READY, find_condition};
    use crate::api::domain::{DomainSpec, DomainStatus};
    use crate::controller::failure::failed_status;
    use crate::provision::kafka::{AdminOperation, FakeKafka, KafkaAdminError};
    use crate::provision::storage::{ErrorCode, FakeObjectStore, IdentityStore, Operation};

    const SHA512: ScramMechanism = ScramMechanism::Sha512;

    fn recorded_domain() -> Domain {
        let mut d = Domain::new(
            "payments",
            serde_yaml::from_str::<DomainSpec>("{}").unwrap(),
        );
        d.metadata.generation = Some(2);
        d.status = Some(DomainStatus {
            namespace: Some("payments".into()),
            kafka_principal: Some("User:payments".into()),
            storage_user: Some("payments".into()),
            ..DomainStatus::default()
        });
        d
    }

    #[tokio::test]
    async fn kafka_down_while_setting_the_credential_shows_as_ready_false_kafka_unavailable() {
        let kafka = FakeKafka::new();
        kafka.start_outage(KafkaAdminError::TimedOut {
            operation: AdminOperation::UpsertScramCredentials,
            timeout: Duration::from_secs(15),
        });
        let mut applied = Applied::default();
        let password = applied
            .record(kafka_credential("payments", &KafkaCredential::Generate, SHA512, &kafka).await);
        assert_eq!(password, None);
        let outcome = applied.outcome().expect("a failure to report");
        assert_eq!(outcome.reason, "KafkaUnavailable");

        let domain = recorded_domain();
        let status = failed_status(&domain, &outcome);
        let ready = find_condition(&status.conditions, READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "KafkaUnavailable")
        );
        assert_eq!(
            status.kafka_principal.as_deref(),
            Some("User:payments"),
            "the record stays"
        );
        assert!(matches!(applied.into_result(), Err(Error::Kafka(_))));

        kafka.end_outage();
        let set = kafka_credential(
            "payments",
            &KafkaCredential::Set("pw".into()),
            SHA512,
            &kafka,
        )
        .await
        .unwrap();
        assert_eq!(set.expose(), "pw");
        assert!(kafka.authenticates("payments", "pw"));
        kafka.clear_calls();
        let keep = KafkaCredential::Keep("pw".into());
        let kept = kafka_credential("payments", &keep, SHA512, &kafka)
            .await
            .unwrap();
        assert_eq!(kept.expose(), "pw");
        assert!(
            kafka.write_calls().is_empty(),
            "a known password is not set again"
        );
    }

    #[tokio::test]
    async fn the_domains_credential_is_of_the_configured_mechanism_and_removal_takes_both() {
        let kafka = FakeKafka::new();
        let set = kafka_credential(
            "payments",
            &KafkaCredential::Set("pw".into()),
            ScramMechanism::Sha256,
            &kafka,
        )
        .await
        .unwrap();
        assert_eq!(set.expose(), "pw");
        assert!(kafka.authenticates_with("payments", ScramMechanism::Sha256, "pw"));
        assert!(!kafka.authenticates_with("payments", SHA512, "pw"));
        // One left from when SCRAM-SHA-512 was configured.
        kafka_credential(
            "payments",
            &KafkaCredential::Set("old".into()),
            SHA512,
            &kafka,
        )
        .await
        .unwrap();
        remove_kafka_identity(&recorded_domain(), &kafka)
            .await
            .unwrap();
        assert!(kafka.scram_user_names().is_empty());
        // Nothing left to delete is not a failure.
        remove_kafka_identity(&recorded_domain(), &kafka)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn an_iam_user_goes_only_once_its_keys_and_policies_are_gone() {
        let storage = FakeObjectStore::new();
        storage.ensure_user("payments").await.unwrap();
        let key = storage.create_access_key("payments").await.unwrap();
        let removal = StorageRemoval {
            user: "payments".into(),
            access_keys: vec![key.access_key_id.clone()],
            policies: Vec::new(),
        };
        storage.fail_next(Operation::DeleteAccessKey, ErrorCode::AccessDenied);
        let mut applied = Applied::default();
        remove_storage_user(&removal, &storage, &mut applied).await;
        assert_eq!(applied.outcome().unwrap().reason, "StorageAccessDenied");
        assert!(
            storage.user_exists("payments").await.unwrap(),
            "kept for the retry"
        );

        let mut applied = Applied::default();
        remove_storage_user(&removal, &storage, &mut applied).await;
        assert!(applied.succeeded(), "{:?}", applied.errors());
        assert!(!storage.user_exists("payments").await.unwrap());
    }

    #[test]
    fn random_secrets_differ_and_are_long() {
        let (a, b) = (random_secret().unwrap(), random_secret().unwrap());
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 64);
    }
}
