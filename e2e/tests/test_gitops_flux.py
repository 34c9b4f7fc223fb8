"""End to end: Flux (source-controller and kustomize-controller 1.9.6, run by `e2e/stack gitops
up`) delivers the sample mesh from a Git repository, and its `wait: true` becomes Ready only once
the operator has made everything Ready.

The repository (on the platform's loopback Git server, written with plain `git`) holds
config/samples under names of this module's own and a Domain and DataProduct with only their
required fields, in two directories: `domains/` and `products/`. Two Kustomizations deliver them,
`<prefix>-products` with `dependsOn` the `<prefix>-domains` one: Flux dry-runs a whole
Kustomization before it applies any of it, and the products' namespaces exist only once the
operator has reconciled their Domains. Both carry `healthCheckExprs` for the mesh's kinds: without
them kstatus calls a Domain the operator has not written a
status to yet Current, and the domains' Kustomization would be Ready before its namespaces exist.

Everything is read with independent clients: Flux's objects and the mesh with kubectl, topics with
Kafka's tools. The operator runs out of cluster as in the other suites; the tests stop it where a
state must be seen for certain.
"""

import datetime
import json

import pytest
import yaml

from conftest import Kafka, env, kubectl, s3_client, unique
from gitops import (DeliveredMesh, delete_mesh, drop_data, dump, identity, live, meshstatus_reader, minimal_mesh,
                    not_ready, readme_manifests, sample_mesh, stalled_message, wait_until)
from operator_process import install_chart_rbac, install_crds, wait_for, workdir

GIT_REPOSITORY = "gitrepositories.source.toolkit.fluxcd.io"
KUSTOMIZATION = "kustomizations.kustomize.toolkit.fluxcd.io"
TIMEOUT = 300  # generous: the machine is shared; nothing here measures speed

class Mesh(DeliveredMesh):
    """This module's repository, Flux objects and operator."""

    def __init__(self, prefix, work):
        super().__init__(prefix, work, "flux")

    def kustomization(self, part) -> dict:
        return json.loads(kubectl("get", KUSTOMIZATION, f"{self.prefix}-{part}", "-n", "flux-system",
                                  "-o", "json").stdout)

    def ready(self, part) -> dict:
        """The Kustomization's Ready condition, with its revisions."""
        status = self.kustomization(part).get("status", {})
        ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
        return {"status": ready.get("status"), "reason": ready.get("reason"), "message": ready.get("message"),
                "applied": status.get("lastAppliedRevision"), "attempted": status.get("lastAttemptedRevision")}

    def commit(self, message) -> str:
        """Commit and push, and ask source-controller to fetch now (`flux reconcile source git`)."""
        sha = self.repo.commit(message)
        request(GIT_REPOSITORY, self.prefix)
        return sha

    def wait_ready(self, sha, part="products") -> dict:
        return wait_until(lambda: self.ready(part),
                          lambda r: r["status"] == "True" and r["applied"] == f"main@sha1:{sha}",
                          TIMEOUT, f"Kustomization {self.prefix}-{part} Ready at {sha}")

    def documents(self) -> list[dict]:
        return self.repo.documents()

    def edit_product(self, file, name, edit):
        documents = self.repo.read(file)
        edit(next(d for d in documents if d["kind"] == "DataProduct" and d["metadata"]["name"] == name))
        self.repo.write(file, documents)


def request(resource, name) -> str:
    """Ask a Flux controller to reconcile now, as the `flux reconcile` command does."""
    token = datetime.datetime.now(datetime.timezone.utc).isoformat()
    kubectl("annotate", resource, name, "-n", "flux-system", f"reconcile.fluxcd.io/requestedAt={token}", "--overwrite")
    return token


def events(mesh, part, reason=None) -> list[dict]:
    """The Events of one of this module's Kustomizations (of this reason)."""
    return [e for e in json.loads(kubectl(
        "get", "events", "-n", "flux-system", "--field-selector",
        f"involvedObject.kind=Kustomization,involvedObject.name={mesh.prefix}-{part}", "-o", "json").stdout)["items"]
        if reason is None or e["reason"] == reason]


def flux_objects(mesh) -> list[dict]:
    """The README's GitRepository and Kustomizations, named after this module, on its repository,
    asked to try again sooner (the machine is shared: the timeout is long, nothing measures speed)."""
    objects = readme_manifests("apiVersion: source.toolkit.fluxcd.io/v1")
    source, domains, products = objects
    assert [o["kind"] for o in objects] == ["GitRepository", "Kustomization", "Kustomization"]
    source["metadata"]["name"] = mesh.prefix
    source["spec"]["url"] = mesh.repo.url
    source["spec"]["interval"] = "10m"
    for part, kustomization in (("domains", domains), ("products", products)):
        kustomization["metadata"]["name"] = f"{mesh.prefix}-{part}"
        kustomization["spec"]["sourceRef"]["name"] = mesh.prefix
        kustomization["spec"].update(retryInterval="15s", timeout="3m")
        assert kustomization["spec"]["path"] == f"./{part}" and kustomization["spec"]["wait"] is True
    assert products["spec"]["dependsOn"] == [{"name": "mesh-domains"}]
    products["spec"]["dependsOn"] = [{"name": f"{mesh.prefix}-domains"}]
    return objects


