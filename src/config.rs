//! The operator's configuration: where the Kafka cluster and the S3 service are, and where
//! their admin credentials come from.
//!
//! Settings come from a YAML file (`--config`, as the Helm chart mounts it) and single fields
//! can be set or overridden by `DATAMESH_*` environment variables. Credentials are never
//! plain values: each names a file or a Kubernetes Secret key, resolved at start-up into a
//! [`SecretString`] that refuses to print itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use serde::Deserialize;

pub use crate::provision::kafka::{KafkaSecurityProtocol, ScramMechanism};
pub use crate::provision::storage::{Addressing, RetryMode};
pub use crate::secret::SecretString;

/// What can go wrong loading the configuration. Messages name the setting, never its value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("setting {0} is required (in the config file or its environment variable)")]
    Missing(&'static str),
    #[error("setting {setting} is not valid: {reason}")]
    Invalid {
        setting: &'static str,
        reason: String,
    },
    #[error("cannot read the {setting} credential from file {path}: {source}")]
    SecretFile {
        setting: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the {setting} credential from Secret {namespace}/{name}: {source}")]
    SecretRead {
        setting: &'static str,
        namespace: String,
        name: String,
        source: Box<kube::Error>,
    },
    #[error("Secret {namespace}/{name} has no key {key} for the {setting} credential")]
    SecretKeyMissing {
        setting: &'static str,
        namespace: String,
        name: String,
        key: String,
    },
}

/// Where a credential is read from: a file (a mounted Secret volume) or a key of a
/// Kubernetes Secret the operator may read. In YAML: `{file: PATH}` or
/// `{secretKeyRef: {namespace: NS, name: NAME, key: KEY}}`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(from = "SecretSourceYaml")]
pub enum SecretSource {
    /// A file whose whole content (trailing newline trimmed) is the credential.
    File(PathBuf),
    /// A key of a Secret.
    SecretKeyRef {
        namespace: String,
        name: String,
        key: String,
    },
}

/// The YAML shape of a [`SecretSource`]: a one-key map, as Kubernetes writes such references.
#[derive(Deserialize)]
#[serde(untagged)]
enum SecretSourceYaml {
    File {
        file: PathBuf,
    },
    SecretKeyRef {
        #[serde(rename = "secretKeyRef")]
        secret_key_ref: SecretKeyRef,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretKeyRef {
    namespace: String,
    name: String,
    key: String,
}

impl From<SecretSourceYaml> for SecretSource {
    fn from(yaml: SecretSourceYaml) -> Self {
        match yaml {
            SecretSourceYaml::File { file } => Self::File(file),
            SecretSourceYaml::SecretKeyRef { secret_key_ref } => Self::SecretKeyRef {
                namespace: secret_key_ref.namespace,
                name: secret_key_ref.name,
                key: secret_key_ref.key,
            },
        }
    }
}

impl SecretSource {
    /// Parse the environment-variable form: a path for a file, or `secret:NAMESPACE/NAME/KEY`.
    fn parse(setting: &'static str, value: &str) -> Result<Self, ConfigError> {
        let Some(reference) = value.strip_prefix("secret:") else {
            return Ok(Self::File(PathBuf::from(value)));
        };
        match reference.split('/').collect::<Vec<_>>().as_slice() {
            [namespace, name, key]
                if !namespace.is_empty() && !name.is_empty() && !key.is_empty() =>
            {
                Ok(Self::SecretKeyRef {
                    namespace: (*namespace).to_owned(),
                    name: (*name).to_owned(),
                    key: (*key).to_owned(),
                })
            }
            _ => Err(ConfigError::Invalid {
                setting,
                reason: "a Secret reference is written secret:NAMESPACE/NAME/KEY".into(),
            }),
        }
    }

    /// Read the credential.
    pub async fn resolve(
        &self,
        setting: &'static str,
        client: &Client,
    ) -> Result<SecretString, ConfigError> {
        match self {
            Self::File(path) => read_secret_file(setting, path),
            Self::SecretKeyRef {
                namespace,
                name,
                key,
            } => {
                let secret = Api::<Secret>::namespaced(client.clone(), namespace)
                    .get(name)
                    .await
                    .map_err(|source| ConfigError::SecretRead {
                        setting,
                        namespace: namespace.clone(),
                        name: name.clone(),
                        source: Box::new(source),
                    })?;
                secret_value(&secret, key).ok_or_else(|| ConfigError::SecretKeyMissing {
                    setting,
                    namespace: namespace.clone(),
                    name: name.clone(),
                    key: key.clone(),
                })
            }
        }
    }
}

fn read_secret_file(setting: &'static str, path: &Path) -> Result<SecretString, ConfigError> {
    let content = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
        setting,
        path: path.to_owned(),
        source,
    })?;
    Ok(SecretString::new(content.trim_end_matches(['\n', '\r'])))
}

/// The value of one key of a Secret, from `data` or `stringData`.
pub fn secret_value(secret: &Secret, key: &str) -> Option<SecretString> {
    if let Some(bytes) = secret.data.as_ref().and_then(|data| data.get(key)) {
        return String::from_utf8(bytes.0.clone())
            .ok()
            .map(SecretString::new);
    }
    secret
        .string_data
        .as_ref()
        .and_then(|data| data.get(key))
        .map(|value| SecretString::new(value.clone()))
}

/// The configuration as written: file fields, all optional so the environment can fill them.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileSettings {
    #[serde(default)]
    kafka: FileKafka,
    #[serde(default)]
    s3: FileS3,
    resync_seconds: Option<u64>,
    domain_admin_cluster_role: Option<String>,
    spark_driver_cluster_role: Option<String>,
    #[serde(default)]
    reserved_domain_names: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileKafka {
    bootstrap_servers: Option<String>,
    security_protocol: Option<String>,
    sasl_mechanism: Option<String>,
    admin_user: Option<String>,
    admin_password: Option<SecretSource>,
    #[serde(default)]
    tls: FileKafkaTls,
    domain_bootstrap_servers: Option<String>,
    domain_security_protocol: Option<String>,
    default_replicas: Option<i32>,
    #[serde(default)]
    super_users: Vec<String>,
    batch_window_millis: Option<u64>,
    batch_max_items: Option<usize>,
    snapshot_refresh_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileKafkaTls {
    ca_certificate: Option<SecretSource>,
    client_certificate: Option<SecretSource>,
    client_key: Option<SecretSource>,
    verify_hostname: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileS3 {
    endpoint: Option<String>,
    iam_endpoint: Option<String>,
    region: Option<String>,
    iam_region: Option<String>,
    addressing: Option<String>,
    credentials: Option<String>,
    admin_access_key: Option<String>,
    admin_secret_key: Option<SecretSource>,
    admin_user: Option<String>,
    ca_bundle: Option<SecretSource>,
    retry_mode: Option<String>,
    max_attempts: Option<u32>,
}

/// The Kafka cluster the operator manages topics, ACLs and SCRAM users in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `host:port[,host:port...]` of the listener the operator connects to.
    pub bootstrap_servers: String,
    /// How the operator connects: SASL_SSL (the default), SASL_PLAINTEXT, SSL or PLAINTEXT.
    pub security_protocol: KafkaSecurityProtocol,
    /// The SCRAM mechanism of the admin's login (with SASL) and of the domains' credentials.
    pub sasl_mechanism: ScramMechanism,
    /// The admin user: its SCRAM user with SASL; with SSL, the user name its certificate maps
    /// to, if given (only to reserve it). A super user of the cluster.
    pub admin_user: Option<String>,
    /// Where the admin user's password is read from (SASL only).
    pub admin_password: Option<SecretSource>,
    /// CA, client certificate and hostname verification for the TLS protocols.
    pub tls: KafkaTlsSettings,
    /// The listener the domains' clients connect to, written into each credentials Secret:
    /// the operator's own unless it differs.
    pub domain_bootstrap_servers: String,
    /// The protocol of that listener: SASL_SSL or SASL_PLAINTEXT (domains log in with SCRAM).
    pub domain_security_protocol: KafkaSecurityProtocol,
    /// Replicas for topics whose output port does not say.
    pub default_replicas: i32,
    /// Further super users of the cluster (`super.users`), besides the admin: no Domain may
    /// be named after one.
    pub super_users: Vec<String>,
    /// How long a Kafka write or describe waits for other reconciles' to share its request
    /// (zero: each is sent as it comes).
    pub batch_window: Duration,
    /// The most topics, ACL bindings or filters in one batched request.
    pub batch_max_items: usize,
    /// How old the snapshot of topics and ACLs may be when a reconcile reads it; `None`: half
    /// the resync period.
    pub snapshot_refresh: Option<Duration>,
}

impl KafkaSettings {
    /// How the Kafka snapshot is refreshed and writes are batched, for this resync period.
    pub fn snapshot_settings(&self, resync: Duration) -> crate::provision::kafka::SnapshotSettings {
        crate::provision::kafka::SnapshotSettings {
            refresh: self.snapshot_refresh.unwrap_or(resync / 2),
            batch_window: self.batch_window,
            batch_max_items: self.batch_max_items,
        }
    }
}

/// TLS settings for Kafka. The CA also goes into each domain's credentials Secret when the
/// domains connect over TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaTlsSettings {
    /// The CA bundle (PEM) the brokers' certificates chain to; `None` uses the system's.
    pub ca_certificate: Option<SecretSource>,
    /// The operator's client certificate (PEM) for mutual TLS.
    pub client_certificate: Option<SecretSource>,
    /// Its private key (PEM).
    pub client_key: Option<SecretSource>,
    /// Whether a broker's certificate must name the host the client connected to.
    pub verify_hostname: bool,
}

impl Default for KafkaTlsSettings {
    fn default() -> Self {
        Self {
            ca_certificate: None,
            client_certificate: None,
            client_key: None,
            verify_hostname: true,
        }
    }
}

/// The S3 service the operator manages buckets and IAM users in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Settings {
    /// The S3 API endpoint, e.g. `https://127.0.0.1:28333` or `https://s3.eu-west-1.amazonaws.com`.
    pub endpoint: String,
    /// The IAM API endpoint (the same as `endpoint` where IAM is embedded, as in SeaweedFS;
    /// `https://iam.amazonaws.com` on AWS).
    pub iam_endpoint: String,
    /// The region S3 requests are signed for (and buckets are created in).
    pub region: String,
    /// The region IAM requests are signed for: `us-east-1` for AWS's global IAM.
    pub iam_region: String,
    /// Path-style (`<endpoint>/<bucket>`) or virtual-hosted (`<bucket>.<endpoint host>`) URLs.
    pub addressing: Addressing,
    /// Who the operator is towards S3 and IAM.
    pub credentials: S3Credentials,
    /// PEM CA certificates to trust for the S3 and IAM endpoints instead of the system's roots.
    pub ca_bundle: Option<SecretSource>,
    /// How the SDK retries throttling, 5xx answers and broken connections.
    pub retry_mode: RetryMode,
    /// Attempts per call in all, the first included (1 turns retries off).
    pub max_attempts: u32,
    /// The admin's IAM identity (user) name, when it differs from the access key id: no Domain
    /// may be named after it.
    pub admin_user: Option<String>,
}

