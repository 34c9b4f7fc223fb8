//! *Plan*: from the observation, what one reconcile of a product's policies writes to each
//! system and what it reports. Pure (no I/O, `now` passed in), so that the unit tests can ask
//! it anything, refusals included.
//!
//! The unit of work is the product (see [`super::desired`]): the plan makes every system carry
//! the union of the grants of the product's live policies, and reports the one policy being
//! reconciled. Who may grant is decided by [`desired::authority`] from the namespace alone, and
//! a policy no domain acts for plans no write at all: no domain may revoke another's grants.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::events::EventType;

use super::desired::{
    self, Authority, DomainInfo, Endpoints, Evaluation, PortGrant, PortTarget, acl_changes,
    consumers_role, consumers_role_binding, consumers_role_name, evaluate, user_bucket_grants,
};
use super::observe::{Live, Observation};
use crate::api::access_policy::{AccessPolicy, AccessPolicyStatus};
use crate::api::conditions::{Progress, STALLED, is_true};
use crate::api::naming::kafka_principal;
use crate::controller::apply::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::controller::domain::desired::storage_user;
use crate::provision::kafka::AclBinding;
use crate::provision::storage::policy::BucketGrant;

/// What to write, per system, and what to report.
#[derive(Debug)]
pub struct Plan {
    /// The ACLs on the product's topics, and the consumers' consumer-group ACLs.
    pub kafka: KafkaPlan,
    /// What each consumer domain's aggregated grants policy must hold of the product's
    /// buckets; empty when the product has no bucket.
    pub buckets: Vec<ConsumerGrants>,
    /// The consumers' Role and RoleBinding on the product.
    pub rbac: RbacPlan,
    /// The connection ConfigMaps in the consumers' namespaces.
    pub config_maps: ConfigMapPlan,
    /// The policy's status to write, when it differs from the stored one (never when the
    /// policy is being deleted).
    pub status: Option<AccessPolicyStatus>,
    /// The Events to publish once everything is applied: grants made and revoked, a policy
    /// turning Stalled.
    pub events: Vec<PlannedEvent>,
    /// When the plan was made: the other products' bucket grants, evaluated in *apply* only
    /// for a consumer whose grants policy must be recomputed, are evaluated at this time too.
    pub now: Timestamp,
}

/// The Kafka writes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KafkaPlan {
    /// Topic ACLs to create.
    pub create: Vec<AclBinding>,
    /// Topic ACLs to delete: every grant on the product's topics no live policy declares.
    pub delete: Vec<AclBinding>,
    /// Domains holding a Kafka grant on the product: each needs its consumer-group ACL.
    pub group_members: BTreeSet<String>,
    /// Domains losing their last topic ACL on the product: their consumer-group ACL goes
    /// unless they hold a topic ACL on another product (checked in *apply*, under the lock all
    /// products share, see [`super::apply`]).
    pub group_leavers: BTreeSet<String>,
}

/// What one consumer's aggregated grants policy must hold of the product's buckets.
#[derive(Debug, PartialEq, Eq)]
pub struct ConsumerGrants {
    /// The consumer domain.
    pub consumer: DomainInfo,
    /// Its IAM user.
    pub user: String,
    /// The grants on the product's buckets it must hold.
    pub needed: BTreeSet<BucketGrant>,
    /// The product's buckets it must not hold.
    pub gone: BTreeSet<String>,
}

/// The consumers' Role and RoleBinding of the product.
#[derive(Debug, Default, PartialEq)]
pub enum RbacPlan {
    /// Nothing to write.
    #[default]
    Nothing,
    /// Consumers may read the product: the Role and the RoleBinding naming them.
    Apply {
        /// The Role.
        role: Box<Role>,
        /// The RoleBinding.
        binding: Box<RoleBinding>,
    },
    /// Nobody may any more: the ones the operator made go (one made by hand stays).
    Delete {
        /// Their namespace.
        namespace: String,
        /// Their name.
        name: String,
        /// Delete the RoleBinding.
        binding: bool,
        /// Delete the Role.
        role: bool,
    },
}

