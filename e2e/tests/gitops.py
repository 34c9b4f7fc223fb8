"""What the GitOps suites share: a Git repository on the loopback Git server of `e2e/stack gitops
up` that a test writes with plain `git`, the sample mesh under names of the test's own, the mesh's
objects as kubectl reads them, and `e2e/tools/meshstatus` (cli-utils' kstatus, and the chart's
Argo CD health check run in gopher-lua).

The samples (config/samples) use fixed namespaces that other suites apply too; a GitOps suite
delivers them renamed (`<prefix>-payments`, ...) so that it owns, prunes and deletes only its own.
"""

import copy
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import yaml

from conftest import REPO_DIR, env, get_json, kubectl, run
from operator_process import OperatorProcess

API = "datamesh.dev/v1alpha1"
MESH_KINDS = ("Domain", "DataProduct", "AccessPolicy")
RESOURCES = {"Domain": "domain", "DataProduct": "dataproduct", "AccessPolicy": "accesspolicy"}
SAMPLES = REPO_DIR / "config" / "samples"
SAMPLE_FILES = ("domains.yaml", "payments.yaml", "customers.yaml", "marketing.yaml")
SAMPLE_DOMAINS = ("payments", "customers", "marketing")
README = REPO_DIR / "README.md"
HEALTH_LUA = REPO_DIR / "charts" / "datamesh-operator" / "argocd" / "health.lua"
MESHSTATUS = REPO_DIR / "e2e" / "tools" / "meshstatus"


def meshstatus_reader():
    """A function from a kubectl JSON object (or List) to one report per object: kstatus as
    cli-utils computes it and Argo CD health from the chart's Lua. The binary is built once per
    source into the platform's cache."""
    digest = hashlib.sha256(b"".join((MESHSTATUS / f).read_bytes() for f in ("go.mod", "go.sum", "main.go")))
    cache = Path(os.environ.get("DATAMESH_CACHE", Path.home() / ".cache" / "datamesh-operator"))
    binary = cache / "bin" / f"meshstatus-{digest.hexdigest()[:16]}"
    if not binary.exists():
        go_env = {"GOMODCACHE": str(cache / "go" / "mod"), "GOCACHE": str(cache / "go" / "build"),
                  "GOFLAGS": "-buildvcs=false", "GOTOOLCHAIN": "local"}
        built = subprocess.run(["go", "build", "-trimpath", "-o", str(binary), "."], cwd=MESHSTATUS,
                               capture_output=True, text=True, timeout=600, env={**os.environ, **go_env})
        assert built.returncode == 0, built.stderr

    def read(objects: dict) -> list[dict]:
        out = subprocess.run([str(binary), "--argocd-health", str(HEALTH_LUA)], input=json.dumps(objects),
                             capture_output=True, text=True, check=True, timeout=60).stdout
        return [json.loads(line) for line in out.splitlines()]

    return read


def readme_manifests(start: str) -> list[dict]:
    """The documents of the README's YAML block that begins with the line `start`: the suites
    deliver the mesh with the manifests the README shows."""
    block = README.read_text().split(f"```yaml\n{start}\n", 1)[1].split("```", 1)[0]
    return [d for d in yaml.safe_load_all(f"{start}\n{block}") if d]


def wait_until(read, done, timeout, message, interval=0.5):
    """Call read() until done(what it returned) holds, and return that; on timeout fail with
    the last value read."""
    deadline = time.monotonic() + timeout
    while True:
        last = read()
        if done(last):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}; last: {last}")
        time.sleep(interval)


def gitops_running() -> bool:
    return run([str(REPO_DIR / "e2e" / "stack"), "gitops", "status"], check=False).returncode == 0


def sample_mesh(prefix: str) -> dict[str, list[dict]]:
    """config/samples, file by file, with every domain `d` renamed to `<prefix>-d`: its
    namespace, topics (`<domain>.<product>.<port>`), buckets and every reference to it."""
    names = {domain: f"{prefix}-{domain}" for domain in SAMPLE_DOMAINS}
    files = {}
    for file in SAMPLE_FILES:
        documents = [d for d in yaml.safe_load_all((SAMPLES / file).read_text()) if d]
        files[file] = [renamed(document, names) for document in documents]
    return files


