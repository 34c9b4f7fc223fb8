"""End to end: the operator recovers by itself from what happens around it.

- The children it makes are watched, so one deleted or edited by hand is made again within
  seconds, not at the next resync. The operator here resyncs only once an hour, so nothing but
  the watches can bring a child back within the tests' 10 seconds.
- An object it cannot read (stored under a looser schema) says so in its status, and does not
  stop the other objects of its kind.

Checked with kubectl as the cluster admin.
"""

import copy
import json

import pytest
import yaml

from conftest import REPO_DIR, apply, condition, get_json, kubectl, unique, wait_established
from operator_process import OperatorProcess, install_chart_rbac, install_crds, wait_for, workdir

API = "datamesh.dev/v1alpha1"
BACK_WITHIN_SECONDS = 10


@pytest.fixture(scope="module")
def operator():
    install_crds()
    install_chart_rbac()
    process = OperatorProcess(workdir(), "children", extra_env={"DATAMESH_RESYNC_SECONDS": "3600"})
    yield process
    assert process.terminate() == 0, process.logs()


def exists(kind, name, namespace):
    return kubectl("get", kind, name, "-n", namespace, check=False).returncode == 0


def delete_and_wait_back(kind, name, namespace):
    uid = get_json(kind, name, "-n", namespace)["metadata"]["uid"]
    kubectl("delete", kind, name, "-n", namespace, "--wait=true")

    def remade():
        result = kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
        return result.returncode == 0 and json.loads(result.stdout)["metadata"]["uid"] != uid
    wait_for(remade, timeout=BACK_WITHIN_SECONDS, interval=0.2, message=f"{kind} {namespace}/{name} made again")


def domain(name):
    apply({"apiVersion": API, "kind": "Domain", "metadata": {"name": name}, "spec": {}})
    kubectl("wait", "--for", "condition=Ready", "--timeout", "90s", f"domain/{name}")


def product(domain_name, name, output_ports, **spec):
    apply({"apiVersion": API, "kind": "DataProduct", "metadata": {"name": name, "namespace": domain_name},
           "spec": {"domain": domain_name, "owner": {"name": "alice"},
                    "description": {"purpose": "p", "usage": "u"}, "outputPorts": output_ports, **spec}})


def test_deleted_or_edited_children_come_back_within_seconds(operator):
    producer, consumer = unique("kid"), unique("kid")
    domain(producer)
    domain(consumer)
    spark = {"image": "apache/spark:4.0.1", "mainApplicationFile": "local:///job.py", "sparkVersion": "4.0.1"}
    product(producer, "orders", [{"name": "events", "kafka": {}}], transformation={"spark": spark})
    product(consumer, "reader", [{"name": "out", "kafka": {}}],
            inputPorts=[{"name": "orders-in", "dataProduct": {"domain": producer, "name": "orders",
                                                              "port": "events"}}])
    apply({"apiVersion": API, "kind": "AccessPolicy", "metadata": {"name": "reader", "namespace": producer},
           "spec": {"dataProduct": "orders", "consumers": [{"domain": consumer}]}})
    for namespace, name in ((producer, "orders"), (consumer, "reader")):
        kubectl("wait", "--for", "condition=Ready", "--timeout", "90s", f"dataproduct/{name}", "-n", namespace)
    wait_for(lambda: exists("configmap", "orders-in", consumer), message="the connection ConfigMap")

    # The Domain's children.
    delete_and_wait_back("rolebinding", "datamesh-domain-admins", producer)
    delete_and_wait_back("serviceaccount", "datamesh-workload", producer)
    delete_and_wait_back("secret", f"{producer}-credentials", producer)
    # The DataProduct's.
    delete_and_wait_back("rolebinding", "orders-spark", producer)
    delete_and_wait_back("sparkapplication", "orders", producer)
    # The AccessPolicy's, in the producer's and in the consumer's namespace.
    delete_and_wait_back("rolebinding", "datamesh-consumers-orders", producer)
    delete_and_wait_back("configmap", "orders-in", consumer)

    # An edit is set back too.
    kubectl("patch", "configmap", "orders-in", "-n", consumer, "--type", "merge",
            "-p", '{"data": {"topic": "somewhere.else"}}')
    wait_for(lambda: get_json("configmap", "orders-in", "-n", consumer)["data"]["topic"] == f"{producer}.orders.events",
             timeout=BACK_WITHIN_SECONDS, interval=0.2, message="the ConfigMap's topic set back")

    kubectl("delete", "accesspolicy", "reader", "-n", producer, "--timeout", "60s")
    kubectl("delete", "dataproduct", "reader", "-n", consumer, "--timeout", "60s")
    kubectl("delete", "dataproduct", "orders", "-n", producer, "--timeout", "60s")


def test_an_object_the_operator_cannot_read_does_not_stop_the_others(operator):
    domain_name = unique("bad")
    domain(domain_name)
    real = get_json("crd", "dataproducts.datamesh.dev")
    loose = copy.deepcopy(real)
    for key in ("status", "metadata"):
        loose.pop(key, None)
    loose["metadata"] = {"name": "dataproducts.datamesh.dev"}
    for version in loose["spec"]["versions"]:
        schema = version["schema"]["openAPIV3Schema"]
        schema.pop("x-kubernetes-validations", None)
        schema["properties"]["spec"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=yaml.safe_dump(loose))
    try:
        # Stored under the loose schema: partitions is a word, which the operator cannot read.
        product(domain_name, "broken", [{"name": "events", "kafka": {"partitions": "many"}}])
    finally:
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO_DIR / "crds" / "datamesh.dev.yaml"))
        wait_established("dataproducts.datamesh.dev")

    # Others of its kind go on: a product made now, and one changed now, become Ready.
    product(domain_name, "fine", [{"name": "events", "kafka": {}}])
    kubectl("wait", "--for", "condition=Ready", "--timeout", "90s", "dataproduct/fine", "-n", domain_name)

    def says_why():
        ready = condition(get_json("dataproduct", "broken", "-n", domain_name), "Ready")
        return ready if ready and ready["reason"] == "UnreadableObject" else None
    ready = wait_for(says_why, timeout=30, message="the unreadable product says why")
    assert ready["status"] == "False"
    assert "partitions" in ready["message"] or "invalid type" in ready["message"], ready["message"]
    assert "cannot read an object" in operator.logs()

    kubectl("delete", "dataproduct", "broken", "fine", "-n", domain_name, "--timeout", "60s")
