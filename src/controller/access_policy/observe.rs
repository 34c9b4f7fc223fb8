//! *Observe*: everything a product's grants depend on, read once, before any write. The
//! policies, the product, the domains and the consumers come from the watch stores; the ACLs on
//! the product's topics, the consumers' Role and RoleBinding and the connection ConfigMaps from
//! Kafka and the API server.
//!
//! Two shared things are not read here but in *apply*, under their own locks, because other
//! reconciles write them concurrently and a copy read here could be stale by the time it is
//! written back: the policy of each of the product's buckets (read, if the remembered copy is
//! stale, by [`BucketPolicies`](crate::controller::bucket_policies::BucketPolicies)), and a
//! consumer's consumer-group ACL (see [`super::apply`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{ListParams, PartialObjectMeta};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};

use super::State;
use super::desired::{
    self, Authority, DomainInfo, PortTarget, Product, SOURCE_DOMAIN_LABEL, SOURCE_PRODUCT_LABEL,
    consumers_role_name,
};
use crate::api::access_policy::AccessPolicy;
use crate::api::data_product::DataProduct;
use crate::api::domain::Domain;
use crate::controller::tenancy::Owners;
use crate::controller::{Error, kube_context};
use crate::provision::kafka::{
    AclBinding, AclBindingFilter, AclPatternType, AclResourceType, KafkaAdmin,
};

/// Everything a product's grants depend on, read in one go from the watch stores.
pub struct Scope {
    pub product: Option<Arc<DataProduct>>,
    /// Which domain owns which namespace: a policy acts only for its namespace's domain.
    pub owners: Owners,
    pub domains: Vec<DomainInfo>,
    /// The policies in the producer's namespace that name the same product.
    pub policies: Vec<Arc<AccessPolicy>>,
    /// The DataProducts with an input port reading a product of this name: the candidates
    /// for connection ConfigMaps (which also match the producer's domain and the port).
    pub consumers: Vec<DataProduct>,
}

/// The live state of the systems a product's grants are written to. Read only for a
/// namespace some domain owns: a policy no domain acts for writes nothing, so reads nothing.
#[derive(Debug, Default)]
pub struct Live {
    /// Every ACL on the product's topics.
    pub topic_acls: Vec<AclBinding>,
    /// The consumers' Role of the product, if there is one.
    pub role: Option<Role>,
    /// The consumers' RoleBinding of the product, if there is one.
    pub binding: Option<RoleBinding>,
    /// The connection ConfigMaps the product's grants made, in every namespace.
    pub config_maps: Vec<PartialObjectMeta<ConfigMap>>,
}

/// What a reconcile of one product's policies starts from.
pub struct Observation {
    /// The stores' view of the product and what its grants depend on.
    pub scope: Scope,
    /// The systems' state; empty when no domain owns the namespace.
    pub live: Live,
}

/// Read what the product `policy` names depends on. Call it holding the product's lock (see
/// [`super::converge_product`]): a view read while waiting could be older than the one the
/// previous holder converged on, and converging on it would undo that work.
pub async fn observe(policy: &AccessPolicy, state: &State) -> Result<Observation, Error> {
    let ctx = &*state.ctx;
    let namespace = policy.namespace().unwrap_or_default();
    let product = &policy.spec.data_product;
    let scope = read_scope(
        &state.domains,
        &state.products,
        &state.policies,
        &namespace,
        product,
    );
    // Authority comes from the namespace, never from a spec (see `desired::authority`).
    let Authority::Producer {
        domain: producer,
        product: granting,
        ..
    } = desired::authority(&namespace, scope.product.as_deref(), &scope.owners)
    else {
        return Ok(Observation {
            scope,
            live: Live::default(),
        });
    };
    let targets = targets(policy, &scope, &producer, granting.as_ref());
    let topic_acls = topic_acls(ctx.kafka.as_ref(), &targets).await?;
    let name = consumers_role_name(product);
    let roles = Api::<Role>::namespaced(ctx.client.clone(), &namespace);
    let role = roles
        .get_opt(&name)
        .await
        .map_err(kube_context(format!("reading Role {namespace}/{name}")))?;
    let bindings = Api::<RoleBinding>::namespaced(ctx.client.clone(), &namespace);
    let binding = bindings.get_opt(&name).await.map_err(kube_context(format!(
        "reading RoleBinding {namespace}/{name}"
    )))?;
    let selector = format!("{SOURCE_DOMAIN_LABEL}={producer},{SOURCE_PRODUCT_LABEL}={product}");
    let config_maps = Api::<ConfigMap>::all(ctx.client.clone())
        .list_metadata(&ListParams::default().labels(&selector))
        .await
        .map_err(kube_context(format!("listing ConfigMaps with {selector}")))?
        .items;
    Ok(Observation {
        scope,
        live: Live {
            topic_acls,
            role,
            binding,
            config_maps,
        },
    })
}

