//! The real [`KafkaAdmin`]: librdkafka through `rdkafka`, over SASL_SSL, SASL_PLAINTEXT, SSL
//! (mutual TLS) or PLAINTEXT, with a SCRAM login or a client certificate.

use crate::secret::SecretString;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use rdkafka::ClientConfig;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use tracing::{debug, instrument};

use super::acl::{AclBinding, AclBindingFilter};
use super::batch::{self, Outcomes, topic_resource, user_resource};
use super::error::{AdminOperation, KafkaAdminError, RDKafkaErrorCode};
use super::ffi::{self, KafkaFailure, NamedResult, ScramAlteration, SharedClient};
use super::reachability::Reachability;
use super::retry::{self, ItemResults};
use super::scram::{ScramCredentialUpsert, ScramMechanism, ScramUser};
use super::topic::{NewTopic, PartitionIncrease, TopicConfigAlteration, TopicDescription};
use super::{BatchResult, KafkaAdmin};
use crate::metrics::{RequestCounter, RequestTimer};

/// How many admin clients (broker connections) requests are spread over.
const CONNECTIONS: usize = 4;

/// How a client reaches the brokers: Kafka's `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KafkaSecurityProtocol {
    /// SASL over TLS: what production clusters (Strimzi, MSK, Confluent, Aiven) offer.
    #[default]
    SaslSsl,
    /// SASL over plain TCP.
    SaslPlaintext,
    /// TLS, the client known by its certificate (mutual TLS).
    Ssl,
    /// Plain TCP, no authentication.
    Plaintext,
}

impl KafkaSecurityProtocol {
    /// Every protocol, as Kafka names them.
    pub const ALL: [Self; 4] = [
        Self::SaslSsl,
        Self::SaslPlaintext,
        Self::Ssl,
        Self::Plaintext,
    ];

    /// The name Kafka and its clients use (`security.protocol`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SaslSsl => "SASL_SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::Ssl => "SSL",
            Self::Plaintext => "PLAINTEXT",
        }
    }

    /// The protocol named `name` as Kafka writes it (`SASL_SSL`, ...).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|protocol| protocol.as_str() == name)
    }

    /// Whether the connection is TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::SaslSsl | Self::Ssl)
    }

    /// Whether the client authenticates with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslSsl | Self::SaslPlaintext)
    }
}

impl fmt::Display for KafkaSecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The default time Kafka has to answer one admin call, retries included (see [`retry`]). A
/// healthy cluster answers in milliseconds; while it is unreachable, librdkafka keeps
/// reconnecting until this passes, and only then can the objects waiting on it say that Kafka
/// is unavailable. The outage tests want that said within 30 s of the broker going down: 15 s
/// leaves the other half for the reconcile's other steps, the status write and the watch.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A SASL/SCRAM login. `Debug` never shows the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramLogin {
    /// The mechanism.
    pub mechanism: ScramMechanism,
    /// The user name.
    pub username: String,
    /// The password.
    pub password: SecretString,
}

/// TLS settings, as PEM text (read from Secrets or files at start-up, so nothing needs a file
/// on disk). Used only with a TLS protocol. `Debug` shows what is set, never a key.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaTls {
    /// CA certificates (PEM) to verify the brokers with; `None` uses the system's trust store.
    pub ca_pem: Option<String>,
    /// The client certificate (PEM, chain allowed) for mutual TLS, with its key.
    pub client_certificate_pem: Option<String>,
    /// The client certificate's private key (PEM).
    pub client_key_pem: Option<SecretString>,
    /// Whether the brokers' certificates must name the host connected to.
    pub verify_hostname: bool,
}

impl Default for KafkaTls {
    fn default() -> Self {
        Self {
            ca_pem: None,
            client_certificate_pem: None,
            client_key_pem: None,
            verify_hostname: true,
        }
    }
}

impl fmt::Debug for KafkaTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaTls")
            .field("ca", &self.ca_pem.as_ref().map(|_| "<set>"))
            .field(
                "client_certificate",
                &self.client_certificate_pem.as_ref().map(|_| "<set>"),
            )
            .field("client_key", &self.client_key_pem)
            .field("verify_hostname", &self.verify_hostname)
            .finish()
    }
}

