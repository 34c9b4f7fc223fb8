"""The opt-in node (`e2e/stack node up`): a real kubelet with containerd runs pods on this machine.

The module takes the node down if it is up, records the host's state, brings the node up, and
checks with kubectl, Kafka's own tools and boto3 on the host that:
- the node registers and is Ready, at its bridge address, with the pinned kubelet and containerd;
- a Deployment of a locally built image rolls out, and its pod reaches Kafka (SASL_SSL, the
  broker's pod listener, advertised at the bridge address) and S3 (HTTPS) at the bridge address,
  each verifying the platform's CA: what it wrote is read back on the host;
- a pod gets a ServiceAccount token and calls the API server at the Service address 10.0.0.1:443:
  the API server names it as its ServiceAccount and applies that account's RBAC;
- after `e2e/stack node down` nothing the node made is left: no process, mount, network namespace,
  bridge, veth, iptables rule or cgroup (each recorded while the node ran), and the host's links,
  mounts, routes and IP forwarding are what they were before.

The pods' client is an image built here with buildah from this machine's Debian Python 3.11 (its
standard library and the C libraries it loads) plus the tests' own confluent-kafka (librdkafka)
and boto3, so the clients in the pod are the same independent clients the other suites use.
"""

import json
import re
import shutil
import time
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from conftest import REPO_DIR, STACK, Kafka, apply, env, get_json, kubectl, run, s3_client, unique
from operator_process import wait_for
from test_leader_election import WRITE_VERBS, audit_events, audit_log

PYTHON = Path("/usr/bin/python3.11")
SITE_PACKAGES = ["confluent_kafka", "confluent_kafka.libs", "boto3", "botocore", "s3transfer", "jmespath",
                 "dateutil", "urllib3", "six.py"]
CLIENT_IMAGE = "localhost/datamesh-node-test-client:1"


def stack(*args, timeout=600):
    return run([STACK, *args], timeout=timeout)


def node_up() -> bool:
    return run([STACK, "node", "status"], check=False, timeout=60).returncode == 0


def links() -> set:
    return {link["ifname"] for link in json.loads(run(["ip", "-j", "link"]).stdout)}


