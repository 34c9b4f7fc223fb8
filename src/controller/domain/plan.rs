//! Decide, from the Domain and what [`observe`](super::observe) saw, every write a reconcile
//! makes and the status it reports. Pure: no I/O and no clock (the time comes in as `now`), so
//! the tests assert on the [`Plan`] itself, refusals included.
//!
//! The tenancy rules are decided here: a namespace is created, or kept when it is the
//! domain's, and never taken over unmarked (see [`desired::namespace_step`]); identities are
//! changed only once the Domain's status records them as the operator's, and are recorded
//! only when nobody else's of that name exists (see [`desired::unowned_identities`]).

use k8s_openapi::api::core::v1::{Namespace, ResourceQuota, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use std::time::Duration;

use super::desired::{self, NamespaceStep, keys};
use super::observe::{CleanupObservation, Identities, LiveIdentities, Observation};
use crate::api::DeletionPolicy;
use crate::api::conditions::{Outcome, Progress, set_progress};
use crate::api::domain::{Domain, DomainStatus};
use crate::config::{SecretString, secret_value};
use crate::controller::apply::DOMAIN_LABEL;
use crate::controller::tenancy::ReservedNames;
use crate::provision::storage::UserTags;

/// How long to wait for the quota controller to count a new ResourceQuota.
const QUOTA_RECHECK: Duration = Duration::from_secs(1);

/// Everything one reconcile of a Domain writes, in the order [`apply`](super::apply) runs it,
/// and what it reports when all of it succeeds.
#[derive(Debug, PartialEq)]
pub struct Plan {
    /// The namespace's write; `None` when the Domain is refused before its namespace.
    pub namespace: Option<NamespaceWrite>,
    /// What the operator takes for the Domain, written to its status once the namespace
    /// step has succeeded and BEFORE anything it names is acted on: the namespace, and the
    /// identities before they are created, so that a crash never leaves an identity the
    /// operator made but does not know it owns. Every later step waits for this write.
    pub record: Option<DomainStatus>,
    /// The objects in the namespace; `None` when the namespace is not the domain's.
    pub children: Option<Children>,
    /// The identities and the Secret with their credentials; `None` until the identities are
    /// known to be the operator's to make or change.
    pub credentials: Option<CredentialsPlan>,
    /// The outcome when every step succeeds.
    pub outcome: Outcome,
    /// The status to show when every step succeeds.
    pub status: DomainStatus,
    /// When to look again.
    pub next: Next,
}

/// The namespace write.
#[derive(Debug, PartialEq)]
pub enum NamespaceWrite {
    /// Create it (a create, not an apply: one someone made meanwhile is not the domain's).
    Create(Namespace),
    /// Keep it labelled as the domain's.
    Apply(Namespace),
}

/// The objects a Domain has in its namespace.
#[derive(Debug, PartialEq)]
pub struct Children {
    pub service_account: ServiceAccount,
    pub role_binding: RoleBinding,
    /// The quota the spec declares, if any.
    pub quota: Option<ResourceQuota>,
    /// Delete the quota: the spec declares none, and the live one is this domain's.
    pub delete_quota: bool,
}

/// The Kafka SCRAM credential step.
#[derive(Debug, PartialEq)]
pub enum KafkaCredential {
    /// Kafka knows the stored password: nothing to write.
    Keep(SecretString),
    /// Set the stored password again (Kafka lost it).
    Set(SecretString),
    /// Nothing stored: set a fresh random password.
    Generate,
}

/// The access-key step.
#[derive(Debug, PartialEq)]
pub enum AccessKeyStep {
    /// The stored key is live: keep it.
    Keep { id: String, secret: SecretString },
    /// Create a key (the stored one, if any, is not live). Made only once the Kafka step has
    /// succeeded, so that the Secret takes it at once: a key made but never stored is nobody's
    /// and is deleted by the next reconcile.
    Create,
}

/// Make the domain's identities exist with the credentials in its Secret. Credentials already
/// in the Secret are kept (never rotated by accident) as long as the systems still know them;
/// anything missing is made anew.
#[derive(Debug, PartialEq)]
pub struct CredentialsPlan {
    pub kafka: KafkaCredential,
    /// Create the IAM user, which does not exist.
    pub create_storage_user: bool,
    pub access_key: AccessKeyStep,
    /// Live access keys that are not the Secret's: a crashed earlier reconcile created them
    /// but never stored them, so they are nobody's.
    pub stale_keys: Vec<String>,
    /// Remember that the identities were checked (see `CheckedIdentities`): false when this
    /// reconcile trusted an earlier check instead of reading them.
    pub remember_check: bool,
    /// Tag the IAM user with these (its domain and manager): it is new, or lacks them.
    pub tag_storage_user: Option<UserTags>,
}

/// When to reconcile again after a success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// At the resync period (with jitter).
    Resync,
    /// Soon: something is on its way (the quota controller counting).
    After(Duration),
}

