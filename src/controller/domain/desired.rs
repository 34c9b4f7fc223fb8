//! The Kubernetes objects a Domain should have, computed from its spec alone. Pure.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    Namespace, ResourceQuota, ResourceQuotaSpec, Secret, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::ObjectMeta;

use kube::ResourceExt;

use crate::api::conditions::Outcome;
use crate::api::domain::{Domain, OwnerKind};
use crate::api::naming::kafka_principal;
use crate::controller::apply::{DOMAIN_LABEL, domain_labels};
use crate::provision::kafka::{KafkaSecurityProtocol, ScramMechanism};

/// The ServiceAccount the domain's workloads (Spark jobs, consumers) run as.
pub const WORKLOAD_SERVICE_ACCOUNT: &str = "datamesh-workload";
/// The RoleBinding that makes the owners admins of the domain's namespace.
pub const ADMIN_ROLE_BINDING: &str = "datamesh-domain-admins";
/// The ResourceQuota that caps how many DataProducts the namespace holds.
pub const RESOURCE_QUOTA: &str = "datamesh-domain-quota";
/// The quota key counting DataProducts (object-count quota on a custom resource).
pub const DATA_PRODUCT_COUNT: &str = "count/dataproducts.datamesh.dev";

/// Annotation a cluster admin puts on an existing namespace to let the Domain it names take it
/// over. Without it, the operator never takes a namespace it did not create.
pub const ADOPT_NAMESPACE_ANNOTATION: &str = "datamesh.dev/adopt-by-domain";
/// Annotation the operator puts on a namespace it created for a Domain. Only a namespace that
/// carries it is ever deleted (by `deletionPolicy: Delete`); an adopted one is always kept.
pub const CREATED_FOR_ANNOTATION: &str = "datamesh.dev/created-for-domain";
/// Annotation a cluster admin puts on a Domain (`"true"`) to let it take over a Kafka user and
/// an IAM user of its name that the operator did not create, or whose record was lost.
pub const ADOPT_IDENTITIES_ANNOTATION: &str = "datamesh.dev/adopt-identities";

/// Keys of the credentials Secret, named as the clients' own environment variables so that a
/// workload can take them with `envFrom`.
pub mod keys {
    pub const KAFKA_BOOTSTRAP_SERVERS: &str = "KAFKA_BOOTSTRAP_SERVERS";
    pub const KAFKA_SECURITY_PROTOCOL: &str = "KAFKA_SECURITY_PROTOCOL";
    pub const KAFKA_SASL_MECHANISM: &str = "KAFKA_SASL_MECHANISM";
    pub const KAFKA_USERNAME: &str = "KAFKA_USERNAME";
    pub const KAFKA_PASSWORD: &str = "KAFKA_PASSWORD";
    /// The CA certificate (PEM) of the brokers, when the protocol is SASL_SSL and a CA is
    /// configured (absent: the system's CAs).
    pub const KAFKA_CA_CERT: &str = "KAFKA_CA_CERT";
    pub const S3_ENDPOINT: &str = "AWS_ENDPOINT_URL_S3";
    pub const S3_REGION: &str = "AWS_REGION";
    pub const S3_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
    pub const S3_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
    /// PEM of the CAs the S3 endpoint's certificate is checked against, present when the
    /// operator is configured with one: mounted as a file, it is what `AWS_CA_BUNDLE` names.
    pub const S3_CA_BUNDLE: &str = "AWS_CA_BUNDLE_PEM";
    /// When the AWS SDKs add a checksum to a request: [`super::REQUEST_CHECKSUMS`].
    pub const S3_REQUEST_CHECKSUM_CALCULATION: &str = "AWS_REQUEST_CHECKSUM_CALCULATION";
}

