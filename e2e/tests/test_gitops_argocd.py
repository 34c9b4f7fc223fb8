"""End to end: Argo CD (3.6.1, run by `e2e/stack gitops up`) delivers the sample mesh from a Git
repository with automated sync and prune, and reports its health through the chart's health check.

The repository (on the platform's loopback Git server, written with plain `git`) holds
config/samples under names of this module's own, a Domain and a DataProduct with only their
required fields, and one more product with a topic and a bucket to delete. The Application is the
README's, and the Domains carry its `argocd.argoproj.io/sync-wave: "-1"`: Argo CD applies them
first and waits until they are Healthy (Ready: their namespaces exist) before it applies the rest,
as the samples ask of a person.

Everything is read with independent clients: the Application's status and the objects with kubectl,
topics and records with Kafka's tools, the bucket with boto3. The operator runs out of cluster as in
the other suites; the tests stop it where a state must be seen for certain (an object the operator
has not reconciled yet).
"""

import json
import time

import pytest

from conftest import Kafka, env, get_json, kubectl, s3_client, unique
from gitops import (API, DeliveredMesh, delete_mesh, drop_data, identity, meshstatus_reader, minimal_mesh, not_ready,
                    readme_manifests, sample_mesh, stalled_message, wait_until)
from operator_process import install_chart_rbac, install_crds, wait_for, workdir

APPLICATION = "applications.argoproj.io"
TIMEOUT = 300  # generous: the machine is shared; nothing here measures speed


class Mesh(DeliveredMesh):
    """This module's repository, Application and operator."""

    def __init__(self, prefix, work):
        super().__init__(prefix, work, "argocd")
        self.name = prefix

    # The Application
    def application(self) -> dict:
        return get_json(APPLICATION, self.name, "-n", "argocd")

    def state(self) -> dict:
        status = self.application().get("status", {})
        return {"sync": status.get("sync", {}).get("status"), "revision": status.get("sync", {}).get("revision"),
                "health": status.get("health", {}).get("status"),
                "operation": status.get("operationState", {}).get("phase"),
                "operationRevision": status.get("operationState", {}).get("syncResult", {}).get("revision"),
                "resources": status.get("resources", []),
                "reconciledAt": status.get("reconciledAt"), "conditions": status.get("conditions", [])}

    def resource(self, kind, namespace, name, state=None) -> dict | None:
        state = state or self.state()
        return next((r for r in state["resources"] if (r["kind"], r.get("namespace", ""), r["name"])
                     == (kind, namespace, name)), None)

    def refresh(self, kind="normal"):
        """Ask Argo CD to look at Git now (what a Git webhook does) instead of in three minutes."""
        kubectl("annotate", APPLICATION, self.name, "-n", "argocd", f"argocd.argoproj.io/refresh={kind}",
                "--overwrite")

    def commit(self, message) -> str:
        sha = self.repo.commit(message)
        self.refresh()
        return sha

    @staticmethod
    def synced_healthy(sha, state) -> bool:
        return (state["sync"], state["health"], state["revision"], state["operation"],
                state["operationRevision"]) == ("Synced", "Healthy", sha, "Succeeded", sha)

    def wait_synced_healthy(self, sha) -> dict:
        """The Application's state once it is Synced and Healthy at `sha`."""
        return wait_until(self.state, lambda s: self.synced_healthy(sha, s), TIMEOUT,
                          f"Application {self.name} Synced and Healthy at {sha}")

    def health_changes(self) -> list[str]:
        """Every change of the Application's health, as Argo CD's Events tell them, oldest first."""
        events = json.loads(kubectl("get", "events", "-n", "argocd", "--field-selector",
                                    f"involvedObject.kind=Application,involvedObject.name={self.name}",
                                    "-o", "json").stdout)["items"]
        events.sort(key=lambda e: (e.get("lastTimestamp") or e.get("eventTime") or "", e["metadata"]["name"]))
        return [e["message"] for e in events if e["message"].startswith("Updated health status")]

    # Git
    def documents(self) -> list[dict]:
        return self.repo.documents()

    def edit_product(self, file, name, edit):
        documents = self.repo.read(file)
        product = next(d for d in documents if d["kind"] == "DataProduct" and d["metadata"]["name"] == name)
        edit(product)
        self.repo.write(file, documents)
        return product