/// The product's topics and buckets: the ports it has now, plus those any policy reported
/// granting (a port removed from the product, or the product gone), so that the grants on its
/// topics are revoked too.
/// `granting` is the product as [`desired::authority`] lets it grant: another domain's copy
/// has no ports here.
fn targets(
    policy: &AccessPolicy,
    scope: &Scope,
    producer: &str,
    granting: Option<&Product>,
) -> BTreeSet<PortTarget> {
    let statuses = scope
        .policies
        .iter()
        .filter_map(|p| p.status.as_ref())
        .chain(policy.status.as_ref());
    let mut targets = desired::targets_from_status(producer, &policy.spec.data_product, statuses);
    if let Some(product) = granting {
        targets.extend(product.ports.values().cloned());
    }
    targets
}

/// Every ACL on the topics among `targets`.
pub async fn topic_acls(
    kafka: &dyn KafkaAdmin,
    targets: &BTreeSet<PortTarget>,
) -> Result<Vec<AclBinding>, Error> {
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
    Ok(actual)
}

/// Read the scope from the watch caches. Even the product itself comes from its store rather
/// than a GET: the store has seen every product event that triggered a reconcile before that
/// reconcile runs (see [`super::run`]), and any later change triggers the product's policies
/// again, so a GET would only narrow a window the next reconcile closes anyway.
pub fn read_scope(
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

impl Observation {
    /// An observation of `scope` and `live`.
    #[cfg(test)]
    pub fn of(scope: Scope, live: Live) -> Self {
        Self { scope, live }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::desired::tests::{consumer_product, policy};
    use super::*;
    use crate::api::domain::{DomainSpec, DomainStatus};
    use kube::runtime::{reflector, watcher};

    /// A store of Domains `names`, each owning the namespace `<name>-ns`.
    pub fn domain_store(names: &[&str]) -> Store<Domain> {
        store_of(names.iter().map(|name| {
            let spec: DomainSpec =
                serde_json::from_value(serde_json::json!({"namespace": format!("{name}-ns")}))
                    .unwrap();
            let mut domain = Domain::new(name, spec);
            domain.status = Some(DomainStatus {
                namespace: Some(format!("{name}-ns")),
                ..DomainStatus::default()
            });
            domain
        }))
    }

    /// A store that has seen a full list of `objects`.
    pub fn store_of<K>(objects: impl IntoIterator<Item = K>) -> Store<K>
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

    pub fn data_product(namespace: &str, name: &str) -> DataProduct {
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
        let domains = domain_store(&["payments", "marketing"]);
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

    #[test]
    fn a_copy_of_another_domains_product_has_no_ports_to_look_at() {
        let domains = domain_store(&["payments", "mallory"]);
        let products = store_of([
            data_product("payments-ns", "orders"),
            // mallory's copy, saying it is payments'.
            {
                let mut copy = data_product("mallory-ns", "orders");
                copy.spec.domain = "payments".into();
                copy
            },
        ]);
        let grant =
            serde_json::json!({"dataProduct": "orders", "consumers": [{"domain": "mallory"}]});
        let mut own = policy("p", grant.clone());
        own.metadata.namespace = Some("mallory-ns".into());
        let policies = store_of([own.clone()]);
        let scope = read_scope(&domains, &products, &policies, "mallory-ns", "orders");
        let Authority::Producer {
            domain, product, ..
        } = desired::authority("mallory-ns", scope.product.as_deref(), &scope.owners)
        else {
            panic!("mallory owns its namespace");
        };
        assert_eq!(domain, "mallory");
        assert!(
            targets(&own, &scope, &domain, product.as_ref()).is_empty(),
            "payments' topics and buckets are not mallory's to read or revoke"
        );

        let scope = read_scope(&domains, &products, &store_of([]), "payments-ns", "orders");
        let Authority::Producer { product, .. } =
            desired::authority("payments-ns", scope.product.as_deref(), &scope.owners)
        else {
            panic!("payments owns its namespace");
        };
        let mut theirs = policy("q", grant);
        theirs.metadata.namespace = Some("payments-ns".into());
        assert_eq!(
            targets(&theirs, &scope, "payments", product.as_ref()),
            BTreeSet::from([PortTarget::Topic("payments.orders.events".into())])
        );
    }
}