/// The connection ConfigMaps.
#[derive(Debug, Default, PartialEq)]
pub struct ConfigMapPlan {
    /// One per consumer input port reading a granted port.
    pub apply: Vec<ConfigMap>,
    /// (namespace, name) of those the product's grants made that no grant wants any more.
    pub delete: Vec<(String, String)>,
}

/// An Event to publish on the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEvent {
    /// Normal or Warning.
    pub type_: EventType,
    /// The reason.
    pub reason: String,
    /// The note.
    pub note: String,
}

impl PlannedEvent {
    fn new(type_: EventType, reason: &str, note: String) -> Self {
        Self {
            type_,
            reason: reason.to_owned(),
            note,
        }
    }
}

/// Plan the convergence of the product `policy` names. When `leaving`, `policy` is being
/// deleted and counts for nothing.
pub fn plan(
    policy: &AccessPolicy,
    observation: &Observation,
    leaving: bool,
    endpoints: &Endpoints,
    now: Timestamp,
) -> Plan {
    let scope = &observation.scope;
    let namespace = policy.namespace().unwrap_or_default();
    // Authority comes from the namespace, never from a spec (see `desired::authority`).
    let (producer, product, refusal) =
        match desired::authority(&namespace, scope.product.as_deref(), &scope.owners) {
            Authority::Nobody(refusal) => {
                let own = (!leaving).then(|| Evaluation::refused(refusal));
                return nothing_to_write(policy, own.as_ref(), now);
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
        Some(refusal) => Evaluation::refused(refusal.clone()),
        None => evaluate(policy, product.as_ref(), &scope.domains, now),
    });
    if let Some(own) = &own {
        grants.extend(own.grants.iter().cloned());
    }

    let wanted = desired::desired(&grants);
    let live = &observation.live;
    let rbac = match &product {
        Some(product) if !wanted.rbac_subjects.is_empty() => RbacPlan::Apply {
            role: Box::new(consumers_role(&namespace, product)),
            binding: Box::new(consumers_role_binding(
                &namespace,
                product,
                &wanted.rbac_subjects,
            )),
        },
        _ => rbac_removal(&namespace, &policy.spec.data_product, live),
    };
    let maps = match &product {
        Some(product) => {
            desired::connection_config_maps(product, &grants, &scope.consumers, endpoints)
        }
        None => vec![],
    };
    let (status, events) = report(policy, own.as_ref(), now);
    Plan {
        kafka: kafka_plan(&wanted, &live.topic_acls, &producer),
        buckets: bucket_plan(&producer, &scope.domains, &live.targets, &wanted),
        rbac,
        config_maps: config_map_plan(maps, live),
        status,
        events,
        now,
    }
}

/// The plan of a policy that may not act: it writes nothing in any system, and reports why.
fn nothing_to_write(policy: &AccessPolicy, own: Option<&Evaluation>, now: Timestamp) -> Plan {
    let (status, events) = report(policy, own, now);
    Plan {
        kafka: KafkaPlan::default(),
        buckets: vec![],
        rbac: RbacPlan::Nothing,
        config_maps: ConfigMapPlan::default(),
        status,
        events,
        now,
    }
}

/// Make the ACLs on the product's topics carry exactly the wanted grants; the `producer`'s own
/// ACLs are never touched. The consumer-group ACL for every domain holding a Kafka grant, and
/// the domains that may lose theirs.
pub fn kafka_plan(wanted: &desired::Desired, actual: &[AclBinding], producer: &str) -> KafkaPlan {
    let changes = acl_changes(&wanted.topic_acls, actual, &kafka_principal(producer));
    let group_leavers = changes
        .delete
        .iter()
        .filter_map(|binding| binding.principal.strip_prefix("User:"))
        .filter(|identity| !wanted.kafka_identities.contains(*identity))
        .map(str::to_owned)
        .collect();
    KafkaPlan {
        create: changes.create,
        delete: changes.delete,
        group_members: wanted.kafka_identities.clone(),
        group_leavers,
    }
}

