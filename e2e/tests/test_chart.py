"""The Helm chart and the kustomize bases, against the real kube-apiserver of the local platform.

What is checked here: `helm lint --strict`; that the chart's renders and the kustomize bases are
accepted by the API server (server-side dry run, in namespaces enforcing the `restricted` Pod
Security Standard); that values.schema.json refuses bad values; that the operator's ClusterRole
lists exactly the permissions the operator uses, without wildcards; that the installed RBAC
grants the operator, domain owners and Spark drivers what they need and nothing past it; that
config/ holds the same objects as the chart's default render; and that the samples are a
consistent mesh the API server accepts.
"""

import copy
import json
import re
import time

import pytest
import yaml

from conftest import REPO_DIR, env, kubectl, run, unique, wait_established

CHART = str(REPO_DIR / "charts" / "datamesh-operator")
CRDS = str(REPO_DIR / "crds" / "datamesh.dev.yaml")
CONFIG = REPO_DIR / "config"
CRD_NAMES = ("domains.datamesh.dev", "dataproducts.datamesh.dev", "accesspolicies.datamesh.dev")

# The permissions the operator uses (src/controller, src/provision), one tuple per
# (API group, resource, verb, resource name or None). The chart must grant exactly these.
OPERATOR_CLUSTER_PERMISSIONS = {
    *((("datamesh.dev", r, v, None) for r in ("domains", "dataproducts", "accesspolicies")
       for v in ("get", "list", "watch", "patch", "update"))),
    *((("datamesh.dev", f"{r}/status", v, None) for r in ("domains", "dataproducts", "accesspolicies")
       for v in ("get", "patch", "update"))),
    *((("datamesh.dev", f"{r}/finalizers", "update", None) for r in ("domains", "dataproducts", "accesspolicies"))),
    *((("", r, v, None) for r in ("namespaces", "serviceaccounts", "secrets", "configmaps", "resourcequotas")
       for v in ("get", "list", "watch", "create", "patch", "update", "delete"))),
    *((("rbac.authorization.k8s.io", r, v, None) for r in ("roles", "rolebindings")
       for v in ("get", "list", "watch", "create", "patch", "update", "delete"))),
    ("rbac.authorization.k8s.io", "clusterroles", "bind", "datamesh-domain-admin"),
    ("rbac.authorization.k8s.io", "clusterroles", "bind", "datamesh-spark-driver"),
    ("events.k8s.io", "events", "create", None),
    ("events.k8s.io", "events", "patch", None),
    *((("sparkoperator.k8s.io", r, v, None) for r in ("sparkapplications", "scheduledsparkapplications")
       for v in ("get", "list", "watch", "create", "patch", "update", "delete"))),
}
OPERATOR_NAMESPACE_PERMISSIONS = {
    ("coordination.k8s.io", "leases", "create", None),
    ("coordination.k8s.io", "leases", "get", "datamesh-operator"),
    ("coordination.k8s.io", "leases", "update", "datamesh-operator"),
    ("", "secrets", "get", "kafka-admin"),
    ("", "secrets", "get", "s3-admin"),
}


# ---------------------------------------------------------------------------------------------
# helpers


def helm(*args, check=True):
    return run(["helm", "--kubeconfig", env("KUBECONFIG"), *args], check=check)


def render(*set_args, release="datamesh-operator", namespace="datamesh-system"):
    """`helm template` of the chart, as text; set_args are `key=value` for --set."""
    args = ["template", release, CHART, "--namespace", namespace]
    for value in set_args:
        args += ["--set", value]
    return helm(*args).stdout


def documents(text):
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(objects, kind, name=None):
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert found, f"no {kind} {name or ''} among {[(o['kind'], o['metadata']['name']) for o in objects]}"
    return found


def permissions(role):
    """A Role's or ClusterRole's rules as a set of (group, resource, verb, resource name or None)."""
    granted = set()
    for rule in role.get("rules", []):
        names = rule.get("resourceNames") or [None]
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for verb in rule.get("verbs", []):
                    granted.update((group, resource, verb, name) for name in names)
    return granted


def fresh_namespace(prefix):
    """A new namespace that enforces (and warns about) the `restricted` Pod Security Standard."""
    namespace = unique(prefix)
    kubectl("create", "namespace", namespace)
    kubectl("label", "namespace", namespace,
            "pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/warn=restricted")
    return namespace