/// Where the operator's S3 and IAM credentials come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum S3Credentials {
    /// A long-lived access key pair (`credentials: static`, the default when a key is given).
    Static {
        /// The access key id (an identifier, not a secret).
        access_key: String,
        /// Where the secret key is read from.
        secret_key: SecretSource,
    },
    /// The AWS SDK's default chain (`credentials: default`): the `AWS_ACCESS_KEY_ID` /
    /// `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN` environment, a web identity token
    /// (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`, as IRSA sets them), a shared profile,
    /// EKS Pod Identity or ECS (`AWS_CONTAINER_CREDENTIALS_FULL_URI`), then the instance
    /// metadata service. Temporary credentials are refreshed before they expire.
    DefaultChain,
}

impl S3Settings {
    /// The admin access key id, when the operator uses a static key pair.
    pub fn admin_access_key(&self) -> Option<&str> {
        match &self.credentials {
            S3Credentials::Static { access_key, .. } => Some(access_key),
            S3Credentials::DefaultChain => None,
        }
    }
}

/// Everything the operator needs to know about its surroundings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub s3: S3Settings,
    /// How often every object is reconciled even when nothing changed, to correct drift.
    pub resync: Duration,
    /// The ClusterRole a Domain's owners are bound to in its namespace (the chart defines it).
    pub domain_admin_cluster_role: String,
    /// The ClusterRole a Spark driver's ServiceAccount is bound to (the chart defines it).
    pub spark_driver_cluster_role: String,
    /// Names no Domain may use as its name or namespace, besides the ones the operator always
    /// reserves (see [`Settings::reserved_names`]).
    pub reserved_domain_names: Vec<String>,
}

/// Default resync period: five minutes, like Strimzi's topic operator.
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(300);
/// Default S3 and IAM signing region; AWS's IAM is signed for it wherever the buckets are.
pub const DEFAULT_S3_REGION: &str = "us-east-1";
/// Default attempts per S3 or IAM call: the SDK's standard.
pub const DEFAULT_S3_MAX_ATTEMPTS: u32 = 3;
/// The ClusterRole the Helm chart installs for domain owners.
pub const DEFAULT_DOMAIN_ADMIN_CLUSTER_ROLE: &str = "datamesh-domain-admin";
/// The ClusterRole the Helm chart installs for Spark drivers.
pub const DEFAULT_SPARK_DRIVER_CLUSTER_ROLE: &str = "datamesh-spark-driver";

