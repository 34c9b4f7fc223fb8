"""End to end: a DataProduct becomes Kafka topics, buckets and Spark applications, checked with
independent clients (Kafka's own tools, boto3, kubectl), and is kept so: config drift is set back
within one resync, partitions grow but never shrink, and deletion keeps or deletes data by
deletionPolicy.

The operator runs out of cluster with the Helm chart's RBAC, resyncing every 5 seconds.
"""

import json
import re
import subprocess
import sys
import time

import botocore.exceptions
import pytest
import yaml

from conftest import Kafka, apply, condition, domain_s3, get_json, kubectl, run, secret_data, unique
from operator_process import OperatorProcess, install_chart_rbac, install_crds, wait_for, workdir

RESYNC_SECONDS = 5


@pytest.fixture(scope="module")
def operator():
    install_crds()
    install_chart_rbac()
    process = OperatorProcess(workdir(), "data-product-tests",
                              extra_env={"DATAMESH_RESYNC_SECONDS": str(RESYNC_SECONDS)})
    yield process
    # The crash test (last in this file) replaces the process it kills.
    final = getattr(process, "restarted", process)
    code = final.terminate()
    assert code == 0, f"the operator did not shut down cleanly ({code}):\n{final.logs()}"


def ready_domain(name, **spec):
    apply({"apiVersion": "datamesh.dev/v1alpha1", "kind": "Domain", "metadata": {"name": name}, "spec": spec})
    kubectl("wait", "--for", "condition=Ready", "--timeout", "90s", f"domain/{name}")


def product_manifest(domain, name, output_ports, **spec):
    return {
        "apiVersion": "datamesh.dev/v1alpha1", "kind": "DataProduct",
        "metadata": {"name": name, "namespace": domain},
        "spec": {"domain": domain, "owner": {"name": "alice"},
                 "description": {"purpose": "Orders as they happen", "usage": "Stream it"},
                 "outputPorts": output_ports, **spec},
    }


def wait_product_ready(domain, name, timeout="90s"):
    kubectl("wait", "--for", "condition=Ready", "--timeout", timeout, f"dataproduct/{name}", "-n", domain)
    return get_json("dataproduct", name, "-n", domain)


def wait_product_condition(domain, name, type_, reason=None, timeout=60):
    def check():
        c = condition(get_json("dataproduct", name, "-n", domain), type_)
        return c if c and c["status"] == "True" and (reason is None or c["reason"] == reason) else None
    return wait_for(check, timeout=timeout, message=f"{type_} {reason or ''} on {domain}/{name}")


def describe_topic(kafka_admin, topic):
    """(partitions, replication factor) as kafka-topics.sh --describe reports them."""
    out = kafka_admin.tool("kafka-topics.sh", "--describe", "--topic", topic).stdout
    match = re.search(r"PartitionCount:\s*(\d+)\s+ReplicationFactor:\s*(\d+)", out)
    assert match, out
    return int(match.group(1)), int(match.group(2))


def topic_exists(kafka_admin, topic):
    return topic in kafka_admin.tool("kafka-topics.sh", "--list").stdout.split()


def topic_configs(kafka_admin, topic):
    """The configs set on the topic itself, as kafka-configs.sh --describe lists them."""
    out = kafka_admin.tool("kafka-configs.sh", "--describe", "--entity-type", "topics",
                           "--entity-name", topic).stdout
    configs = {}
    for line in out.splitlines():
        line = line.strip()
        if "=" in line and not line.startswith(("Dynamic", "All")):
            key, _, rest = line.partition("=")
            configs[key.strip()] = rest.split(" ")[0]
    return configs


def set_topic_config(kafka_admin, topic, key, value):
    kafka_admin.tool("kafka-configs.sh", "--alter", "--entity-type", "topics", "--entity-name", topic,
                     "--add-config", f"{key}={value}")


def domain_kafka(tmp_path, domain):
    creds = secret_data(domain, f"{domain}-credentials")
    return Kafka(tmp_path, creds["KAFKA_USERNAME"], creds["KAFKA_PASSWORD"]), creds


