"""End to end, adversarially: the namespace is the trust boundary (issue 9). No domain team can
read, revoke, block or destroy another domain's data or grants through the operator, and no
Domain can take over a namespace or an identity the operator did not make for it.

The mesh, set up once for the module:
- the operator, run out of cluster with the Helm chart's RBAC (as the other suites run it), with
  one extra name in its config's `reservedDomainNames`;
- a VICTIM domain with a live DataProduct `orders` (a Kafka port and a bucket port) holding
  records and an object written with the victim's own credentials, and RETAINED data: a product
  `archive` deleted with `deletionPolicy: Retain`, its topic and bucket still holding data. The
  victim's quotas (maxDataProducts 2, maxPartitions 2) are tight enough that counting anyone
  else's copies would stall its next product;
- a CONSUMER domain holding a real grant: an AccessPolicy in the victim's namespace, read with
  the consumer's own credentials, and the connection ConfigMaps in the consumer's namespace;
- an ATTACKER domain whose team acts only through a client-certificate kubeconfig
  (`e2e/stack kubeconfig user NAME`): NAME is an owner of the attacker Domain (so the operator's
  RoleBinding makes it domain-admin in the attacker's namespace) and is also bound to the
  built-in `admin` ClusterRole in that namespace, and nowhere else;
- a second victim named `<attacker>-pay`, whose buckets lie inside the attacker's bucket-name
  prefix (`<attacker>-pay-orders-lake` is its product `orders`, port `lake`, and would also be the
  attacker's product `pay-orders`, port `lake`).

After each attack, independent clients (Kafka's own tools, boto3, kubectl as cluster admin)
compare the victims' Kafka ACLs, topics (ids, partitions, configs), buckets with their tags and objects, IAM
inline policies, Kubernetes objects and statuses, namespaces and Domain statuses with a snapshot
taken before the attack, and keep comparing for HOLD_SECONDS after the attacker's objects
reported Stalled; the broker and the store must refuse the attacker with its own credentials,
and the attacker's objects must say why in their status.

This suite tests the controller's own checks. ValidatingAdmissionPolicies (shipped by the chart)
would refuse some of these attacks at admission, so the module setup deletes every
ValidatingAdmissionPolicy and ValidatingAdmissionPolicyBinding whose name starts with
`datamesh`: a cluster may run without them, and the operator must hold the line alone. What the
CRD schema itself refuses (immutability, `default`/`kube-*`) is part of the contract and stays.
"""

import hashlib
import json
import re
import time
import urllib.parse
import uuid

import botocore.exceptions
import pytest

from conftest import (STACK, Kafka, apply, condition, domain_s3, env, get_json, kubectl, policy, run, s3_client, s3_key_state,
                      secret_data, unique)
from operator_process import NAMESPACE, OperatorProcess, install_chart_rbac, install_crds, wait_for, workdir

API = "datamesh.dev/v1alpha1"
HOLD_SECONDS = 10
RECORDS = ["order-1", "order-2", "order-3"]
OBJECT_KEY = "2026/orders.json"
OBJECT_BODY = b'{"order": 1}'
ARCHIVE_BODY = b'{"archived": true}'
PAY_BODY = b'{"pay": "orders"}'
ORDERS_PORTS = [{"name": "events", "kafka": {"partitions": 1, "replicas": 1}}, {"name": "lake", "bucket": {}}]


# ---------------------------------------------------------------------------------------------
# helpers


def remove_admission_policies():
    """Delete the chart's ValidatingAdmissionPolicies and their bindings (names `datamesh*`)."""
    for kind in ("validatingadmissionpolicybindings", "validatingadmissionpolicies"):
        for name in kubectl("get", kind, "-o", "name").stdout.split():
            if name.split("/", 1)[1].startswith("datamesh"):
                kubectl("delete", name)
    for kind in ("validatingadmissionpolicybindings", "validatingadmissionpolicies"):
        left = [n for n in kubectl("get", kind, "-o", "name").stdout.split() if n.split("/", 1)[1].startswith("datamesh")]
        assert not left, f"admission policies still installed: {left}"


def domain_manifest(name, **spec):
    return {"apiVersion": API, "kind": "Domain", "metadata": {"name": name}, "spec": spec}


def make_domain(name, **spec):
    apply(domain_manifest(name, **spec))
    kubectl("wait", "--for", "condition=Ready", "--timeout", "90s", f"domain/{name}")


def product(domain, name, namespace, ports, **spec):
    if ports:
        spec["outputPorts"] = ports
    return {"apiVersion": API, "kind": "DataProduct", "metadata": {"name": name, "namespace": namespace},
            "spec": {"domain": domain, "owner": {"name": "mallory" if namespace != domain else "alice"},
                     "description": {"purpose": "Orders as they happen", "usage": "One record per order"}, **spec}}


def access_policy(name, namespace, data_product, consumers, **spec):
    return {"apiVersion": API, "kind": "AccessPolicy", "metadata": {"name": name, "namespace": namespace},
            "spec": {"dataProduct": data_product, "consumers": consumers, **spec}}


def settled(kind, name, namespace=None, timeout=60):
    """The object once its status reports Ready=True or Stalled=True for its current generation."""
    where = ["-n", namespace] if namespace else []

    def check():
        obj = get_json(kind, name, *where)
        generation = obj["metadata"].get("generation")
        observed = obj.get("status", {}).get("observedGeneration")
        for type_ in ("Stalled", "Ready"):
            c = condition(obj, type_)
            if c and c["status"] == "True" and c.get("observedGeneration", observed) == generation:
                return obj
        return None
    return wait_for(check, timeout=timeout, message=f"{kind} {namespace or ''}/{name} Ready or Stalled")


def assert_stalled(obj, reason):
    """Stalled=True and Ready=False, both with this reason and a message that says why."""
    what = f"{obj['kind']} {obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"
    status = obj.get("status", {})
    stalled, ready = condition(obj, "Stalled"), condition(obj, "Ready")
    assert stalled and stalled["status"] == "True", f"{what} is not Stalled: {status}"
    assert stalled["reason"] == reason, f"{what} Stalled for {stalled['reason']}, not {reason}: {stalled}"
    assert stalled.get("message"), f"{what} does not say why: {stalled}"
    assert ready and ready["status"] == "False" and ready["reason"] == reason, f"{what}: Ready is {ready}"


def wait_stalled(kind, name, namespace, reason, timeout=60):
    obj = settled(kind, name, namespace, timeout=timeout)
    assert_stalled(obj, reason)
    return obj


