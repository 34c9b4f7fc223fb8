"""How GitOps tools see the operator's objects: the Argo CD health check the chart ships
(`charts/datamesh-operator/argocd/health.lua`) and kstatus (what Flux's `wait` computes), both read
by `e2e/tools/meshstatus`: cli-utils' kstatus and gopher-lua, the Lua Argo CD runs, on the objects
as `kubectl get -o json` returns them.

The live test controls when the operator runs, so each state is seen for certain: an object the
operator has not reconciled yet, Ready, changed while the operator is stopped (an older
generation's status), and Stalled.
"""

import json

import pytest
import yaml

from conftest import REPO_DIR, apply, kubectl, unique
from gitops import HEALTH_LUA, meshstatus_reader
from operator_process import OperatorProcess, install_chart_rbac, install_crds, wait_for, workdir

API = "datamesh.dev/v1alpha1"


@pytest.fixture(scope="module")
def meshstatus():
    return meshstatus_reader()


def conditions(generation, ready, reconciling="False", stalled="False", observed=None, message="m"):
    observed = generation if observed is None else observed
    return [{"type": t, "status": s, "observedGeneration": observed, "reason": f"{t}Reason",
             "message": f"{t}: {message}", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            for t, s in (("Ready", ready), ("Reconciling", reconciling), ("Stalled", stalled))]


def obj(generation, status):
    o = {"apiVersion": API, "kind": "DataProduct", "metadata": {"name": "p", "namespace": "d", "generation": generation}}
    if status is not None:
        o["status"] = status
    return o


@pytest.mark.parametrize("status, argocd, kstatus", [
    # Not reconciled yet: Argo CD waits. kstatus calls an object without status Current (its rule
    # for kinds it knows nothing about); nothing the operator writes can change that before its
    # first reconcile.
    (None, "Progressing", "Current"),
    ({"observedGeneration": 3, "conditions": conditions(3, "True")}, "Healthy", "Current"),
    ({"observedGeneration": 3, "conditions": conditions(3, "False", reconciling="True")}, "Progressing", "InProgress"),
    ({"observedGeneration": 3, "conditions": conditions(3, "False", stalled="True")}, "Degraded", "Failed"),
    # Ready, but for generation 2: the spec changed since.
    ({"observedGeneration": 2, "conditions": conditions(3, "True", observed=2)}, "Progressing", "InProgress"),
    ({"observedGeneration": 2, "conditions": conditions(3, "False", stalled="True", observed=2)},
     "Progressing", "InProgress"),
])
def test_health_of_each_state(meshstatus, status, argocd, kstatus):
    [seen] = meshstatus(obj(3, status))
    assert (seen["argocd"]["status"], seen["kstatus"]) == (argocd, kstatus), seen
    if argocd == "Degraded":
        assert seen["argocd"]["message"] == "Stalled: m"


@pytest.fixture(scope="module")
def platform():
    install_crds()
    install_chart_rbac()
    return workdir()


def product(domain, partitions):
    apply({"apiVersion": API, "kind": "DataProduct", "metadata": {"name": "orders", "namespace": domain},
           "spec": {"domain": domain, "owner": {"name": "alice"}, "description": {"purpose": "p", "usage": "u"},
                    "outputPorts": [{"name": "events", "kafka": {"partitions": partitions}}]}})


def seen(meshstatus, *args):
    [one] = meshstatus(json.loads(kubectl("get", *args, "-o", "json").stdout))
    return one["argocd"]["status"], one["kstatus"], one


def test_health_follows_the_operator(platform, meshstatus):
    domain = unique("health")
    apply({"apiVersion": API, "kind": "Domain", "metadata": {"name": domain}, "spec": {}})
    assert seen(meshstatus, "domain", domain)[0] == "Progressing", "not reconciled yet"

    operator = OperatorProcess(platform, "health-1")
    try:
        kubectl("wait", "--for", "condition=Ready", "--timeout", "90s", f"domain/{domain}")
        product(domain, 1)
        kubectl("wait", "--for", "condition=Ready", "--timeout", "90s", "dataproduct/orders", "-n", domain)
        for args in (("domain", domain), ("dataproduct", "orders", "-n", domain)):
            assert seen(meshstatus, *args)[:2] == ("Healthy", "Current"), args
    finally:
        assert operator.terminate() == 0, operator.logs()

    # Changed while nobody reconciles: the status describes the previous generation.
    product(domain, 2)
    assert seen(meshstatus, "dataproduct", "orders", "-n", domain)[:2] == ("Progressing", "InProgress")

    operator = OperatorProcess(platform, "health-2")
    try:
        wait_for(lambda: seen(meshstatus, "dataproduct", "orders", "-n", domain)[:2] == ("Healthy", "Current"),
                 timeout=90, message="Healthy and Current at generation 2")
        product(domain, 1)  # fewer partitions: refused, Stalled until a person acts
        argocd, kstatus, one = wait_for(
            lambda: (s := seen(meshstatus, "dataproduct", "orders", "-n", domain))[0] == "Degraded" and s,
            timeout=90, message="Degraded")
        assert kstatus == "Failed", one
        stalled = next(c for c in json.loads(kubectl("get", "dataproduct", "orders", "-n", domain, "-o", "json")
                                             .stdout)["status"]["conditions"] if c["type"] == "Stalled")
        assert one["argocd"]["message"] == stalled["message"] and "partition" in stalled["message"].lower()
    finally:
        kubectl("delete", "dataproduct", "orders", "-n", domain, "--timeout", "60s")
        assert operator.terminate() == 0, operator.logs()


def test_readme_snippet_is_the_shipped_check():
    readme = (REPO_DIR / "README.md").read_text()
    snippet = readme.split("```yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\n", 1)[1]
    config_map = yaml.safe_load("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\n"
                                + snippet.split("```", 1)[0])
    lua = HEALTH_LUA.read_text()
    assert config_map["data"] == {f"resource.customizations.health.datamesh.dev_{kind}": lua
                                  for kind in ("Domain", "DataProduct", "AccessPolicy")}