def produce_records(kafka, topic, count):
    """Produce `count` records with kafka-producer-perf-test.sh (which takes its connection as
    producer properties, not --bootstrap-server), acks=all."""
    result = run(["kafka-producer-perf-test.sh", "--topic", topic, "--num-records", str(count),
                  "--record-size", "100", "--throughput", "-1", "--producer.config", str(kafka.config),
                  "--producer-props", f"bootstrap.servers={kafka.bootstrap}", "acks=all"], timeout=120)
    assert f"{count} records sent" in result.stdout, result.stdout


def topic_record_count(kafka_admin, topic):
    """How many records the topic holds, read back by the admin with the console consumer (it
    stops 20 s after the last record)."""
    return len(kafka_admin.consume(topic, 10_000_000, check=False))


def test_a_product_becomes_its_topic_and_bucket_and_the_owner_can_use_them(operator, kafka_admin, s3_admin,
                                                                           tmp_path):
    domain = unique("dp")
    ready_domain(domain)
    apply(product_manifest(domain, "orders", [
        {"name": "events", "kafka": {"partitions": 3, "retention": "1d", "config": {"cleanup.policy": "delete"}}},
        {"name": "lake", "bucket": {"versioning": True, "expireAfterDays": 30}},
    ], classification="confidential"))
    product = wait_product_ready(domain, "orders")

    topic, bucket = f"{domain}.orders.events", f"{domain}-orders-lake"
    status = product["status"]
    assert status["portsReady"] == "2/2"
    assert status["observedGeneration"] == 1
    ports = {p["name"]: p for p in status["outputPorts"]}
    assert ports["events"]["topic"] == topic
    assert ports["events"]["bootstrapServers"]
    assert ports["lake"]["bucket"] == bucket
    assert ports["lake"]["endpoint"]
    assert "datamesh.dev/data-product" in product["metadata"]["finalizers"]

    # Kafka's own tools see the topic as declared.
    assert describe_topic(kafka_admin, topic) == (3, 1)
    configs = topic_configs(kafka_admin, topic)
    assert configs["retention.ms"] == "86400000"
    assert configs["cleanup.policy"] == "delete"

    # boto3 sees the bucket as declared.
    assert s3_admin.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rules = s3_admin.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert [r["Expiration"]["Days"] for r in rules] == [30]
    tags = {t["Key"]: t["Value"] for t in s3_admin.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    assert tags == {"datamesh.dev/domain": domain, "datamesh.dev/data-product": "orders",
                    "datamesh.dev/port": "lake", "datamesh.dev/classification": "confidential",
                    "app.kubernetes.io/managed-by": "datamesh-operator",
                    # The bucket's owner record: which namespace and which product made it.
                    "datamesh.dev/namespace": domain, "datamesh.dev/data-product-uid": product["metadata"]["uid"]}

    # The owning domain's credentials produce 10,000 records and read them back.
    kafka, creds = domain_kafka(tmp_path, domain)
    produce_records(kafka, topic, 10_000)
    assert topic_record_count(kafka_admin, topic) == 10_000
    consumed = kafka.consume(topic, 10_000, group=f"{domain}.orders.check")
    assert len(consumed) == 10_000

    # ... and write and read an object in the bucket; another domain's credentials cannot.
    s3 = domain_s3(creds)
    body = b"order-1,42.00\n"
    wait_for(lambda: _try_put(s3, bucket, "day=1/orders.csv", body), timeout=20, message="owner may write")
    assert s3.get_object(Bucket=bucket, Key="day=1/orders.csv")["Body"].read() == body
    other = unique("dp")
    ready_domain(other)
    other_creds = secret_data(other, f"{other}-credentials")
    stranger = domain_s3(other_creds)
    with pytest.raises(botocore.exceptions.ClientError):
        stranger.get_object(Bucket=bucket, Key="day=1/orders.csv")
    stranger_kafka = Kafka(tmp_path, other_creds["KAFKA_USERNAME"], other_creds["KAFKA_PASSWORD"])
    refused = stranger_kafka.produce(topic, ["intruder"], check=False)
    assert "TopicAuthorizationException" in refused.stderr, refused.stderr[-2000:]

    kubectl("delete", "domain", other, "--timeout", "60s")


WORKLOAD = """
import json, boto3, botocore.exceptions
from botocore.config import Config
# Nothing but the environment: endpoint, region, keys and CA bundle, as a pod's envFrom and a
# mounted Secret key give them.
s3 = boto3.client("s3", config=Config(retries={"max_attempts": 1}))
bucket, key = "%(bucket)s", "from-the-workload.txt"
try:
    s3.put_object(Bucket=bucket, Key=key, Body=b"hello from the workload")
    read = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    print(json.dumps({"read": read, "listed": listed}))
except botocore.exceptions.ClientError as error:
    print(json.dumps({"error": error.response["Error"]["Code"]}))
except botocore.exceptions.SSLError as error:
    print(json.dumps({"error": "SSLError"}))
"""


def run_workload(bucket, environment, home):
    """A boto3 program in a clean environment (no AWS config files, none of the tests' variables)."""
    result = subprocess.run([sys.executable, "-c", WORKLOAD % {"bucket": bucket}], capture_output=True,
                            text=True, timeout=120, cwd=home,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(home), **environment})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_a_workload_reaches_its_bucket_with_nothing_but_its_credentials_secret(operator, tmp_path):
    domain = unique("dp")
    ready_domain(domain)
    apply(product_manifest(domain, "orders", [{"name": "lake", "bucket": {}}]))
    wait_product_ready(domain, "orders")
    bucket = f"{domain}-orders-lake"
    creds = secret_data(domain, f"{domain}-credentials")

    # The Secret says where S3 is (over HTTPS), as whom, and which CA to trust.
    assert creds["AWS_ENDPOINT_URL_S3"].startswith("https://"), creds["AWS_ENDPOINT_URL_S3"]
    assert "BEGIN CERTIFICATE" in creds["AWS_CA_BUNDLE_PEM"]
    ca = tmp_path / "s3-ca.crt"
    ca.write_text(creds["AWS_CA_BUNDLE_PEM"])
    environment = {k: creds[k] for k in ("AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_ACCESS_KEY_ID",
                                         "AWS_SECRET_ACCESS_KEY", "AWS_REQUEST_CHECKSUM_CALCULATION")}
    environment["AWS_CA_BUNDLE"] = str(ca)

    # IAM policies reach the gateway through a filer subscription: allow a few seconds.
    outcome = wait_for(lambda: (lambda o: o if "read" in o else None)(run_workload(bucket, environment, tmp_path)),
                       timeout=30, message="the workload writes and reads its bucket")
    assert outcome == {"read": "hello from the workload", "listed": ["from-the-workload.txt"]}

    # Without the CA the endpoint's certificate is not trusted, so the CA is what the Secret must carry.
    untrusting = {k: v for k, v in environment.items() if k != "AWS_CA_BUNDLE"}
    assert run_workload(bucket, untrusting, tmp_path) == {"error": "SSLError"}