@pytest.fixture(scope="module")
def meshstatus():
    return meshstatus_reader()


@pytest.fixture(scope="module")
def mesh(gitops_platform):
    """The repository pushed and Flux's objects created while the operator is stopped, what Flux
    did then, and the operator started after."""
    install_crds()
    install_chart_rbac()
    mesh = Mesh(unique("flux"), workdir())
    files = sample_mesh(mesh.prefix)
    minimal_domain, minimal_product = minimal_mesh(mesh.prefix)
    mesh.repo.write("domains/domains.yaml", files.pop("domains.yaml") + [minimal_domain])
    for file, documents in files.items():
        mesh.repo.write(f"products/{file}", documents)
    mesh.repo.write("products/minimal.yaml", [minimal_product])
    mesh.sha = mesh.repo.commit("The mesh")
    documents = mesh.documents()
    domains = [d for d in documents if d["kind"] == "Domain"]
    try:
        kubectl("apply", "-f", "-", input=dump(flux_objects(mesh)))
        # Nothing reconciles the Domains yet: Flux applied them and waits for their health.
        wait_for(lambda: mesh.ready("domains")["attempted"] == f"main@sha1:{mesh.sha}"
                 and not any("missing" in w for w in not_ready(domains)),
                 timeout=TIMEOUT, message=f"Flux applied the Domains: {mesh.ready('domains')}")
        mesh.before_operator = {part: mesh.ready(part) for part in ("domains", "products")}
        mesh.products_before_operator = [identity(o) for o in
                                         live([d for d in documents if d["kind"] != "Domain"])]
        mesh.start_operator()
        mesh.wait_ready(mesh.sha)
        mesh.not_ready_when_ready = not_ready(documents)
        mesh.failures = {part: events(mesh, part, "HealthCheckFailed") for part in ("domains", "products")}
        yield mesh
    finally:
        for part in ("products", "domains"):  # prune: true, so Flux deletes what it applied
            kubectl("delete", KUSTOMIZATION, f"{mesh.prefix}-{part}", "-n", "flux-system", "--ignore-not-found",
                    "--timeout", "120s", check=False)
        kubectl("delete", GIT_REPOSITORY, mesh.prefix, "-n", "flux-system", "--ignore-not-found", check=False)
        if mesh.operator is None:
            mesh.start_operator()
        delete_mesh(documents)
        mesh.stop_operator()
        mesh.repo.delete()
        drop_data(mesh.prefix, Kafka(mesh.work, env("KAFKA_ADMIN_USER"), env("KAFKA_ADMIN_PASSWORD")),
                  s3_client(env("S3_ADMIN_ACCESS_KEY"), env("S3_ADMIN_SECRET_KEY")))


def test_ready_only_once_every_object_is_ready(mesh):
    before = mesh.before_operator
    print("before the operator:", before)
    # Before the operator ran: the Domains applied but not Ready, so neither Kustomization is
    # (kstatus alone would call the status-less Domains Current), and dependsOn held the rest back.
    assert before["domains"]["status"] != "True", before
    assert before["products"]["status"] != "True" and before["products"]["applied"] is None, before
    assert mesh.products_before_operator == []
    assert mesh.not_ready_when_ready == [], mesh.not_ready_when_ready
    assert mesh.ready("domains")["status"] == "True"


def test_delivery_order_is_in_progress_never_failed(mesh):
    """Flux applies a Kustomization's objects together: a policy with the product it grants, a
    product with the grants of its inputs. Each waits for the others, which arrive by themselves:
    the operator reports that as Reconciling (kstatus InProgress), so Flux's health check waits,
    rather than Stalled (Failed), which fails it at once ("failed early due to stalled resources")
    until a retry."""
    assert mesh.failures == {"domains": [], "products": []}, \
        {part: [e["message"] for e in found] for part, found in mesh.failures.items()}


