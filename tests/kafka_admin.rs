//! The Kafka edge against the real broker of the local platform, checked with Kafka's own
//! CLI tools and with clients that authenticate as the users we create.
//!
//! Needs `eval "$(e2e/stack env)"`; fails (never skips) without it.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use datamesh_operator::metrics::Metrics;
use datamesh_operator::provision::kafka::{
    AclBinding, AclBindingFilter, AclOperation, AclPatternType, AclResourceType, KafkaAdmin,
    KafkaAdminConfig, KafkaAdminError, KafkaSecurityProtocol, NewTopic, PartitionIncrease,
    RDKafkaErrorCode, RdKafkaAdmin, ScramCredentialUpsert, ScramMechanism, SnapshotKafka,
    SnapshotSettings, TopicConfigAlteration, TopicDescription, config_drift, user_principal,
};
use futures::FutureExt;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// How long a change may take to reach the broker's authenticator and authorizer.
const PROPAGATION: Duration = Duration::from_secs(30);

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `eval \"$(e2e/stack env)\"` with the local platform up")
    })
}

/// A name part unique to this run, so runs never see each other's topics, users or ACLs.
fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}-{}", std::process::id(), nanos % 1_000_000_000_000)
}

fn random_password() -> String {
    let state = RandomState::new();
    format!(
        "{:016x}{:016x}",
        state.hash_one(1u8),
        state.hash_one(run_id())
    )
}

/// The protocol of the platform's `KAFKA_BOOTSTRAP_SERVERS` (SASL_SSL unless the developer
/// asked `e2e/stack env` for plaintext).
fn protocol() -> KafkaSecurityProtocol {
    let name = env("KAFKA_SECURITY_PROTOCOL");
    KafkaSecurityProtocol::from_name(&name)
        .unwrap_or_else(|| panic!("KAFKA_SECURITY_PROTOCOL={name} is not a protocol"))
}

fn admin() -> Arc<dyn KafkaAdmin> {
    let mut config = KafkaAdminConfig::new(
        env("KAFKA_BOOTSTRAP_SERVERS"),
        env("KAFKA_ADMIN_USER"),
        env("KAFKA_ADMIN_PASSWORD"),
    );
    config.security_protocol = protocol();
    config.tls.ca_pem = Some(std::fs::read_to_string(env("KAFKA_CA_FILE")).expect("the CA file"));
    Arc::new(RdKafkaAdmin::new(&config).expect("admin client"))
}

/// The client properties that reach the platform's listener over its protocol (with the
/// platform's CA over TLS), without the login.
fn transport_properties() -> String {
    let protocol = protocol();
    let mut properties = format!("security.protocol={protocol}\n");
    if protocol.uses_tls() {
        properties.push_str(&format!(
            "ssl.truststore.type=PEM\nssl.truststore.location={}\n",
            env("KAFKA_CA_FILE")
        ));
    }
    properties
}

/// A scratch directory for client properties files, removed at the end of the test.
struct Scratch(PathBuf);

