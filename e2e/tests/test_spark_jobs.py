"""End to end: a transformation that really runs. The sample mesh's Spark job
(config/samples/jobs/campaign_performance.py) is run from the ScheduledSparkApplication the
operator wrote, by e2e/tools/spark_submit_runner.py (spark-submit --master local[2], with only
what the object says: the local platform has no kubelet node, so no driver pods). Its inputs are
produced by their producing domains with their own credentials (confluent-kafka), and its
results are read back as the admin with boto3 + pyarrow (Parquet in the reports bucket) and
confluent-kafka (the attributions topic).

Then access is taken away: with the profiles grant deleted the job fails with Kafka's
authorization error and the product reports the input as not granted; and a job of another
domain, running with Spark's full local privileges, can neither read a topic it was not granted
nor write into marketing's bucket, as the broker and the store refuse it.

One SparkSession per run, and three runs (the job, the job without its grant, the attacker's
job), to keep the suite short.
"""

import io
import json
import os
import subprocess
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from conftest import E2E_DIR, REPO_DIR, condition, domain_s3, env, get_json, kubectl, run, secret_data
from operator_process import OperatorProcess, install_chart_rbac, install_crds, wait_for, workdir

RUNNER = E2E_DIR / "tools" / "spark_submit_runner.py"
JOB = REPO_DIR / "config" / "samples" / "jobs" / "campaign_performance.py"
PROBE = Path(__file__).resolve().parent / "spark" / "probe.py"
REPORTS_BUCKET = "marketing-campaign-performance-reports"
TRANSACTIONS = "payments.transactions.events"
PROFILES = "customers.profiles.changes"
ATTRIBUTIONS = "marketing.campaign-performance.attributions"
SPARK_TIMEOUT = 900


def samples():
    rendered = run(["kubectl", "kustomize", str(REPO_DIR / "config" / "samples")]).stdout
    return rendered, [d for d in yaml.safe_load_all(rendered) if d]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    """The sample mesh applied and Ready, with the operator running."""
    if not (Path(env("SPARK_HOME")) / "bin" / "spark-submit").exists():
        pytest.fail(f"no spark-submit in SPARK_HOME={env('SPARK_HOME')}: run e2e/stack install (or up)")
    install_crds()
    install_chart_rbac()
    process = OperatorProcess(workdir(), "spark")
    rendered, documents = samples()
    domains = [d for d in documents if d["kind"] == "Domain"]
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(domains))
    kubectl("wait", "--for", "condition=Ready", "--timeout", "120s",
            *[f"domain/{d['metadata']['name']}" for d in domains])
    manifest = tmp_path_factory.mktemp("samples") / "samples.yaml"
    manifest.write_text(rendered)
    kubectl("apply", "-f", str(manifest))
    kubectl("wait", "--for", "condition=Ready", "--timeout", "180s", "-f", str(manifest))
    yield documents
    assert process.terminate() == 0, process.logs()


def kafka_client_config(domain_secret, **extra):
    """librdkafka settings from nothing but a domain's credentials Secret."""
    config = {
        "bootstrap.servers": domain_secret["KAFKA_BOOTSTRAP_SERVERS"],
        "security.protocol": domain_secret["KAFKA_SECURITY_PROTOCOL"],
        "sasl.mechanism": domain_secret["KAFKA_SASL_MECHANISM"],
        "sasl.username": domain_secret["KAFKA_USERNAME"],
        "sasl.password": domain_secret["KAFKA_PASSWORD"],
        **extra,
    }
    if "KAFKA_CA_CERT" in domain_secret:
        config["ssl.ca.pem"] = domain_secret["KAFKA_CA_CERT"]
    return config


def admin_kafka_config(**extra):
    config = {
        "bootstrap.servers": env("KAFKA_BOOTSTRAP_SERVERS"),
        "security.protocol": env("KAFKA_SECURITY_PROTOCOL"),
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": env("KAFKA_ADMIN_USER"),
        "sasl.password": env("KAFKA_ADMIN_PASSWORD"),
        **extra,
    }
    if env("KAFKA_SECURITY_PROTOCOL") == "SASL_SSL":
        config["ssl.ca.location"] = env("KAFKA_CA_FILE")
    return config