def wait_waiting(kind, name, namespace, reason, timeout=60):
    """The object once it reports, for its current generation, that it waits (Reconciling=True)
    for this reason, with Ready=False for it too and never Stalled: what is missing (a Domain
    owning the namespace, a product) may still arrive, as it does when Git delivers in any order."""
    what = f"{kind} {namespace}/{name}"

    def check():
        obj = get_json(kind, name, "-n", namespace)
        waiting = condition(obj, "Reconciling")
        generation = obj["metadata"].get("generation")
        if waiting and waiting["status"] == "True" and waiting.get("observedGeneration") == generation:
            return obj
        return None
    obj = wait_for(check, timeout=timeout, message=f"{what} Reconciling ({reason})")
    waiting, ready, stalled = condition(obj, "Reconciling"), condition(obj, "Ready"), condition(obj, "Stalled")
    assert waiting["reason"] == reason, f"{what} waits for {waiting['reason']}, not {reason}: {waiting}"
    assert waiting.get("message"), f"{what} does not say why: {waiting}"
    assert ready and ready["status"] == "False" and ready["reason"] == reason, f"{what}: Ready is {ready}"
    assert not stalled or stalled["status"] != "True", f"{what} is Stalled: {stalled}"
    return obj


def s3_try(call, **kwargs):
    """The object's body (get_object), 'ok' (any other call), or the S3 error code."""
    try:
        result = call(**kwargs)
    except botocore.exceptions.ClientError as error:
        return error.response["Error"]["Code"]
    return result["Body"].read() if "Body" in result else "ok"


def gone(kind, name, namespace=None):
    return kubectl("get", kind, name, *(["-n", namespace] if namespace else []), check=False).returncode != 0


class Team:
    """A domain's own credentials, as its Secret holds them, with the clients that use them."""

    def __init__(self, name, tmp_path_factory, kubeconfig=None):
        self.name = name
        self.creds = secret_data(name, f"{name}-credentials", kubeconfig=kubeconfig)
        self.kafka = Kafka(tmp_path_factory.mktemp(name), self.creds["KAFKA_USERNAME"], self.creds["KAFKA_PASSWORD"])
        self.s3 = domain_s3(self.creds)

    def read(self, topic, count=len(RECORDS)):
        return self.kafka.try_consume(topic, count, f"{self.name}.{unique('read')}")

    def produce(self, topic, line):
        """'ok', or 'refused' when Kafka refused the write (an idempotent producer without Write
        is refused at InitProducerId with a cluster authorization error)."""
        result = self.kafka.produce(topic, [line], check=False)
        output = result.stdout + result.stderr
        if "TopicAuthorizationException" in output or "ClusterAuthorizationException" in output:
            return "refused"
        assert result.returncode == 0 and "ERROR" not in output, output
        return "ok"

    def get_object(self, bucket, key):
        return s3_try(self.s3.get_object, Bucket=bucket, Key=key)


class Mesh:
    """What the module set up; filled in by the `mesh` fixture."""


# ---------------------------------------------------------------------------------------------
# the victims' state, read with independent clients


def kafka_acls(admin: Kafka):
    """Every ACL binding, as (resource type, name, pattern, principal, operation, permission)."""
    acls, resource = set(), None
    for line in admin.tool("kafka-acls.sh", "--list").stdout.splitlines():
        line = line.strip()
        if line.startswith("Current ACLs for resource"):
            inner = line.split("ResourcePattern(", 1)[1].rsplit(")", 1)[0]
            fields = dict(part.split("=", 1) for part in inner.split(", "))
            resource = (fields["resourceType"], fields["name"], fields["patternType"])
        elif line.startswith("(principal="):
            fields = dict(part.split("=", 1) for part in line.strip("()").split(", "))
            acls.add((*resource, fields["principal"], fields["operation"], fields["permissionType"]))
    return acls


def topics(admin: Kafka, domains):
    """{topic: its summary from kafka-topics.sh --describe} for every topic of these domains: the
    topic id (a topic deleted and made again has a new one), partitions, replicas and configs."""
    pattern = "(" + "|".join(d.replace(".", "\\.") for d in domains) + ")\\..*"
    out = admin.tool("kafka-topics.sh", "--describe", "--if-exists", "--topic", pattern).stdout
    return {line.split()[1]: " ".join(line.split()) for line in out.splitlines()
            if line.startswith("Topic:") and "TopicId:" in line}


def iam_policies(iam, user):
    """{policy name: document} of a user's inline policies, documents normalised."""
    documents = {}
    for name in iam.list_user_policies(UserName=user)["PolicyNames"]:
        document = iam.get_user_policy(UserName=user, PolicyName=name)["PolicyDocument"]
        if isinstance(document, str):
            document = json.loads(urllib.parse.unquote(document))
        documents[name] = json.dumps(document, sort_keys=True)
    return documents


def bucket_state(s3, bucket):
    try:
        tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    except botocore.exceptions.ClientError as error:
        tags = error.response["Error"]["Code"]
    objects = sorted((o["Key"], o["ETag"], o["Size"])
                     for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))
    return {"tags": tags, "versioning": s3.get_bucket_versioning(Bucket=bucket).get("Status"), "objects": objects,
            "policy": bucket_policy(s3, bucket)}


def bucket_policy(s3, bucket):
    """The bucket's policy, normalised ({} without one): who may do what with the bucket."""
    try:
        document = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except botocore.exceptions.ClientError as error:
        if error.response["Error"]["Code"] == "NoSuchBucketPolicy":
            return {}
        raise
    return json.loads(json.dumps(document, sort_keys=True))


def principals(policy):
    """Every principal ARN a bucket policy names."""
    named = set()
    for statement in policy.get("Statement", []):
        aws = statement.get("Principal", {}).get("AWS", [])
        named.update([aws] if isinstance(aws, str) else aws)
    return named


def namespace_state(namespace):
    """What lives in a victim's namespace, as cluster admin reads it (Secrets only as digests)."""
    items = get_json("dataproducts,accesspolicies,configmaps,secrets,rolebindings,roles,serviceaccounts,resourcequotas",
                     "-n", namespace)["items"]
    state = {}
    for item in items:
        meta = item["metadata"]
        key = f"{item['kind']}/{meta['name']}"
        if key in ("ConfigMap/kube-root-ca.crt", "ServiceAccount/default"):
            continue  # made by Kubernetes itself, some time after the namespace
        if item["kind"] in ("DataProduct", "AccessPolicy"):
            state[key] = {"generation": meta.get("generation"), "finalizers": meta.get("finalizers"),
                          "deleting": meta.get("deletionTimestamp"), "spec": item["spec"], "status": item.get("status")}
        elif item["kind"] == "ConfigMap":
            state[key] = {"data": item.get("data"), "labels": meta.get("labels"), "annotations": meta.get("annotations")}
        elif item["kind"] == "Secret":
            state[key] = hashlib.sha256(json.dumps(item.get("data"), sort_keys=True).encode()).hexdigest()
        elif item["kind"] == "RoleBinding":
            state[key] = {"roleRef": item["roleRef"], "subjects": item.get("subjects")}
        elif item["kind"] == "Role":
            state[key] = item.get("rules")
        elif item["kind"] == "ResourceQuota":
            state[key] = item["spec"]
        else:
            state[key] = meta.get("labels")
    ns = get_json("namespace", namespace)
    state["Namespace"] = {"labels": ns["metadata"].get("labels"), "annotations": ns["metadata"].get("annotations"),
                          "deleting": ns["metadata"].get("deletionTimestamp"), "phase": ns["status"].get("phase")}
    return state