def mount_points() -> set:
    return {line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def iptables_lines(node_id: str) -> list:
    return [line for line in run(["iptables-save"]).stdout.splitlines() if node_id in line]


def host_state() -> dict:
    return {
        "links": links(),
        "mounts": mount_points(),
        "routes": run(["ip", "-4", "route", "show"]).stdout,
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text(),
    }


@pytest.fixture(scope="module")
def node():
    """The node, up from a clean start, and the host's state from before it came up."""
    if Path(env("DATAMESH_STACK_RUN"), "node").exists() or node_up():
        stack("node", "down")
    before = host_state()
    assert not iptables_lines(env("DATAMESH_NODE_ID")), "rules of this node before it came up"
    stack("node", "up")
    return before


def buildah(store: Path, *args, timeout=600):
    return run(["buildah", "--root", str(store / "root"), "--runroot", str(store / "run"),
                "--storage-driver", "vfs", *args], timeout=timeout, extra_env={"BUILDAH_ISOLATION": "chroot"})


def shared_libraries(paths) -> set:
    libs = set()
    for path in paths:
        result = run(["ldd", str(path)], check=False)
        for line in result.stdout.splitlines():
            parts = line.split()
            if "=>" in parts and len(parts) > 2 and parts[2].startswith("/"):
                libs.add(parts[2])
            elif parts and parts[0].startswith("/"):
                libs.add(parts[0])
    return libs


@pytest.fixture(scope="module")
def client_image(node, tmp_path_factory):
    """The tests' Python clients as an image, imported into the node's containerd."""
    assert PYTHON.exists(), f"{PYTHON} (Debian's python3.11-minimal) is needed to build the pods' client image"
    assert shutil.which("buildah"), "buildah is not installed (.ci/run installs it from Debian)"
    import boto3
    import confluent_kafka
    site = Path(confluent_kafka.__file__).parent.parent
    assert Path(boto3.__file__).parent.parent == site
    work = tmp_path_factory.mktemp("node-client")
    root = work / "rootfs"
    stdlib = Path("/usr/lib/python3.11")
    shutil.copytree(stdlib, root / stdlib.relative_to("/"), symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "test", "tests", "idlelib", "tkinter",
                                                  "ensurepip", "dist-packages", "site-packages"))
    (root / "usr/bin").mkdir(parents=True)
    shutil.copy(PYTHON, root / "usr/bin/python3")
    for name in SITE_PACKAGES:
        source = site / name
        target = root / "opt/site" / name
        if source.is_dir():
            shutil.copytree(source, target, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
    binaries = [PYTHON, *stdlib.glob("lib-dynload/*.so"), *(root / "opt/site").rglob("*.so*")]
    for lib in shared_libraries(binaries):
        target = root / lib.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(lib, target)
    store = work / "store"
    container = buildah(store, "from", "scratch").stdout.strip()
    buildah(store, "copy", container, str(root), "/")
    buildah(store, "config", "--env", "PYTHONPATH=/opt/site", "--env", "PYTHONDONTWRITEBYTECODE=1",
            "--entrypoint", '["/usr/bin/python3"]', container)
    buildah(store, "commit", "-q", container, CLIENT_IMAGE)
    archive = work / "client.tar"
    buildah(store, "push", "-q", CLIENT_IMAGE, f"docker-archive:{archive}:{CLIENT_IMAGE}")
    stack("node", "import", str(archive))
    shutil.rmtree(store, ignore_errors=True)
    return CLIENT_IMAGE


@pytest.fixture(scope="module")
def namespace(node):
    name = unique("node-test")
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_node_is_ready(node):
    obj = get_json("node", env("DATAMESH_NODE_NAME"))
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True", ready
    addresses = {a["type"]: a["address"] for a in obj["status"]["addresses"]}
    assert addresses["InternalIP"] == env("KAFKA_POD_BOOTSTRAP_SERVERS").split(":")[0]
    info = obj["status"]["nodeInfo"]
    versions = dict(line.split("=", 1) for line in Path(STACK).with_name("versions.env").read_text().splitlines()
                    if "=" in line and not line.startswith("#"))
    assert info["kubeletVersion"] == f"v{versions['KUBERNETES_VERSION']}"
    assert info["containerRuntimeVersion"] == f"containerd://{versions['CONTAINERD_DEB_VERSION'].split('~')[0]}"
    assert not obj["spec"].get("unschedulable"), "the node is cordoned"


POD_CLIENTS = """
import os, sys, time, uuid
import boto3
from botocore.config import Config
from confluent_kafka import Producer
marker = os.environ["MARKER"]
producer = Producer({
    "bootstrap.servers": os.environ["KAFKA_BOOTSTRAP_SERVERS"], "security.protocol": "SASL_SSL",
    "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": os.environ["KAFKA_USER"],
    "sasl.password": os.environ["KAFKA_PASSWORD"], "ssl.ca.location": "/ca/ca.crt",
    "ssl.endpoint.identification.algorithm": "https", "message.timeout.ms": 60000})
errors = []
producer.produce(os.environ["TOPIC"], marker.encode(), on_delivery=lambda err, msg: errors.append(err))
producer.flush(90)
assert errors == [None], errors
print("kafka: delivered", marker, flush=True)
s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name="us-east-1",
                  aws_access_key_id=os.environ["S3_ACCESS_KEY"], aws_secret_access_key=os.environ["S3_SECRET_KEY"],
                  verify="/ca/ca.crt", config=Config(s3={"addressing_style": "path"}))
s3.put_object(Bucket=os.environ["BUCKET"], Key="from-pod.txt", Body=marker.encode())
print("s3: written", marker, flush=True)
open("/tmp/done", "w").close()
while True:
    time.sleep(3600)
"""


def test_deployment_rolls_out_and_its_pod_reaches_kafka_and_s3(node, client_image, namespace, tmp_path):
    kafka_admin = Kafka(tmp_path, env("KAFKA_ADMIN_USER"), env("KAFKA_ADMIN_PASSWORD"))
    topic, bucket, marker = unique("node-topic"), unique("node-bucket"), uuid.uuid4().hex
    kafka_admin.tool("kafka-topics.sh", "--create", "--topic", topic, "--partitions", "1")
    s3_admin = s3_client(env("S3_ADMIN_ACCESS_KEY"), env("S3_ADMIN_SECRET_KEY"))
    s3_admin.create_bucket(Bucket=bucket)
    ca = Path(env("KAFKA_CA_FILE")).read_text()
    kubectl("create", "configmap", "platform-ca", "-n", namespace, f"--from-literal=ca.crt={ca}")
    kubectl("create", "secret", "generic", "clients", "-n", namespace,
            f"--from-literal=KAFKA_USER={env('KAFKA_ADMIN_USER')}",
            f"--from-literal=KAFKA_PASSWORD={env('KAFKA_ADMIN_PASSWORD')}",
            f"--from-literal=S3_ACCESS_KEY={env('S3_ADMIN_ACCESS_KEY')}",
            f"--from-literal=S3_SECRET_KEY={env('S3_ADMIN_SECRET_KEY')}")
    apply({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "clients", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "clients"}},
            "template": {
                "metadata": {"labels": {"app": "clients"}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "containers": [{
                        "name": "clients", "image": client_image, "imagePullPolicy": "Never",
                        "args": ["-c", POD_CLIENTS],
                        "env": [{"name": "MARKER", "value": marker}, {"name": "TOPIC", "value": topic},
                                {"name": "BUCKET", "value": bucket},
                                {"name": "KAFKA_BOOTSTRAP_SERVERS", "value": env("KAFKA_POD_BOOTSTRAP_SERVERS")},
                                {"name": "S3_ENDPOINT", "value": env("S3_POD_ENDPOINT")}],
                        "envFrom": [{"secretRef": {"name": "clients"}}],
                        "volumeMounts": [{"name": "ca", "mountPath": "/ca"}],
                        "readinessProbe": {"exec": {"command": ["/usr/bin/python3", "-c",
                                                                "import os; assert os.path.exists('/tmp/done')"]},
                                           "periodSeconds": 2, "failureThreshold": 300},
                    }],
                    "volumes": [{"name": "ca", "configMap": {"name": "platform-ca"}}],
                },
            },
        },
    })
    rollout = kubectl("rollout", "status", "deployment/clients", "-n", namespace, "--timeout", "110s", check=False)
    logs = kubectl("logs", "-n", namespace, "deployment/clients", check=False)
    assert rollout.returncode == 0, f"{rollout.stdout}{rollout.stderr}\npod log:\n{logs.stdout}{logs.stderr}"
    pod = get_json("pods", "-n", namespace, "-l", "app=clients")["items"][0]
    assert pod["spec"]["nodeName"] == env("DATAMESH_NODE_NAME")
    assert pod["status"]["podIP"].rsplit(".", 1)[0] == env("KAFKA_POD_BOOTSTRAP_SERVERS").rsplit(".", 1)[0]
    assert f"kafka: delivered {marker}" in logs.stdout and f"s3: written {marker}" in logs.stdout, logs.stdout
    # Read back on the host, with Kafka's own consumer and boto3.
    assert kafka_admin.consume(topic, 1) == [marker]
    assert s3_admin.get_object(Bucket=bucket, Key="from-pod.txt")["Body"].read().decode() == marker


def run_python_job(namespace, name, client_image, script, *, pod=None, container=None, timeout="110s") -> dict:
    """A Job of one pod running `script` with the client image's Python, waited on until Complete;
    the JSON of the last line it printed. `pod` and `container`: more fields of the pod spec and of
    its container."""
    apply({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": namespace},
           "spec": {"backoffLimit": 0, "template": {"spec": {
               "restartPolicy": "Never", **(pod or {}),
               "containers": [{"name": "job", "image": client_image, "imagePullPolicy": "Never",
                               "args": ["-c", script], **(container or {})}]}}}})
    done = kubectl("wait", f"job/{name}", "-n", namespace, "--for", "condition=Complete", "--timeout", timeout, check=False)
    logs = kubectl("logs", "-n", namespace, f"job/{name}", check=False)
    assert done.returncode == 0, f"{done.stderr}\n{logs.stdout}{logs.stderr}"
    return json.loads(logs.stdout.strip().splitlines()[-1])