impl Settings {
    /// Load from an optional YAML file, then apply `DATAMESH_*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let from_file = match file {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
                        path: path.to_owned(),
                        source,
                    })?;
                serde_yaml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: path.to_owned(),
                    source,
                })?
            }
            None => FileSettings::default(),
        };
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(name, _)| name.starts_with("DATAMESH_"))
            .collect();
        Self::merge(from_file, &env)
    }

    /// Combine file settings and environment variables (which win); pure, for tests.
    fn merge(file: FileSettings, env: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let var = |name: &str| env.get(name).filter(|value| !value.is_empty()).cloned();
        let secret = |setting: &'static str, from_file: Option<SecretSource>| {
            var(setting)
                .map(|value| SecretSource::parse(setting, &value))
                .transpose()
                .map(|from_env| from_env.or(from_file))
        };
        let required = |setting: &'static str, value: Option<String>| {
            value.ok_or(ConfigError::Missing(setting))
        };

        let default_replicas = number_at_least_one(
            &var,
            "DATAMESH_KAFKA_DEFAULT_REPLICAS",
            file.kafka.default_replicas,
        )?
        .unwrap_or(1);
        let verify_hostname = match var("DATAMESH_KAFKA_TLS_VERIFY_HOSTNAME") {
            Some(value) => match value.as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => {
                    return Err(ConfigError::Invalid {
                        setting: "DATAMESH_KAFKA_TLS_VERIFY_HOSTNAME",
                        reason: "must be true or false".into(),
                    });
                }
            },
            None => file.kafka.tls.verify_hostname,
        };
        let connection = KafkaConnection {
            bootstrap_servers: required(
                "DATAMESH_KAFKA_BOOTSTRAP_SERVERS",
                var("DATAMESH_KAFKA_BOOTSTRAP_SERVERS").or(file.kafka.bootstrap_servers),
            )?,
            security_protocol: var("DATAMESH_KAFKA_SECURITY_PROTOCOL")
                .or(file.kafka.security_protocol),
            sasl_mechanism: var("DATAMESH_KAFKA_SASL_MECHANISM").or(file.kafka.sasl_mechanism),
            admin_user: var("DATAMESH_KAFKA_ADMIN_USER").or(file.kafka.admin_user),
            admin_password: secret("DATAMESH_KAFKA_ADMIN_PASSWORD", file.kafka.admin_password)?,
            ca_certificate: secret("DATAMESH_KAFKA_TLS_CA_CERT", file.kafka.tls.ca_certificate)?,
            client_certificate: secret(
                "DATAMESH_KAFKA_TLS_CLIENT_CERT",
                file.kafka.tls.client_certificate,
            )?,
            client_key: secret("DATAMESH_KAFKA_TLS_CLIENT_KEY", file.kafka.tls.client_key)?,
            verify_hostname,
            domain_bootstrap_servers: var("DATAMESH_KAFKA_DOMAIN_BOOTSTRAP_SERVERS")
                .or(file.kafka.domain_bootstrap_servers),
            domain_security_protocol: var("DATAMESH_KAFKA_DOMAIN_SECURITY_PROTOCOL")
                .or(file.kafka.domain_security_protocol),
        };
        let mut kafka = connection.settings(
            default_replicas,
            list(var("DATAMESH_KAFKA_SUPER_USERS"), file.kafka.super_users),
        )?;
        if let Some(millis) = number(
            &var,
            "DATAMESH_KAFKA_BATCH_WINDOW_MS",
            file.kafka.batch_window_millis,
        )? {
            kafka.batch_window = Duration::from_millis(millis);
        }
        if let Some(items) = number_at_least_one(
            &var,
            "DATAMESH_KAFKA_BATCH_MAX_ITEMS",
            file.kafka.batch_max_items,
        )? {
            kafka.batch_max_items = items;
        }
        if let Some(seconds) = number_at_least_one(
            &var,
            "DATAMESH_KAFKA_SNAPSHOT_REFRESH_SECONDS",
            file.kafka.snapshot_refresh_seconds,
        )? {
            kafka.snapshot_refresh = Some(Duration::from_secs(seconds));
        }

        let s3 = s3_settings(file.s3, &var)?;

        let resync = match var("DATAMESH_RESYNC_SECONDS") {
            Some(value) => {
                Duration::from_secs(value.parse().map_err(|_| ConfigError::Invalid {
                    setting: "DATAMESH_RESYNC_SECONDS",
                    reason: "must be a whole number of seconds".into(),
                })?)
            }
            None => file
                .resync_seconds
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_RESYNC),
        };
        if resync.is_zero() {
            return Err(ConfigError::Invalid {
                setting: "DATAMESH_RESYNC_SECONDS",
                reason: "must be at least 1".into(),
            });
        }

        Ok(Self {
            kafka,
            s3,
            resync,
            domain_admin_cluster_role: var("DATAMESH_DOMAIN_ADMIN_CLUSTER_ROLE")
                .or(file.domain_admin_cluster_role)
                .unwrap_or_else(|| DEFAULT_DOMAIN_ADMIN_CLUSTER_ROLE.into()),
            spark_driver_cluster_role: var("DATAMESH_SPARK_DRIVER_CLUSTER_ROLE")
                .or(file.spark_driver_cluster_role)
                .unwrap_or_else(|| DEFAULT_SPARK_DRIVER_CLUSTER_ROLE.into()),
            reserved_domain_names: list(
                var("DATAMESH_RESERVED_DOMAIN_NAMES"),
                file.reserved_domain_names,
            ),
        })
    }
}

/// The Kafka connection settings as given (file or environment), before they are checked
/// together.
struct KafkaConnection {
    bootstrap_servers: String,
    security_protocol: Option<String>,
    sasl_mechanism: Option<String>,
    admin_user: Option<String>,
    admin_password: Option<SecretSource>,
    ca_certificate: Option<SecretSource>,
    client_certificate: Option<SecretSource>,
    client_key: Option<SecretSource>,
    verify_hostname: Option<bool>,
    domain_bootstrap_servers: Option<String>,
    domain_security_protocol: Option<String>,
}

impl KafkaConnection {
    /// Check the settings against each other, refusing a combination that cannot work or
    /// that sets something the chosen protocol would silently ignore.
    fn settings(
        self,
        default_replicas: i32,
        super_users: Vec<String>,
    ) -> Result<KafkaSettings, ConfigError> {
        let invalid =
            |setting: &'static str, reason: String| ConfigError::Invalid { setting, reason };
        let protocol_named = |setting: &'static str, name: Option<&str>| {
            match name {
            None => Ok(None),
            Some(name) => KafkaSecurityProtocol::from_name(name).map(Some).ok_or_else(|| {
                invalid(
                    setting,
                    format!(
                        "{name:?} is not a security protocol: use SASL_SSL, SASL_PLAINTEXT, SSL or PLAINTEXT"
                    ),
                )
            }),
        }
        };
        let protocol = protocol_named(
            "DATAMESH_KAFKA_SECURITY_PROTOCOL",
            self.security_protocol.as_deref(),
        )?
        .unwrap_or_default();
        let sasl_mechanism = match self.sasl_mechanism.as_deref() {
            None => ScramMechanism::default(),
            Some(name) => ScramMechanism::from_name(name).ok_or_else(|| {
                invalid(
                    "DATAMESH_KAFKA_SASL_MECHANISM",
                    format!("{name:?} is not supported: use SCRAM-SHA-512 or SCRAM-SHA-256"),
                )
            })?,
        };

        if protocol.uses_sasl() {
            if self.admin_user.is_none() {
                return Err(ConfigError::Missing("DATAMESH_KAFKA_ADMIN_USER"));
            }
            if self.admin_password.is_none() {
                return Err(ConfigError::Missing("DATAMESH_KAFKA_ADMIN_PASSWORD"));
            }
        } else if self.admin_password.is_some() {
            return Err(invalid(
                "DATAMESH_KAFKA_ADMIN_PASSWORD",
                format!(
                    "kafka.adminPassword is used only with SASL_SSL or SASL_PLAINTEXT; with {protocol} the operator does not log in with a password"
                ),
            ));
        }

        match (&self.client_certificate, &self.client_key) {
            (Some(_), None) => {
                return Err(invalid(
                    "DATAMESH_KAFKA_TLS_CLIENT_KEY",
                    "kafka.tls.clientCertificate is set without its key (kafka.tls.clientKey)"
                        .into(),
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "DATAMESH_KAFKA_TLS_CLIENT_CERT",
                    "kafka.tls.clientKey is set without its certificate (kafka.tls.clientCertificate)"
                        .into(),
                ));
            }
            (Some(_), Some(_)) if !protocol.uses_tls() => {
                return Err(invalid(
                    "DATAMESH_KAFKA_TLS_CLIENT_CERT",
                    format!(
                        "a client certificate is used only with SSL or SASL_SSL, not with {protocol}"
                    ),
                ));
            }
            (None, None) if protocol == KafkaSecurityProtocol::Ssl => {
                return Err(invalid(
                    "DATAMESH_KAFKA_TLS_CLIENT_CERT",
                    "with SSL the brokers know the operator by its client certificate: set kafka.tls.clientCertificate and kafka.tls.clientKey (without one it would be ANONYMOUS)"
                        .into(),
                ));
            }
            _ => {}
        }

        // The domains log in with the SCRAM users the operator makes for them.
        let domain_security_protocol = match protocol_named(
            "DATAMESH_KAFKA_DOMAIN_SECURITY_PROTOCOL",
            self.domain_security_protocol.as_deref(),
        )? {
            Some(domain) if domain.uses_sasl() => domain,
            Some(domain) => {
                return Err(invalid(
                    "DATAMESH_KAFKA_DOMAIN_SECURITY_PROTOCOL",
                    format!(
                        "domains log in with the SCRAM users the operator makes, so their protocol is SASL_SSL or SASL_PLAINTEXT, not {domain}"
                    ),
                ));
            }
            None if protocol.uses_sasl() => protocol,
            None => {
                return Err(invalid(
                    "DATAMESH_KAFKA_DOMAIN_SECURITY_PROTOCOL",
                    format!(
                        "with {protocol} the operator does not use SCRAM itself: name the SASL_SSL or SASL_PLAINTEXT listener the domains log in to (kafka.domainSecurityProtocol and kafka.domainBootstrapServers)"
                    ),
                ));
            }
        };
        let domain_bootstrap_servers = match self.domain_bootstrap_servers {
            Some(servers) => servers,
            None if domain_security_protocol == protocol => self.bootstrap_servers.clone(),
            None => {
                return Err(invalid(
                    "DATAMESH_KAFKA_DOMAIN_BOOTSTRAP_SERVERS",
                    format!(
                        "the domains connect with {domain_security_protocol} and the operator with {protocol}: one listener speaks one protocol, so name the domains' (kafka.domainBootstrapServers)"
                    ),
                ));
            }
        };

