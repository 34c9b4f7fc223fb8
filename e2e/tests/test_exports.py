"""End to end: the standard exports of every sample product (config/samples), read from the
cluster by `datamesh-operator export odcs|odps` and from the catalog's API, validated by tools
that are not the operator's: `datacontract lint` (datacontract-cli, which checks ODCS against the
schema it bundles, offline) and Python's `jsonschema` against the standards' published JSON
Schemas (e2e/schemas). A few mapped values are checked against the manifests and the live
objects (kubectl), and no secret value of any domain appears in an export.
"""

import functools
import json
import subprocess

import jsonschema
import pytest
import yaml

from conftest import E2E_DIR, REPO_DIR, STACK, env, kubectl, run, secret_data
from operator_process import BINARY, NAMESPACE
from samples_mesh import fetch, samples_with_catalog

SCHEMAS = E2E_DIR / "schemas"


def validator(path):
    schema = json.loads(path.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


ODCS = validator(SCHEMAS / "odcs-json-schema-v3.1.0.json")
ODPS = validator(SCHEMAS / "odps-json-schema-v1.0.0.json")


@pytest.fixture(scope="module")
def mesh():
    """The samples applied and Ready, with the operator (and its catalog) running."""
    yield from samples_with_catalog("exports")


def live(product):
    return json.loads(kubectl("get", "dataproduct", product["metadata"]["name"], "-n",
                              product["metadata"]["namespace"], "-o", "json").stdout)


def lint(path):
    """datacontract-cli's verdict on one contract file: (passed, what it printed)."""
    result = subprocess.run(["datacontract", "lint", str(path)], capture_output=True, text=True, timeout=120)
    return result.returncode == 0, result.stdout + result.stderr


def schema_errors(validator_, document):
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator_.iter_errors(document)]


EXPORTER = "datamesh-exporter"


@functools.cache
def exporter_kubeconfig():
    """A ServiceAccount that may only get and list DataProducts: all the CLI needs."""
    kubectl("create", "serviceaccount", EXPORTER, "-n", NAMESPACE, check=False)
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all([
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": EXPORTER},
         "rules": [{"apiGroups": ["datamesh.dev"], "resources": ["dataproducts"], "verbs": ["get", "list"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": EXPORTER},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": EXPORTER},
         "subjects": [{"kind": "ServiceAccount", "name": EXPORTER, "namespace": NAMESPACE}]},
    ]))
    return run([STACK, "kubeconfig", "serviceaccount", NAMESPACE, EXPORTER]).stdout.strip()


def cli(*args, check=True, input=None):
    """`datamesh-operator export ...` against the cluster, as the exporter ServiceAccount."""
    return run([str(BINARY), "export", *args], check=check, input=input,
               extra_env={"KUBECONFIG": exporter_kubeconfig()})


def check_contract(contract, product, port, status):
    """What an ODCS contract must say about `port` of `product` (a manifest), and `status` (its
    live status)."""
    meta, spec = product["metadata"], product["spec"]
    assert contract["apiVersion"] == "v3.1.0" and contract["kind"] == "DataContract"
    assert contract["id"] == f"{spec['domain']}.{meta['name']}.{port['name']}"
    assert contract["domain"] == spec["domain"]
    assert contract["status"] == spec.get("status", "active")
    assert contract["version"] == str(status["metadata"]["generation"])
    assert contract["description"]["purpose"] == spec["description"]["purpose"]
    owner = spec["owner"]
    assert contract["team"]["members"] == [{"username": owner.get("email", owner["name"]), "name": owner["name"],
                                            "role": "owner"}]
    classification = spec.get("classification", "internal")
    assert {"property": "classification", "value": classification} in contract["customProperties"]
    assert [s["property"] for s in contract.get("slaProperties", [])] == [s["property"] for s in spec.get("sla", [])]
    assert [s["value"] for s in contract.get("slaProperties", [])] == [s["value"] for s in spec.get("sla", [])]
    [schema_object] = contract["schema"]
    [port_status] = [p for p in status["status"]["outputPorts"] if p["name"] == port["name"]]
    [server] = contract["servers"]
    if "kafka" in port:
        assert schema_object["physicalType"] == "topic"
        assert schema_object["physicalName"] == port_status["topic"]
        assert server["type"] == "kafka" and server["host"] == port_status["bootstrapServers"]
    else:
        assert schema_object["physicalType"] == "bucket"
        assert schema_object["physicalName"] == port_status["bucket"]
        assert server["type"] == "s3" and server["location"] == f"s3://{port_status['bucket']}/"
        assert server["endpointUrl"] == port_status["endpoint"]
    declared = port.get("schema")
    properties = schema_object.get("properties", [])
    if declared is None:
        assert properties == []
        return
    definition = json.loads(declared["definition"])
    if declared["type"] == "json":
        fields = definition["properties"]
        required = set(definition.get("required", []))
    else:
        fields = {f["name"]: f for f in definition["fields"]}
        required = {f["name"] for f in definition["fields"]
                    if not (isinstance(f["type"], list) and "null" in f["type"])}
    # Avro fields keep their order; JSON Schema properties come sorted by name.
    expected_names = list(fields) if declared["type"] == "avro" else sorted(fields)
    assert [p["name"] for p in properties] == expected_names
    assert {p["name"] for p in properties if p.get("required")} == required
    assert all(p["classification"] == classification for p in properties)
    # A date-time (JSON Schema) or timestamp-millis (Avro) field is an ODCS timestamp.
    for name, field in fields.items():
        [mapped] = [p for p in properties if p["name"] == name]
        if field.get("format") == "date-time" or (isinstance(field.get("type"), dict)
                                                  and field["type"].get("logicalType") == "timestamp-millis"):
            assert mapped["logicalType"] == "timestamp", mapped
        if field.get("type") == "integer":
            assert mapped["logicalType"] == "integer", mapped