def victim_state(m):
    """Everything of the victims and the consumer that an attack could change."""
    victims = (m.victim.name, m.pay.name)
    acls = kafka_acls(m.admin_kafka)
    mine = tuple(f"{d}." for d in (*victims, m.consumer.name)) + tuple(f"{d}-" for d in victims)
    buckets = sorted(b["Name"] for b in m.s3_admin.list_buckets()["Buckets"] if b["Name"].startswith(
        tuple(f"{d}-" for d in victims)))
    attacker_documents = iam_policies(m.iam_admin, m.attacker.name)
    return {
        "acls": sorted(a for a in acls if a[1].startswith(mine)),
        # What the attacker's principal holds outside its own topics and groups.
        "attacker acls": sorted(a for a in acls if a[3] == f"User:{m.attacker.name}"
                                and not a[1].startswith(f"{m.attacker.name}.")),
        "topics": topics(m.admin_kafka, victims),
        "buckets": {b: bucket_state(m.s3_admin, b) for b in buckets},
        "iam": {d: iam_policies(m.iam_admin, d) for d in (*victims, m.consumer.name)},
        "attacker iam on victim buckets": sorted(b for b in buckets if any(b in d for d in attacker_documents.values())),
        "attacker in victim bucket policies": sorted(
            b for b in buckets
            if any(p.endswith(f":user/{m.attacker.name}") for p in principals(bucket_policy(m.s3_admin, b)))),
        "namespaces": {d: namespace_state(d) for d in (*victims, m.consumer.name)},
        "domains": {d: get_json("domain", d).get("status") for d in (*victims, m.consumer.name)},
    }


def assert_the_snapshot_sees_the_mesh(m, state):
    """The comparisons are only as good as what the snapshot sees: it must see the real grant,
    the owners' rights and the data, or an attack that removed them could not show."""
    victim, consumer = m.victim.name, m.consumer.name
    assert ("TOPIC", m.topic, "LITERAL", f"User:{consumer}", "READ", "ALLOW") in state["acls"], state["acls"]
    assert ("TOPIC", m.topic, "LITERAL", f"User:{victim}", "WRITE", "ALLOW") in state["acls"], state["acls"]
    assert ("GROUP", f"{consumer}.", "PREFIXED", f"User:{consumer}", "READ", "ALLOW") in state["acls"], state["acls"]
    assert {m.topic, m.archive_topic} <= state["topics"].keys(), state["topics"]
    assert state["buckets"][m.bucket]["objects"] and state["buckets"][m.archive_bucket]["objects"]
    assert state["buckets"][m.archive_bucket]["tags"]["datamesh.dev/orphaned"] == "true"
    for bucket in m.pay_buckets.values():
        assert state["buckets"][bucket]["objects"], bucket
    named = principals(state["buckets"][m.bucket]["policy"])
    assert any(p.endswith(f":user/{consumer}") for p in named), state["buckets"][m.bucket]
    assert any(p.endswith(f":user/{victim}") for p in named), state["buckets"][m.bucket]
    assert state["attacker iam on victim buckets"] == []
    assert state["attacker in victim bucket policies"] == []
    assert "ConfigMap/orders-events" in state["namespaces"][consumer]
    assert "AccessPolicy/consumer-reads" in state["namespaces"][victim]
    assert "RoleBinding/datamesh-domain-admins" in state["namespaces"][victim]
    assert state["domains"][victim]["dataProducts"] == 1


def settle(m, timeout=60):
    """Wait until two snapshots in a row are equal: the mesh is quiet before the attacks."""
    last = [victim_state(m)]

    def quiet():
        now = victim_state(m)
        same, last[0] = now == last[0], now
        return same
    wait_for(quiet, timeout=timeout, interval=1, message="the victims' state to settle")


def assert_unchanged(m, before, since, hold=HOLD_SECONDS):
    """The victims' state equals `before` now, and still does `hold` seconds after `since`."""
    while True:
        after = victim_state(m)
        for key in before:
            assert after[key] == before[key], f"the victims' {key} changed"
        if time.monotonic() - since >= hold:
            return
        time.sleep(1)


def assert_access_as_granted(m):
    """The consumer reads the victim's records and object with its own credentials; the attacker
    is refused by the broker and the store, on the live and on the retained data."""
    assert m.consumer.read(m.topic) == RECORDS
    assert m.consumer.get_object(m.bucket, OBJECT_KEY) == OBJECT_BODY
    assert m.attacker.read(m.topic) == "TopicAuthorizationException"
    assert m.attacker.read(m.archive_topic) == "TopicAuthorizationException"
    assert m.attacker.produce(m.topic, "from-the-attacker") == "refused"
    assert m.attacker.get_object(m.bucket, OBJECT_KEY) == "AccessDenied"
    assert m.attacker.get_object(m.archive_bucket, OBJECT_KEY) == "AccessDenied"
    assert s3_try(m.attacker.s3.list_objects_v2, Bucket=m.bucket) == "AccessDenied"


def retained_data_intact(m):
    assert m.admin_kafka.consume(m.archive_topic, len(RECORDS), group=None) == RECORDS
    assert m.s3_admin.get_object(Bucket=m.archive_bucket, Key=OBJECT_KEY)["Body"].read() == ARCHIVE_BODY


# ---------------------------------------------------------------------------------------------
# the mesh


@pytest.fixture(scope="module")
def operator():
    remove_admission_policies()
    install_crds()
    install_chart_rbac()
    reserved = unique("reserved")
    process = OperatorProcess(workdir(), "tenancy", extra_config={"reservedDomainNames": [reserved]})
    process.reserved = reserved
    yield process
    code = process.terminate()
    assert code == 0, f"the operator did not shut down cleanly ({code}):\n{process.logs()[-5000:]}"