/// Why a Domain is refused before its namespace is even read: its name or namespace is
/// reserved, or it names another namespace than the one it recorded. Pure; `observe` uses it
/// too, to read nothing for such a Domain.
pub fn early_refusal(domain: &Domain, reserved: &ReservedNames) -> Option<Outcome> {
    let name = domain.name_any();
    let namespace = domain.namespace_name();
    if let Some(outcome) = reserved.refusal(&name, &namespace) {
        return Some(outcome);
    }
    // A Domain never moves: its products and grants live in the namespace it recorded. (The
    // CRD refuses the change at admission; this holds where validation was bypassed.)
    let owned = domain.status.as_ref()?.namespace.as_deref()?;
    (owned != namespace).then(|| {
        Outcome::stalled(
            "NamespaceImmutable",
            format!(
                "Domain {name} owns namespace {owned}; spec.namespace cannot change to {namespace}. Set it back to {owned}."
            ),
        )
    })
}

/// The plan for a Domain that is not being deleted.
pub fn plan(
    domain: &Domain,
    observation: &Observation,
    reserved: &ReservedNames,
    admin_cluster_role: &str,
    now: &Time,
) -> Plan {
    let name = domain.name_any();
    let namespace = domain.namespace_name();
    let current = domain.status.clone().unwrap_or_default();
    let refused = |outcome: Outcome, record: Option<DomainStatus>, children, products| Plan {
        status: desired_status(
            domain,
            record.as_ref().unwrap_or(&current),
            &outcome,
            products,
            now,
        ),
        namespace: None,
        record,
        children,
        credentials: None,
        outcome,
        next: Next::Resync,
    };

    if let Some(outcome) = early_refusal(domain, reserved) {
        return refused(outcome, None, None, None);
    }
    // The namespace: created, or kept when it is the domain's; never taken over unmarked.
    let namespace_write =
        match desired::namespace_step(&name, &namespace, observation.namespace.as_ref()) {
            NamespaceStep::Refuse(outcome) => return refused(outcome, None, None, None),
            NamespaceStep::Create => NamespaceWrite::Create(desired::namespace(domain, true)),
            NamespaceStep::Keep { created } => {
                NamespaceWrite::Apply(desired::namespace(domain, created))
            }
        };
    // Products and policies in the namespace act for this domain from now on.
    let mut recorded = current.clone();
    recorded.namespace = Some(namespace.clone());
    let children = Some(children(domain, observation, admin_cluster_role));

    // The identities: recorded before they are made, so that only the operator's own are ever
    // changed or deleted; one that exists unrecorded belongs to someone else.
    let credentials = match (
        &observation.identities,
        desired::identities_recorded(domain),
    ) {
        (Identities::Seen(live), false) => {
            if let Some(outcome) =
                desired::unowned_identities(domain, live.kafka_user, live.storage_user)
            {
                let record = (recorded != current).then_some(recorded);
                let mut plan = refused(outcome, record, children, None);
                plan.namespace = Some(namespace_write);
                return plan;
            }
            recorded.kafka_principal = Some(domain.kafka_principal());
            recorded.storage_user = Some(desired::storage_user(&name));
            Some(credentials(&name, observation, Some(live)))
        }
        (Identities::Seen(live), true) => Some(credentials(&name, observation, Some(live))),
        (Identities::Trusted, true) => Some(credentials(&name, observation, None)),
        // Not known (a read failed), or trusted although not recorded (which observe never
        // says): nothing is made or changed.
        (Identities::Unknown | Identities::Trusted, _) => None,
    };

    let products = Some(observation.products);
    let pending = desired::resource_quota(domain)
        .is_some_and(|quota| !desired::quota_counted(&quota, observation.quota.as_ref()));
    let (outcome, next) = if credentials.is_none() {
        // Only when a read failed, which apply reports instead of this.
        (
            Outcome::reconciling(
                "IdentitiesUnknown",
                format!("Waiting to learn whether Kafka user and storage user {name} exist."),
            ),
            Next::Resync,
        )
    } else if pending {
        // Until the quota controller has counted a new ResourceQuota, the API server refuses
        // every DataProduct in the namespace ("status unknown for quota"): not Ready before.
        (
            Outcome::reconciling(
                "QuotaPending",
                format!(
                    "Waiting for Kubernetes to count ResourceQuota {namespace}/{}.",
                    desired::RESOURCE_QUOTA
                ),
            ),
            Next::After(QUOTA_RECHECK),
        )
    } else {
        (
            Outcome::ready(
                "DomainReady",
                format!(
                    "Namespace {namespace}, Kafka principal User:{kafka} and storage user {storage} are ready; credentials are in Secret {namespace}/{secret}.",
                    kafka = desired::kafka_user(&name),
                    storage = desired::storage_user(&name),
                    secret = desired::credentials_secret_name(&name),
                ),
            ),
            Next::Resync,
        )
    };
    Plan {
        status: desired_status(domain, &recorded, &outcome, products, now),
        namespace: Some(namespace_write),
        record: (recorded != current).then_some(recorded),
        children,
        credentials,
        outcome,
        next,
    }
}

fn children(domain: &Domain, observation: &Observation, admin_cluster_role: &str) -> Children {
    let quota = desired::resource_quota(domain);
    let delete_quota = quota.is_none()
        && observation
            .quota
            .as_ref()
            .is_some_and(|live| is_domains(live, &domain.name_any()));
    Children {
        service_account: desired::service_account(domain),
        role_binding: desired::admin_role_binding(domain, admin_cluster_role),
        quota,
        delete_quota,
    }
}

