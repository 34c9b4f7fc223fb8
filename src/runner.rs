//! `datamesh-operator run`: load the configuration, connect to Kubernetes, Kafka and S3,
//! serve the HTTP endpoints, and run the controllers while this replica leads.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, header::USER_AGENT};
use kube::client::ClientBuilder;
use kube::config::InferConfigError;
use kube::{Client, Config};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, S3Credentials, S3Settings, SecretSource, SecretString, Settings};
use crate::controller::fence::FenceLayer;
use crate::controller::leader::{LeaderElector, LeaderError, Leadership, LeaseTimings};
use crate::controller::stores::Watches;
use crate::controller::{self, Context};
use crate::metrics::Metrics;
use crate::provision::kafka::{
    DEFAULT_REQUEST_TIMEOUT, KafkaAdminConfig, KafkaAdminError, KafkaTls, RdKafkaAdmin, ScramLogin,
    SnapshotKafka,
};
use crate::provision::storage::{
    SdkObjectStorage, StorageConfig, StorageCredentials, StorageError,
};

/// Why the process stopped other than by a signal.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("no Kubernetes client configuration (in-cluster or KUBECONFIG): {0}")]
    KubernetesConfig(#[source] Box<InferConfigError>),
    #[error("Kubernetes client: {0}")]
    Kubernetes(#[source] Box<kube::Error>),
    #[error("User-Agent {user_agent:?} is not a valid header value: {source}")]
    UserAgent {
        user_agent: String,
        source: http::header::InvalidHeaderValue,
    },
    #[error("Kafka admin client: {0}")]
    Kafka(#[from] KafkaAdminError),
    #[error("object storage client: {0}")]
    Storage(#[from] StorageError),
    #[error("serving HTTP on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("installing the signal handler: {0}")]
    Signal(std::io::Error),
    #[error(transparent)]
    Leader(#[from] LeaderError),
}

/// Where this replica takes part in leader election.
pub struct LeaderElection {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub timings: LeaseTimings,
}

/// What `run` needs from the command line.
pub struct Options {
    pub config: Option<PathBuf>,
    pub metrics_addr: SocketAddr,
    /// Where to serve the catalog, on every replica; `None` serves none.
    pub catalog_addr: Option<SocketAddr>,
    /// The namespace the operator runs in: no Domain may take it.
    pub operator_namespace: String,
    /// `None` runs the controllers at once, without a Lease (a single replica).
    pub leader_election: Option<LeaderElection>,
}

/// Run until SIGTERM or SIGINT (then release the lease and return `Ok`), or until the lease
/// is lost (an error: the process should exit and be restarted as a candidate).
pub async fn run(options: Options) -> Result<(), RunError> {
    let settings = Settings::load(options.config.as_deref())?;
    let leadership = match &options.leader_election {
        Some(election) => Leadership::elected(election.timings.renew_deadline()),
        None => Leadership::unconditional(),
    };
    let identity = options
        .leader_election
        .as_ref()
        .map(|e| e.identity.as_str());
    let (client, lease_client) = kubernetes_clients(identity, &leadership).await?;

    let metrics = Arc::new(Metrics::default());
    let (kafka_config, domain_kafka_ca) = kafka_admin_config(&settings, &client).await?;
    let kafka = RdKafkaAdmin::new(&kafka_config)?.with_request_counter(metrics.request_counter());
    // Reconciles read Kafka from one shared snapshot and their writes go out batched.
    let snapshot = settings.kafka.snapshot_settings(settings.resync);
    let kafka = SnapshotKafka::new(Arc::new(kafka), snapshot);
    let s3_credentials = match &settings.s3.credentials {
        S3Credentials::Static {
            access_key,
            secret_key,
        } => StorageCredentials::Static {
            access_key_id: access_key.clone(),
            secret_access_key: secret_key.resolve("s3.adminSecretKey", &client).await?,
        },
        S3Credentials::DefaultChain => StorageCredentials::DefaultChain,
    };
    let s3_ca_bundle = match &settings.s3.ca_bundle {
        Some(source) => Some(
            source
                .resolve("s3.caBundle", &client)
                .await?
                .expose()
                .to_owned(),
        ),
        None => None,
    };
    let storage_config = storage_config(&settings.s3, s3_credentials, s3_ca_bundle.clone());
    let storage = SdkObjectStorage::connect(&storage_config, metrics.request_counter()).await?;
    tracing::info!(
        kafka = %settings.kafka.bootstrap_servers,
        kafka_security_protocol = %settings.kafka.security_protocol,
        kafka_domains = %settings.kafka.domain_bootstrap_servers,
        s3 = %settings.s3.endpoint,
        s3_region = %settings.s3.region,
        iam = %settings.s3.iam_endpoint,
        iam_region = %settings.s3.iam_region,
        s3_credentials = match settings.s3.credentials {
            S3Credentials::Static { .. } => "static",
            S3Credentials::DefaultChain => "default chain",
        },
        resync_seconds = settings.resync.as_secs(),
        kafka_snapshot_refresh_seconds = snapshot.refresh.as_secs_f64(),
        kafka_batch_window_ms = snapshot.batch_window.as_millis() as u64,
        kafka_batch_max_items = snapshot.batch_max_items,
        "configured"
    );

    let ctx = Arc::new(
        Context::new(
            client.clone(),
            settings,
            &options.operator_namespace,
            Arc::new(kafka),
            domain_kafka_ca,
            Arc::new(storage),
            metrics.clone(),
        )
        .with_s3_ca_bundle(s3_ca_bundle),
    );

    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone())?;
    let http = tokio::spawn(crate::http::serve(
        options.metrics_addr,
        metrics.clone(),
        shutdown.clone(),
    ));
    if let Some(addr) = options.catalog_addr {
        let (client, shutdown) = (client.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(error) = crate::catalog::serve(addr, client, shutdown).await {
                tracing::error!(%addr, %error, "the catalog is not served");
            }
        });
    }
    metrics.set_ready(true);

    let result = match options.leader_election {
        None => {
            metrics.set_leader(true);
            run_controllers(ctx, shutdown.clone()).await;
            Ok(())
        }
        Some(election) => lead(lease_client, election, leadership, ctx, &shutdown).await,
    };
    shutdown.cancel();
    match http.await {
        Ok(Err(source)) => Err(RunError::Http {
            addr: options.metrics_addr,
            source,
        }),
        _ => result,
    }
}

/// The Kafka admin client's configuration, with its password, certificates and key read from
/// their Secrets or files; and the CA certificate the domains' clients are handed (when they
/// connect over TLS and a CA is configured).
async fn kafka_admin_config(
    settings: &Settings,
    client: &Client,
) -> Result<(KafkaAdminConfig, Option<String>), RunError> {
    let kafka = &settings.kafka;
    async fn read(
        setting: &'static str,
        source: Option<&SecretSource>,
        client: &Client,
    ) -> Result<Option<SecretString>, ConfigError> {
        match source {
            Some(source) => source.resolve(setting, client).await.map(Some),
            None => Ok(None),
        }
    }
    let password = read("kafka.adminPassword", kafka.admin_password.as_ref(), client).await?;
    let ca = read(
        "kafka.tls.caCertificate",
        kafka.tls.ca_certificate.as_ref(),
        client,
    )
    .await?
    .map(|pem| pem.expose().to_owned());
    let certificate = read(
        "kafka.tls.clientCertificate",
        kafka.tls.client_certificate.as_ref(),
        client,
    )
    .await?
    .map(|pem| pem.expose().to_owned());
    let key = read("kafka.tls.clientKey", kafka.tls.client_key.as_ref(), client).await?;
    // Checked at load: with SASL both the user and the password are set.
    let sasl = kafka
        .admin_user
        .clone()
        .zip(password)
        .filter(|_| kafka.security_protocol.uses_sasl())
        .map(|(username, password)| ScramLogin {
            mechanism: kafka.sasl_mechanism,
            username,
            password,
        });
    let domain_ca = ca
        .clone()
        .filter(|_| kafka.domain_security_protocol.uses_tls());
    let config = KafkaAdminConfig {
        bootstrap_servers: kafka.bootstrap_servers.clone(),
        security_protocol: kafka.security_protocol,
        sasl,
        tls: KafkaTls {
            ca_pem: ca,
            client_certificate_pem: certificate,
            client_key_pem: key,
            verify_hostname: kafka.tls.verify_hostname,
        },
        request_timeout: DEFAULT_REQUEST_TIMEOUT,
    };
    Ok((config, domain_ca))
}

/// The object storage client's configuration: the `s3` settings, with the credentials and the CA
/// bundle read from where the settings say.
fn storage_config(
    s3: &S3Settings,
    credentials: StorageCredentials,
    ca_bundle: Option<String>,
) -> StorageConfig {
    StorageConfig {
        region: s3.region.clone(),
        iam_region: s3.iam_region.clone(),
        addressing: s3.addressing,
        ca_bundle,
        retry_mode: s3.retry_mode,
        max_attempts: s3.max_attempts,
        ..StorageConfig::with_credentials(s3.endpoint.clone(), s3.iam_endpoint.clone(), credentials)
    }
}

/// The controllers' client, whose writes are fenced by `leadership`, and the unfenced client
/// the elector acquires the lease with. Both say who they are in their User-Agent
/// (`datamesh-operator/VERSION (IDENTITY)`), so the API server's audit log tells replicas apart.
async fn kubernetes_clients(
    identity: Option<&str>,
    leadership: &Arc<Leadership>,
) -> Result<(Client, Client), RunError> {
    let mut config = Config::infer()
        .await
        .map_err(|e| RunError::KubernetesConfig(Box::new(e)))?;
    let user_agent = match identity {
        Some(identity) => format!(
            "datamesh-operator/{} ({identity})",
            env!("CARGO_PKG_VERSION")
        ),
        None => format!("datamesh-operator/{}", env!("CARGO_PKG_VERSION")),
    };
    let value = HeaderValue::from_str(&user_agent).map_err(|source| RunError::UserAgent {
        user_agent: user_agent.clone(),
        source,
    })?;
    config.headers.push((USER_AGENT, value));
    let lease_client =
        Client::try_from(config.clone()).map_err(|e| RunError::Kubernetes(Box::new(e)))?;
    let client = ClientBuilder::try_from(config)
        .map_err(|e| RunError::Kubernetes(Box::new(e)))?
        .with_layer(&FenceLayer::new(leadership.clone()))
        .build();
    Ok((client, lease_client))
}

/// Wait for the lease and run the controllers while holding it.
///
/// Losing the lease abandons the controllers at once (their futures are dropped mid-reconcile:
/// no further write is sent, and the fence refuses any that a woken task tries before then)
/// and returns the loss as an error, so the process exits and restarts as a candidate. On
/// shutdown the controllers drain their in-flight reconciles for at most [`DRAIN_GRACE`] while
/// the lease is still renewed, then the lease is released (within 5 s).
async fn lead(
    lease_client: Client,
    election: LeaderElection,
    leadership: Arc<Leadership>,
    ctx: Arc<Context>,
    shutdown: &CancellationToken,
) -> Result<(), RunError> {
    let mut elector = LeaderElector::new(
        lease_client,
        &election.namespace,
        &election.name,
        election.identity,
        election.timings.clone(),
        leadership,
    );
    tracing::info!(
        identity = elector.identity(),
        lease = %election.name,
        namespace = %election.namespace,
        lease_duration_seconds = election.timings.lease_duration().as_secs(),
        renew_deadline_seconds = election.timings.renew_deadline().as_secs(),
        retry_period_seconds = election.timings.retry_period().as_secs(),
        "waiting to lead"
    );
    if !elector.acquire(shutdown).await {
        return Ok(());
    }
    tracing::info!(
        identity = elector.identity(),
        "leading: starting the controllers"
    );
    ctx.metrics.set_leader(true);
    let metrics = ctx.metrics.clone();
    let drain = CancellationToken::new();
    let lost = {
        let controllers = run_controllers(ctx, drain.clone());
        tokio::pin!(controllers);
        let renewing = elector.keep_renewing();
        tokio::pin!(renewing);
        tokio::select! {
            lost = &mut renewing => Some(lost),
            () = &mut controllers => None,
            () = shutdown.cancelled() => {
                drain.cancel();
                tokio::select! {
                    lost = &mut renewing => Some(lost),
                    () = &mut controllers => None,
                }
            }
        }
        // Leaving this block drops the controllers, abandoning whatever they were doing.
    };
    metrics.set_leader(false);
    if let Some(lost) = lost {
        tracing::error!(error = %lost, "lost the leader lease: controllers abandoned");
        return Err(lost.into());
    }
    elector.release().await?;
    tracing::info!("released the leader lease");
    Ok(())
}

/// How long the controllers get, once asked to stop, to finish their in-flight reconciles.
/// With the lease's release (at most [`RELEASE_TIMEOUT`](crate::controller::leader::RELEASE_TIMEOUT), 5 s) it must fit in the
/// pod's termination grace period (`terminationGracePeriodSeconds` in the chart, 30 s) with
/// margin: see the test `shutdown_fits_in_the_charts_grace_period`.
pub const DRAIN_GRACE: Duration = Duration::from_secs(15);

/// Every controller, until `stop` is cancelled; each finishes its in-flight reconciles, for at
/// most [`DRAIN_GRACE`]. Reconciles are idempotent, so one cut short is finished by the
/// next leader; a shutdown that never ends would instead keep the lease from being released.
///
/// The controllers share one watch per kind ([`Watches`]): each subscribes to what it needs,
/// then the watches run alongside them, and stop with them.
async fn run_controllers(ctx: Arc<Context>, stop: CancellationToken) {
    let mut watches = Watches::new(&ctx.client);
    let stores = Arc::new(watches.stores());
    let domains = controller::domain::run(ctx.clone(), stores.clone(), &mut watches, stop.clone());
    let products =
        controller::data_product::run(ctx.clone(), stores.clone(), &mut watches, stop.clone());
    let policies = controller::access_policy::run(ctx.clone(), stores, &mut watches, stop.clone());
    let watching = watches.run();
    let controllers = async {
        tokio::select! {
            _ = async { tokio::join!(domains, products, policies) } => {}
            // The watches retry for good: they end only when the controllers do.
            () = watching => {}
        }
    };
    tokio::pin!(controllers);
    tokio::select! {
        () = &mut controllers => return,
        () = stop.cancelled() => {}
    }
    if tokio::time::timeout(DRAIN_GRACE, controllers)
        .await
        .is_err()
    {
        for (kind, object, running) in ctx.metrics.running_reconciles() {
            tracing::warn!(
                kind,
                object,
                running_seconds = running.as_secs(),
                grace_seconds = DRAIN_GRACE.as_secs(),
                "reconcile still running at shutdown: abandoned"
            );
        }
    }
}

fn spawn_signal_handler(shutdown: CancellationToken) -> Result<(), RunError> {
    let mut terminate = signal(SignalKind::terminate()).map_err(RunError::Signal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(RunError::Signal)?;
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
        }
        shutdown.cancel();
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_s3_setting_reaches_the_storage_client() {
        use crate::provision::storage::{Addressing, RetryMode};
        let s3 = S3Settings {
            endpoint: "https://s3.eu-west-1.amazonaws.com".into(),
            iam_endpoint: "https://iam.amazonaws.com".into(),
            region: "eu-west-1".into(),
            iam_region: "us-east-1".into(),
            addressing: Addressing::VirtualHosted,
            credentials: S3Credentials::DefaultChain,
            ca_bundle: None,
            retry_mode: RetryMode::Adaptive,
            max_attempts: 7,
            admin_user: None,
        };
        let config = storage_config(&s3, StorageCredentials::DefaultChain, Some("PEM".into()));
        assert_eq!(config.endpoint, "https://s3.eu-west-1.amazonaws.com");
        assert_eq!(config.iam_endpoint, "https://iam.amazonaws.com");
        assert_eq!(config.region, "eu-west-1", "the S3 region is not dropped");
        assert_eq!(config.iam_region, "us-east-1");
        assert_eq!(config.addressing, Addressing::VirtualHosted);
        assert_eq!(config.retry_mode, RetryMode::Adaptive);
        assert_eq!(config.max_attempts, 7);
        assert_eq!(config.ca_bundle.as_deref(), Some("PEM"));
        assert!(matches!(
            config.credentials,
            StorageCredentials::DefaultChain
        ));
    }
    use crate::controller::leader::RELEASE_TIMEOUT;

    /// Seconds left, after the drain and the lease's release, before the kubelet kills the pod.
    const MARGIN: Duration = Duration::from_secs(5);

    fn grace_period(path: &str, pointer: &str) -> Option<Duration> {
        let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(full).ok()?;
        let value: serde_json::Value = serde_yaml::from_str(&text).ok()?;
        value
            .pointer(pointer)
            .and_then(serde_json::Value::as_u64)
            .map(Duration::from_secs)
    }

    #[test]
    fn shutdown_fits_in_the_charts_grace_period() {
        let shutdown = DRAIN_GRACE + RELEASE_TIMEOUT + MARGIN;
        let chart = grace_period(
            "charts/datamesh-operator/values.yaml",
            "/terminationGracePeriodSeconds",
        );
        assert!(
            chart.is_some_and(|grace| grace >= shutdown),
            "chart: {chart:?} < {shutdown:?}"
        );
        let template = std::fs::read_to_string(format!(
            "{}/charts/datamesh-operator/templates/deployment.yaml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap_or_default();
        assert!(template.contains(
            "terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}"
        ));
        assert!(template.contains(&format!(
            "lt (int .Values.terminationGracePeriodSeconds) {}",
            shutdown.as_secs()
        )));
        let kustomize = grace_period(
            "config/manager/deployment.yaml",
            "/spec/template/spec/terminationGracePeriodSeconds",
        );
        assert!(
            kustomize.is_some_and(|grace| grace >= shutdown),
            "kustomize: {kustomize:?} < {shutdown:?}"
        );
    }
}