def renamed(document: dict, names: dict) -> dict:
    document = copy.deepcopy(document)
    metadata, spec = document["metadata"], document["spec"]
    if document["kind"] == "Domain":
        metadata["name"] = names[metadata["name"]]
    else:
        metadata["namespace"] = names[metadata["namespace"]]
    if document["kind"] == "DataProduct":
        spec["domain"] = names[spec["domain"]]
        for port in spec.get("inputPorts", []):
            if "dataProduct" in port:
                port["dataProduct"]["domain"] = names[port["dataProduct"]["domain"]]
        spark = spec.get("transformation", {}).get("spark")
        if spark:
            for old, new in names.items():
                spark["mainApplicationFile"] = spark["mainApplicationFile"].replace(f"s3a://{old}-", f"s3a://{new}-")
    if document["kind"] == "AccessPolicy":
        for consumer in spec["consumers"]:
            if "domain" in consumer:
                consumer["domain"] = names[consumer["domain"]]
            account = consumer.get("serviceAccount")
            if account and account["namespace"] in names:
                account["namespace"] = names[account["namespace"]]
    # A reference this function does not know would point at the other suites' mesh.
    left = [value for value in strings(document) if value in names or value.split(".")[0] in names]
    assert not left, f"{document['kind']} {metadata['name']} still names a sample domain: {left}"
    return document


def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def minimal_mesh(prefix: str) -> list[dict]:
    """A Domain and a DataProduct with only the fields the CRDs require."""
    domain = f"{prefix}-minimal"
    return [
        {"apiVersion": API, "kind": "Domain", "metadata": {"name": domain}, "spec": {}},
        {"apiVersion": API, "kind": "DataProduct", "metadata": {"name": "bare", "namespace": domain},
         "spec": {"domain": domain, "owner": {"name": "Nobody"},
                  "description": {"purpose": "The smallest DataProduct there is.", "usage": "None."}}},
    ]


def dump(documents: list[dict]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False, width=120)


def identity(document: dict) -> tuple:
    return document["kind"], document["metadata"].get("namespace", ""), document["metadata"]["name"]


class DeliveredMesh:
    """A suite's Git repository and the operator it starts and stops (`tool` names the logs)."""

    def __init__(self, prefix, work, tool):
        self.prefix, self.work, self.tool = prefix, work, tool
        self.repo = GitRepository(prefix, work)
        self.operator = None
        self.restarts = 0

    def start_operator(self):
        self.restarts += 1
        self.operator = OperatorProcess(self.work, f"{self.tool}-{self.restarts}")

    def stop_operator(self):
        if self.operator:
            assert self.operator.terminate() == 0, self.operator.logs()
            self.operator = None


class GitRepository:
    """A bare repository under the platform's `$DATAMESH_RUN/git`, served by the Git server of
    `e2e/stack gitops up`, and a clone of it the test commits to and pushes from over HTTP."""

    def __init__(self, name: str, workdir: Path):
        self.bare = Path(env("DATAMESH_STACK_RUN")) / "git" / f"{name}.git"
        self.url = f"http://127.0.0.1:{os.environ.get('DATAMESH_GIT_PORT', '27080')}/cgi-bin/git/{name}.git"
        self.bare.parent.mkdir(parents=True, exist_ok=True)
        run(["git", "init", "--quiet", "--bare", "--initial-branch", "main", str(self.bare)])
        self.work = workdir / name
        run(["git", "clone", "--quiet", self.url, str(self.work)])
        for key, value in (("user.name", "GitOps test"), ("user.email", "gitops@example.com"),
                           ("commit.gpgsign", "false")):
            self.git("config", key, value)
        self.git("checkout", "--quiet", "-b", "main")

    def git(self, *args) -> str:
        return run(["git", "-C", str(self.work), *args]).stdout.strip()

    def write(self, path: str, documents: list[dict]):
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(dump(documents))

    def read(self, path: str) -> list[dict]:
        return [d for d in yaml.safe_load_all((self.work / path).read_text()) if d]

    def remove(self, path: str):
        self.git("rm", "--quiet", path)

    def commit(self, message: str) -> str:
        """Commit everything and push it; the commit's SHA."""
        self.git("add", "--all")
        self.git("commit", "--quiet", "--message", message)
        self.git("push", "--quiet", "origin", "main")
        return self.git("rev-parse", "HEAD")

    def documents(self) -> list[dict]:
        return [d for file in sorted(self.work.rglob("*.yaml")) if ".git" not in file.parts
                for d in yaml.safe_load_all(file.read_text()) if d]

    def delete(self):
        shutil.rmtree(self.bare, ignore_errors=True)


