"""End to end: an AccessPolicy grants one domain access to another domain's topic and bucket, for
real, and revokes it just as really. Every claim is checked with the domains' own credentials and
independent clients (Kafka's console tools, boto3), never with the operator's code.

The producer's topic and bucket are made here with the admin clients, named exactly as the
DataProduct reconciler names them (`<domain>.<product>.<port>`, `<domain>-<product>-<port>`), so
this file does not depend on that reconciler; so are the producer's own rights on them.
"""

import json
import re
import time
from datetime import datetime, timedelta, timezone

import botocore.exceptions
import pytest

from conftest import Kafka, apply, domain_s3, env, get_json, kubectl, s3_client, secret_data, unique
from operator_process import OperatorProcess, install_chart_rbac, install_crds, wait_for, workdir

API = "datamesh.dev/v1alpha1"
RECORDS = ["order-1", "order-2", "order-3"]
OBJECT_KEY = "2026/orders.json"
OBJECT_BODY = b'{"order": 1}'


class Operator:
    """The operator under test, which a test may kill and restart."""

    def __init__(self):
        self.directory = workdir()
        self.process = OperatorProcess(self.directory, "access-policy")

    def kill_and_restart(self, between=None):
        self.process.kill()
        if between:
            between()
        self.process = OperatorProcess(self.directory, "access-policy-restarted")


class Domain:
    """A domain made by the operator, with its own credentials."""

    def __init__(self, name, tmp_path_factory):
        self.name = name
        apply({"apiVersion": API, "kind": "Domain", "metadata": {"name": name},
               "spec": {"owners": [{"kind": "Group", "name": f"{name}-team"}]}})
        kubectl("wait", "--for", "condition=Ready", "--timeout", "90s", f"domain/{name}")
        self.creds = secret_data(name, f"{name}-credentials")
        self.kafka = Kafka(tmp_path_factory.mktemp(name), name, self.creds["KAFKA_PASSWORD"])
        self.s3 = domain_s3(self.creds)

    def consume(self):
        """The records read, or the authorization error Kafka answered with."""
        result = self.kafka.tool("kafka-console-consumer.sh", "--topic", MESH.topic, "--from-beginning",
                                 "--max-messages", str(len(RECORDS)), "--timeout-ms", "15000",
                                 "--group", f"{self.name}.{unique('test')}", check=False, timeout=90)
        output = result.stdout + result.stderr
        for error in ("TopicAuthorizationException", "GroupAuthorizationException"):
            if error in output:
                return error
        return [line for line in result.stdout.splitlines() if line]

    def produce(self, line):
        """'ok', or 'refused' when Kafka refused the write. Without Write on the topic, an
        idempotent producer (the default) is refused at InitProducerId with a cluster
        authorization error, before any topic error; both are refusals."""
        result = self.kafka.produce(MESH.topic, [line], check=False)
        output = result.stdout + result.stderr
        if "TopicAuthorizationException" in output or "ClusterAuthorizationException" in output:
            return "refused"
        assert result.returncode == 0 and "ERROR" not in output, output
        return "ok"

    def get_object(self):
        try:
            return self.s3.get_object(Bucket=MESH.bucket, Key=OBJECT_KEY)["Body"].read()
        except botocore.exceptions.ClientError as error:
            return error.response["Error"]["Code"]

    def put_object(self, key):
        try:
            self.s3.put_object(Bucket=MESH.bucket, Key=key, Body=b"x")
            return "ok"
        except botocore.exceptions.ClientError as error:
            return error.response["Error"]["Code"]


class Mesh:
    topic = bucket = None


MESH = Mesh()


@pytest.fixture(scope="module")
def operator():
    install_crds()
    install_chart_rbac()
    op = Operator()
    yield op
    code = op.process.terminate()
    assert code == 0, f"the operator did not shut down cleanly ({code}):\n{op.process.logs()}"


