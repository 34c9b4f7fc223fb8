//! Who may act for which domain: the trust boundary of the mesh. Pure.
//!
//! Authority comes from where an object lives, never from what its spec says. A Domain owns
//! the one namespace it made (or a cluster admin let it adopt), and records it in its
//! `status.namespace`, which only the operator writes. A DataProduct or AccessPolicy acts for
//! the domain that owns its namespace and for nothing else: one whose namespace no Domain
//! owns, or whose `spec.domain` names another domain, claims no name, counts against no quota,
//! grants, revokes, adopts and deletes nothing.
//!
//! Names a Domain may not take are here too: system namespaces, the operator's own, and the
//! platform's identities, whose credentials the operator would otherwise reset or delete.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;

use crate::api::conditions::Outcome;
use crate::api::data_product::DataProduct;
use crate::api::domain::Domain;
use crate::config::Settings;

/// The reason of an object in a namespace that no Domain owns.
pub const NAMESPACE_NOT_OWNED: &str = "NamespaceNotOwned";
/// The reason of an object whose `spec.domain` is not its namespace's domain.
pub const WRONG_NAMESPACE: &str = "WrongNamespace";
/// The reason of a product naming a topic or bucket that belongs to another domain.
pub const OWNED_BY_ANOTHER_DOMAIN: &str = "OwnedByAnotherDomain";
/// The reason of a Domain whose name or namespace is reserved.
pub const RESERVED_NAME: &str = "ReservedName";

/// The namespaces the Domains own, as their statuses record them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owners {
    /// Namespace to domain; a namespace two Domains record (which the Domain reconciler never
    /// lets happen) maps to `None` and so belongs to neither.
    by_namespace: BTreeMap<String, Option<String>>,
    /// Every Domain's name, for the bucket-name check.
    domains: BTreeSet<String>,
}

impl Owners {
    /// The owners recorded by `domains`.
    pub fn of<'a>(domains: impl IntoIterator<Item = &'a Domain>) -> Self {
        let mut owners = Self::default();
        for domain in domains {
            let name = domain.name_any();
            if let Some(namespace) = owned_namespace(domain) {
                owners
                    .by_namespace
                    .entry(namespace.to_owned())
                    .and_modify(|owner| *owner = None)
                    .or_insert_with(|| Some(name.clone()));
            }
            owners.domains.insert(name);
        }
        owners
    }

    /// The domain that owns `namespace`, if exactly one does.
    pub fn domain_of(&self, namespace: &str) -> Option<&str> {
        self.by_namespace.get(namespace)?.as_deref()
    }

    /// Whether an object in `namespace` that says it belongs to `domain` may act for it.
    pub fn may_act_for(&self, namespace: Option<&str>, domain: &str) -> bool {
        namespace.and_then(|ns| self.domain_of(ns)) == Some(domain)
    }

    /// Whether `product` acts for the domain its spec names: it lives in that domain's namespace.
    pub fn acts_for_its_domain(&self, product: &DataProduct) -> bool {
        self.may_act_for(product.namespace().as_deref(), &product.spec.domain)
    }

    /// Why an object of `kind` in `namespace` that says it belongs to `domain` may not act,
    /// if it may not. A namespace no Domain owns yet is waited for (`Reconciling`): delivered
    /// from Git, a product is often applied before its Domain has been reconciled, and Flux's
    /// `wait` and Argo CD would otherwise report a failure that resolves itself. A namespace
    /// another domain owns is `Stalled`: only a change to the object can fix that.
    pub fn refusal(&self, kind: &str, namespace: &str, domain: &str) -> Option<Outcome> {
        match self.domain_of(namespace) {
            None => Some(Outcome::reconciling(
                NAMESPACE_NOT_OWNED,
                format!(
                    "Namespace {namespace} belongs to no Domain (yet): a {kind} acts only for the domain that owns its namespace, so this one does nothing until its Domain is Ready. Apply the Domain, or create this {kind} in its domain's namespace."
                ),
            )),
            Some(owner) if owner != domain => Some(Outcome::stalled(
                WRONG_NAMESPACE,
                format!(
                    "Namespace {namespace} belongs to domain {owner}, not {domain}: a {kind} acts only for the domain that owns its namespace, so this one does nothing. Create it in domain {domain}'s namespace, or set spec.domain to {owner}."
                ),
            )),
            Some(_) => None,
        }
    }

    /// The domain whose bucket names `bucket` falls in, when that is not `domain`: buckets are
    /// `<domain>-<product>-<port>`, so domain `acme`'s product `pay-orders` would otherwise name
    /// domain `acme-pay`'s bucket of product `orders`. The longest domain name that prefixes the
    /// bucket owns it.
    pub fn bucket_domain_other_than(&self, bucket: &str, domain: &str) -> Option<&str> {
        self.domains
            .iter()
            .filter(|other| {
                bucket
                    .strip_prefix(other.as_str())
                    .is_some_and(|rest| rest.starts_with('-'))
            })
            .max_by_key(|other| other.len())
            .map(String::as_str)
            .filter(|owner| *owner != domain)
    }
}

