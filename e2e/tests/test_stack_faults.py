"""Faults of the local platform: Kafka and SeaweedFS stopped (`e2e/stack stop`) or killed (SIGKILL),
then started again (`e2e/stack start`), keep their data and every credential.

The other test modules share the platform, so each test leaves its component running and healthy,
whatever happened (try/finally).
"""

import os
import secrets
import signal
import time
from pathlib import Path

import botocore.exceptions
import pytest

from conftest import STACK, Kafka, env, policy, run, s3_client, unique


def stack_status():
    """Component name -> its `e2e/stack status` line (without the name)."""
    out = run([STACK, "status"], check=False).stdout
    lines = dict(line.split(None, 1) for line in out.splitlines() if line and not line.startswith("run directory:"))
    return out, lines


@pytest.fixture(scope="module", autouse=True)
def same_platform():
    """`e2e/stack stop|start` act on the instance named by DATAMESH_RUN and the ports in the
    environment; the clients here on the one `e2e/stack env` described. They must be the same."""
    out, _ = stack_status()
    assert out.startswith(f"run directory: {env('DATAMESH_STACK_RUN')}\n"), out


def pid_of(component):
    return int(Path(env("DATAMESH_STACK_RUN"), f"{component}.pid").read_text())


def alive(pid):
    """The process exists and is the platform's (a zombie's cmdline is empty)."""
    try:
        return env("DATAMESH_STACK_RUN").encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False