def warnings(namespaces) -> list[str]:
    """The Warning Events in these namespaces: what the operator said was wrong, and why."""
    found = []
    for namespace in namespaces:
        events = json.loads(kubectl("get", "events", "-n", namespace, "--field-selector", "type=Warning",
                                    "-o", "json").stdout)["items"]
        found += [f"{e['involvedObject']['kind']} {namespace}/{e['involvedObject']['name']}: {e['reason']}: "
                  f"{e['message']}" for e in events]
    return found


def retained_product(domain: str) -> dict:
    return {"apiVersion": API, "kind": "DataProduct", "metadata": {"name": "ledger", "namespace": domain},
            "spec": {"domain": domain, "owner": {"name": "Priya Sharma"}, "deletionPolicy": "Retain",
                     "description": {"purpose": "Settlement ledger, delivered from Git.", "usage": "Read it."},
                     "outputPorts": [{"name": "events", "kafka": {"partitions": 2}},
                                     {"name": "files", "bucket": {"versioning": False}}]}}


@pytest.fixture(scope="module")
def meshstatus():
    return meshstatus_reader()


@pytest.fixture(scope="module")
def mesh(gitops_platform):
    """The repository pushed, the Application created while the operator is stopped, and what
    Argo CD did then; the operator started after."""
    install_crds()
    install_chart_rbac()
    mesh = Mesh(unique("argo"), workdir())
    application, readme_domain = readme_manifests("apiVersion: argoproj.io/v1alpha1")
    files = sample_mesh(mesh.prefix)
    minimal = minimal_mesh(mesh.prefix)
    for domain in files["domains.yaml"] + minimal[:1]:  # the README's wave on every Domain
        domain["metadata"].setdefault("annotations", {}).update(readme_domain["metadata"]["annotations"])
    for file, documents in files.items():
        mesh.repo.write(file, documents)
    mesh.repo.write("minimal.yaml", minimal)
    mesh.repo.write("ledger.yaml", [retained_product(f"{mesh.prefix}-payments")])
    mesh.sha = mesh.repo.commit("The mesh")
    documents = mesh.documents()
    try:
        # The README's Application, on this module's repository and the platform's cluster Secret.
        application["metadata"]["name"] = mesh.name
        application["spec"]["source"].update(repoURL=mesh.repo.url, path=".")
        application["spec"]["destination"] = {"name": "local"}
        kubectl("apply", "-f", "-", input=json.dumps(application))
        domains = [d for d in documents if d["kind"] == "Domain"]
        # Nothing reconciles the Domains yet: Argo CD applied them (wave -1) and waits.

        def domains_applied(state):
            health = [(mesh.resource(*identity(d), state) or {}).get("health", {}).get("status") for d in domains]
            return all(h not in (None, "Missing") for h in health)

        mesh.before_operator = wait_until(mesh.state, domains_applied, TIMEOUT, "Argo CD applied the Domains")
        mesh.products_before_operator = [
            d for d in documents if d["kind"] != "Domain"
            and kubectl("get", d["kind"].lower(), d["metadata"]["name"], "-n", d["metadata"]["namespace"],
                        check=False).returncode == 0]
        mesh.start_operator()
        mesh.healthy = mesh.wait_synced_healthy(mesh.sha)
        mesh.not_ready_when_healthy = not_ready(documents)
        mesh.first_delivery = mesh.health_changes()
        mesh.warnings = warnings([d["metadata"]["name"] for d in domains])
        yield mesh
    finally:
        kubectl("delete", APPLICATION, mesh.name, "-n", "argocd", "--ignore-not-found", "--timeout", "60s")
        if mesh.operator is None:
            mesh.start_operator()
        delete_mesh(mesh.documents() + [retained_product(f"{mesh.prefix}-payments")])
        mesh.stop_operator()
        mesh.repo.delete()
        drop_data(mesh.prefix, Kafka(mesh.work, env("KAFKA_ADMIN_USER"), env("KAFKA_ADMIN_PASSWORD")),
                  s3_client(env("S3_ADMIN_ACCESS_KEY"), env("S3_ADMIN_SECRET_KEY")))