def check_product(document, product, status, products):
    meta, spec = product["metadata"], product["spec"]
    assert document["apiVersion"] == "v1.0.0" and document["kind"] == "DataProduct"
    assert document["id"] == f"{spec['domain']}.{meta['name']}"
    assert document["status"] == spec.get("status", "active")
    assert document["domain"] == spec["domain"]
    assert document["version"] == str(status["metadata"]["generation"])
    assert [p["contractId"] for p in document["outputPorts"]] == [
        f"{spec['domain']}.{meta['name']}.{p['name']}" for p in spec["outputPorts"]]
    assert [p["type"] for p in document["outputPorts"]] == [
        "kafka" if "kafka" in p else "s3" for p in spec["outputPorts"]]
    inputs = spec.get("inputPorts", [])
    assert [p["contractId"] for p in document.get("inputPorts", [])] == [
        "{domain}.{name}.{port}".format(**p["dataProduct"]) for p in inputs]
    access = {p["name"]: p["access"] for p in status["status"].get("inputPorts", [])}
    for port in document.get("inputPorts", []):
        assert {"property": "access", "value": access[port["name"]]} in port["customProperties"]
        # The producer is in the cluster: its version is its generation.
        [producer] = [p for p in products if f"{p['spec']['domain']}.{p['metadata']['name']}"
                      == next(c["value"] for c in port["customProperties"] if c["property"] == "dataProduct")]
        assert port["version"] == str(live(producer)["metadata"]["generation"])


