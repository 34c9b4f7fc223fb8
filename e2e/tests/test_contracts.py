"""End to end: a port's schema is its contract. A change that would break a consumer holding a
grant is refused (the product Stalled with the differences, the contract in force kept in its
status, a Warning Event for the producer) while the consumer keeps reading with Kafka's own
tools; a compatible change goes through, and so does a breaking one on a port nobody consumes.
"""

import json

import pytest

from conftest import Kafka, apply, get_json, kubectl, secret_data, unique
from operator_process import OperatorProcess, install_chart_rbac, install_crds, wait_for, workdir

API = "datamesh.dev/v1alpha1"
ORDER = {"type": "object", "required": ["id"],
         "properties": {"id": {"type": "string"}, "note": {"type": "string"}}}
WITHOUT_NOTE = {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}
WITH_CURRENCY = {"type": "object", "required": ["id"],
                 "properties": {"id": {"type": "string"}, "note": {"type": "string"},
                                "currency": {"type": "string"}}}


@pytest.fixture(scope="module")
def operator():
    install_crds()
    install_chart_rbac()
    process = OperatorProcess(workdir(), "contracts")
    yield process
    assert process.terminate() == 0, process.logs()


def domain(name):
    apply({"apiVersion": API, "kind": "Domain", "metadata": {"name": name}, "spec": {}})
    kubectl("wait", "--for", "condition=Ready", "--timeout", "90s", f"domain/{name}")


def product(namespace, name, schema):
    apply({"apiVersion": API, "kind": "DataProduct", "metadata": {"name": name, "namespace": namespace},
           "spec": {"domain": namespace, "owner": {"name": "alice"}, "description": {"purpose": "p", "usage": "u"},
                    "outputPorts": [{"name": "events", "kafka": {"partitions": 1},
                                     "schema": {"type": "json", "definition": json.dumps(schema)}}]}})


def contract(namespace, name):
    status = get_json("dataproduct", name, "-n", namespace).get("status", {})
    return {c["port"]: json.loads(c["schema"]["definition"]) for c in status.get("contracts", [])}


def condition(namespace, name, type_):
    obj = get_json("dataproduct", name, "-n", namespace)
    found = next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), None)
    current = found and found.get("observedGeneration") == obj["metadata"]["generation"]
    return found if current and found["status"] == "True" else None


def test_a_breaking_change_waits_for_the_consumers_and_a_compatible_one_goes_through(operator, tmp_path):
    producer, consumer = unique("contract"), unique("reader")
    domain(producer)
    domain(consumer)
    product(producer, "orders", ORDER)
    product(producer, "lonely", ORDER)
    for name in ("orders", "lonely"):
        kubectl("wait", "--for", "condition=Ready", "--timeout", "90s", f"dataproduct/{name}", "-n", producer)
        assert contract(producer, name) == {"events": ORDER}
    apply({"apiVersion": API, "kind": "AccessPolicy", "metadata": {"name": "readers", "namespace": producer},
           "spec": {"dataProduct": "orders", "consumers": [{"domain": consumer}]}})
    wait_for(lambda: get_json("accesspolicy", "readers", "-n", producer).get("status", {}).get("grants"),
             timeout=60, message="the consumer's grant")

    topic = f"{producer}.orders.events"
    writer = Kafka(tmp_path, producer, secret_data(producer, f"{producer}-credentials")["KAFKA_PASSWORD"])
    reader = Kafka(tmp_path, consumer, secret_data(consumer, f"{consumer}-credentials")["KAFKA_PASSWORD"])
    writer.produce(topic, ['{"id": "1", "note": "first"}'])

    # Breaking (a property consumers may rely on goes): refused while the grant stands.
    product(producer, "orders", WITHOUT_NOTE)
    stalled = wait_for(lambda: condition(producer, "orders", "Stalled"), timeout=60, message="Stalled")
    assert stalled["reason"] == "ContractBreaking", stalled
    assert "`note` removed" in stalled["message"] and f"domain:{consumer}" in stalled["message"], stalled
    assert contract(producer, "orders") == {"events": ORDER}, "the contract in force stays"
    events = kubectl("get", "events", "-n", producer, "--field-selector", "reason=ContractBreaking",
                     "-o", "name").stdout
    assert events.strip(), "a Warning Event tells the producer"
    assert reader.consume(topic, 1, group=f"{consumer}.contracts") == ['{"id": "1", "note": "first"}'], \
        "the consumer keeps reading"

    # Compatible (an optional property added): goes through even with the consumer.
    product(producer, "orders", WITH_CURRENCY)
    wait_for(lambda: condition(producer, "orders", "Ready"), timeout=60, message="Ready")
    assert contract(producer, "orders") == {"events": WITH_CURRENCY}

    # The same breaking change on a port nobody consumes goes through.
    product(producer, "lonely", WITHOUT_NOTE)
    wait_for(lambda: condition(producer, "lonely", "Ready"), timeout=60, message="Ready")
    assert contract(producer, "lonely") == {"events": WITHOUT_NOTE}

    kubectl("delete", "accesspolicy", "readers", "-n", producer, "--timeout", "60s")
    kubectl("delete", "dataproduct", "orders", "lonely", "-n", producer, "--timeout", "60s")
