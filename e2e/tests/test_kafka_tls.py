"""End to end: Kafka over TLS, as production clusters run it.

- A domain's workload reaches Kafka with nothing but its credentials Secret: the client properties
  are built only from the Secret's keys (bootstrap servers, protocol, mechanism, CA certificate,
  user, password), and Kafka's own console producer and consumer use them on the domain's topic.
- The operator logs in over mutual TLS (the SSL listener, which requires a client certificate
  and maps its CN to the user) with the admin's certificate and no password at all, and still
  makes a Domain and a DataProduct Ready; the topic is checked with Kafka's own tools. There the
  domains get SCRAM-SHA-256 credentials (`saslMechanism`), which their clients log in with.

- Inconsistent settings stop the operator at start-up with a message naming the setting.

The operator runs out of cluster with the Helm chart's RBAC. The other suites run it on SASL_SSL, or on
mutual TLS with `DATAMESH_E2E_OPERATOR_KAFKA=mtls` (as `e2e/test` does for its second pass).
"""

import pytest
import yaml

from conftest import Kafka, apply, env, get_json, kubectl, run, secret_data, unique
from operator_process import (BINARY, KAFKA_CA_SECRET, KAFKA_CLIENT_CERT_SECRET, NAMESPACE, OperatorProcess,
                              install_chart_rbac, install_crds, kafka_mutual_tls_config, kafka_scram_config, workdir)


def ready_domain(name):
    apply({"apiVersion": "datamesh.dev/v1alpha1", "kind": "Domain", "metadata": {"name": name}, "spec": {}})
    kubectl("wait", "--for", "condition=Ready", "--timeout", "90s", f"domain/{name}")


def ready_product(domain, name, port):
    apply({
        "apiVersion": "datamesh.dev/v1alpha1", "kind": "DataProduct",
        "metadata": {"name": name, "namespace": domain},
        "spec": {"domain": domain, "owner": {"name": "alice"},
                 "description": {"purpose": "Orders as they happen", "usage": "Stream it"},
                 "outputPorts": [{"name": port, "kafka": {"partitions": 2, "replicas": 1}}]},
    })
    kubectl("wait", "--for", "condition=Ready", "--timeout", "90s", f"dataproduct/{name}", "-n", domain)
    return get_json("dataproduct", name, "-n", domain)


@pytest.fixture
def operator_on_sasl_ssl():
    """The operator on the SASL_SSL listener (what the other suites use too, unless a developer
    asked `e2e/stack env` for plaintext), with the CA from a Secret."""
    install_crds()
    install_chart_rbac()
    process = OperatorProcess(workdir(), "kafka-sasl-ssl", kafka={
        **kafka_scram_config(),
        "bootstrapServers": env("KAFKA_SASL_SSL_BOOTSTRAP_SERVERS"),
        "securityProtocol": "SASL_SSL",
        "tls": {"caCertificate": {"secretKeyRef": {"namespace": NAMESPACE, "name": KAFKA_CA_SECRET, "key": "ca.crt"}}},
    })
    yield process
    assert process.terminate() == 0, process.logs()


