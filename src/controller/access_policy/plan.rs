//! *Plan*: from the observation, what one reconcile of a product's policies writes to each
//! system and what it reports. Pure (no I/O, `now` passed in), so that the unit tests can ask
//! it anything, refusals included.
//!
//! The unit of work is the product (see [`super::desired`]): the plan makes every system carry
//! the union of the grants of the product's live policies, and reports the one policy being
//! reconciled. Who may grant is decided by [`desired::authority`] from the namespace alone, and
//! a policy no domain acts for plans no write at all: no domain may revoke another's grants.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::events::EventType;

use super::desired::{
    self, Authority, Endpoints, Evaluation, PortGrant, Product, acl_changes, consumers_role,
    consumers_role_binding, consumers_role_name, evaluate,
};
use super::observe::{Live, Observation};
use crate::api::access_policy::{AccessPolicy, AccessPolicyStatus};
use crate::api::conditions::{Progress, STALLED, is_true};
use crate::api::naming::kafka_principal;
use crate::controller::apply::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::provision::kafka::AclBinding;
use crate::provision::storage::policy::BucketAccess;

/// What to write, per system, and what to report.
#[derive(Debug)]
pub struct Plan {
    /// The ACLs on the product's topics, and the consumers' consumer-group ACLs.
    pub kafka: KafkaPlan,
    /// The consumers' part of the policy of each bucket the product holds; empty when it
    /// holds none.
    pub buckets: Vec<BucketGrants>,
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

/// Who may use one of the product's buckets, and how: the consumers' part of its policy.
#[derive(Debug, PartialEq, Eq)]
pub struct BucketGrants {
    /// The bucket.
    pub bucket: String,
    /// The consumers' IAM users by access level; empty when nobody is granted (any more).
    pub users: BTreeMap<BucketAccess, BTreeSet<String>>,
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
        buckets: product
            .as_ref()
            .map(|p| bucket_plan(p, &wanted))
            .unwrap_or_default(),
        rbac,
        config_maps: config_map_plan(maps, live),
        status,
        events,
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

/// The consumers' part of the policy of each bucket `product` holds: what `wanted` gives on
/// it, or nothing once the product is being deleted. Buckets it does not hold are never
/// written (see [`desired`] for why), and the producer's own access is the owner's part,
/// written by the DataProduct controller.
pub fn bucket_plan(product: &Product, wanted: &desired::Desired) -> Vec<BucketGrants> {
    product
        .held_buckets
        .iter()
        .map(|bucket| {
            let mut users: BTreeMap<BucketAccess, BTreeSet<String>> = BTreeMap::new();
            if !product.deleting {
                for ((user, granted), access) in &wanted.bucket_access {
                    if granted == bucket {
                        users.entry(*access).or_default().insert(user.clone());
                    }
                }
            }
            BucketGrants {
                bucket: bucket.clone(),
                users,
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

#[cfg(test)]
mod tests {
    use super::super::desired::tests::{consumer_product, policy};
    use super::super::desired::{Product, status_grants, topic_bindings};
    use super::super::observe::read_scope;
    use super::super::observe::tests::{domain_store, store_of};
    use super::*;
    use crate::api::access_policy::Access;
    use crate::api::conditions::{READY, RECONCILING, find_condition};
    use crate::api::data_product::DataProduct;
    use crate::controller::tenancy::{NAMESPACE_NOT_OWNED, WRONG_NAMESPACE};
    use crate::provision::kafka::{AclOperation, AclPatternType, AclResourceType};
    use crate::provision::storage::policy::BucketAccess;
    use kube::api::{ObjectMeta, PartialObjectMetaExt};

    const TOPIC: &str = "payments.orders.events";
    const BUCKET: &str = "payments-orders-lake";

    fn now() -> Timestamp {
        Timestamp::from_second(1_000).unwrap()
    }

    fn endpoints() -> Endpoints {
        Endpoints {
            kafka_bootstrap_servers: "kafka:9092".into(),
            s3_endpoint: "http://s3:8333".into(),
        }
    }

    /// The `orders` product in `namespace`, saying it is `domain`'s: a topic and a bucket.
    fn orders(namespace: &str, domain: &str) -> DataProduct {
        let spec = serde_json::from_value(serde_json::json!({
            "domain": domain,
            "description": {"purpose": "p", "usage": "u"},
            "owner": {"name": "bob"},
            "outputPorts": [{"name": "events", "kafka": {}}, {"name": "lake", "bucket": {}}],
        }))
        .unwrap();
        let mut product = DataProduct::new("orders", spec);
        product.metadata.namespace = Some(namespace.into());
        // Provisioned: its status lists the bucket it holds.
        product.status = Some(crate::api::data_product::DataProductStatus {
            output_ports: vec![crate::api::data_product::OutputPortStatus {
                name: "lake".into(),
                bucket: Some(BUCKET.into()),
                ..Default::default()
            }],
            ..Default::default()
        });
        product
    }

    fn in_namespace(mut policy: AccessPolicy, namespace: &str) -> AccessPolicy {
        policy.metadata.namespace = Some(namespace.into());
        policy
    }

    fn observation(
        namespace: &str,
        products: Vec<DataProduct>,
        policies: Vec<AccessPolicy>,
        live: Live,
    ) -> Observation {
        let scope = read_scope(
            &domain_store(&["payments", "marketing", "bi", "mallory"]),
            &store_of(products),
            &store_of(policies),
            namespace,
            "orders",
        );
        Observation::of(scope, live)
    }

    /// The producer's own ACL, which no plan touches.
    fn producers_own() -> AclBinding {
        AclBinding::allow(
            AclResourceType::Topic,
            AclPatternType::Literal,
            TOPIC,
            "User:payments",
            AclOperation::Write,
        )
    }

    fn managed(name: &str, namespace: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some([(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned())].into()),
            ..ObjectMeta::default()
        }
    }

    fn connection_map(namespace: &str, name: &str) -> kube::api::PartialObjectMeta<ConfigMap> {
        managed(name, namespace).into_request_partial::<ConfigMap>()
    }

    /// The consumers' part the plan gives the product's bucket.
    fn bucket_users(plan: &Plan) -> &BTreeMap<BucketAccess, BTreeSet<String>> {
        let [grants] = plan.buckets.as_slice() else {
            panic!("one bucket expected: {:?}", plan.buckets);
        };
        assert_eq!(grants.bucket, BUCKET);
        &grants.users
    }

    #[test]
    fn a_grant_plans_every_system_and_reports_it_once() {
        let read =
            serde_json::json!({"dataProduct": "orders", "consumers": [{"domain": "marketing"}]});
        let mut p = policy("p", read);
        let live = || Live {
            topic_acls: vec![producers_own()],
            ..Live::default()
        };
        let products = || {
            vec![
                orders("payments-ns", "payments"),
                consumer_product("marketing-ns", "orders-in", "events"),
            ]
        };
        let observed = observation("payments-ns", products(), vec![p.clone()], live());
        let plan = plan(&p, &observed, false, &endpoints(), now());

        let create: BTreeSet<AclBinding> = plan.kafka.create.iter().cloned().collect();
        assert_eq!(
            create,
            topic_bindings(TOPIC, "marketing", Access::Read)
                .into_iter()
                .collect()
        );
        assert!(plan.kafka.delete.is_empty(), "the producer's own ACL stays");
        assert_eq!(
            plan.kafka.group_members,
            BTreeSet::from(["marketing".into()])
        );
        assert!(plan.kafka.group_leavers.is_empty());

        assert_eq!(
            bucket_users(&plan),
            &BTreeMap::from([(BucketAccess::Read, BTreeSet::from(["marketing".to_owned()]))]),
            "marketing reads the bucket; the producer's own access is not a grant"
        );

        let RbacPlan::Apply { role, binding } = &plan.rbac else {
            panic!("expected the consumers' RBAC, got {:?}", plan.rbac);
        };
        assert_eq!(
            role.metadata.name.as_deref(),
            Some("datamesh-consumers-orders")
        );
        assert_eq!(role.metadata.namespace.as_deref(), Some("payments-ns"));
        assert_eq!(binding.metadata.name, role.metadata.name);

        let maps: Vec<(String, String)> = plan
            .config_maps
            .apply
            .iter()
            .map(|m| (m.namespace().unwrap(), m.name_any()))
            .collect();
        assert_eq!(maps, [("marketing-ns".to_owned(), "orders-in".to_owned())]);
        assert!(plan.config_maps.delete.is_empty());

        let status = plan.status.clone().expect("a status to write");
        assert_eq!(
            find_condition(&status.conditions, READY).unwrap().status,
            "True"
        );
        let ports: Vec<&str> = status.grants.iter().map(|g| g.port.as_str()).collect();
        assert_eq!(ports, ["events", "lake"]);
        let reasons: Vec<&str> = plan.events.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(reasons, ["Granted"]);

        // The next reconcile, nothing changed: no status write, no Event.
        p.status = plan.status;
        let observed = observation("payments-ns", products(), vec![p.clone()], live());
        let again = super::plan(&p, &observed, false, &endpoints(), now());
        assert_eq!(again.status, None);
        assert!(again.events.is_empty(), "{:?}", again.events);
    }

    #[test]
    fn a_policy_in_a_namespace_no_domain_owns_writes_nothing() {
        let p = in_namespace(
            policy(
                "p",
                serde_json::json!({"dataProduct": "orders", "consumers": [{"domain": "marketing"}]}),
            ),
            "stray-ns",
        );
        // Even shown what the producer's grants look like, it revokes none of them.
        let marketing_reads = topic_bindings(TOPIC, "marketing", Access::Read);
        let live = Live {
            topic_acls: marketing_reads,
            role: Some(Role {
                metadata: managed("datamesh-consumers-orders", "stray-ns"),
                ..Role::default()
            }),
            config_maps: vec![connection_map("marketing-ns", "orders-in")],
            ..Live::default()
        };
        let observed = observation(
            "stray-ns",
            vec![orders("stray-ns", "payments")],
            vec![p.clone()],
            live,
        );
        let plan = plan(&p, &observed, false, &endpoints(), now());
        assert_eq!(plan.kafka, KafkaPlan::default());
        assert!(plan.buckets.is_empty());
        assert_eq!(plan.rbac, RbacPlan::Nothing);
        assert_eq!(plan.config_maps, ConfigMapPlan::default());
        let status = plan.status.expect("the refusal is reported");
        // Waiting for a Domain to own the namespace (delivered from Git, it may come later).
        let waiting = find_condition(&status.conditions, RECONCILING).unwrap();
        assert_eq!(waiting.reason, NAMESPACE_NOT_OWNED);
        assert_eq!(waiting.status, "True");
        assert!(!is_true(&status.conditions, STALLED));
        assert!(status.grants.is_empty());
        assert!(plan.events.is_empty(), "{:?}", plan.events);

        // Nor does its deletion.
        let plan = super::plan(&p, &observed, true, &endpoints(), now());
        assert_eq!(plan.kafka, KafkaPlan::default());
        assert_eq!(plan.rbac, RbacPlan::Nothing);
        assert_eq!(plan.config_maps, ConfigMapPlan::default());
        assert_eq!(plan.status, None);
    }

    #[test]
    fn a_copy_of_another_domains_product_grants_nothing() {
        // mallory copies payments' product into its own namespace and grants on it.
        let p = in_namespace(
            policy(
                "p",
                serde_json::json!({"dataProduct": "orders", "access": "readWrite", "consumers": [{"domain": "mallory"}, {"domain": "marketing"}]}),
            ),
            "mallory-ns",
        );
        let live = Live { ..Live::default() };
        let observed = observation(
            "mallory-ns",
            vec![
                orders("mallory-ns", "payments"),
                consumer_product("marketing-ns", "orders-in", "events"),
            ],
            vec![p.clone()],
            live,
        );
        let plan = plan(&p, &observed, false, &endpoints(), now());
        assert!(plan.kafka.create.is_empty());
        assert!(plan.kafka.group_members.is_empty());
        assert!(plan.buckets.is_empty());
        assert!(!matches!(plan.rbac, RbacPlan::Apply { .. }));
        assert!(plan.config_maps.apply.is_empty());
        let status = plan.status.expect("the refusal is reported");
        let stalled = find_condition(&status.conditions, STALLED).unwrap();
        assert_eq!(stalled.reason, WRONG_NAMESPACE);
        assert!(status.grants.is_empty());
    }

    #[test]
    fn a_deleted_policy_plans_the_revocation_of_only_what_it_alone_gave() {
        let events_only = policy(
            "events-only",
            serde_json::json!({"dataProduct": "orders", "ports": ["events"], "consumers": [{"domain": "marketing"}]}),
        );
        let mut everything = policy(
            "everything",
            serde_json::json!({"dataProduct": "orders", "consumers": [{"domain": "marketing"}, {"domain": "bi"}]}),
        );
        let product = orders("payments-ns", "payments");
        let granted = desired::evaluate(
            &everything,
            Some(&Product::of(&product)),
            &desired::tests::domains(),
            now(),
        );
        everything.status = Some(AccessPolicyStatus {
            grants: status_grants(&granted.grants),
            ..AccessPolicyStatus::default()
        });
        let mut topic_acls = vec![producers_own()];
        topic_acls.extend(topic_bindings(TOPIC, "marketing", Access::Read));
        topic_acls.extend(topic_bindings(TOPIC, "bi", Access::Read));
        let live = || Live {
            topic_acls: topic_acls.clone(),
            role: Some(Role {
                metadata: managed("datamesh-consumers-orders", "payments-ns"),
                ..Role::default()
            }),
            binding: Some(RoleBinding {
                metadata: managed("datamesh-consumers-orders", "payments-ns"),
                ..RoleBinding::default()
            }),
            config_maps: vec![
                connection_map("marketing-ns", "orders-in"),
                connection_map("bi-ns", "orders-in"),
            ],
        };
        let products = || {
            vec![
                orders("payments-ns", "payments"),
                consumer_product("marketing-ns", "orders-in", "events"),
            ]
        };
        let observed = observation(
            "payments-ns",
            products(),
            vec![events_only.clone(), everything.clone()],
            live(),
        );
        let plan = plan(&everything, &observed, true, &endpoints(), now());

        let delete: BTreeSet<AclBinding> = plan.kafka.delete.iter().cloned().collect();
        assert_eq!(
            delete,
            topic_bindings(TOPIC, "bi", Access::Read)
                .into_iter()
                .collect(),
            "marketing keeps the topic through the other policy"
        );
        assert!(plan.kafka.create.is_empty());
        assert_eq!(plan.kafka.group_leavers, BTreeSet::from(["bi".into()]));
        assert_eq!(
            plan.kafka.group_members,
            BTreeSet::from(["marketing".into()])
        );
        assert!(
            bucket_users(&plan).is_empty(),
            "the events-only policy gives nobody the bucket: {:?}",
            plan.buckets
        );
        assert!(
            matches!(plan.rbac, RbacPlan::Apply { .. }),
            "marketing still reads"
        );
        assert_eq!(
            plan.config_maps.delete,
            [("bi-ns".to_owned(), "orders-in".to_owned())]
        );
        assert_eq!(plan.status, None, "a policy being deleted gets no status");
        assert_eq!(plan.events.len(), 1);
        assert_eq!(plan.events[0].reason, "Revoked");
        assert!(
            plan.events[0].note.starts_with("Policy deleted: revoked "),
            "{}",
            plan.events[0].note
        );

        // The last policy goes too: the RBAC the operator made goes with it, a Role made by
        // hand stays.
        let mut last = live();
        if let Some(role) = &mut last.role {
            role.metadata.labels = None;
        }
        let observed = observation("payments-ns", products(), vec![events_only.clone()], last);
        let plan = super::plan(&events_only, &observed, true, &endpoints(), now());
        assert_eq!(
            plan.rbac,
            RbacPlan::Delete {
                namespace: "payments-ns".into(),
                name: "datamesh-consumers-orders".into(),
                binding: true,
                role: false,
            }
        );
        assert_eq!(plan.config_maps.delete.len(), 2);
        let leavers = &plan.kafka.group_leavers;
        assert_eq!(*leavers, BTreeSet::from(["bi".into(), "marketing".into()]));
    }
}
