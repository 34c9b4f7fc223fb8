"""The chart's ValidatingAdmissionPolicies, enforced by the real kube-apiserver of the local platform.

The policies are rendered by the chart (with values that reserve a few more names), applied, and
exercised with server-side dry runs: nothing the tests submit is stored. The policies apply to the
whole cluster, and the other suites (and tests/admission.rs) create objects they would refuse, as a
cluster without the policies allows: so the module fixture deletes the policies and their bindings
again, and waits until the API server no longer enforces them, before any other module runs.
"""

import json
import time

import pytest
import yaml

from conftest import REPO_DIR, kubectl, run, unique, wait_established

CHART = str(REPO_DIR / "charts" / "datamesh-operator")
CRDS = str(REPO_DIR / "crds" / "datamesh.dev.yaml")
CRD_NAMES = ("domains.datamesh.dev", "dataproducts.datamesh.dev", "accesspolicies.datamesh.dev")
POLICY_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
DOMAIN_LABEL = "datamesh.dev/domain"


def dry_run(manifest):
    """Server-side dry run of creating one object: admission runs, nothing is stored."""
    return kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(manifest), check=False)


def domain(name, namespace=None):
    spec = {"description": "A domain of the admission policy tests"}
    if namespace:
        spec["namespace"] = namespace
    return {"apiVersion": "datamesh.dev/v1alpha1", "kind": "Domain", "metadata": {"name": name}, "spec": spec}


def product(namespace, domain_name, name="orders"):
    return {
        "apiVersion": "datamesh.dev/v1alpha1",
        "kind": "DataProduct",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "domain": domain_name,
            "description": {"purpose": "Orders as they happen", "usage": "One event per order change"},
            "owner": {"name": "alice"},
            "outputPorts": [{"name": "events", "kafka": {}}],
        },
    }


def access_policy(namespace):
    return {
        "apiVersion": "datamesh.dev/v1alpha1",
        "kind": "AccessPolicy",
        "metadata": {"name": "marketing-reads-orders", "namespace": namespace},
        "spec": {"dataProduct": "orders", "consumers": [{"domain": "marketing"}]},
    }


def refused(manifest, *fragments):
    """Asserts the API server refuses the manifest with an answer containing every fragment."""
    result = dry_run(manifest)
    assert result.returncode != 0, f"accepted, but must be refused:\n{json.dumps(manifest, indent=2)}"
    for fragment in fragments:
        assert fragment in result.stderr, f"the refusal does not say {fragment!r}:\n{result.stderr}"
    return result.stderr


def accepted(manifest):
    result = dry_run(manifest)
    assert result.returncode == 0, f"refused:\n{result.stderr}\n{json.dumps(manifest, indent=2)}"


def wait_until(condition, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not {what} after {timeout}s"
        time.sleep(0.5)


class Installed:
    """The names the policies were rendered with."""

    def __init__(self, release, operator_namespace, reserved, super_user, s3_user, s3_access_key):
        self.release = release
        self.operator_namespace = operator_namespace
        self.reserved = reserved
        self.super_user = super_user
        self.s3_user = s3_user
        self.s3_access_key = s3_access_key


@pytest.fixture(scope="module")
def policies():
    kubectl("apply", "--server-side", "--force-conflicts", "-f", CRDS)
    wait_established(*CRD_NAMES)

    installed = Installed(
        release=unique("dm-policies"),
        operator_namespace=unique("mesh-ops"),
        reserved=unique("finance-ops"),
        super_user=unique("kafka-ops"),
        s3_user=unique("s3-root"),
        s3_access_key=unique("Storage-Admin"),
    )
    rendered = run(["helm", "template", installed.release, CHART, "--namespace", installed.operator_namespace,
                    "--set", f"tenancy.reservedDomainNames={{{installed.reserved}}}",
                    "--set", f"kafka.superUsers={{User:{installed.super_user}}}",
                    "--set", f"s3.adminUser={installed.s3_user}",
                    "--set", f"s3.adminAccessKey={installed.s3_access_key}"]).stdout
    objects = [o for o in yaml.safe_load_all(rendered) if o and o["kind"] in POLICY_KINDS]
    assert sorted(o["kind"] for o in objects) == sorted(POLICY_KINDS * 3), objects
    names = [f"{o['kind'].lower()}/{o['metadata']['name']}" for o in objects]

    # A Domain named after a reserved name is refused exactly while the policies are enforced.
    canary = domain(installed.reserved)

    def enforced():
        return dry_run(canary).returncode != 0

    try:
        kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))
        # The API server compiles a new policy and its binding a moment after they are stored.
        wait_until(enforced, "enforced")
        yield installed
    finally:
        kubectl("delete", "--ignore-not-found", "--wait=true", *names)
        wait_until(lambda: not enforced(), "lifted once the policies were deleted")
        left = kubectl("get", "validatingadmissionpolicies,validatingadmissionpolicybindings",
                       "-l", f"app.kubernetes.io/instance={installed.release}", "-o", "name").stdout
        assert left.strip() == "", f"policies left behind: {left}"