/// How to reach the Kafka cluster as its admin. `Debug` never shows the password or a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaAdminConfig {
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// Plain or TLS transport, SASL or not.
    pub security_protocol: KafkaSecurityProtocol,
    /// The admin's SCRAM login (a super user, or one with ACLs to manage topics, ACLs and
    /// users); used with the SASL protocols.
    pub sasl: Option<ScramLogin>,
    /// CA, client certificate and hostname verification; used with the TLS protocols.
    pub tls: KafkaTls,
    /// The time Kafka has to answer one admin request (and to apply topic changes).
    pub request_timeout: Duration,
}

impl KafkaAdminConfig {
    /// SASL_SSL with SCRAM-SHA-512, the system's CA certificates and the default timeout.
    pub fn new(
        bootstrap_servers: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<SecretString>,
    ) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            security_protocol: KafkaSecurityProtocol::default(),
            sasl: Some(ScramLogin {
                mechanism: ScramMechanism::Sha512,
                username: username.into(),
                password: password.into(),
            }),
            tls: KafkaTls::default(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// The user the admin logs in as, for logs: the SCRAM user, or none (a certificate).
    fn username(&self) -> Option<&str> {
        self.sasl
            .as_ref()
            .filter(|_| self.security_protocol.uses_sasl())
            .map(|login| login.username.as_str())
    }

    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", "datamesh-operator-admin")
            // Admin requests are small and answered one by one: never hold one back to
            // coalesce it with the next (Nagle's algorithm).
            .set("socket.nagle.disable", "true")
            .set("security.protocol", self.security_protocol.as_str());
        if let Some(login) = self
            .sasl
            .as_ref()
            .filter(|_| self.security_protocol.uses_sasl())
        {
            config
                .set("sasl.mechanism", login.mechanism.as_str())
                .set("sasl.username", &login.username)
                .set("sasl.password", login.password.expose());
        }
        if self.security_protocol.uses_tls() {
            let tls = &self.tls;
            if let Some(ca) = &tls.ca_pem {
                config.set("ssl.ca.pem", ca);
            }
            if let Some(certificate) = &tls.client_certificate_pem {
                config.set("ssl.certificate.pem", certificate);
            }
            if let Some(key) = &tls.client_key_pem {
                config.set("ssl.key.pem", key.expose());
            }
            config.set(
                "ssl.endpoint.identification.algorithm",
                if tls.verify_hostname { "https" } else { "none" },
            );
        }
        config
    }
}

/// The Kafka admin client the operator runs with. Cheap to share: hold it in an `Arc<dyn KafkaAdmin>`.
pub struct RdKafkaAdmin {
    /// Several clients, each with its own broker connection, used in turn: a broker answers
    /// the requests of one connection one at a time, so with a single client every reconcile
    /// waited behind every other's Kafka requests (measured: 110 to 170 ms per request at
    /// 1,000 products, for a few milliseconds of broker work each).
    clients: Vec<SharedClient>,
    next: AtomicUsize,
    timeout: Duration,
    bootstrap_servers: String,
    /// Checked before each request: see [`super::reachability`] for why.
    reachability: Reachability,
    requests: RequestCounter,
}