/// What the credentials Secret sets `AWS_REQUEST_CHECKSUM_CALCULATION` to: checksums only on
/// the requests whose API requires one. Newer SDKs (boto3 1.36, the AWS CLI 2.23, the Java SDK
/// 2.30) otherwise stream uploads with a trailing checksum (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`),
/// and SeaweedFS (4.48) refuses such an upload when a bucket policy is what allows it, which is
/// how a domain's access is granted (measured: PutObject and multipart uploads AccessDenied,
/// the same with `when_required` allowed). AWS S3 accepts either; a workload that wants
/// trailing checksums sets the variable itself (`env` wins over `envFrom`).
pub const REQUEST_CHECKSUMS: &str = "when_required";

/// The name of a domain's credentials Secret.
pub fn credentials_secret_name(domain: &str) -> String {
    format!("{domain}-credentials")
}

/// The object-store (IAM) user of a domain: the domain's name.
pub fn storage_user(domain: &str) -> String {
    domain.to_owned()
}

/// The tags of a domain's IAM user: its domain and manager, as the labels of its Kubernetes
/// objects (IAM allows `/`, `.` and `-` in tag keys).
pub fn storage_user_tags(domain: &str) -> crate::provision::storage::UserTags {
    domain_labels(domain)
}

/// The Kafka user (SCRAM user name) of a domain: the domain's name, so its principal is `User:<domain>`.
pub fn kafka_user(domain: &str) -> String {
    domain.to_owned()
}

fn meta(name: &str, namespace: Option<&str>, domain: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(domain_labels(domain)),
        ..ObjectMeta::default()
    }
}

/// The domain's namespace, labelled with the domain; `created` marks it as made by the operator
/// (see [`CREATED_FOR_ANNOTATION`]).
pub fn namespace(domain: &Domain, created: bool) -> Namespace {
    let name = domain.metadata.name.as_deref().unwrap_or_default();
    let mut metadata = meta(&domain.namespace_name(), None, name);
    if created {
        metadata.annotations = Some(BTreeMap::from([(
            CREATED_FOR_ANNOTATION.to_owned(),
            name.to_owned(),
        )]));
    }
    Namespace {
        metadata,
        ..Namespace::default()
    }
}

/// What to do about the namespace a Domain names.
#[derive(Clone, Debug, PartialEq)]
pub enum NamespaceStep {
    /// It does not exist: create it (and only then mark it as created by the operator).
    Create,
    /// It is the domain's: keep it labelled. `created` when the operator made it.
    Keep {
        /// The operator created it for this domain.
        created: bool,
    },
    /// It is not the domain's to take; nothing in it is touched.
    Refuse(Outcome),
}

/// Decide about the namespace `domain` names, given how it is (`None`: missing). A namespace
/// belongs to a domain when it carries the domain's label (the operator made or adopted it, or
/// a cluster admin labelled it), or a cluster admin annotated it for adoption by the domain.
pub fn namespace_step(domain: &str, namespace: &str, live: Option<&Namespace>) -> NamespaceStep {
    let Some(live) = live else {
        return NamespaceStep::Create;
    };
    let annotation = |key: &str| live.annotations().get(key).map(String::as_str);
    let created = annotation(CREATED_FOR_ANNOTATION) == Some(domain);
    match live.labels().get(DOMAIN_LABEL) {
        Some(owner) if owner == domain => NamespaceStep::Keep { created },
        Some(owner) => NamespaceStep::Refuse(Outcome::stalled(
            "NamespaceTaken",
            format!(
                "Namespace {namespace} belongs to domain {owner}; the operator changes nothing in it. Choose another spec.namespace."
            ),
        )),
        None if annotation(ADOPT_NAMESPACE_ANNOTATION) == Some(domain) => {
            NamespaceStep::Keep { created: false }
        }
        None => NamespaceStep::Refuse(Outcome::stalled(
            "NamespaceNotAdoptable",
            format!(
                "Namespace {namespace} already exists and was not made for domain {domain}; the operator changes nothing in it. A cluster admin can let the domain take it over with the annotation {ADOPT_NAMESPACE_ANNOTATION}={domain} on the namespace, or choose another spec.namespace."
            ),
        )),
    }
}

