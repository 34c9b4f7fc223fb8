use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use datamesh_operator::controller::leader::LeaseTimings;
use datamesh_operator::telemetry::{self, LogFormat};

/// datamesh-operator: declared data mesh state, continuously reconciled.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions of the datamesh.dev API as YAML.
    Crds,
    /// Run the controllers (behind leader election) and the metrics and health endpoints.
    Run(RunArgs),
    /// Export DataProducts, from a manifest or the cluster, as Open Data Contract Standard
    /// contracts (`odcs`: one per output port, ODCS v3.1.0) or Open Data Product Standard
    /// documents (`odps`: one per product, ODPS v1.0.0).
    Export(ExportArgs),
}

/// The standards `datamesh-operator export` writes.
#[derive(Clone, Copy, clap::ValueEnum)]
enum StandardArg {
    /// Open Data Contract Standard v3.1.0: one contract per output port.
    Odcs,
    /// Open Data Product Standard v1.0.0: one document per product.
    Odps,
}

/// Output formats of `datamesh-operator export`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    /// YAML: several documents as a stream separated by `---`.
    Yaml,
    /// JSON: several documents as one array.
    Json,
}

/// Options of `datamesh-operator export`.
#[derive(Args)]
struct ExportArgs {
    /// The standard to export to.
    #[arg(value_enum)]
    standard: StandardArg,
    /// Only the DataProduct of this name.
    name: Option<String>,
    /// Read the DataProducts from this manifest (YAML, several documents or a List; `-` for
    /// standard input) instead of the cluster of the current kubeconfig context.
    #[arg(long, short = 'f')]
    file: Option<PathBuf>,
    /// Only DataProducts in this namespace.
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = FormatArg::Yaml)]
    output: FormatArg,
    /// Write one file per document, `<id>.odcs.yaml` or `<id>.odps.yaml` (`.json` with `-o
    /// json`), into this directory and print their paths, instead of printing the documents.
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

/// Options of `datamesh-operator run`.
#[derive(Args)]
struct RunArgs {
    /// The YAML configuration file (Kafka, S3, resync). `DATAMESH_*` environment variables
    /// set or override single settings.
    #[arg(long, env = "DATAMESH_CONFIG")]
    config: Option<PathBuf>,
    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, env = "DATAMESH_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Where to serve the catalog (read-only pages and JSON about the mesh); off when unset.
    #[arg(long, env = "DATAMESH_CATALOG_ADDR")]
    catalog_addr: Option<SocketAddr>,
    /// Log line format.
    #[arg(long, env = "DATAMESH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Take part in leader election, so only one replica reconciles.
    #[arg(long, env = "DATAMESH_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// The operator's own namespace, which no Domain may take, and the namespace of the leader
    /// Lease (in a cluster: the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "datamesh-system")]
    lease_namespace: String,
    /// The name of the leader Lease.
    #[arg(long, default_value = "datamesh-operator")]
    lease_name: String,
    /// This replica's identity in the election (in a cluster: the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// How long, in seconds, a leader's claim on the Lease lasts without renewal: a standby
    /// takes over after it saw the Lease unchanged this long.
    #[arg(long, env = "DATAMESH_LEASE_DURATION_SECONDS", default_value_t = 15)]
    lease_duration_seconds: u64,
    /// How long, in seconds, the leader may go on leading after it sent its last successful
    /// renewal; shorter than the lease duration.
    #[arg(
        long,
        env = "DATAMESH_LEASE_RENEW_DEADLINE_SECONDS",
        default_value_t = 10
    )]
    lease_renew_deadline_seconds: u64,
    /// How often, in seconds, the leader renews and a standby tries to acquire the Lease.
    #[arg(long, env = "DATAMESH_LEASE_RETRY_PERIOD_SECONDS", default_value_t = 2)]
    lease_retry_period_seconds: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds => print_crds(),
        Command::Run(args) => run(args),
        Command::Export(args) => export(args),
    }
}

/// Prints the exports (or writes their files); errors go to stderr, one per product.
fn export(args: ExportArgs) -> ExitCode {
    use datamesh_operator::export::{Format, cli};
    let request = cli::Request {
        standard: match args.standard {
            StandardArg::Odcs => cli::Standard::Odcs,
            StandardArg::Odps => cli::Standard::Odps,
        },
        file: args.file,
        namespace: args.namespace,
        name: args.name,
        format: match args.output {
            FormatArg::Yaml => Format::Yaml,
            FormatArg::Json => Format::Json,
        },
        out_dir: args.out_dir,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(&request)) {
        Ok(text) => match std::io::stdout().lock().write_all(text.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: cannot write to stdout: {error}");
                ExitCode::FAILURE
            }
        },
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Prints the CRDs; `crds/datamesh.dev.yaml` and the Helm chart hold the same text.
fn print_crds() -> ExitCode {
    let yaml = match datamesh_operator::api::crds_yaml() {
        Ok(yaml) => yaml,
        Err(error) => {
            eprintln!("error: cannot render the CRDs as YAML: {error}");
            return ExitCode::FAILURE;
        }
    };
    match std::io::stdout().lock().write_all(yaml.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: cannot write the CRDs to stdout: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> ExitCode {
    telemetry::init(args.log_format);
    let timings = match LeaseTimings::from_secs(
        args.lease_duration_seconds,
        args.lease_renew_deadline_seconds,
        args.lease_retry_period_seconds,
    ) {
        Ok(timings) => timings,
        Err(error) => {
            tracing::error!(%error, "invalid leader election timings");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let options = datamesh_operator::runner::Options {
        config: args.config,
        metrics_addr: args.metrics_addr,
        catalog_addr: args.catalog_addr,
        operator_namespace: args.lease_namespace.clone(),
        leader_election: args
            .leader_elect
            .then_some(datamesh_operator::runner::LeaderElection {
                namespace: args.lease_namespace,
                name: args.lease_name,
                identity,
                timings,
            }),
    };
    let result = runtime.block_on(datamesh_operator::runner::run(options));
    // Whatever still runs was abandoned on purpose (a lost lease, a drain past its grace): a
    // blocking call still waiting for Kafka must not hold the exit up.
    runtime.shutdown_background();
    let code = match result {
        Ok(()) => 0,
        Err(error) => {
            tracing::error!(%error, "datamesh-operator stopped");
            1
        }
    };
    // Abandoned tasks may still hold the Kafka clients, whose librdkafka threads keep using
    // OpenSSL. A normal exit runs the C atexit handlers, OpenSSL's cleanup among them, under
    // those threads: seen as "double free or corruption" right after SIGTERM. Nothing is left
    // to clean up that the kernel does not, so the process ends without running them.
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` only ends the process; the streams above are flushed and the Lease was
    // released before `run` returned.
    unsafe { libc::_exit(code) }
}

/// Outside a cluster: host name and process id, unique enough among replicas on one machine.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}-{}", std::process::id())
}