def test_healthy_only_once_every_object_is_ready(mesh, meshstatus):
    documents = mesh.documents()
    domains = [d for d in documents if d["kind"] == "Domain"]
    before = mesh.before_operator
    print("before the operator:", {k: v for k, v in before.items() if k != "resources"})
    print("health changes:", *mesh.first_delivery, sep="\n")
    # Before the operator ran: each Domain Progressing (the chart's check, not Argo CD's default
    # Healthy for a custom kind), the Application neither Synced nor Healthy, and the wave held
    # back everything that needs the Domains' namespaces.
    for domain in domains:
        health = mesh.resource(*identity(domain), before)["health"]
        assert health["status"] == "Progressing", (identity(domain), health)
    assert before["health"] != "Healthy" and before["sync"] != "Synced", before
    assert mesh.products_before_operator == [], [identity(d) for d in mesh.products_before_operator]

    # Synced and Healthy only with every object Ready at its current generation (read at once).
    assert mesh.not_ready_when_healthy == [], mesh.not_ready_when_healthy
    resources = {(r["kind"], r.get("namespace", ""), r["name"]): r for r in mesh.healthy["resources"]}
    assert set(resources) == {identity(d) for d in documents}, resources
    for key, resource in resources.items():
        assert (resource["status"], resource["health"]["status"]) == ("Synced", "Healthy"), (key, resource)

    # kstatus (what Flux and kubectl-based tools compute) agrees: Current, every one.
    listed = json.loads(kubectl("get", "domain,dataproduct,accesspolicy", "-A", "-o", "json").stdout)
    ours = {"apiVersion": "v1", "kind": "List", "items": [
        o for o in listed["items"] if (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])
        in resources]}
    reports = meshstatus(ours)
    assert len(reports) == len(documents)
    assert [r for r in reports if (r["kstatus"], r["argocd"]["status"]) != ("Current", "Healthy")] == []


def test_delivery_order_is_progressing_never_degraded(mesh):
    """Argo CD applies a wave's objects one after the other: a policy before the product it
    grants, a product before the grants of its inputs. Each waits for the others, which arrive by
    themselves: the operator reports that as Progressing, and Degraded only for what a person must
    fix (Argo CD keeps every health change in the Application's Events)."""
    degraded = [change for change in mesh.first_delivery if "-> Degraded" in change]
    assert degraded == [], "\n".join(mesh.first_delivery + ["the operator's warnings:"] + mesh.warnings)


def out_of_sync(mesh, state) -> str:
    """What Argo CD finds different, for the failure message: its resources not Synced, and
    kubectl's own diff of the repository against the cluster."""
    differing = [r for r in state["resources"] if r["status"] != "Synced"]
    diff = kubectl("diff", "-R", "-f", str(mesh.repo.work), check=False)
    return f"Argo CD: {state['sync']}, {differing}\nkubectl diff:\n{diff.stdout}{diff.stderr}"


def test_no_perpetual_diff(mesh):
    """After the operator reconciled everything (the samples and a minimal manifest), a hard
    refresh (manifests generated again, everything compared again) finds nothing to sync, twice,
    and self-heal starts no sync (it would, were the operator to rewrite what Git sets)."""
    mesh.wait_synced_healthy(mesh.repo.git("rev-parse", "HEAD"))
    last_sync = mesh.application()["status"]["operationState"]["startedAt"]
    for _ in range(2):
        before = mesh.state()["reconciledAt"]
        time.sleep(1.5)  # reconciledAt counts whole seconds
        mesh.refresh("hard")
        state = wait_until(mesh.state, lambda s: s["reconciledAt"] != before and "argocd.argoproj.io/refresh"
                           not in mesh.application()["metadata"].get("annotations", {}), TIMEOUT, "a hard refresh")
        assert state["sync"] == "Synced" and all(r["status"] == "Synced" for r in state["resources"]), \
            out_of_sync(mesh, state)
        assert state["conditions"] == [], state["conditions"]
    assert mesh.application()["status"]["operationState"]["startedAt"] == last_sync, mesh.health_changes()


def partitions(kafka_admin, topic) -> str:
    described = kafka_admin.tool("kafka-topics.sh", "--describe", "--topic", topic).stdout
    return described.split("PartitionCount:")[1].split()[0]