/// The namespace a Domain owns: the one it recorded in its status once it made or adopted it.
pub fn owned_namespace(domain: &Domain) -> Option<&str> {
    domain.status.as_ref()?.namespace.as_deref()
}

/// Names a Domain may not use as its name or namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReservedNames {
    /// Namespaces no Domain may take: the operator's own, besides `default` and `kube-*`.
    pub namespaces: BTreeSet<String>,
    /// Identities of the platform (Kafka super users, the S3 admin), which a Domain of the
    /// same name would have its credentials reset, handed to it, or deleted.
    pub identities: BTreeSet<String>,
    /// Further names the platform team reserves (the operator's `reservedDomainNames`).
    pub names: BTreeSet<String>,
}

impl ReservedNames {
    /// The names the operator's configuration reserves: the operator's namespace, the
    /// platform's identities (the Kafka admin and super users, the S3 admin access key and
    /// user), and `reservedDomainNames`.
    pub fn from_settings(settings: &Settings, operator_namespace: &str) -> Self {
        // Compared as the admission policy compares them: lower-case, and a super user
        // written as a principal (`User:ops`) reserves its user name.
        let normal = |name: &String| {
            let name = name.strip_prefix("User:").unwrap_or(name);
            name.to_ascii_lowercase()
        };
        let admin_access_key = settings.s3.admin_access_key().map(str::to_owned);
        let identities = admin_access_key
            .iter()
            .chain(&settings.kafka.admin_user)
            .chain(&settings.kafka.super_users)
            .chain(&settings.s3.admin_user)
            .map(normal)
            .collect();
        Self {
            namespaces: BTreeSet::from([operator_namespace.to_owned()]),
            identities,
            names: settings.reserved_domain_names.iter().map(normal).collect(),
        }
    }