@pytest.fixture
def domain_namespace():
    """A namespace labelled for a domain, as the operator labels the namespace a Domain owns."""
    name, owner = unique("policy-payments"), unique("payments")
    kubectl("create", "namespace", name)
    kubectl("label", "namespace", name, f"{DOMAIN_LABEL}={owner}")
    yield name, owner
    kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture
def plain_namespace():
    name = unique("policy-plain")
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false")


def test_a_product_must_name_the_domain_of_its_namespace(policies, domain_namespace):
    namespace, owner = domain_namespace
    other = unique("marketing")
    refused(product(namespace, other), "spec.domain:", f"namespace {namespace} belongs to Domain {owner}, not {other}",
            f"set spec.domain: {owner}")
    accepted(product(namespace, owner))


def test_a_product_in_a_namespace_of_no_domain_is_refused(policies, plain_namespace):
    refused(product(plain_namespace, "payments"), "metadata.namespace:",
            f"namespace {plain_namespace} belongs to no Domain", "datamesh.dev/domain")


def test_an_access_policy_must_live_in_a_namespace_of_a_domain(policies, plain_namespace, domain_namespace):
    refused(access_policy(plain_namespace), "metadata.namespace:",
            f"namespace {plain_namespace} belongs to no Domain", "AccessPolicy")
    accepted(access_policy(domain_namespace[0]))


def test_a_domain_may_not_take_a_reserved_name(policies):
    reserved_name = [
        (policies.operator_namespace, "the operator's namespace"),
        ("admin", "the Kafka admin user (kafka.adminUser, the chart's default)"),
        (policies.super_user, "a Kafka super user given as User:<name>"),
        (policies.s3_user, "the S3 admin user"),
        (policies.s3_access_key.lower(), "the S3 admin access key, in any case"),
        (policies.reserved, "tenancy.reservedDomainNames"),
    ]
    for name, why in reserved_name:
        stderr = refused(domain(name), "metadata.name: " + name + " is reserved")
        assert "denied request" in stderr and "domain-reserved-names" in stderr, f"{why}: {stderr}"
    # The CRD's own rule refuses these before the policy is asked; either way, the field is named.
    refused(domain("default"), "spec.namespace", "must not be 'default'")
    refused(domain("kube-foo"), "spec.namespace", "'kube-' system namespace")
    refused(domain(unique("payments"), namespace="kube-foo"), "spec.namespace", "'kube-' system namespace")


def test_a_domain_may_not_take_a_reserved_namespace(policies):
    for namespace in (policies.operator_namespace, policies.reserved, "admin"):
        refused(domain(unique("payments"), namespace=namespace),
                f"spec.namespace: the Domain's namespace {namespace}", "is reserved")


def test_valid_objects_are_accepted(policies, domain_namespace):
    accepted(domain(unique("payments")))
    accepted(domain(unique("payments"), namespace=unique("payments-prod")))
    # Names that merely contain a reserved one are not reserved.
    accepted(domain(f"{policies.reserved}-two"))
    accepted(domain("administration"))
    namespace, owner = domain_namespace
    accepted(product(namespace, owner, name="refunds"))
    accepted(access_policy(namespace))