def gone(pid):
    """The process has exited: reaped or a zombie (one still exiting has lost its cmdline but
    still holds its ports and files)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def stop(component):
    pid = pid_of(component)
    assert alive(pid)
    run([STACK, "stop", component], timeout=120)
    assert gone(pid), "`e2e/stack stop` returned while the process was still there"
    assert stack_status()[1][component].strip() == "down"


def kill(component):
    pid = pid_of(component)
    assert alive(pid)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not gone(pid):
        assert time.monotonic() < deadline, f"{component} (pid {pid}) survived SIGKILL for 30 s"
        time.sleep(0.1)
    # The pid file stays behind, naming a dead process, as after a crash.
    assert Path(env("DATAMESH_STACK_RUN"), f"{component}.pid").exists()


def start(component):
    run([STACK, "start", component], timeout=180)
    line = stack_status()[1][component]
    assert line.startswith("healthy"), f"{component}: {line}"


def survives_faults(component, check):
    """A clean stop, then a SIGKILL, each followed by `e2e/stack start` and `check(fault)`."""
    try:
        stop(component)
        start(component)
        check("stop")
        kill(component)
        start(component)
        check("SIGKILL")
    finally:
        # Running and healthy for the next test, whatever failed above (a no-op when it is).
        run([STACK, "start", component], timeout=180)


def java_hash_bucket_zero(prefix):
    """A name starting with `prefix` that a java.util.HashMap of up to 65,536 buckets keeps in
    bucket 0, so that iterating the map visits it first: String.hashCode, then HashMap's spread
    (h ^ h >>> 16), low 16 bits all zero."""
    for n in range(10_000_000):
        name, h = f"{prefix}-{n}", 0
        for char in name:
            h = (31 * h + ord(char)) & 0xFFFFFFFF
        if (h ^ (h >> 16)) & 0xFFFF == 0:
            return name
    raise AssertionError(f"no bucket-0 name for {prefix}")


def test_kafka_keeps_topics_records_and_scram_credentials(kafka_admin, tmp_path):
    user, password = unique("faults"), secrets.token_hex(16)
    # A user deleted before the faults, whose removal a broker replaying its metadata from the log
    # alone meets before any credential: Kafka 4.3's ScramDelta.apply() then drops every SCRAM
    # credential, the admin's too (see start_kafka in e2e/stack). The platform must not replay
    # from the log alone.
    deleted = java_hash_bucket_zero(f"{user}-deleted")
    kafka_admin.tool("kafka-configs.sh", "--alter", "--entity-type", "users", "--entity-name", deleted,
                     "--add-config", f"SCRAM-SHA-512=[iterations=4096,password={secrets.token_hex(16)}]")
    kafka_admin.tool("kafka-configs.sh", "--alter", "--entity-type", "users", "--entity-name", deleted,
                     "--delete-config", "SCRAM-SHA-512")
    topic = f"{user}.events"
    kafka_admin.tool("kafka-topics.sh", "--create", "--topic", topic, "--partitions", "2")
    kafka_admin.produce(topic, ["one", "two", "three"])
    kafka_admin.tool("kafka-configs.sh", "--alter", "--entity-type", "users", "--entity-name", user,
                     "--add-config", f"SCRAM-SHA-512=[iterations=4096,password={password}]")
    # The user may read its own topic and use its own consumer groups, nothing else.
    kafka_admin.tool("kafka-acls.sh", "--add", "--allow-principal", f"User:{user}",
                     "--operation", "Read", "--operation", "Describe",
                     "--topic", f"{user}.", "--group", f"{user}.", "--resource-pattern-type", "prefixed")
    reader = Kafka(tmp_path, user, password)

    def records_read_by_the_user(group):
        return sorted(reader.consume(topic, 3, group=f"{user}.{group}", check=False))

    # SCRAM credentials and ACLs propagate through the metadata log: wait until the user reads
    # (each attempt in a group of its own, as a failed one may have committed offsets).
    deadline, attempt = time.monotonic() + 30, 0
    while (before := records_read_by_the_user(f"before-{attempt}")) != ["one", "three", "two"]:
        assert time.monotonic() < deadline, f"the user could not read its topic before any fault: {before}"
        attempt += 1
        time.sleep(1)

    def check(fault):
        # The admin authenticates with the platform's own credential and finds the topic whole.
        described = kafka_admin.tool("kafka-topics.sh", "--describe", "--topic", topic).stdout
        assert "PartitionCount: 2" in described, f"after {fault}: {described}"
        # The user authenticates with its password and reads every record (a fresh consumer group).
        assert records_read_by_the_user(fault) == ["one", "three", "two"], f"after {fault}"

    survives_faults("kafka", check)


def test_seaweedfs_keeps_buckets_objects_and_iam_keys(s3_admin, iam_admin):
    bucket, user = unique("faults"), unique("faults-reader")
    s3_admin.create_bucket(Bucket=bucket)
    s3_admin.put_object(Bucket=bucket, Key="kept.txt", Body=b"still here")
    iam_admin.create_user(UserName=user)
    key = iam_admin.create_access_key(UserName=user)["AccessKey"]
    iam_admin.put_user_policy(UserName=user, PolicyName="read-only", PolicyDocument=policy([{
        "Effect": "Allow",
        "Action": ["s3:GetObject", "s3:ListBucket"],
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
    }]))
    reader = s3_client(key["AccessKeyId"], key["SecretAccessKey"])
    assert reader.get_object(Bucket=bucket, Key="kept.txt")["Body"].read() == b"still here"

    def check(fault):
        # The admin's static credential: the bucket and its object are there.
        assert bucket in [b["Name"] for b in s3_admin.list_buckets()["Buckets"]], f"after {fault}"
        assert s3_admin.get_object(Bucket=bucket, Key="kept.txt")["Body"].read() == b"still here"
        # The IAM user's access key (kept in the filer), and its policy, still hold.
        assert [k["AccessKeyId"] for k in iam_admin.list_access_keys(UserName=user)["AccessKeyMetadata"]] == \
            [key["AccessKeyId"]], f"after {fault}"
        assert reader.get_object(Bucket=bucket, Key="kept.txt")["Body"].read() == b"still here", f"after {fault}"
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            reader.put_object(Bucket=bucket, Key="new.txt", Body=b"x")
        assert refused.value.response["Error"]["Code"] == "AccessDenied", f"after {fault}"

    survives_faults("seaweedfs", check)