def test_every_sample_product_exports_valid_odcs_and_odps_from_the_cli_and_the_catalog(mesh, tmp_path):
    url, products, domains = mesh
    secrets = set()
    for domain in domains:
        data = secret_data(domain["metadata"]["name"], f"{domain['metadata']['name']}-credentials")
        secrets |= {data[k] for k in ("KAFKA_PASSWORD", "AWS_SECRET_ACCESS_KEY")}
    assert len(secrets) == 2 * len(domains)

    # The CLI, from the cluster: one file per contract and per product.
    odcs_dir, odps_dir = tmp_path / "odcs", tmp_path / "odps"
    cli("odcs", "--out-dir", str(odcs_dir))
    cli("odps", "--out-dir", str(odps_dir), "-o", "json")
    # Standard output gives the same contracts as one YAML stream.
    streamed = [d for d in yaml.safe_load_all(cli("odcs", "-n", "payments", "transactions").stdout) if d]
    assert [c["id"] for c in streamed] == ["payments.transactions.events", "payments.transactions.archive"]
    # A platform engineer's own kubeconfig works as well: the platform's admin one, with its
    # client certificate (X.509 v3, which rustls requires).
    as_admin = run([str(BINARY), "export", "odcs", "-n", "payments", "transactions"],
                   extra_env={"KUBECONFIG": env("KUBECONFIG")}).stdout
    assert [d for d in yaml.safe_load_all(as_admin) if d] == streamed

    checked = 0
    for product in products:
        meta, spec = product["metadata"], product["spec"]
        status = live(product)
        api = f"{url}/api/products/{meta['namespace']}/{meta['name']}"
        for port in spec["outputPorts"]:
            contract_id = f"{spec['domain']}.{meta['name']}.{port['name']}"
            from_cli = odcs_dir / f"{contract_id}.odcs.yaml"
            code, content_type, text = fetch(f"{api}/odcs/{port['name']}?format=yaml")
            assert code == 200 and content_type == "application/yaml", (code, text)
            from_api = tmp_path / f"api-{contract_id}.odcs.yaml"
            from_api.write_text(text)
            for path in (from_cli, from_api):
                passed, said = lint(path)
                assert passed, f"datacontract lint {path}:\n{said}"
                contract = yaml.safe_load(path.read_text())
                assert schema_errors(ODCS, contract) == [], path
                check_contract(contract, product, port, status)
                assert not any(secret in path.read_text() for secret in secrets), f"a secret in {path}"
            # Both read the same objects, so they say the same; and the YAML, read by PyYAML (a
            # YAML 1.1 reader), is the JSON document: no timestamp or number where a string is.
            assert yaml.safe_load(from_cli.read_text()) == yaml.safe_load(from_api.read_text())
            code, _, as_json = fetch(f"{api}/odcs/{port['name']}")
            assert code == 200 and json.loads(as_json) == yaml.safe_load(from_api.read_text())
            checked += 1
        from_cli = json.loads((odps_dir / f"{spec['domain']}.{meta['name']}.odps.json").read_text())
        code, content_type, text = fetch(f"{api}/odps")
        assert code == 200 and content_type == "application/json", (code, text)
        from_api = json.loads(text)
        for document in (from_cli, from_api):
            assert schema_errors(ODPS, document) == []
            check_product(document, product, status, products)
            assert not any(secret in json.dumps(document) for secret in secrets)
        assert from_cli == from_api
    assert checked == sum(len(p["spec"]["outputPorts"]) for p in products) == 8

    # The catalog's export of all of a product's contracts is a JSON array of the same.
    code, _, text = fetch(f"{url}/api/products/payments/transactions/odcs")
    assert code == 200 and [c["id"] for c in json.loads(text)] == [c["id"] for c in streamed]


def test_the_validators_refuse_what_the_standards_refuse(mesh, tmp_path):
    """The checks above can fail: a contract with a logical type ODCS does not have fails both
    validators, and a product without its required id fails the ODPS schema."""
    url, _, _ = mesh
    _, _, text = fetch(f"{url}/api/products/customers/profiles/odcs/changes?format=yaml")
    contract = yaml.safe_load(text)
    contract["schema"][0]["properties"][0]["logicalType"] = "instant"
    broken = tmp_path / "broken.odcs.yaml"
    broken.write_text(yaml.safe_dump(contract))
    passed, said = lint(broken)
    assert not passed and "instant" in said, said
    assert schema_errors(ODCS, contract)
    _, _, text = fetch(f"{url}/api/products/customers/profiles/odps")
    document = json.loads(text)
    del document["id"]
    assert schema_errors(ODPS, document)


def test_the_cli_and_the_api_say_what_is_wrong(mesh, tmp_path):
    url, _, _ = mesh
    missing = cli("odcs", "-n", "payments", "nope", check=False)
    assert missing.returncode != 0 and "no DataProduct payments/nope" in missing.stderr, missing.stderr
    manifest = tmp_path / "none.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    empty = run([str(BINARY), "export", "odps", "-f", str(manifest)], check=False)
    assert empty.returncode != 0 and "no DataProduct" in empty.stderr, empty.stderr
    # A manifest works without a cluster: the samples themselves.
    from_file = run([str(BINARY), "export", "odps", "-f", "-", "-o", "json"],
                    input=run(["kubectl", "kustomize", str(REPO_DIR / "config" / "samples")]).stdout,
                    extra_env={"KUBECONFIG": "/nonexistent"})
    assert [d["id"] for d in json.loads(from_file.stdout)] == [
        "payments.transactions", "payments.chargebacks", "customers.profiles", "customers.consents",
        "marketing.campaign-performance"]
    assert fetch(f"{url}/api/products/payments/transactions/odcs/nope")[0] == 404
    assert fetch(f"{url}/api/products/payments/nope/odps")[0] == 404


