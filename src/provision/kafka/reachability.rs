//! A TCP check in front of every admin request, so that no request is handed to librdkafka
//! while no broker accepts connections.
//!
//! Why: librdkafka 2.12.1, the newest rdkafka-sys bundles, busy-loops while an admin request
//! waits for a broker that refuses connections. Its admin worker, "waiting for controller",
//! asks the broker thread to connect at once; the refusal changes the broker's state, which
//! wakes the worker, which asks again, bypassing `reconnect.backoff.ms`. Measured on the local
//! platform with Kafka stopped: one DescribeTopics kept two threads at about 95 % CPU for its
//! whole 15 s timeout with about 12,000 connection attempts a second (librdkafka's own debug
//! log), and the operator's four clients took both cores of the machine for as long as the
//! outage lasted. confluent-kafka's 2.16.0 build does not do it; 2.12.1, 2.13.0 and 2.15.0 do.
//!
//! So before a request, the operator makes sure some bootstrap server accepts a TCP
//! connection (closed at once: no TLS, no SASL, nothing for the broker to log). What it
//! learns is kept for [`FRESH`]: a busy operator probes at most about once a second, and
//! requests during an outage fail at once with [`KafkaAdminError::Unreachable`] (reported as
//! `KafkaUnavailable`, and retried with the controllers' backoff) instead of spinning until
//! their timeout. A request already on its way when the brokers go still spins until its own
//! timeout; only those are left. A broker that accepts TCP but not requests (overloaded,
//! misconfigured) is left to librdkafka's timeouts, as before.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::error::{AdminOperation, KafkaAdminError};

/// How long what one check learned is trusted.
const FRESH: Duration = Duration::from_secs(1);

/// How long a bootstrap server gets to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What the last check found, and when.
#[derive(Debug)]
struct Observation {
    at: Instant,
    /// `None` when a broker accepted; otherwise why none did.
    refused: Option<String>,
}

/// Whether some bootstrap server accepts connections, checked at most once per [`FRESH`].
#[derive(Debug)]
pub(super) struct Reachability {
    bootstrap_servers: String,
    /// `host:port` of each bootstrap server, without a `protocol://` prefix.
    addresses: Vec<String>,
    last: std::sync::Mutex<Option<Observation>>,
    /// Held while checking, so that requests arriving together share one check.
    checking: tokio::sync::Mutex<()>,
}

impl Reachability {
    pub(super) fn new(bootstrap_servers: &str) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.to_owned(),
            addresses: addresses(bootstrap_servers),
            last: std::sync::Mutex::new(None),
            checking: tokio::sync::Mutex::new(()),
        }
    }

    /// `Ok` when a bootstrap server accepted a connection within
    /// [`FRESH`], or accepts one now; otherwise why none does.
    pub(super) async fn check(&self, operation: AdminOperation) -> Result<(), KafkaAdminError> {
        if let Some(known) = self.fresh() {
            return self.verdict(operation, known);
        }
        let _checking = self.checking.lock().await;
        // Another request may have checked while this one waited for the lock.
        if let Some(known) = self.fresh() {
            return self.verdict(operation, known);
        }
        let refused = self.connect_any().await.err();
        self.remember(refused.clone());
        self.verdict(operation, refused)
    }

    fn fresh(&self) -> Option<Option<String>> {
        let last = self.last.lock().ok()?;
        last.as_ref()
            .filter(|seen| seen.at.elapsed() < FRESH)
            .map(|seen| seen.refused.clone())
    }

    fn remember(&self, refused: Option<String>) {
        if let Ok(mut last) = self.last.lock() {
            *last = Some(Observation {
                at: Instant::now(),
                refused,
            });
        }
    }

    fn verdict(
        &self,
        operation: AdminOperation,
        refused: Option<String>,
    ) -> Result<(), KafkaAdminError> {
        match refused {
            None => Ok(()),
            Some(reason) => Err(KafkaAdminError::Unreachable {
                operation,
                bootstrap_servers: self.bootstrap_servers.clone(),
                reason,
            }),
        }
    }

    /// Connects to the bootstrap servers one after another until one accepts; the error says
    /// what each answered.
    async fn connect_any(&self) -> Result<(), String> {
        let mut failures = Vec::with_capacity(self.addresses.len());
        for address in &self.addresses {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address.as_str())).await
            {
                Ok(Ok(_stream)) => return Ok(()),
                Ok(Err(error)) => failures.push(format!("{address}: {error}")),
                Err(_) => failures.push(format!(
                    "{address}: no answer within {}s",
                    CONNECT_TIMEOUT.as_secs()
                )),
            }
        }
        if failures.is_empty() {
            failures.push("no bootstrap server is configured".to_owned());
        }
        Err(failures.join("; "))
    }
}

/// The `host:port` of each server in a `bootstrap.servers` list (comma-separated, each maybe
/// with a `PROTOCOL://` prefix, as librdkafka accepts them).
fn addresses(bootstrap_servers: &str) -> Vec<String> {
    bootstrap_servers
        .split(',')
        .map(str::trim)
        .filter(|server| !server.is_empty())
        .map(|server| {
            server
                .split_once("://")
                .map_or(server, |(_, address)| address)
                .to_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn bootstrap_servers_are_split_and_their_protocols_dropped() {
        assert_eq!(
            addresses(" a:9092, SASL_SSL://b.example:9093 ,,[::1]:9094"),
            ["a:9092", "b.example:9093", "[::1]:9094"]
        );
        assert!(addresses("").is_empty());
    }

    /// A local port nothing listens on: bound, then closed.
    async fn refusing_address() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        address
    }

    #[tokio::test]
    async fn a_refused_connection_fails_the_check_and_names_each_server() {
        let (first, second) = (refusing_address().await, refusing_address().await);
        let reachability = Reachability::new(&format!("{first},{second}"));
        let error = reachability
            .check(AdminOperation::DescribeTopics)
            .await
            .unwrap_err();
        assert!(error.is_transient(), "{error}");
        let text = error.to_string();
        assert!(text.contains(&first) && text.contains(&second), "{text}");
        assert!(text.contains("describe_topics"), "{text}");
    }

    #[tokio::test]
    async fn one_listening_server_is_enough() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listening = listener.local_addr().unwrap().to_string();
        let refusing = refusing_address().await;
        let reachability = Reachability::new(&format!("{refusing},PLAINTEXT://{listening}"));
        reachability
            .check(AdminOperation::CreateTopics)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn what_a_check_found_is_kept_for_a_second() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let reachability = Reachability::new(&address);
        reachability
            .check(AdminOperation::CreateTopics)
            .await
            .unwrap();
        // The broker goes away: within FRESH the last finding stands, then the next check sees it.
        drop(listener);
        reachability
            .check(AdminOperation::CreateTopics)
            .await
            .unwrap();
        tokio::time::sleep(FRESH).await;
        assert!(
            reachability
                .check(AdminOperation::CreateTopics)
                .await
                .is_err()
        );
    }
}