@pytest.fixture(scope="module")
def mesh(operator, tmp_path_factory):
    suffix = unique("ap").split("-")[1]
    a, b, c = (Domain(f"{role}-{suffix}", tmp_path_factory) for role in ("prod", "cons", "third"))
    MESH.topic = f"{a.name}.orders.events"
    MESH.bucket = f"{a.name}-orders-lake"
    admin = Kafka(tmp_path_factory.mktemp("admin"), env("KAFKA_ADMIN_USER"), env("KAFKA_ADMIN_PASSWORD"))

    # What the DataProduct reconciler would make: the topic, the bucket, the producer's own rights.
    admin.tool("kafka-topics.sh", "--create", "--if-not-exists", "--topic", MESH.topic, "--partitions", "1",
               "--replication-factor", "1")
    admin.tool("kafka-acls.sh", "--add", "--allow-principal", f"User:{a.name}", "--operation", "Write",
               "--operation", "Describe", "--topic", MESH.topic)
    s3_admin = s3_client(env("S3_ADMIN_ACCESS_KEY"), env("S3_ADMIN_SECRET_KEY"))
    iam_admin = s3_client(env("S3_ADMIN_ACCESS_KEY"), env("S3_ADMIN_SECRET_KEY"), service="iam")
    s3_admin.create_bucket(Bucket=MESH.bucket)

    apply({"apiVersion": API, "kind": "DataProduct", "metadata": {"name": "orders", "namespace": a.name},
           "spec": {"domain": a.name, "owner": {"name": "alice"},
                    "description": {"purpose": "Orders as they happen", "usage": "One record per order"},
                    "outputPorts": [{"name": "events", "kafka": {"partitions": 1, "replicas": 1}},
                                    {"name": "lake", "bucket": {}}]}})
    apply({"apiVersion": API, "kind": "DataProduct", "metadata": {"name": "campaigns", "namespace": b.name},
           "spec": {"domain": b.name, "owner": {"name": "bob"},
                    "description": {"purpose": "Campaign reach", "usage": "Join on order id"},
                    "inputPorts": [
                        {"name": "orders-events", "dataProduct": {"domain": a.name, "name": "orders", "port": "events"}},
                        {"name": "orders-lake", "dataProduct": {"domain": a.name, "name": "orders", "port": "lake"}}]}})

    # The producer writes with its own credentials, once the operator has adopted the bucket
    # and written the producer's access into its policy.
    kubectl("wait", "--for", "condition=Ready", "--timeout", "90s", "dataproduct/orders", "-n", a.name)
    a.kafka.produce(MESH.topic, RECORDS)

    def producer_writes():
        try:
            a.s3.put_object(Bucket=MESH.bucket, Key=OBJECT_KEY, Body=OBJECT_BODY)
        except botocore.exceptions.ClientError:
            return False
        return True
    wait_for(producer_writes, timeout=30, message="the producer writes to its bucket")

    MESH.a, MESH.b, MESH.c, MESH.admin, MESH.iam, MESH.s3 = a, b, c, admin, iam_admin, s3_admin
    yield MESH
    for name in (a.name, b.name, c.name):
        kubectl("delete", "accesspolicies,dataproducts", "--all", "-n", name, "--wait=false", check=False)


def access_policy(name, namespace, consumers, **spec):
    return {"apiVersion": API, "kind": "AccessPolicy", "metadata": {"name": name, "namespace": namespace},
            "spec": {"dataProduct": "orders", "consumers": [{"domain": c} for c in consumers], **spec}}


def wait_policy_ready(mesh, name, generation=1, namespace=None):
    def ready():
        status = get_json("accesspolicy", name, "-n", namespace or mesh.a.name).get("status", {})
        conditions = {c["type"]: c for c in status.get("conditions", [])}
        ready = conditions.get("Ready", {})
        return (ready.get("status") == "True" and ready.get("observedGeneration") == generation) and status
    return wait_for(ready, timeout=60, message=f"AccessPolicy {name} Ready at generation {generation}")


def delete_policy(mesh, name):
    kubectl("delete", "accesspolicy", name, "-n", mesh.a.name, "--timeout", "30s")


def consumer_acls(mesh):
    """Every ACL binding on the product's topic and on the consumers' group prefixes, as
    (principal, resource, operation), from Kafka's own tool."""
    found = set()
    for resource in (["--topic", mesh.topic], ["--group", f"{mesh.b.name}.", "--resource-pattern-type", "prefixed"],
                     ["--group", f"{mesh.c.name}.", "--resource-pattern-type", "prefixed"]):
        out = mesh.admin.tool("kafka-acls.sh", "--list", *resource).stdout
        for principal, operation in re.findall(r"principal=(User:[^,]+), host=\*, operation=(\w+), permissionType=ALLOW", out):
            if principal != f"User:{mesh.a.name}":
                found.add((principal, resource[1], operation))
    return found


def listed(value):
    return value if isinstance(value, list) else [value]


