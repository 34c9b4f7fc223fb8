"""End to end: a Domain becomes a namespace with RBAC and a quota, a Kafka principal and an S3 user,
checked with kubectl, Kafka's own tools and boto3; deleting it is refused while it has products
and removes its identities when it has none.

The operator runs out of cluster with the Helm chart's RBAC and ServiceAccount token.
"""

import time

import pytest

from conftest import Kafka, apply, get_json, kubectl, s3_key_state, secret_data, unique
from operator_process import OperatorProcess, install_chart_rbac, install_crds, wait_for, workdir


@pytest.fixture(scope="module")
def operator():
    install_crds()
    install_chart_rbac()
    process = OperatorProcess(workdir(), "domain-tests")
    yield process
    code = process.terminate()
    assert code == 0, f"the operator did not shut down cleanly ({code}):\n{process.logs()}"


def domain_manifest(name, **spec):
    return {"apiVersion": "datamesh.dev/v1alpha1", "kind": "Domain", "metadata": {"name": name}, "spec": spec}


def wait_ready(kind, name, namespace=None, timeout="90s"):
    args = ["wait", "--for", "condition=Ready", "--timeout", timeout, f"{kind}/{name}"]
    if namespace:
        args += ["-n", namespace]
    kubectl(*args)


def test_a_domain_gets_its_namespace_rbac_quota_and_identities(operator, tmp_path):
    name = unique("dom")
    apply(domain_manifest(
        name,
        description="Card payments and settlements",
        owners=[{"kind": "Group", "name": "payments-team"}, {"kind": "User", "name": "alice@example.com"}],
        quotas={"maxDataProducts": 3, "maxPartitions": 60},
    ))
    wait_ready("domain", name)

    status = get_json("domain", name)["status"]
    assert status["namespace"] == name
    assert status["kafkaPrincipal"] == f"User:{name}"
    assert status["credentialsSecret"] == f"{name}-credentials"
    assert status["observedGeneration"] == 1
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True", "Reconciling": "False", "Stalled": "False"}

    namespace = get_json("namespace", name)
    assert namespace["metadata"]["labels"]["datamesh.dev/domain"] == name
    assert namespace["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "datamesh-operator"

    binding = get_json("rolebinding", "datamesh-domain-admins", "-n", name)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": "datamesh-domain-admin"}
    assert [(s["kind"], s["name"]) for s in binding["subjects"]] == [
        ("Group", "payments-team"), ("User", "alice@example.com")]
    # The binding is real: the owner may manage DataProducts in the namespace and nowhere else.
    assert kubectl("auth", "can-i", "create", "dataproducts.datamesh.dev", "-n", name,
                   "--as", "alice@example.com").stdout.strip() == "yes"
    assert kubectl("auth", "can-i", "create", "dataproducts.datamesh.dev", "-n", "default",
                   "--as", "alice@example.com", check=False).stdout.strip() == "no"

    quota = get_json("resourcequota", "datamesh-domain-quota", "-n", name)
    assert quota["spec"]["hard"] == {"count/dataproducts.datamesh.dev": "3"}
    kubectl("get", "serviceaccount", "datamesh-workload", "-n", name)

    creds = secret_data(name, f"{name}-credentials")
    assert creds["KAFKA_USERNAME"] == name
    assert creds["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    # The domain's own credentials authenticate to Kafka and to S3, with independent clients.
    assert Kafka(tmp_path, name, creds["KAFKA_PASSWORD"]).authenticates()
    assert not Kafka(tmp_path, name, creds["KAFKA_PASSWORD"] + "-wrong").authenticates()
    assert s3_key_state(creds["AWS_ACCESS_KEY_ID"], creds["AWS_SECRET_ACCESS_KEY"]) == "valid"
    assert s3_key_state(creds["AWS_ACCESS_KEY_ID"], "wrong-secret") != "valid"

    # Stable across reconciles: a spec change reconciles again without rotating credentials.
    apply(domain_manifest(name, description="Payments, renamed", quotas={"maxDataProducts": 5}))
    wait_for(lambda: get_json("domain", name)["status"]["observedGeneration"] == 2, message="generation 2")
    wait_ready("domain", name)
    assert secret_data(name, f"{name}-credentials") == creds
    assert get_json("resourcequota", "datamesh-domain-quota", "-n", name)["spec"]["hard"] == {
        "count/dataproducts.datamesh.dev": "5"}
    assert get_json("rolebinding", "datamesh-domain-admins", "-n", name).get("subjects") in (None, [])

    # Deleting the Secret by hand: the operator makes it again with the same identities' keys working.
    kubectl("delete", "secret", f"{name}-credentials", "-n", name)
    kubectl("annotate", "domain", name, f"test/poke={time.time()}", "--overwrite")
    remade = wait_for(lambda: kubectl("get", "secret", f"{name}-credentials", "-n", name, check=False).returncode == 0
                      and secret_data(name, f"{name}-credentials"), message="credentials Secret re-created")
    assert Kafka(tmp_path, name, remade["KAFKA_PASSWORD"]).authenticates()
    assert s3_key_state(remade["AWS_ACCESS_KEY_ID"], remade["AWS_SECRET_ACCESS_KEY"]) == "valid"
    if remade["AWS_ACCESS_KEY_ID"] != creds["AWS_ACCESS_KEY_ID"]:
        assert s3_key_state(creds["AWS_ACCESS_KEY_ID"], creds["AWS_SECRET_ACCESS_KEY"]) != "valid", \
            "a replaced access key must stop working"

    kubectl("delete", "domain", name, "--timeout", "60s")
    assert not Kafka(tmp_path, name, remade["KAFKA_PASSWORD"]).authenticates(), "the SCRAM user must be gone"
    assert s3_key_state(remade["AWS_ACCESS_KEY_ID"], remade["AWS_SECRET_ACCESS_KEY"]) != "valid"
    # deletionPolicy Retain (the default): the namespace stays.
    assert get_json("namespace", name)["status"]["phase"] == "Active"
    kubectl("delete", "namespace", name, "--wait=false")


def test_a_domain_with_products_cannot_be_deleted(operator, tmp_path):
    name = unique("dom")
    apply(domain_manifest(name, deletionPolicy="Delete"))
    wait_ready("domain", name)
    product = {
        "apiVersion": "datamesh.dev/v1alpha1", "kind": "DataProduct",
        "metadata": {"name": "orders", "namespace": name},
        "spec": {"domain": name, "owner": {"name": "alice"}, "description": {"purpose": "Orders as they happen", "usage": "Stream it"},
                 "outputPorts": [
            {"name": "events", "kafka": {"partitions": 1}}]},
    }
    apply(product)
    wait_for(lambda: get_json("domain", name)["status"].get("dataProducts") == 1, message="product counted")

    kubectl("delete", "domain", name, "--wait=false")
    stalled = wait_for(lambda: next((c for c in get_json("domain", name)["status"]["conditions"]
                                     if c["type"] == "Stalled" and c["status"] == "True"), None),
                       message="Stalled condition")
    assert stalled["reason"] == "DataProductsRemain"
    assert "orders" in stalled["message"]
    events = wait_for(lambda: kubectl("get", "events", "-A", "--field-selector",
                                      f"involvedObject.name={name},reason=DeletionBlocked",
                                      "-o", "jsonpath={.items[*].message}").stdout, message="DeletionBlocked Event")
    assert "orders" in events, "an Event must name the remaining products"
    creds = secret_data(name, f"{name}-credentials")
    assert Kafka(tmp_path, name, creds["KAFKA_PASSWORD"]).authenticates(), "identities stay while deletion is blocked"

    # Once the product is gone, the domain goes, and with deletionPolicy Delete so does its namespace.
    kubectl("delete", "dataproduct", "orders", "-n", name, "--timeout", "60s")
    wait_for(lambda: kubectl("get", "domain", name, check=False).returncode != 0, timeout=60, message="domain gone")
    wait_for(lambda: kubectl("get", "namespace", name, check=False).returncode != 0, timeout=90,
             message="namespace deleted")
    assert not Kafka(tmp_path, name, creds["KAFKA_PASSWORD"]).authenticates()


def test_metrics_count_reconciles(operator):
    text = operator.get("/metrics")
    assert 'datamesh_operator_reconciles_total{kind="Domain"}' in text
    assert "datamesh_operator_reconcile_duration_seconds_bucket" in text
    assert operator.metric("datamesh_operator_leader") == 1
