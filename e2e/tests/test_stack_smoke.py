"""Smoke tests of the local platform: each component answers a real client, and enforces access.

Each test fails when its component is stopped (checked by hand; see the README's local platform
section).
"""

import os
import secrets
import time

import botocore.exceptions
import pytest

from conftest import STACK, Kafka, env, kubectl, policy, run, s3_client, unique


def test_apiserver_is_ready_and_reports_the_pinned_version():
    assert kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    version = kubectl("version", "-o", "json").stdout
    assert '"gitVersion": "v1.' in version
    client, server = (line for line in version.splitlines() if '"gitVersion"' in line)
    assert client.strip() == server.strip(), "kubectl and kube-apiserver must come from one release"


def test_admin_creates_and_lists_a_configmap():
    name = unique("smoke")
    kubectl("create", "configmap", name, "-n", "default", "--from-literal", "answer=42")
    try:
        listed = kubectl("get", "configmaps", "-n", "default", "-o", "name").stdout.split()
        assert f"configmap/{name}" in listed
        assert kubectl("get", "configmap", name, "-n", "default", "-o", "jsonpath={.data.answer}").stdout == "42"
    finally:
        kubectl("delete", "configmap", name, "-n", "default")


def test_user_without_bindings_is_refused_by_rbac():
    user = unique("nobody")
    kubeconfig = run([STACK, "kubeconfig", "user", user]).stdout.strip()
    # The user authenticates (the API server knows who it is) but holds no permission.
    whoami = kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}", kubeconfig=kubeconfig)
    assert whoami.stdout == user
    refused = kubectl("get", "configmaps", "-n", "default", kubeconfig=kubeconfig, check=False)
    assert refused.returncode != 0
    assert "Forbidden" in refused.stderr and user in refused.stderr


def test_serviceaccount_kubeconfig_authenticates_as_the_serviceaccount():
    namespace = unique("smoke")
    kubectl("create", "namespace", namespace)
    try:
        kubectl("create", "serviceaccount", "robot", "-n", namespace)
        kubeconfig = run([STACK, "kubeconfig", "serviceaccount", namespace, "robot"]).stdout.strip()
        whoami = kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}", kubeconfig=kubeconfig)
        assert whoami.stdout == f"system:serviceaccount:{namespace}:robot"
        assert kubectl("get", "pods", "-n", namespace, kubeconfig=kubeconfig, check=False).returncode != 0
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false")


def test_spark_operator_crds_are_installed():
    for crd in ("sparkapplications.sparkoperator.k8s.io", "scheduledsparkapplications.sparkoperator.k8s.io"):
        kubectl("get", "crd", crd)


def test_kafka_admin_creates_a_topic_and_produces_to_it(kafka_admin):
    topic = unique("smoke")
    kafka_admin.tool("kafka-topics.sh", "--create", "--topic", topic, "--partitions", "3")
    described = kafka_admin.tool("kafka-topics.sh", "--describe", "--topic", topic).stdout
    assert "PartitionCount: 3" in described
    kafka_admin.produce(topic, ["first", "second", "third"])
    assert sorted(kafka_admin.consume(topic, 3)) == ["first", "second", "third"]


def test_kafka_refuses_a_scram_user_without_acls(kafka_admin, tmp_path):
    topic, user, password = unique("smoke"), unique("stranger"), secrets.token_hex(16)
    kafka_admin.tool("kafka-topics.sh", "--create", "--topic", topic, "--partitions", "1")
    kafka_admin.tool("kafka-configs.sh", "--alter", "--entity-type", "users", "--entity-name", user,
                     "--add-config", f"SCRAM-SHA-512=[iterations=4096,password={password}]")
    stranger = Kafka(tmp_path, user, password)
    # SCRAM credentials propagate through the metadata log; wait until the user authenticates.
    deadline = time.monotonic() + 30
    while True:
        listed = stranger.tool("kafka-topics.sh", "--list", check=False, timeout=60)
        if listed.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert listed.returncode == 0, f"the SCRAM user could not authenticate: {listed.stderr}"
    assert topic not in listed.stdout.split(), "a user with no ACL must not even see the topic"
    refused = stranger.produce(topic, ["should not land"], check=False)
    assert "TopicAuthorizationException" in refused.stderr or "Not authorized to access topics" in refused.stderr
    assert kafka_admin.consume(topic, 1, check=False) == [], "nothing may have been written"