def granted_buckets(mesh, domain):
    """{bucket: actions} that the consumers' part of the buckets' policies gives the domain, read
    back from S3 ({} when none does); its owner's part of its own buckets is not a grant. The
    domain holds no inline IAM policy: access lives on the buckets, and a grant kept anywhere
    else fails the test."""
    names = mesh.iam.list_user_policies(UserName=domain.name)["PolicyNames"]
    assert names == [], f"unexpected inline policies of {domain.name}: {names}"
    buckets = {}
    for bucket in (b["Name"] for b in mesh.s3.list_buckets()["Buckets"]):
        try:
            document = json.loads(mesh.s3.get_bucket_policy(Bucket=bucket)["Policy"])
        except botocore.exceptions.ClientError as error:
            if error.response["Error"]["Code"] in ("NoSuchBucketPolicy", "NoSuchBucket"):
                continue
            raise
        for statement in listed(document["Statement"]):
            named = listed(statement.get("Principal", {}).get("AWS", []))
            if not any(arn.endswith(f":user/{domain.name}") for arn in named):
                continue
            assert statement["Effect"] == "Allow", statement
            if statement["Sid"].startswith("DatameshOwner"):
                # The domain's access to its own buckets, which no grant gives.
                assert bucket.startswith(f"{domain.name}-"), f"{domain.name} owns {bucket}?"
                continue
            assert statement["Sid"].startswith("DatameshGrant"), statement
            for resource in listed(statement["Resource"]):
                name = resource.removeprefix("arn:aws:s3:::").split("/", 1)[0]
                assert name == bucket, f"{bucket}'s policy names {resource}"
                buckets.setdefault(bucket, set()).update(listed(statement["Action"]))
    return buckets


def input_ports(domain):
    status = get_json("dataproduct", "campaigns", "-n", domain.name).get("status", {})
    return {port["name"]: port.get("access") for port in status.get("inputPorts", [])}


def can_i(verb, resource, namespace, *identity):
    return kubectl("auth", "can-i", verb, resource, "-n", namespace, *identity, check=False).stdout.strip()


def test_before_any_policy_other_domains_are_refused(mesh):
    for domain in (mesh.b, mesh.c):
        assert domain.consume() == "TopicAuthorizationException"
        assert domain.get_object() == "AccessDenied"
    assert kubectl("get", "configmap", "orders-events", "-n", mesh.b.name, check=False).returncode != 0


def test_a_read_policy_grants_reading_only_and_deleting_it_revokes_within_seconds(mesh):
    b, c = mesh.b, mesh.c
    apply(access_policy("b-reads", mesh.a.name, [b.name], purpose="campaign analytics"))
    status = wait_policy_ready(mesh, "b-reads")
    assert status["grants"] == [
        {"consumer": f"domain:{b.name}", "port": "events", "kafkaAcls": 3},
        {"consumer": f"domain:{b.name}", "port": "lake", "bucket": "read"},
    ]
    assert b.consume() == RECORDS
    assert b.get_object() == OBJECT_BODY
    assert b.produce("from-b") == "refused", "read must not allow producing"
    assert b.put_object("from-b") == "AccessDenied", "read must not allow writing objects"
    assert c.consume() == "TopicAuthorizationException"
    assert c.get_object() == "AccessDenied"

    # Connection details in the consumer's namespace, named after its input ports; no credentials.
    events = get_json("configmap", "orders-events", "-n", b.name)["data"]
    assert events == {"type": "kafka", "bootstrapServers": env("KAFKA_BOOTSTRAP_SERVERS"), "topic": mesh.topic}
    lake = get_json("configmap", "orders-lake", "-n", b.name)["data"]
    assert lake == {"type": "bucket", "bucket": mesh.bucket, "endpoint": env("S3_ENDPOINT")}
    assert kubectl("get", "configmap", "orders-events", "-n", c.name, check=False).returncode != 0

    # RBAC: B's workload and owners may read the product, not the producer's Secrets; C may not.
    workload = f"system:serviceaccount:{b.name}:datamesh-workload"
    assert can_i("get", "dataproducts.datamesh.dev/orders", mesh.a.name, "--as", workload) == "yes"
    assert can_i("get", "dataproducts.datamesh.dev/orders", mesh.a.name, "--as", "someone",
                 "--as-group", f"{b.name}-team") == "yes"
    assert can_i("get", "secrets", mesh.a.name, "--as", workload) == "no"
    assert can_i("get", "dataproducts.datamesh.dev/orders", mesh.a.name, "--as",
                 f"system:serviceaccount:{c.name}:datamesh-workload") == "no"
    events_seen = wait_for(lambda: kubectl("get", "events", "-n", mesh.a.name, "--field-selector",
                                           "involvedObject.name=b-reads,reason=Granted",
                                           "-o", "jsonpath={.items[*].message}").stdout, message="a Granted Event")
    assert f"domain:{b.name} on events" in events_seen, events_seen

    # The consumer's input ports turn Granted (the DataProduct reconciler reads the policy).
    wait_for(lambda: input_ports(b) == {"orders-events": "Granted", "orders-lake": "Granted"},
             timeout=60, message="B's input ports Granted")

    started = time.monotonic()
    delete_policy(mesh, "b-reads")
    assert b.get_object() == "AccessDenied"
    assert b.consume() == "TopicAuthorizationException"
    elapsed = time.monotonic() - started
    assert elapsed < 10, f"revocation took {elapsed:.1f}s"
    assert consumer_acls(mesh) == set(), "no grant ACL may be left, not even the consumer-group one"
    assert granted_buckets(mesh, b) == {}
    assert kubectl("get", "configmap", "orders-events", "-n", b.name, check=False).returncode != 0
    assert can_i("get", "dataproducts.datamesh.dev/orders", mesh.a.name, "--as", workload) == "no"
    wait_for(lambda: input_ports(b) == {"orders-events": "Pending", "orders-lake": "Pending"},
             timeout=60, message="B's input ports back to Pending")