def test_partition_increase_in_git_is_applied(mesh, kafka_admin):
    domain = f"{mesh.prefix}-payments"
    topic = f"{domain}.transactions.events"
    mesh.wait_synced_healthy(mesh.repo.git("rev-parse", "HEAD"))
    before = partitions(kafka_admin, topic)
    wanted = str(int(before) + 4)

    # The change arrives while the operator is stopped, so Argo CD's view of it is certain:
    # applied (Synced), and Progressing until the operator has made the topic bigger.
    mesh.stop_operator()
    try:
        mesh.edit_product("payments.yaml", "transactions",
                          lambda p: p["spec"]["outputPorts"][0]["kafka"].__setitem__("partitions", int(wanted)))
        sha = mesh.commit(f"payments: {wanted} partitions for transactions")
        state = wait_until(mesh.state, lambda s: (s["revision"], s["sync"], s["health"]) == (
            sha, "Synced", "Progressing"), TIMEOUT, "Argo CD applied the change and waits for the operator")
        health = mesh.resource("DataProduct", domain, "transactions", state)["health"]
        assert health["status"] == "Progressing", health
        assert partitions(kafka_admin, topic) == before
    finally:
        mesh.start_operator()
    mesh.wait_synced_healthy(sha)
    assert partitions(kafka_admin, topic) == wanted
    assert not_ready(mesh.documents()) == []


def test_stalled_product_degrades_the_application(mesh, kafka_admin):
    """Fewer partitions than the topic has: admitted, and Stalled by the operator (Kafka cannot
    remove partitions). The Application shows the operator's own message on the DataProduct."""
    domain = f"{mesh.prefix}-payments"
    topic = f"{domain}.transactions.events"
    mesh.wait_synced_healthy(mesh.repo.git("rev-parse", "HEAD"))
    current = int(partitions(kafka_admin, topic))
    kafka = lambda p: p["spec"]["outputPorts"][0]["kafka"]  # noqa: E731
    mesh.edit_product("payments.yaml", "transactions", lambda p: kafka(p).__setitem__("partitions", 4))
    sha = mesh.commit("payments: 4 partitions for transactions (cannot be done)")
    try:
        state = wait_until(mesh.state, lambda s: s["revision"] == sha and s["health"] == "Degraded", TIMEOUT,
                           "the Application Degraded")
        health = mesh.resource("DataProduct", domain, "transactions", state)["health"]
        message = stalled_message("DataProduct", domain, "transactions")
        assert message and "partitions" in message, message
        assert health == {"status": "Degraded", "message": message}, health
        assert state["sync"] == "Synced"  # Git was applied; the operator refused it
        assert partitions(kafka_admin, topic) == str(current)
        others = [r for r in state["resources"] if r["health"]["status"] != "Healthy"]
        assert [(r["kind"], r["name"]) for r in others] == [("DataProduct", "transactions")], others
    finally:
        mesh.edit_product("payments.yaml", "transactions", lambda p: kafka(p).__setitem__("partitions", current))
        sha = mesh.commit("payments: back to the partitions the topic has")
    mesh.wait_synced_healthy(sha)


def test_product_deleted_in_git_is_pruned_and_its_data_kept(mesh, kafka_admin, s3_admin):
    domain = f"{mesh.prefix}-payments"
    topic, bucket = f"{domain}.ledger.events", f"{domain}-ledger-files"
    mesh.wait_synced_healthy(mesh.repo.git("rev-parse", "HEAD"))
    product = get_json("dataproduct", "ledger", "-n", domain)
    assert "datamesh.dev/data-product" in product["metadata"].get("finalizers", []), product["metadata"]
    records = [f"entry-{i}" for i in range(3)]
    kafka_admin.produce(topic, records)
    s3_admin.put_object(Bucket=bucket, Key="2026/ledger.csv", Body=b"id,amount\n1,100\n")

    mesh.repo.remove("ledger.yaml")
    sha = mesh.commit("payments: ledger is gone from Git")
    # Pruned, and gone only once the operator's finalizer ran.
    wait_for(lambda: kubectl("get", "dataproduct", "ledger", "-n", domain, check=False).returncode != 0,
             timeout=TIMEOUT, message="the DataProduct pruned and its finalizer done")
    state = mesh.wait_synced_healthy(sha)
    assert mesh.resource("DataProduct", domain, "ledger", state) is None
    events = kubectl("get", "events", "-n", domain, "--field-selector",
                     "involvedObject.kind=DataProduct,involvedObject.name=ledger", "-o", "json").stdout
    assert any("Retain" in e.get("message", "") for e in json.loads(events)["items"]), events

    # deletionPolicy Retain: the topic, its records, the bucket and its object are all still there.
    assert topic in kafka_admin.tool("kafka-topics.sh", "--list").stdout.split()
    assert sorted(kafka_admin.consume(topic, len(records))) == records
    kept = s3_admin.get_object(Bucket=bucket, Key="2026/ledger.csv")["Body"].read()
    assert kept == b"id,amount\n1,100\n"