REACH = """
import json, os, socket
def reach(host, port):
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
        return "connected"
    except OSError as error:
        return type(error).__name__
routes = [line.split()[1:3] for line in open("/proc/net/route").read().splitlines()[1:]]
print(json.dumps({"routes": routes, **{f"{host}:{port}": reach(host, port)
                                       for host, port in json.loads(os.environ["TARGETS"])}}))
"""


def test_a_pod_reaches_only_what_the_platform_serves_it(node, client_image, namespace):
    """From a pod: Kafka's pod listener and S3 at the bridge address and the API server at
    10.0.0.1:443 answer; any other port of the host (etcd, the API server's own port, the
    kubelet on the bridge address, Kafka's other listeners, SeaweedFS's own ports) and any other address do not; and the pod has no
    default route."""
    gateway = env("KAFKA_POD_BOOTSTRAP_SERVERS").split(":")[0]
    kafka_pod_port = env("KAFKA_POD_BOOTSTRAP_SERVERS").split(":")[1]
    s3_port = env("S3_POD_ENDPOINT").rsplit(":", 1)[1]
    host_ports = {port for port in Path(env("DATAMESH_STACK_RUN"), "ports").read_text().replace("=", ",").replace(" ", ",").split(",")
                  if port.isdigit()}
    served = {(gateway, kafka_pod_port), (gateway, s3_port), ("10.0.0.1", "443")}
    # The kubelet listens on the bridge address itself: only the dropping of pods' packets keeps
    # them from it.
    kubelet_port = str(get_json("node", env("DATAMESH_NODE_NAME"))["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"])
    unserved = [(gateway, port) for port in sorted((host_ports | {kubelet_port}) - {kafka_pod_port, s3_port})]
    unserved += [("10.0.0.2", "443"), ("10.0.0.1", "80"), ("192.0.2.1", "443")]
    result = run_python_job(namespace, unique("reach"), client_image, REACH,
                            pod={"automountServiceAccountToken": False},
                            container={"env": [{"name": "TARGETS", "value": json.dumps([*served, *unserved])}]})
    assert {f"{h}:{p}": result[f"{h}:{p}"] for h, p in served} == {f"{h}:{p}": "connected" for h, p in served}
    assert [target for target in (f"{h}:{p}" for h, p in unserved) if result[target] == "connected"] == [], result
    # Destinations in /proc/net/route are little-endian hex: 00000000 is the default route.
    assert "00000000" not in [destination for destination, _ in result["routes"]], result["routes"]


SERVICE_ACCOUNT_CLIENT = """
import json, os, ssl, urllib.error, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
token = open(f"{sa}/token").read()
context = ssl.create_default_context(cafile=f"{sa}/ca.crt")
base = f"https://{os.environ['KUBERNETES_SERVICE_HOST']}:{os.environ['KUBERNETES_SERVICE_PORT']}"
def call(path, body=None):
    request = urllib.request.Request(base + path, data=body and json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, context=context, timeout=20) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)
namespace = open(f"{sa}/namespace").read()
status, review = call("/apis/authentication.k8s.io/v1/selfsubjectreviews",
                      {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
print(json.dumps({"whoami": [status, review.get("status", {}).get("userInfo", {}).get("username")],
                  "configmap": call(f"/api/v1/namespaces/{namespace}/configmaps/granted")[1].get("data"),
                  "secrets": call(f"/api/v1/namespaces/{namespace}/secrets")[0],
                  "host": base}))
"""


def test_pod_calls_the_api_server_with_its_service_account_token(node, client_image, namespace):
    value = uuid.uuid4().hex
    kubectl("create", "serviceaccount", "reader", "-n", namespace)
    kubectl("create", "configmap", "granted", "-n", namespace, f"--from-literal=value={value}")
    kubectl("create", "role", "read-granted", "-n", namespace, "--verb", "get", "--resource", "configmaps",
            "--resource-name", "granted")
    kubectl("create", "rolebinding", "read-granted", "-n", namespace, "--role", "read-granted",
            f"--serviceaccount={namespace}:reader")
    result = run_python_job(namespace, "whoami", client_image, SERVICE_ACCOUNT_CLIENT,
                            pod={"serviceAccountName": "reader"}, timeout="100s")
    pod = get_json("pods", "-n", namespace, "-l", "job-name=whoami")["items"][0]
    # The ServiceAccount admission plugin gave the pod its token volume.
    assert any(v.get("projected") and v["name"].startswith("kube-api-access") for v in pod["spec"]["volumes"]), \
        pod["spec"]["volumes"]
    assert result["host"] == "https://10.0.0.1:443"
    assert result["whoami"] == [201, f"system:serviceaccount:{namespace}:reader"], result
    assert result["configmap"] == {"value": value}, result
    assert result["secrets"] == 403, result


# The chart installed as a platform engineer installs it (the quick start's release, whose
# ServiceAccount is the one the platform's audit policy logs), on the image built from the
# Containerfile and imported into the node, reaching Kafka and S3 at the bridge address.
RELEASE, OPERATOR_NAMESPACE = "datamesh-operator", "datamesh-system"
DEPLOYMENT = f"deployment/{RELEASE}"
OPERATOR_ACCOUNT = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{RELEASE}"
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
API = "datamesh.dev/v1alpha1"
# The chart's leader election timings (client-go's): a standby takes over once the Lease has gone
# unrenewed for the lease duration, noticing within one retry period.
LEASE_DURATION_SECONDS, RETRY_PERIOD_SECONDS = 15, 2


def helm(*args, check=True):
    return run(["helm", "--kubeconfig", env("KUBECONFIG"), *args], check=check, timeout=300)


