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
import shutil
import uuid
from pathlib import Path

import pytest

from conftest import REPO_DIR, STACK, Kafka, apply, env, get_json, kubectl, run, s3_client, unique

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
    rollout = kubectl("rollout", "status", "deployment/clients", "-n", namespace, "--timeout", "180s", check=False)
    logs = kubectl("logs", "-n", namespace, "deployment/clients", check=False)
    assert rollout.returncode == 0, f"{rollout.stdout}{rollout.stderr}\npod log:\n{logs.stdout}{logs.stderr}"
    pod = get_json("pods", "-n", namespace, "-l", "app=clients")["items"][0]
    assert pod["spec"]["nodeName"] == env("DATAMESH_NODE_NAME")
    assert pod["status"]["podIP"].rsplit(".", 1)[0] == env("KAFKA_POD_BOOTSTRAP_SERVERS").rsplit(".", 1)[0]
    assert f"kafka: delivered {marker}" in logs.stdout and f"s3: written {marker}" in logs.stdout, logs.stdout
    # Read back on the host, with Kafka's own consumer and boto3.
    assert kafka_admin.consume(topic, 1) == [marker]
    assert s3_admin.get_object(Bucket=bucket, Key="from-pod.txt")["Body"].read().decode() == marker


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
    apply({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "whoami", "namespace": namespace},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "serviceAccountName": "reader", "restartPolicy": "Never",
            "containers": [{"name": "whoami", "image": client_image, "imagePullPolicy": "Never",
                            "args": ["-c", SERVICE_ACCOUNT_CLIENT]}]}}},
    })
    done = kubectl("wait", "job/whoami", "-n", namespace, "--for", "condition=Complete", "--timeout", "120s", check=False)
    logs = kubectl("logs", "-n", namespace, "job/whoami", check=False)
    assert done.returncode == 0, f"{done.stderr}\n{logs.stdout}{logs.stderr}"
    pod = get_json("pods", "-n", namespace, "-l", "job-name=whoami")["items"][0]
    # The ServiceAccount admission plugin gave the pod its token volume.
    assert any(v.get("projected") and v["name"].startswith("kube-api-access") for v in pod["spec"]["volumes"]), \
        pod["spec"]["volumes"]
    result = json.loads(logs.stdout.strip().splitlines()[-1])
    assert result["host"] == "https://10.0.0.1:443"
    assert result["whoami"] == [201, f"system:serviceaccount:{namespace}:reader"], result
    assert result["configmap"] == {"value": value}, result
    assert result["secrets"] == 403, result