def test_change_is_ready_only_once_reconciled(mesh, kafka_admin, meshstatus):
    domain = f"{mesh.prefix}-payments"
    topic = f"{domain}.transactions.events"
    mesh.wait_ready(mesh.repo.git("rev-parse", "HEAD"))
    described = kafka_admin.tool("kafka-topics.sh", "--describe", "--topic", topic).stdout
    wanted = int(described.split("PartitionCount:")[1].split()[0]) + 4
    mesh.stop_operator()
    try:
        mesh.edit_product("products/payments.yaml", "transactions",
                          lambda p: p["spec"]["outputPorts"][0]["kafka"].__setitem__("partitions", wanted))
        sha = mesh.commit(f"payments: {wanted} partitions for transactions")
        # Applied (the new generation is in the cluster), and Flux waits for the operator.
        wait_for(lambda: mesh.ready("products")["attempted"] == f"main@sha1:{sha}"
                 and kubectl("get", "dataproduct", "transactions", "-n", domain, "-o",
                             "jsonpath={.spec.outputPorts[0].kafka.partitions}").stdout == str(wanted),
                 timeout=TIMEOUT, message="Flux applied the change")
        [seen] = meshstatus(json.loads(kubectl("get", "dataproduct", "transactions", "-n", domain,
                                               "-o", "json").stdout))
        assert seen["kstatus"] == "InProgress", seen
        assert mesh.ready("products")["status"] != "True", mesh.ready("products")
    finally:
        mesh.start_operator()
    mesh.wait_ready(sha)
    described = kafka_admin.tool("kafka-topics.sh", "--describe", "--topic", topic).stdout
    assert f"PartitionCount: {wanted}" in described, described


def test_stalled_product_is_reported(mesh):
    """Fewer partitions than the topic has: admitted, Stalled by the operator. Flux fails the
    health check at once and names the object; the operator's message is on that object."""
    domain = f"{mesh.prefix}-payments"
    mesh.wait_ready(mesh.repo.git("rev-parse", "HEAD"))
    current = {}

    def shrink(product):
        current["partitions"] = product["spec"]["outputPorts"][0]["kafka"]["partitions"]
        product["spec"]["outputPorts"][0]["kafka"]["partitions"] = 2

    mesh.edit_product("products/payments.yaml", "transactions", shrink)
    sha = mesh.commit("payments: 2 partitions for transactions (cannot be done)")
    try:
        ready = wait_until(lambda: mesh.ready("products"),
                           lambda r: r["attempted"] == f"main@sha1:{sha}" and r["status"] == "False",
                           TIMEOUT, "the Kustomization failed")
        assert ready["reason"] == "HealthCheckFailed", ready
        assert f"DataProduct/{domain}/transactions" in ready["message"], ready
        message = stalled_message("DataProduct", domain, "transactions")
        assert message and "partitions" in message, message
        # Only the stalled product is named.
        assert ready["message"].count("DataProduct/") + ready["message"].count("AccessPolicy/") == 1, ready
    finally:
        mesh.edit_product("products/payments.yaml", "transactions", lambda p: p["spec"]["outputPorts"][0]["kafka"]
                          .__setitem__("partitions", current["partitions"]))
        sha = mesh.commit("payments: back to the partitions the topic has")
    mesh.wait_ready(sha)


def test_no_drift(mesh):
    """After the operator reconciled everything (the samples and a minimal manifest): what Flux
    would apply changes nothing (kubectl's server-side diff as kustomize-controller), and two
    more reconciles of each Kustomization apply nothing (Flux reports every change it applies in
    an event)."""
    sha = mesh.repo.git("rev-parse", "HEAD")
    mesh.wait_ready(sha)
    for part in ("domains", "products"):
        # What kustomize-controller applies: the files, with the two labels it adds to each object.
        documents = [d for file in sorted((mesh.repo.work / part).glob("*.yaml")) for d in mesh.repo.read(file)]
        for document in documents:
            document["metadata"].setdefault("labels", {}).update({
                "kustomize.toolkit.fluxcd.io/name": f"{mesh.prefix}-{part}",
                "kustomize.toolkit.fluxcd.io/namespace": "flux-system"})
        diff = kubectl("diff", "--server-side", "--force-conflicts", "--field-manager", "kustomize-controller",
                       "-f", "-", input=dump(documents), check=False)
        assert diff.returncode == 0, f"{part} differs from Git:\n{diff.stdout}{diff.stderr}"

    def changes(part):
        return sorted((e["message"], e.get("count", 1)) for e in events(mesh, part)
                      if any(word in e["message"] for word in (" configured", " created")))

    before = {part: changes(part) for part in ("domains", "products")}
    for _ in range(2):
        for part in ("domains", "products"):
            token = request(KUSTOMIZATION, f"{mesh.prefix}-{part}")
            wait_for(lambda: mesh.kustomization(part).get("status", {}).get("lastHandledReconcileAt") == token
                     and mesh.ready(part)["status"] == "True", timeout=TIMEOUT, message=f"{part} reconciled")
    after = {part: changes(part) for part in ("domains", "products")}
    assert after == before, yaml.safe_dump({"before": before, "after": after})