EVERY_MAPPING = """
apiVersion: datamesh.dev/v1alpha1
kind: DataProduct
metadata: {name: everything, namespace: lab}
spec:
  domain: lab
  description: {purpose: Every schema mapping at once., usage: Validate it.}
  owner: {name: Ada}
  status: deprecated
  classification: public
  sla:
    - {property: availability, value: "99.5", unit: percent}
    - {property: latency, value: 9, unit: s}
  outputPorts:
    - name: json
      kafka: {topic: lab.custom-topic, partitions: 2}
      schema:
        type: json
        definition: |
          {"type": "object", "required": ["id", "nested"],
           "$defs": {"money": {"type": "object", "properties": {"amount": {"type": "number", "minimum": 0},
                                                               "currency": {"type": "string", "minLength": 3, "maxLength": 3}}}},
           "properties": {
             "id": {"type": "string", "format": "uuid"},
             "day": {"type": "string", "format": "date"},
             "at": {"type": "string", "format": "time"},
             "flag": {"type": ["boolean", "null"]},
             "count": {"type": "integer", "exclusiveMaximum": 10, "multipleOf": 2},
             "price": {"$ref": "#/$defs/money"},
             "nested": {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": true}}},
             "kind": {"const": "order"},
             "anything": {}
           }}
    - name: avro
      kafka: {}
      schema:
        type: avro
        definition: |
          {"type": "record", "name": "Everything", "fields": [
            {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
            {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
            {"name": "day", "type": {"type": "int", "logicalType": "date"}},
            {"name": "at", "type": {"type": "long", "logicalType": "local-timestamp-micros"}},
            {"name": "time", "type": {"type": "int", "logicalType": "time-millis"}},
            {"name": "blob", "type": "bytes"},
            {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 16}},
            {"name": "attrs", "type": {"type": "map", "values": "string"}},
            {"name": "either", "type": ["null", "int", "string"]},
            {"name": "items", "type": {"type": "array", "items": {"type": "record", "name": "Item",
              "fields": [{"name": "sku", "type": "string"}, {"name": "qty", "type": "float"}]}}},
            {"name": "again", "type": "Item"}
          ]}
    - name: proto
      kafka: {}
      schema:
        type: protobuf
        definition: 'syntax = "proto3"; message Ping { string id = 1; }'
    - name: files
      bucket: {}
"""


def test_every_schema_mapping_passes_both_validators(tmp_path):
    """Without a cluster: a manifest that uses every mapping (JSON Schema refs, consts, nullable
    types and bounds; Avro logical types, unions, maps, fixed, nested and named records;
    Protocol Buffers; an explicit topic; a bucket) exports contracts both validators accept."""
    manifest = tmp_path / "everything.yaml"
    manifest.write_text(EVERY_MAPPING)
    out = tmp_path / "out"
    written = run([str(BINARY), "export", "odcs", "-f", str(manifest), "--out-dir", str(out)],
                  extra_env={"KUBECONFIG": "/nonexistent"}).stdout.split()
    assert len(written) == 4
    for path in written:
        passed, said = lint(path)
        assert passed, f"datacontract lint {path}:\n{said}"
        assert schema_errors(ODCS, yaml.safe_load(open(path))) == [], path
    json_contract = yaml.safe_load((out / "lab.everything.json.odcs.yaml").read_text())
    assert json_contract["schema"][0]["physicalName"] == "lab.custom-topic"
    properties = {p["name"]: p for p in json_contract["schema"][0]["properties"]}
    assert properties["price"]["logicalType"] == "object"
    assert {p["name"] for p in properties["price"]["properties"]} == {"amount", "currency"}
    assert properties["kind"]["logicalType"] == "string"
    avro = yaml.safe_load((out / "lab.everything.avro.odcs.yaml").read_text())
    fields = {p["name"]: p for p in avro["schema"][0]["properties"]}
    assert fields["items"]["items"]["logicalType"] == "object"
    assert fields["either"].get("required") is None
    document = json.loads(run([str(BINARY), "export", "odps", "-f", str(manifest), "-o", "json"]).stdout)[0]
    assert schema_errors(ODPS, document) == []
    assert document["status"] == "deprecated"