/// Whether an object carries `domain`'s label: only such an object is ever deleted, so that
/// nothing made by others goes.
fn is_domains(object: &impl kube::Resource, domain: &str) -> bool {
    object
        .labels()
        .get(DOMAIN_LABEL)
        .is_some_and(|owner| owner == domain)
}

/// The credentials steps, from the Secret and the identities as they are (`None`: trusted
/// from a recent check, so the Secret's are kept as they are).
fn credentials(
    domain: &str,
    observation: &Observation,
    live: Option<&LiveIdentities>,
) -> CredentialsPlan {
    let stored = |key: &str| {
        observation
            .secret
            .as_ref()
            .and_then(|secret| secret_value(secret, key))
    };
    let stored_key = stored(keys::S3_ACCESS_KEY_ID).zip(stored(keys::S3_SECRET_ACCESS_KEY));
    let Some(live) = live else {
        return CredentialsPlan {
            kafka: stored(keys::KAFKA_PASSWORD)
                .map_or(KafkaCredential::Generate, KafkaCredential::Keep),
            create_storage_user: false,
            access_key: stored_key.map_or(AccessKeyStep::Create, |(id, secret)| {
                AccessKeyStep::Keep {
                    id: id.expose().to_owned(),
                    secret,
                }
            }),
            stale_keys: Vec::new(),
            remember_check: false,
            tag_storage_user: None,
        };
    };
    let kafka = match stored(keys::KAFKA_PASSWORD) {
        Some(password) if live.kafka_credential => KafkaCredential::Keep(password),
        Some(password) => KafkaCredential::Set(password),
        None => KafkaCredential::Generate,
    };
    let access_key = stored_key
        .filter(|(id, _)| {
            live.access_keys
                .iter()
                .any(|key| key.access_key_id == id.expose())
        })
        .map_or(AccessKeyStep::Create, |(id, secret)| AccessKeyStep::Keep {
            id: id.expose().to_owned(),
            secret,
        });
    let kept = match &access_key {
        AccessKeyStep::Keep { id, .. } => Some(id.as_str()),
        AccessKeyStep::Create => None,
    };
    let tags = desired::storage_user_tags(domain);
    let tag_storage_user = match &live.storage_user_tags {
        _ if !live.storage_user => Some(tags),
        Some(have) if !tags.iter().all(|(k, v)| have.get(k) == Some(v)) => Some(tags),
        _ => None,
    };
    CredentialsPlan {
        kafka,
        tag_storage_user,
        create_storage_user: !live.storage_user,
        stale_keys: live
            .access_keys
            .iter()
            .map(|key| key.access_key_id.clone())
            .filter(|id| Some(id.as_str()) != kept)
            .collect(),
        access_key,
        remember_check: true,
    }
}

