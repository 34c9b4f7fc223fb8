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
    admin_user: Option<String>,
    admin_password: Option<SecretSource>,
    default_replicas: Option<i32>,
    #[serde(default)]
    super_users: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileS3 {
    endpoint: Option<String>,
    iam_endpoint: Option<String>,
    region: Option<String>,
    admin_access_key: Option<String>,
    admin_secret_key: Option<SecretSource>,
    admin_user: Option<String>,
}

/// The Kafka cluster the operator manages topics, ACLs and SCRAM users in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `host:port[,host:port...]` of the SASL_PLAINTEXT (SCRAM-SHA-512) listener.
    pub bootstrap_servers: String,
    /// The admin user the operator authenticates as (a super user of the cluster).
    pub admin_user: String,
    /// Where the admin user's password is read from.
    pub admin_password: SecretSource,
    /// Replicas for topics whose output port does not say.
    pub default_replicas: i32,
    /// Further super users of the cluster (`super.users`), besides the admin: no Domain may
    /// be named after one.
    pub super_users: Vec<String>,
}

/// The S3 service the operator manages buckets and IAM users in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Settings {
    /// The S3 API endpoint, e.g. `http://127.0.0.1:28333`.
    pub endpoint: String,
    /// The IAM API endpoint (the same as `endpoint` where IAM is embedded, as in SeaweedFS).
    pub iam_endpoint: String,
    /// The signing region.
    pub region: String,
    /// The admin access key id (an identifier, not a secret).
    pub admin_access_key: String,
    /// Where the admin secret key is read from.
    pub admin_secret_key: SecretSource,
    /// The admin's IAM identity (user) name, when it differs from the access key id: no Domain
    /// may be named after it.
    pub admin_user: Option<String>,
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

        let bootstrap_servers = required(
            "DATAMESH_KAFKA_BOOTSTRAP_SERVERS",
            var("DATAMESH_KAFKA_BOOTSTRAP_SERVERS").or(file.kafka.bootstrap_servers),
        )?;
        let default_replicas = match var("DATAMESH_KAFKA_DEFAULT_REPLICAS") {
            Some(value) => value.parse().map_err(|_| ConfigError::Invalid {
                setting: "DATAMESH_KAFKA_DEFAULT_REPLICAS",
                reason: "must be a whole number".into(),
            })?,
            None => file.kafka.default_replicas.unwrap_or(1),
        };
        if default_replicas < 1 {
            return Err(ConfigError::Invalid {
                setting: "DATAMESH_KAFKA_DEFAULT_REPLICAS",
                reason: "must be at least 1".into(),
            });
        }
        let kafka = KafkaSettings {
            bootstrap_servers,
            admin_user: required(
                "DATAMESH_KAFKA_ADMIN_USER",
                var("DATAMESH_KAFKA_ADMIN_USER").or(file.kafka.admin_user),
            )?,
            admin_password: secret("DATAMESH_KAFKA_ADMIN_PASSWORD", file.kafka.admin_password)?
                .ok_or(ConfigError::Missing("DATAMESH_KAFKA_ADMIN_PASSWORD"))?,
            default_replicas,
            super_users: list(var("DATAMESH_KAFKA_SUPER_USERS"), file.kafka.super_users),
        };

        let endpoint = required(
            "DATAMESH_S3_ENDPOINT",
            var("DATAMESH_S3_ENDPOINT").or(file.s3.endpoint),
        )?;
        let s3 = S3Settings {
            iam_endpoint: var("DATAMESH_S3_IAM_ENDPOINT")
                .or(file.s3.iam_endpoint)
                .unwrap_or_else(|| endpoint.clone()),
            endpoint,
            region: var("DATAMESH_S3_REGION")
                .or(file.s3.region)
                .unwrap_or_else(|| "us-east-1".into()),
            admin_access_key: required(
                "DATAMESH_S3_ADMIN_ACCESS_KEY",
                var("DATAMESH_S3_ADMIN_ACCESS_KEY").or(file.s3.admin_access_key),
            )?,
            admin_secret_key: secret("DATAMESH_S3_ADMIN_SECRET_KEY", file.s3.admin_secret_key)?
                .ok_or(ConfigError::Missing("DATAMESH_S3_ADMIN_SECRET_KEY"))?,
            admin_user: var("DATAMESH_S3_ADMIN_USER").or(file.s3.admin_user),
        };

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
            SecretSource::SecretKeyRef {
                namespace: "datamesh-system".into(),
                name: "kafka-admin".into(),
                key: "password".into()
            }
        );
        assert_eq!(settings.kafka.default_replicas, 1);
        assert_eq!(settings.s3.iam_endpoint, "http://s3:8333");
        assert_eq!(settings.s3.region, "us-east-1");
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
            SecretSource::SecretKeyRef {
                namespace: "ops".into(),
                name: "kafka".into(),
                key: "pw".into()
            }
        );
        assert_eq!(
            settings.s3.admin_secret_key,
            SecretSource::File("/tmp/key".into())
        );
        assert_eq!(settings.resync, Duration::from_secs(5));
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
}