/// What every consumer's grants policy must hold of the product's buckets (`targets`): what
/// `wanted` gives it and nothing else of them. A bucket belongs to exactly one product, so the
/// product's buckets a consumer is not granted can be taken out of its policy without looking
/// at other products. The producer's own access is its owner policy, never a grant.
pub fn bucket_plan(
    producer: &str,
    domains: &[DomainInfo],
    targets: &BTreeSet<PortTarget>,
    wanted: &desired::Desired,
) -> Vec<ConsumerGrants> {
    let buckets: BTreeSet<&String> = targets
        .iter()
        .filter_map(|target| match target {
            PortTarget::Bucket(bucket) => Some(bucket),
            PortTarget::Topic(_) => None,
        })
        .collect();
    if buckets.is_empty() {
        return vec![];
    }
    domains
        .iter()
        .filter(|domain| domain.name != producer)
        .map(|consumer| {
            let user = storage_user(&consumer.name);
            let needed = user_bucket_grants(&wanted.bucket_access, &user);
            let gone = buckets
                .iter()
                .filter(|bucket| !needed.iter().any(|grant| grant.bucket == ***bucket))
                .map(|bucket| (*bucket).clone())
                .collect();
            ConsumerGrants {
                consumer: consumer.clone(),
                user,
                needed,
                gone,
            }
        })
        .collect()
}

/// Remove the consumers' Role and RoleBinding of a product, if the operator made them.
fn rbac_removal(namespace: &str, product: &str, live: &Live) -> RbacPlan {
    let binding = live
        .binding
        .as_ref()
        .is_some_and(|b| is_managed(b.labels()));
    let role = live.role.as_ref().is_some_and(|r| is_managed(r.labels()));
    if !binding && !role {
        return RbacPlan::Nothing;
    }
    RbacPlan::Delete {
        namespace: namespace.to_owned(),
        name: consumers_role_name(product),
        binding,
        role,
    }
}

fn is_managed(labels: &std::collections::BTreeMap<String, String>) -> bool {
    labels
        .get(MANAGED_BY_LABEL)
        .is_some_and(|v| v == MANAGED_BY)
}

/// Apply the wanted connection ConfigMaps, and delete the ones the product's grants made that
/// are no longer wanted.
fn config_map_plan(apply: Vec<ConfigMap>, live: &Live) -> ConfigMapPlan {
    let keep: BTreeSet<(String, String)> = apply
        .iter()
        .map(|map| (map.namespace().unwrap_or_default(), map.name_any()))
        .collect();
    let delete = live
        .config_maps
        .iter()
        .map(|map| (map.namespace().unwrap_or_default(), map.name_any()))
        .filter(|key| !keep.contains(key))
        .collect();
    ConfigMapPlan { apply, delete }
}

/// The status to write (if it changed) and the Events for a policy evaluated as `own`; for a
/// policy being deleted (`own` is `None`), no status, and an Event naming what it gave.
fn report(
    policy: &AccessPolicy,
    own: Option<&Evaluation>,
    now: Timestamp,
) -> (Option<AccessPolicyStatus>, Vec<PlannedEvent>) {
    let current: AccessPolicyStatus = policy.status.clone().unwrap_or_default();
    let Some(evaluation) = own else {
        let mut events = vec![];
        if !current.grants.is_empty() {
            let (_, revoked) = desired::grant_transitions(&current.grants, &[]);
            events.push(PlannedEvent::new(
                EventType::Normal,
                "Revoked",
                format!(
                    "Policy deleted: revoked {} (access another policy still gives stays).",
                    revoked.join(", ")
                ),
            ));
        }
        return (None, events);
    };
    let status = desired::desired_status(policy, &current, evaluation, now);
    if status == current {
        return (None, vec![]);
    }
    let mut events = vec![];
    let (granted, revoked) = desired::grant_transitions(&current.grants, &status.grants);
    if !granted.is_empty() {
        events.push(PlannedEvent::new(
            EventType::Normal,
            "Granted",
            format!("Granted {}.", granted.join(", ")),
        ));
    }
    if !revoked.is_empty() {
        events.push(PlannedEvent::new(
            EventType::Normal,
            "Revoked",
            format!("Revoked {}.", revoked.join(", ")),
        ));
    }
    let outcome = &evaluation.outcome;
    if outcome.progress == Progress::Stalled && !is_true(&current.conditions, STALLED) {
        events.push(PlannedEvent::new(
            EventType::Warning,
            &outcome.reason,
            outcome.message.clone(),
        ));
    }
    (Some(status), events)
}
