//! Admission against the real kube-apiserver: the CRDs in `crds/` install, invalid
//! manifests are refused with a message that names the offending field, valid ones are
//! accepted with their defaults, and `kubectl explain` teaches the API.
//!
//! Needs the local platform: `e2e/stack up && eval "$(e2e/stack env)"`, then
//! `cargo test --features e2e --test admission`.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Where the namespaced test objects go; dry runs still need the namespace to exist.
const NAMESPACE: &str = "datamesh-admission-test";
const CRDS: [&str; 3] = [
    "domains.datamesh.dev",
    "dataproducts.datamesh.dev",
    "accesspolicies.datamesh.dev",
];

fn kubectl(args: &[&str], stdin: Option<&str>) -> Output {
    let kubeconfig = std::env::var("KUBECONFIG").unwrap_or_default();
    assert!(
        !kubeconfig.is_empty(),
        "KUBECONFIG is not set: run `eval \"$(e2e/stack env)\"` with the stack up"
    );
    let mut child = Command::new("kubectl")
        .args(["--kubeconfig", &kubeconfig])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run kubectl ({e}): run `eval \"$(e2e/stack env)\"` to put it on PATH")
        });
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn must(args: &[&str], stdin: Option<&str>) -> String {
    let out = kubectl(args, stdin);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Server-side dry run of one manifest.
fn dry_run(manifest: &Value) -> Output {
    kubectl(
        &["apply", "--dry-run=server", "-o", "json", "-f", "-"],
        Some(&manifest.to_string()),
    )
}

/// Server-side dry run of replacing an object with one manifest: unlike `apply`, it
/// removes the fields the manifest leaves out.
fn dry_run_replace(manifest: &Value) -> Output {
    kubectl(
        &["replace", "--dry-run=server", "-o", "json", "-f", "-"],
        Some(&manifest.to_string()),
    )
}

/// Installs the committed CRDs once per test binary and waits until the API server
/// serves and enforces them.
fn install_crds() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let crds = format!("{}/crds/datamesh.dev.yaml", env!("CARGO_MANIFEST_DIR"));
        must(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=datamesh-admission-test",
                "-f",
                &crds,
            ],
            None,
        );
        let mut wait = vec!["wait", "--for=condition=Established", "--timeout=60s"];
        let names: Vec<String> = CRDS.iter().map(|c| format!("crd/{c}")).collect();
        wait.extend(names.iter().map(String::as_str));
        must(&wait, None);
        let namespace =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
        must(&["apply", "-f", "-"], Some(&namespace.to_string()));

        // Established says the CRD is served, not that every apiserver handler has the
        // newest schema yet: wait until a rule refuses what it must.
        let canary = with(product(), |p| {
            p["spec"]["outputPorts"][0]["bucket"] = json!({})
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while dry_run(&canary).status.success() {
            assert!(
                Instant::now() < deadline,
                "the CRD's CEL rules are not enforced 30s after it was Established"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    });
}

fn domain() -> Value {
    json!({
        "apiVersion": "datamesh.dev/v1alpha1",
        "kind": "Domain",
        "metadata": {"name": "payments"},
        "spec": {"description": "Card payments and settlements"}
    })
}

fn product() -> Value {
    json!({
        "apiVersion": "datamesh.dev/v1alpha1",
        "kind": "DataProduct",
        "metadata": {"name": "orders", "namespace": NAMESPACE},
        "spec": {
            "domain": "payments",
            "description": {"purpose": "Orders as they happen", "usage": "One event per order change"},
            "owner": {"name": "alice"},
            "outputPorts": [{"name": "events", "kafka": {}}]
        }
    })
}

fn policy() -> Value {
    json!({
        "apiVersion": "datamesh.dev/v1alpha1",
        "kind": "AccessPolicy",
        "metadata": {"name": "marketing-reads-orders", "namespace": NAMESPACE},
        "spec": {"dataProduct": "orders", "consumers": [{"domain": "marketing"}]}
    })
}

fn full_product() -> Value {
    json!({
        "apiVersion": "datamesh.dev/v1alpha1",
        "kind": "DataProduct",
        "metadata": {"name": "orders", "namespace": NAMESPACE},
        "spec": {
            "domain": "payments",
            "description": {
                "purpose": "Every card order as it happens",
                "usage": "One JSON event per order state change, keyed by order id",
                "limitations": "No refunds; see payments.refunds"
            },
            "owner": {"name": "alice", "email": "alice@example.com"},
            "status": "active",
            "classification": "confidential",
            "outputPorts": [
                {
                    "name": "events",
                    "description": "Order events",
                    "kafka": {"partitions": 6, "replicas": 3, "retention": "7d",
                              "config": {"cleanup.policy": "delete", "min.insync.replicas": "2"}},
                    "schema": {"type": "json", "definition": "{\"type\": \"object\"}"}
                },
                {"name": "audit", "kafka": {"topic": "payments.orders-audit_v2", "partitions": 1}},
                {"name": "lake", "bucket": {"versioning": true, "expireAfterDays": 365}}
            ],
            "inputPorts": [
                {"name": "customers", "dataProduct": {"domain": "customers", "name": "profiles", "port": "events"}}
            ],
            "transformation": {"spark": {
                "image": "apache/spark:4.0.1",
                "mainApplicationFile": "local:///opt/spark/jobs/Orders.jar",
                "mainClass": "dev.datamesh.Orders",
                "type": "Scala",
                "sparkVersion": "4.0.1",
                "schedule": "*/15 * * * *",
                "arguments": ["--since", "1h"],
                "driver": {"cores": 1, "memory": "1g"},
                "executor": {"cores": 2, "memory": "4g", "instances": 3}
            }},
            "sla": [
                {"property": "freshness", "value": 15, "unit": "m"},
                {"property": "availability", "value": "99.9", "unit": "percent"}
            ],
            "deletionPolicy": "Delete"
        }
    })
}

/// `base` changed by `change`.
fn with(mut base: Value, change: impl FnOnce(&mut Value)) -> Value {
    change(&mut base);
    base
}

/// One manifest the API server must refuse, and what its answer must say.
struct Invalid {
    what: &'static str,
    manifest: Value,
    /// The offending field's path, as the error names it.
    field: &'static str,
    /// A fragment of the message a person reads.
    message: &'static str,
}

fn invalid(
    what: &'static str,
    manifest: Value,
    field: &'static str,
    message: &'static str,
) -> Invalid {
    Invalid {
        what,
        manifest,
        field,
        message,
    }
}

fn invalid_manifests() -> Vec<Invalid> {
    vec![
        // Domain
        invalid(
            "a domain name with a dot",
            with(domain(), |d| d["metadata"]["name"] = json!("pay.ments")),
            "metadata.name",
            "must be a DNS label",
        ),
        invalid(
            "a domain name with an S3-reserved prefix",
            with(domain(), |d| d["metadata"]["name"] = json!("xn--payments")),
            "metadata.name",
            "reserves these prefixes",
        ),
        invalid(
            "a domain taking over a system namespace",
            with(domain(), |d| d["spec"]["namespace"] = json!("kube-system")),
            "spec.namespace",
            "must not be 'default' or a 'kube-' system namespace",
        ),
        invalid(
            "a domain named after the default namespace",
            with(domain(), |d| d["metadata"]["name"] = json!("default")),
            "spec.namespace",
            "must not be 'default'",
        ),
        invalid(
            "an owner of an unknown kind",
            with(domain(), |d| {
                d["spec"]["owners"] = json!([{"kind": "Team", "name": "x"}])
            }),
            "spec.owners[0].kind",
            "Unsupported value: \"Team\"",
        ),
        invalid(
            "a ServiceAccount owner without a namespace",
            with(domain(), |d| {
                d["spec"]["owners"] = json!([{"kind": "ServiceAccount", "name": "ci"}])
            }),
            "spec.owners[0]",
            "namespace if and only if its kind is ServiceAccount",
        ),
        invalid(
            "a negative quota",
            with(domain(), |d| {
                d["spec"]["quotas"] = json!({"maxPartitions": -1})
            }),
            "spec.quotas.maxPartitions",
            "greater than or equal to 0",
        ),
        invalid(
            "an unknown deletion policy",
            with(domain(), |d| d["spec"]["deletionPolicy"] = json!("Destroy")),
            "spec.deletionPolicy",
            "Unsupported value: \"Destroy\"",
        ),
        // DataProduct: required fields, enums, formats
        invalid(
            "a product without an owner",
            with(product(), |p| {
                p["spec"].as_object_mut().unwrap().remove("owner");
            }),
            "spec.owner",
            "Required value",
        ),
        invalid(
            "a product without a purpose",
            with(product(), |p| {
                p["spec"]["description"] = json!({"usage": "u"})
            }),
            "spec.description.purpose",
            "Required value",
        ),
        invalid(
            "a product name with a dot",
            with(product(), |p| p["metadata"]["name"] = json!("orders.v2")),
            "metadata.name",
            "must be a DNS label",
        ),
        invalid(
            "a domain reference that is not a DNS label",
            with(product(), |p| p["spec"]["domain"] = json!("Payments")),
            "spec.domain",
            "should match",
        ),
        invalid(
            "an unknown lifecycle status",
            with(product(), |p| p["spec"]["status"] = json!("live")),
            "spec.status",
            "Unsupported value: \"live\"",
        ),
        invalid(
            "an unknown classification",
            with(product(), |p| p["spec"]["classification"] = json!("secret")),
            "spec.classification",
            "Unsupported value: \"secret\"",
        ),
        invalid(
            "an owner e-mail that is not one",
            with(product(), |p| p["spec"]["owner"]["email"] = json!("alice")),
            "spec.owner.email",
            "email",
        ),
        // DataProduct: output ports
        invalid(
            "an output port with both kafka and bucket",
            with(product(), |p| {
                p["spec"]["outputPorts"][0]["bucket"] = json!({})
            }),
            "spec.outputPorts[0]",
            "an output port sets exactly one of kafka or bucket",
        ),
        invalid(
            "an output port with neither kafka nor bucket",
            with(product(), |p| {
                p["spec"]["outputPorts"] = json!([{"name": "events"}])
            }),
            "spec.outputPorts[0]",
            "an output port sets exactly one of kafka or bucket",
        ),
        invalid(
            "zero partitions",
            with(product(), |p| {
                p["spec"]["outputPorts"][0]["kafka"]["partitions"] = json!(0)
            }),
            "spec.outputPorts[0].kafka.partitions",
            "greater than or equal to 1",
        ),
        invalid(
            "zero replicas",
            with(product(), |p| {
                p["spec"]["outputPorts"][0]["kafka"]["replicas"] = json!(0)
            }),
            "spec.outputPorts[0].kafka.replicas",
            "greater than or equal to 1",
        ),
        invalid(
            "two output ports of one name",
            with(
                product(),
                |p| {
                    p["spec"]["outputPorts"] =
                        json!([{"name": "events", "kafka": {}}, {"name": "events", "bucket": {}}])
                },
            ),
            "spec.outputPorts[1]",
            "Duplicate value",
        ),
        invalid(
            "a port name that would not make a topic or bucket name",
            with(product(), |p| {
                p["spec"]["outputPorts"][0]["name"] = json!("Order_Events")
            }),
            "spec.outputPorts[0].name",
            "should match",
        ),
        invalid(
            "a retention that is not a duration",
            with(product(), |p| {
                p["spec"]["outputPorts"][0]["kafka"]["retention"] = json!("7 days")
            }),
            "spec.outputPorts[0].kafka.retention",
            "should match",
        ),
        invalid(
            "retention set twice",
            with(
                product(),
                |p| {
                    p["spec"]["outputPorts"][0]["kafka"] =
                        json!({"retention": "7d", "config": {"retention.ms": "1000"}})
                },
            ),
            "spec.outputPorts[0].kafka",
            "set retention or config[retention.ms], not both",
        ),
        invalid(
            "a topic config key that is not one",
            with(product(), |p| {
                p["spec"]["outputPorts"][0]["kafka"]["config"] = json!({"Cleanup Policy": "delete"})
            }),
            "spec.outputPorts[0].kafka.config",
            "config keys are Kafka topic configs",
        ),
        invalid(
            "an explicit topic with characters Kafka refuses",
            with(product(), |p| {
                p["spec"]["outputPorts"][0]["kafka"]["topic"] = json!("payments.orders!")
            }),
            "spec.outputPorts[0].kafka.topic",
            "should match",
        ),
        invalid(
            "an explicit topic outside the domain",
            with(product(), |p| {
                p["spec"]["outputPorts"][0]["kafka"]["topic"] = json!("marketing.orders")
            }),
            "spec.outputPorts",
            "must start with the product's domain and a dot",
        ),
        invalid(
            "a bucket name longer than S3 allows",
            with(product(), |p| {
                p["spec"]["outputPorts"] = json!([{"name": "a".repeat(50), "bucket": {}}])
            }),
            "spec.outputPorts",
            "which S3 limits to 63 characters",
        ),
        invalid(
            "a bucket name with an S3-reserved suffix",
            with(product(), |p| {
                p["spec"]["outputPorts"] = json!([{"name": "lake-s3alias", "bucket": {}}])
            }),
            "spec.outputPorts[0]",
            "S3 reserves these bucket name suffixes",
        ),
        invalid(
            "a bucket expiring after zero days",
            with(product(), |p| {
                p["spec"]["outputPorts"] =
                    json!([{"name": "lake", "bucket": {"expireAfterDays": 0}}])
            }),
            "spec.outputPorts[0].bucket.expireAfterDays",
            "greater than or equal to 1",
        ),
        invalid(
            "min.insync.replicas above the replicas",
            with(
                product(),
                |p| {
                    p["spec"]["outputPorts"][0]["kafka"] =
                        json!({"replicas": 2, "config": {"min.insync.replicas": "3"}})
                },
            ),
            "spec.outputPorts[0].kafka.config",
            "config[min.insync.replicas] must not exceed replicas",
        ),
        invalid(
            "min.insync.replicas that is not a number",
            with(product(), |p| {
                p["spec"]["outputPorts"][0]["kafka"]["config"] =
                    json!({"min.insync.replicas": "two"})
            }),
            "spec.outputPorts[0].kafka.config",
            "config[min.insync.replicas] must be a whole number of at least 1",
        ),
        invalid(
            "an unknown schema language",
            with(product(), |p| {
                p["spec"]["outputPorts"][0]["schema"] = json!({"type": "xml"})
            }),
            "spec.outputPorts[0].schema.type",
            "Unsupported value: \"xml\"",
        ),
        // DataProduct: inputs, transformation, SLA
        invalid(
            "an input port that names no port",
            with(
                product(),
                |p| p["spec"]["inputPorts"] = json!([{"name": "customers", "dataProduct": {"domain": "customers", "name": "profiles"}}]),
            ),
            "spec.inputPorts[0].dataProduct.port",
            "Required value",
        ),
        invalid(
            "an input port that reads the product's own output",
            with(
                product(),
                |p| p["spec"]["inputPorts"] = json!([{"name": "loop", "dataProduct": {"domain": "payments", "name": "orders", "port": "events"}}]),
            ),
            "spec.inputPorts",
            "an input port must not read the product's own output",
        ),
        invalid(
            "a Scala job without a main class",
            with(full_product(), |p| {
                p["spec"]["transformation"]["spark"]
                    .as_object_mut()
                    .unwrap()
                    .remove("mainClass");
            }),
            "spec.transformation.spark",
            "mainClass is required for Scala and Java applications",
        ),
        invalid(
            "a schedule that is not cron",
            with(full_product(), |p| {
                p["spec"]["transformation"]["spark"]["schedule"] = json!("every 15 minutes")
            }),
            "spec.transformation.spark.schedule",
            "should match",
        ),
        invalid(
            "a schedule's minute out of range",
            with(full_product(), |p| {
                p["spec"]["transformation"]["spark"]["schedule"] = json!("60 * * * *")
            }),
            "spec.transformation.spark.schedule",
            "a cron field is out of range",
        ),
        invalid(
            "a schedule's hour out of range",
            with(full_product(), |p| {
                p["spec"]["transformation"]["spark"]["schedule"] = json!("0 9,24 * * *")
            }),
            "spec.transformation.spark.schedule",
            "a cron field is out of range",
        ),
        invalid(
            "a schedule's day of month out of range",
            with(full_product(), |p| {
                p["spec"]["transformation"]["spark"]["schedule"] = json!("0 0 0 * *")
            }),
            "spec.transformation.spark.schedule",
            "a cron field is out of range",
        ),
        invalid(
            "a schedule's month out of range",
            with(full_product(), |p| {
                p["spec"]["transformation"]["spark"]["schedule"] = json!("0 0 1 1-13 *")
            }),
            "spec.transformation.spark.schedule",
            "a cron field is out of range",
        ),
        invalid(
            "a schedule's day of week out of range (the spark-operator takes 0-6)",
            with(full_product(), |p| {
                p["spec"]["transformation"]["spark"]["schedule"] = json!("0 0 * * 7")
            }),
            "spec.transformation.spark.schedule",
            "a cron field is out of range",
        ),
        invalid(
            "a schedule with a zero step",
            with(full_product(), |p| {
                p["spec"]["transformation"]["spark"]["schedule"] = json!("*/0 * * * *")
            }),
            "spec.transformation.spark.schedule",
            "a cron field is out of range",
        ),
        invalid(
            "a schedule with a backwards range",
            with(full_product(), |p| {
                p["spec"]["transformation"]["spark"]["schedule"] = json!("0 17-9 * * *")
            }),
            "spec.transformation.spark.schedule",
            "a cron range must not run backwards",
        ),
        invalid(
            "executor memory in an unknown unit",
            with(full_product(), |p| {
                p["spec"]["transformation"]["spark"]["executor"]["memory"] = json!("4Gi")
            }),
            "spec.transformation.spark.executor.memory",
            "should match",
        ),
        invalid(
            "an unquoted decimal SLA value",
            with(product(), |p| {
                p["spec"]["sla"] = json!([{"property": "availability", "value": 99.9}])
            }),
            "spec.sla[0].value",
            "integer",
        ),
        // AccessPolicy
        invalid(
            "a policy without consumers",
            with(policy(), |a| a["spec"]["consumers"] = json!([])),
            "spec.consumers",
            "at least 1 items",
        ),
        invalid(
            "a consumer that is both a domain and a ServiceAccount",
            with(
                policy(),
                |a| a["spec"]["consumers"] = json!([{"domain": "marketing", "serviceAccount": {"namespace": "bi", "name": "dash"}}]),
            ),
            "spec.consumers[0]",
            "a consumer sets exactly one of domain or serviceAccount",
        ),
        invalid(
            "a consumer that is neither",
            with(policy(), |a| a["spec"]["consumers"] = json!([{}])),
            "spec.consumers[0]",
            "a consumer sets exactly one of domain or serviceAccount",
        ),
        invalid(
            "a consumer named twice",
            with(policy(), |a| {
                a["spec"]["consumers"] = json!([{"domain": "marketing"}, {"domain": "marketing"}])
            }),
            "spec.consumers",
            "consumers must not repeat",
        ),
        invalid(
            "a port named twice",
            with(policy(), |a| {
                a["spec"]["ports"] = json!(["events", "events"])
            }),
            "spec.ports[1]",
            "Duplicate value",
        ),
        invalid(
            "an unknown access",
            with(policy(), |a| a["spec"]["access"] = json!("write")),
            "spec.access",
            "Unsupported value: \"write\"",
        ),
        invalid(
            "an expiry that is not a time",
            with(policy(), |a| a["spec"]["expiresAt"] = json!("next summer")),
            "spec.expiresAt",
            "date-time",
        ),
    ]
}

#[test]
fn invalid_manifests_are_refused_with_a_message_naming_the_field() {
    install_crds();
    let cases = invalid_manifests();
    assert!(cases.len() >= 12);
    let mut failures = vec![];
    for case in &cases {
        let out = dry_run(&case.manifest);
        let stderr = text(&out.stderr);
        if out.status.success() {
            failures.push(format!("{}: accepted, but must be refused", case.what));
        } else if !stderr.contains("is invalid") {
            failures.push(format!(
                "{}: failed for another reason: {stderr}",
                case.what
            ));
        } else if !stderr.contains(case.field) || !stderr.contains(case.message) {
            failures.push(format!(
                "{}: refused, but the answer does not name {:?} with {:?}: {stderr}",
                case.what, case.field, case.message
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} invalid manifests misjudged:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn valid_manifests_are_accepted_with_their_defaults() {
    install_crds();
    let accepted = |manifest: &Value| -> Value {
        let out = dry_run(manifest);
        assert!(
            out.status.success(),
            "refused: {}\n{}",
            text(&out.stderr),
            serde_json::to_string_pretty(manifest).unwrap()
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };

    let minimal = accepted(&product());
    let spec = &minimal["spec"];
    assert_eq!(spec["status"], "active");
    assert_eq!(spec["classification"], "internal");
    assert_eq!(spec["deletionPolicy"], "Retain");
    assert_eq!(spec["outputPorts"][0]["kafka"]["partitions"], 1);
    let bucket = accepted(&with(product(), |p| {
        p["spec"]["outputPorts"] = json!([{"name": "lake", "bucket": {}}])
    }));
    assert_eq!(
        bucket["spec"]["outputPorts"][0]["bucket"]["versioning"],
        true
    );

    let full = accepted(&full_product());
    assert_eq!(
        full["spec"],
        full_product()["spec"],
        "nothing of the full product is pruned"
    );

    for schedule in [
        "0 9 * * mon-fri",
        "30 2 1,15 * ?",
        "*/5 0-6,22-23 * JAN-mar 0",
        "59 23 31 12 6",
        "5/10 * * * *",
        "@daily",
        "@every 1h30m",
    ] {
        accepted(&with(full_product(), |p| {
            p["spec"]["transformation"]["spark"]["schedule"] = json!(schedule)
        }));
    }
    accepted(&with(product(), |p| {
        p["spec"]["outputPorts"][0]["kafka"] =
            json!({"replicas": 3, "config": {"min.insync.replicas": "3"}});
        // Another product of the same domain, or another domain's product of this name.
        p["spec"]["inputPorts"] = json!([
            {"name": "refunds", "dataProduct": {"domain": "payments", "name": "refunds", "port": "events"}},
            {"name": "crm", "dataProduct": {"domain": "customers", "name": "orders", "port": "events"}}
        ]);
    }));

    let domain = accepted(&domain());
    assert_eq!(domain["spec"]["deletionPolicy"], "Retain");
    accepted(&with(self::domain(), |d| {
        d["spec"] = json!({
            "description": "Card payments and settlements",
            "owners": [
                {"kind": "Group", "name": "payments-team"},
                {"kind": "User", "name": "alice@example.com"},
                {"kind": "ServiceAccount", "name": "ci", "namespace": "ci"}
            ],
            "namespace": "payments-prod",
            "quotas": {"maxDataProducts": 50, "maxPartitions": 600},
            "deletionPolicy": "Delete"
        })
    }));

    let policy = accepted(&policy());
    assert_eq!(policy["spec"]["access"], "read");
    accepted(&with(self::policy(), |a| {
        a["spec"] = json!({
            "dataProduct": "orders",
            "ports": ["events", "lake"],
            "consumers": [{"domain": "marketing"}, {"serviceAccount": {"namespace": "bi", "name": "dashboards"}}],
            "access": "readWrite",
            "purpose": "campaign analytics",
            "expiresAt": "2027-06-30T00:00:00Z"
        })
    }));
}

#[test]
fn identity_fields_cannot_change_after_creation() {
    install_crds();
    // A real object is needed: transition rules only run on updates. Its lifecycle is
    // `proposed`, so an operator watching the cluster has nothing to provision.
    let name = format!("admission-immutable-{}", std::process::id());
    let original = with(product(), |p| {
        p["metadata"]["name"] = json!(name);
        p["spec"]["status"] = json!("proposed");
    });
    must(&["create", "-f", "-"], Some(&original.to_string()));
    let moved = with(original.clone(), |p| {
        p["spec"]["domain"] = json!("marketing")
    });
    let out = dry_run(&moved);
    let moved_by_replace = dry_run_replace(&moved);
    let unset = dry_run_replace(&with(original.clone(), |p| {
        p["spec"].as_object_mut().unwrap().remove("domain");
    }));
    let unchanged = with(original.clone(), |p| {
        p["spec"]["classification"] = json!("public")
    });
    let other_change = dry_run(&unchanged);
    must(
        &[
            "delete",
            "dataproduct",
            "-n",
            NAMESPACE,
            &name,
            "--wait=false",
        ],
        None,
    );

    assert!(
        !out.status.success(),
        "moving a product to another domain was accepted"
    );
    for (how, out) in [("apply", &out), ("replace", &moved_by_replace)] {
        assert!(!out.status.success(), "{how}: the move was accepted");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("spec.domain") && stderr.contains("spec.domain is immutable"),
            "{how}: {stderr}"
        );
    }
    assert!(!unset.status.success(), "removing spec.domain was accepted");
    let stderr = text(&unset.stderr);
    assert!(
        stderr.contains("spec.domain") && stderr.contains("Required value"),
        "{stderr}"
    );
    assert!(
        other_change.status.success(),
        "other changes stay allowed: {}",
        text(&other_change.stderr)
    );
}

#[test]
fn a_domain_namespace_cannot_be_set_unset_or_changed_after_creation() {
    install_crds();
    // Real Domains (transition rules only run on updates), removed before any assertion.
    // Nothing here is reconciled into a namespace unless an operator watches the cluster.
    let name = |suffix: &str| format!("admission-{suffix}-{}", std::process::id());
    let without = with(domain(), |d| d["metadata"]["name"] = json!(name("unset")));
    let with_namespace = with(domain(), |d| {
        d["metadata"]["name"] = json!(name("set"));
        d["spec"]["namespace"] = json!(name("set-ns"));
    });
    must(&["create", "-f", "-"], Some(&without.to_string()));
    must(&["create", "-f", "-"], Some(&with_namespace.to_string()));

    let set = dry_run_replace(&with(without.clone(), |d| {
        d["spec"]["namespace"] = json!("elsewhere")
    }));
    let set_to_its_own_name = dry_run_replace(&with(without.clone(), |d| {
        d["spec"]["namespace"] = d["metadata"]["name"].clone()
    }));
    let unset = dry_run_replace(&with(with_namespace.clone(), |d| {
        d["spec"].as_object_mut().unwrap().remove("namespace");
    }));
    let changed = dry_run_replace(&with(with_namespace.clone(), |d| {
        d["spec"]["namespace"] = json!("elsewhere")
    }));
    let other_change = dry_run_replace(&with(with_namespace.clone(), |d| {
        d["spec"]["description"] = json!("Cards, settlements and refunds")
    }));
    let other_change_without = dry_run_replace(&with(without.clone(), |d| {
        d["spec"]["description"] = json!("Cards, settlements and refunds")
    }));
    for domain in [name("unset"), name("set")] {
        must(&["delete", "domain", &domain, "--wait=false"], None);
    }

    for (how, out) in [
        ("set", &set),
        ("set to the name it defaulted to", &set_to_its_own_name),
        ("unset", &unset),
        ("changed", &changed),
    ] {
        assert!(!out.status.success(), "spec.namespace {how}: accepted");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("spec.namespace: Invalid value")
                && stderr.contains("spec.namespace is immutable"),
            "spec.namespace {how}: {stderr}"
        );
    }
    for out in [&other_change, &other_change_without] {
        assert!(
            out.status.success(),
            "other changes stay allowed: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn kubectl_teaches_and_lists_the_api() {
    install_crds();
    let explained = must(&["explain", "dataproduct.spec"], None);
    for field in [
        "domain",
        "description",
        "owner",
        "status",
        "classification",
        "outputPorts",
        "inputPorts",
        "transformation",
        "sla",
        "deletionPolicy",
    ] {
        assert!(
            explained.contains(&format!("\n  {field}\t")),
            "`kubectl explain dataproduct.spec` does not list {field}:\n{explained}"
        );
    }
    assert!(
        explained.contains("The Domain this product belongs to"),
        "fields come with their documentation:\n{explained}"
    );
    let kafka = must(&["explain", "dataproduct.spec.outputPorts.kafka"], None);
    for field in ["partitions", "replicas", "retention", "config", "topic"] {
        assert!(
            kafka.contains(&format!("\n  {field}\t")),
            "{field}:\n{kafka}"
        );
    }

    let resources = must(
        &["api-resources", "--categories=datamesh", "-o", "name"],
        None,
    );
    let mut listed: Vec<&str> = resources.lines().collect();
    listed.sort_unstable();
    assert_eq!(
        listed,
        [
            "accesspolicies.datamesh.dev",
            "dataproducts.datamesh.dev",
            "domains.datamesh.dev"
        ]
    );
    for short in ["dom", "dp", "ap"] {
        must(&["get", short, "-A", "-o", "name"], None);
    }
    // `kubectl get datamesh` lists all three kinds through the category.
    must(&["get", "datamesh", "-A"], None);
}