@pytest.fixture(scope="module")
def mesh(operator, tmp_path_factory):
    m = Mesh()
    m.operator = operator
    suffix = uuid.uuid4().hex[:8]
    victim, consumer, attacker = f"vic-{suffix}", f"con-{suffix}", f"att-{suffix}"
    pay = f"{attacker}-pay"
    m.attacker_user = f"{attacker}-lead"
    make_domain(victim, quotas={"maxDataProducts": 2, "maxPartitions": 2})
    make_domain(consumer)
    make_domain(attacker, owners=[{"kind": "User", "name": m.attacker_user}])
    make_domain(pay)

    # The attacker team: domain-admin (by the operator's RoleBinding) and `admin` in its own
    # namespace, nothing anywhere else.
    m.att_kc = run([STACK, "kubeconfig", "user", m.attacker_user]).stdout.strip()
    kubectl("create", "rolebinding", "team-admin", "--clusterrole", "admin", "--user", m.attacker_user, "-n", attacker)

    def can(verb, resource, namespace=None):
        args = ["auth", "can-i", verb, resource] + (["-n", namespace] if namespace else [])
        return kubectl(*args, kubeconfig=m.att_kc, check=False).stdout.strip()
    wait_for(lambda: can("create", "dataproducts.datamesh.dev", attacker) == "yes", timeout=30,
             message="the attacker may manage DataProducts in its namespace")
    assert can("create", "accesspolicies.datamesh.dev", attacker) == "yes"
    assert can("create", "rolebindings", attacker) == "yes", "admin in its namespace"
    assert can("get", "secrets", attacker) == "yes"
    for namespace in (victim, consumer, pay, NAMESPACE):
        assert can("get", "dataproducts.datamesh.dev", namespace) == "no"
        assert can("create", "accesspolicies.datamesh.dev", namespace) == "no"
    assert can("create", "domains.datamesh.dev") == "no"
    assert can("patch", "namespaces") == "no"

    m.admin_kafka = Kafka(tmp_path_factory.mktemp("admin"), env("KAFKA_ADMIN_USER"), env("KAFKA_ADMIN_PASSWORD"))
    m.s3_admin = s3_client(env("S3_ADMIN_ACCESS_KEY"), env("S3_ADMIN_SECRET_KEY"))
    m.iam_admin = s3_client(env("S3_ADMIN_ACCESS_KEY"), env("S3_ADMIN_SECRET_KEY"), service="iam")
    m.victim, m.consumer, m.pay = (Team(d, tmp_path_factory) for d in (victim, consumer, pay))
    m.attacker = Team(attacker, tmp_path_factory, kubeconfig=m.att_kc)
    m.topic, m.bucket = f"{victim}.orders.events", f"{victim}-orders-lake"
    m.archive_topic, m.archive_bucket = f"{victim}.archive.events", f"{victim}-archive-lake"
    m.pay_buckets = {"orders": f"{pay}-orders-lake", "old": f"{pay}-old-lake"}

    # The victim's live and soon retained products, with data written with its own credentials.
    apply(product(victim, "orders", victim, ORDERS_PORTS))
    apply(product(victim, "archive", victim, ORDERS_PORTS))
    for name in ("orders", "archive"):
        kubectl("wait", "--for", "condition=Ready", "--timeout", "90s", f"dataproduct/{name}", "-n", victim)
    m.victim.kafka.produce(m.topic, RECORDS)
    m.victim.kafka.produce(m.archive_topic, RECORDS)
    for bucket, body in ((m.bucket, OBJECT_BODY), (m.archive_bucket, ARCHIVE_BODY)):
        wait_for(lambda: s3_try(m.victim.s3.put_object, Bucket=bucket, Key=OBJECT_KEY, Body=body) == "ok",
                 timeout=30, message=f"the victim writes to {bucket}")
    kubectl("delete", "dataproduct", "archive", "-n", victim, "--timeout", "60s")
    retained_data_intact(m)

    # The consumer's real grant.
    apply(product(consumer, "campaigns", consumer, [], inputPorts=[
        {"name": "orders-events", "dataProduct": {"domain": victim, "name": "orders", "port": "events"}},
        {"name": "orders-lake", "dataProduct": {"domain": victim, "name": "orders", "port": "lake"}}]))
    apply(access_policy("consumer-reads", victim, "orders", [{"domain": consumer}], purpose="campaign analytics"))
    kubectl("wait", "--for", "condition=Ready", "--timeout", "60s", "accesspolicy/consumer-reads", "-n", victim)
    wait_for(lambda: {p["name"]: p.get("access") for p in get_json("dataproduct", "campaigns", "-n", consumer)
                      .get("status", {}).get("inputPorts", [])} == {"orders-events": "Granted", "orders-lake": "Granted"},
             timeout=60, message="the consumer's input ports Granted")
    wait_for(lambda: m.consumer.get_object(m.bucket, OBJECT_KEY) == OBJECT_BODY, timeout=30,
             message="the consumer reads the object")
    assert get_json("configmap", "orders-events", "-n", consumer)["data"]["topic"] == m.topic

    # The victim inside the attacker's bucket prefix: a live and a retained bucket with data.
    apply(product(pay, "orders", pay, [{"name": "lake", "bucket": {}}]))
    apply(product(pay, "old", pay, [{"name": "lake", "bucket": {}}]))
    for name, bucket in m.pay_buckets.items():
        kubectl("wait", "--for", "condition=Ready", "--timeout", "90s", f"dataproduct/{name}", "-n", pay)
        wait_for(lambda: s3_try(m.pay.s3.put_object, Bucket=bucket, Key=OBJECT_KEY, Body=PAY_BODY) == "ok",
                 timeout=30, message=f"{pay} writes to {bucket}")
    kubectl("delete", "dataproduct", "old", "-n", pay, "--timeout", "60s")

    # A Domain's product count does not follow a product's deletion until its next reconcile
    # (resyncSeconds, 300 s by default), so each Domain is poked to count afresh before the
    # snapshots: the attacks must not be what corrects it.
    for domain in (victim, consumer, pay):
        kubectl("annotate", "domain", domain, f"test/poke={time.time()}", "--overwrite")
        wait_for(lambda: get_json("domain", domain)["status"].get("dataProducts") == 1, timeout=30,
                 message=f"Domain {domain} counting its one product")
    settle(m)
    assert_the_snapshot_sees_the_mesh(m, victim_state(m))
    assert_access_as_granted(m)
    yield m
    for namespace in (victim, consumer, attacker, pay):
        kubectl("delete", "accesspolicies,dataproducts", "--all", "-n", namespace, "--wait=false", check=False)


@pytest.fixture(autouse=True)
def operator_log_excerpt(operator):
    """The operator's warnings and errors while the test ran; pytest shows them when it fails."""
    start = operator.log_path.stat().st_size
    yield
    text = re.sub(r"\x1b\[[0-9;]*m", "", operator.log_path.read_bytes()[start:].decode(errors="replace"))
    lines = [line[:400] for line in text.splitlines() if " WARN " in line or " ERROR " in line]
    print(f"operator log {operator.log_path}: {len(lines)} warnings/errors during the test", *lines[-40:], sep="\n")