/// Whether the Domain's status records its Kafka and IAM users as made by the operator. The
/// operator records them before it creates them, and changes or deletes only recorded ones.
pub fn identities_recorded(domain: &Domain) -> bool {
    let name = domain.name_any();
    domain.status.as_ref().is_some_and(|status| {
        status.kafka_principal.as_deref() == Some(kafka_principal(&kafka_user(&name)).as_str())
            && status.storage_user.as_deref() == Some(storage_user(&name).as_str())
    })
}

/// Why the operator may not take the domain's identities, when they exist without its record:
/// a Kafka user or IAM user of that name made by someone else. `None` when none exists, or a
/// cluster admin let the Domain adopt them ([`ADOPT_IDENTITIES_ANNOTATION`]).
pub fn unowned_identities(
    domain: &Domain,
    kafka_user_exists: bool,
    storage_user_exists: bool,
) -> Option<Outcome> {
    if domain
        .annotations()
        .get(ADOPT_IDENTITIES_ANNOTATION)
        .is_some_and(|value| value == "true")
    {
        return None;
    }
    let name = domain.name_any();
    let existing: Vec<String> = [
        kafka_user_exists.then(|| format!("Kafka user {}", kafka_user(&name))),
        storage_user_exists.then(|| format!("object-storage (IAM) user {}", storage_user(&name))),
    ]
    .into_iter()
    .flatten()
    .collect();
    if existing.is_empty() {
        return None;
    }
    Some(Outcome::stalled(
        "IdentityNotOwned",
        format!(
            "The {} already exist(s) and the operator did not create it for this Domain, so it changes nothing: it never resets, hands out or deletes credentials it did not make. Rename the Domain, or a cluster admin can let it adopt them with the annotation {ADOPT_IDENTITIES_ANNOTATION}=true on the Domain.",
            existing.join(" and ")
        ),
    ))
}

/// The ServiceAccount for the domain's workloads.
pub fn service_account(domain: &Domain) -> ServiceAccount {
    let name = domain.metadata.name.as_deref().unwrap_or_default();
    ServiceAccount {
        metadata: meta(
            WORKLOAD_SERVICE_ACCOUNT,
            Some(&domain.namespace_name()),
            name,
        ),
        ..ServiceAccount::default()
    }
}

/// The RoleBinding of the owners to the domain-admin ClusterRole, in the domain's namespace.
pub fn admin_role_binding(domain: &Domain, cluster_role: &str) -> RoleBinding {
    let name = domain.metadata.name.as_deref().unwrap_or_default();
    let subjects: Vec<Subject> = domain
        .spec
        .owners
        .iter()
        .map(|owner| match owner.kind {
            OwnerKind::ServiceAccount => Subject {
                kind: "ServiceAccount".into(),
                name: owner.name.clone(),
                namespace: owner.namespace.clone(),
                api_group: None,
            },
            OwnerKind::User | OwnerKind::Group => Subject {
                kind: if owner.kind == OwnerKind::User {
                    "User"
                } else {
                    "Group"
                }
                .into(),
                name: owner.name.clone(),
                namespace: None,
                api_group: Some("rbac.authorization.k8s.io".into()),
            },
        })
        .collect();
    RoleBinding {
        metadata: meta(ADMIN_ROLE_BINDING, Some(&domain.namespace_name()), name),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: cluster_role.to_owned(),
        },
        // Always declared, even empty, so that removing the last owner removes its binding.
        subjects: Some(subjects),
    }
}

/// The ResourceQuota that caps the number of DataProducts, when the domain sets that quota.
/// The API server enforces it at admission, so a product past the limit is refused outright.
pub fn resource_quota(domain: &Domain) -> Option<ResourceQuota> {
    let max = domain.spec.quotas.as_ref()?.max_data_products?;
    let name = domain.metadata.name.as_deref().unwrap_or_default();
    Some(ResourceQuota {
        metadata: meta(RESOURCE_QUOTA, Some(&domain.namespace_name()), name),
        spec: Some(ResourceQuotaSpec {
            hard: Some(BTreeMap::from([(
                DATA_PRODUCT_COUNT.to_owned(),
                Quantity(max.to_string()),
            )])),
            ..ResourceQuotaSpec::default()
        }),
        ..ResourceQuota::default()
    })
}