/// The status a Domain should show. Pure: unchanged conditions keep their transition time,
/// so equal input gives an equal status and no write.
pub fn desired_status(
    domain: &Domain,
    current: &DomainStatus,
    outcome: &Outcome,
    products: Option<usize>,
    now: &Time,
) -> DomainStatus {
    let name = domain.name_any();
    let mut status = current.clone();
    set_progress(
        &mut status.conditions,
        outcome,
        domain.metadata.generation,
        now,
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

/// What deleting a Domain does.
#[derive(Debug, PartialEq)]
pub enum CleanupPlan {
    /// The Domain never owned its namespace (or is reserved): nothing is touched, and an
    /// Event says so.
    NothingToRemove { note: String },
    /// Products remain: the Domain stays, Stalled, until they are gone.
    Blocked {
        outcome: Outcome,
        status: DomainStatus,
    },
    /// Remove what the operator made for the Domain.
    Remove(Removal),
}

/// What the operator made for a Domain and now removes. Only what it recorded as the domain's
/// is touched: identities it made (never a reserved or unrecorded one), the Secret with its
/// label, and the namespace only if the operator created it.
#[derive(Debug, PartialEq)]
pub struct Removal {
    /// Remove the Kafka ACLs and SCRAM credential of the domain's principal.
    pub kafka: bool,
    /// Remove the IAM user with these access keys and inline policies; `None` when the
    /// identities are not the operator's, or reading them failed.
    pub storage: Option<StorageRemoval>,
    /// Delete the credentials Secret (it carries the domain's label). Waits for the identity
    /// steps: the credentials name identities that no longer exist.
    pub delete_secret: bool,
    /// Delete the namespace (the operator created it, and the policy says Delete). Waits for
    /// the identity steps, like the Secret.
    pub delete_namespace: bool,
    /// The Event's note once everything succeeded.
    pub note: String,
}

/// The IAM user to remove, with what it holds.
#[derive(Debug, PartialEq)]
pub struct StorageRemoval {
    pub user: String,
    pub access_keys: Vec<String>,
    pub policies: Vec<String>,
}

/// Whether a Domain being deleted owns anything at all: not when its name is reserved, nor
/// when it never recorded its namespace. Pure; `observe` uses it too.
pub fn owns_anything(domain: &Domain, reserved: &ReservedNames) -> bool {
    let namespace = domain.namespace_name();
    let owns_namespace = domain
        .status
        .as_ref()
        .and_then(|status| status.namespace.as_deref())
        == Some(namespace.as_str());
    reserved.refusal(&domain.name_any(), &namespace).is_none() && owns_namespace
}

/// The plan for a Domain being deleted: refuse while it has products, else remove what the
/// operator made for it.
pub fn cleanup_plan(
    domain: &Domain,
    observation: &CleanupObservation,
    reserved: &ReservedNames,
    now: &Time,
) -> CleanupPlan {
    let name = domain.name_any();
    let namespace = domain.namespace_name();
    if !owns_anything(domain, reserved) {
        return CleanupPlan::NothingToRemove {
            note: format!(
                "Domain {name} never owned namespace {namespace} or any identity; nothing was changed."
            ),
        };
    }
    let remaining = &observation.products;
    if !remaining.is_empty() {
        let outcome = Outcome::stalled(
            "DataProductsRemain",
            format!(
                "Domain {name} still has {} DataProduct(s): {}. Delete them first; the Domain stays until then.",
                remaining.len(),
                remaining.join(", ")
            ),
        );
        let current = domain.status.clone().unwrap_or_default();
        return CleanupPlan::Blocked {
            status: desired_status(domain, &current, &outcome, Some(remaining.len()), now),
            outcome,
        };
    }

    let kafka_user = desired::kafka_user(&name);
    let storage_user = desired::storage_user(&name);
    let recorded = desired::identities_recorded(domain);
    let identities_note = if recorded {
        format!("Removed Kafka principal User:{kafka_user} and storage user {storage_user}")
    } else {
        format!(
            "Kept Kafka user {kafka_user} and storage user {storage_user}, which the operator did not record as made for this Domain"
        )
    };
    let created = observation.namespace.as_ref().is_some_and(|live| {
        desired::namespace_step(&name, &namespace, Some(live))
            == NamespaceStep::Keep { created: true }
    });
    let (delete_namespace, namespace_note) = match domain.spec.deletion_policy {
        DeletionPolicy::Delete if created => (true, format!("namespace {namespace} deleted")),
        DeletionPolicy::Delete => (
            false,
            format!(
                "namespace {namespace} kept: the operator did not create it (deletionPolicy Delete deletes only a namespace it created)"
            ),
        ),
        DeletionPolicy::Retain => (
            false,
            format!("namespace {namespace} kept (deletionPolicy Retain)"),
        ),
    };
    CleanupPlan::Remove(Removal {
        kafka: recorded,
        storage: observation
            .storage
            .as_ref()
            .filter(|_| recorded)
            .map(|held| StorageRemoval {
                user: storage_user,
                access_keys: held.access_keys.clone(),
                policies: held.policies.clone(),
            }),
        delete_secret: observation
            .secret
            .as_ref()
            .is_some_and(|secret: &Secret| is_domains(secret, &name)),
        delete_namespace,
        note: format!("{identities_note}; {namespace_note}."),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::ResourceQuotaStatus;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::jiff::Timestamp;
    use kube::api::ObjectMeta;

    use super::*;
    use crate::api::conditions::{READY, STALLED, is_true};
    use crate::api::domain::DomainSpec;
    use crate::controller::apply::domain_labels;
    use crate::controller::domain::desired::tests::live_namespace;
    use crate::provision::kafka::{KafkaSecurityProtocol, ScramMechanism};
    use crate::provision::storage::AccessKeyMetadata;

    const ROLE: &str = "datamesh-domain-admin";

    fn domain(yaml: &str) -> Domain {
        let mut d = Domain::new(
            "payments",
            serde_yaml::from_str::<DomainSpec>(yaml).unwrap(),
        );
        d.metadata.generation = Some(3);
        d
    }

    /// A Domain whose status records its namespace and identities, as the operator left it.
    fn recorded(yaml: &str) -> Domain {
        let mut d = domain(yaml);
        d.status = Some(DomainStatus {
            namespace: Some(d.namespace_name()),
            kafka_principal: Some("User:payments".into()),
            storage_user: Some("payments".into()),
            ..DomainStatus::default()
        });
        d
    }

    fn now() -> Time {
        Time(Timestamp::from_second(1_000_000).unwrap())
    }

    fn reserved() -> ReservedNames {
        ReservedNames {
            namespaces: BTreeSet::from(["datamesh-system".to_owned()]),
            identities: BTreeSet::from(["admin".to_owned()]),
            names: BTreeSet::new(),
        }
    }

    /// The namespace the operator made for payments.
    fn made_namespace() -> Namespace {
        live_namespace(
            &[(DOMAIN_LABEL, "payments")],
            &[(desired::CREATED_FOR_ANNOTATION, "payments")],
        )
    }

    fn stored_secret(d: &Domain, access_key_id: &str) -> Secret {
        desired::credentials_secret(
            d,
            &desired::Credentials {
                kafka_bootstrap_servers: "127.0.0.1:9092",
                kafka_security_protocol: KafkaSecurityProtocol::SaslSsl,
                kafka_sasl_mechanism: ScramMechanism::Sha512,
                kafka_ca_certificate: None,
                kafka_password: "pw",
                s3_endpoint: "http://127.0.0.1:8333",
                s3_region: "us-east-1",
                s3_access_key_id: access_key_id,
                s3_secret_access_key: "SK",
                s3_ca_bundle: None,
            },
        )
    }

    fn seen(kafka: bool, storage: bool, keys: &[&str]) -> Identities {
        Identities::Seen(LiveIdentities {
            kafka_user: kafka,
            kafka_credential: kafka,
            storage_user: storage,
            access_keys: keys
                .iter()
                .map(|id| AccessKeyMetadata {
                    access_key_id: (*id).to_owned(),
                    active: true,
                })
                .collect(),
            // An existing user carries its tags already.
            storage_user_tags: storage.then(|| desired::storage_user_tags("payments")),
        })
    }

    fn plan_of(d: &Domain, observation: &Observation) -> Plan {
        plan(d, observation, &reserved(), ROLE, &now())
    }

    /// A plan that writes nothing at all, and reports `reason` as Stalled.
    fn assert_refused_untouched(plan: &Plan, reason: &str) {
        assert_eq!(plan.outcome.reason, reason, "{}", plan.outcome.message);
        assert_eq!(plan.outcome.progress, Progress::Stalled);
        assert_eq!(plan.namespace, None, "the namespace is not written");
        assert_eq!(plan.record, None, "nothing is recorded");
        assert_eq!(plan.children, None, "nothing is made in the namespace");
        assert_eq!(plan.credentials, None, "no identity is made or changed");
        assert!(is_true(&plan.status.conditions, STALLED));
        assert!(!is_true(&plan.status.conditions, READY));
    }

    #[test]
    fn a_new_domain_creates_its_namespace_and_records_its_identities_before_making_them() {
        let d = domain("{}");
        let observation = Observation {
            identities: seen(false, false, &[]),
            ..Observation::default()
        };
        let plan = plan_of(&d, &observation);
        let Some(NamespaceWrite::Create(namespace)) = &plan.namespace else {
            panic!("expected a create, got {:?}", plan.namespace);
        };
        assert_eq!(
            namespace.annotations()[desired::CREATED_FOR_ANNOTATION],
            "payments"
        );
        let record = plan.record.as_ref().expect("recorded before being made");
        assert_eq!(record.namespace.as_deref(), Some("payments"));
        assert_eq!(record.kafka_principal.as_deref(), Some("User:payments"));
        assert_eq!(record.storage_user.as_deref(), Some("payments"));
        assert_eq!(
            plan.credentials,
            Some(CredentialsPlan {
                kafka: KafkaCredential::Generate,
                create_storage_user: true,
                access_key: AccessKeyStep::Create,
                stale_keys: Vec::new(),
                remember_check: true,
                tag_storage_user: Some(desired::storage_user_tags("payments")),
            })
        );
        let children = plan.children.as_ref().unwrap();
        assert_eq!(children.role_binding.role_ref.name, ROLE);
        assert_eq!(
            (children.quota.as_ref(), children.delete_quota),
            (None, false)
        );
        assert_eq!(plan.outcome.reason, "DomainReady");
        assert_eq!(plan.next, Next::Resync);
        assert!(is_true(&plan.status.conditions, READY));
        assert_eq!(
            plan.status.credentials_secret.as_deref(),
            Some("payments-credentials")
        );
        assert_eq!(plan.status.data_products, Some(0));
    }

    #[test]
    fn a_reserved_name_or_a_moved_namespace_is_refused_before_anything() {
        let mut admin = domain("{}");
        admin.metadata.name = Some("admin".into());
        let plan = plan(&admin, &Observation::default(), &reserved(), ROLE, &now());
        assert_refused_untouched(&plan, "ReservedName");

        let mut moved = recorded("namespace: elsewhere");
        moved.status.as_mut().unwrap().namespace = Some("payments".into());
        assert_eq!(
            early_refusal(&moved, &reserved()).map(|o| o.reason),
            Some("NamespaceImmutable".to_owned())
        );
        assert_refused_untouched(
            &plan_of(&moved, &Observation::default()),
            "NamespaceImmutable",
        );
    }

    #[test]
    fn another_domains_namespace_is_taken_and_left_untouched() {
        let observation = Observation {
            namespace: Some(live_namespace(&[(DOMAIN_LABEL, "marketing")], &[])),
            ..Observation::default()
        };
        assert_refused_untouched(&plan_of(&domain("{}"), &observation), "NamespaceTaken");
    }

    #[test]
    fn an_existing_unmarked_namespace_is_not_adoptable_and_left_untouched() {
        for namespace in [
            live_namespace(&[], &[]),
            live_namespace(&[], &[(desired::ADOPT_NAMESPACE_ANNOTATION, "marketing")]),
            live_namespace(&[], &[(desired::CREATED_FOR_ANNOTATION, "payments")]),
        ] {
            let observation = Observation {
                namespace: Some(namespace),
                // Even were the identities free, nothing is made for a refused namespace.
                identities: seen(false, false, &[]),
                ..Observation::default()
            };
            assert_refused_untouched(
                &plan_of(&domain("{}"), &observation),
                "NamespaceNotAdoptable",
            );
        }
    }

    #[test]
    fn a_namespace_marked_for_adoption_is_kept_and_not_marked_as_created() {
        let observation = Observation {
            namespace: Some(live_namespace(
                &[],
                &[(desired::ADOPT_NAMESPACE_ANNOTATION, "payments")],
            )),
            identities: seen(false, false, &[]),
            ..Observation::default()
        };
        let plan = plan_of(&domain("{}"), &observation);
        let Some(NamespaceWrite::Apply(namespace)) = &plan.namespace else {
            panic!("expected an apply, got {:?}", plan.namespace);
        };
        assert_eq!(namespace.metadata.annotations, None);
        assert_eq!(namespace.labels()[DOMAIN_LABEL], "payments");
        assert_eq!(plan.outcome.reason, "DomainReady");
    }

    #[test]
    fn identities_someone_else_made_are_neither_recorded_nor_changed() {
        for (kafka, storage) in [(true, false), (false, true), (true, true)] {
            let observation = Observation {
                namespace: Some(made_namespace()),
                identities: seen(kafka, storage, if storage { &["AKTHEIRS"] } else { &[] }),
                ..Observation::default()
            };
            let plan = plan_of(&domain("{}"), &observation);
            assert_eq!(plan.outcome.reason, "IdentityNotOwned");
            assert_eq!(plan.outcome.progress, Progress::Stalled);
            assert_eq!(
                plan.credentials, None,
                "nothing of theirs is changed or deleted"
            );
            // The namespace is the domain's: it is kept and recorded, its objects made.
            assert!(matches!(plan.namespace, Some(NamespaceWrite::Apply(_))));
            let record = plan.record.as_ref().unwrap();
            assert_eq!(record.namespace.as_deref(), Some("payments"));
            assert_eq!(record.kafka_principal, None, "not claimed");
            assert_eq!(record.storage_user, None, "not claimed");
            assert!(plan.children.is_some());
            assert_eq!(plan.status.kafka_principal, None);
            assert!(is_true(&plan.status.conditions, STALLED));
        }

        let mut adopting = domain("{}");
        adopting.metadata.annotations = Some(BTreeMap::from([(
            desired::ADOPT_IDENTITIES_ANNOTATION.to_owned(),
            "true".to_owned(),
        )]));
        let observation = Observation {
            namespace: Some(made_namespace()),
            identities: seen(true, true, &["AKTHEIRS"]),
            ..Observation::default()
        };
        let plan = plan_of(&adopting, &observation);
        assert_eq!(plan.outcome.reason, "DomainReady");
        let record = plan.record.as_ref().unwrap();
        assert_eq!(record.kafka_principal.as_deref(), Some("User:payments"));
        let credentials = plan.credentials.unwrap();
        assert_eq!(
            credentials.stale_keys,
            ["AKTHEIRS"],
            "an adopted user gets one key"
        );
    }

    #[test]
    fn identities_not_read_are_not_touched_but_the_namespace_goes_on() {
        let observation = Observation {
            namespace: Some(made_namespace()),
            identities: Identities::Unknown,
            ..Observation::default()
        };
        let plan = plan_of(&domain("{}"), &observation);
        assert_eq!(plan.credentials, None);
        assert!(plan.children.is_some());
        let record = plan.record.unwrap();
        assert_eq!(record.kafka_principal, None, "not recorded unchecked");
        assert_ne!(plan.outcome.progress, Progress::Ready);

        // Trusted is only ever said of recorded identities; were it said otherwise, no step.
        let observation = Observation {
            namespace: Some(made_namespace()),
            identities: Identities::Trusted,
            ..Observation::default()
        };
        assert_eq!(plan_of(&domain("{}"), &observation).credentials, None);
    }

    #[test]
    fn the_iam_user_is_tagged_with_its_domain_when_it_lacks_the_tags() {
        let d = recorded("{}");
        let with_tags = |tags: Option<UserTags>| {
            let Identities::Seen(mut live) = seen(true, true, &["AK1"]) else {
                unreachable!()
            };
            live.storage_user_tags = tags;
            let observation = Observation {
                namespace: Some(made_namespace()),
                secret: Some(stored_secret(&d, "AK1")),
                identities: Identities::Seen(live),
                ..Observation::default()
            };
            plan_of(&d, &observation)
                .credentials
                .unwrap()
                .tag_storage_user
        };
        let wanted = desired::storage_user_tags("payments");
        assert_eq!(wanted["datamesh.dev/domain"], "payments");
        assert_eq!(wanted["app.kubernetes.io/managed-by"], "datamesh-operator");
        // Untagged (made before the operator tagged users), or tagged otherwise: tagged.
        assert_eq!(with_tags(Some(UserTags::new())), Some(wanted.clone()));
        let mut wrong = wanted.clone();
        wrong.insert("datamesh.dev/domain".into(), "marketing".into());
        assert_eq!(with_tags(Some(wrong)), Some(wanted.clone()));
        // Tagged, with others' tags too: nothing to write.
        let mut more = wanted.clone();
        more.insert("cost-center".into(), "42".into());
        assert_eq!(with_tags(Some(more)), None);
        // A store without user tags: nothing is tried.
        assert_eq!(with_tags(None), None);
    }

    #[test]
    fn stored_credentials_are_kept_while_the_systems_know_them() {
        let d = recorded("{}");
        let observation = Observation {
            namespace: Some(made_namespace()),
            secret: Some(stored_secret(&d, "AK1")),
            identities: seen(true, true, &["AK1", "AKLOST"]),
            ..Observation::default()
        };
        let plan = plan_of(&d, &observation);
        assert_eq!(plan.record, None, "already recorded");
        assert_eq!(
            plan.credentials,
            Some(CredentialsPlan {
                kafka: KafkaCredential::Keep("pw".into()),
                create_storage_user: false,
                access_key: AccessKeyStep::Keep {
                    id: "AK1".into(),
                    secret: "SK".into()
                },
                stale_keys: vec!["AKLOST".into()],
                remember_check: true,
                tag_storage_user: None,
            })
        );

        // Kafka lost the credential and the store the key: the password is set again, a key
        // made anew, and the keys nobody stored deleted.
        let observation = Observation {
            namespace: Some(made_namespace()),
            secret: Some(stored_secret(&d, "AKGONE")),
            identities: seen(false, true, &["AKX"]),
            ..Observation::default()
        };
        let credentials = plan_of(&d, &observation).credentials.unwrap();
        assert_eq!(credentials.kafka, KafkaCredential::Set("pw".into()));
        assert_eq!(credentials.access_key, AccessKeyStep::Create);
        assert_eq!(credentials.stale_keys, ["AKX"]);

        // Checked recently: nothing is read, nothing written but the Secret as it is.
        let observation = Observation {
            namespace: Some(made_namespace()),
            secret: Some(stored_secret(&d, "AK1")),
            identities: Identities::Trusted,
            ..Observation::default()
        };
        let credentials = plan_of(&d, &observation).credentials.unwrap();
        assert_eq!(credentials.kafka, KafkaCredential::Keep("pw".into()));
        assert!(matches!(credentials.access_key, AccessKeyStep::Keep { .. }));
        assert!(!credentials.create_storage_user && credentials.stale_keys.is_empty());
        assert!(!credentials.remember_check);
    }

    fn quota_status(hard: &str, used: Option<&str>) -> ResourceQuota {
        let counts = |value: &str| {
            BTreeMap::from([(
                desired::DATA_PRODUCT_COUNT.to_owned(),
                Quantity(value.to_owned()),
            )])
        };
        ResourceQuota {
            metadata: ObjectMeta {
                name: Some(desired::RESOURCE_QUOTA.into()),
                labels: Some(domain_labels("payments")),
                ..ObjectMeta::default()
            },
            status: Some(ResourceQuotaStatus {
                hard: Some(counts(hard)),
                used: used.map(counts),
            }),
            ..ResourceQuota::default()
        }
    }

    #[test]
    fn a_domain_with_a_quota_is_ready_only_once_kubernetes_counts_it() {
        let d = recorded("{quotas: {maxDataProducts: 5}}");
        let observed = |quota| Observation {
            namespace: Some(made_namespace()),
            secret: Some(stored_secret(&d, "AK1")),
            quota,
            products: 2,
            identities: Identities::Trusted,
            ..Observation::default()
        };
        for quota in [
            None,
            Some(quota_status("5", None)),
            Some(quota_status("4", Some("2"))),
        ] {
            let plan = plan_of(&d, &observed(quota));
            assert_eq!(plan.outcome.reason, "QuotaPending");
            assert_eq!(plan.next, Next::After(QUOTA_RECHECK));
            assert!(!is_true(&plan.status.conditions, READY));
            assert_eq!(plan.status.data_products, Some(2));
            let children = plan.children.unwrap();
            assert!(children.quota.is_some() && !children.delete_quota);
            assert!(plan.credentials.is_some(), "identities are made meanwhile");
        }
        let plan = plan_of(&d, &observed(Some(quota_status("5", Some("2")))));
        assert_eq!(plan.outcome.reason, "DomainReady");
        assert_eq!(plan.next, Next::Resync);
    }

    #[test]
    fn a_quota_no_longer_declared_is_deleted_only_when_it_is_the_domains() {
        let d = recorded("{}");
        let observed = |quota| Observation {
            namespace: Some(made_namespace()),
            quota: Some(quota),
            identities: Identities::Trusted,
            ..Observation::default()
        };
        let ours = quota_status("5", Some("0"));
        let children = plan_of(&d, &observed(ours.clone())).children.unwrap();
        assert!(children.quota.is_none() && children.delete_quota);
        let mut theirs = ours;
        theirs.metadata.labels = Some(BTreeMap::from([(
            DOMAIN_LABEL.to_owned(),
            "marketing".to_owned(),
        )]));
        assert!(
            !plan_of(&d, &observed(theirs))
                .children
                .unwrap()
                .delete_quota
        );
    }

    #[test]
    fn a_ready_domain_planned_again_writes_the_same_status() {
        let d = domain("{}");
        let observation = Observation {
            identities: seen(false, false, &[]),
            ..Observation::default()
        };
        let first = plan_of(&d, &observation);
        let mut again = recorded("{}");
        again.status = Some(first.status.clone());
        let observation = Observation {
            namespace: Some(made_namespace()),
            secret: Some(stored_secret(&again, "AK1")),
            identities: Identities::Trusted,
            ..Observation::default()
        };
        let second = plan(&again, &observation, &reserved(), ROLE, &now());
        assert_eq!(second.record, None);
        assert_eq!(
            second.status, first.status,
            "an unchanged domain must not cause a status write"
        );
    }

    #[test]
    fn a_ready_domain_reports_where_its_things_are() {
        let status = desired_status(
            &domain("{}"),
            &DomainStatus::default(),
            &Outcome::ready("DomainReady", "ok"),
            Some(2),
            &now(),
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

    fn with_secret_data(mut secret: Secret, labelled: bool) -> Secret {
        if !labelled {
            secret.metadata.labels = None;
        }
        secret
            .data
            .get_or_insert_with(BTreeMap::new)
            .insert("extra".into(), ByteString(b"x".to_vec()));
        secret
    }

    #[test]
    fn a_domain_that_never_owned_its_namespace_removes_nothing() {
        let mut d = domain("{deletionPolicy: Delete}");
        let plan = cleanup_plan(&d, &CleanupObservation::default(), &reserved(), &now());
        assert!(
            matches!(plan, CleanupPlan::NothingToRemove { .. }),
            "{plan:?}"
        );
        d.metadata.name = Some("admin".into());
        d.status = Some(DomainStatus {
            namespace: Some("admin".into()),
            kafka_principal: Some("User:admin".into()),
            storage_user: Some("admin".into()),
            ..DomainStatus::default()
        });
        assert!(
            !owns_anything(&d, &reserved()),
            "a reserved name owns nothing"
        );
    }

    #[test]
    fn a_blocked_deletion_is_stalled_with_the_products_named() {
        let observation = CleanupObservation {
            products: vec!["orders".into(), "refunds".into()],
            ..CleanupObservation::default()
        };
        let CleanupPlan::Blocked { outcome, status } =
            cleanup_plan(&recorded("{}"), &observation, &reserved(), &now())
        else {
            panic!("expected a blocked deletion");
        };
        assert_eq!(outcome.reason, "DataProductsRemain");
        assert!(
            outcome.message.contains("orders, refunds"),
            "{}",
            outcome.message
        );
        assert!(is_true(&status.conditions, STALLED));
        assert!(!is_true(&status.conditions, READY));
        assert_eq!(status.data_products, Some(2));
    }

    #[test]
    fn deletion_removes_only_what_the_operator_made() {
        let d = recorded("{deletionPolicy: Delete}");
        let observation = CleanupObservation {
            secret: Some(with_secret_data(stored_secret(&d, "AK1"), true)),
            namespace: Some(made_namespace()),
            storage: Some(super::super::observe::StorageHoldings {
                access_keys: vec!["AK1".into()],
                policies: vec!["datamesh".into()],
            }),
            ..CleanupObservation::default()
        };
        let CleanupPlan::Remove(removal) = cleanup_plan(&d, &observation, &reserved(), &now())
        else {
            panic!("expected a removal");
        };
        assert!(removal.kafka && removal.delete_secret && removal.delete_namespace);
        assert_eq!(
            removal.storage,
            Some(StorageRemoval {
                user: "payments".into(),
                access_keys: vec!["AK1".into()],
                policies: vec!["datamesh".into()],
            })
        );

        // Adopted namespace, unlabelled Secret, unrecorded identities: all kept.
        let mut unrecorded = domain("{deletionPolicy: Delete}");
        unrecorded.status = Some(DomainStatus {
            namespace: Some("payments".into()),
            ..DomainStatus::default()
        });
        let observation = CleanupObservation {
            secret: Some(with_secret_data(stored_secret(&d, "AK1"), false)),
            namespace: Some(live_namespace(&[(DOMAIN_LABEL, "payments")], &[])),
            ..CleanupObservation::default()
        };
        let CleanupPlan::Remove(removal) =
            cleanup_plan(&unrecorded, &observation, &reserved(), &now())
        else {
            panic!("expected a removal");
        };
        assert_eq!(
            (removal.kafka, removal.storage.as_ref()),
            (false, None),
            "identities it did not record are kept"
        );
        assert!(!removal.delete_secret && !removal.delete_namespace);
        assert!(
            removal.note.contains("did not create it"),
            "{}",
            removal.note
        );

        // Retain keeps even a namespace the operator made.
        let retained = recorded("{deletionPolicy: Retain}");
        let observation = CleanupObservation {
            namespace: Some(made_namespace()),
            ..CleanupObservation::default()
        };
        let CleanupPlan::Remove(removal) =
            cleanup_plan(&retained, &observation, &reserved(), &now())
        else {
            panic!("expected a removal");
        };
        assert!(!removal.delete_namespace);
        assert_eq!(removal.storage, None, "not read: not removed");
    }
}