def operator_pods() -> list:
    pods = get_json("pods", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/component=operator")["items"]
    return [pod for pod in pods if not pod["metadata"].get("deletionTimestamp")]


def rolled_out():
    rollout = kubectl("rollout", "status", DEPLOYMENT, "-n", OPERATOR_NAMESPACE, "--timeout", "110s", check=False)
    if rollout.returncode != 0:
        logs = kubectl("logs", "-n", OPERATOR_NAMESPACE, DEPLOYMENT, "--tail", "40", check=False)
        pods = kubectl("get", "pods", "-n", OPERATOR_NAMESPACE, "-o", "wide", check=False)
        raise AssertionError(f"{rollout.stdout}{rollout.stderr}\n{pods.stdout}\n{logs.stdout}{logs.stderr}")
    # A rollout is done when the new pods are available; the old ones may still be terminating.
    wait_for(lambda: len(operator_pods()) == int(get_json(DEPLOYMENT.replace("/", ".apps/"), "-n", OPERATOR_NAMESPACE)
                                                  ["spec"]["replicas"]) and all(ready(p) for p in operator_pods()),
             timeout=120, message="only the new operator pods, all Ready")
    return operator_pods()


def ready(pod) -> bool:
    return all(status["ready"] for status in pod["status"].get("containerStatuses", [{"ready": False}]))


def lease():
    return get_json("lease", RELEASE, "-n", OPERATOR_NAMESPACE)["spec"]


def micro_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def operator_requests(since: int) -> list:
    """The API server's audit events (its policy logs the chart's ServiceAccount) from a byte offset."""
    return [event for event in audit_events(since) if event["user"]["username"] == OPERATOR_ACCOUNT]


def pod_of(event) -> str:
    return (event["user"].get("extra", {}).get(POD_NAME_EXTRA) or [""])[0]


def writes(events, pod_name, *, but_leases=True) -> list:
    return [(e["verb"], e.get("objectRef", {}).get("resource"), e.get("objectRef", {}).get("name"),
             e["requestReceivedTimestamp"])
            for e in events if e["verb"] in WRITE_VERBS and pod_of(e) == pod_name
            and not (but_leases and e.get("objectRef", {}).get("resource") == "leases")]


def pod_metric(pod, name) -> float:
    """A metric of one operator pod, read from the host at the pod's address (the host is on the bridge)."""
    with urllib.request.urlopen(f"http://{pod['status']['podIP']}:8080/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not in the metrics of {pod['metadata']['name']}")


def memory_bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return int(quantity[:-2]) * units[quantity[-2:]] if quantity[-2:] in units else int(quantity)


@pytest.fixture(scope="module")
def operator_release(node):
    """The chart with one replica of the operator's image; uninstalled at the end of the module."""
    from operator_process import BINARY

    assert BINARY.exists(), f"{BINARY} is missing: cargo build"
    image = stack("node", "image", str(BINARY)).stdout.strip().splitlines()[-1]
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO_DIR / "crds"))
    kubectl("create", "namespace", OPERATOR_NAMESPACE, check=False)
    for name, key, value in [("kafka-admin", "password", env("KAFKA_ADMIN_PASSWORD")),
                             ("s3-admin", "secretKey", env("S3_ADMIN_SECRET_KEY")),
                             ("platform-ca", "ca.crt", Path(env("KAFKA_CA_FILE")).read_text())]:
        manifest = kubectl("create", "secret", "generic", name, "-n", OPERATOR_NAMESPACE,
                           f"--from-literal={key}={value}", "--dry-run=client", "-o", "yaml").stdout
        kubectl("apply", "-f", "-", input=manifest)
    values = {
        "image.pullPolicy": "Never", "replicaCount": "1", "kafka.defaultReplicas": "1",
        "kafka.bootstrapServers": env("KAFKA_POD_BOOTSTRAP_SERVERS"), "kafka.securityProtocol": "SASL_SSL",
        "kafka.adminUser": env("KAFKA_ADMIN_USER"), "kafka.tls.caSecret.name": "platform-ca",
        "s3.endpoint": env("S3_POD_ENDPOINT"), "s3.iamEndpoint": env("S3_POD_ENDPOINT"),
        "s3.adminAccessKey": env("S3_ADMIN_ACCESS_KEY"), "s3.caBundleSecret.name": "platform-ca",
        # The suites create objects the cluster-wide policies refuse on purpose.
        "admissionPolicies.enabled": "false",
    }
    audit_start = audit_log().stat().st_size
    # --take-ownership: the other suites apply the chart's RBAC objects without Helm.
    helm("upgrade", "--install", RELEASE, str(REPO_DIR / "charts" / "datamesh-operator"), "--namespace",
         OPERATOR_NAMESPACE, "--skip-crds", "--take-ownership",
         *[arg for key, value in values.items() for arg in ("--set", f"{key}={value}")])
    rolled_out()
    yield {"image": image, "audit_start": audit_start}
    helm("uninstall", RELEASE, "--namespace", OPERATOR_NAMESPACE, "--wait", check=False)


SAMPLE_DOMAINS = ("payments", "customers", "marketing")


def sample_objects(suffix):
    """The sample mesh (config/samples) with each domain renamed `<domain>-<suffix>` everywhere
    (namespaces, references, topic and bucket names follow), so it is made new by this operator
    whatever the other suites left."""
    rendered = run(["kubectl", "kustomize", str(REPO_DIR / "config" / "samples")]).stdout
    rendered = re.sub(r"\b(" + "|".join(SAMPLE_DOMAINS) + r")\b", rf"\1-{suffix}", rendered)
    return rendered, [d for d in yaml.safe_load_all(rendered) if d]


def ref(obj) -> list:
    namespace = obj["metadata"].get("namespace")
    return [f"{obj['kind'].lower()}.datamesh.dev/{obj['metadata']['name']}", *(["-n", namespace] if namespace else [])]


