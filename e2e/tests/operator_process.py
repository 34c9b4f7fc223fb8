"""Running the operator binary out of cluster, the way a platform engineer installs it with the chart.

The CRDs come from crds/, the RBAC from the Helm chart's own templates, and the process runs with
the chart's ServiceAccount token (never as cluster admin), reading its admin credentials from
Secrets like an in-cluster install.
"""

import ctypes
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from conftest import REPO_DIR, STACK, env, kubectl, run, wait_established

NAMESPACE = "datamesh-system"
SERVICE_ACCOUNT = "datamesh-operator"
BINARY = REPO_DIR / "target" / "debug" / "datamesh-operator"
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


PR_SET_PDEATHSIG = 1
# Loaded here, not in the child: between fork and exec the child only makes the call.
LIBC = ctypes.CDLL(None, use_errno=True)


def end_with_parent():
    """Run in the child before exec: the kernel sends it SIGTERM when the test process dies, so
    an operator never outlives a killed pytest and reconciles against a later run's platform."""
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def install_crds():
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO_DIR / "crds" / "datamesh.dev.yaml"))
    wait_established("domains.datamesh.dev", "dataproducts.datamesh.dev", "accesspolicies.datamesh.dev")


KAFKA_CA_SECRET = "kafka-ca"
KAFKA_CLIENT_CERT_SECRET = "kafka-admin-tls"


def operator_on_mutual_tls() -> bool:
    """Whether the suites run the operator on the broker's mutual-TLS listener (the admin's
    client certificate, no password) instead of SASL_SSL: `DATAMESH_E2E_OPERATOR_KAFKA=mtls`.
    Only the operator's own connection changes; the tests' independent clients and the
    domains' workloads stay on SCRAM, which is how a production mesh on mTLS looks too."""
    mode = os.environ.get("DATAMESH_E2E_OPERATOR_KAFKA", "sasl")
    if mode not in ("sasl", "mtls"):
        raise ValueError(f"DATAMESH_E2E_OPERATOR_KAFKA must be sasl or mtls, not {mode!r}")
    return mode == "mtls"


def install_chart_rbac(*helm_sets):
    """Apply the RBAC objects the Helm chart renders (naming the Kafka CA Secret, and on mutual
    TLS the client certificate's Secret, as a platform engineer would, and `helm_sets`, more
    `--set` values), and the admin credential, CA and client certificate Secrets."""
    kubectl("create", "namespace", NAMESPACE, check=False)
    chart_values = [f"kafka.tls.caSecret.name={KAFKA_CA_SECRET}"]
    if operator_on_mutual_tls():
        chart_values.append(f"kafka.tls.clientCertificateSecret.name={KAFKA_CLIENT_CERT_SECRET}")
    sets = [arg for value in (*chart_values, *helm_sets) for arg in ("--set", value)]
    rendered = run(["helm", "template", "datamesh-operator", str(REPO_DIR / "charts" / "datamesh-operator"),
                    "--namespace", NAMESPACE, *sets]).stdout
    rbac = [doc for doc in yaml.safe_load_all(rendered) if doc and doc.get("kind") in RBAC_KINDS]
    assert {"ClusterRole", "ClusterRoleBinding", "ServiceAccount"} <= {d["kind"] for d in rbac}
    kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump_all(rbac))
    secrets = {
        "kafka-admin": ("password", env("KAFKA_ADMIN_PASSWORD")),
        "s3-admin": ("secretKey", env("S3_ADMIN_SECRET_KEY")),
    }
    for name, (key, value) in secrets.items():
        manifest = kubectl("create", "secret", "generic", name, "-n", NAMESPACE, f"--from-literal={key}={value}",
                           "--dry-run=client", "-o", "yaml").stdout
        kubectl("apply", "-f", "-", input=manifest)
    manifest = kubectl("create", "secret", "generic", KAFKA_CA_SECRET, "-n", NAMESPACE,
                       f"--from-file=ca.crt={env('KAFKA_CA_FILE')}", "--dry-run=client", "-o", "yaml").stdout
    kubectl("apply", "-f", "-", input=manifest)
    # The admin's client certificate as cert-manager would keep it: a `kubernetes.io/tls` Secret.
    manifest = kubectl("create", "secret", "tls", KAFKA_CLIENT_CERT_SECRET, "-n", NAMESPACE,
                       f"--cert={env('KAFKA_ADMIN_CERT_FILE')}", f"--key={env('KAFKA_ADMIN_KEY_FILE')}",
                       "--dry-run=client", "-o", "yaml").stdout
    kubectl("apply", "-f", "-", input=manifest)


def kafka_mutual_tls_config(sasl_mechanism="SCRAM-SHA-512") -> dict:
    """The operator's `kafka:` settings for the SSL listener: it logs in with the admin's client
    certificate (its CN is the user) and no password; the domains get `sasl_mechanism`
    credentials and the SASL_SSL listener in their Secrets."""
    secret_ref = {"namespace": NAMESPACE, "name": KAFKA_CLIENT_CERT_SECRET}
    return {
        "bootstrapServers": env("KAFKA_MTLS_BOOTSTRAP_SERVERS"),
        "securityProtocol": "SSL",
        # Not the admin's mechanism here (it logs in by certificate): the domains'.
        "saslMechanism": sasl_mechanism,
        "adminUser": env("KAFKA_ADMIN_USER"),
        "tls": {
            "caCertificate": {"secretKeyRef": {"namespace": NAMESPACE, "name": KAFKA_CA_SECRET, "key": "ca.crt"}},
            "clientCertificate": {"secretKeyRef": {**secret_ref, "key": "tls.crt"}},
            "clientKey": {"secretKeyRef": {**secret_ref, "key": "tls.key"}},
        },
        "domainBootstrapServers": env("KAFKA_SASL_SSL_BOOTSTRAP_SERVERS"),
        "domainSecurityProtocol": "SASL_SSL",
        "defaultReplicas": 1,
    }