impl fmt::Debug for RdKafkaAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RdKafkaAdmin")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RdKafkaAdmin {
    /// Creates the client. librdkafka connects lazily, so an unreachable cluster shows up
    /// in the first call, not here; this fails only on an invalid configuration.
    pub fn new(config: &KafkaAdminConfig) -> Result<Self, KafkaAdminError> {
        let clients = (0..CONNECTIONS)
            .map(|_| {
                config
                    .client_config()
                    .create::<AdminClient<DefaultClientContext>>()
                    .map(Arc::new)
                    .map_err(|err| KafkaAdminError::Client {
                        bootstrap_servers: config.bootstrap_servers.clone(),
                        reason: err.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        debug!(
            bootstrap_servers = %config.bootstrap_servers,
            security_protocol = %config.security_protocol,
            user = config.username().unwrap_or("(certificate or none)"),
            connections = CONNECTIONS,
            "created the Kafka admin clients"
        );
        Ok(Self {
            clients,
            next: AtomicUsize::new(0),
            timeout: config.request_timeout,
            bootstrap_servers: config.bootstrap_servers.clone(),
            reachability: Reachability::new(&config.bootstrap_servers),
            requests: RequestCounter::default(),
        })
    }

    /// The client for the next request, in turn.
    fn client(&self) -> &SharedClient {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        &self.clients[index]
    }

    /// The client for the next request, once a broker is known to accept connections: a
    /// request is never handed to librdkafka while none does (see [`super::reachability`]).
    async fn reachable_client(
        &self,
        operation: AdminOperation,
    ) -> Result<&SharedClient, KafkaAdminError> {
        self.reachability.check(operation).await?;
        Ok(self.client())
    }

    /// Count every request sent to Kafka with `requests` (the operator's metrics).
    pub fn with_request_counter(mut self, requests: RequestCounter) -> Self {
        self.requests = requests;
        self
    }

    /// Count one request of the Kafka API `operation`, timed until the guard is dropped.
    fn sending(&self, operation: &str) -> RequestTimer {
        self.requests.count("kafka", operation)
    }

    /// Sends the `pending` items of a batch that Kafka answers by name, through
    /// [`retry::items`]: `item(i)` is what to send for index `i`, `name_of(i)` the name Kafka
    /// answers it under, `send` the call and `api` the Kafka API it is counted as.
    #[allow(clippy::too_many_arguments)] // each is one aspect of the batch, named at the call
    async fn send_named<'s, 'n, I, F>(
        &'s self,
        operation: AdminOperation,
        api: &'static str,
        pending: Vec<usize>,
        item: impl Fn(usize) -> I,
        name_of: impl Fn(usize) -> &'n str,
        resource: fn(&str) -> String,
        send: impl Fn(&'s SharedClient, Duration, Vec<I>) -> F,
    ) -> Result<ItemResults<()>, KafkaAdminError>
    where
        F: Future<Output = Result<Vec<NamedResult>, KafkaAdminError>>,
    {
        let name_of = &name_of;
        retry::items(operation, self.timeout, pending, |items, timeout| {
            let batch = items.iter().map(|&i| item(i)).collect();
            let send = &send;
            async move {
                let client = self.reachable_client(operation).await?;
                let _timer = self.sending(api);
                let answers = send(client, timeout, batch).await?;
                Ok(by_name(operation, &items, name_of, answers, resource))
            }
        })
        .await
    }

    #[instrument(skip_all, fields(count = topics.len()))]
    async fn create_topics_now(&self, topics: &[NewTopic]) -> BatchResult<()> {
        let operation = AdminOperation::CreateTopics;
        let mut outcomes = batch::check_new_topics(topics);
        let pending = outcomes.pending();
        if !pending.is_empty() {
            let answers = self
                .send_named(
                    operation,
                    "CreateTopics",
                    pending,
                    |i| topics[i].clone(),
                    |i| &topics[i].name,
                    topic_resource,
                    ffi::create_topics,
                )
                .await?;
            settle(&mut outcomes, answers);
        }
        Ok(logged(outcomes.finish(|i| topic_resource(&topics[i].name))))
    }

    #[instrument(skip_all, fields(count = names.len()))]
    async fn describe_topics_now(&self, names: &[String]) -> BatchResult<Option<TopicDescription>> {
        let operation = AdminOperation::DescribeTopics;
        let mut outcomes = Outcomes::new(operation, names.len());
        // Describing a topic twice is harmless; each distinct name is asked for once.
        let mut unique: Vec<String> = Vec::new();
        for (index, name) in names.iter().enumerate() {
            if name.contains('\0') {
                outcomes.settle(
                    index,
                    Err(KafkaAdminError::invalid_input(
                        operation,
                        topic_resource(name),
                        "the name contains a NUL character",
                    )),
                );
            } else if !unique.contains(name) {
                unique.push(name.clone());
            }
        }
        if unique.is_empty() {
            return Ok(outcomes.finish(|i| topic_resource(&names[i])));
        }
        let unique = &unique;
        let answers = retry::items(
            operation,
            self.timeout,
            (0..unique.len()).collect(),
            move |items: Vec<usize>, timeout| async move {
                self.describe_unique_topics(unique, &items, timeout).await
            },
        )
        .await?;
        let answers: HashMap<&str, Result<Option<TopicDescription>, KafkaAdminError>> = answers
            .into_iter()
            .map(|(i, result)| (unique[i].as_str(), result))
            .collect();
        // A name asked for twice takes the one answer for it.
        for (index, name) in names.iter().enumerate() {
            if let Some(result) = answers.get(name.as_str()) {
                outcomes.settle(index, result.clone());
            }
        }
        Ok(logged(outcomes.finish(|i| topic_resource(&names[i]))))
    }

    /// Describes the topics `unique[i]` for each `i` in `items` (partitions and configs, asked
    /// at once); a missing topic is `None`.
    async fn describe_unique_topics(
        &self,
        unique: &[String],
        items: &[usize],
        timeout: Duration,
    ) -> Result<ItemResults<Option<TopicDescription>>, KafkaAdminError> {
        let operation = AdminOperation::DescribeTopics;
        let asked: Vec<String> = items.iter().map(|&i| unique[i].clone()).collect();
        self.reachability.check(operation).await?;
        let _timers = (
            self.sending("DescribeTopics"),
            self.sending("DescribeConfigs"),
        );
        let (topics, configs) = futures::future::try_join(
            ffi::describe_topics(self.client(), timeout, asked.clone()),
            ffi::describe_topic_configs(self.client(), timeout, asked),
        )
        .await?;
        let mut configs: HashMap<String, ffi::DescribedConfigs> = configs
            .into_iter()
            .map(|described| (described.name.clone(), described))
            .collect();
        let topics: HashMap<String, ffi::DescribedTopic> = topics
            .into_iter()
            .map(|described| (described.name.clone(), described))
            .collect();
        let mut answers = Vec::with_capacity(items.len());
        for &index in items {
            let name = &unique[index];
            let Some(topic) = topics.get(name) else {
                continue;
            };
            let resource = topic_resource(name);
            let result = match &topic.failure {
                Some(failure) if failure.code == RDKafkaErrorCode::UnknownTopicOrPartition => {
                    Ok(None)
                }
                Some(failure) => Err(kafka_error(operation, resource, failure)),
                None => match configs.remove(name) {
                    Some(described) => match described.failure {
                        Some(failure)
                            if failure.code == RDKafkaErrorCode::UnknownTopicOrPartition =>
                        {
                            Ok(None)
                        }
                        Some(failure) => Err(kafka_error(operation, resource, &failure)),
                        None => Ok(Some(TopicDescription {
                            name: name.clone(),
                            partitions: topic.partitions,
                            replication_factor: topic.replication_factor,
                            configs: described.configs,
                        })),
                    },
                    // No answer about its configs.
                    None => continue,
                },
            };
            answers.push((index, result));
        }
        Ok(answers)
    }

    #[instrument(skip_all, fields(count = increases.len()))]
    async fn create_partitions_now(&self, increases: &[PartitionIncrease]) -> BatchResult<()> {
        let operation = AdminOperation::CreatePartitions;
        let mut outcomes = batch::check_partition_increases(increases);
        let pending = outcomes.pending();
        if !pending.is_empty() {
            let answers = self
                .send_named(
                    operation,
                    "CreatePartitions",
                    pending,
                    |i| increases[i].clone(),
                    |i| &increases[i].topic,
                    topic_resource,
                    ffi::create_partitions,
                )
                .await?;
            settle(&mut outcomes, answers);
        }
        Ok(logged(
            outcomes.finish(|i| topic_resource(&increases[i].topic)),
        ))
    }

    #[instrument(skip_all, fields(count = alterations.len()))]
    async fn alter_topic_configs_now(
        &self,
        alterations: &[TopicConfigAlteration],
    ) -> BatchResult<()> {
        let operation = AdminOperation::AlterTopicConfigs;
        let mut outcomes = batch::check_config_alterations(alterations);
        let pending = outcomes.pending();
        if !pending.is_empty() {
            let answers = self
                .send_named(
                    operation,
                    "IncrementalAlterConfigs",
                    pending,
                    |i| alterations[i].clone(),
                    |i| &alterations[i].topic,
                    topic_resource,
                    ffi::alter_topic_configs,
                )
                .await?;
            settle(&mut outcomes, answers);
        }
        Ok(logged(
            outcomes.finish(|i| topic_resource(&alterations[i].topic)),
        ))
    }

    #[instrument(skip_all, fields(count = names.len()))]
    async fn delete_topics_now(&self, names: &[String]) -> BatchResult<()> {
        let operation = AdminOperation::DeleteTopics;
        let mut outcomes = batch::check_topic_names(operation, names);
        let pending = outcomes.pending();
        if !pending.is_empty() {
            let answers = self
                .send_named(
                    operation,
                    "DeleteTopics",
                    pending,
                    |i| names[i].clone(),
                    |i| &names[i],
                    topic_resource,
                    ffi::delete_topics,
                )
                .await?;
            settle(&mut outcomes, answers);
        }
        Ok(logged(outcomes.finish(|i| topic_resource(&names[i]))))
    }

    #[instrument(skip_all, fields(count = bindings.len()))]
    async fn create_acls_now(&self, bindings: &[AclBinding]) -> BatchResult<()> {
        let operation = AdminOperation::CreateAcls;
        let mut outcomes = batch::check_acl_bindings(bindings);
        let pending = outcomes.pending();
        if !pending.is_empty() {
            let answers = retry::items(
                operation,
                self.timeout,
                pending,
                move |items: Vec<usize>, timeout| async move {
                    let to_send = items.iter().map(|&i| bindings[i].clone()).collect();
                    let client = self.reachable_client(operation).await?;
                    let _timer = self.sending("CreateAcls");
                    let answers = ffi::create_acls(client, timeout, to_send).await?;
                    // Answered in the order sent.
                    Ok(items
                        .iter()
                        .zip(answers)
                        .map(|(&index, answer)| {
                            let result = match answer {
                                None => Ok(()),
                                Some(failure) => Err(kafka_error(
                                    operation,
                                    bindings[index].to_string(),
                                    &failure,
                                )),
                            };
                            (index, result)
                        })
                        .collect())
                },
            )
            .await?;
            settle(&mut outcomes, answers);
        }
        Ok(logged(outcomes.finish(|i| bindings[i].to_string())))
    }

    #[instrument(skip_all, fields(count = filters.len()))]
    async fn delete_acls_now(&self, filters: &[AclBindingFilter]) -> BatchResult<Vec<AclBinding>> {
        let operation = AdminOperation::DeleteAcls;
        let mut outcomes = batch::check_acl_filters(operation, filters);
        let pending = outcomes.pending();
        if !pending.is_empty() {
            let answers = retry::items(
                operation,
                self.timeout,
                pending,
                move |items: Vec<usize>, timeout| async move {
                    let to_send = items.iter().map(|&i| filters[i].clone()).collect();
                    let client = self.reachable_client(operation).await?;
                    let _timer = self.sending("DeleteAcls");
                    let answers = ffi::delete_acls(client, timeout, to_send).await?;
                    // Answered in the order sent.
                    Ok(items
                        .iter()
                        .zip(answers)
                        .map(|(&index, answer)| {
                            let result = answer.map_err(|failure| {
                                kafka_error(operation, filters[index].to_string(), &failure)
                            });
                            (index, result)
                        })
                        .collect())
                },
            )
            .await?;
            settle(&mut outcomes, answers);
        }
        Ok(logged(outcomes.finish(|i| filters[i].to_string())))
    }

    #[instrument(skip_all, fields(filter = %filter))]
    async fn describe_acls_now(
        &self,
        filter: &AclBindingFilter,
    ) -> Result<Vec<AclBinding>, KafkaAdminError> {
        let operation = AdminOperation::DescribeAcls;
        let outcomes = batch::check_acl_filters(operation, std::slice::from_ref(filter));
        if outcomes.pending().is_empty() {
            return outcomes
                .finish(|_| filter.to_string())
                .into_iter()
                .next()
                .unwrap_or_else(|| {
                    Err(KafkaAdminError::unexpected(
                        operation,
                        "no outcome for the filter",
                    ))
                });
        }
        retry::call(operation, self.timeout, move |timeout| async move {
            let client = self.reachable_client(operation).await?;
            let _timer = self.sending("DescribeAcls");
            ffi::describe_acls(client, timeout, filter.clone()).await
        })
        .await
    }

    #[instrument(skip_all, fields(%operation, count = users.len()))]
    async fn alter_scram_now(
        &self,
        operation: AdminOperation,
        mut outcomes: Outcomes<()>,
        users: &[&str],
        alteration: impl Fn(usize) -> ScramAlteration,
    ) -> BatchResult<()> {
        let pending = outcomes.pending();
        if !pending.is_empty() {
            let answers = self
                .send_named(
                    operation,
                    "AlterUserScramCredentials",
                    pending,
                    alteration,
                    |i| users[i],
                    user_resource,
                    |client, timeout, batch| {
                        ffi::alter_scram_credentials(client, operation, timeout, batch)
                    },
                )
                .await?;
            settle(&mut outcomes, answers);
        }
        Ok(logged(outcomes.finish(|i| user_resource(users[i]))))
    }

    #[instrument(skip_all, fields(count = users.len()))]
    async fn describe_scram_users_now(
        &self,
        users: &[String],
    ) -> Result<Vec<ScramUser>, KafkaAdminError> {
        let operation = AdminOperation::DescribeScramCredentials;
        if let Some(user) = users.iter().find(|user| user.contains('\0')) {
            return Err(KafkaAdminError::invalid_input(
                operation,
                user_resource(user),
                "the name contains a NUL character",
            ));
        }
        let mut unique = users.to_vec();
        unique.sort();
        unique.dedup();
        let unique = &unique;
        let described = retry::call(operation, self.timeout, move |timeout| async move {
            let client = self.reachable_client(operation).await?;
            let _timer = self.sending("DescribeUserScramCredentials");
            let described =
                ffi::describe_scram_credentials(client, timeout, unique.clone()).await?;
            // A user failing transiently fails the description: try it all again.
            match described.iter().find_map(|user| {
                user.failure
                    .as_ref()
                    .filter(|failure| failure.code != RDKafkaErrorCode::ResourceNotFound)
                    .map(|failure| kafka_error(operation, user_resource(&user.user), failure))
            }) {
                Some(error) if error.is_transient() => Err(error),
                _ => Ok(described),
            }
        })
        .await?;
        let mut found = Vec::with_capacity(described.len());
        for user in described {
            match user.failure {
                // Asking for a user without credentials is how one learns it has none.
                Some(failure) if failure.code == RDKafkaErrorCode::ResourceNotFound => {}
                Some(failure) => {
                    return Err(kafka_error(operation, user_resource(&user.user), &failure));
                }
                None => found.push(ScramUser {
                    user: user.user,
                    credentials: user.credentials,
                }),
            }
        }
        found.sort_by(|a, b| a.user.cmp(&b.user));
        Ok(found)
    }
}

/// Logs a batch's outcome at debug level: counts, and each failure (they name resources and
/// carry the broker's message, never a secret).
fn logged<T>(results: Vec<Result<T, KafkaAdminError>>) -> Vec<Result<T, KafkaAdminError>> {
    let failed = results.iter().filter(|result| result.is_err()).count();
    debug!(succeeded = results.len() - failed, failed, "Kafka answered");
    for error in results.iter().filter_map(|result| result.as_ref().err()) {
        debug!(%error, "item failed");
    }
    results
}

fn kafka_error(
    operation: AdminOperation,
    resource: String,
    failure: &KafkaFailure,
) -> KafkaAdminError {
    KafkaAdminError::kafka(operation, resource, failure.code, failure.message.clone())
}

/// Kafka's answers to the items sent, matched by name (names are unique among the items sent:
/// duplicates were refused before sending). An item without an answer is left out.
fn by_name<'a>(
    operation: AdminOperation,
    sent: &[usize],
    name_of: impl Fn(usize) -> &'a str,
    answers: Vec<NamedResult>,
    resource: impl Fn(&str) -> String,
) -> ItemResults<()> {
    let index_of: BTreeMap<&str, usize> = sent.iter().map(|&i| (name_of(i), i)).collect();
    answers
        .into_iter()
        .filter_map(|answer| {
            let Some(&index) = index_of.get(answer.name.as_str()) else {
                debug!(%operation, name = %answer.name, "Kafka answered for an item we did not send");
                return None;
            };
            let result = match &answer.failure {
                None => Ok(()),
                Some(failure) => Err(kafka_error(operation, resource(&answer.name), failure)),
            };
            Some((index, result))
        })
        .collect()
}

/// Records each item's final answer.
fn settle<T>(outcomes: &mut Outcomes<T>, answers: ItemResults<T>) {
    for (index, result) in answers {
        outcomes.settle(index, result);
    }
}

impl KafkaAdmin for RdKafkaAdmin {
    fn create_topics<'a>(&'a self, topics: &'a [NewTopic]) -> BoxFuture<'a, BatchResult<()>> {
        Box::pin(self.create_topics_now(topics))
    }

    fn describe_topics<'a>(
        &'a self,
        names: &'a [String],
    ) -> BoxFuture<'a, BatchResult<Option<TopicDescription>>> {
        Box::pin(self.describe_topics_now(names))
    }

    fn create_partitions<'a>(
        &'a self,
        increases: &'a [PartitionIncrease],
    ) -> BoxFuture<'a, BatchResult<()>> {
        Box::pin(self.create_partitions_now(increases))
    }

    fn alter_topic_configs<'a>(
        &'a self,
        alterations: &'a [TopicConfigAlteration],
    ) -> BoxFuture<'a, BatchResult<()>> {
        Box::pin(self.alter_topic_configs_now(alterations))
    }

    fn delete_topics<'a>(&'a self, names: &'a [String]) -> BoxFuture<'a, BatchResult<()>> {
        Box::pin(self.delete_topics_now(names))
    }

    fn create_acls<'a>(&'a self, bindings: &'a [AclBinding]) -> BoxFuture<'a, BatchResult<()>> {
        Box::pin(self.create_acls_now(bindings))
    }

    fn describe_acls<'a>(
        &'a self,
        filter: &'a AclBindingFilter,
    ) -> BoxFuture<'a, Result<Vec<AclBinding>, KafkaAdminError>> {
        Box::pin(self.describe_acls_now(filter))
    }

    fn delete_acls<'a>(
        &'a self,
        filters: &'a [AclBindingFilter],
    ) -> BoxFuture<'a, BatchResult<Vec<AclBinding>>> {
        Box::pin(self.delete_acls_now(filters))
    }

    fn upsert_scram_credentials<'a>(
        &'a self,
        upserts: &'a [ScramCredentialUpsert],
    ) -> BoxFuture<'a, BatchResult<()>> {
        Box::pin(async move {
            let users: Vec<&str> = upserts.iter().map(|u| u.user.as_str()).collect();
            let outcomes = batch::check_scram_upserts(upserts);
            self.alter_scram_now(
                AdminOperation::UpsertScramCredentials,
                outcomes,
                &users,
                |i| ScramAlteration::Upsert(upserts[i].clone()),
            )
            .await
        })
    }

    fn delete_scram_credentials<'a>(
        &'a self,
        users: &'a [String],
        mechanism: ScramMechanism,
    ) -> BoxFuture<'a, BatchResult<()>> {
        Box::pin(async move {
            let names: Vec<&str> = users.iter().map(String::as_str).collect();
            let outcomes = batch::check_scram_deletions(users);
            self.alter_scram_now(
                AdminOperation::DeleteScramCredentials,
                outcomes,
                &names,
                |i| ScramAlteration::Delete(users[i].clone(), mechanism),
            )
            .await
        })
    }

    fn describe_scram_users<'a>(
        &'a self,
        users: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<ScramUser>, KafkaAdminError>> {
        Box::pin(self.describe_scram_users_now(users))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_debug_redacts_the_password_and_the_key() {
        let mut config = KafkaAdminConfig::new("127.0.0.1:29092", "admin", "hunter2-secret");
        config.tls.client_key_pem = Some(SecretString::new("-----BEGIN PRIVATE KEY-----xyz"));
        config.tls.ca_pem = Some("-----BEGIN CERTIFICATE-----abc".into());
        let text = format!("{config:?}");
        assert!(!text.contains("hunter2-secret"), "{text}");
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        assert!(!text.contains("BEGIN CERTIFICATE"), "{text}");
        assert!(
            text.contains("admin") && text.contains("127.0.0.1:29092"),
            "{text}"
        );
    }

    #[test]
    fn protocols_are_named_as_kafka_names_them() {
        for protocol in KafkaSecurityProtocol::ALL {
            assert_eq!(
                KafkaSecurityProtocol::from_name(protocol.as_str()),
                Some(protocol)
            );
        }
        assert_eq!(
            KafkaSecurityProtocol::default(),
            KafkaSecurityProtocol::SaslSsl
        );
        assert_eq!(KafkaSecurityProtocol::from_name("sasl_ssl"), None);
        assert_eq!(KafkaSecurityProtocol::from_name("TLS"), None);
    }

    #[test]
    fn sasl_ssl_with_scram_verifies_the_brokers_with_the_given_ca_and_their_names() {
        let mut config = KafkaAdminConfig::new("b:1", "admin", "pw");
        config.tls.ca_pem = Some("CA PEM".into());
        let client_config = config.client_config();
        assert_eq!(client_config.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(client_config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(client_config.get("sasl.username"), Some("admin"));
        assert_eq!(client_config.get("sasl.password"), Some("pw"));
        assert_eq!(client_config.get("ssl.ca.pem"), Some("CA PEM"));
        assert_eq!(client_config.get("ssl.certificate.pem"), None);
        assert_eq!(
            client_config.get("ssl.endpoint.identification.algorithm"),
            Some("https")
        );
        config.tls.verify_hostname = false;
        assert_eq!(
            config
                .client_config()
                .get("ssl.endpoint.identification.algorithm"),
            Some("none")
        );
    }

    #[test]
    fn sasl_plaintext_sets_no_tls_and_the_configured_mechanism() {
        let mut config = KafkaAdminConfig::new("b:1", "admin", "pw");
        config.security_protocol = KafkaSecurityProtocol::SaslPlaintext;
        config.tls.ca_pem = Some("CA PEM".into());
        if let Some(login) = config.sasl.as_mut() {
            login.mechanism = ScramMechanism::Sha256;
        }
        let client_config = config.client_config();
        assert_eq!(
            client_config.get("security.protocol"),
            Some("SASL_PLAINTEXT")
        );
        assert_eq!(client_config.get("sasl.mechanism"), Some("SCRAM-SHA-256"));
        assert_eq!(client_config.get("ssl.ca.pem"), None);
        assert_eq!(
            client_config.get("ssl.endpoint.identification.algorithm"),
            None
        );
    }

    #[test]
    fn ssl_logs_in_with_the_client_certificate_and_no_sasl() {
        let config = KafkaAdminConfig {
            bootstrap_servers: "b:1".into(),
            security_protocol: KafkaSecurityProtocol::Ssl,
            sasl: None,
            tls: KafkaTls {
                ca_pem: Some("CA PEM".into()),
                client_certificate_pem: Some("CERT PEM".into()),
                client_key_pem: Some(SecretString::new("KEY PEM")),
                verify_hostname: true,
            },
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        };
        assert_eq!(config.username(), None);
        let client_config = config.client_config();
        assert_eq!(client_config.get("security.protocol"), Some("SSL"));
        assert_eq!(client_config.get("sasl.mechanism"), None);
        assert_eq!(client_config.get("ssl.certificate.pem"), Some("CERT PEM"));
        assert_eq!(client_config.get("ssl.key.pem"), Some("KEY PEM"));
        assert_eq!(client_config.get("ssl.ca.pem"), Some("CA PEM"));
    }

    #[test]
    fn answers_are_matched_to_their_items_by_name() {
        let names = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let mut outcomes: Outcomes<()> = Outcomes::new(AdminOperation::DeleteTopics, 3);
        let answers = vec![
            NamedResult {
                name: "c".into(),
                failure: None,
            },
            NamedResult {
                name: "a".into(),
                failure: Some(KafkaFailure {
                    code: RDKafkaErrorCode::UnknownTopicOrPartition,
                    message: "no such topic".into(),
                }),
            },
            NamedResult {
                name: "zzz".into(),
                failure: None,
            },
        ];
        let answered = by_name(
            AdminOperation::DeleteTopics,
            &[0, 1, 2],
            |i| &names[i],
            answers,
            topic_resource,
        );
        assert_eq!(answered.len(), 2, "the unknown name is left out");
        settle(&mut outcomes, answered);
        let results = outcomes.finish(|i| topic_resource(&names[i]));
        assert!(
            results[0]
                .as_ref()
                .is_err_and(KafkaAdminError::is_unknown_topic)
        );
        assert!(matches!(
            results[1],
            Err(KafkaAdminError::Unexpected { .. })
        ));
        assert!(results[2].is_ok());
    }
}