def test_the_charts_operator_runs_on_the_node_and_reconciles_the_samples(operator_release):
    """The Deployment rolled out on the node with the image built here; its probes pass; it stays
    under its memory limit; it reconciles the sample mesh with the chart's RBAC and nothing else."""
    (pod,) = operator_pods()
    container = pod["spec"]["containers"][0]
    assert container["image"] == operator_release["image"]
    assert pod["spec"]["nodeName"] == env("DATAMESH_NODE_NAME")
    assert pod["spec"]["serviceAccountName"] == RELEASE
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"

    rendered, documents = sample_objects(unique("n").split("-")[1])
    domains = [d for d in documents if d["kind"] == "Domain"]
    since = audit_log().stat().st_size
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(domains))
    for domain in domains:
        kubectl("wait", "--for", "condition=Ready", "--timeout", "100s", *ref(domain))
    kubectl("apply", "-f", "-", input=rendered)
    ours = [d for d in documents if d["apiVersion"] == API]
    for obj in ours:
        kubectl("wait", "--for", "condition=Ready", "--timeout", "100s", *ref(obj))
    status_writes = {(e["objectRef"]["resource"], e["objectRef"]["name"])
                     for e in operator_requests(since)
                     if e["verb"] in WRITE_VERBS and e["objectRef"].get("subresource") == "status"
                     and pod_of(e) == pod["metadata"]["name"] and e["responseStatus"]["code"] < 300}
    assert {(f"{d['kind'].lower()}s" if not d["kind"].endswith("y") else f"{d['kind'][:-1].lower()}ies",
             d["metadata"]["name"]) for d in ours} <= status_writes

    # Every request of the chart's ServiceAccount came from this pod, and none was refused: the
    # chart's RBAC is all it needs. And it has nothing else: every binding of the account is the chart's.
    requests = operator_requests(operator_release["audit_start"])
    assert requests, "the audit log has no request of the chart's ServiceAccount"
    assert {pod_of(e) for e in requests} <= {pod["metadata"]["name"]}, {pod_of(e) for e in requests}
    assert [(e["verb"], e["requestURI"]) for e in requests if e["responseStatus"]["code"] == 403] == []
    bindings = [*get_json("clusterrolebindings")["items"], *get_json("rolebindings", "-A")["items"]]
    bound = [b for b in bindings for subject in b.get("subjects") or []
             if subject["kind"] == "ServiceAccount" and subject["name"] == RELEASE
             and subject.get("namespace", b["metadata"].get("namespace")) == OPERATOR_NAMESPACE]
    assert bound, "no binding of the chart's ServiceAccount"
    assert [b["metadata"]["name"] for b in bound
            if (b["metadata"].get("annotations") or {}).get("meta.helm.sh/release-name") != RELEASE] == []

    # Its memory, as the kubelet measures it, under the chart's limit; and no restart so far.
    summary = json.loads(kubectl("get", "--raw", f"/api/v1/nodes/{env('DATAMESH_NODE_NAME')}/proxy/stats/summary").stdout)
    (stats,) = [p for p in summary["pods"] if p["podRef"]["name"] == pod["metadata"]["name"]]
    working_set = stats["containers"][0]["memory"]["workingSetBytes"]
    limit = memory_bytes(container["resources"]["limits"]["memory"])
    print(f"operator pod working set {working_set / 2**20:.1f} MiB, limit {limit / 2**20:.0f} MiB")
    assert 0 < working_set < limit
    (pod,) = operator_pods()
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0, pod["status"]["containerStatuses"]


WORKLOAD = """
import json, os, time, urllib.error, urllib.request, ssl
import boto3, botocore.exceptions
from confluent_kafka import Consumer
result = {}
open("/tmp/kafka-ca.pem", "w").write(os.environ["KAFKA_CA_CERT"])
open("/tmp/s3-ca.pem", "w").write(os.environ["AWS_CA_BUNDLE_PEM"])
consumer = Consumer({
    "bootstrap.servers": os.environ["KAFKA_BOOTSTRAP_SERVERS"], "security.protocol": os.environ["KAFKA_SECURITY_PROTOCOL"],
    "sasl.mechanism": os.environ["KAFKA_SASL_MECHANISM"], "sasl.username": os.environ["KAFKA_USERNAME"],
    "sasl.password": os.environ["KAFKA_PASSWORD"], "ssl.ca.location": "/tmp/kafka-ca.pem",
    "group.id": os.environ["KAFKA_USERNAME"] + ".workload", "auto.offset.reset": "earliest"})
consumer.subscribe([os.environ["TOPIC"]])
records, deadline = [], time.monotonic() + 60
while time.monotonic() < deadline and not records and "kafka_error" not in result:
    message = consumer.poll(2)
    if message is None:
        continue
    if message.error():
        if "AUTHORIZATION" in message.error().name():
            result["kafka_error"] = message.error().name()
        continue
    records.append(message.value().decode())
consumer.close()
result["records"] = records
s3 = boto3.client("s3", verify="/tmp/s3-ca.pem", region_name=os.environ["AWS_REGION"])
try:
    result["object"] = s3.get_object(Bucket=os.environ["BUCKET"], Key=os.environ["KEY"])["Body"].read().decode()
except botocore.exceptions.ClientError as error:
    result["object"] = error.response["Error"]["Code"]
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
request = urllib.request.Request(
    f"https://{os.environ['KUBERNETES_SERVICE_HOST']}:{os.environ['KUBERNETES_SERVICE_PORT']}"
    f"/apis/datamesh.dev/v1alpha1/namespaces/{os.environ['PRODUCER']}/dataproducts/{os.environ['PRODUCT']}",
    headers={"Authorization": "Bearer " + open(f"{sa}/token").read()})
try:
    with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=f"{sa}/ca.crt"), timeout=20) as r:
        result["product"] = r.status
except urllib.error.HTTPError as error:
    result["product"] = error.code
print(json.dumps(result), flush=True)
"""


def run_workload(namespace, client_image, env_vars, env_from_configmaps) -> dict:
    """A Job in `namespace` as its `datamesh-workload` ServiceAccount, with the domain's credentials
    Secret and `env_from_configmaps` ({variable: (ConfigMap, key)}); its printed result."""
    env_list = [{"name": k, "value": v} for k, v in env_vars.items()]
    env_list += [{"name": k, "valueFrom": {"configMapKeyRef": {"name": cm, "key": key}}}
                 for k, (cm, key) in env_from_configmaps.items()]
    return run_python_job(namespace, unique("workload"), client_image, WORKLOAD,
                          pod={"serviceAccountName": "datamesh-workload"},
                          container={"env": env_list,
                                     "envFrom": [{"secretRef": {"name": f"{namespace}-credentials"}}]})