impl Scratch {
    fn new(run: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("kafka-admin-e2e-{run}"));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// A client properties file that authenticates as `user` with SCRAM-SHA-512.
    fn client_properties(&self, file: &str, user: &str, password: &str) -> PathBuf {
        let path = self.0.join(format!("{file}.properties"));
        std::fs::write(
            &path,
            format!(
                "{}\
                 sasl.mechanism=SCRAM-SHA-512\n\
                 sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{user}\" password=\"{password}\";\n\
                 request.timeout.ms=10000\n\
                 default.api.timeout.ms=15000\n\
                 max.block.ms=15000\n\
                 delivery.timeout.ms=15000\n",
                transport_properties()
            ),
        )
        .unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs one of Kafka's own CLI tools.
fn kafka_cli(tool: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let program = Path::new(&env("KAFKA_HOME")).join("bin").join(tool);
    let mut command = Command::new(&program);
    command
        .arg("--bootstrap-server")
        .arg(env("KAFKA_BOOTSTRAP_SERVERS"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|err| panic!("running {}: {err}", program.display()));
    if let Some(input) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Runs a CLI tool until its output satisfies `ok` (brokers apply changes shortly after the
/// controller accepts them), or fails the test with the last output.
fn eventually_cli(what: &str, tool: &str, args: &[&str], ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + PROPAGATION;
    loop {
        let output = kafka_cli(tool, args, None);
        let all = text(&output);
        if output.status.success() && ok(&all) {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {PROPAGATION:?}; last output: {all}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Lists topics as the user: succeeds exactly when the user authenticates.
fn cli_list_topics_as(properties: &Path) -> Output {
    kafka_cli(
        "kafka-topics.sh",
        &["--command-config", properties.to_str().unwrap(), "--list"],
        None,
    )
}

/// Waits until `check` returns `Ok`, or fails the test with the last observation.
async fn eventually<F, Fut, T>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + PROPAGATION;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: not within {PROPAGATION:?}; last observation: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Describes topics until `ok` holds for the answer (brokers apply changes shortly after the
/// controller accepts them), or fails the test with the last answer.
async fn describe_until(
    kafka: &Arc<dyn KafkaAdmin>,
    names: &[String],
    ok: impl Fn(&[Result<Option<TopicDescription>, KafkaAdminError>]) -> bool,
) -> Vec<Result<Option<TopicDescription>, KafkaAdminError>> {
    let ok = &ok;
    eventually("the topics are described as expected", move || async move {
        let described = kafka
            .describe_topics(names)
            .await
            .map_err(|err| err.to_string())?;
        if ok(&described) {
            Ok(described)
        } else {
            Err(format!("{described:?}"))
        }
    })
    .await
}

/// Produces one record as `user` with librdkafka; the error code if Kafka refuses.
async fn produce_as(
    user: &str,
    password: &str,
    topic: &str,
) -> Result<(), Option<RDKafkaErrorCode>> {
    // A fresh producer each time: librdkafka caches a topic's authorization error.
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", env("KAFKA_BOOTSTRAP_SERVERS"))
        .set("security.protocol", protocol().as_str())
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", user)
        .set("sasl.password", password)
        .set("message.timeout.ms", "10000");
    if protocol().uses_tls() {
        config.set("ssl.ca.location", env("KAFKA_CA_FILE"));
    }
    let producer: FutureProducer = config.create().expect("producer");
    producer
        .send(
            FutureRecord::to(topic).key("k").payload("from rdkafka"),
            Duration::from_secs(10),
        )
        .await
        .map(|_| ())
        .map_err(|(err, _)| err.rdkafka_error_code())
}

fn topic_spec(name: &str, partitions: i32, configs: &[(&str, &str)]) -> NewTopic {
    NewTopic {
        name: name.to_owned(),
        partitions,
        replication_factor: 1,
        configs: configs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

/// Removes what a test made even when it failed half-way, then lets the failure through.
async fn with_cleanup(
    kafka: &Arc<dyn KafkaAdmin>,
    topics: Vec<String>,
    users: Vec<String>,
    scenario: impl Future<Output = ()>,
) {
    let outcome = AssertUnwindSafe(scenario).catch_unwind().await;
    // Best effort: most of these are already gone when the scenario passed.
    let principals: Vec<_> = users
        .iter()
        .map(|user| AclBindingFilter::for_principal(user_principal(user)))
        .collect();
    let _ = kafka.delete_acls(&principals).await;
    let _ = kafka
        .delete_scram_credentials(&users, ScramMechanism::Sha512)
        .await;
    let _ = kafka.delete_topics(&topics).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scram_user_authenticates_and_acls_alone_decide_what_it_may_do() {
    let run = run_id();
    let kafka = admin();
    let topics = vec![format!("e2e.{run}.acl")];
    let users = vec![format!("e2e-user-{run}")];
    with_cleanup(&kafka, topics, users, scram_and_acl_scenario(&kafka, &run)).await;
}

async fn scram_and_acl_scenario(kafka: &Arc<dyn KafkaAdmin>, run: &str) {
    let scratch = Scratch::new(run);
    let user = format!("e2e-user-{run}");
    let password = random_password();
    let principal = user_principal(&user);
    let topic = format!("e2e.{run}.acl");

    let created = kafka
        .create_topics(&[topic_spec(&topic, 1, &[])])
        .await
        .unwrap();
    assert!(created[0].is_ok(), "{created:?}");

    // The user gets a SCRAM-SHA-512 credential; Kafka lists it.
    let upserted = kafka
        .upsert_scram_credentials(&[ScramCredentialUpsert::new(&user, &password)])
        .await
        .unwrap();
    assert!(upserted[0].is_ok(), "{upserted:?}");
    // Brokers learn of the change from the controller shortly after it is accepted.
    let (kafka_ref, user_ref) = (kafka, &user);
    let described = eventually("the user's credential is described", move || async move {
        let described = kafka_ref
            .describe_scram_users(std::slice::from_ref(user_ref))
            .await
            .map_err(|err| err.to_string())?;
        (!described.is_empty())
            .then_some(described.clone())
            .ok_or_else(|| format!("{described:?}"))
    })
    .await;
    assert_eq!(described.len(), 1, "{described:?}");
    assert_eq!(described[0].user, user);
    assert!(described[0].has_sha512(), "{described:?}");
    let all = kafka.describe_scram_users(&[]).await.unwrap();
    assert!(all.iter().any(|u| u.user == user), "{all:?}");

    // Kafka's own CLI authenticates with it; a wrong password does not.
    let user_properties = scratch.client_properties("user", &user, &password);
    // References the retried checks copy into each attempt.
    let (props, password_ref, topic_ref) = (&user_properties, &password, &topic);
    eventually(
        "the user authenticates with Kafka's CLI",
        move || async move {
            let output = cli_list_topics_as(props);
            output
                .status
                .success()
                .then_some(())
                .ok_or_else(|| text(&output))
        },
    )
    .await;
    let wrong = scratch.client_properties("wrong-password", &user, "not-the-password");
    let output = cli_list_topics_as(&wrong);
    assert!(!output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("Authentication failed"),
        "{}",
        text(&output)
    );

    // Authenticated but without ACLs: refused on the topic.
    let refused = produce_as(&user, &password, &topic).await;
    assert_eq!(
        refused,
        Err(Some(RDKafkaErrorCode::TopicAuthorizationFailed))
    );

    // Write and Describe on the topic make producing work, for librdkafka and the Java CLI.
    let bindings = AclBinding::allow_each(
        AclResourceType::Topic,
        AclPatternType::Literal,
        &topic,
        &principal,
        &[AclOperation::Write, AclOperation::Describe],
    );
    let created = kafka.create_acls(&bindings).await.unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    eventually("producing is allowed after the ACLs", move || async move {
        produce_as(user_ref, password_ref, topic_ref)
            .await
            .map_err(|code| format!("{code:?}"))
    })
    .await;
    let output = kafka_cli(
        "kafka-console-producer.sh",
        &[
            "--command-config",
            user_properties.to_str().unwrap(),
            "--topic",
            &topic,
        ],
        Some("from the java cli\n"),
    );
    assert!(output.status.success(), "{}", text(&output));
    let admin_properties = env("KAFKA_ADMIN_CONFIG");
    let output = kafka_cli(
        "kafka-console-consumer.sh",
        &[
            "--command-config",
            &admin_properties,
            "--topic",
            &topic,
            "--from-beginning",
            "--max-messages",
            "2",
            "--timeout-ms",
            "20000",
        ],
        None,
    );
    let consumed = text(&output);
    assert!(
        consumed.contains("from rdkafka") && consumed.contains("from the java cli"),
        "{consumed}"
    );

    // Describe by principal finds exactly those bindings; so does Kafka's CLI.
    let mut found = kafka
        .describe_acls(&AclBindingFilter::for_principal(&principal))
        .await
        .unwrap();
    found.sort();
    let mut expected = bindings.clone();
    expected.sort();
    assert_eq!(found, expected);
    let output = kafka_cli(
        "kafka-acls.sh",
        &[
            "--command-config",
            &admin_properties,
            "--list",
            "--topic",
            &topic,
        ],
        None,
    );
    let listed = text(&output);
    assert!(output.status.success(), "{listed}");
    assert!(
        listed.contains(&format!("principal={principal}"))
            && listed.contains("operation=WRITE")
            && listed.contains("operation=DESCRIBE"),
        "{listed}"
    );

    // Deleting with exact filters removes exactly what was made, and access with it.
    let filters: Vec<_> = bindings.iter().map(AclBindingFilter::exact).collect();
    let deleted = kafka.delete_acls(&filters).await.unwrap();
    for (binding, result) in bindings.iter().zip(&deleted) {
        assert_eq!(result.as_ref().unwrap(), &vec![binding.clone()]);
    }
    eventually(
        "producing is refused again without the ACLs",
        move || async move {
            match produce_as(user_ref, password_ref, topic_ref).await {
                Err(Some(RDKafkaErrorCode::TopicAuthorizationFailed)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert!(
        kafka
            .describe_acls(&AclBindingFilter::for_principal(&principal))
            .await
            .unwrap()
            .is_empty()
    );

    // Deleting the credential ends authentication.
    let deleted = kafka
        .delete_scram_credentials(std::slice::from_ref(&user), ScramMechanism::Sha512)
        .await
        .unwrap();
    assert!(deleted[0].is_ok(), "{deleted:?}");
    eventually("the user no longer authenticates", move || async move {
        let output = cli_list_topics_as(props);
        let all = text(&output);
        (!output.status.success() && all.contains("Authentication failed"))
            .then_some(())
            .ok_or(all)
    })
    .await;
    let again = kafka
        .delete_scram_credentials(std::slice::from_ref(&user), ScramMechanism::Sha512)
        .await
        .unwrap();
    assert!(
        again[0].as_ref().unwrap_err().is_resource_not_found(),
        "{again:?}"
    );
    assert!(
        kafka
            .describe_scram_users(std::slice::from_ref(&user))
            .await
            .unwrap()
            .is_empty()
    );

    let deleted = kafka
        .delete_topics(std::slice::from_ref(&topic))
        .await
        .unwrap();
    assert!(deleted[0].is_ok(), "{deleted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_in_one_batch_then_described_grown_reconfigured_and_deleted() {
    let run = run_id();
    let kafka = admin();
    let topics = ["orders", "audit", "broken"]
        .iter()
        .map(|name| format!("e2e.{run}.{name}"))
        .collect();
    with_cleanup(&kafka, topics, Vec::new(), topic_scenario(&kafka, &run)).await;
}

async fn topic_scenario(kafka: &Arc<dyn KafkaAdmin>, run: &str) {
    let admin_properties = env("KAFKA_ADMIN_CONFIG");
    let orders = format!("e2e.{run}.orders");
    let audit = format!("e2e.{run}.audit");
    let broken = format!("e2e.{run}.broken");
    let missing = format!("e2e.{run}.missing");

    // One batch: two good topics and one with an invalid config value, which fails alone.
    let batch = [
        topic_spec(
            &orders,
            3,
            &[("retention.ms", "86400000"), ("cleanup.policy", "delete")],
        ),
        topic_spec(&audit, 1, &[("cleanup.policy", "compact")]),
        topic_spec(&broken, 1, &[("retention.ms", "not-a-number")]),
    ];
    let created = kafka.create_topics(&batch).await.unwrap();
    assert!(created[0].is_ok(), "{created:?}");
    assert!(created[1].is_ok(), "{created:?}");
    let broken_error = created[2].as_ref().unwrap_err();
    assert_eq!(
        broken_error.code(),
        Some(RDKafkaErrorCode::InvalidConfig),
        "{broken_error}"
    );
    assert!(
        broken_error.to_string().contains("retention.ms"),
        "{broken_error}"
    );

    let again = kafka.create_topics(&batch[..1]).await.unwrap();
    assert!(
        again[0].as_ref().unwrap_err().is_topic_already_exists(),
        "{again:?}"
    );

    // Kafka's CLI sees what was declared.
    let describe_orders = [
        "--command-config",
        &admin_properties,
        "--describe",
        "--topic",
        &orders,
    ];
    let described = eventually_cli(
        "the CLI describes the new topic",
        "kafka-topics.sh",
        &describe_orders,
        |out| out.contains("PartitionCount"),
    );
    assert!(described.contains("PartitionCount: 3"), "{described}");
    assert!(described.contains("ReplicationFactor: 1"), "{described}");
    assert!(described.contains("retention.ms=86400000"), "{described}");
    let output = kafka_cli(
        "kafka-topics.sh",
        &["--command-config", &admin_properties, "--list"],
        None,
    );
    assert!(!text(&output).contains(&broken), "{}", text(&output));

    // Our describe: partitions, replication factor, dynamic configs; None when missing.
    let names = [orders.clone(), missing.clone(), audit.clone()];
    let described = describe_until(kafka, &names, |described| {
        matches!(described[0], Ok(Some(_))) && matches!(described[2], Ok(Some(_)))
    })
    .await;
    let orders_topic = described[0].as_ref().unwrap().as_ref().unwrap();
    assert_eq!(orders_topic.partitions, 3);
    assert_eq!(orders_topic.replication_factor, 1);
    assert_eq!(
        orders_topic.dynamic_configs(),
        BTreeMap::from([("cleanup.policy", "delete"), ("retention.ms", "86400000")])
    );
    assert!(orders_topic.config_value("segment.bytes").is_some());
    assert_eq!(described[1], Ok(None));
    let audit_topic = described[2].as_ref().unwrap().as_ref().unwrap();
    assert_eq!(
        audit_topic.dynamic_configs().get("cleanup.policy"),
        Some(&"compact")
    );

    // Partitions grow, never shrink.
    let grow = |topic: &str, total| PartitionIncrease {
        topic: topic.to_owned(),
        total_partitions: total,
    };
    let results = kafka
        .create_partitions(&[grow(&orders, 5), grow(&audit, 1), grow(&missing, 2)])
        .await
        .unwrap();
    assert!(results[0].is_ok(), "{results:?}");
    assert_eq!(
        results[1].as_ref().unwrap_err().code(),
        Some(RDKafkaErrorCode::InvalidPartitions)
    );
    assert!(
        results[2].as_ref().unwrap_err().is_unknown_topic(),
        "{results:?}"
    );
    let results = kafka.create_partitions(&[grow(&orders, 2)]).await.unwrap();
    assert_eq!(
        results[0].as_ref().unwrap_err().code(),
        Some(RDKafkaErrorCode::InvalidPartitions)
    );
    eventually_cli(
        "the CLI sees the new partitions",
        "kafka-topics.sh",
        &describe_orders,
        |out| out.contains("PartitionCount: 5"),
    );

    // Drift set behind our back is found by the diff and set back incrementally; a key we
    // delete falls back to the default; keys we do not name stay.
    let output = kafka_cli(
        "kafka-configs.sh",
        &[
            "--command-config",
            &admin_properties,
            "--alter",
            "--entity-type",
            "topics",
            "--entity-name",
            &orders,
            "--add-config",
            "retention.ms=1000,max.message.bytes=2000000",
        ],
        None,
    );
    assert!(output.status.success(), "{}", text(&output));
    let spec: BTreeMap<String, String> =
        [("retention.ms".to_owned(), "86400000".to_owned())].into();
    let described = describe_until(kafka, std::slice::from_ref(&orders), |described| {
        matches!(&described[0], Ok(Some(topic)) if topic.config_value("retention.ms") == Some("1000"))
    })
    .await;
    // cleanup.policy was set by the operator before and the spec no longer names it.
    let previously = ["cleanup.policy".to_owned()].into();
    let drift = config_drift(
        &spec,
        &previously,
        described[0].as_ref().unwrap().as_ref().unwrap(),
    );
    assert_eq!(drift.set, spec);
    assert_eq!(drift.delete, previously);
    let bad = TopicConfigAlteration {
        topic: audit.clone(),
        set: [("retention.ms".to_owned(), "soon".to_owned())].into(),
        ..TopicConfigAlteration::default()
    };
    let results = kafka.alter_topic_configs(&[drift, bad]).await.unwrap();
    assert!(results[0].is_ok(), "{results:?}");
    assert_eq!(
        results[1].as_ref().unwrap_err().code(),
        Some(RDKafkaErrorCode::InvalidConfig)
    );
    let configs = eventually_cli(
        "the CLI sees the configs set back",
        "kafka-configs.sh",
        &[
            "--command-config",
            &admin_properties,
            "--describe",
            "--entity-type",
            "topics",
            "--entity-name",
            &orders,
        ],
        |out| out.contains("retention.ms=86400000"),
    );
    assert!(configs.contains("max.message.bytes=2000000"), "{configs}");
    assert!(!configs.contains("cleanup.policy="), "{configs}");
    let described = describe_until(kafka, std::slice::from_ref(&orders), |described| {
        matches!(&described[0], Ok(Some(topic)) if topic.config_value("retention.ms") == Some("86400000"))
    })
    .await;
    let orders_topic = described[0].as_ref().unwrap().as_ref().unwrap();
    assert!(config_drift(&spec, &previously, orders_topic).is_empty());
    assert_eq!(
        orders_topic.dynamic_configs(),
        BTreeMap::from([
            ("max.message.bytes", "2000000"),
            ("retention.ms", "86400000")
        ])
    );

    // Deleting: gone for us and for the CLI; deleting again says the topic is unknown.
    let names = [orders.clone(), audit.clone()];
    let deleted = kafka.delete_topics(&names).await.unwrap();
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
    let (kafka_ref, names_ref) = (kafka, &names);
    eventually("deleted topics are gone", move || async move {
        let described = kafka_ref
            .describe_topics(names_ref)
            .await
            .map_err(|e| e.to_string())?;
        described
            .iter()
            .all(|d| d == &Ok(None))
            .then_some(())
            .ok_or_else(|| format!("{described:?}"))
    })
    .await;
    let output = kafka_cli(
        "kafka-topics.sh",
        &["--command-config", &admin_properties, "--list"],
        None,
    );
    assert!(output.status.success(), "{}", text(&output));
    assert!(!text(&output).contains(&orders), "{}", text(&output));
    let again = kafka
        .delete_topics(std::slice::from_ref(&orders))
        .await
        .unwrap();
    assert!(
        again[0].as_ref().unwrap_err().is_unknown_topic(),
        "{again:?}"
    );
}

/// How many requests of `operation` the counter counted, from the metrics text.
fn counted(metrics: &Metrics, operation: &str) -> u64 {
    let text = metrics.encode().unwrap();
    let prefix = format!(
        "datamesh_operator_external_requests_total{{system=\"kafka\",operation=\"{operation}\"}} "
    );
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |count| count.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_layer_batches_creates_and_sees_drift_made_with_kafkas_tools_after_a_refresh()
{
    let run = run_id();
    let metrics = Metrics::default();
    let mut config = KafkaAdminConfig::new(
        env("KAFKA_BOOTSTRAP_SERVERS"),
        env("KAFKA_ADMIN_USER"),
        env("KAFKA_ADMIN_PASSWORD"),
    );
    config.security_protocol = protocol();
    config.tls.ca_pem = Some(std::fs::read_to_string(env("KAFKA_CA_FILE")).expect("the CA file"));
    let inner: Arc<dyn KafkaAdmin> = Arc::new(
        RdKafkaAdmin::new(&config)
            .expect("admin client")
            .with_request_counter(metrics.request_counter()),
    );
    let refresh = Duration::from_secs(2);
    let kafka: Arc<dyn KafkaAdmin> = Arc::new(SnapshotKafka::new(
        inner.clone(),
        SnapshotSettings {
            refresh,
            ..SnapshotSettings::for_resync(Duration::from_secs(300))
        },
    ));
    let names: Vec<String> = (0..20).map(|i| format!("snap-{run}.p{i}.events")).collect();
    let user = format!("snap-{run}");
    let cleanup = with_cleanup(&inner, names.clone(), vec![user.clone()], async {
        let admin_properties = env("KAFKA_ADMIN_CONFIG");
        // The first fill.
        assert_eq!(kafka.describe_topics(&names).await.unwrap().len(), 20);
        let before = counted(&metrics, "CreateTopics");

        // Twenty products creating their topic at once: one request.
        let created = futures::future::join_all(names.iter().map(|name| {
            let kafka = &kafka;
            async move {
                let topic = [topic_spec(name, 1, &[("retention.ms", "604800000")])];
                kafka.create_topics(&topic).await.unwrap().remove(0)
            }
        }))
        .await;
        assert!(created.iter().all(Result::is_ok), "{created:?}");
        assert_eq!(counted(&metrics, "CreateTopics") - before, 1);
        let listed = eventually_cli(
            "the CLI lists the twenty topics",
            "kafka-topics.sh",
            &["--command-config", &admin_properties, "--list"],
            |out| names.iter().all(|name| out.contains(name.as_str())),
        );
        assert!(listed.contains(&names[19]));

        let principal = user_principal(&user);
        let binding = AclBinding::allow(
            AclResourceType::Topic,
            AclPatternType::Literal,
            names[0].clone(),
            principal.clone(),
            AclOperation::Write,
        );
        assert!(
            kafka
                .create_acls(std::slice::from_ref(&binding))
                .await
                .unwrap()[0]
                .is_ok()
        );
        // Its own writes are seen at once.
        let own = kafka
            .describe_acls(&AclBindingFilter::for_principal(&principal))
            .await
            .unwrap();
        assert_eq!(own, std::slice::from_ref(&binding));

        // Drift made with Kafka's own tools: a config altered, the ACL removed.
        let alter = kafka_cli(
            "kafka-configs.sh",
            &[
                "--command-config",
                &admin_properties,
                "--alter",
                "--entity-type",
                "topics",
                "--entity-name",
                &names[0],
                "--add-config",
                "retention.ms=1000",
            ],
            None,
        );
        assert!(alter.status.success(), "{}", text(&alter));
        let remove = kafka_cli(
            "kafka-acls.sh",
            &[
                "--command-config",
                &admin_properties,
                "--remove",
                "--force",
                "--allow-principal",
                &principal,
                "--operation",
                "Write",
                "--topic",
                &names[0],
            ],
            None,
        );
        assert!(remove.status.success(), "{}", text(&remove));
        eventually("the snapshot sees the drift after a refresh", || async {
            let topic = kafka.describe_topics(&names[..1]).await;
            let acls = kafka
                .describe_acls(&AclBindingFilter::for_principal(&principal))
                .await;
            let retention = topic
                .as_ref()
                .ok()
                .and_then(|t| t[0].as_ref().ok().cloned().flatten())
                .and_then(|t| t.config_value("retention.ms").map(str::to_owned));
            match (&retention, &acls) {
                (Some(ms), Ok(acls)) if ms == "1000" && acls.is_empty() => Ok(()),
                _ => Err(format!("{retention:?} {acls:?}")),
            }
        })
        .await;
    });
    cleanup.await;
}