    /// Why a Domain called `name`, with namespace `namespace`, may not exist, if it may not.
    pub fn refusal(&self, name: &str, namespace: &str) -> Option<Outcome> {
        let why = |what: &str, value: &str| -> Option<String> {
            if value == "default" || value.starts_with("kube-") {
                Some(format!("{what} {value} is a Kubernetes system namespace"))
            } else if self.namespaces.contains(value) {
                Some(format!("{what} {value} is the operator's own namespace"))
            } else if self.identities.contains(value) {
                Some(format!(
                    "{what} {value} is a platform identity (a Kafka super user or the S3 admin), whose credentials a Domain of that name would take over"
                ))
            } else if self.names.contains(value) {
                Some(format!(
                    "{what} {value} is reserved by the platform team (reservedDomainNames)"
                ))
            } else {
                None
            }
        };
        let reason = why("The name", name).or_else(|| why("The namespace", namespace))?;
        Some(Outcome::stalled(
            RESERVED_NAME,
            format!("{reason}; the operator does nothing for this Domain. Choose another name."),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditions::Progress;
    use crate::api::domain::{DomainSpec, DomainStatus};
    use serde_json::json;

    fn domain(name: &str, namespace: Option<&str>) -> Domain {
        let mut d = Domain::new(
            name,
            serde_json::from_value::<DomainSpec>(json!({})).unwrap(),
        );
        d.status = namespace.map(|ns| DomainStatus {
            namespace: Some(ns.into()),
            ..DomainStatus::default()
        });
        d
    }

    fn product(namespace: &str, domain: &str) -> DataProduct {
        let mut p = crate::controller::data_product::desired::tests::product(
            "orders",
            1,
            json!({"domain": domain}),
        );
        p.metadata.namespace = Some(namespace.into());
        p
    }

    #[test]
    fn a_product_acts_only_for_the_domain_that_owns_its_namespace() {
        let domains = [
            domain("payments", Some("payments")),
            domain("marketing", Some("mkt")),
            domain("pending", None),
        ];
        let owners = Owners::of(&domains);
        assert!(owners.acts_for_its_domain(&product("payments", "payments")));
        assert!(owners.acts_for_its_domain(&product("mkt", "marketing")));
        // The spec names another domain: the copy in marketing's namespace acts for nobody.
        assert!(!owners.acts_for_its_domain(&product("mkt", "payments")));
        // A namespace named like a domain is not its namespace.
        assert!(!owners.acts_for_its_domain(&product("marketing", "marketing")));
        // A Domain that has not recorded a namespace owns none yet.
        assert!(!owners.acts_for_its_domain(&product("pending", "pending")));
        assert!(!owners.acts_for_its_domain(&product("elsewhere", "payments")));
    }

    #[test]
    fn refusals_say_whose_namespace_it_is() {
        let domains = [domain("payments", Some("payments"))];
        let owners = Owners::of(&domains);
        assert_eq!(owners.refusal("DataProduct", "payments", "payments"), None);
        let wrong = owners
            .refusal("DataProduct", "payments", "marketing")
            .unwrap();
        assert_eq!(wrong.reason, WRONG_NAMESPACE);
        assert!(
            wrong.message.contains("belongs to domain payments"),
            "{}",
            wrong.message
        );
        let unowned = owners
            .refusal("AccessPolicy", "team-b", "payments")
            .unwrap();
        assert_eq!(unowned.reason, NAMESPACE_NOT_OWNED);
        // Waited for: its Domain may be applied (or reconciled) later. The other domain's
        // namespace is final until the object changes.
        assert_eq!(unowned.progress, Progress::Reconciling);
        assert_eq!(wrong.progress, Progress::Stalled);
    }

    #[test]
    fn a_namespace_two_domains_record_belongs_to_neither() {
        let domains = [domain("a", Some("shared")), domain("b", Some("shared"))];
        let owners = Owners::of(&domains);
        assert_eq!(owners.domain_of("shared"), None);
        assert!(!owners.acts_for_its_domain(&product("shared", "a")));
    }

    #[test]
    fn a_bucket_name_belongs_to_the_longest_domain_that_prefixes_it() {
        let domains = [
            domain("acme", Some("acme")),
            domain("acme-pay", Some("acme-pay")),
        ];
        let owners = Owners::of(&domains);
        // acme's product pay-orders, port lake: acme-pay's product orders, port lake.
        assert_eq!(
            owners.bucket_domain_other_than("acme-pay-orders-lake", "acme"),
            Some("acme-pay")
        );
        assert_eq!(
            owners.bucket_domain_other_than("acme-pay-orders-lake", "acme-pay"),
            None
        );
        assert_eq!(
            owners.bucket_domain_other_than("acme-orders-lake", "acme"),
            None
        );
        assert_eq!(
            owners.bucket_domain_other_than("acme-payroll-lake", "acme"),
            None,
            "acme-payroll is not acme-pay's"
        );
    }

    #[test]
    fn reserved_names_cover_system_namespaces_the_operator_and_platform_identities() {
        let reserved = ReservedNames {
            namespaces: BTreeSet::from(["datamesh-system".to_owned()]),
            identities: BTreeSet::from(["admin".to_owned(), "datamesh-admin".to_owned()]),
            names: BTreeSet::from(["finance".to_owned()]),
        };
        for (name, namespace) in [
            ("default", "default"),
            ("payments", "kube-system"),
            ("kube-public", "payments"),
            ("payments", "datamesh-system"),
            ("admin", "team-admin"),
            ("datamesh-admin", "x"),
            ("finance", "finance"),
            ("payments", "finance"),
        ] {
            let refusal = reserved.refusal(name, namespace);
            assert_eq!(
                refusal.as_ref().map(|o| o.reason.as_str()),
                Some(RESERVED_NAME),
                "{name}/{namespace}"
            );
        }
        assert_eq!(reserved.refusal("payments", "payments"), None);
        assert_eq!(reserved.refusal("administration", "administration"), None);
    }
}