def test_s3_admin_creates_a_bucket(s3_admin):
    bucket = unique("smoke")
    s3_admin.create_bucket(Bucket=bucket)
    assert bucket in [b["Name"] for b in s3_admin.list_buckets()["Buckets"]]
    s3_admin.put_object(Bucket=bucket, Key="hello.txt", Body=b"hello")
    assert s3_admin.get_object(Bucket=bucket, Key="hello.txt")["Body"].read() == b"hello"


def test_iam_user_with_read_only_policy_reads_and_is_refused_a_write(s3_admin, iam_admin):
    bucket, user = unique("smoke"), unique("reader")
    s3_admin.create_bucket(Bucket=bucket)
    s3_admin.put_object(Bucket=bucket, Key="data.csv", Body=b"a,b\n1,2\n")
    iam_admin.create_user(UserName=user)
    key = iam_admin.create_access_key(UserName=user)["AccessKey"]
    iam_admin.put_user_policy(UserName=user, PolicyName="read-only", PolicyDocument=policy([{
        "Effect": "Allow",
        "Action": ["s3:GetObject", "s3:ListBucket"],
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
    }]))
    reader = s3_client(key["AccessKeyId"], key["SecretAccessKey"])
    assert reader.get_object(Bucket=bucket, Key="data.csv")["Body"].read() == b"a,b\n1,2\n"
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        reader.put_object(Bucket=bucket, Key="new.csv", Body=b"x")
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    keys = [o["Key"] for o in s3_admin.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["data.csv"], "the refused write must not have landed"


def test_stack_env_names_every_client_variable():
    exported = run([STACK, "env"]).stdout
    for name in ("KUBECONFIG", "KAFKA_BOOTSTRAP_SERVERS", "KAFKA_SECURITY_PROTOCOL", "KAFKA_CA_FILE",
                 "KAFKA_SASL_SSL_BOOTSTRAP_SERVERS", "KAFKA_SASL_PLAINTEXT_BOOTSTRAP_SERVERS",
                 "KAFKA_MTLS_BOOTSTRAP_SERVERS", "KAFKA_ADMIN_USER", "KAFKA_ADMIN_PASSWORD", "KAFKA_ADMIN_CONFIG",
                 "KAFKA_ADMIN_CERT_FILE", "KAFKA_ADMIN_KEY_FILE", "KAFKA_ADMIN_MTLS_CONFIG",
                 "S3_ENDPOINT", "S3_IAM_ENDPOINT", "S3_ADMIN_ACCESS_KEY", "S3_ADMIN_SECRET_KEY", "AWS_CA_BUNDLE"):
        assert f"export {name}=" in exported
    assert env("KAFKA_ADMIN_PASSWORD") in exported
    # TLS by default; plaintext when a developer asks for it.
    assert 'export KAFKA_SECURITY_PROTOCOL="SASL_SSL"' in exported
    plaintext = run([STACK, "env"], extra_env={"DATAMESH_KAFKA_PLAINTEXT": "1"}).stdout
    assert 'export KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT"' in plaintext
    assert f'export KAFKA_BOOTSTRAP_SERVERS="{env("KAFKA_SASL_PLAINTEXT_BOOTSTRAP_SERVERS")}"' in plaintext


def test_s3_speaks_https_only_with_the_platform_ca(tmp_path):
    """The S3 (and IAM) port serves TLS with a certificate the platform's CA signed, for
    127.0.0.1; plain HTTP is not served, and without the CA the certificate is not trusted."""
    endpoint = env("S3_ENDPOINT")
    assert endpoint.startswith("https://") and env("S3_IAM_ENDPOINT").startswith("https://")
    trusted = run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", env("AWS_CA_BUNDLE"),
                   endpoint + "/"], check=False)
    assert trusted.returncode == 0 and trusted.stdout.strip() in ("200", "403"), trusted.stderr
    # Another CA of the platform (the client-certificate CA) did not sign it: curl's error 60.
    other_ca = os.path.join(env("DATAMESH_STACK_RUN"), "pki", "client-ca.crt")
    untrusted = run(["curl", "-sS", "-o", "/dev/null", "--cacert", other_ca, endpoint + "/"], check=False)
    assert untrusted.returncode == 60, f"the certificate verified without the platform's CA: {untrusted}"
    plain = run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                 endpoint.replace("https://", "http://") + "/"], check=False)
    assert plain.returncode != 0 or plain.stdout.strip() == "400", f"plain HTTP answered {plain.stdout}"
