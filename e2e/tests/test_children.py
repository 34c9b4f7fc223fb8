"""End to end: the children the operator makes are watched, so one deleted or edited by hand is
made again within seconds, not at the next resync.

The operator here resyncs only once an hour, so nothing but the watches can bring a child back
within the tests' 10 seconds. Checked with kubectl as the cluster admin.
"""

import json

import pytest
import yaml

from conftest import kubectl, unique
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


def apply(manifest: dict):
    kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))


def get_json(*args):
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


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