@pytest.fixture
def attack(mesh):
    """The attacker acts with its kubeconfig only; what it made is deleted after the test."""
    yield lambda manifest: apply(manifest, kubeconfig=mesh.att_kc)
    result = kubectl("delete", "accesspolicies,dataproducts", "--all", "-n", mesh.attacker.name, "--timeout", "60s",
                     kubeconfig=mesh.att_kc, check=False)
    assert result.returncode == 0, f"the attacker's objects were not deleted:\n{result.stderr}"


def attacker_delete(m, *objects):
    kubectl("delete", *objects, "-n", m.attacker.name, "--timeout", "60s", kubeconfig=m.att_kc)


# ---------------------------------------------------------------------------------------------
# the attacks


def test_read_a_copy_of_the_victims_product_and_a_policy_beside_it_grant_nothing(mesh, attack):
    m = mesh
    before = victim_state(m)
    attack(product(m.victim.name, "orders", m.attacker.name, ORDERS_PORTS))
    attack(access_policy("steal", m.attacker.name, "orders", [{"domain": m.attacker.name}], access="readWrite"))
    wait_stalled("dataproduct", "orders", m.attacker.name, "WrongNamespace")
    wait_stalled("accesspolicy", "steal", m.attacker.name, "WrongNamespace")
    since = time.monotonic()
    assert get_json("accesspolicy", "steal", "-n", m.attacker.name)["status"].get("grants") in (None, [])
    assert_access_as_granted(m)
    assert_unchanged(m, before, since)


def test_revoke_a_policy_beside_a_copy_removes_nothing_of_the_real_consumer(mesh, attack):
    m = mesh
    before = victim_state(m)
    attack(product(m.victim.name, "orders", m.attacker.name, ORDERS_PORTS))
    # The same grant as the victim's, and a wider one, so that deleting them would revoke both.
    attack(access_policy("same", m.attacker.name, "orders", [{"domain": m.consumer.name}]))
    attack(access_policy("wider", m.attacker.name, "orders", [{"domain": m.consumer.name}], access="readWrite"))
    wait_stalled("dataproduct", "orders", m.attacker.name, "WrongNamespace")
    for name in ("same", "wider"):
        wait_stalled("accesspolicy", name, m.attacker.name, "WrongNamespace")
    since = time.monotonic()
    assert m.consumer.produce(m.topic, "from-the-consumer") == "refused", "the wider grant must not apply"
    assert m.consumer.read(m.topic) == RECORDS
    assert_unchanged(m, before, since)

    # Right after the attacker deletes its objects: the consumer still reads, nothing changed.
    attacker_delete(m, "accesspolicy/same", "accesspolicy/wider", "dataproduct/orders")
    since = time.monotonic()
    assert m.consumer.get_object(m.bucket, OBJECT_KEY) == OBJECT_BODY
    assert m.consumer.read(m.topic) == RECORDS
    assert condition(get_json("accesspolicy", "consumer-reads", "-n", m.victim.name), "Ready")["status"] == "True"
    assert_unchanged(m, before, since)
    assert_access_as_granted(m)


def test_destroy_retained_and_live_data_through_a_copy_with_delete_policy(mesh, attack):
    m = mesh
    before = victim_state(m)
    # The retained product's names, and the live topic named explicitly, both deletionPolicy Delete.
    attack(product(m.victim.name, "archive", m.attacker.name, ORDERS_PORTS, deletionPolicy="Delete"))
    attack(product(m.victim.name, "hijack", m.attacker.name,
                   [{"name": "events", "kafka": {"topic": m.topic, "partitions": 2}}], deletionPolicy="Delete"))
    wait_stalled("dataproduct", "archive", m.attacker.name, "WrongNamespace")
    wait_stalled("dataproduct", "hijack", m.attacker.name, "WrongNamespace")
    since = time.monotonic()
    assert m.attacker.read(m.archive_topic) == "TopicAuthorizationException"
    assert m.attacker.get_object(m.archive_bucket, OBJECT_KEY) == "AccessDenied"
    assert_unchanged(m, before, since)

    attacker_delete(m, "dataproduct/archive", "dataproduct/hijack")
    since = time.monotonic()
    retained_data_intact(m)
    assert_unchanged(m, before, since)
    assert_access_as_granted(m)


def test_destroy_a_bucket_inside_the_attackers_name_prefix(mesh, attack):
    """`<attacker>-pay-orders-lake` is the bucket of domain `<attacker>-pay`, product `orders`:
    the attacker's own product `pay-orders` (port `lake`) names the same bucket."""
    m = mesh
    before = victim_state(m)
    attack(product(m.attacker.name, "pay-orders", m.attacker.name, [{"name": "lake", "bucket": {}}],
                   deletionPolicy="Delete"))
    attack(product(m.attacker.name, "pay-old", m.attacker.name, [{"name": "lake", "bucket": {}}],
                   deletionPolicy="Delete"))
    for name in ("pay-orders", "pay-old"):
        wait_stalled("dataproduct", name, m.attacker.name, "OwnedByAnotherDomain")
    since = time.monotonic()
    for bucket in m.pay_buckets.values():
        assert m.attacker.get_object(bucket, OBJECT_KEY) == "AccessDenied"
        assert s3_try(m.attacker.s3.put_object, Bucket=bucket, Key="x", Body=b"x") == "AccessDenied"
        tags = {t["Key"]: t["Value"] for t in m.s3_admin.get_bucket_tagging(Bucket=bucket)["TagSet"]}
        assert tags["datamesh.dev/domain"] == m.pay.name, tags
    assert_unchanged(m, before, since)

    attacker_delete(m, "dataproduct/pay-orders", "dataproduct/pay-old")
    since = time.monotonic()
    for bucket in m.pay_buckets.values():
        assert m.s3_admin.get_object(Bucket=bucket, Key=OBJECT_KEY)["Body"].read() == PAY_BODY
    assert m.pay.get_object(m.pay_buckets["orders"], OBJECT_KEY) == PAY_BODY
    assert_unchanged(m, before, since)