def test_the_charts_deployment_runs_on_the_node(node, tmp_path):
    """The operator's image (test_image.py's build: the Containerfile's runtime stage on a local
    base) in the node's containerd, and the Helm chart's Deployment with one replica: it rolls out,
    passes its probes, and reconciles a Domain from inside the cluster (the API server at the
    Service address with the chart's ServiceAccount; Kafka and S3 at the bridge address)."""
    from operator_process import BINARY
    from test_image import chart_image, runtime_base

    assert BINARY.exists(), f"{BINARY} is missing: cargo build"
    store = tmp_path / "store"
    build = lambda *args, **kw: buildah(store, *args, **kw)  # noqa: E731
    base = runtime_base(build, tmp_path / "rootfs")
    built = tmp_path / "build-stage" / "src" / "target" / "release"
    built.mkdir(parents=True)
    shutil.copy(BINARY, built / "datamesh-operator")
    image = chart_image()
    build("build", "-q", "--layers=false", "--target", "runtime", "--build-arg", f"RUNTIME_IMAGE={base}",
          "--build-context", f"build={tmp_path / 'build-stage'}", "-t", image,
          "-f", str(REPO_DIR / "Containerfile"), str(REPO_DIR))
    archive = tmp_path / "operator.tar"
    build("push", "-q", image, f"docker-archive:{archive}:{image}")
    shutil.rmtree(store, ignore_errors=True)
    stack("node", "import", str(archive))
    archive.unlink()

    release = unique("dm-node")
    namespace = release
    domain = unique("node-domain")
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO_DIR / "crds"))
    kubectl("create", "namespace", namespace)
    kubectl("create", "secret", "generic", "kafka-admin", "-n", namespace,
            f"--from-literal=password={env('KAFKA_ADMIN_PASSWORD')}")
    kubectl("create", "secret", "generic", "s3-admin", "-n", namespace,
            f"--from-literal=secretKey={env('S3_ADMIN_SECRET_KEY')}")
    kubectl("create", "secret", "generic", "platform-ca", "-n", namespace, f"--from-file=ca.crt={env('KAFKA_CA_FILE')}")
    values = {
        "image.pullPolicy": "Never", "replicaCount": "1", "kafka.defaultReplicas": "1",
        "kafka.bootstrapServers": env("KAFKA_POD_BOOTSTRAP_SERVERS"), "kafka.securityProtocol": "SASL_SSL",
        "kafka.adminUser": env("KAFKA_ADMIN_USER"), "kafka.tls.caSecret.name": "platform-ca",
        "s3.endpoint": env("S3_POD_ENDPOINT"), "s3.iamEndpoint": env("S3_POD_ENDPOINT"),
        "s3.adminAccessKey": env("S3_ADMIN_ACCESS_KEY"), "s3.caBundleSecret.name": "platform-ca",
        "admissionPolicies.enabled": "false",
        "rbac.domainAdminClusterRole.name": f"{release}-domain-admin",
        "rbac.sparkDriverClusterRole.name": f"{release}-spark-driver",
    }
    helm = ["helm", "--kubeconfig", env("KUBECONFIG"), "install", release, str(REPO_DIR / "charts" / "datamesh-operator"),
            "--namespace", namespace, "--skip-crds"]
    for key, value in values.items():
        helm += ["--set", f"{key}={value}"]
    run(helm)
    try:
        deployment = f"deployment/{release}-datamesh-operator"
        rollout = kubectl("rollout", "status", deployment, "-n", namespace, "--timeout", "300s", check=False)
        logs = kubectl("logs", "-n", namespace, deployment, "--tail", "30", check=False)
        assert rollout.returncode == 0, f"{rollout.stdout}{rollout.stderr}\n{logs.stdout}{logs.stderr}"
        (pod,) = get_json("pods", "-n", namespace, "-l", "app.kubernetes.io/component=operator")["items"]
        assert pod["spec"]["containers"][0]["image"] == image
        assert pod["spec"]["nodeName"] == env("DATAMESH_NODE_NAME")
        status = pod["status"]["containerStatuses"][0]
        assert status["ready"] and status["restartCount"] == 0, status
        # It reconciles from inside the cluster: a Domain becomes Ready (its Kafka principal and S3
        # user made over the pod network), and Kafka knows the domain's SCRAM user.
        apply({"apiVersion": "datamesh.dev/v1alpha1", "kind": "Domain", "metadata": {"name": domain},
               "spec": {"owners": [{"kind": "Group", "name": "node-test"}]}})
        ready = kubectl("wait", f"domain/{domain}", "--for", "condition=Ready", "--timeout", "180s", check=False)
        logs = kubectl("logs", "-n", namespace, deployment, "--tail", "30", check=False)
        assert ready.returncode == 0, f"{ready.stderr}\n{logs.stdout}"
        kafka_admin = Kafka(tmp_path, env("KAFKA_ADMIN_USER"), env("KAFKA_ADMIN_PASSWORD"))
        described = kafka_admin.tool("kafka-configs.sh", "--describe", "--entity-type", "users",
                                     "--entity-name", domain).stdout
        assert "SCRAM-SHA-512" in described, described
        (pod,) = get_json("pods", "-n", namespace, "-l", "app.kubernetes.io/component=operator")["items"]
        assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    finally:
        kubectl("delete", "domain", domain, "--ignore-not-found", "--wait=false", check=False)
        run(["helm", "--kubeconfig", env("KUBECONFIG"), "uninstall", release, "--namespace", namespace], check=False)
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def node_resources() -> dict:
    """What the running node has made on the host, read from the host (not from e2e/stack)."""
    run_dir = Path(env("DATAMESH_STACK_RUN"))
    node_id, bridge = env("DATAMESH_NODE_ID"), env("DATAMESH_NODE_BRIDGE")
    pids = {int((run_dir / f"{name}.pid").read_text())
            for name in ("containerd", "kubelet", "kube-scheduler", "node-controller-manager")}
    cgroups = [p for p in Path("/sys/fs/cgroup").glob(f"*{env('DATAMESH_NODE_CGROUP_ROOT')}") if p.is_dir()]
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