        let any_tls = protocol.uses_tls() || domain_security_protocol.uses_tls();
        if self.ca_certificate.is_some() && !any_tls {
            return Err(invalid(
                "DATAMESH_KAFKA_TLS_CA_CERT",
                format!(
                    "a CA certificate is used only with SSL or SASL_SSL; the operator connects with {protocol} and the domains with {domain_security_protocol}"
                ),
            ));
        }
        if self.verify_hostname == Some(false) && !any_tls {
            return Err(invalid(
                "DATAMESH_KAFKA_TLS_VERIFY_HOSTNAME",
                format!(
                    "turning hostname verification off means something only with SSL or SASL_SSL; the operator connects with {protocol} and the domains with {domain_security_protocol}"
                ),
            ));
        }

        Ok(KafkaSettings {
            bootstrap_servers: self.bootstrap_servers,
            security_protocol: protocol,
            sasl_mechanism,
            admin_user: self.admin_user,
            admin_password: self.admin_password,
            tls: KafkaTlsSettings {
                ca_certificate: self.ca_certificate,
                client_certificate: self.client_certificate,
                client_key: self.client_key,
                verify_hostname: self.verify_hostname.unwrap_or(true),
            },
            domain_bootstrap_servers,
            domain_security_protocol,
            default_replicas,
            super_users,
            batch_window: crate::provision::kafka::DEFAULT_BATCH_WINDOW,
            batch_max_items: crate::provision::kafka::DEFAULT_BATCH_MAX_ITEMS,
            snapshot_refresh: None,
        })
    }
}

/// The S3 section: file values, overridden by `DATAMESH_S3_*`, checked for consistency.
fn s3_settings(
    file: FileS3,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<S3Settings, ConfigError> {
    let secret = |setting: &'static str, from_file: Option<SecretSource>| {
        var(setting)
            .map(|value| SecretSource::parse(setting, &value))
            .transpose()
            .map(|from_env| from_env.or(from_file))
    };
    let endpoint = var("DATAMESH_S3_ENDPOINT")
        .or(file.endpoint)
        .ok_or(ConfigError::Missing("DATAMESH_S3_ENDPOINT"))?;
    check_endpoint("DATAMESH_S3_ENDPOINT", &endpoint)?;
    let iam_endpoint = var("DATAMESH_S3_IAM_ENDPOINT")
        .or(file.iam_endpoint)
        .unwrap_or_else(|| endpoint.clone());
    check_endpoint("DATAMESH_S3_IAM_ENDPOINT", &iam_endpoint)?;
    let region = var("DATAMESH_S3_REGION")
        .or(file.region)
        .unwrap_or_else(|| DEFAULT_S3_REGION.into());
    let iam_region = var("DATAMESH_S3_IAM_REGION")
        .or(file.iam_region)
        .unwrap_or_else(|| DEFAULT_S3_REGION.into());
    let addressing = match var("DATAMESH_S3_ADDRESSING").or(file.addressing) {
        None => Addressing::Path,
        Some(value) => match value.as_str() {
            "path" => Addressing::Path,
            "virtual" => Addressing::VirtualHosted,
            _ => {
                return Err(ConfigError::Invalid {
                    setting: "DATAMESH_S3_ADDRESSING",
                    reason: "must be `path` or `virtual`".into(),
                });
            }
        },
    };
    let retry_mode = match var("DATAMESH_S3_RETRY_MODE").or(file.retry_mode) {
        None => RetryMode::Standard,
        Some(value) => match value.as_str() {
            "standard" => RetryMode::Standard,
            "adaptive" => RetryMode::Adaptive,
            _ => {
                return Err(ConfigError::Invalid {
                    setting: "DATAMESH_S3_RETRY_MODE",
                    reason: "must be `standard` or `adaptive`".into(),
                });
            }
        },
    };
    let max_attempts = match var("DATAMESH_S3_MAX_ATTEMPTS") {
        Some(value) => value.parse().map_err(|_| ConfigError::Invalid {
            setting: "DATAMESH_S3_MAX_ATTEMPTS",
            reason: "must be a whole number".into(),
        })?,
        None => file.max_attempts.unwrap_or(DEFAULT_S3_MAX_ATTEMPTS),
    };
    if max_attempts < 1 {
        return Err(ConfigError::Invalid {
            setting: "DATAMESH_S3_MAX_ATTEMPTS",
            reason: "must be at least 1 (1 sends each call once, without retries)".into(),
        });
    }

    let access_key = var("DATAMESH_S3_ADMIN_ACCESS_KEY").or(file.admin_access_key);
    let secret_key = secret("DATAMESH_S3_ADMIN_SECRET_KEY", file.admin_secret_key)?;
    let credentials = match var("DATAMESH_S3_CREDENTIALS")
        .or(file.credentials)
        .as_deref()
    {
        // Without a say, a configured key means static credentials and none means the chain.
        None if access_key.is_none() && secret_key.is_none() => S3Credentials::DefaultChain,
        None | Some("static") => match (access_key, secret_key) {
            (Some(access_key), Some(secret_key)) => S3Credentials::Static {
                access_key,
                secret_key,
            },
            (None, _) => {
                return Err(ConfigError::Invalid {
                    setting: "DATAMESH_S3_ADMIN_ACCESS_KEY",
                    reason: "static S3 credentials need the admin access key id as well as \
                             the secret key"
                        .into(),
                });
            }
            (Some(_), None) => {
                return Err(ConfigError::Invalid {
                    setting: "DATAMESH_S3_ADMIN_SECRET_KEY",
                    reason: "static S3 credentials need the admin secret key as well as the \
                             access key id"
                        .into(),
                });
            }
        },
        Some("default") => {
            if access_key.is_some() || secret_key.is_some() {
                return Err(ConfigError::Invalid {
                    setting: "DATAMESH_S3_CREDENTIALS",
                    reason: "`default` takes credentials from the AWS default chain (environment, \
                             web identity, Pod Identity, instance metadata) and cannot be combined \
                             with adminAccessKey/adminSecretKey; remove the static pair or set \
                             `static`"
                        .into(),
                });
            }
            S3Credentials::DefaultChain
        }
        Some(_) => {
            return Err(ConfigError::Invalid {
                setting: "DATAMESH_S3_CREDENTIALS",
                reason: "must be `static` or `default`".into(),
            });
        }
    };
    Ok(S3Settings {
        endpoint,
        iam_endpoint,
        region,
        iam_region,
        addressing,
        credentials,
        ca_bundle: secret("DATAMESH_S3_CA_BUNDLE", file.ca_bundle)?,
        retry_mode,
        max_attempts,
        admin_user: var("DATAMESH_S3_ADMIN_USER").or(file.admin_user),
    })
}

/// Refuses an endpoint the SDK could not call: it must be an `http` or `https` URL with a host,
/// and without credentials or a query.
fn check_endpoint(setting: &'static str, url: &str) -> Result<(), ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        setting,
        reason: reason.into(),
    };
    let uri: http::Uri = url.parse().map_err(|_| invalid("is not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(invalid("must start with http:// or https://"));
    }
    let authority = uri.authority().ok_or_else(|| invalid("has no host"))?;
    if authority.as_str().contains('@') {
        return Err(invalid("must not carry credentials"));
    }
    if authority.host().is_empty() {
        return Err(invalid("has no host"));
    }
    if uri.query().is_some() {
        return Err(invalid("must not have a query"));
    }
    Ok(())
}

/// A whole number from the environment (which wins) or the file.
fn number<T: std::str::FromStr>(
    var: &dyn Fn(&str) -> Option<String>,
    setting: &'static str,
    from_file: Option<T>,
) -> Result<Option<T>, ConfigError> {
    match var(setting) {
        Some(value) => value.parse().map(Some).map_err(|_| ConfigError::Invalid {
            setting,
            reason: "must be a whole number".into(),
        }),
        None => Ok(from_file),
    }
}