def test_a_domain_workload_connects_with_nothing_but_its_credentials_secret(operator_on_sasl_ssl, tmp_path):
    domain = unique("tls")
    ready_domain(domain)
    product = ready_product(domain, "orders", "events")
    topic = f"{domain}.orders.events"

    secret = secret_data(domain, f"{domain}-credentials")
    assert secret["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert secret["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert secret["KAFKA_BOOTSTRAP_SERVERS"] == env("KAFKA_SASL_SSL_BOOTSTRAP_SERVERS")
    assert "BEGIN CERTIFICATE" in secret["KAFKA_CA_CERT"]
    assert [p["bootstrapServers"] for p in product["status"]["outputPorts"]] == [secret["KAFKA_BOOTSTRAP_SERVERS"]]

    # What a workload does with `envFrom: secretRef`: everything below comes from the Secret.
    ca = tmp_path / "kafka-ca.pem"
    ca.write_text(secret["KAFKA_CA_CERT"])
    workload = Kafka.with_properties(tmp_path / "workload.properties", secret["KAFKA_BOOTSTRAP_SERVERS"], [
        f"security.protocol={secret['KAFKA_SECURITY_PROTOCOL']}",
        f"sasl.mechanism={secret['KAFKA_SASL_MECHANISM']}",
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{secret["KAFKA_USERNAME"]}" password="{secret["KAFKA_PASSWORD"]}";',
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={ca}",
    ])
    workload.produce(topic, ["order-1", "order-2", "order-3"])
    assert workload.consume(topic, 3, group=f"{domain}.orders.workload") == ["order-1", "order-2", "order-3"]

    # The CA is what makes it work: without it the JVM's own trust store refuses the broker.
    untrusting = Kafka.with_properties(tmp_path / "untrusting.properties", secret["KAFKA_BOOTSTRAP_SERVERS"], [
        f"security.protocol={secret['KAFKA_SECURITY_PROTOCOL']}",
        f"sasl.mechanism={secret['KAFKA_SASL_MECHANISM']}",
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{secret["KAFKA_USERNAME"]}" password="{secret["KAFKA_PASSWORD"]}";',
    ])
    refused = untrusting.tool("kafka-topics.sh", "--list", check=False, timeout=90)
    assert refused.returncode != 0 and "SSL handshake failed" in refused.stdout + refused.stderr, refused


@pytest.fixture
def operator_on_mutual_tls():
    """The operator on the SSL listener with the admin's client certificate, read from a
    `kubernetes.io/tls` Secret (as cert-manager makes it), and no password in its config; the
    domains get SCRAM-SHA-256 credentials."""
    install_crds()
    install_chart_rbac(f"kafka.tls.clientCertificateSecret.name={KAFKA_CLIENT_CERT_SECRET}")
    process = OperatorProcess(workdir(), "kafka-mtls", kafka=kafka_mutual_tls_config("SCRAM-SHA-256"))
    yield process
    assert process.terminate() == 0, process.logs()


def test_the_operator_manages_kafka_over_mutual_tls(operator_on_mutual_tls, kafka_admin, tmp_path):
    # The listener admits only a client certificate of the platform's client CA.
    no_certificate = Kafka.with_properties(tmp_path / "no-certificate.properties", env("KAFKA_MTLS_BOOTSTRAP_SERVERS"), [
        "security.protocol=SSL", "ssl.truststore.type=PEM", f"ssl.truststore.location={env('KAFKA_CA_FILE')}",
    ])
    assert no_certificate.tool("kafka-topics.sh", "--list", check=False, timeout=90).returncode != 0
    admin_by_certificate = Kafka.with_properties(
        tmp_path / "mtls.properties", env("KAFKA_MTLS_BOOTSTRAP_SERVERS"),
        open(env("KAFKA_ADMIN_MTLS_CONFIG")).read().splitlines())

    domain = unique("mtls")
    ready_domain(domain)
    ready_product(domain, "orders", "events")
    topic = f"{domain}.orders.events"
    # Seen with Kafka's own tools, over SASL_SSL and over mutual TLS.
    assert topic in kafka_admin.tool("kafka-topics.sh", "--list").stdout.split()
    described = admin_by_certificate.tool("kafka-topics.sh", "--describe", "--topic", topic).stdout
    assert "PartitionCount: 2" in described, described
    acls = kafka_admin.tool("kafka-acls.sh", "--list", "--topic", topic).stdout
    assert f"User:{domain}" in acls, acls

    # The domain itself logs in with SCRAM-SHA-256, on the SASL_SSL listener its Secret names.
    secret = secret_data(domain, f"{domain}-credentials")
    assert (secret["KAFKA_SECURITY_PROTOCOL"], secret["KAFKA_BOOTSTRAP_SERVERS"], secret["KAFKA_SASL_MECHANISM"]) == (
        "SASL_SSL", env("KAFKA_SASL_SSL_BOOTSTRAP_SERVERS"), "SCRAM-SHA-256")
    assert secret["KAFKA_CA_CERT"].strip() == open(env("KAFKA_CA_FILE")).read().strip()
    credentials = kafka_admin.tool("kafka-configs.sh", "--describe", "--entity-type", "users",
                                   "--entity-name", domain).stdout
    assert "SCRAM-SHA-256=" in credentials and "SCRAM-SHA-512" not in credentials, credentials
    domain_client = Kafka(tmp_path, domain, secret["KAFKA_PASSWORD"], protocol="SASL_SSL",
                          mechanism=secret["KAFKA_SASL_MECHANISM"], bootstrap=secret["KAFKA_BOOTSTRAP_SERVERS"])
    domain_client.produce(topic, ["over-tls"])
    assert domain_client.consume(topic, 1, group=f"{domain}.orders.check") == ["over-tls"]
    # And the operator's config holds no password: it got in by its certificate alone.
    assert "adminPassword" not in (operator_on_mutual_tls.log_path.parent / "config.yaml").read_text()


@pytest.mark.parametrize("kafka, message", [
    ({"securityProtocol": "SSL", "tls": {"clientCertificate": {"file": "/nonexistent/tls.crt"}},
      "domainSecurityProtocol": "SASL_SSL", "domainBootstrapServers": "127.0.0.1:2"},
     "setting DATAMESH_KAFKA_TLS_CLIENT_KEY is not valid: kafka.tls.clientCertificate is set without its key"),
    ({"securityProtocol": "SASL_PLAINTEXT", "adminUser": "admin", "adminPassword": {"file": "/nonexistent/pw"},
      "tls": {"clientCertificate": {"file": "/c"}, "clientKey": {"file": "/k"}}},
     "a client certificate is used only with SSL or SASL_SSL, not with SASL_PLAINTEXT"),
])
def test_inconsistent_kafka_settings_stop_the_operator_at_start_up(kafka, message, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "kafka": {"bootstrapServers": "127.0.0.1:1", **kafka},
        "s3": {"endpoint": "http://127.0.0.1:3", "adminAccessKey": "admin", "adminSecretKey": {"file": "/nonexistent"}},
    }))
    result = run([str(BINARY), "run", "--config", str(config), "--leader-elect=false", "--log-format", "text"],
                 check=False, timeout=30, extra_env={"KUBECONFIG": "/nonexistent"})
    assert result.returncode != 0
    assert message in result.stdout + result.stderr, result