/// Whether the quota controller has counted `live` against the limits of `desired`: its
/// `status.hard` equals the declared `spec.hard`, and `status.used` has a count for each (the
/// controller counts a custom resource only once its discovery has found the CRD).
pub fn quota_counted(desired: &ResourceQuota, live: Option<&ResourceQuota>) -> bool {
    let Some(want) = desired.spec.as_ref().and_then(|spec| spec.hard.as_ref()) else {
        return false;
    };
    let Some(status) = live.and_then(|quota| quota.status.as_ref()) else {
        return false;
    };
    status.hard.as_ref() == Some(want)
        && status
            .used
            .as_ref()
            .is_some_and(|used| want.keys().all(|key| used.contains_key(key)))
}

/// What the credentials Secret holds.
pub struct Credentials<'a> {
    pub kafka_bootstrap_servers: &'a str,
    pub kafka_security_protocol: KafkaSecurityProtocol,
    pub kafka_sasl_mechanism: ScramMechanism,
    /// Written only with a TLS protocol.
    pub kafka_ca_certificate: Option<&'a str>,
    pub kafka_password: &'a str,
    pub s3_endpoint: &'a str,
    pub s3_region: &'a str,
    pub s3_access_key_id: &'a str,
    pub s3_secret_access_key: &'a str,
    /// PEM of the S3 endpoint's CAs, when the operator has one configured.
    pub s3_ca_bundle: Option<&'a str>,
}