def dry_run_apply(manifests, namespace=None):
    """Server-side apply as a dry run: the API server validates and admits, nothing is stored."""
    args = ["apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", "-"]
    if namespace:
        args += ["-n", namespace]
    result = kubectl(*args, input=manifests, check=False)
    assert result.returncode == 0, f"the API server refused:\n{result.stderr}"
    assert "would violate PodSecurity" not in result.stderr, result.stderr
    return result


def can_i(user, verb, resource, namespace=None, subresource=None):
    args = ["auth", "can-i", verb, resource, "--as", user]
    if namespace:
        args += ["-n", namespace]
    if subresource:
        args += ["--subresource", subresource]
    answer = kubectl(*args, check=False).stdout.strip()
    assert answer in ("yes", "no"), f"kubectl auth can-i {verb} {resource} as {user}: {answer!r}"
    return answer == "yes"


@pytest.fixture(scope="module")
def datamesh_crds():
    """The datamesh.dev CRDs, installed (as the chart and config/crd would) and Established."""
    kubectl("apply", "--server-side", "--force-conflicts", "-f", CRDS)
    wait_established(*CRD_NAMES)


@pytest.fixture
def namespace():
    name = fresh_namespace("chart")
    yield name
    kubectl("delete", "namespace", name, "--wait=false")


# ---------------------------------------------------------------------------------------------
# the chart