/// As [`number`], refusing a value below 1.
fn number_at_least_one<T: std::str::FromStr + PartialOrd + From<u8>>(
    var: &dyn Fn(&str) -> Option<String>,
    setting: &'static str,
    from_file: Option<T>,
) -> Result<Option<T>, ConfigError> {
    let value = number(var, setting, from_file)?;
    if value.as_ref().is_some_and(|value| *value < T::from(1)) {
        return Err(ConfigError::Invalid {
            setting,
            reason: "must be at least 1".into(),
        });
    }
    Ok(value)
}

/// A list setting: the environment's comma-separated value, else the file's.
fn list(from_env: Option<String>, from_file: Vec<String>) -> Vec<String> {
    match from_env {
        Some(value) => value
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect(),
        None => from_file,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const FILE: &str = r#"
kafka:
  bootstrapServers: kafka:9092
  adminUser: admin
  adminPassword:
    secretKeyRef: {namespace: datamesh-system, name: kafka-admin, key: password}
s3:
  endpoint: http://s3:8333
  adminAccessKey: admin
  adminSecretKey:
    file: /var/run/secrets/datamesh/s3/secret-key
resyncSeconds: 60
"#;

    #[test]
    fn file_settings_load_with_defaults_for_what_they_leave_out() {
        let settings = Settings::merge(serde_yaml::from_str(FILE).unwrap(), &env(&[])).unwrap();
        assert_eq!(settings.kafka.bootstrap_servers, "kafka:9092");
        assert_eq!(
            settings.kafka.admin_password,
            Some(SecretSource::SecretKeyRef {
                namespace: "datamesh-system".into(),
                name: "kafka-admin".into(),
                key: "password".into()
            })
        );
        assert_eq!(settings.kafka.default_replicas, 1);
        assert_eq!(settings.s3.iam_endpoint, "http://s3:8333");
        assert_eq!(settings.s3.region, "us-east-1");
        assert_eq!(settings.s3.iam_region, "us-east-1");
        assert_eq!(settings.s3.addressing, Addressing::Path);
        assert_eq!(settings.s3.retry_mode, RetryMode::Standard);
        assert_eq!(settings.s3.max_attempts, 3);
        assert_eq!(settings.s3.ca_bundle, None);
        assert_eq!(settings.s3.admin_access_key(), Some("admin"));
        assert_eq!(settings.resync, Duration::from_secs(60));
        assert_eq!(settings.domain_admin_cluster_role, "datamesh-domain-admin");
        assert_eq!(settings.spark_driver_cluster_role, "datamesh-spark-driver");
    }

    #[test]
    fn environment_overrides_the_file() {
        let settings = Settings::merge(
            serde_yaml::from_str(FILE).unwrap(),
            &env(&[
                ("DATAMESH_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:29092"),
                ("DATAMESH_KAFKA_ADMIN_PASSWORD", "secret:ops/kafka/pw"),
                ("DATAMESH_S3_ADMIN_SECRET_KEY", "/tmp/key"),
                ("DATAMESH_RESYNC_SECONDS", "5"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.kafka.bootstrap_servers, "127.0.0.1:29092");
        assert_eq!(
            settings.kafka.admin_password,
            Some(SecretSource::SecretKeyRef {
                namespace: "ops".into(),
                name: "kafka".into(),
                key: "pw".into()
            })
        );
        assert_eq!(
            settings.s3.credentials,
            S3Credentials::Static {
                access_key: "admin".into(),
                secret_key: SecretSource::File("/tmp/key".into())
            }
        );
        assert_eq!(settings.resync, Duration::from_secs(5));
    }

    #[test]
    fn kafka_batching_and_snapshot_refresh_default_to_the_resync_and_can_be_set() {
        let settings = Settings::merge(serde_yaml::from_str(FILE).unwrap(), &env(&[])).unwrap();
        let snapshot = settings.kafka.snapshot_settings(settings.resync);
        assert_eq!(snapshot.refresh, Duration::from_secs(30), "half the resync");
        assert_eq!(snapshot.batch_window, Duration::from_millis(5));
        assert_eq!(snapshot.batch_max_items, 500);

        let file = FILE.replace(
            "  adminUser: admin\n",
            "  adminUser: admin\n  batchWindowMillis: 20\n  batchMaxItems: 100\n  snapshotRefreshSeconds: 7\n",
        );
        let settings = Settings::merge(serde_yaml::from_str(&file).unwrap(), &env(&[])).unwrap();
        let snapshot = settings.kafka.snapshot_settings(settings.resync);
        assert_eq!(snapshot.refresh, Duration::from_secs(7));
        assert_eq!(snapshot.batch_window, Duration::from_millis(20));
        assert_eq!(snapshot.batch_max_items, 100);

        let settings = Settings::merge(
            serde_yaml::from_str(&file).unwrap(),
            &env(&[
                ("DATAMESH_KAFKA_BATCH_WINDOW_MS", "0"),
                ("DATAMESH_KAFKA_SNAPSHOT_REFRESH_SECONDS", "3"),
            ]),
        )
        .unwrap();
        let snapshot = settings.kafka.snapshot_settings(settings.resync);
        assert_eq!(
            snapshot.batch_window,
            Duration::ZERO,
            "zero sends each call at once"
        );
        assert_eq!(snapshot.refresh, Duration::from_secs(3));

        for (setting, value) in [
            ("DATAMESH_KAFKA_BATCH_MAX_ITEMS", "0"),
            ("DATAMESH_KAFKA_SNAPSHOT_REFRESH_SECONDS", "0"),
            ("DATAMESH_KAFKA_BATCH_WINDOW_MS", "soon"),
        ] {
            let error = Settings::merge(
                serde_yaml::from_str(FILE).unwrap(),
                &env(&[(setting, value)]),
            )
            .unwrap_err();
            assert!(error.to_string().contains(setting), "{error}");
        }
    }

    #[test]
    fn reserved_names_and_platform_identities_come_from_file_or_environment() {
        let file = format!("{FILE}reservedDomainNames: [finance, audit]\n")
            .replace("  adminPassword:", "  superUsers: [ops]\n  adminPassword:")
            .replace(
                "  adminAccessKey: admin",
                "  adminAccessKey: admin\n  adminUser: s3-root",
            );
        let settings = Settings::merge(serde_yaml::from_str(&file).unwrap(), &env(&[])).unwrap();
        assert_eq!(settings.reserved_domain_names, ["finance", "audit"]);
        assert_eq!(settings.kafka.super_users, ["ops"]);
        assert_eq!(settings.s3.admin_user.as_deref(), Some("s3-root"));
        let settings = Settings::merge(
            serde_yaml::from_str(FILE).unwrap(),
            &env(&[
                ("DATAMESH_RESERVED_DOMAIN_NAMES", "legal, ,hr"),
                ("DATAMESH_KAFKA_SUPER_USERS", "ops,backup"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.reserved_domain_names, ["legal", "hr"]);
        assert_eq!(settings.kafka.super_users, ["ops", "backup"]);
        assert_eq!(settings.s3.admin_user, None);
    }

    /// The Kafka settings of `yaml` (the `kafka:` section's body) and `env`.
    fn kafka(yaml: &str, pairs: &[(&str, &str)]) -> Result<KafkaSettings, ConfigError> {
        let file = format!(
            "kafka:\n{}s3:\n  endpoint: http://s3:8333\n  adminAccessKey: admin\n  adminSecretKey: {{file: /k}}\n",
            yaml.lines()
                .map(|line| format!("  {line}\n"))
                .collect::<String>()
        );
        Settings::merge(serde_yaml::from_str(&file).unwrap(), &env(pairs)).map(|s| s.kafka)
    }

    /// The message of the error `kafka(yaml, env)` refuses with.
    fn refusal(yaml: &str, pairs: &[(&str, &str)]) -> String {
        match kafka(yaml, pairs) {
            Ok(settings) => panic!("accepted: {settings:?}"),
            Err(error) => error.to_string(),
        }
    }

    const SCRAM: &str =
        "bootstrapServers: kafka:9093\nadminUser: admin\nadminPassword: {file: /pw}\n";
    const MTLS: &str = "bootstrapServers: kafka:9094\nsecurityProtocol: SSL\ntls:\n  caCertificate: {file: /ca.pem}\n  clientCertificate: {file: /tls.crt}\n  clientKey: {secretKeyRef: {namespace: ops, name: kafka-client, key: tls.key}}\n";

    #[test]
    fn kafka_defaults_to_sasl_ssl_with_scram_sha_512_and_hostname_verification() {
        let kafka = kafka(SCRAM, &[]).unwrap();
        assert_eq!(kafka.security_protocol, KafkaSecurityProtocol::SaslSsl);
        assert_eq!(kafka.sasl_mechanism, ScramMechanism::Sha512);
        assert_eq!(kafka.tls, KafkaTlsSettings::default());
        assert!(kafka.tls.verify_hostname);
        assert_eq!(kafka.admin_user.as_deref(), Some("admin"));
        assert_eq!(kafka.admin_password, Some(SecretSource::File("/pw".into())));
        assert_eq!(kafka.domain_bootstrap_servers, "kafka:9093");
        assert_eq!(
            kafka.domain_security_protocol,
            KafkaSecurityProtocol::SaslSsl
        );
    }

    #[test]
    fn every_sasl_protocol_and_mechanism_is_accepted_from_file_and_environment() {
        for protocol in ["SASL_SSL", "SASL_PLAINTEXT"] {
            for mechanism in ["SCRAM-SHA-512", "SCRAM-SHA-256"] {
                let yaml =
                    format!("{SCRAM}securityProtocol: {protocol}\nsaslMechanism: {mechanism}\n");
                let from_file = kafka(&yaml, &[]).unwrap();
                let from_env = kafka(
                    SCRAM,
                    &[
                        ("DATAMESH_KAFKA_SECURITY_PROTOCOL", protocol),
                        ("DATAMESH_KAFKA_SASL_MECHANISM", mechanism),
                    ],
                )
                .unwrap();
                assert_eq!(from_file, from_env);
                assert_eq!(from_file.security_protocol.as_str(), protocol);
                assert_eq!(from_file.sasl_mechanism.as_str(), mechanism);
                assert_eq!(from_file.domain_security_protocol.as_str(), protocol);
            }
        }
    }

    #[test]
    fn tls_material_comes_from_files_or_secrets_and_hostname_verification_is_switched_off_only_explicitly()
     {
        let yaml = format!(
            "{SCRAM}tls:\n  caCertificate: {{secretKeyRef: {{namespace: ops, name: kafka-ca, key: ca.crt}}}}\n  clientCertificate: {{file: /c}}\n  clientKey: {{file: /k}}\n"
        );
        let kafka_settings = kafka(&yaml, &[]).unwrap();
        assert_eq!(
            kafka_settings.tls.ca_certificate,
            Some(SecretSource::SecretKeyRef {
                namespace: "ops".into(),
                name: "kafka-ca".into(),
                key: "ca.crt".into()
            })
        );
        assert_eq!(
            kafka_settings.tls.client_certificate,
            Some(SecretSource::File("/c".into()))
        );
        assert!(kafka_settings.tls.verify_hostname);
        let from_env = kafka(
            SCRAM,
            &[
                ("DATAMESH_KAFKA_TLS_CA_CERT", "secret:ops/kafka-ca/ca.crt"),
                ("DATAMESH_KAFKA_TLS_CLIENT_CERT", "/c"),
                ("DATAMESH_KAFKA_TLS_CLIENT_KEY", "/k"),
            ],
        )
        .unwrap();
        assert_eq!(from_env, kafka_settings);

        let off = kafka(&format!("{SCRAM}tls: {{verifyHostname: false}}\n"), &[]).unwrap();
        assert!(!off.tls.verify_hostname);
        let off = kafka(SCRAM, &[("DATAMESH_KAFKA_TLS_VERIFY_HOSTNAME", "false")]).unwrap();
        assert!(!off.tls.verify_hostname);
        let on = kafka(
            &format!("{SCRAM}tls: {{verifyHostname: false}}\n"),
            &[("DATAMESH_KAFKA_TLS_VERIFY_HOSTNAME", "true")],
        )
        .unwrap();
        assert!(on.tls.verify_hostname, "the environment wins");
        assert!(
            refusal(SCRAM, &[("DATAMESH_KAFKA_TLS_VERIFY_HOSTNAME", "no")])
                .contains("DATAMESH_KAFKA_TLS_VERIFY_HOSTNAME is not valid: must be true or false")
        );
    }

    #[test]
    fn mutual_tls_logs_in_by_certificate_and_names_the_domains_listener() {
        let yaml = format!(
            "{MTLS}adminUser: admin\ndomainBootstrapServers: kafka:9093\ndomainSecurityProtocol: SASL_SSL\n"
        );
        let kafka = kafka(&yaml, &[]).unwrap();
        assert_eq!(kafka.security_protocol, KafkaSecurityProtocol::Ssl);
        assert_eq!(kafka.admin_password, None);
        assert_eq!(
            kafka.admin_user.as_deref(),
            Some("admin"),
            "kept to be reserved"
        );
        assert_eq!(
            kafka.tls.client_key,
            Some(SecretSource::SecretKeyRef {
                namespace: "ops".into(),
                name: "kafka-client".into(),
                key: "tls.key".into()
            })
        );
        assert_eq!(kafka.domain_bootstrap_servers, "kafka:9093");
        assert_eq!(
            kafka.domain_security_protocol,
            KafkaSecurityProtocol::SaslSsl
        );
    }

    #[test]
    fn plaintext_needs_no_credentials_and_sasl_ssl_may_add_a_client_certificate() {
        let kafka_settings = kafka(
            "bootstrapServers: kafka:9092\nsecurityProtocol: PLAINTEXT\ndomainSecurityProtocol: SASL_PLAINTEXT\ndomainBootstrapServers: kafka:9095\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            kafka_settings.security_protocol,
            KafkaSecurityProtocol::Plaintext
        );
        assert_eq!(kafka_settings.admin_user, None);
        let with_cert = kafka(
            &format!("{SCRAM}tls:\n  clientCertificate: {{file: /c}}\n  clientKey: {{file: /k}}\n"),
            &[],
        )
        .unwrap();
        assert!(with_cert.tls.client_certificate.is_some());
        // The domains may use another listener of the same protocol (an external address).
        let elsewhere = kafka(
            &format!("{SCRAM}domainBootstrapServers: kafka.example:443\n"),
            &[],
        )
        .unwrap();
        assert_eq!(elsewhere.domain_bootstrap_servers, "kafka.example:443");
        assert_eq!(
            elsewhere.domain_security_protocol,
            KafkaSecurityProtocol::SaslSsl
        );
        // A plaintext operator may hand its domains a TLS listener, and its CA.
        let mixed = kafka(
            &format!(
                "{SCRAM}securityProtocol: SASL_PLAINTEXT\ndomainSecurityProtocol: SASL_SSL\ndomainBootstrapServers: kafka:9093\ntls: {{caCertificate: {{file: /ca}}}}\n"
            ),
            &[],
        )
        .unwrap();
        assert_eq!(
            mixed.tls.ca_certificate,
            Some(SecretSource::File("/ca".into()))
        );
    }

    #[test]
    fn inconsistent_kafka_settings_are_refused_with_a_reason() {
        // (the file's `kafka:` section, the environment, what the refusal says)
        type Case = (String, Vec<(&'static str, &'static str)>, &'static str);
        let cases: Vec<Case> = vec![
            // Unknown names.
            (format!("{SCRAM}securityProtocol: TLS\n"), vec![], "DATAMESH_KAFKA_SECURITY_PROTOCOL is not valid: \"TLS\" is not a security protocol"),
            (SCRAM.into(), vec![("DATAMESH_KAFKA_SECURITY_PROTOCOL", "sasl_ssl")], "is not a security protocol: use SASL_SSL, SASL_PLAINTEXT, SSL or PLAINTEXT"),
            (format!("{SCRAM}saslMechanism: PLAIN\n"), vec![], "DATAMESH_KAFKA_SASL_MECHANISM is not valid: \"PLAIN\" is not supported: use SCRAM-SHA-512 or SCRAM-SHA-256"),
            (SCRAM.into(), vec![("DATAMESH_KAFKA_SASL_MECHANISM", "SCRAM-SHA-1")], "SCRAM-SHA-512 or SCRAM-SHA-256"),
            // SASL without its login.
            ("bootstrapServers: k:1\nadminPassword: {file: /pw}\n".into(), vec![], "setting DATAMESH_KAFKA_ADMIN_USER is required"),
            ("bootstrapServers: k:1\nadminUser: admin\n".into(), vec![], "setting DATAMESH_KAFKA_ADMIN_PASSWORD is required"),
            ("bootstrapServers: k:1\nadminUser: admin\nsecurityProtocol: SASL_PLAINTEXT\n".into(), vec![], "DATAMESH_KAFKA_ADMIN_PASSWORD is required"),
            // A password where no one logs in with one.
            (format!("{MTLS}adminPassword: {{file: /pw}}\ndomainSecurityProtocol: SASL_SSL\ndomainBootstrapServers: k:1\n"), vec![], "DATAMESH_KAFKA_ADMIN_PASSWORD is not valid: kafka.adminPassword is used only with SASL_SSL or SASL_PLAINTEXT; with SSL"),
            ("bootstrapServers: k:1\nsecurityProtocol: PLAINTEXT\ndomainSecurityProtocol: SASL_PLAINTEXT\ndomainBootstrapServers: k:2\n".into(), vec![("DATAMESH_KAFKA_ADMIN_PASSWORD", "/pw")], "with PLAINTEXT the operator does not log in with a password"),
            // Half a client identity.
            (format!("{SCRAM}tls: {{clientCertificate: {{file: /c}}}}\n"), vec![], "DATAMESH_KAFKA_TLS_CLIENT_KEY is not valid: kafka.tls.clientCertificate is set without its key"),
            (format!("{SCRAM}tls: {{clientKey: {{file: /k}}}}\n"), vec![], "DATAMESH_KAFKA_TLS_CLIENT_CERT is not valid: kafka.tls.clientKey is set without its certificate"),
            (SCRAM.into(), vec![("DATAMESH_KAFKA_TLS_CLIENT_KEY", "/k")], "without its certificate"),
            // A client certificate on a connection without TLS.
            (format!("{SCRAM}securityProtocol: SASL_PLAINTEXT\ntls: {{clientCertificate: {{file: /c}}, clientKey: {{file: /k}}}}\n"), vec![], "a client certificate is used only with SSL or SASL_SSL, not with SASL_PLAINTEXT"),
            // SSL without a certificate would be ANONYMOUS.
            ("bootstrapServers: k:1\nsecurityProtocol: SSL\ndomainSecurityProtocol: SASL_SSL\ndomainBootstrapServers: k:2\n".into(), vec![], "with SSL the brokers know the operator by its client certificate"),
            // The domains' listener: SASL only, and named when it cannot be the operator's.
            (format!("{SCRAM}domainSecurityProtocol: SSL\n"), vec![], "DATAMESH_KAFKA_DOMAIN_SECURITY_PROTOCOL is not valid: domains log in with the SCRAM users the operator makes, so their protocol is SASL_SSL or SASL_PLAINTEXT, not SSL"),
            (format!("{SCRAM}domainSecurityProtocol: PLAINTEXT\n"), vec![], "not PLAINTEXT"),
            (format!("{SCRAM}domainSecurityProtocol: BOGUS\n"), vec![], "DATAMESH_KAFKA_DOMAIN_SECURITY_PROTOCOL is not valid: \"BOGUS\" is not a security protocol"),
            (MTLS.into(), vec![], "DATAMESH_KAFKA_DOMAIN_SECURITY_PROTOCOL is not valid: with SSL the operator does not use SCRAM itself"),
            ("bootstrapServers: k:1\nsecurityProtocol: PLAINTEXT\n".into(), vec![], "with PLAINTEXT the operator does not use SCRAM itself"),
            (format!("{MTLS}domainSecurityProtocol: SASL_SSL\n"), vec![], "DATAMESH_KAFKA_DOMAIN_BOOTSTRAP_SERVERS is not valid: the domains connect with SASL_SSL and the operator with SSL"),
            (format!("{SCRAM}domainSecurityProtocol: SASL_PLAINTEXT\n"), vec![], "the domains connect with SASL_PLAINTEXT and the operator with SASL_SSL"),
            // TLS settings where nothing uses TLS.
            (format!("{SCRAM}securityProtocol: SASL_PLAINTEXT\ntls: {{caCertificate: {{file: /ca}}}}\n"), vec![], "DATAMESH_KAFKA_TLS_CA_CERT is not valid: a CA certificate is used only with SSL or SASL_SSL; the operator connects with SASL_PLAINTEXT and the domains with SASL_PLAINTEXT"),
            (format!("{SCRAM}securityProtocol: SASL_PLAINTEXT\n"), vec![("DATAMESH_KAFKA_TLS_CA_CERT", "secret:a/b/c")], "a CA certificate is used only with SSL or SASL_SSL"),
            (format!("{SCRAM}securityProtocol: SASL_PLAINTEXT\ntls: {{verifyHostname: false}}\n"), vec![], "DATAMESH_KAFKA_TLS_VERIFY_HOSTNAME is not valid: turning hostname verification off means something only with SSL or SASL_SSL"),
            // A malformed Secret reference.
            (SCRAM.into(), vec![("DATAMESH_KAFKA_TLS_CA_CERT", "secret:ops/ca")], "DATAMESH_KAFKA_TLS_CA_CERT is not valid: a Secret reference is written secret:NAMESPACE/NAME/KEY"),
        ];
        for (yaml, pairs, expected) in cases {
            let message = refusal(&yaml, &pairs);
            assert!(
                message.contains(expected),
                "for\n{yaml}{pairs:?}\nexpected {expected:?}, got {message:?}"
            );
        }
        // Plain values are refused for every credential and certificate in the file.
        for key in ["caCertificate", "clientCertificate", "clientKey"] {
            let file = format!("kafka:\n  tls:\n    {key}: -----BEGIN-----\n");
            assert!(
                serde_yaml::from_str::<FileSettings>(&file).is_err(),
                "{key}"
            );
        }
        assert!(serde_yaml::from_str::<FileSettings>("kafka: {tls: {caFile: /x}}").is_err());
    }

    #[test]
    fn a_missing_setting_is_named() {
        let err = Settings::merge(FileSettings::default(), &env(&[])).unwrap_err();
        assert!(err.to_string().contains("DATAMESH_KAFKA_BOOTSTRAP_SERVERS"));
    }

    #[test]
    fn plain_credentials_are_not_accepted_in_the_file() {
        let plain = FILE.replace(
            "adminPassword:\n    secretKeyRef: {namespace: datamesh-system, name: kafka-admin, key: password}",
            "adminPassword: hunter2",
        );
        assert!(serde_yaml::from_str::<FileSettings>(&plain).is_err());
    }

    #[test]
    fn a_malformed_secret_reference_is_refused() {
        let err = SecretSource::parse("X", "secret:only/two").unwrap_err();
        assert!(err.to_string().contains("secret:NAMESPACE/NAME/KEY"));
    }

    #[test]
    fn secret_files_are_read_without_their_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("datamesh-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pw");
        std::fs::write(&path, "s3cr3t\n").unwrap();
        assert_eq!(read_secret_file("X", &path).unwrap().expose(), "s3cr3t");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// `FILE` with its `s3:` section replaced by `s3` (indented two spaces).
    fn with_s3(s3: &str) -> FileSettings {
        let start = FILE.find("s3:\n").unwrap();
        let end = FILE.find("resyncSeconds").unwrap();
        let yaml = format!("{}s3:\n{s3}{}", &FILE[..start], &FILE[end..]);
        serde_yaml::from_str(&yaml).unwrap()
    }

    fn s3(yaml: &str, vars: &[(&str, &str)]) -> Result<S3Settings, ConfigError> {
        Settings::merge(with_s3(yaml), &env(vars)).map(|settings| settings.s3)
    }

    fn s3_refusal(yaml: &str, vars: &[(&str, &str)]) -> String {
        s3(yaml, vars).unwrap_err().to_string()
    }

    #[test]
    fn every_s3_setting_is_read_from_the_file() {
        let settings = s3(
            "  endpoint: https://s3.eu-west-1.amazonaws.com
  iamEndpoint: https://iam.amazonaws.com
  region: eu-west-1
  iamRegion: us-east-1
  addressing: virtual
  credentials: static
  adminAccessKey: AKIAOPERATOR
  adminSecretKey: {secretKeyRef: {namespace: ops, name: s3, key: secret}}
  caBundle: {file: /etc/datamesh/ca.crt}
  retryMode: adaptive
  maxAttempts: 5
",
            &[],
        )
        .unwrap();
        assert_eq!(
            settings,
            S3Settings {
                endpoint: "https://s3.eu-west-1.amazonaws.com".into(),
                iam_endpoint: "https://iam.amazonaws.com".into(),
                region: "eu-west-1".into(),
                iam_region: "us-east-1".into(),
                addressing: Addressing::VirtualHosted,
                credentials: S3Credentials::Static {
                    access_key: "AKIAOPERATOR".into(),
                    secret_key: SecretSource::SecretKeyRef {
                        namespace: "ops".into(),
                        name: "s3".into(),
                        key: "secret".into()
                    }
                },
                ca_bundle: Some(SecretSource::File("/etc/datamesh/ca.crt".into())),
                retry_mode: RetryMode::Adaptive,
                max_attempts: 5,
                admin_user: None,
            }
        );
    }

    #[test]
    fn every_s3_setting_is_read_from_the_environment() {
        let settings = s3(
            "  endpoint: http://s3:8333\n",
            &[
                ("DATAMESH_S3_ENDPOINT", "https://127.0.0.1:28333"),
                ("DATAMESH_S3_IAM_ENDPOINT", "https://127.0.0.1:28334"),
                ("DATAMESH_S3_REGION", "eu-central-1"),
                ("DATAMESH_S3_IAM_REGION", "eu-central-1"),
                ("DATAMESH_S3_ADDRESSING", "path"),
                ("DATAMESH_S3_CREDENTIALS", "default"),
                ("DATAMESH_S3_CA_BUNDLE", "secret:ops/s3-ca/ca.crt"),
                ("DATAMESH_S3_RETRY_MODE", "standard"),
                ("DATAMESH_S3_MAX_ATTEMPTS", "1"),
                ("DATAMESH_S3_ADMIN_USER", "root"),
            ],
        )
        .unwrap();
        assert_eq!(
            settings,
            S3Settings {
                endpoint: "https://127.0.0.1:28333".into(),
                iam_endpoint: "https://127.0.0.1:28334".into(),
                region: "eu-central-1".into(),
                iam_region: "eu-central-1".into(),
                addressing: Addressing::Path,
                credentials: S3Credentials::DefaultChain,
                ca_bundle: Some(SecretSource::SecretKeyRef {
                    namespace: "ops".into(),
                    name: "s3-ca".into(),
                    key: "ca.crt".into()
                }),
                retry_mode: RetryMode::Standard,
                max_attempts: 1,
                admin_user: Some("root".into()),
            }
        );
        assert_eq!(settings.admin_access_key(), None);
    }

    #[test]
    fn credentials_default_to_static_with_a_key_and_to_the_chain_without() {
        let chain = s3("  endpoint: http://s3:8333\n", &[]).unwrap();
        assert_eq!(chain.credentials, S3Credentials::DefaultChain);
        let explicit = s3("  endpoint: http://s3:8333\n  credentials: default\n", &[]).unwrap();
        assert_eq!(explicit.credentials, S3Credentials::DefaultChain);
        let from_env = s3(
            "  endpoint: http://s3:8333\n",
            &[
                ("DATAMESH_S3_ADMIN_ACCESS_KEY", "admin"),
                ("DATAMESH_S3_ADMIN_SECRET_KEY", "/run/s3/secret"),
            ],
        )
        .unwrap();
        assert_eq!(
            from_env.credentials,
            S3Credentials::Static {
                access_key: "admin".into(),
                secret_key: SecretSource::File("/run/s3/secret".into())
            }
        );
    }

    #[test]
    fn inconsistent_s3_credentials_are_refused_with_the_reason() {
        let key_only = s3_refusal("  endpoint: http://s3:8333\n  adminAccessKey: admin\n", &[]);
        assert!(
            key_only.contains("DATAMESH_S3_ADMIN_SECRET_KEY")
                && key_only.contains("need the admin secret key"),
            "{key_only}"
        );
        let secret_only = s3_refusal(
            "  endpoint: http://s3:8333\n  adminSecretKey: {file: /s}\n",
            &[],
        );
        assert!(
            secret_only.contains("DATAMESH_S3_ADMIN_ACCESS_KEY")
                && secret_only.contains("need the admin access key id"),
            "{secret_only}"
        );
        let static_without_pair =
            s3_refusal("  endpoint: http://s3:8333\n  credentials: static\n", &[]);
        assert!(
            static_without_pair.contains("DATAMESH_S3_ADMIN_ACCESS_KEY"),
            "{static_without_pair}"
        );
        // The default chain (web identity and the rest) with a static pair: which one is meant?
        for extra in [
            "  adminAccessKey: admin\n",
            "  adminSecretKey: {file: /s}\n",
        ] {
            let both = s3_refusal(
                &format!("  endpoint: http://s3:8333\n  credentials: default\n{extra}"),
                &[],
            );
            assert!(
                both.contains("DATAMESH_S3_CREDENTIALS") && both.contains("cannot be combined"),
                "{both}"
            );
        }
        let env_both = s3_refusal(FILE_S3_STATIC, &[("DATAMESH_S3_CREDENTIALS", "default")]);
        assert!(env_both.contains("cannot be combined"), "{env_both}");
        let unknown = s3_refusal("  endpoint: http://s3:8333\n  credentials: irsa\n", &[]);
        assert!(unknown.contains("`static` or `default`"), "{unknown}");
    }

    const FILE_S3_STATIC: &str =
        "  endpoint: http://s3:8333\n  adminAccessKey: admin\n  adminSecretKey: {file: /s}\n";

    #[test]
    fn bad_s3_settings_are_refused_with_the_reason() {
        // (s3 YAML lines, environment, setting named, reason given)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (
                "  addressing: dns\n",
                &[],
                "DATAMESH_S3_ADDRESSING",
                "`path` or `virtual`",
            ),
            (
                "  retryMode: legacy\n",
                &[],
                "DATAMESH_S3_RETRY_MODE",
                "`standard` or `adaptive`",
            ),
            (
                "  maxAttempts: 0\n",
                &[],
                "DATAMESH_S3_MAX_ATTEMPTS",
                "at least 1",
            ),
            (
                "",
                &[("DATAMESH_S3_MAX_ATTEMPTS", "many")],
                "DATAMESH_S3_MAX_ATTEMPTS",
                "whole number",
            ),
            (
                "",
                &[("DATAMESH_S3_ENDPOINT", "s3:8333")],
                "DATAMESH_S3_ENDPOINT",
                "http:// or https://",
            ),
            (
                "",
                &[("DATAMESH_S3_ENDPOINT", "ftp://s3")],
                "DATAMESH_S3_ENDPOINT",
                "http:// or https://",
            ),
            (
                "",
                &[("DATAMESH_S3_ENDPOINT", "https://a:b@s3")],
                "DATAMESH_S3_ENDPOINT",
                "credentials",
            ),
            (
                "",
                &[("DATAMESH_S3_ENDPOINT", "https://s3/?x=1")],
                "DATAMESH_S3_ENDPOINT",
                "query",
            ),
            (
                "  iamEndpoint: iam\n",
                &[],
                "DATAMESH_S3_IAM_ENDPOINT",
                "http:// or https://",
            ),
            (
                "",
                &[("DATAMESH_S3_CA_BUNDLE", "secret:ops/ca")],
                "DATAMESH_S3_CA_BUNDLE",
                "secret:NAMESPACE/NAME/KEY",
            ),
        ];
        for (yaml, vars, setting, reason) in cases {
            let message = s3_refusal(&format!("{FILE_S3_STATIC}{yaml}"), vars);
            assert!(
                message.contains(setting) && message.contains(reason),
                "{yaml} {vars:?}: {message}"
            );
        }
        let missing = s3_refusal("  region: eu-west-1\n", &[]);
        assert!(missing.contains("DATAMESH_S3_ENDPOINT"), "{missing}");
    }
}