def test_a_granted_consumers_workload_pod_reads_and_another_domains_is_refused(operator_release, client_image, tmp_path):
    """Three domains made by the in-cluster operator: a producer with a topic and a bucket holding
    data, a consumer it grants read, and a third without a grant. The consumer's pod, with only its
    namespace's `datamesh-workload` ServiceAccount, its input ports' ConfigMaps and its domain's
    Secret, reads the record, the object and the product; the third's pod, told the same names, is
    refused by Kafka, S3 and the API server."""
    suffix = unique("wl").split("-")[1]
    producer, consumer, third = f"wl-prod-{suffix}", f"wl-cons-{suffix}", f"wl-third-{suffix}"
    for domain in (producer, consumer, third):
        apply({"apiVersion": API, "kind": "Domain", "metadata": {"name": domain},
               "spec": {"owners": [{"kind": "Group", "name": f"{domain}-team"}]}})
    for domain in (producer, consumer, third):
        kubectl("wait", "--for", "condition=Ready", "--timeout", "100s", f"domain/{domain}")
    apply({"apiVersion": API, "kind": "DataProduct", "metadata": {"name": "orders", "namespace": producer},
           "spec": {"domain": producer, "owner": {"name": "alice"},
                    "description": {"purpose": "Orders", "usage": "Read them"},
                    "outputPorts": [{"name": "events", "kafka": {"partitions": 1, "replicas": 1}},
                                    {"name": "lake", "bucket": {}}]}})
    apply({"apiVersion": API, "kind": "DataProduct", "metadata": {"name": "campaigns", "namespace": consumer},
           "spec": {"domain": consumer, "owner": {"name": "bob"},
                    "description": {"purpose": "Campaign reach", "usage": "Join on order id"},
                    "inputPorts": [
                        {"name": "orders-events", "dataProduct": {"domain": producer, "name": "orders", "port": "events"}},
                        {"name": "orders-lake", "dataProduct": {"domain": producer, "name": "orders", "port": "lake"}}]}})
    kubectl("wait", "--for", "condition=Ready", "--timeout", "100s", "dataproduct/orders", "-n", producer)
    topic, bucket, key, record = f"{producer}.orders.events", f"{producer}-orders-lake", "2026/orders.json", uuid.uuid4().hex
    # The producer's data, written on the host with the admin's clients.
    Kafka(tmp_path, env("KAFKA_ADMIN_USER"), env("KAFKA_ADMIN_PASSWORD")).produce(topic, [record])
    s3_client(env("S3_ADMIN_ACCESS_KEY"), env("S3_ADMIN_SECRET_KEY")).put_object(Bucket=bucket, Key=key, Body=record.encode())
    apply({"apiVersion": API, "kind": "AccessPolicy", "metadata": {"name": "campaigns-read", "namespace": producer},
           "spec": {"dataProduct": "orders", "consumers": [{"domain": consumer}], "purpose": "campaign analytics"}})
    kubectl("wait", "--for", "condition=Ready", "--timeout", "100s", "accesspolicy/campaigns-read", "-n", producer)
    wait_for(lambda: kubectl("get", "configmap", "orders-lake", "-n", consumer, check=False).returncode == 0,
             timeout=60, message="the consumer's connection ConfigMaps")

    granted = run_workload(consumer, client_image, {"KEY": key, "PRODUCER": producer, "PRODUCT": "orders"}, {
        "TOPIC": ("orders-events", "topic"), "KAFKA_BOOTSTRAP_SERVERS": ("orders-events", "bootstrapServers"),
        "BUCKET": ("orders-lake", "bucket"), "AWS_ENDPOINT_URL_S3": ("orders-lake", "endpoint")})
    assert granted == {"records": [record], "object": record, "product": 200}, granted

    refused = run_workload(third, client_image, {"KEY": key, "PRODUCER": producer, "PRODUCT": "orders",
                                                  "TOPIC": topic, "BUCKET": bucket}, {})
    assert refused["records"] == [], refused
    assert refused["kafka_error"] in ("TOPIC_AUTHORIZATION_FAILED", "GROUP_AUTHORIZATION_FAILED"), refused
    assert refused["object"] == "AccessDenied", refused
    assert refused["product"] == 403, refused


def test_helm_upgrade_with_a_changed_value_rolls_the_pod_and_reconciling_goes_on(operator_release):
    (old,) = operator_pods()
    helm("upgrade", RELEASE, str(REPO_DIR / "charts" / "datamesh-operator"), "--namespace", OPERATOR_NAMESPACE,
         "--skip-crds", "--reuse-values", "--set", "resyncSeconds=240")
    (new,) = rolled_out()
    assert new["metadata"]["name"] != old["metadata"]["name"], "the pod was not replaced"
    assert (new["metadata"]["annotations"]["checksum/config"] != old["metadata"]["annotations"]["checksum/config"])
    config = get_json("configmap", f"{RELEASE}-config", "-n", OPERATOR_NAMESPACE)["data"]["config.yaml"]
    assert yaml.safe_load(config)["resyncSeconds"] == 240, config
    wait_for(lambda: lease().get("holderIdentity") == new["metadata"]["name"], timeout=60,
             message="the new pod to lead")
    since = audit_log().stat().st_size
    domain = unique("upgraded")
    apply({"apiVersion": API, "kind": "Domain", "metadata": {"name": domain},
           "spec": {"owners": [{"kind": "Group", "name": "node-test"}]}})
    kubectl("wait", "--for", "condition=Ready", "--timeout", "100s", f"domain/{domain}")
    assert any(e["objectRef"].get("name") == domain for e in operator_requests(since)
               if e["verb"] in WRITE_VERBS and pod_of(e) == new["metadata"]["name"])
    kubectl("delete", "domain", domain, "--wait=false")