def produce(config, topic, records):
    producer = Producer({**config, "acks": "all", "message.timeout.ms": 30000})
    failures = []
    for key, value in records:
        producer.produce(topic, key=key, value=value,
                         on_delivery=lambda error, _msg: error and failures.append(error))
    assert producer.flush(60) == 0, "records still waiting after 60 s"
    assert not failures, failures


def read_all(config, topic):
    """Every record of `topic`, read to the end of each partition (as the admin)."""
    consumer = Consumer({**config, "group.id": f"e2e-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "enable.partition.eof": True})
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    done, records = set(), []
    while len(done) < len(partitions):
        message = consumer.poll(30)
        assert message is not None, f"no record nor end of partition from {topic} in 30 s"
        if message.error():
            assert message.error().code() == KafkaError._PARTITION_EOF, message.error()
            done.add(message.partition())
        else:
            records.append((message.key(), message.value()))
    consumer.close()
    return records


def avro_long(n):
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def avro_string(s):
    data = s.encode()
    return avro_long(len(data)) + data


def avro_profile(customer_id, country, updated_at_ms):
    """A CustomerProfile in Avro's binary encoding (customers.profiles' contract)."""
    return (avro_string(customer_id) + avro_string(country) + avro_long(1) + avro_string("loyal")
            + avro_long(0) + avro_long(updated_at_ms))


def run_job(namespace, obj, log: Path):
    """Run the SparkApplication with the runner; returns (exit status, its output). The runner
    gets the image's variables and the admin kubeconfig (the kubelet's part), nothing else."""
    runner_env = {k: os.environ[k] for k in ("PATH", "HOME", "JAVA_HOME", "SPARK_HOME", "PYSPARK_PYTHON", "LANG")
                  if k in os.environ}
    runner_env["KUBECONFIG"] = env("KUBECONFIG")
    with open(log, "w") as out:
        status = subprocess.run(["stack-python", str(RUNNER), "--workdir", str(log.parent / f"{log.stem}-root"),
                                 namespace, obj], stdout=out, stderr=subprocess.STDOUT, env=runner_env,
                                timeout=SPARK_TIMEOUT).returncode
    return status, log.read_text()


def input_access(namespace, name, port):
    status = get_json("dataproduct", name, "-n", namespace).get("status", {})
    return next((p["access"] for p in status.get("inputPorts", []) if p["name"] == port), None)


@pytest.fixture(scope="module")
def sample_data(mesh):
    """Records of this run, produced by payments and customers with their own credentials, and the
    job uploaded by marketing to its own bucket. Countries are unique to the run, so the checks
    hold on a platform where earlier runs left records in the same topics."""
    run_id = uuid.uuid4().hex[:8]
    nl, de = f"NL-{run_id}", f"DE-{run_id}"
    now = datetime.now(timezone.utc).replace(microsecond=0)
    recent = now - timedelta(hours=1)
    old = now - timedelta(days=40)
    customers = {f"c1-{run_id}": nl, f"c2-{run_id}": de, f"c3-{run_id}": nl}
    c1, c2, c3 = customers
    payments = [
        (f"p1-{run_id}", c1, "captured", 1000, "EUR", recent),
        (f"p2-{run_id}", c1, "captured", 500, "EUR", recent),
        (f"p3-{run_id}", c2, "captured", 700, "EUR", recent),
        (f"p4-{run_id}", c3, "authorised", 900, "EUR", recent),   # not captured: not revenue
        (f"p5-{run_id}", c3, "captured", 300, "USD", recent),
        (f"p6-{run_id}", c2, "captured", 100, "EUR", old),        # older than --lookback-days 30
    ]
    customers_secret = secret_data("customers", "customers-credentials")
    millis = int(recent.timestamp() * 1000)
    # c1 moved: its first profile says DE, the latest NL; the job must take the latest.
    profiles = [(c1.encode(), avro_profile(c1, de, millis - 1000))]
    profiles += [(cid.encode(), avro_profile(cid, country, millis)) for cid, country in customers.items()]
    produce(kafka_client_config(customers_secret), PROFILES, profiles)
    payments_secret = secret_data("payments", "payments-credentials")
    produce(kafka_client_config(payments_secret), TRANSACTIONS, [
        (pid.encode(), json.dumps({"paymentId": pid, "customerId": cid, "state": state, "amountMinor": amount,
                                   "currency": currency, "occurredAt": at.isoformat().replace("+00:00", "Z")}).encode())
        for pid, cid, state, amount, currency, at in payments
    ])
    marketing = secret_data("marketing", "marketing-credentials")
    domain_s3(marketing).put_object(
        Bucket=REPORTS_BUCKET, Key="jobs/campaign_performance.py", Body=JOB.read_bytes())
    date = recent.strftime("%Y-%m-%d")
    return {
        "countries": {nl, de},
        "report": {(date, nl, "EUR"): (2, 1500), (date, de, "EUR"): (1, 700), (date, nl, "USD"): (1, 300)},
        "attributed": {f"p1-{run_id}": nl, f"p2-{run_id}": nl, f"p3-{run_id}": de, f"p5-{run_id}": nl},
        "payments": {p[0] for p in payments},
    }


def reports(s3, countries):
    """The report rows of `countries` in the reports bucket: {(date, country, currency): (payments, revenue)}."""
    rows = {}
    listing = s3.list_objects_v2(Bucket=REPORTS_BUCKET, Prefix="reports/")
    for item in listing.get("Contents", []):
        key = item["Key"]
        if not key.endswith(".parquet"):
            continue
        date = next(part.split("=", 1)[1] for part in key.split("/") if part.startswith("date="))
        table = pq.read_table(io.BytesIO(s3.get_object(Bucket=REPORTS_BUCKET, Key=key)["Body"].read()))
        for row in table.to_pylist():
            if row["country"] in countries:
                rows[(date, row["country"], row["currency"])] = (row["payments"], row["revenueMinor"])
    return rows


def test_the_sample_job_reads_its_granted_inputs_and_writes_its_output_ports(mesh, sample_data, s3_admin, tmp_path):
    app = get_json("scheduledsparkapplication", "campaign-performance", "-n", "marketing")
    serialized = json.dumps(app)
    marketing = secret_data("marketing", "marketing-credentials")
    for key in ("KAFKA_PASSWORD", "AWS_SECRET_ACCESS_KEY"):
        assert marketing[key] not in serialized, f"the SparkApplication holds the Secret's {key}"

    # The trust store the job's JVM uses (the platform's S3 and Kafka CAs): deleted by hand, it is
    # made again from the watch, not at the next resync.
    uid = get_json("configmap", "campaign-performance-spark-truststore", "-n", "marketing")["metadata"]["uid"]
    kubectl("delete", "configmap", "campaign-performance-spark-truststore", "-n", "marketing")
    wait_for(lambda: kubectl("get", "configmap", "campaign-performance-spark-truststore", "-n", "marketing",
                             "-o", "jsonpath={.metadata.uid}", check=False).stdout not in ("", uid),
             timeout=30, message="the trust store ConfigMap to be made again")

    status, output = run_job("marketing", "scheduledsparkapplication/campaign-performance", tmp_path / "job.log")
    assert status == 0, output[-6000:]

    assert reports(s3_admin, sample_data["countries"]) == sample_data["report"]
    attributed = {}
    for key, value in read_all(admin_kafka_config(), ATTRIBUTIONS):
        record = json.loads(value)
        if record["paymentId"] in sample_data["payments"]:
            assert key == b"direct"
            attributed[record["paymentId"]] = record["country"]
    assert attributed == sample_data["attributed"]


def test_without_its_grant_the_job_fails_with_kafka_authorization_and_the_input_is_not_granted(
        mesh, sample_data, tmp_path):
    policy = get_json("accesspolicy", "marketing-reads-profiles", "-n", "customers")
    kubectl("delete", "accesspolicy", "marketing-reads-profiles", "-n", "customers", "--wait=true")
    try:
        wait_for(lambda: input_access("marketing", "campaign-performance", "profiles") not in (None, "Granted"),
                 timeout=60, message="the profiles input to be reported as not granted")
        assert input_access("marketing", "campaign-performance", "profiles") == "Pending"
        product = get_json("dataproduct", "campaign-performance", "-n", "marketing")
        assert condition(product, "Ready")["status"] == "False", product["status"]
        status, output = run_job("marketing", "scheduledsparkapplication/campaign-performance",
                                 tmp_path / "job-revoked.log")
        assert status != 0, output[-6000:]
        # (Kafka's message does not name the topic; the transactions grant still stands.)
        assert "org.apache.kafka.common.errors.TopicAuthorizationException" in output, output[-6000:]
    finally:
        clean = {"apiVersion": policy["apiVersion"], "kind": policy["kind"],
                 "metadata": {"name": "marketing-reads-profiles", "namespace": "customers",
                              "labels": policy["metadata"].get("labels", {})},
                 "spec": policy["spec"]}
        kubectl("apply", "-f", "-", input=yaml.safe_dump(clean))
        wait_for(lambda: input_access("marketing", "campaign-performance", "profiles") == "Granted",
                 timeout=60, message="the profiles grant to be back")


def test_a_job_can_read_no_topic_it_was_not_granted_and_write_no_other_domains_bucket(mesh, s3_admin, tmp_path):
    """payments is not granted customers' profiles, and no domain may write marketing's bucket:
    a payments job running with Spark's full local privileges is refused both by Kafka and S3."""
    name = f"probe-{uuid.uuid4().hex[:6]}"
    bucket = f"payments-{name}-lake"
    stolen = f"s3a://{REPORTS_BUCKET}/stolen-{name}/"
    product = {
        "apiVersion": "datamesh.dev/v1alpha1", "kind": "DataProduct",
        "metadata": {"name": name, "namespace": "payments"},
        "spec": {
            "domain": "payments", "description": {"purpose": "probe", "usage": "tests"},
            "owner": {"name": "mallory"}, "deletionPolicy": "Delete",
            "outputPorts": [{"name": "lake", "bucket": {}}],
            "transformation": {"spark": {
                "image": "registry.example.com/payments/spark-py:4.1.1", "type": "Python",
                "mainApplicationFile": f"s3a://{bucket}/probe.py", "sparkVersion": "4.1.1",
                "arguments": ["--read-topic", PROFILES, "--write-path", stolen],
                "driver": {"cores": 1, "memory": "1g"}}},
        },
    }
    kubectl("apply", "-f", "-", input=yaml.safe_dump(product))
    try:
        kubectl("wait", "--for", "condition=Ready", "--timeout", "120s", f"dataproduct/{name}", "-n", "payments")
        payments = secret_data("payments", "payments-credentials")
        domain_s3(payments).put_object(
            Bucket=bucket, Key="probe.py", Body=PROBE.read_bytes())
        status, output = run_job("payments", f"sparkapplication/{name}", tmp_path / "probe.log")
        assert status == 0, output[-6000:]
        attempts = {}
        for line in output.splitlines():
            if line.startswith('{"attempt"'):
                record = json.loads(line)
                attempts[record["attempt"]] = record
        assert attempts["read-topic"]["outcome"] == "denied", attempts
        assert attempts["write-bucket"]["outcome"] == "denied", attempts
        listing = s3_admin.list_objects_v2(Bucket=REPORTS_BUCKET, Prefix=f"stolen-{name}/")
        assert listing.get("KeyCount", 0) == 0, listing
    finally:
        kubectl("delete", "dataproduct", name, "-n", "payments", "--wait=true", "--timeout=120s", check=False)