def kafka_config() -> dict:
    """The operator's `kafka:` settings for the suites: mutual TLS when
    `DATAMESH_E2E_OPERATOR_KAFKA=mtls` asks for it, SCRAM on the platform's listener otherwise."""
    return kafka_mutual_tls_config() if operator_on_mutual_tls() else kafka_scram_config()


def kafka_scram_config() -> dict:
    """The operator's `kafka:` settings for the platform's SCRAM listener: SASL_SSL with the CA
    read from a Secret (or SASL_PLAINTEXT when `e2e/stack env` was asked for it)."""
    config = {
        "bootstrapServers": env("KAFKA_BOOTSTRAP_SERVERS"),
        "securityProtocol": env("KAFKA_SECURITY_PROTOCOL"),
        "adminUser": env("KAFKA_ADMIN_USER"),
        "adminPassword": {"secretKeyRef": {"namespace": NAMESPACE, "name": "kafka-admin", "key": "password"}},
        "defaultReplicas": 1,
    }
    if env("KAFKA_SECURITY_PROTOCOL") == "SASL_SSL":
        config["tls"] = {"caCertificate": {"secretKeyRef": {"namespace": NAMESPACE, "name": KAFKA_CA_SECRET,
                                                             "key": "ca.crt"}}}
    return config


class OperatorProcess:
    """One `datamesh-operator run` process with the chart's ServiceAccount credentials."""

    def __init__(self, workdir: Path, name: str, extra_env=None, extra_args=(), extra_config=None, kafka=None):
        """extra_config: top-level keys added to the operator's config.yaml (e.g.
        `reservedDomainNames`); kafka: its `kafka:` section (default: `kafka_config()`)."""
        self.name = name
        self.port = free_port()
        self.log_path = workdir / f"operator-{name}.log"
        kubeconfig = run([STACK, "kubeconfig", "serviceaccount", NAMESPACE, SERVICE_ACCOUNT]).stdout.strip()
        config = workdir / "config.yaml"
        config.write_text(yaml.safe_dump({
            "kafka": kafka or kafka_config(),
            "s3": {
                "endpoint": env("S3_ENDPOINT"),
                "iamEndpoint": env("S3_IAM_ENDPOINT"),
                "adminAccessKey": env("S3_ADMIN_ACCESS_KEY"),
                "adminSecretKey": {"secretKeyRef": {"namespace": NAMESPACE, "name": "s3-admin", "key": "secretKey"}},
                "caBundle": {"file": env("AWS_CA_BUNDLE")},
            },
            **(extra_config or {}),
        }))
        process_env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "S3_"))}
        process_env.update({
            "KUBECONFIG": kubeconfig,
            "POD_NAMESPACE": NAMESPACE,
            "POD_NAME": f"operator-{name}",
            "RUST_LOG": "info,datamesh_operator=debug",
            **(extra_env or {}),
        })
        if not any(str(arg).startswith(("--lease-", "--leader-elect")) for arg in extra_args):
            # One process at a time, so no election: on this 2-core machine etcd and the API
            # server sometimes stall for over ten seconds (seen while Kafka restarted under
            # load), and a leader that cannot renew rightly stops, which would end a suite that
            # is not about leader election. test_leader_election.py runs with election, and
            # timings of its own.
            extra_args = ("--leader-elect=false", *extra_args)
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [str(BINARY), "run", "--config", str(config), "--metrics-addr", f"127.0.0.1:{self.port}", *extra_args],
            stdout=self.log, stderr=subprocess.STDOUT, env=process_env, start_new_session=True,
            preexec_fn=end_with_parent,
        )
        self.wait_ready()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path) -> str:
        with urllib.request.urlopen(self.url(path), timeout=5) as response:
            return response.read().decode()

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"operator {self.name} exited {self.process.returncode}:\n{self.logs()}")
            try:
                if self.get("/readyz").strip() == "ok":
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"operator {self.name} not ready in {timeout}s:\n{self.logs()}")

    def metric(self, name: str) -> float:
        """The value of one sample line (`name{labels}` exactly), 0 when absent."""
        for line in self.get("/metrics").splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return 0.0

    def logs(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def signal(self, signum):
        self.process.send_signal(signum)

    def kill(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def terminate(self, timeout=30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=timeout)
        self.log.close()
        return self.process.returncode


# What kubectl prints when it did not reach the API server at all (the platform is briefly
# overloaded): a poll that meets one of these asks again instead of failing.
API_SERVER_UNREACHED = ("Unable to connect to the server", "TLS handshake timeout", "i/o timeout")


def wait_for(predicate, timeout=60, interval=0.5, message="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except AssertionError as error:
            if not any(sign in str(error) for sign in API_SERVER_UNREACHED):
                raise
            last = f"API server not reached: {str(error).strip().splitlines()[-1]}"
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="datamesh-e2e-"))
