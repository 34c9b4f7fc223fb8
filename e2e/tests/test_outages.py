"""End to end: the operator tells the truth while Kafka or the object store is down, stays up,
and converges by itself once it is back.

Each test stops one component of the shared platform (`e2e/stack stop`) for a minute while
objects are created, changed and granted, checks that their status says which system is
unavailable (and that nothing stays Ready at an old generation), starts it again
(`e2e/stack start`), and checks with Kafka's tools and boto3 that exactly what was declared
exists. The component is started again whatever happens (try/finally): the other modules share
the platform.
"""

import base64
import time

import pytest

from conftest import STACK, Kafka, apply, condition, get_json, kubectl, run, unique
from operator_process import OperatorProcess, install_chart_rbac, install_crds, wait_for, workdir

API = "datamesh.dev/v1alpha1"
OUTAGE_SECONDS = 60
SAYS_SO_WITHIN = 30
BACK_WITHIN = 60


@pytest.fixture(scope="module")
def operator():
    install_crds()
    install_chart_rbac()
    # A long resync: recovery must come from the retries, not from the periodic resync.
    process = OperatorProcess(workdir(), "outages", extra_env={"DATAMESH_RESYNC_SECONDS": "3600"})
    yield process
    assert process.terminate() == 0, process.logs()


def ready_condition(*args):
    return condition(get_json(*args), "Ready")


def domain(name):
    apply({"apiVersion": API, "kind": "Domain", "metadata": {"name": name}, "spec": {}})


def product(domain_name, name, ports, **spec):
    apply({"apiVersion": API, "kind": "DataProduct", "metadata": {"name": name, "namespace": domain_name},
           "spec": {"domain": domain_name, "owner": {"name": "alice"},
                    "description": {"purpose": "p", "usage": "u"}, "outputPorts": ports, **spec}})


def wait_ready(*args, timeout=90):
    kubectl("wait", "--for", "condition=Ready", "--timeout", f"{timeout}s", *args)


def says_unavailable(reason, *args):
    """The object's Ready condition is False with `reason`, for its current generation."""
    obj = get_json(*args)
    ready = ready_condition(*args)
    return (ready is not None and ready["status"] == "False" and ready["reason"] == reason
            and ready.get("observedGeneration") == obj["metadata"]["generation"])


def ready_at_current_generation(*args):
    obj = get_json(*args)
    ready = ready_condition(*args)
    return (ready is not None and ready["status"] == "True"
            and ready.get("observedGeneration") == obj["metadata"]["generation"])


def stack(*args):
    run([STACK, *args], timeout=180)


def test_kafka_down_for_a_minute(operator, kafka_admin):
    producer, consumer, late = unique("out"), unique("out"), unique("out")
    for name in (producer, consumer):
        domain(name)
    for name in (producer, consumer):
        wait_ready(f"domain/{name}")
    product(producer, "grown", [{"name": "events", "kafka": {"partitions": 1}}])
    wait_ready("dataproduct/grown", "-n", producer)

    stack("stop", "kafka")
    stopped_at = time.monotonic()
    try:
        product(producer, "fresh", [{"name": "events", "kafka": {"partitions": 2}}])
        product(producer, "grown", [{"name": "events", "kafka": {"partitions": 3}}])
        apply({"apiVersion": API, "kind": "AccessPolicy", "metadata": {"name": "reads", "namespace": producer},
               "spec": {"dataProduct": "grown", "consumers": [{"domain": consumer}]}})
        domain(late)
        for args in (("dataproduct", "fresh", "-n", producer), ("dataproduct", "grown", "-n", producer),
                     ("accesspolicy", "reads", "-n", producer), ("domain", late)):
            wait_for(lambda: says_unavailable("KafkaUnavailable", *args), timeout=SAYS_SO_WITHIN, interval=1,
                     message=f"{args} says Kafka is unavailable")
        events = kubectl("get", "events", "-n", producer, "--field-selector", "reason=KafkaUnavailable",
                         "-o", "name").stdout
        assert events.strip(), "a Warning Event says so too"
        time.sleep(max(0, OUTAGE_SECONDS - (time.monotonic() - stopped_at)))
        assert operator.process.poll() is None, "the operator stays up"
    finally:
        stack("start", "kafka")
    back_at = time.monotonic()

    for args in (("dataproduct", "fresh", "-n", producer), ("dataproduct", "grown", "-n", producer),
                 ("accesspolicy", "reads", "-n", producer), ("domain", late)):
        wait_for(lambda: ready_at_current_generation(*args), timeout=BACK_WITHIN, interval=1,
                 message=f"{args} Ready after Kafka's return")
    print(f"all Ready {time.monotonic() - back_at:.1f}s after Kafka was back")

    topics = sorted(t for t in kafka_admin.tool("kafka-topics.sh", "--list").stdout.split()
                    if t.startswith(f"{producer}."))
    assert topics == [f"{producer}.fresh.events", f"{producer}.grown.events"]
    described = kafka_admin.tool("kafka-topics.sh", "--describe", "--topic", f"{producer}.grown.events").stdout
    assert "PartitionCount: 3" in described, described
    acls = kafka_admin.tool("kafka-acls.sh", "--list", "--topic", f"{producer}.grown.events").stdout
    assert f"User:{consumer}" in acls and "READ" in acls, acls
    credentials = get_json("secret", f"{late}-credentials", "-n", late)["data"]
    password = base64.b64decode(credentials["KAFKA_PASSWORD"]).decode()
    assert Kafka(workdir(), late, password).tool("kafka-topics.sh", "--list", check=False).returncode == 0, \
        "the Domain made during the outage has working Kafka credentials"

    kubectl("delete", "accesspolicy", "reads", "-n", producer, "--timeout", "60s")
    kubectl("delete", "dataproduct", "fresh", "grown", "-n", producer, "--timeout", "60s")


def test_object_store_down_for_a_minute(operator, s3_admin):
    producer, late = unique("out"), unique("out")
    domain(producer)
    wait_ready(f"domain/{producer}")

    stack("stop", "seaweedfs")
    stopped_at = time.monotonic()
    try:
        product(producer, "lake", [{"name": "files", "bucket": {}}])
        domain(late)
        for args in (("dataproduct", "lake", "-n", producer), ("domain", late)):
            wait_for(lambda: says_unavailable("StorageUnavailable", *args), timeout=SAYS_SO_WITHIN, interval=1,
                     message=f"{args} says the object store is unavailable")
        time.sleep(max(0, OUTAGE_SECONDS - (time.monotonic() - stopped_at)))
        assert operator.process.poll() is None, "the operator stays up"
    finally:
        stack("start", "seaweedfs")
    back_at = time.monotonic()

    for args in (("dataproduct", "lake", "-n", producer), ("domain", late)):
        wait_for(lambda: ready_at_current_generation(*args), timeout=BACK_WITHIN, interval=1,
                 message=f"{args} Ready after the object store's return")
    print(f"all Ready {time.monotonic() - back_at:.1f}s after the object store was back")
    buckets = sorted(b["Name"] for b in s3_admin.list_buckets()["Buckets"] if b["Name"].startswith(f"{producer}-"))
    assert buckets == [f"{producer}-lake-files"]
    kubectl("delete", "dataproduct", "lake", "-n", producer, "--timeout", "60s")