def test_two_replicas_one_leads_and_another_takes_over_when_its_pod_is_deleted(operator_release):
    since = audit_log().stat().st_size
    helm("upgrade", RELEASE, str(REPO_DIR / "charts" / "datamesh-operator"), "--namespace", OPERATOR_NAMESPACE,
         "--skip-crds", "--reuse-values", "--set", "replicaCount=2")
    pods = rolled_out()
    assert len(pods) == 2 and {p["spec"]["nodeName"] for p in pods} == {env("DATAMESH_NODE_NAME")}
    holder = wait_for(lambda: lease().get("holderIdentity"), timeout=60, message="a Lease holder")
    leader = next(p for p in pods if p["metadata"]["name"] == holder)
    standby = next(p for p in pods if p is not leader)
    # Exactly one leads: each pod says so in its metrics, and only the leader writes.
    wait_for(lambda: (pod_metric(leader, "datamesh_operator_leader"),
                      pod_metric(standby, "datamesh_operator_leader")) == (1, 0),
             timeout=30, message="the Lease holder's pod to say it leads, and the other not")
    domain = unique("ha")
    apply({"apiVersion": API, "kind": "Domain", "metadata": {"name": domain},
           "spec": {"owners": [{"kind": "Group", "name": "node-test"}]}})
    kubectl("wait", "--for", "condition=Ready", "--timeout", "100s", f"domain/{domain}")
    events = operator_requests(since)
    assert writes(events, leader["metadata"]["name"]), "the leader's writes are not in the audit log"
    assert writes(events, standby["metadata"]["name"]) == [], "a standby wrote"

    # The leader's pod deleted at once: the kubelet stops its container (SIGTERM, then SIGKILL
    # after its minimum grace of 2 s; the operator releases the Lease on SIGTERM if it can), and
    # the standby takes the Lease within the lease duration of the old leader's last renewal (it
    # notices within one retry period each way), then reconciles what comes after.
    before = lease()
    kubectl("delete", "pod", leader["metadata"]["name"], "-n", OPERATOR_NAMESPACE, "--grace-period=0", "--force")
    deleted_at = time.monotonic()
    last_renewal = {"at": micro_time(before["renewTime"])}

    def another_leads():
        spec = lease()
        if spec.get("holderIdentity") == leader["metadata"]["name"] and spec.get("renewTime"):
            last_renewal["at"] = micro_time(spec["renewTime"])
        return spec.get("holderIdentity") not in (None, "", leader["metadata"]["name"]) and spec["holderIdentity"]

    # The Deployment replaces the deleted pod at once, and its new pod is a candidate too: once the
    # Lease is free, the standby or the new pod takes it, whichever asks first.
    new_leader = wait_for(another_leads, timeout=60, interval=0.2, message="another pod to take over")
    print(f"{'the standby' if new_leader == standby['metadata']['name'] else 'the replacement pod'} took over "
          f"{time.monotonic() - deleted_at:.1f}s after the leader's pod was deleted")
    taken = lease()
    assert taken["leaseTransitions"] == before.get("leaseTransitions", 0) + 1
    gap = (micro_time(taken["acquireTime"]) - last_renewal["at"]).total_seconds()
    print(f"the Lease was taken {gap:.1f}s after the old leader's last renewal")
    # The candidates see the last renewal up to one retry period late and notice the expiry up to
    # one later, each jittered by up to 1.2 times (client-go's JitterFactor), plus a request's time.
    assert gap <= LEASE_DURATION_SECONDS + 2 * 1.2 * RETRY_PERIOD_SECONDS + 1, gap
    product = "after-failover"
    apply({"apiVersion": API, "kind": "DataProduct", "metadata": {"name": product, "namespace": domain},
           "spec": {"domain": domain, "owner": {"name": "alice"},
                    "description": {"purpose": "Made after a failover", "usage": "None"},
                    "outputPorts": [{"name": "events", "kafka": {"partitions": 1, "replicas": 1}}]}})
    kubectl("wait", "--for", "condition=Ready", "--timeout", "100s", f"dataproduct/{product}", "-n", domain)
    leading = next(pod for pod in operator_pods() if pod["metadata"]["name"] == new_leader)
    wait_for(lambda: pod_metric(leading, "datamesh_operator_leader") == 1, timeout=30,
             message="the new leader's pod to say it leads")

    # No write by the old leader after the new one acquired the Lease.
    acquired = micro_time(taken["acquireTime"])
    late = [w for w in writes(operator_requests(since), leader["metadata"]["name"], but_leases=False)
            if micro_time(w[3]) >= acquired]
    assert late == [], late
    rolled_out()  # the Deployment replaced the deleted pod; both are Ready again
    kubectl("delete", "dataproduct", product, "-n", domain, "--wait=false")


def node_resources(platform=None) -> dict:
    """What a running node has made on the host, read from the host (not from e2e/stack).
    `platform`: the `e2e/stack env` of another platform than the tests' own."""
    get = (lambda name: platform[name]) if platform else env
    run_dir = Path(get("DATAMESH_STACK_RUN"))
    node_id, bridge = get("DATAMESH_NODE_ID"), get("DATAMESH_NODE_BRIDGE")
    pids = {int((run_dir / f"{name}.pid").read_text())
            for name in ("containerd", "kubelet", "kube-scheduler", "node-controller-manager")}
    cgroups = [p for p in Path("/sys/fs/cgroup").glob(f"*{get('DATAMESH_NODE_CGROUP_ROOT')}") if p.is_dir()]
    for cgroup in cgroups:
        for procs in cgroup.rglob("cgroup.procs"):
            pids |= {int(pid) for pid in procs.read_text().split()}
    shims = run(["pgrep", "-f", f"containerd-shim.* -address {run_dir}/node/containerd/containerd.sock$"], check=False).stdout.split()
    pids |= {int(pid) for pid in shims}
    veths = {link["ifname"] for link in json.loads(run(["ip", "-j", "link", "show", "master", bridge]).stdout)}
    mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    return {
        "pids": pids, "shims": shims, "cgroups": cgroups, "veths": veths,
        "mounts": {m[1] for m in mounts if m[1].startswith(f"{run_dir}/node/")},
        "netns": {m[1] for m in mounts if m[2] == "nsfs" and m[1].startswith(f"{run_dir}/node/")},
        "rules": iptables_lines(node_id),
        "cni_results": set(Path("/var/lib/cni/results").glob(f"{node_id}-*")),
    }


def processes_mentioning(text: str) -> set:
    """Live processes whose command line names `text` (a run directory)."""
    found = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text.encode() in (proc / "cmdline").read_bytes() and alive(int(proc.name)):
                    found.add(int(proc.name))
            except OSError:
                pass
    return found