def test_read_write_allows_producing_and_writing(mesh):
    b = mesh.b
    apply(access_policy("b-writes", mesh.a.name, [b.name], access="readWrite"))
    status = wait_policy_ready(mesh, "b-writes")
    assert {g["port"]: g.get("kafkaAcls", g.get("bucket")) for g in status["grants"]} == {
        "events": 4, "lake": "readWrite"}
    assert b.produce("from-b") == "ok"
    assert b.put_object("from-b") == "ok"
    assert mesh.c.produce("from-c") == "refused"
    assert set(granted_buckets(mesh, b)) == {mesh.bucket}

    # Narrowed to read: the same grants policy loses write on the bucket, keeps read.
    apply(access_policy("b-writes", mesh.a.name, [b.name], access="read"))
    wait_policy_ready(mesh, "b-writes", generation=2)
    assert b.put_object("from-b-read") == "AccessDenied"
    assert b.get_object() == OBJECT_BODY
    assert "s3:PutObject" not in granted_buckets(mesh, b)[mesh.bucket]
    delete_policy(mesh, "b-writes")
    assert b.produce("from-b-after") == "refused"
    assert b.put_object("from-b-after") == "AccessDenied"


def test_overlapping_policies_count_so_deleting_one_keeps_access(mesh):
    b = mesh.b
    apply(access_policy("b-all", mesh.a.name, [b.name]))
    apply(access_policy("b-events", mesh.a.name, [b.name], ports=["events"]))
    wait_policy_ready(mesh, "b-all")
    wait_policy_ready(mesh, "b-events")
    assert b.get_object() == OBJECT_BODY

    delete_policy(mesh, "b-all")
    # The bucket was only in the deleted policy; the topic is still granted by the other.
    assert b.get_object() == "AccessDenied"
    assert b.consume() == RECORDS
    assert get_json("configmap", "orders-events", "-n", b.name)["data"]["topic"] == mesh.topic
    assert kubectl("get", "configmap", "orders-lake", "-n", b.name, check=False).returncode != 0

    delete_policy(mesh, "b-events")
    assert b.consume() == "TopicAuthorizationException"
    assert consumer_acls(mesh) == set()


def test_one_consumer_policy_carries_the_grants_of_two_producers(mesh):
    """Grants from different producers share the consumer's one aggregated IAM policy: each
    comes and goes without touching the other."""
    b, c = mesh.b, mesh.c
    refunds = f"{c.name}-refunds-lake"
    s3_admin = s3_client(env("S3_ADMIN_ACCESS_KEY"), env("S3_ADMIN_SECRET_KEY"))
    s3_admin.create_bucket(Bucket=refunds)
    s3_admin.put_object(Bucket=refunds, Key=OBJECT_KEY, Body=b"refund")
    apply({"apiVersion": API, "kind": "DataProduct", "metadata": {"name": "refunds", "namespace": c.name},
           "spec": {"domain": c.name, "owner": {"name": "carol"},
                    "description": {"purpose": "Refunds", "usage": "One object per refund"},
                    "outputPorts": [{"name": "lake", "bucket": {}}]}})

    def read_refunds():
        try:
            return b.s3.get_object(Bucket=refunds, Key=OBJECT_KEY)["Body"].read()
        except botocore.exceptions.ClientError as error:
            return error.response["Error"]["Code"]

    assert read_refunds() == "AccessDenied"
    apply(access_policy("b-orders", mesh.a.name, [b.name], ports=["lake"]))
    refunds_policy = access_policy("b-refunds", c.name, [b.name])
    refunds_policy["spec"]["dataProduct"] = "refunds"
    apply(refunds_policy)
    wait_policy_ready(mesh, "b-orders")
    wait_policy_ready(mesh, "b-refunds", namespace=c.name)
    assert b.get_object() == OBJECT_BODY
    assert read_refunds() == b"refund"
    assert set(granted_buckets(mesh, b)) == {mesh.bucket, refunds}

    delete_policy(mesh, "b-orders")
    assert b.get_object() == "AccessDenied"
    assert read_refunds() == b"refund", "another producer's grant went with this one"
    assert set(granted_buckets(mesh, b)) == {refunds}

    kubectl("delete", "accesspolicy", "b-refunds", "-n", c.name, "--timeout", "30s")
    assert read_refunds() == "AccessDenied"
    assert granted_buckets(mesh, b) == {}