def _try_put(s3, bucket, key, body):
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        return True
    except botocore.exceptions.ClientError:
        return False


def test_drift_is_set_back_partitions_grow_and_never_shrink(operator, kafka_admin, tmp_path):
    domain = unique("dp")
    ready_domain(domain)
    ports = lambda partitions: [{"name": "events", "kafka": {"partitions": partitions, "retention": "7d"}}]
    apply(product_manifest(domain, "orders", ports(2)))
    wait_product_ready(domain, "orders")
    topic = f"{domain}.orders.events"

    # retention.ms changed directly in Kafka is restored within one resync.
    set_topic_config(kafka_admin, topic, "retention.ms", "1000")
    set_topic_config(kafka_admin, topic, "max.message.bytes", "2000000")
    wait_for(lambda: topic_configs(kafka_admin, topic).get("retention.ms") == "604800000",
             timeout=3 * RESYNC_SECONDS, interval=0.5, message="retention.ms restored")
    assert topic_configs(kafka_admin, topic)["max.message.bytes"] == "2000000", "keys the spec omits are left"
    assert "set topic configs back to the spec" in operator.logs(), "the operator, not chance, restored it"

    # Growing partitions is applied.
    apply(product_manifest(domain, "orders", ports(4)))
    wait_for(lambda: describe_topic(kafka_admin, topic)[0] == 4, timeout=30, message="4 partitions")
    wait_for(lambda: get_json("dataproduct", "orders", "-n", domain)["status"]["observedGeneration"] == 2,
             message="generation 2 observed")
    wait_product_ready(domain, "orders")

    kafka, _ = domain_kafka(tmp_path, domain)
    produce_records(kafka, topic, 1000)

    # Shrinking is refused: Stalled with the reason; the topic and its data are intact.
    apply(product_manifest(domain, "orders", ports(1)))
    stalled = wait_product_condition(domain, "orders", "Stalled", "PartitionDecrease")
    assert "4 partitions" in stalled["message"]
    ready = condition(get_json("dataproduct", "orders", "-n", domain), "Ready")
    assert ready["status"] == "False" and ready["reason"] == "PartitionDecrease"
    time.sleep(RESYNC_SECONDS + 1)
    assert describe_topic(kafka_admin, topic) == (4, 1)
    assert topic_record_count(kafka_admin, topic) == 1000
    events = kubectl("get", "events", "-n", domain, "--field-selector", "reason=PartitionDecrease",
                     "-o", "jsonpath={.items[*].message}").stdout
    assert topic in events

    # Setting it back makes it Ready again.
    apply(product_manifest(domain, "orders", ports(4)))
    wait_for(lambda: condition(get_json("dataproduct", "orders", "-n", domain), "Ready")["status"] == "True",
             timeout=30, message="Ready again")