def test_node_down_leaves_nothing_behind(node, namespace):
    # A pod running while the node goes down: its processes, netns and veth must go too.
    apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper", "namespace": namespace},
           "spec": {"containers": [{"name": "sleeper", "image": "localhost/datamesh-busybox:1.35.0",
                                    "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]}})
    kubectl("wait", "pod/sleeper", "-n", namespace, "--for", "condition=Ready", "--timeout", "90s")
    made = node_resources()
    assert made["veths"] and made["netns"] and made["shims"] and made["cgroups"] and made["rules"], made
    assert len(made["pids"]) > 6, made["pids"]

    stack("node", "down")

    assert [pid for pid in made["pids"] if alive(pid)] == []
    after = host_state()
    assert env("DATAMESH_NODE_BRIDGE") not in after["links"]
    assert made["veths"] & after["links"] == set()
    assert after["links"] - node["links"] == set(), "links the node made are left"
    assert made["mounts"] & after["mounts"] == set()
    assert after["mounts"] - node["mounts"] == set(), "mounts the node made are left"
    assert [p for p in made["cgroups"] if p.exists()] == []
    assert iptables_lines(env("DATAMESH_NODE_ID")) == []
    assert [p for p in made["cni_results"] if p.exists()] == []
    assert after["routes"] == node["routes"]
    assert after["ip_forward"] == node["ip_forward"]
    assert not Path(env("DATAMESH_STACK_RUN"), "node").exists()
    assert kubectl("get", "node", env("DATAMESH_NODE_NAME"), check=False).returncode != 0
    assert not any(Path(f"/proc/{pid}").exists() and alive(int(pid)) for pid in made["shims"])


# A platform of its own for the test of `e2e/stack down` (ports no other platform here uses; the
# node's ports follow from the API server's).
DOWN_PLATFORM = {
    "DATAMESH_ETCD_PORT": "20790", "DATAMESH_ETCD_PEER_PORT": "20800", "DATAMESH_APISERVER_PORT": "20443",
    "DATAMESH_CONTROLLER_MANAGER_PORT": "20257", "DATAMESH_KAFKA_PORT": "20092",
    "DATAMESH_KAFKA_CONTROLLER_PORT": "20093", "DATAMESH_KAFKA_SASL_SSL_PORT": "20094",
    "DATAMESH_KAFKA_MTLS_PORT": "20095", "DATAMESH_S3_PORT": "20333", "DATAMESH_S3_GRPC_PORT": "20334",
    "DATAMESH_SEAWEED_MASTER_PORT": "20933", "DATAMESH_SEAWEED_MASTER_GRPC_PORT": "20934",
    "DATAMESH_SEAWEED_VOLUME_PORT": "20080", "DATAMESH_SEAWEED_VOLUME_GRPC_PORT": "20081",
    "DATAMESH_SEAWEED_FILER_PORT": "20888", "DATAMESH_SEAWEED_FILER_GRPC_PORT": "20889",
    # `e2e/stack env` exports the tests' own node's name and bridge under the names that override
    # them: the second platform takes its defaults instead.
    "DATAMESH_NODE_NAME": "", "DATAMESH_NODE_BRIDGE": "",
}


def test_stack_down_leaves_no_process_mount_network_namespace_or_cgroup_of_the_platform():
    """A whole platform of its own (`e2e/stack up`, node included) with a pod running, then
    `e2e/stack down`: every process it started is gone (by pid, by cgroup, and by any process
    naming its run directory), and so is every mount, network namespace, cgroup, link and
    iptables rule of its node; the host's links, mounts, routes and IP forwarding are as before."""
    run_dir = f"/tmp/datamesh-down-test-{uuid.uuid4().hex[:8]}"
    platform_env = dict(DOWN_PLATFORM, DATAMESH_RUN=run_dir, DATAMESH_NODE="1")
    before = host_state()
    try:
        run([STACK, "up"], extra_env=platform_env, timeout=900)
        exports = run([STACK, "env"], extra_env=platform_env).stdout
        platform = dict(line.removeprefix("export ").split("=", 1) for line in exports.splitlines()
                        if line.startswith("export "))
        platform = {k: v.strip('"') for k, v in platform.items()}
        kubeconfig = platform["KUBECONFIG"]
        # The platform's controller manager makes the namespace's ServiceAccount, which admission needs.
        wait_for(lambda: kubectl("get", "serviceaccount", "default", "-n", "default", kubeconfig=kubeconfig,
                                 check=False).returncode == 0, timeout=60, message="the default ServiceAccount")
        apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper", "namespace": "default"},
               "spec": {"containers": [{"name": "sleeper", "image": "localhost/datamesh-busybox:1.35.0",
                                        "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]}},
              kubeconfig=kubeconfig)
        kubectl("wait", "pod/sleeper", "-n", "default", "--for", "condition=Ready", "--timeout", "100s",
                kubeconfig=kubeconfig)
        made = node_resources(platform)
        made["pids"] |= {int(p.read_text()) for p in Path(run_dir).glob("*.pid")}
        made["pids"] |= processes_mentioning(run_dir)
        assert made["veths"] and made["netns"] and made["shims"] and made["cgroups"] and made["rules"], made
        assert len(made["pids"]) > 10, made["pids"]
    finally:
        down = run([STACK, "down"], extra_env=platform_env, timeout=300, check=False)
    assert down.returncode == 0, down.stderr

    assert [pid for pid in made["pids"] if alive(pid)] == []
    assert processes_mentioning(run_dir) == set()
    after = host_state()
    assert after["links"] - before["links"] == set(), "links the platform made are left"
    assert after["mounts"] - before["mounts"] == set(), "mounts the platform made are left"
    assert [m for m in after["mounts"] if m.startswith(run_dir)] == []
    assert [p for p in made["cgroups"] if p.exists()] == []
    assert iptables_lines(platform["DATAMESH_NODE_ID"]) == []
    assert [p for p in made["cni_results"] if p.exists()] == []
    assert after["routes"] == before["routes"]
    assert after["ip_forward"] == before["ip_forward"]
    shutil.rmtree(run_dir, ignore_errors=True)