def live(documents: list[dict]) -> list[dict]:
    """The live objects of these manifests (kubectl), missing ones left out."""
    found = []
    for kind, namespace, name in map(identity, documents):
        args = [RESOURCES[kind], name] + (["-n", namespace] if namespace else [])
        result = kubectl("get", *args, "-o", "json", check=False)
        if result.returncode == 0:
            found.append(json.loads(result.stdout))
    return found


def not_ready(documents: list[dict]) -> list[str]:
    """Each of these objects that is not Ready at its current generation, with why."""
    objects = {identity(o): o for o in live(documents)}
    waiting = []
    for key in map(identity, documents):
        obj = objects.get(key)
        if obj is None:
            waiting.append(f"{'/'.join(key)}: missing")
            continue
        ready = next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == "Ready"), None)
        if not ready or ready["status"] != "True" or ready.get("observedGeneration") != obj["metadata"]["generation"]:
            waiting.append(f"{'/'.join(key)}: {ready}")
    return waiting


def stalled_message(kind: str, namespace: str, name: str) -> str | None:
    obj = get_json(RESOURCES[kind], name, "-n", namespace)
    stalled = next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == "Stalled"), None)
    if stalled and stalled["status"] == "True" and stalled.get("observedGeneration") == obj["metadata"]["generation"]:
        return stalled["message"]
    return None


def delete_mesh(documents: list[dict], timeout="180s"):
    """Delete these objects, policies and products before domains, and wait until the operator's
    finalizers have run; then the namespaces the domains kept (deletionPolicy Retain)."""
    order = {"AccessPolicy": 0, "DataProduct": 1, "Domain": 2}
    for kind in sorted({d["kind"] for d in documents}, key=order.get):
        for _, namespace, name in (identity(d) for d in documents if d["kind"] == kind):
            args = [RESOURCES[kind], name] + (["-n", namespace] if namespace else [])
            kubectl("delete", *args, "--ignore-not-found", "--wait=false")
        for _, namespace, name in (identity(d) for d in documents if d["kind"] == kind):
            args = [RESOURCES[kind], name] + (["-n", namespace] if namespace else [])
            kubectl("wait", "--for=delete", "--timeout", timeout, *args, check=False)
    domains = [d["metadata"]["name"] for d in documents if d["kind"] == "Domain"]
    if domains:
        kubectl("delete", "namespace", "--ignore-not-found", "--wait=false", *domains)


def drop_data(prefix: str, kafka, s3):
    """Delete the topics and buckets of the domains named `<prefix>-...` that the operator kept
    (Retain is the default): a suite's own test data, so that the platform stays small."""
    topics = [t for t in kafka.tool("kafka-topics.sh", "--list").stdout.split() if t.startswith(f"{prefix}-")]
    if topics:
        kafka.tool("kafka-topics.sh", "--delete", "--topic", f"{prefix}-.*", check=False)
    for bucket in (b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].startswith(f"{prefix}-")):
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for version in page.get("Versions", []) + page.get("DeleteMarkers", []):
                s3.delete_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
        s3.delete_bucket(Bucket=bucket)