def test_transformations_are_spark_applications_the_real_crds_accept(operator):
    domain = unique("dp")
    ready_domain(domain)
    spark = {"image": "apache/spark:4.0.1", "mainApplicationFile": "local:///opt/app/job.py",
             "sparkVersion": "4.0.1", "arguments": ["--day", "today"],
             "driver": {"cores": 1, "memory": "1g"}, "executor": {"instances": 2, "memory": "2g"}}
    apply(product_manifest(domain, "hourly", [{"name": "events", "kafka": {}}],
                           transformation={"spark": {**spark, "schedule": "@hourly"}}))
    apply(product_manifest(domain, "once", [{"name": "lake", "bucket": {}}],
                           transformation={"spark": spark}))
    wait_product_ready(domain, "hourly")
    wait_product_ready(domain, "once")

    scheduled = get_json("scheduledsparkapplication", "hourly", "-n", domain)
    assert scheduled["spec"]["schedule"] == "@hourly"
    assert scheduled["spec"]["suspend"] is False
    template = scheduled["spec"]["template"]
    assert template["driver"]["serviceAccount"] == "hourly-spark"
    assert template["driver"]["envFrom"] == [{"secretRef": {"name": f"{domain}-credentials"}}]
    env = {e["name"]: e.get("value") for e in template["driver"]["env"]}
    assert env["DATAMESH_OUTPUT_EVENTS"] == f"{domain}.hourly.events"
    owner = scheduled["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("DataProduct", "hourly")

    app = get_json("sparkapplication", "once", "-n", domain)
    assert app["spec"]["executor"]["instances"] == 2
    env = {e["name"]: e.get("value") for e in app["spec"]["driver"]["env"]}
    assert env["DATAMESH_OUTPUT_LAKE"] == f"s3a://{domain}-once-lake/"

    # The driver's ServiceAccount may run executor pods in the namespace, and nowhere else.
    binding = get_json("rolebinding", "hourly-spark", "-n", domain)
    assert binding["roleRef"]["name"] == "datamesh-spark-driver"
    sa = f"system:serviceaccount:{domain}:hourly-spark"
    assert kubectl("auth", "can-i", "create", "pods", "-n", domain, "--as", sa).stdout.strip() == "yes"
    assert kubectl("auth", "can-i", "create", "pods", "-n", "default", "--as", sa,
                   check=False).stdout.strip() == "no"

    # Deprecated: a condition and an Event. Retired: the job is suspended.
    product = product_manifest(domain, "hourly", [{"name": "events", "kafka": {}}],
                               transformation={"spark": {**spark, "schedule": "@hourly"}}, status="deprecated")
    apply(product)
    wait_product_condition(domain, "hourly", "Deprecated")
    wait_for(lambda: kubectl("get", "events", "-n", domain, "--field-selector", "reason=Deprecated",
                             "-o", "name").stdout.strip(), message="Deprecated Event")
    product["spec"]["status"] = "retired"
    apply(product)
    wait_for(lambda: get_json("scheduledsparkapplication", "hourly", "-n", domain)["spec"]["suspend"] is True,
             message="suspended")

    # Deleting the product removes its Spark objects.
    kubectl("delete", "dataproduct", "hourly", "once", "-n", domain, "--timeout", "60s")
    assert kubectl("get", "scheduledsparkapplication", "hourly", "-n", domain, check=False).returncode != 0
    assert kubectl("get", "sparkapplication", "once", "-n", domain, check=False).returncode != 0
    assert kubectl("get", "serviceaccount", "hourly-spark", "-n", domain, check=False).returncode != 0


def test_adopting_an_existing_bucket_keeps_the_tags_and_lifecycle_rules_others_set(operator, s3_admin):
    domain = unique("dp")
    ready_domain(domain)
    bucket = f"{domain}-legacy-lake"
    s3_admin.create_bucket(Bucket=bucket)
    s3_admin.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "cost-center", "Value": "42"}]})
    foreign_rules = [
        {"ID": "scratch", "Filter": {"Prefix": "tmp/"}, "Status": "Enabled", "Expiration": {"Days": 1}},
        {"ID": "uploads", "Filter": {"Prefix": ""}, "Status": "Enabled",
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2}},
    ]
    s3_admin.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": foreign_rules})
    s3_admin.put_object(Bucket=bucket, Key="old.csv", Body=b"1\n")
    product = product_manifest(domain, "legacy", [{"name": "lake", "bucket": {"expireAfterDays": 30}}])
    apply(product)
    wait_product_ready(domain, "legacy")
    tags = {t["Key"]: t["Value"] for t in s3_admin.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    assert tags["cost-center"] == "42", tags
    assert tags["datamesh.dev/domain"] == domain and tags["datamesh.dev/data-product"] == "legacy"
    ours = {"ID": "datamesh-expiration", "Filter": {"Prefix": ""}, "Status": "Enabled", "Expiration": {"Days": 30}}
    rules = s3_admin.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert rules == foreign_rules + [ours], rules
    assert s3_admin.get_object(Bucket=bucket, Key="old.csv")["Body"].read() == b"1\n"

    # The expiry leaves the spec: only the operator's rule goes.
    del product["spec"]["outputPorts"][0]["bucket"]["expireAfterDays"]
    apply(product)
    wait_for(lambda: s3_admin.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"] == foreign_rules,
             timeout=30, message="the operator's expiration rule removed, the others kept")
    kubectl("delete", "dataproduct", "legacy", "-n", domain, "--timeout", "60s")


def test_a_config_key_removed_from_the_spec_goes_back_to_the_broker_default(operator, kafka_admin):
    domain = unique("dp")
    ready_domain(domain)
    port = {"name": "events", "kafka": {"retention": "7d", "config": {"cleanup.policy": "compact",
                                                                     "max.message.bytes": "2000000"}}}
    manifest = product_manifest(domain, "orders", [port])
    apply(manifest)
    wait_product_ready(domain, "orders")
    topic = f"{domain}.orders.events"
    # Someone else's key on the topic, which the operator never set.
    set_topic_config(kafka_admin, topic, "segment.ms", "3600000")
    assert topic_configs(kafka_admin, topic)["cleanup.policy"] == "compact"

    port["kafka"]["config"] = {"max.message.bytes": "2000000"}
    del port["kafka"]["retention"]
    apply(manifest)
    wait_for(lambda: "cleanup.policy" not in topic_configs(kafka_admin, topic)
             and "retention.ms" not in topic_configs(kafka_admin, topic),
             timeout=30, message="cleanup.policy and retention.ms removed from the topic")
    configs = topic_configs(kafka_admin, topic)
    assert configs["max.message.bytes"] == "2000000", "what is still declared stays"
    assert configs["segment.ms"] == "3600000", "a key the operator never set is left alone"
    kubectl("delete", "dataproduct", "orders", "-n", domain, "--timeout", "60s")


def test_fields_removed_from_the_spark_transformation_leave_the_live_application(operator):
    """GitOps removes lines: what the spec no longer declares must leave the live child."""
    domain = unique("dp")
    ready_domain(domain)
    spark = {"image": "apache/spark:4.0.1", "mainApplicationFile": "local:///opt/app/job.jar", "type": "Scala",
             "mainClass": "com.example.Job", "sparkVersion": "4.0.1", "arguments": ["--day", "today"],
             "executor": {"instances": 3, "memory": "2g"}}
    manifest = product_manifest(domain, "job", [{"name": "lake", "bucket": {}}], transformation={"spark": spark})
    apply(manifest)
    wait_product_ready(domain, "job")
    live = get_json("sparkapplication", "job", "-n", domain)["spec"]
    assert live["arguments"][-2:] == ["--day", "today"]
    assert live["executor"]["instances"] == 3

    trimmed = {k: v for k, v in spark.items() if k != "arguments"}
    trimmed["executor"] = {"memory": "2g"}
    manifest["spec"]["transformation"] = {"spark": trimmed}
    apply(manifest)

    def removed():
        spec = get_json("sparkapplication", "job", "-n", domain)["spec"]
        return "--day" not in spec.get("arguments", []) and "instances" not in spec.get("executor", {})
    wait_for(removed, timeout=30, message="arguments and executor.instances gone from the SparkApplication")
    live = get_json("sparkapplication", "job", "-n", domain)["spec"]
    assert live["mainClass"] == "com.example.Job", "what is still declared stays"
    assert live["executor"]["memory"] == "2g"
    kubectl("delete", "dataproduct", "job", "-n", domain, "--timeout", "60s")


def test_a_port_removed_from_the_spec_follows_the_deletion_policy(operator, kafka_admin, s3_admin):
    domain = unique("dp")
    ready_domain(domain)
    kept = product_manifest(domain, "kept", [{"name": "events", "kafka": {}}, {"name": "audit", "kafka": {}}])
    gone = product_manifest(domain, "gone", [{"name": "events", "kafka": {}}, {"name": "lake", "bucket": {}}],
                            deletionPolicy="Delete")
    apply(kept)
    apply(gone)
    wait_product_ready(domain, "kept")
    wait_product_ready(domain, "gone")
    s3_admin.put_object(Bucket=f"{domain}-gone-lake", Key="data.csv", Body=b"1\n")

    kept["spec"]["outputPorts"] = [{"name": "events", "kafka": {}}]
    gone["spec"]["outputPorts"] = [{"name": "events", "kafka": {}}]
    apply(kept)
    apply(gone)

    # Retain: the topic stays with its data, without the producer's ACLs; the rest is untouched.
    audit = f"{domain}.kept.audit"
    wait_for(lambda: f"User:{domain}" not in kafka_admin.tool("kafka-acls.sh", "--list", "--topic", audit).stdout,
             timeout=30, message="the removed port's producer ACLs gone")
    assert topic_exists(kafka_admin, audit)
    assert f"User:{domain}" in kafka_admin.tool("kafka-acls.sh", "--list", "--topic", f"{domain}.kept.events").stdout
    # Delete: the bucket goes with its data.
    def bucket_gone():
        return f"{domain}-gone-lake" not in [b["Name"] for b in s3_admin.list_buckets()["Buckets"]]
    wait_for(bucket_gone, timeout=30, message="the removed bucket port's bucket deleted")
    assert topic_exists(kafka_admin, f"{domain}.gone.events")
    for name in ("kept", "gone"):
        wait_for(lambda: [p["name"] for p in get_json("dataproduct", name, "-n", domain)["status"]["outputPorts"]]
                 == ["events"], timeout=30, message=f"{name} lists only its remaining port")
        wait_product_ready(domain, name)
    kubectl("delete", "dataproduct", "kept", "gone", "-n", domain, "--timeout", "60s")


def test_retain_keeps_topic_and_bucket_and_delete_removes_them(operator, kafka_admin, s3_admin):
    domain = unique("dp")
    ready_domain(domain)
    ports = [{"name": "events", "kafka": {}}, {"name": "lake", "bucket": {}}]
    apply(product_manifest(domain, "kept", ports))
    apply(product_manifest(domain, "gone", ports, deletionPolicy="Delete"))
    wait_product_ready(domain, "kept")
    wait_product_ready(domain, "gone")
    for name in ("kept", "gone"):
        s3_admin.put_object(Bucket=f"{domain}-{name}-lake", Key="data.csv", Body=b"1\n")
    kubectl("delete", "dataproduct", "kept", "gone", "-n", domain, "--timeout", "60s")

    assert topic_exists(kafka_admin, f"{domain}.kept.events")
    assert s3_admin.get_object(Bucket=f"{domain}-kept-lake", Key="data.csv")["Body"].read() == b"1\n"
    tags = {t["Key"]: t["Value"] for t in s3_admin.get_bucket_tagging(Bucket=f"{domain}-kept-lake")["TagSet"]}
    assert tags["datamesh.dev/orphaned"] == "true"
    acls = kafka_admin.tool("kafka-acls.sh", "--list", "--topic", f"{domain}.kept.events").stdout
    assert f"User:{domain}" not in acls, "a retained topic keeps no producer ACLs"

    wait_for(lambda: not topic_exists(kafka_admin, f"{domain}.gone.events"), timeout=30, message="topic deleted")
    buckets = [b["Name"] for b in s3_admin.list_buckets()["Buckets"]]
    assert f"{domain}-gone-lake" not in buckets
    assert f"{domain}-kept-lake" in buckets


def test_a_contested_topic_stays_with_the_older_product(operator, kafka_admin):
    domain = unique("dp")
    ready_domain(domain)
    apply(product_manifest(domain, "orders", [{"name": "events", "kafka": {"partitions": 2}}]))
    wait_product_ready(domain, "orders")
    apply(product_manifest(domain, "copycat", [
        {"name": "events", "kafka": {"topic": f"{domain}.orders.events", "partitions": 5}}]))
    stalled = wait_product_condition(domain, "copycat", "Stalled", "ClaimedByAnotherProduct")
    assert f"managed by {domain}/orders" in stalled["message"]
    assert describe_topic(kafka_admin, f"{domain}.orders.events") == (2, 1)

    # Once the older product is gone (its topic retained), the newer one adopts the topic.
    kubectl("delete", "dataproduct", "orders", "-n", domain, "--timeout", "60s")
    wait_product_ready(domain, "copycat")
    assert describe_topic(kafka_admin, f"{domain}.orders.events") == (5, 1)


def test_input_ports_report_not_found_and_pending(operator):
    producer, consumer = unique("dp"), unique("dp")
    ready_domain(producer)
    ready_domain(consumer)
    apply(product_manifest(producer, "orders", [{"name": "events", "kafka": {}}]))
    wait_product_ready(producer, "orders")
    apply(product_manifest(consumer, "report", [{"name": "lake", "bucket": {}}], inputPorts=[
        {"name": "orders", "dataProduct": {"domain": producer, "name": "orders", "port": "events"}},
        {"name": "ghost", "dataProduct": {"domain": producer, "name": "ghost", "port": "events"}},
    ]))
    # A product that does not exist (yet) is waited for, not Stalled: from Git it may come later.
    waiting = wait_product_condition(consumer, "report", "Reconciling", "InputNotFound")
    assert f"Domain {producer} has no data product ghost" in waiting["message"], waiting
    report = get_json("dataproduct", "report", "-n", consumer)
    assert (condition(report, "Stalled") or {}).get("status") != "True", report["status"]
    inputs = {i["name"]: i["access"] for i in report["status"]["inputPorts"]}
    assert inputs == {"orders": "Pending", "ghost": "NotFound"}

    # Without the bad reference only the grant is missing: Reconciling, naming the grant.
    apply(product_manifest(consumer, "report", [{"name": "lake", "bucket": {}}], inputPorts=[
        {"name": "orders", "dataProduct": {"domain": producer, "name": "orders", "port": "events"}}]))
    reconciling = wait_product_condition(consumer, "report", "Reconciling", "AccessPending")
    assert producer in reconciling["message"]
    assert condition(get_json("dataproduct", "report", "-n", consumer), "Ready")["status"] == "False"


def test_quota_past_max_partitions_stalls_the_product(operator):
    domain = unique("dp")
    ready_domain(domain, quotas={"maxPartitions": 4})
    apply(product_manifest(domain, "first", [{"name": "events", "kafka": {"partitions": 3}}]))
    wait_product_ready(domain, "first")
    apply(product_manifest(domain, "second", [{"name": "events", "kafka": {"partitions": 2}}]))
    stalled = wait_product_condition(domain, "second", "Stalled", "QuotaExceeded")
    assert "maxPartitions" in stalled["message"]


def test_a_product_outside_its_domain_namespace_is_stalled(operator):
    domain, elsewhere = unique("dp"), unique("dp")
    ready_domain(domain)
    ready_domain(elsewhere)
    manifest = product_manifest(domain, "orders", [{"name": "events", "kafka": {}}])
    manifest["metadata"]["namespace"] = elsewhere
    apply(manifest)
    stalled = wait_for(lambda: condition(get_json("dataproduct", "orders", "-n", elsewhere), "Stalled"),
                       message="Stalled")
    assert stalled["reason"] == "WrongNamespace"


def test_a_crash_while_50_products_are_created_converges_without_duplicates_or_orphans(operator, kafka_admin,
                                                                                      s3_admin):
    """Last in this file: it kills the module's operator and leaves a restarted one in its place."""
    domain = unique("dp")
    ready_domain(domain)
    names = [f"p{i:02d}" for i in range(50)]
    manifests = [product_manifest(domain, name, [{"name": "events", "kafka": {"partitions": 1}},
                                                 {"name": "lake", "bucket": {}}]) for name in names]
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(manifests))
    wait_for(lambda: topic_exists(kafka_admin, f"{domain}.p00.events") or
             any(topic.startswith(f"{domain}.") for topic in kafka_admin.tool("kafka-topics.sh", "--list").stdout.split()),
             timeout=30, interval=0.2, message="provisioning under way")
    operator.kill()
    operator.restarted = OperatorProcess(workdir(), "data-product-restarted",
                                         extra_env={"DATAMESH_RESYNC_SECONDS": str(RESYNC_SECONDS)})
    for name in names:
        wait_product_ready(domain, name, timeout="180s")

    topics = sorted(t for t in kafka_admin.tool("kafka-topics.sh", "--list").stdout.split()
                    if t.startswith(f"{domain}."))
    assert topics == sorted(f"{domain}.{name}.events" for name in names)
    buckets = sorted(b["Name"] for b in s3_admin.list_buckets()["Buckets"] if b["Name"].startswith(f"{domain}-"))
    assert buckets == sorted(f"{domain}-{name}-lake" for name in names)
    for topic in topics[:5]:
        assert describe_topic(kafka_admin, topic) == (1, 1)