def test_expires_at_revokes_at_expiry(mesh):
    b = mesh.b
    expires = datetime.now(timezone.utc) + timedelta(seconds=25)
    apply(access_policy("b-briefly", mesh.a.name, [b.name], ports=["lake"],
                        expiresAt=expires.strftime("%Y-%m-%dT%H:%M:%SZ")))
    wait_policy_ready(mesh, "b-briefly")
    assert b.get_object() == OBJECT_BODY
    wait_for(lambda: b.get_object() == "AccessDenied", timeout=60, interval=0.5, message="expiry to revoke")
    late = (datetime.now(timezone.utc) - expires).total_seconds()
    assert late < 10, f"revoked {late:.1f}s after expiresAt"
    stalled = wait_for(lambda: next((c for c in get_json("accesspolicy", "b-briefly", "-n", mesh.a.name)["status"]
                                     ["conditions"] if c["type"] == "Stalled" and c["status"] == "True"), None),
                       message="Stalled after expiry")
    assert stalled["reason"] == "Expired"
    assert get_json("accesspolicy", "b-briefly", "-n", mesh.a.name)["status"].get("grants") is None
    delete_policy(mesh, "b-briefly")


def test_a_policy_naming_missing_things_is_stalled_and_grants_nothing(mesh):
    apply(access_policy("ghosts", mesh.a.name, [mesh.b.name, "no-such-domain"]))
    stalled = wait_for(lambda: next((c for c in get_json("accesspolicy", "ghosts", "-n", mesh.a.name)
                                     .get("status", {}).get("conditions", [])
                                     if c["type"] == "Stalled" and c["status"] == "True"), None),
                       message="Stalled")
    assert stalled["reason"] == "ConsumerNotFound"
    assert "no-such-domain" in stalled["message"]
    assert consumer_acls(mesh) == set()
    assert granted_buckets(mesh, mesh.b) == {}
    assert mesh.b.get_object() == "AccessDenied"
    delete_policy(mesh, "ghosts")


def test_the_operator_killed_mid_grant_ends_exactly_as_declared(mesh, operator):
    b, c = mesh.b, mesh.c
    apply(access_policy("crash", mesh.a.name, [b.name, c.name], access="readWrite"))
    # Kill it as soon as the first grant is visible in Kafka: the rest is half done.
    wait_for(lambda: consumer_acls(mesh), timeout=30, interval=0.1, message="a first grant")

    def narrow_while_down():
        apply(access_policy("crash", mesh.a.name, [b.name], ports=["events"]))

    operator.kill_and_restart(between=narrow_while_down)
    wait_policy_ready(mesh, "crash", generation=2)
    assert consumer_acls(mesh) == {
        (f"User:{b.name}", mesh.topic, "READ"),
        (f"User:{b.name}", mesh.topic, "DESCRIBE"),
        (f"User:{b.name}", f"{b.name}.", "READ"),
    }
    assert granted_buckets(mesh, b) == {}
    assert granted_buckets(mesh, c) == {}
    assert b.consume() == RECORDS
    assert b.get_object() == "AccessDenied"
    assert c.get_object() == "AccessDenied"
    assert c.put_object("from-c") == "AccessDenied"
    assert c.consume() == "TopicAuthorizationException"
    assert kubectl("get", "configmap", "orders-lake", "-n", b.name, check=False).returncode != 0
    delete_policy(mesh, "crash")
    assert consumer_acls(mesh) == set()
