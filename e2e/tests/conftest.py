"""Shared fixtures for the end-to-end tests: clients for the local platform started by `e2e/stack up`.

Every client here is independent of the operator's own code: kubectl, Kafka's own command-line
tools and boto3. Connection details come from `eval "$(e2e/stack env)"`; a missing variable fails
the test run rather than skipping it.
"""

import base64
import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import boto3
import botocore.exceptions
import pytest
import yaml
from botocore.config import Config

E2E_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = E2E_DIR.parent
STACK = str(E2E_DIR / "stack")


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run the tests through e2e/test, or eval \"$(e2e/stack env)\" first")
    return value


def unique(prefix: str) -> str:
    """A name no other test run uses, so tests never depend on each other's leftovers."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def run(args, *, input=None, check=True, timeout=120, extra_env=None):
    """Run a command, returning the CompletedProcess; output is text."""
    merged = dict(os.environ, **(extra_env or {}))
    result = subprocess.run(args, input=input, capture_output=True, text=True, timeout=timeout, env=merged)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def kubectl(*args, kubeconfig=None, input=None, check=True):
    cmd = ["kubectl", "--kubeconfig", kubeconfig or env("KUBECONFIG"), *args]
    return run(cmd, input=input, check=check)


def wait_established(*crds, timeout=60):
    """Wait until each CRD is Established. Not `kubectl wait --for condition=Established`: on a CRD
    created a moment before, the status has no conditions yet, and kubectl fails on that
    (".status.conditions accessor error: <nil> is of the type <nil>") instead of waiting."""
    deadline = time.monotonic() + timeout
    for crd in crds:
        while kubectl("get", f"crd/{crd}", "-o", 'jsonpath={.status.conditions[?(@.type=="Established")].status}',
                      check=False).stdout != "True":
            assert time.monotonic() < deadline, f"CRD {crd} is not Established after {timeout}s"
            time.sleep(0.3)


def apply(manifest: dict, kubeconfig=None):
    kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest), kubeconfig=kubeconfig)


def get_json(*args, kubeconfig=None):
    return json.loads(kubectl("get", *args, "-o", "json", kubeconfig=kubeconfig).stdout)


def secret_data(namespace, name, kubeconfig=None):
    data = get_json("secret", name, "-n", namespace, kubeconfig=kubeconfig)["data"]
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def condition(obj, type_):
    """The object's status condition of this type, or None."""
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), None)


TLS_PROTOCOLS = ("SASL_SSL", "SSL")


