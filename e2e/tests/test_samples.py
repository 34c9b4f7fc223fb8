"""End to end: the sample mesh in config/samples (what e2e/quickstart applies) becomes Ready, and
what it declares exists in Kafka, S3 and Kubernetes, read back with Kafka's tools, boto3 and kubectl.

The samples use fixed namespaces (payments, customers, marketing); applying them is idempotent, so
this test also passes on a platform where the quick start already made them.
"""

import pytest
import yaml

from conftest import REPO_DIR, kubectl, run
from operator_process import OperatorProcess, install_chart_rbac, install_crds, workdir

UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def retention_ms(text: str) -> int:
    number = text.rstrip("mshdw")
    return int(number) * UNIT_MS[text[len(number):]]


@pytest.fixture(scope="module")
def operator():
    install_crds()
    install_chart_rbac()
    process = OperatorProcess(workdir(), "samples")
    yield process
    assert process.terminate() == 0, process.logs()


def test_the_sample_mesh_becomes_ready_as_declared(operator, kafka_admin, s3_admin, tmp_path):
    rendered = run(["kubectl", "kustomize", str(REPO_DIR / "config" / "samples")]).stdout
    documents = [d for d in yaml.safe_load_all(rendered) if d]
    domains = [d for d in documents if d["kind"] == "Domain"]
    products = [d for d in documents if d["kind"] == "DataProduct"]
    assert len(domains) >= 3 and len(products) >= 4
    assert len([d for d in documents if d["kind"] == "AccessPolicy"]) >= 2

    # Domains first: their namespaces (and counted quotas) must exist before the products.
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(domains))
    kubectl("wait", "--for", "condition=Ready", "--timeout", "120s",
            *[f"domain/{d['metadata']['name']}" for d in domains])
    manifest = tmp_path / "samples.yaml"
    manifest.write_text(rendered)
    kubectl("apply", "-f", str(manifest))
    kubectl("wait", "--for", "condition=Ready", "--timeout", "180s", "-f", str(manifest))
    # What a GitOps tool's diff shows once all is Ready: nothing. The operator writes
    # only status, and no default the API server adds differs from what Git would apply.
    diff = kubectl("diff", "-f", str(manifest), check=False)
    assert diff.returncode == 0, f"live objects differ from the samples:\n{diff.stdout}{diff.stderr}"

    topics = set(kafka_admin.tool("kafka-topics.sh", "--list").stdout.split())
    buckets = {b["Name"] for b in s3_admin.list_buckets()["Buckets"]}
    for product in products:
        domain, name = product["spec"]["domain"], product["metadata"]["name"]
        for port in product["spec"]["outputPorts"]:
            if "kafka" in port:
                kafka = port["kafka"]
                topic = kafka.get("topic", f"{domain}.{name}.{port['name']}")
                assert topic in topics
                described = kafka_admin.tool("kafka-topics.sh", "--describe", "--topic", topic).stdout
                assert f"PartitionCount: {kafka.get('partitions', 1)}" in described, described
                if "retention" in kafka:
                    configs = kafka_admin.tool("kafka-configs.sh", "--describe", "--entity-type", "topics",
                                               "--entity-name", topic).stdout
                    assert f"retention.ms={retention_ms(kafka['retention'])}" in configs, configs
            else:
                bucket_spec = port["bucket"]
                bucket = f"{domain}-{name}-{port['name']}"
                assert bucket in buckets
                versioning = s3_admin.get_bucket_versioning(Bucket=bucket).get("Status")
                assert versioning == ("Enabled" if bucket_spec.get("versioning", True) else None)
                if "expireAfterDays" in bucket_spec:
                    rules = s3_admin.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
                    assert [r["Expiration"]["Days"] for r in rules] == [bucket_spec["expireAfterDays"]]
                tags = {t["Key"]: t["Value"] for t in s3_admin.get_bucket_tagging(Bucket=bucket)["TagSet"]}
                assert tags["datamesh.dev/domain"] == domain
                assert tags["datamesh.dev/data-product"] == name
                assert tags["datamesh.dev/classification"] == product["spec"].get("classification", "internal")
        spark = product["spec"].get("transformation", {}).get("spark")
        if spark:
            kind = "scheduledsparkapplication" if spark.get("schedule") else "sparkapplication"
            made = yaml.safe_load(kubectl("get", kind, name, "-n", product["metadata"]["namespace"],
                                          "-o", "yaml").stdout)
            assert made["metadata"]["ownerReferences"][0]["name"] == name
        # Every input port of a sample is granted by one of the sample policies.
        status = yaml.safe_load(kubectl("get", "dataproduct", name, "-n", product["metadata"]["namespace"],
                                        "-o", "yaml").stdout)["status"]
        assert all(p["access"] == "Granted" for p in status.get("inputPorts", [])), status