/// The Secret with the domain's Kafka and object-storage credentials.
pub fn credentials_secret(domain: &Domain, credentials: &Credentials<'_>) -> Secret {
    let name = domain.metadata.name.as_deref().unwrap_or_default();
    let data = [
        (
            keys::KAFKA_BOOTSTRAP_SERVERS,
            credentials.kafka_bootstrap_servers,
        ),
        (
            keys::KAFKA_SECURITY_PROTOCOL,
            credentials.kafka_security_protocol.as_str(),
        ),
        (
            keys::KAFKA_SASL_MECHANISM,
            credentials.kafka_sasl_mechanism.as_str(),
        ),
        (keys::KAFKA_USERNAME, &kafka_user(name)),
        (keys::KAFKA_PASSWORD, credentials.kafka_password),
        (keys::S3_ENDPOINT, credentials.s3_endpoint),
        (keys::S3_REGION, credentials.s3_region),
        (keys::S3_ACCESS_KEY_ID, credentials.s3_access_key_id),
        (keys::S3_SECRET_ACCESS_KEY, credentials.s3_secret_access_key),
        (keys::S3_REQUEST_CHECKSUM_CALCULATION, REQUEST_CHECKSUMS),
    ]
    .into_iter()
    .chain(
        credentials
            .kafka_ca_certificate
            .filter(|_| credentials.kafka_security_protocol.uses_tls())
            .map(|ca| (keys::KAFKA_CA_CERT, ca)),
    )
    .chain(
        credentials
            .s3_ca_bundle
            .map(|pem| (keys::S3_CA_BUNDLE, pem)),
    )
    .map(|(key, value)| (key.to_owned(), ByteString(value.as_bytes().to_vec())))
    .collect();
    Secret {
        metadata: meta(
            &credentials_secret_name(name),
            Some(&domain.namespace_name()),
            name,
        ),
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Secret::default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::domain::{DomainQuotas, DomainSpec, Owner};

    fn domain(yaml: &str) -> Domain {
        let spec: DomainSpec = serde_yaml::from_str(yaml).unwrap();
        Domain::new("payments", spec)
    }

    #[test]
    fn the_namespace_defaults_to_the_domain_name_and_is_labelled() {
        let ns = namespace(&domain("{}"), false);
        assert_eq!(ns.metadata.name.as_deref(), Some("payments"));
        let labels = ns.metadata.labels.unwrap();
        assert_eq!(labels["datamesh.dev/domain"], "payments");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "datamesh-operator");
        assert_eq!(
            namespace(&domain("namespace: pay"), false)
                .metadata
                .name
                .as_deref(),
            Some("pay")
        );
    }

    /// A namespace named payments as someone left it, with these labels and annotations.
    pub(crate) fn live_namespace(
        labels: &[(&str, &str)],
        annotations: &[(&str, &str)],
    ) -> Namespace {
        let map = |pairs: &[(&str, &str)]| {
            Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )
        };
        Namespace {
            metadata: ObjectMeta {
                name: Some("payments".into()),
                labels: map(labels),
                annotations: map(annotations),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        }
    }

    #[test]
    fn a_namespace_is_created_kept_adopted_only_when_marked_or_refused() {
        assert_eq!(
            namespace_step("payments", "payments", None),
            NamespaceStep::Create
        );
        let made = live_namespace(
            &[(DOMAIN_LABEL, "payments")],
            &[(CREATED_FOR_ANNOTATION, "payments")],
        );
        assert_eq!(
            namespace_step("payments", "payments", Some(&made)),
            NamespaceStep::Keep { created: true }
        );
        let adopted = live_namespace(&[(DOMAIN_LABEL, "payments")], &[]);
        assert_eq!(
            namespace_step("payments", "payments", Some(&adopted)),
            NamespaceStep::Keep { created: false }
        );
        let marked = live_namespace(&[], &[(ADOPT_NAMESPACE_ANNOTATION, "payments")]);
        assert_eq!(
            namespace_step("payments", "payments", Some(&marked)),
            NamespaceStep::Keep { created: false }
        );
        let reason = |step| match step {
            NamespaceStep::Refuse(outcome) => outcome.reason,
            other => panic!("expected a refusal, got {other:?}"),
        };
        let plain = live_namespace(&[], &[]);
        assert_eq!(
            reason(namespace_step("payments", "payments", Some(&plain))),
            "NamespaceNotAdoptable"
        );
        let for_another = live_namespace(&[], &[(ADOPT_NAMESPACE_ANNOTATION, "marketing")]);
        assert_eq!(
            reason(namespace_step("payments", "payments", Some(&for_another))),
            "NamespaceNotAdoptable"
        );
        // A created-for annotation alone (copied by someone) is no claim to the namespace.
        let forged = live_namespace(&[], &[(CREATED_FOR_ANNOTATION, "payments")]);
        assert_eq!(
            reason(namespace_step("payments", "payments", Some(&forged))),
            "NamespaceNotAdoptable"
        );
        let taken = live_namespace(&[(DOMAIN_LABEL, "marketing")], &[]);
        assert_eq!(
            reason(namespace_step("payments", "payments", Some(&taken))),
            "NamespaceTaken"
        );
    }

    #[test]
    fn only_a_namespace_the_operator_created_is_marked_as_created() {
        let created = namespace(&domain("{}"), true);
        assert_eq!(
            created.metadata.annotations.unwrap()[CREATED_FOR_ANNOTATION],
            "payments"
        );
        assert_eq!(namespace(&domain("{}"), false).metadata.annotations, None);
    }

    #[test]
    fn identities_the_operator_did_not_record_are_not_taken() {
        let mut d = domain("{}");
        assert!(!identities_recorded(&d));
        assert_eq!(unowned_identities(&d, false, false), None);
        let refused = unowned_identities(&d, true, false).unwrap();
        assert_eq!(refused.reason, "IdentityNotOwned");
        assert!(
            refused.message.contains("Kafka user payments"),
            "{}",
            refused.message
        );
        let both = unowned_identities(&d, true, true).unwrap();
        assert!(
            both.message.contains("IAM) user payments"),
            "{}",
            both.message
        );
        d.status = Some(crate::api::domain::DomainStatus {
            kafka_principal: Some("User:payments".into()),
            storage_user: Some("payments".into()),
            ..Default::default()
        });
        assert!(identities_recorded(&d));
        let mut adopting = domain("{}");
        adopting.metadata.annotations = Some(BTreeMap::from([(
            ADOPT_IDENTITIES_ANNOTATION.to_owned(),
            "true".to_owned(),
        )]));
        assert_eq!(unowned_identities(&adopting, true, true), None);
    }

    #[test]
    fn owners_become_subjects_of_the_admin_binding() {
        let mut d = domain("{}");
        d.spec.owners = vec![
            Owner {
                kind: OwnerKind::Group,
                name: "payments-team".into(),
                namespace: None,
            },
            Owner {
                kind: OwnerKind::User,
                name: "alice@example.com".into(),
                namespace: None,
            },
            Owner {
                kind: OwnerKind::ServiceAccount,
                name: "ci".into(),
                namespace: Some("build".into()),
            },
        ];
        let binding = admin_role_binding(&d, "datamesh-domain-admin");
        assert_eq!(binding.role_ref.kind, "ClusterRole");
        assert_eq!(binding.role_ref.name, "datamesh-domain-admin");
        assert_eq!(binding.metadata.namespace.as_deref(), Some("payments"));
        let subjects = binding.subjects.unwrap();
        assert_eq!(
            subjects
                .iter()
                .map(|s| (s.kind.as_str(), s.name.as_str()))
                .collect::<Vec<_>>(),
            [
                ("Group", "payments-team"),
                ("User", "alice@example.com"),
                ("ServiceAccount", "ci")
            ]
        );
        assert_eq!(subjects[2].namespace.as_deref(), Some("build"));
        assert_eq!(subjects[2].api_group, None);
    }

    #[test]
    fn a_quota_exists_only_when_max_data_products_is_set() {
        assert!(resource_quota(&domain("{}")).is_none());
        let mut d = domain("{}");
        d.spec.quotas = Some(DomainQuotas {
            max_data_products: None,
            max_partitions: Some(10),
        });
        assert!(resource_quota(&d).is_none());
        d.spec.quotas = Some(DomainQuotas {
            max_data_products: Some(5),
            max_partitions: None,
        });
        let quota = resource_quota(&d).unwrap();
        assert_eq!(
            quota.spec.unwrap().hard.unwrap()[DATA_PRODUCT_COUNT],
            Quantity("5".into())
        );
    }

    #[test]
    fn a_quota_counts_once_its_status_shows_the_declared_limits() {
        let mut d = domain("{}");
        d.spec.quotas = Some(DomainQuotas {
            max_data_products: Some(5),
            max_partitions: None,
        });
        let desired = resource_quota(&d).unwrap();
        assert!(!quota_counted(&desired, None));
        let mut live = desired.clone();
        assert!(!quota_counted(&desired, Some(&live)), "no status yet");
        live.status = Some(k8s_openapi::api::core::v1::ResourceQuotaStatus {
            hard: desired.spec.as_ref().unwrap().hard.clone(),
            used: None,
        });
        assert!(
            !quota_counted(&desired, Some(&live)),
            "limits known, usage not yet counted"
        );
        live.status.as_mut().unwrap().used = Some(BTreeMap::from([(
            DATA_PRODUCT_COUNT.to_owned(),
            Quantity("0".into()),
        )]));
        assert!(quota_counted(&desired, Some(&live)));
        d.spec.quotas = Some(DomainQuotas {
            max_data_products: Some(6),
            max_partitions: None,
        });
        assert!(
            !quota_counted(&resource_quota(&d).unwrap(), Some(&live)),
            "old limits counted"
        );
    }

    #[test]
    fn the_credentials_secret_holds_both_systems_under_env_var_keys() {
        let secret = credentials_secret(
            &domain("{}"),
            &Credentials {
                kafka_bootstrap_servers: "127.0.0.1:29094",
                kafka_security_protocol: KafkaSecurityProtocol::SaslSsl,
                kafka_sasl_mechanism: ScramMechanism::Sha512,
                kafka_ca_certificate: Some("-----BEGIN CERTIFICATE-----\nCA\n"),
                kafka_password: "pw",
                s3_endpoint: "http://127.0.0.1:28333",
                s3_region: "us-east-1",
                s3_access_key_id: "AK",
                s3_secret_access_key: "SK",
                s3_ca_bundle: None,
            },
        );
        assert_eq!(
            secret.metadata.name.as_deref(),
            Some("payments-credentials")
        );
        let data = secret.data.unwrap();
        assert_eq!(data[keys::KAFKA_BOOTSTRAP_SERVERS].0, b"127.0.0.1:29094");
        assert_eq!(data[keys::KAFKA_USERNAME].0, b"payments");
        assert_eq!(data[keys::KAFKA_PASSWORD].0, b"pw");
        assert_eq!(data[keys::S3_ACCESS_KEY_ID].0, b"AK");
        assert_eq!(data[keys::S3_SECRET_ACCESS_KEY].0, b"SK");
        assert_eq!(data[keys::KAFKA_SECURITY_PROTOCOL].0, b"SASL_SSL");
        assert_eq!(data[keys::KAFKA_SASL_MECHANISM].0, b"SCRAM-SHA-512");
        assert_eq!(
            data[keys::KAFKA_CA_CERT].0,
            b"-----BEGIN CERTIFICATE-----\nCA\n"
        );
    }

    #[test]
    fn the_credentials_secret_says_the_configured_protocol_and_mechanism_and_no_ca_without_tls() {
        let credentials = |ca| Credentials {
            kafka_bootstrap_servers: "kafka:9092",
            kafka_security_protocol: KafkaSecurityProtocol::SaslPlaintext,
            kafka_sasl_mechanism: ScramMechanism::Sha256,
            kafka_ca_certificate: ca,
            kafka_password: "pw",
            s3_endpoint: "http://s3",
            s3_region: "us-east-1",
            s3_access_key_id: "AK",
            s3_secret_access_key: "SK",
            s3_ca_bundle: None,
        };
        for ca in [None, Some("CA")] {
            let data = credentials_secret(&domain("{}"), &credentials(ca))
                .data
                .unwrap();
            assert_eq!(data[keys::KAFKA_SECURITY_PROTOCOL].0, b"SASL_PLAINTEXT");
            assert_eq!(data[keys::KAFKA_SASL_MECHANISM].0, b"SCRAM-SHA-256");
            assert!(!data.contains_key(keys::KAFKA_CA_CERT));
        }
        let tls = Credentials {
            kafka_security_protocol: KafkaSecurityProtocol::SaslSsl,
            ..credentials(None)
        };
        let data = credentials_secret(&domain("{}"), &tls).data.unwrap();
        assert!(
            !data.contains_key(keys::KAFKA_CA_CERT),
            "no CA configured: the system's CAs"
        );
        assert!(!data.contains_key(keys::S3_CA_BUNDLE));
    }

    #[test]
    fn the_credentials_secret_carries_the_s3_ca_when_one_is_configured() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let secret = credentials_secret(
            &domain("{}"),
            &Credentials {
                kafka_bootstrap_servers: "127.0.0.1:29092",
                kafka_security_protocol: KafkaSecurityProtocol::SaslSsl,
                kafka_sasl_mechanism: ScramMechanism::Sha512,
                kafka_ca_certificate: None,
                kafka_password: "pw",
                s3_endpoint: "https://127.0.0.1:28333",
                s3_region: "eu-west-1",
                s3_access_key_id: "AK",
                s3_secret_access_key: "SK",
                s3_ca_bundle: Some(pem),
            },
        );
        let data = secret.data.unwrap();
        assert_eq!(data[keys::S3_CA_BUNDLE].0, pem.as_bytes());
        assert_eq!(data[keys::S3_ENDPOINT].0, b"https://127.0.0.1:28333");
        assert_eq!(data[keys::S3_REGION].0, b"eu-west-1");
        assert_eq!(
            data[keys::S3_REQUEST_CHECKSUM_CALCULATION].0,
            b"when_required"
        );
    }
}
