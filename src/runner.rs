//! `datamesh-operator run`: load the configuration, connect to Kubernetes, Kafka and S3,
//! serve the HTTP endpoints, and run the controllers while this replica leads.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, Settings};
use crate::controller::leader::{LeaderElector, LeaderError, LeaseTimings};
use crate::controller::{self, Context};
use crate::metrics::Metrics;
use crate::provision::kafka::{KafkaAdminConfig, KafkaAdminError, RdKafkaAdmin};
use crate::provision::storage::{HttpObjectStore, StorageConfig, StorageError};

/// Why the process stopped other than by a signal.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("no Kubernetes client configuration (in-cluster or KUBECONFIG): {0}")]
    Kubernetes(#[source] Box<kube::Error>),
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
}

/// What `run` needs from the command line.
pub struct Options {
    pub config: Option<PathBuf>,
    pub metrics_addr: SocketAddr,
    /// The namespace the operator runs in: no Domain may take it.
    pub operator_namespace: String,
    /// `None` runs the controllers at once, without a Lease (a single replica).
    pub leader_election: Option<LeaderElection>,
}

/// Run until SIGTERM or SIGINT (then release the lease and return `Ok`), or until the lease
/// is lost (an error: the process should exit and be restarted as a candidate).
pub async fn run(options: Options) -> Result<(), RunError> {
    let settings = Settings::load(options.config.as_deref())?;
    let client = Client::try_default()
        .await
        .map_err(|e| RunError::Kubernetes(Box::new(e)))?;

    let metrics = Arc::new(Metrics::default());
    let kafka_password = settings
        .kafka
        .admin_password
        .resolve("kafka.adminPassword", &client)
        .await?;
    let kafka = RdKafkaAdmin::new(&KafkaAdminConfig::new(
        settings.kafka.bootstrap_servers.clone(),
        settings.kafka.admin_user.clone(),
        kafka_password,
    ))?
    .with_request_counter(metrics.request_counter());
    let s3_secret = settings
        .s3
        .admin_secret_key
        .resolve("s3.adminSecretKey", &client)
        .await?;
    let storage = HttpObjectStore::new(StorageConfig::new(
        settings.s3.endpoint.clone(),
        settings.s3.iam_endpoint.clone(),
        settings.s3.admin_access_key.clone(),
        s3_secret,
    ))?
    .with_request_counter(metrics.request_counter());
    tracing::info!(
        kafka = %settings.kafka.bootstrap_servers,
        s3 = %settings.s3.endpoint,
        resync_seconds = settings.resync.as_secs(),
        "configured"
    );

    let ctx = Arc::new(Context::new(
        client.clone(),
        settings,
        &options.operator_namespace,
        Arc::new(kafka),
        Arc::new(storage),
        metrics.clone(),
    ));

    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone())?;
    let http = tokio::spawn(crate::http::serve(
        options.metrics_addr,
        metrics.clone(),
        shutdown.clone(),
    ));
    metrics.set_ready(true);

    let result = match options.leader_election {
        None => {
            metrics.set_leader(true);
            run_controllers(ctx, shutdown.clone()).await;
            Ok(())
        }
        Some(election) => lead(client, election, ctx, &shutdown).await,
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

/// Wait for the lease, run the controllers while holding it, release it on shutdown.
async fn lead(
    client: Client,
    election: LeaderElection,
    ctx: Arc<Context>,
    shutdown: &CancellationToken,
) -> Result<(), RunError> {
    let mut elector = LeaderElector::new(
        client,
        &election.namespace,
        &election.name,
        election.identity,
        LeaseTimings::default(),
    );
    tracing::info!(identity = elector.identity(), lease = %election.name, namespace = %election.namespace, "waiting to lead");
    if !elector.acquire(shutdown).await {
        return Ok(());
    }
    tracing::info!(
        identity = elector.identity(),
        "leading: starting the controllers"
    );
    ctx.metrics.set_leader(true);
    let leading = shutdown.child_token();
    let metrics = ctx.metrics.clone();
    let (renewed, ()) = tokio::join!(
        elector.keep_renewing(&leading),
        run_controllers(ctx, leading.clone())
    );
    metrics.set_leader(false);
    renewed?;
    elector.release().await?;
    tracing::info!("released the leader lease");
    Ok(())
}

/// How long the controllers get, once asked to stop, to finish their in-flight reconciles:
/// within a pod's default 30 s termination grace, leaving time to release the lease.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// Every controller, until `stop` is cancelled; each finishes its in-flight reconciles, for at
/// most [`SHUTDOWN_GRACE`]. Reconciles are idempotent, so one cut short is finished by the
/// next leader; a shutdown that never ends would instead keep the lease from being released.
async fn run_controllers(ctx: Arc<Context>, stop: CancellationToken) {
    let controllers = async {
        tokio::join!(
            controller::domain::run(ctx.clone(), stop.clone()),
            controller::data_product::run(ctx.clone(), stop.clone()),
            controller::access_policy::run(ctx.clone(), stop.clone()),
        );
    };
    tokio::pin!(controllers);
    tokio::select! {
        () = &mut controllers => return,
        () = stop.cancelled() => {}
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, controllers)
        .await
        .is_err()
    {
        for (kind, object, running) in ctx.metrics.running_reconciles() {
            tracing::warn!(
                kind,
                object,
                running_seconds = running.as_secs(),
                grace_seconds = SHUTDOWN_GRACE.as_secs(),
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