def test_grant_a_bucket_inside_the_attackers_name_prefix_to_another_domain(mesh, attack):
    """The attacker's product `pay-orders` names the bucket of domain `<attacker>-pay`, product
    `orders`; a policy on it granting the consumer domain must open nothing of that bucket (nor
    change its policy): the bucket is not the product's."""
    m = mesh
    before = victim_state(m)
    attack(product(m.attacker.name, "pay-orders", m.attacker.name, [{"name": "lake", "bucket": {}}]))
    attack(access_policy("share", m.attacker.name, "pay-orders", [{"domain": m.consumer.name}]))
    wait_stalled("dataproduct", "pay-orders", m.attacker.name, "OwnedByAnotherDomain")
    settled("accesspolicy", "share", m.attacker.name)
    since = time.monotonic()
    bucket = m.pay_buckets["orders"]
    assert m.consumer.get_object(bucket, OBJECT_KEY) == "AccessDenied"
    assert s3_try(m.consumer.s3.list_objects_v2, Bucket=bucket) == "AccessDenied"
    grants = get_json("accesspolicy", "share", "-n", m.attacker.name).get("status", {}).get("grants", [])
    assert not any(g.get("bucket") for g in grants), grants
    assert_unchanged(m, before, since)


def test_block_copies_neither_claim_the_victims_names_nor_count_against_its_quota(mesh, attack):
    m = mesh
    victim = m.victim.name
    before = victim_state(m)
    attack(product(victim, "fresh", m.attacker.name, ORDERS_PORTS))
    attack(product(victim, "hog", m.attacker.name, [{"name": "events", "kafka": {"partitions": 2}}]))
    for name in ("fresh", "hog"):
        wait_stalled("dataproduct", name, m.attacker.name, "WrongNamespace")
    assert_unchanged(m, before, time.monotonic())
    assert get_json("domain", victim)["status"].get("dataProducts") == 1

    # A new victim product of the copy's name, created after it: 2 products and 2 partitions,
    # exactly the quota, which the copies would exceed if they counted.
    apply(product(victim, "fresh", victim, ORDERS_PORTS))
    fresh = settled("dataproduct", "fresh", victim, timeout=90)
    assert condition(fresh, "Ready")["status"] == "True", f"the victim's new product: {fresh['status']}"
    ports = {p["name"]: p for p in fresh["status"]["outputPorts"]}
    assert ports["events"]["topic"] == f"{victim}.fresh.events"
    assert ports["lake"]["bucket"] == f"{victim}-fresh-lake"
    assert f"{victim}.fresh.events" in topics(m.admin_kafka, [victim])
    tags = {t["Key"]: t["Value"] for t in m.s3_admin.get_bucket_tagging(Bucket=f"{victim}-fresh-lake")["TagSet"]}
    assert tags["datamesh.dev/domain"] == victim
    wait_for(lambda: get_json("domain", victim)["status"].get("dataProducts") == 2, timeout=30,
             message="the victim's Domain counts its 2 products, not the copies")
    assert m.victim.produce(f"{victim}.fresh.events", "fresh-1") == "ok"
    assert m.attacker.read(f"{victim}.fresh.events", 1) == "TopicAuthorizationException"
    assert m.attacker.get_object(f"{victim}-fresh-lake", OBJECT_KEY) == "AccessDenied"
    # Still Ready while the copies stay.
    time.sleep(2)
    assert condition(get_json("dataproduct", "fresh", "-n", victim), "Ready")["status"] == "True"


def test_a_policy_naming_the_victims_product_without_a_copy_grants_nothing(mesh, attack):
    m = mesh
    before = victim_state(m)
    attack(access_policy("by-name", m.attacker.name, "orders", [{"domain": m.attacker.name}]))
    wait_waiting("accesspolicy", "by-name", m.attacker.name, "DataProductNotFound")
    since = time.monotonic()
    assert_access_as_granted(m)
    assert_unchanged(m, before, since)


def test_objects_in_a_namespace_no_domain_owns_have_no_effect(mesh):
    """A namespace no Domain made, even one labelled with the victim's domain, confers nothing:
    what is declared there (here by whoever administers it) waits, NamespaceNotOwned, and does nothing."""
    m = mesh
    plain, forged = unique("loose"), unique("forged")
    kubectl("create", "namespace", plain)
    kubectl("create", "namespace", forged)
    kubectl("label", "namespace", forged, f"datamesh.dev/domain={m.victim.name}")
    before = victim_state(m)
    try:
        for namespace in (plain, forged):
            apply(product(m.victim.name, "orders", namespace, ORDERS_PORTS, deletionPolicy="Delete"))
            apply(access_policy("steal", namespace, "orders", [{"domain": m.attacker.name}]))
            apply(access_policy("revoke", namespace, "orders", [{"domain": m.consumer.name}]))
        for namespace in (plain, forged):
            wait_waiting("dataproduct", "orders", namespace, "NamespaceNotOwned")
            wait_waiting("accesspolicy", "steal", namespace, "NamespaceNotOwned")
            wait_waiting("accesspolicy", "revoke", namespace, "NamespaceNotOwned")
        since = time.monotonic()
        assert_access_as_granted(m)
        assert_unchanged(m, before, since)
        for namespace in (plain, forged):
            kubectl("delete", "accesspolicies,dataproducts", "--all", "-n", namespace, "--timeout", "60s")
        since = time.monotonic()
        assert_access_as_granted(m)
        assert_unchanged(m, before, since)
    finally:
        kubectl("delete", "namespace", plain, forged, "--wait=false", check=False)


def test_a_service_account_consumer_does_not_overwrite_a_configmap_the_victim_made(mesh, attack):
    """The consumer reads the attacker's product through an input port `settings`, and keeps a
    ConfigMap `settings` of its own; the attacker's grant to a ServiceAccount in the consumer's
    namespace must not overwrite that ConfigMap."""
    m = mesh
    attacker, consumer = m.attacker.name, m.consumer.name
    attack(product(attacker, "feed", attacker, [{"name": "events", "kafka": {"partitions": 1}}]))
    kubectl("wait", "--for", "condition=Ready", "--timeout", "90s", "dataproduct/feed", "-n", attacker)
    kubectl("create", "configmap", "settings", "-n", consumer, "--from-literal=mine=yes")
    apply(product(consumer, "joined", consumer, [], inputPorts=[
        {"name": "settings", "dataProduct": {"domain": attacker, "name": "feed", "port": "events"}}]))
    try:
        before = get_json("configmap", "settings", "-n", consumer)
        attack(access_policy("push", attacker, "feed",
                             [{"serviceAccount": {"namespace": consumer, "name": "datamesh-workload"}}]))
        settled("accesspolicy", "push", attacker)
        since = time.monotonic()
        while True:
            after = get_json("configmap", "settings", "-n", consumer)
            for field in ("labels", "annotations", "ownerReferences"):
                assert after["metadata"].get(field) == before["metadata"].get(field), f"metadata.{field} changed"
            assert after.get("data") == {"mine": "yes"}, f"the consumer's ConfigMap was overwritten: {after}"
            if time.monotonic() - since >= HOLD_SECONDS:
                break
            time.sleep(1)
    finally:
        kubectl("delete", "dataproduct", "joined", "-n", consumer, "--timeout", "60s", check=False)
        kubectl("delete", "configmap", "settings", "-n", consumer, check=False)


