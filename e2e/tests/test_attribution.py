"""End to end: cost and ownership attribution of what the operator made for the sample mesh,
read with independent clients: every Kubernetes object it made carries its domain (and, when it
serves a product, the product and the classification) as labels (kubectl); every bucket carries
them as tags and every domain's IAM user its domain (boto3); every topic starts with its
domain's prefix and has the partitions declared (Kafka's own tools); and the catalog's count of
each domain's topics, partitions and buckets matches what Kafka and S3 hold.
"""

import json

import pytest

from conftest import kubectl
from samples_mesh import fetch, samples_with_catalog

MANAGED = "app.kubernetes.io/managed-by=datamesh-operator"
KINDS = "serviceaccounts,roles,rolebindings,configmaps,secrets,resourcequotas,scheduledsparkapplications.sparkoperator.k8s.io,sparkapplications.sparkoperator.k8s.io"


@pytest.fixture(scope="module")
def mesh():
    yield from samples_with_catalog("attribution")


def classification(product):
    return product["spec"].get("classification", "internal")


def test_every_kubernetes_object_carries_its_domain_product_and_classification(mesh):
    _, products, domains = mesh
    by_name = {(p["spec"]["domain"], p["metadata"]["name"]): p for p in products}
    seen_product_level = set()
    for domain in domains:
        namespace = domain["metadata"]["name"]  # the samples' namespaces are their domains' names
        labels = json.loads(kubectl("get", "namespace", namespace, "-o", "json").stdout)["metadata"]["labels"]
        assert labels["datamesh.dev/domain"] == namespace
        objects = json.loads(kubectl("get", KINDS, "-n", namespace, "-l", MANAGED, "-o", "json").stdout)["items"]
        assert objects, f"the operator made objects in {namespace}"
        for obj in objects:
            what = f"{obj['kind']} {namespace}/{obj['metadata']['name']}"
            labels = obj["metadata"]["labels"]
            assert labels["datamesh.dev/domain"] == namespace, what
            if "datamesh.dev/data-product" not in labels:
                continue  # a domain's own: its credentials, workload ServiceAccount, quota, admins
            # A connection ConfigMap is the consumer's, about the producer's data.
            source = (labels.get("datamesh.dev/source-domain"), labels.get("datamesh.dev/source-data-product"))
            about = by_name[source] if source[0] else by_name[(namespace, labels["datamesh.dev/data-product"])]
            assert labels.get("datamesh.dev/classification") == classification(about), what
            seen_product_level.add((obj["kind"], namespace, obj["metadata"]["name"]))
    # The samples' product-level objects: the Spark job of marketing, the consumers' Role and
    # RoleBinding of each granted product, and marketing's connection ConfigMaps.
    for expected in [("ScheduledSparkApplication", "marketing", "campaign-performance"),
                     ("ServiceAccount", "marketing", "campaign-performance-spark"),
                     ("RoleBinding", "marketing", "campaign-performance-spark"),
                     ("Role", "payments", "datamesh-consumers-transactions"),
                     ("RoleBinding", "customers", "datamesh-consumers-profiles"),
                     ("ConfigMap", "marketing", "profiles")]:
        assert expected in seen_product_level, f"{expected} labelled: {sorted(seen_product_level)}"


def test_buckets_and_iam_users_carry_their_owner(mesh, s3_admin, iam_admin):
    _, products, domains = mesh
    for product in products:
        status = json.loads(kubectl("get", "dataproduct", product["metadata"]["name"], "-n",
                                    product["metadata"]["namespace"], "-o", "json").stdout)["status"]
        for port in (p for p in status["outputPorts"] if p.get("bucket")):
            tags = {t["Key"]: t["Value"] for t in s3_admin.get_bucket_tagging(Bucket=port["bucket"])["TagSet"]}
            assert tags["datamesh.dev/domain"] == product["spec"]["domain"], port
            assert tags["datamesh.dev/data-product"] == product["metadata"]["name"], port
            assert tags["datamesh.dev/classification"] == classification(product), port
            assert tags["datamesh.dev/port"] == port["name"]
    for domain in domains:
        name = domain["metadata"]["name"]
        user = json.loads(kubectl("get", "domain", name, "-o", "json").stdout)["status"]["storageUser"]
        tags = {t["Key"]: t["Value"] for t in iam_admin.list_user_tags(UserName=user)["Tags"]}
        assert tags.get("datamesh.dev/domain") == name, tags
        assert tags.get("app.kubernetes.io/managed-by") == "datamesh-operator", tags


def test_the_catalog_shows_what_each_domain_owns_as_kafka_and_s3_hold_it(mesh, kafka_admin, s3_admin):
    url, products, domains = mesh
    code, _, text = fetch(url + "/api/mesh")
    assert code == 200
    catalog = {d["name"]: d for d in json.loads(text)["domains"]}
    _, _, page = fetch(url + "/")
    for domain in domains:
        name = domain["metadata"]["name"]
        topics, partitions, buckets = [], 0, []
        for product in (p for p in products if p["spec"]["domain"] == name):
            status = json.loads(kubectl("get", "dataproduct", product["metadata"]["name"], "-n",
                                        product["metadata"]["namespace"], "-o", "json").stdout)["status"]
            for port in status["outputPorts"]:
                if port.get("topic"):
                    # Kafka topics hold no free-form metadata: the name's prefix is the owner.
                    assert port["topic"].startswith(f"{name}."), port
                    described = kafka_admin.tool("kafka-topics.sh", "--describe", "--topic", port["topic"]).stdout
                    count = int(described.split("PartitionCount:", 1)[1].split()[0])
                    topics.append(port["topic"])
                    partitions += count
                else:
                    s3_admin.head_bucket(Bucket=port["bucket"])
                    buckets.append(port["bucket"])
        shown = catalog[name]
        assert (shown["topics"], shown["partitions"], shown["buckets"]) == (len(topics), partitions, len(buckets))
        assert sorted(r["name"] for r in shown["owned"]) == sorted(topics + buckets)
        section = page.split(f'data-domain="{name}"', 1)[1].split("</details>", 1)[0]
        for resource in topics + buckets:
            assert f"<code>{resource}</code>" in section, f"{resource} on the mesh page under {name}"