class Kafka:
    """Kafka's own command-line tools with a client properties file: by default the platform's
    listener (SASL_SSL, trusting the platform's CA, unless `DATAMESH_KAFKA_PLAINTEXT=1 e2e/stack
    env` chose SASL_PLAINTEXT), logged in as a SCRAM user."""

    def __init__(self, tmp_path: Path, user: str, password: str, *, mechanism="SCRAM-SHA-512",
                 protocol=None, bootstrap=None, ca_file=None):
        protocol = protocol or env("KAFKA_SECURITY_PROTOCOL")
        properties = [
            f"security.protocol={protocol}",
            f"sasl.mechanism={mechanism}",
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{user}" password="{password}";',
        ]
        if protocol in TLS_PROTOCOLS:
            properties += ["ssl.truststore.type=PEM", f"ssl.truststore.location={ca_file or env('KAFKA_CA_FILE')}"]
        self.use(tmp_path / f"kafka-{user}.properties", bootstrap or env("KAFKA_BOOTSTRAP_SERVERS"), properties)

    @classmethod
    def with_properties(cls, path: Path, bootstrap: str, properties):
        """A client of `bootstrap` with exactly these properties (lines), written to `path`."""
        client = cls.__new__(cls)
        client.use(path, bootstrap, properties)
        return client

    def use(self, path: Path, bootstrap: str, properties):
        self.bootstrap = bootstrap
        self.config = path
        self.config.write_text("".join(f"{line}\n" for line in properties))

    def tool(self, name, *args, input=None, check=True, timeout=120):
        return run([name, "--bootstrap-server", self.bootstrap, "--command-config", str(self.config), *args],
                   input=input, check=check, timeout=timeout)

    def produce(self, topic, lines, check=True):
        # acks=all and a short max.block so an authorization failure surfaces quickly.
        return self.tool("kafka-console-producer.sh", "--topic", topic,
                         "--producer-property", "max.block.ms=15000",
                         "--producer-property", "delivery.timeout.ms=20000",
                         "--producer-property", "request.timeout.ms=10000",
                         input="".join(f"{line}\n" for line in lines), check=check, timeout=90)

    def consume(self, topic, count, group=None, check=True):
        args = ["--topic", topic, "--from-beginning", "--max-messages", str(count), "--timeout-ms", "20000"]
        if group:
            args += ["--group", group]
        result = self.tool("kafka-console-consumer.sh", *args, check=check, timeout=90)
        return [line for line in result.stdout.splitlines() if line]

    def try_consume(self, topic, count, group):
        """The records read, or the authorization error Kafka answered with."""
        result = self.tool("kafka-console-consumer.sh", "--topic", topic, "--from-beginning", "--max-messages",
                           str(count), "--timeout-ms", "15000", "--group", group, check=False, timeout=90)
        output = result.stdout + result.stderr
        for error in ("TopicAuthorizationException", "GroupAuthorizationException"):
            if error in output:
                return error
        return [line for line in result.stdout.splitlines() if line]

    def authenticates(self) -> bool:
        """Whether Kafka accepts these credentials (kafka-topics.sh --list succeeds)."""
        return self.tool("kafka-topics.sh", "--list", check=False, timeout=60).returncode == 0


@pytest.fixture
def kafka_admin(tmp_path):
    return Kafka(tmp_path, env("KAFKA_ADMIN_USER"), env("KAFKA_ADMIN_PASSWORD"))


def s3_client(access_key: str, secret_key: str, service: str = "s3", **config):
    endpoint = env("S3_IAM_ENDPOINT") if service == "iam" else env("S3_ENDPOINT")
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2},
                      connect_timeout=5, read_timeout=30, **config),
        # The platform's S3 speaks HTTPS with the platform's own CA.
        verify=env("AWS_CA_BUNDLE"),
    )


def domain_s3(creds: dict):
    """An S3 client as a domain's workload has it from its credentials Secret: its keys, and the
    Secret's `AWS_REQUEST_CHECKSUM_CALCULATION` (SeaweedFS refuses an upload with a trailing
    checksum that a bucket policy allows; see `src/controller/domain/desired.rs`)."""
    return s3_client(creds["AWS_ACCESS_KEY_ID"], creds["AWS_SECRET_ACCESS_KEY"],
                     request_checksum_calculation=creds["AWS_REQUEST_CHECKSUM_CALCULATION"])


def s3_key_state(access_key: str, secret_key: str) -> str:
    """'valid' when S3 knows the key (even if it may do nothing), else the error code."""
    client = s3_client(access_key, secret_key)
    try:
        client.list_objects_v2(Bucket=unique("nobody-s-bucket"))
        return "valid"
    except botocore.exceptions.ClientError as error:
        code = error.response["Error"]["Code"]
        return "valid" if code in ("AccessDenied", "NoSuchBucket") else code


@pytest.fixture
def s3_admin():
    return s3_client(env("S3_ADMIN_ACCESS_KEY"), env("S3_ADMIN_SECRET_KEY"))


@pytest.fixture
def iam_admin():
    return s3_client(env("S3_ADMIN_ACCESS_KEY"), env("S3_ADMIN_SECRET_KEY"), service="iam")


def policy(statements):
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


@pytest.fixture(scope="session")
def gitops_platform():
    """The Git server, Flux and Argo CD of `e2e/stack gitops up`, started for the session unless
    they are running already (then left running); built into the cache first if they are not."""
    started = run([STACK, "gitops", "status"], check=False).returncode != 0
    if started:
        run([STACK, "gitops", "up"], timeout=3600)
    yield
    if started:
        run([STACK, "gitops", "down"], check=False, timeout=300)