def test_the_attacker_cannot_forge_status_and_dropping_finalizers_changes_nothing(mesh, attack):
    m = mesh
    attacker = m.attacker.name
    before = victim_state(m)
    attack(product(m.victim.name, "orders", attacker, ORDERS_PORTS, deletionPolicy="Delete"))
    attack(access_policy("steal", attacker, "orders", [{"domain": attacker}, {"domain": m.consumer.name}]))
    wait_stalled("dataproduct", "orders", attacker, "WrongNamespace")
    wait_stalled("accesspolicy", "steal", attacker, "WrongNamespace")

    forged = json.dumps({"status": {"conditions": [
        {"type": "Ready", "status": "True", "reason": "Granted", "message": "forged",
         "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}]}})
    for kind, name in (("accesspolicy", "steal"), ("dataproduct", "orders")):
        result = kubectl("patch", kind, name, "-n", attacker, "--subresource", "status", "--type", "merge",
                         "-p", forged, kubeconfig=m.att_kc, check=False)
        assert result.returncode != 0 and "forbidden" in result.stderr.lower(), \
            f"the attacker wrote the status of its {kind}: {result.stdout}{result.stderr}"

    # Dropping the operator's finalizers, then deleting: the victim's data and grants stay.
    for kind, name in (("dataproduct", "orders"), ("accesspolicy", "steal")):
        kubectl("patch", kind, name, "-n", attacker, "--type", "merge", "-p", '{"metadata":{"finalizers":null}}',
                kubeconfig=m.att_kc)
    attacker_delete(m, "dataproduct/orders", "accesspolicy/steal")
    since = time.monotonic()
    assert_access_as_granted(m)
    retained_data_intact(m)
    assert_unchanged(m, before, since)


def test_immutability_is_refused_at_admission(mesh):
    bare, placed = unique("imm"), unique("imm")
    placed_ns = f"{placed}-ns"
    make_domain(bare)
    make_domain(placed, namespace=placed_ns)
    try:
        patches = [
            ("domain", bare, None, "merge", {"spec": {"namespace": f"{bare}-elsewhere"}}, "set"),
            ("domain", placed, None, "json", [{"op": "remove", "path": "/spec/namespace"}], "unset"),
            ("domain", placed, None, "merge", {"spec": {"namespace": f"{placed}-moved"}}, "changed"),
        ]
        apply(product(placed, "orders", placed_ns, [{"name": "events", "kafka": {"partitions": 1}}],
                      deletionPolicy="Delete"))
        patches.append(("dataproduct", "orders", placed_ns, "merge", {"spec": {"domain": mesh.victim.name}}, "changed"))
        for kind, name, namespace, type_, patch, what in patches:
            where = ["-n", namespace] if namespace else []
            spec = get_json(kind, name, *where)["spec"]
            result = kubectl("patch", kind, name, *where, "--type", type_, "-p", json.dumps(patch), check=False)
            assert result.returncode != 0, f"{kind} {name}: {what} was accepted: {result.stdout}"
            field = "spec.namespace" if kind == "domain" else "spec.domain"
            assert field in result.stderr, f"the refusal does not name {field}: {result.stderr}"
            assert get_json(kind, name, *where)["spec"] == spec
        assert get_json("domain", bare)["status"]["namespace"] == bare
        assert get_json("domain", placed)["status"]["namespace"] == placed_ns
    finally:
        kubectl("delete", "dataproduct", "orders", "-n", placed_ns, "--timeout", "60s", check=False)
        kubectl("delete", "domain", bare, placed, "--timeout", "60s", check=False)


def test_namespace_takeover(mesh):
    """Only cluster admins make Domains; even they cannot take over a namespace by naming it."""
    m = mesh
    refused = kubectl("create", "-f", "-", input=json.dumps(domain_manifest(unique("mine"))), kubeconfig=m.att_kc,
                      check=False)
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower(), refused.stdout + refused.stderr
    refused = kubectl("patch", "domain", m.attacker.name, "--type", "merge",
                      "-p", json.dumps({"spec": {"owners": [{"kind": "Group", "name": "everyone"}]}}),
                      kubeconfig=m.att_kc, check=False)
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower(), refused.stdout + refused.stderr

    # An existing namespace the operator did not make, with objects in it: not taken.
    existing, grabber = unique("existing"), unique("grab")
    adoptable, adopter = unique("adoptable"), unique("adopter")
    thief = unique("thief")
    try:
        kubectl("create", "namespace", existing)
        kubectl("label", "namespace", existing, "team=theirs")
        kubectl("annotate", "namespace", existing, "note=hands-off")
        kubectl("create", "configmap", "theirs", "-n", existing, "--from-literal=keep=me")
        before = namespace_state(existing)
        apply(domain_manifest(grabber, namespace=existing, deletionPolicy="Delete"))
        wait_stalled("domain", grabber, None, "NamespaceNotAdoptable")
        since = time.monotonic()
        while True:
            assert namespace_state(existing) == before, "the existing namespace was touched"
            if time.monotonic() - since >= HOLD_SECONDS:
                break
            time.sleep(1)
        kubectl("delete", "domain", grabber, "--timeout", "60s")
        time.sleep(3)
        assert namespace_state(existing) == before, "deleting the Domain touched the namespace it did not own"

        # Marked by a cluster admin for another domain: not adoptable by this one either.
        kubectl("annotate", "namespace", existing, f"datamesh.dev/adopt-by-domain={adopter}")
        before = namespace_state(existing)
        apply(domain_manifest(grabber, namespace=existing, deletionPolicy="Delete"))
        wait_stalled("domain", grabber, None, "NamespaceNotAdoptable")
        kubectl("delete", "domain", grabber, "--timeout", "60s")
        assert namespace_state(existing) == before

        # Annotated by a cluster admin for the domain: adopted, and kept when the Domain goes.
        kubectl("create", "namespace", adoptable)
        kubectl("annotate", "namespace", adoptable, f"datamesh.dev/adopt-by-domain={adopter}")
        kubectl("create", "configmap", "theirs", "-n", adoptable, "--from-literal=keep=me")
        make_domain(adopter, namespace=adoptable, deletionPolicy="Delete")
        assert get_json("domain", adopter)["status"]["namespace"] == adoptable
        ns = get_json("namespace", adoptable)["metadata"]
        assert ns["labels"]["datamesh.dev/domain"] == adopter
        assert "datamesh.dev/created-for-domain" not in ns.get("annotations", {}), ns
        assert get_json("namespace", m.victim.name)["metadata"]["annotations"].get(
            "datamesh.dev/created-for-domain") == m.victim.name, "a namespace the operator made says so"
        kubectl("delete", "domain", adopter, "--timeout", "60s")
        time.sleep(3)
        ns = get_json("namespace", adoptable)
        assert ns["status"]["phase"] == "Active" and not ns["metadata"].get("deletionTimestamp"), ns
        assert get_json("configmap", "theirs", "-n", adoptable)["data"] == {"keep": "me"}

        # Another Domain's namespace: taken, untouched, and not deleted with the thief.
        before = victim_state(m)
        apply(domain_manifest(thief, namespace=m.victim.name, deletionPolicy="Delete"))
        wait_stalled("domain", thief, None, "NamespaceTaken")
        assert_unchanged(m, before, time.monotonic())
        kubectl("delete", "domain", thief, "--timeout", "60s")
        since = time.monotonic()
        assert_access_as_granted(m)
        assert_unchanged(m, before, since)
    finally:
        kubectl("delete", "domain", grabber, adopter, thief, "--ignore-not-found", "--wait=false", check=False)
        kubectl("delete", "namespace", existing, adoptable, "--ignore-not-found", "--wait=false", check=False)


def test_identity_collisions_leave_the_platforms_and_others_identities_alone(mesh, operator, tmp_path):
    """Last: against an operator without these checks it would reset the platform's admin
    credentials, which every other test needs."""
    m = mesh
    admin_kafka_user, s3_admin_identity = env("KAFKA_ADMIN_USER"), env("S3_ADMIN_ACCESS_KEY")
    assert (admin_kafka_user, s3_admin_identity) == ("admin", "datamesh-admin")
    system_before = namespace_state(NAMESPACE)
    reserved = [admin_kafka_user, s3_admin_identity, NAMESPACE, operator.reserved]
    reserved_namespace = unique("sysns")
    at_admission = [("kube-tenancy", {}), (unique("def"), {"namespace": "default"})]
    scram_user, iam_user = unique("scram"), unique("iamuser")
    password = uuid.uuid4().hex
    try:
        for name in reserved:
            apply(domain_manifest(name, deletionPolicy="Delete"))
        apply(domain_manifest(reserved_namespace, namespace=NAMESPACE, deletionPolicy="Delete"))
        for name in (*reserved, reserved_namespace):
            wait_stalled("domain", name, None, "ReservedName")
        # `default` and `kube-*`: refused at admission by the CRD, or Stalled ReservedName.
        for name, spec in at_admission:
            created = kubectl("apply", "-f", "-", input=json.dumps(domain_manifest(name, **spec)), check=False)
            if created.returncode != 0:
                assert "'default'" in created.stderr and "kube-" in created.stderr, created.stderr
            else:
                wait_stalled("domain", name, None, "ReservedName")
                kubectl("delete", "domain", name, "--timeout", "60s")
        since = time.monotonic()
        assert Kafka(tmp_path, admin_kafka_user, env("KAFKA_ADMIN_PASSWORD")).authenticates()
        assert m.s3_admin.list_buckets()["Buckets"]
        assert gone("namespace", admin_kafka_user) and gone("namespace", s3_admin_identity)
        while time.monotonic() - since < HOLD_SECONDS:
            assert namespace_state(NAMESPACE) == system_before, "the operator's namespace was touched"
            time.sleep(1)
        kubectl("delete", "domain", *reserved, reserved_namespace, "--timeout", "60s")
        assert Kafka(tmp_path, admin_kafka_user, env("KAFKA_ADMIN_PASSWORD")).authenticates()
        assert m.s3_admin.list_buckets()["Buckets"]
        assert namespace_state(NAMESPACE) == system_before

        # Identities an admin made before the Domain of that name: never changed, never deleted.
        m.admin_kafka.tool("kafka-configs.sh", "--alter", "--entity-type", "users", "--entity-name", scram_user,
                           "--add-config", f"SCRAM-SHA-512=[iterations=8192,password={password}]")
        scram = Kafka(tmp_path, scram_user, password)
        wait_for(scram.authenticates, timeout=30, message="the admin's SCRAM user authenticates")
        m.iam_admin.create_user(UserName=iam_user)
        key = m.iam_admin.create_access_key(UserName=iam_user)["AccessKey"]
        m.iam_admin.put_user_policy(UserName=iam_user, PolicyName="theirs", PolicyDocument=policy([
            {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [f"arn:aws:s3:::{iam_user}-theirs"]}]))
        wait_for(lambda: s3_key_state(key["AccessKeyId"], key["SecretAccessKey"]) == "valid", timeout=30,
                 message="the admin's IAM key is valid")
        keys_before = sorted(k["AccessKeyId"] for k in m.iam_admin.list_access_keys(UserName=iam_user)["AccessKeyMetadata"])
        policies_before = iam_policies(m.iam_admin, iam_user)

        def identities_intact():
            assert scram.authenticates(), "the pre-existing SCRAM user's password no longer works"
            assert s3_key_state(key["AccessKeyId"], key["SecretAccessKey"]) == "valid"
            keys = sorted(k["AccessKeyId"] for k in m.iam_admin.list_access_keys(UserName=iam_user)["AccessKeyMetadata"])
            assert keys == keys_before
            assert iam_policies(m.iam_admin, iam_user) == policies_before

        for name in (scram_user, iam_user):
            apply(domain_manifest(name, deletionPolicy="Delete"))
        for name in (scram_user, iam_user):
            wait_stalled("domain", name, None, "IdentityNotOwned")
        since = time.monotonic()
        identities_intact()
        time.sleep(max(0.0, HOLD_SECONDS - (time.monotonic() - since)))
        identities_intact()
        kubectl("delete", "domain", scram_user, iam_user, "--timeout", "60s")
        identities_intact()
    finally:
        kubectl("delete", "domain", *reserved, reserved_namespace, *(n for n, _ in at_admission), scram_user, iam_user,
                "--ignore-not-found",
                "--wait=false", check=False)
        m.admin_kafka.tool("kafka-configs.sh", "--alter", "--entity-type", "users", "--entity-name", scram_user,
                           "--delete-config", "SCRAM-SHA-512", check=False)
        try:
            for k in m.iam_admin.list_access_keys(UserName=iam_user)["AccessKeyMetadata"]:
                m.iam_admin.delete_access_key(UserName=iam_user, AccessKeyId=k["AccessKeyId"])
            for name in m.iam_admin.list_user_policies(UserName=iam_user)["PolicyNames"]:
                m.iam_admin.delete_user_policy(UserName=iam_user, PolicyName=name)
            m.iam_admin.delete_user(UserName=iam_user)
        except botocore.exceptions.ClientError:
            pass