def test_helm_lint_is_clean_in_strict_mode():
    result = helm("lint", "--strict", CHART, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


def test_default_render_is_accepted_by_the_api_server(namespace):
    rendered = render(namespace=namespace)
    objects = documents(rendered)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(["ServiceAccount", "ConfigMap", "ClusterRole", "ClusterRole", "ClusterRole",
                            "ClusterRoleBinding", "Role", "RoleBinding", "Service", "Deployment",
                            *["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"] * 3])
    result = dry_run_apply(rendered, namespace)
    assert result.stdout.count("(server dry run)") == len(objects), result.stdout


def test_service_monitor_is_rendered_only_when_enabled_and_selects_the_metrics_service(namespace):
    assert not [o for o in documents(render()) if o["kind"] == "ServiceMonitor"]

    objects = documents(render("metrics.serviceMonitor.enabled=true",
                               "metrics.serviceMonitor.labels.release=prometheus", namespace=namespace))
    (monitor,) = find(objects, "ServiceMonitor")
    (service,) = find(objects, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [namespace]}
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items(), "the ServiceMonitor must select the Service"
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    assert [p["name"] for p in service["spec"]["ports"]] == ["metrics"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    # The cluster has no prometheus-operator CRDs: everything but the ServiceMonitor must apply.
    rest = [o for o in objects if o["kind"] != "ServiceMonitor"]
    dry_run_apply(yaml.safe_dump_all(rest), namespace)


def test_catalog_is_off_by_default_and_when_on_its_service_and_ingress_reach_the_pod(namespace):
    default = documents(render())
    (deployment,) = find(default, "Deployment")
    assert "--catalog-addr" not in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [o for o in default if o["kind"] == "Ingress" or o["metadata"]["name"].endswith("-catalog")]

    objects = documents(render("catalog.enabled=true", "catalog.ingress.enabled=true",
                               "catalog.ingress.host=catalog.mesh.example", namespace=namespace))
    (deployment,) = find(objects, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[args.index("--catalog-addr") + 1] == "0.0.0.0:8081"
    assert {"name": "catalog", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    (service,) = [o for o in find(objects, "Service") if o["metadata"]["name"].endswith("-catalog")]
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["catalog"]
    (ingress,) = find(objects, "Ingress")
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "catalog.mesh.example"
    assert rule["http"]["paths"][0]["backend"]["service"]["name"] == service["metadata"]["name"]
    dry_run_apply(yaml.safe_dump_all(o for o in objects if o["kind"] != "ServiceMonitor"), namespace)
    # A product page lists the product's recent Events: that read, and only it, comes with the catalog.
    (role,) = [r for r in find(objects, "ClusterRole") if r["metadata"]["name"] == "datamesh-operator"]
    assert permissions(role) == OPERATOR_CLUSTER_PERMISSIONS | {("events.k8s.io", "events", "list", None)}


@pytest.mark.parametrize("value, message", [
    ("replicaCount=two", "at '/replicaCount': got string, want integer"),
    ("kafka.adminPassword=hunter2", "additional properties 'adminPassword' not allowed"),
    ("s3.adminSecretKey=hunter2", "additional properties 'adminSecretKey' not allowed"),
    ("logFormat=xml", "at '/logFormat'"),
    ("image.pullPolicy=Sometimes", "at '/image/pullPolicy'"),
    ("metrics.port=80", "at '/metrics/port'"),
    ("kafka.bootstrapServers=kafka", "at '/kafka/bootstrapServers'"),
    ("kafka.adminPasswordSecret.name=Not_A_Name", "at '/kafka/adminPasswordSecret/name'"),
    ("resyncSeconds=0", "at '/resyncSeconds'"),
    ("serviceAccount.create=false", "at '/serviceAccount/name'"),
    ("tenancy.reservedDomainNames={Not_A_Name}", "at '/tenancy/reservedDomainNames/0'"),
    ("tenancy.reservedNames={x}", "additional properties 'reservedNames' not allowed"),
    ("kafka.superUsers=admin", "at '/kafka/superUsers'"),
    ("admissionPolicies.enabled=maybe", "at '/admissionPolicies/enabled'"),
    ("catalog.port=80", "at '/catalog/port'"),
    ("kafka.securityProtocol=TLS", "at '/kafka/securityProtocol'"),
    ("kafka.saslMechanism=PLAIN", "at '/kafka/saslMechanism'"),
    ("kafka.domainSecurityProtocol=SSL", "at '/kafka/domainSecurityProtocol'"),
    ("kafka.domainBootstrapServers=kafka", "at '/kafka/domainBootstrapServers'"),
    ("kafka.tls.caSecret.name=Not_A_Name", "at '/kafka/tls/caSecret/name'"),
    ("kafka.tls.verifyHostname=maybe", "at '/kafka/tls/verifyHostname'"),
    ("kafka.tls.caFile=/etc/ca.pem", "additional properties 'caFile' not allowed"),
    ("s3.credentials=irsa", "at '/s3/credentials'"),
    ("s3.addressing=dns", "at '/s3/addressing'"),
    ("s3.retryMode=legacy", "at '/s3/retryMode'"),
    ("s3.maxAttempts=0", "at '/s3/maxAttempts'"),
    ("s3.iamRegion=EU West", "at '/s3/iamRegion'"),
])
def test_values_schema_refuses_bad_values(value, message):
    result = helm("template", "datamesh-operator", CHART, "--set", value, check=False)
    assert result.returncode != 0, f"--set {value} was accepted"
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr
    assert message in result.stderr, result.stderr


def test_two_replicas_need_leader_election():
    refused = helm("template", "datamesh-operator", CHART, "--set", "replicaCount=2",
                   "--set", "leaderElection.enabled=false", check=False)
    assert refused.returncode != 0
    assert "replicaCount above 1 needs leaderElection.enabled" in refused.stderr

    (deployment,) = find(documents(render("replicaCount=2")), "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert "--leader-elect=false" not in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    (single,) = find(documents(render("leaderElection.enabled=false")), "Deployment")
    assert single["spec"]["template"]["spec"]["containers"][0]["args"][-1] == "--leader-elect=false"


def test_operator_rbac_lists_exactly_what_the_operator_uses_and_no_wildcard():
    objects = documents(render())
    (cluster_role,) = find(objects, "ClusterRole", "datamesh-operator")
    assert permissions(cluster_role) == OPERATOR_CLUSTER_PERMISSIONS
    (role,) = find(objects, "Role", "datamesh-operator")
    assert role["metadata"]["namespace"] == "datamesh-system"
    assert permissions(role) == OPERATOR_NAMESPACE_PERMISSIONS
    for rbac in [o for o in objects if o["kind"] in ("ClusterRole", "Role")]:
        assert "*" not in json.dumps(rbac.get("rules")), f"{rbac['kind']} {rbac['metadata']['name']} has a wildcard"
    # Both bindings give the roles to the operator's ServiceAccount.
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        (binding,) = find(objects, kind, "datamesh-operator")
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind,
                                      "name": "datamesh-operator"}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "datamesh-operator",
                                        "namespace": "datamesh-system"}]


def test_domain_roles_follow_their_values():
    objects = documents(render("rbac.domainAdminClusterRole.name=mesh-owner",
                               "rbac.sparkDriverClusterRole.name=mesh-spark",
                               "rbac.domainAdminClusterRole.aggregateToAdmin=false"))
    (operator,) = find(objects, "ClusterRole", "datamesh-operator")
    assert {p for p in permissions(operator) if p[2] == "bind"} == {
        ("rbac.authorization.k8s.io", "clusterroles", "bind", "mesh-owner"),
        ("rbac.authorization.k8s.io", "clusterroles", "bind", "mesh-spark"),
    }
    (admin,) = find(objects, "ClusterRole", "mesh-owner")
    assert "rbac.authorization.k8s.io/aggregate-to-admin" not in admin["metadata"]["labels"]
    find(objects, "ClusterRole", "mesh-spark")
    (config_map,) = find(objects, "ConfigMap")
    assert yaml.safe_load(config_map["data"]["config.yaml"])["domainAdminClusterRole"] == "mesh-owner"


def test_domain_admin_role_manages_products_but_not_secrets_or_rbac():
    (admin,) = find(documents(render()), "ClusterRole", "datamesh-domain-admin")
    assert admin["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    granted = permissions(admin)
    for resource in ("dataproducts", "accesspolicies"):
        for verb in ("get", "list", "watch", "create", "update", "patch", "delete"):
            assert ("datamesh.dev", resource, verb, None) in granted
        assert ("datamesh.dev", f"{resource}/status", "get", None) in granted
    writes = {"create", "update", "patch", "delete", "deletecollection"}
    assert not {p for p in granted if p[0] == "" and p[1] == "secrets"}
    assert not {p for p in granted if p[0] == "rbac.authorization.k8s.io"}
    assert not {p for p in granted if p[2] in writes and p[0] != "datamesh.dev"}
    assert ("", "pods/log", "get", None) in granted
    assert ("sparkoperator.k8s.io", "scheduledsparkapplications", "list", None) in granted


def test_admission_policies_are_on_by_default_deny_and_reserve_the_platform_names():
    objects = documents(render())
    policies = {o["metadata"]["name"]: o for o in find(objects, "ValidatingAdmissionPolicy")}
    bindings = find(objects, "ValidatingAdmissionPolicyBinding")
    assert sorted(policies) == ["datamesh-operator-accesspolicy-namespace", "datamesh-operator-dataproduct-namespace",
                                "datamesh-operator-domain-reserved-names"]
    assert sorted(b["spec"]["policyName"] for b in bindings) == sorted(policies)
    assert all(b["spec"]["validationActions"] == ["Deny"] for b in bindings)
    for policy in policies.values():
        assert policy["spec"]["failurePolicy"] == "Fail"
        (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
        assert rule["apiGroups"] == ["datamesh.dev"] and rule["operations"] == ["CREATE"]

    def reserved(*set_args):
        (policy,) = [p for p in find(documents(render(*set_args, namespace="mesh-ops")), "ValidatingAdmissionPolicy")
                     if p["metadata"]["name"].endswith("domain-reserved-names")]
        (variable,) = [v for v in policy["spec"]["variables"] if v["name"] == "reserved"]
        return json.loads(variable["expression"])

    assert reserved() == ["admin", "default", "mesh-ops"]
    assert reserved("kafka.adminUser=kafka-root", "kafka.superUsers={User:ops,Audit}", "s3.adminAccessKey=AKIAROOT",
                    "s3.adminUser=s3-root", "tenancy.reservedDomainNames={monitoring,argocd}") == [
        "akiaroot", "argocd", "audit", "default", "kafka-root", "mesh-ops", "monitoring", "ops", "s3-root"]

    assert not [o for o in documents(render("admissionPolicies.enabled=false"))
                if o["kind"].startswith("ValidatingAdmissionPolicy")]


def test_config_file_carries_the_reserved_names_only_when_set():
    def config(*set_args):
        (config_map,) = find(documents(render(*set_args)), "ConfigMap")
        return yaml.safe_load(config_map["data"]["config.yaml"])

    default = config()
    assert "reservedDomainNames" not in default
    assert "superUsers" not in default["kafka"] and "adminUser" not in default["s3"]
    given = config("tenancy.reservedDomainNames={monitoring,argocd}", "kafka.superUsers={ops}", "s3.adminUser=s3-root")
    assert given["reservedDomainNames"] == ["monitoring", "argocd"]
    assert given["kafka"]["superUsers"] == ["ops"]
    assert given["s3"]["adminUser"] == "s3-root"


def test_config_file_references_the_credential_secrets_in_the_release_namespace():
    objects = documents(render("kafka.adminPasswordSecret.name=vault-kafka",
                               "kafka.adminPasswordSecret.key=pw",
                               "s3.iamEndpoint=http://iam:8111", namespace="mesh-ops"))
    (config_map,) = find(objects, "ConfigMap")
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    assert config["kafka"]["adminPassword"] == {
        "secretKeyRef": {"namespace": "mesh-ops", "name": "vault-kafka", "key": "pw"}}
    assert config["s3"]["adminSecretKey"] == {
        "secretKeyRef": {"namespace": "mesh-ops", "name": "s3-admin", "key": "secretKey"}}
    assert config["s3"]["iamEndpoint"] == "http://iam:8111"
    assert "region" not in config["s3"], "an empty region is left to the operator's default"
    assert config["resyncSeconds"] == 300
    (role,) = find(objects, "Role")
    assert {p[3] for p in permissions(role) if p[1] == "secrets"} == {"vault-kafka", "s3-admin"}


def test_config_file_carries_the_kafka_connection_and_the_role_reads_only_the_secrets_it_names():
    def rendered(*set_args):
        objects = documents(render(*set_args, namespace="mesh-ops"))
        (config_map,) = find(objects, "ConfigMap")
        (role,) = find(objects, "Role")
        secrets = {p[3] for p in permissions(role) if p[1] == "secrets"}
        return yaml.safe_load(config_map["data"]["config.yaml"])["kafka"], secrets

    # The default: SASL_SSL with SCRAM-SHA-512, the system's CAs, hostname verification on.
    kafka, secrets = rendered()
    assert (kafka["securityProtocol"], kafka["saslMechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert "tls" not in kafka and "domainBootstrapServers" not in kafka and "domainSecurityProtocol" not in kafka
    assert secrets == {"kafka-admin", "s3-admin"}

    kafka, secrets = rendered("kafka.tls.caSecret.name=kafka-ca", "kafka.saslMechanism=SCRAM-SHA-256")
    assert kafka["saslMechanism"] == "SCRAM-SHA-256"
    assert kafka["tls"] == {"caCertificate": {"secretKeyRef": {"namespace": "mesh-ops", "name": "kafka-ca",
                                                                "key": "ca.crt"}},
                            "verifyHostname": True}
    assert secrets == {"kafka-admin", "s3-admin", "kafka-ca"}

    # Mutual TLS: the certificate and key from one Secret, no password, the domains' listener named.
    kafka, secrets = rendered("kafka.securityProtocol=SSL", "kafka.tls.caSecret.name=kafka-ca",
                              "kafka.tls.clientCertificateSecret.name=operator-tls",
                              "kafka.domainSecurityProtocol=SASL_SSL", "kafka.domainBootstrapServers=kafka:9093",
                              "kafka.tls.verifyHostname=false")
    assert kafka["securityProtocol"] == "SSL"
    assert "adminPassword" not in kafka
    tls_secret = {"namespace": "mesh-ops", "name": "operator-tls"}
    assert kafka["tls"] == {
        "caCertificate": {"secretKeyRef": {"namespace": "mesh-ops", "name": "kafka-ca", "key": "ca.crt"}},
        "clientCertificate": {"secretKeyRef": {**tls_secret, "key": "tls.crt"}},
        "clientKey": {"secretKeyRef": {**tls_secret, "key": "tls.key"}},
        "verifyHostname": False,
    }
    assert (kafka["domainSecurityProtocol"], kafka["domainBootstrapServers"]) == ("SASL_SSL", "kafka:9093")
    assert secrets == {"kafka-admin", "s3-admin", "kafka-ca", "operator-tls"}


def test_s3_connection_settings_reach_the_config_file_and_the_role():
    objects = documents(render("s3.region=eu-west-1", "s3.iamRegion=us-east-1", "s3.addressing=virtual",
                               "s3.retryMode=adaptive", "s3.maxAttempts=5", "s3.caBundleSecret.name=s3-ca",
                               namespace="mesh-ops"))
    (config_map,) = find(objects, "ConfigMap")
    s3 = yaml.safe_load(config_map["data"]["config.yaml"])["s3"]
    assert (s3["region"], s3["iamRegion"], s3["addressing"]) == ("eu-west-1", "us-east-1", "virtual")
    assert (s3["retryMode"], s3["maxAttempts"], s3["credentials"]) == ("adaptive", 5, "static")
    assert s3["caBundle"] == {"secretKeyRef": {"namespace": "mesh-ops", "name": "s3-ca", "key": "ca.crt"}}
    (role,) = find(objects, "Role")
    assert {p[3] for p in permissions(role) if p[1] == "secrets"} == {"kafka-admin", "s3-admin", "s3-ca"}

    # The default credential chain (IRSA, Pod Identity, ...): no static key, no admin Secret to read.
    objects = documents(render("s3.credentials=default"))
    (config_map,) = find(objects, "ConfigMap")
    s3 = yaml.safe_load(config_map["data"]["config.yaml"])["s3"]
    assert s3["credentials"] == "default"
    assert "adminAccessKey" not in s3 and "adminSecretKey" not in s3 and "caBundle" not in s3
    (role,) = find(objects, "Role")
    assert {p[3] for p in permissions(role) if p[1] == "secrets"} == {"kafka-admin"}


def test_deployment_runs_hardened_and_rolls_on_config_change():
    (deployment,) = find(documents(render()), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/datamesh-dev/datamesh-operator:" + yaml.safe_load(
        (REPO_DIR / "charts" / "datamesh-operator" / "Chart.yaml").read_text())["appVersion"]
    assert container["args"] == ["run", "--config", "/etc/datamesh/config.yaml",
                                 "--metrics-addr", "0.0.0.0:8080", "--log-format", "json"]
    assert {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]} == {
        "POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532
    assert "fsGroup" in pod["securityContext"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert set(container["resources"]) == {"requests", "limits"}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/etc/datamesh"]["readOnly"] is True

    def checksum(*set_args):
        (d,) = find(documents(render(*set_args)), "Deployment")
        return d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum() == checksum("podAnnotations.team=platform")
    assert checksum() != checksum("resyncSeconds=60")


def test_installed_rbac_grants_what_each_role_needs_and_nothing_past_it(datamesh_crds):
    """A real install (RBAC, no CRDs), then `kubectl auth can-i` as each subject the chart serves."""
    namespace = fresh_namespace("chart-rbac")
    release = unique("dm")
    domain_admin, spark_driver = f"{release}-domain-admin", f"{release}-spark-driver"
    other = fresh_namespace("chart-other")
    try:
        # No pod: the platform's node would run the image if it held it, and this release's
        # operator would reconcile the other suites' objects.
        helm("install", release, CHART, "--namespace", namespace, "--skip-crds", "--set", "replicaCount=0",
             "--set", f"rbac.domainAdminClusterRole.name={domain_admin}",
             "--set", f"rbac.sparkDriverClusterRole.name={spark_driver}")
        operator = f"system:serviceaccount:{namespace}:{release}-datamesh-operator"

        may = [
            ("get", "domains.datamesh.dev", None, None), ("watch", "dataproducts.datamesh.dev", other, None),
            ("patch", "accesspolicies.datamesh.dev", other, None),
            ("update", "domains.datamesh.dev", None, "finalizers"),
            ("patch", "dataproducts.datamesh.dev", other, "status"),
            ("create", "namespaces", None, None), ("delete", "namespaces", None, None),
            ("create", "secrets", other, None), ("create", "resourcequotas", other, None),
            ("create", "rolebindings", other, None), ("create", "roles", other, None),
            ("bind", f"clusterroles/{domain_admin}", None, None),
            ("bind", f"clusterroles/{spark_driver}", None, None),
            ("create", "events.events.k8s.io", other, None),
            ("create", "scheduledsparkapplications.sparkoperator.k8s.io", other, None),
            ("create", "leases.coordination.k8s.io", namespace, None),
            ("update", "leases.coordination.k8s.io/datamesh-operator", namespace, None),
            ("get", "secrets/kafka-admin", namespace, None),
        ]
        may_not = [
            ("create", "domains.datamesh.dev", None, None), ("delete", "dataproducts.datamesh.dev", other, None),
            ("bind", "clusterroles/cluster-admin", None, None), ("escalate", "clusterroles", None, None),
            ("create", "clusterroles", None, None), ("create", "clusterrolebindings", None, None),
            ("create", "pods", other, None), ("get", "nodes", None, None),
            ("create", "customresourcedefinitions.apiextensions.k8s.io", None, None),
            ("create", "leases.coordination.k8s.io", other, None),
            ("update", "leases.coordination.k8s.io/someone-else", namespace, None),
        ]
        assert [c for c in may if not can_i(operator, c[0], c[1], c[2], c[3])] == []
        assert [c for c in may_not if can_i(operator, c[0], c[1], c[2], c[3])] == []

        # A domain owner, bound in the domain's namespace as the operator binds owners.
        owner = unique("owner")
        kubectl("create", "rolebinding", "owners", "-n", other, f"--clusterrole={domain_admin}", f"--user={owner}")
        assert can_i(owner, "create", "dataproducts.datamesh.dev", other)
        assert can_i(owner, "delete", "accesspolicies.datamesh.dev", other)
        assert can_i(owner, "get", "dataproducts.datamesh.dev", other, "status")
        assert can_i(owner, "get", "pods", other, "log")
        assert can_i(owner, "list", "sparkapplications.sparkoperator.k8s.io", other)
        assert not can_i(owner, "update", "dataproducts.datamesh.dev", other, "status")
        assert not can_i(owner, "get", "secrets", other)
        assert not can_i(owner, "create", "secrets", other)
        assert not can_i(owner, "create", "rolebindings", other)
        assert not can_i(owner, "create", "sparkapplications.sparkoperator.k8s.io", other)
        assert not can_i(owner, "create", "dataproducts.datamesh.dev", namespace), "only in its own namespace"

        # A Spark driver, bound as the operator binds a product's ServiceAccount.
        driver = f"system:serviceaccount:{other}:spark"
        kubectl("create", "rolebinding", "spark", "-n", other, f"--clusterrole={spark_driver}",
                f"--serviceaccount={other}:spark")
        assert can_i(driver, "create", "pods", other) and can_i(driver, "delete", "persistentvolumeclaims", other)
        assert can_i(driver, "create", "services", other) and can_i(driver, "list", "configmaps", other)
        assert not can_i(driver, "get", "secrets", other)
        assert not can_i(driver, "create", "pods", namespace)

        # The domain-admin role carries the label the built-in `admin` role aggregates. (The local
        # platform runs no clusterrole-aggregation controller, so the labels are compared.)
        admin = json.loads(kubectl("get", "clusterrole", "admin", "-o", "json").stdout)
        labels = json.loads(kubectl("get", "clusterrole", domain_admin, "-o", "json").stdout)["metadata"]["labels"]
        assert any(selector["matchLabels"].items() <= labels.items()
                   for selector in admin["aggregationRule"]["clusterRoleSelectors"])
    finally:
        helm("uninstall", release, "--namespace", namespace, check=False)
        kubectl("delete", "namespace", namespace, other, "--wait=false", check=False)
        # The release's ValidatingAdmissionPolicies apply to the whole cluster, and the other suites
        # create objects they refuse: uninstalling removed them, and nothing of them may remain.
        left = kubectl("get", "validatingadmissionpolicies,validatingadmissionpolicybindings",
                       "-l", f"app.kubernetes.io/instance={release}", "-o", "name").stdout
        assert left.strip() == "", f"helm uninstall left admission policies behind: {left}"
        # ... and the API server stops enforcing them a moment later: a Domain named after the
        # release namespace (which the release reserved) is accepted again.
        canary = json.dumps({"apiVersion": "datamesh.dev/v1alpha1", "kind": "Domain",
                             "metadata": {"name": namespace}, "spec": {}})
        deadline = time.monotonic() + 60
        while kubectl("create", "--dry-run=server", "-f", "-", input=canary, check=False).returncode != 0:
            assert time.monotonic() < deadline, "the uninstalled release's admission policies are still enforced"
            time.sleep(0.5)


# ---------------------------------------------------------------------------------------------
# config/ (kustomize)


def kustomize(directory):
    return kubectl("kustomize", str(CONFIG / directory)).stdout


def comparable(obj):
    """An object without what legitimately differs between the Helm and kustomize renders: the
    tool's own labels, the config checksum (kustomize hashes the ConfigMap's name instead) and
    that hash; and the config file parsed, so comments do not count."""
    obj = copy.deepcopy(obj)
    tool_labels = ("helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version")
    hashed = re.compile(r"^(datamesh-operator-config)-[a-z0-9]{10}$")
    for metadata in [obj["metadata"], obj.get("spec", {}).get("template", {}).get("metadata", {})]:
        for label in tool_labels:
            metadata.get("labels", {}).pop(label, None)
        metadata.get("annotations", {}).pop("checksum/config", None)
        if metadata.get("annotations") == {}:
            del metadata["annotations"]
    if obj["kind"] == "ConfigMap":
        obj["metadata"]["name"] = hashed.sub(r"\1", obj["metadata"]["name"])
        obj["data"]["config.yaml"] = yaml.safe_load(obj["data"]["config.yaml"])
    if obj["kind"] == "Deployment":
        for volume in obj["spec"]["template"]["spec"]["volumes"]:
            if "configMap" in volume:
                volume["configMap"]["name"] = hashed.sub(r"\1", volume["configMap"]["name"])
    return obj


def test_config_default_holds_the_same_objects_as_the_chart_default_render():
    def by_kind_and_name(objects):
        return {(o["kind"], o["metadata"]["name"]): o for o in map(comparable, objects)}

    chart = by_kind_and_name(documents(render()))
    kustomized = by_kind_and_name(o for o in documents(kustomize("default"))
                                  if o["kind"] not in ("Namespace", "CustomResourceDefinition"))
    assert sorted(kustomized) == sorted(chart)
    for key, obj in chart.items():
        assert kustomized[key] == obj, f"{key} differs between config/ and the chart"


def test_config_crd_is_the_generated_crds():
    def by_name(objects):
        return {o["metadata"]["name"]: o for o in objects}

    with open(CRDS) as generated:
        assert by_name(documents(kustomize("crd"))) == by_name(documents(generated.read()))


def test_config_default_is_accepted_by_the_api_server(datamesh_crds):
    """Applied with its namespace renamed, so the run neither needs nor touches datamesh-system."""
    namespace = unique("datamesh-system")
    objects = documents(kustomize("default").replace("datamesh-system", namespace))
    (ns,) = find(objects, "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    kubectl("apply", "-f", "-", input=yaml.safe_dump(ns))
    try:
        rest = [o for o in objects if o["kind"] != "Namespace"]
        result = dry_run_apply(yaml.safe_dump_all(rest))
        assert result.stdout.count("(server dry run)") == len(rest), result.stdout
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false")


def samples():
    return documents(kustomize("samples"))


def test_samples_are_a_small_consistent_mesh():
    objects = samples()
    domains = {d["metadata"]["name"]: d for d in find(objects, "Domain")}
    products = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in find(objects, "DataProduct")}
    policies = find(objects, "AccessPolicy")
    assert len(domains) >= 3 and len(products) >= 4 and len(policies) >= 2
    assert all(d["spec"].get("owners") and d["spec"].get("quotas") for d in domains.values())

    ports = {}
    for (namespace, name), product in products.items():
        spec = product["spec"]
        assert spec["domain"] in domains, f"{name}: no Domain {spec['domain']}"
        assert namespace == domains[spec["domain"]]["spec"].get("namespace", spec["domain"]), \
            f"{name} must live in its domain's namespace"
        for port in spec.get("outputPorts", []):
            ports[(spec["domain"], name, port["name"])] = product
    all_ports = [p for product in products.values() for p in product["spec"].get("outputPorts", [])]
    assert any("kafka" in p for p in all_ports) and any("bucket" in p for p in all_ports)
    assert any(p["spec"].get("transformation", {}).get("spark", {}).get("schedule") for p in products.values())
    assert any(p["spec"].get("sla") for p in products.values())
    assert "restricted" in {p["spec"].get("classification") for p in products.values()}

    # Every input names an existing output port of another domain, and a policy grants it.
    granted = set()
    for policy in policies:
        spec = policy["spec"]
        product = products.get((policy["metadata"]["namespace"], spec["dataProduct"]))
        assert product, f"AccessPolicy {policy['metadata']['name']}: no product {spec['dataProduct']} in its namespace"
        output_ports = [p["name"] for p in product["spec"]["outputPorts"]]
        assert set(spec.get("ports", [])) <= set(output_ports)
        if product["spec"].get("classification") == "restricted":
            assert spec.get("purpose") and spec.get("expiresAt"), "restricted data needs a purpose and an expiry"
        for consumer in spec["consumers"]:
            for port in spec.get("ports") or output_ports:
                granted.add((consumer.get("domain"), product["spec"]["domain"], spec["dataProduct"], port))
    assert any(p["spec"].get("purpose") and p["spec"].get("expiresAt") for p in policies)
    inputs = [(p["spec"]["domain"], i["dataProduct"]) for p in products.values() for i in p["spec"].get("inputPorts", [])]
    assert any(consumer != ref["domain"] for consumer, ref in inputs), "some input must cross domains"
    for consumer, ref in inputs:
        assert (ref["domain"], ref["name"], ref["port"]) in ports, f"input {ref} names no output port"
        if consumer != ref["domain"]:
            assert (consumer, ref["domain"], ref["name"], ref["port"]) in granted, f"no policy grants {consumer} {ref}"


def test_samples_are_accepted_by_the_api_server(datamesh_crds):
    """Applied with each domain's namespace renamed to a fresh one, so that the run neither
    creates nor deletes namespaces the operator (or another test) makes for real Domains;
    the Domains are cluster-scoped, and a dry run stores none of them."""
    objects = samples()
    renamed = {ns: unique(f"sample-{ns}") for ns in {o["metadata"]["namespace"] for o in objects
                                                      if "namespace" in o["metadata"]}}
    for ns in renamed.values():
        kubectl("create", "namespace", ns)
    try:
        for obj in objects:
            if "namespace" in obj["metadata"]:
                obj["metadata"]["namespace"] = renamed[obj["metadata"]["namespace"]]
        result = dry_run_apply(yaml.safe_dump_all(objects))
        assert result.stdout.count("(server dry run)") == len(objects), result.stdout
    finally:
        kubectl("delete", "namespace", *renamed.values(), "--wait=false")
