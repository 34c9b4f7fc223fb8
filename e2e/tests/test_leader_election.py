"""End to end: two operator processes share one Lease; only the holder reconciles, and when it is
killed the other takes over within the lease duration (plus one retry period to notice). A leader
frozen past its lease (SIGSTOP) and resumed makes no write (the API server's audit log says) and exits."""

import json
import os
import signal
import time
from pathlib import Path

from conftest import kubectl, unique
from operator_process import NAMESPACE, OperatorProcess, install_chart_rbac, install_crds, wait_for, workdir
from test_domain import apply, domain_manifest, wait_ready

LEASE_DURATION_SECONDS = 15
RETRY_PERIOD_SECONDS = 2


def lease_holder():
    lease = json.loads(kubectl("get", "lease", "datamesh-operator", "-n", NAMESPACE, "-o", "json").stdout)
    return lease["spec"].get("holderIdentity") or ""


def reconciles(process):
    return process.metric('datamesh_operator_reconciles_total{kind="Domain"}')


def test_only_the_lease_holder_reconciles_and_a_standby_takes_over():
    install_crds()
    install_chart_rbac()
    directory = workdir()
    # The chart's (client-go's) timings, which the standby's takeover time below is judged by.
    chart_lease = ("--lease-duration-seconds", str(LEASE_DURATION_SECONDS),
                   "--lease-renew-deadline-seconds", "10",
                   "--lease-retry-period-seconds", str(RETRY_PERIOD_SECONDS))
    first = OperatorProcess(directory, "a", extra_args=chart_lease)
    second = OperatorProcess(directory, "b", extra_args=chart_lease)
    processes = [first, second]
    try:
        leader = wait_for(lambda: next((p for p in processes if p.metric("datamesh_operator_leader") == 1), None),
                          timeout=30, message="a leader")
        standby = second if leader is first else first
        assert lease_holder() == f"operator-{leader.name}"
        assert standby.metric("datamesh_operator_leader") == 0

        name = unique("lead")
        apply(domain_manifest(name))
        wait_ready("domain", name)
        assert reconciles(leader) > 0
        assert reconciles(standby) == 0, "a standby must not reconcile"

        leader.kill()
        killed_at = time.monotonic()
        wait_for(lambda: standby.metric("datamesh_operator_leader") == 1,
                 timeout=LEASE_DURATION_SECONDS + 2 * RETRY_PERIOD_SECONDS, interval=0.2,
                 message="the standby to take over")
        print(f"standby took over {time.monotonic() - killed_at:.1f}s after the leader was killed")
        assert lease_holder() == f"operator-{standby.name}"

        # The new leader reconciles: a change made now is picked up. It starts by resyncing every
        # object on the shared platform (hundreds by this point of a full run, on two cores that
        # a second platform shares in CI), so this waits for liveness, not for speed.
        apply(domain_manifest(name, description="changed after failover"))
        wait_for(lambda: json.loads(kubectl("get", "domain", name, "-o", "json").stdout)["status"]
                 .get("observedGeneration") == 2, timeout=180, message="the new leader to reconcile")
        assert reconciles(standby) > 0

        kubectl("delete", "domain", name, "--timeout", "60s")
        kubectl("delete", "namespace", name, "--wait=false")

        # A graceful stop hands the lease back at once.
        assert standby.terminate() == 0, standby.logs()
        assert lease_holder() == "", "SIGTERM must release the lease"
    finally:
        for process in processes:
            process.kill()


# Shorter timings for the fencing test, through the binary's own flags.
FENCE_LEASE_SECONDS = 6
FENCE_RENEW_DEADLINE_SECONDS = 4
FENCE_RETRY_SECONDS = 1
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}


def stack_run() -> Path:
    return Path(os.environ.get("DATAMESH_STACK_RUN") or os.environ.get("DATAMESH_RUN")
                or "/tmp/datamesh-operator-stack")


def audit_log() -> Path:
    return stack_run() / "audit.log"


def audit_events(start_offset=0):
    """The API server's audit events (one JSON object a line) from a byte offset on."""
    with open(audit_log(), "rb") as log:
        log.seek(start_offset)
        return [json.loads(line) for line in log.read().splitlines() if line.strip()]


def writes_by(events, process):
    """The write requests the audit log attributes to one operator process, by its User-Agent
    (`datamesh-operator/VERSION (IDENTITY)`): both processes use the same ServiceAccount."""
    agent = f"(operator-{process.name})"
    return [(e["verb"], e.get("objectRef", {}).get("resource"), e.get("objectRef", {}).get("name"),
             e.get("requestReceivedTimestamp"))
            for e in events if e.get("verb") in WRITE_VERBS and agent in (e.get("userAgent") or "")]


def test_a_leader_frozen_past_its_lease_makes_no_write_once_resumed():
    install_crds()
    install_chart_rbac()
    directory = workdir()
    # The chart's Role grants the Lease `datamesh-operator` only: the test shares it.
    suffix = unique("fence").rsplit("-", 1)[1]
    args = ["--lease-duration-seconds", str(FENCE_LEASE_SECONDS),
            "--lease-renew-deadline-seconds", str(FENCE_RENEW_DEADLINE_SECONDS),
            "--lease-retry-period-seconds", str(FENCE_RETRY_SECONDS)]
    first = OperatorProcess(directory, f"a-{suffix}", extra_args=args)
    second = OperatorProcess(directory, f"b-{suffix}", extra_args=args)
    processes = [first, second]
    names = []
    try:
        leader = wait_for(lambda: next((p for p in processes if p.metric("datamesh_operator_leader") == 1), None),
                          timeout=LEASE_DURATION_SECONDS + 15, message="a leader")
        standby = second if leader is first else first
        assert lease_holder() == f"operator-{leader.name}"

        # The leader works, and the audit log tells its writes apart from the standby's.
        start = audit_log().stat().st_size
        names.append(unique("fence"))
        apply(domain_manifest(names[0]))
        wait_ready("domain", names[0])
        before = audit_events(start)
        assert writes_by(before, leader), "the leader's writes must show in the audit log under its User-Agent"
        assert not writes_by(before, standby), f"a standby wrote: {writes_by(before, standby)}"

        # Freeze the leader in the middle of a reconcile: with the object store stopped, a new
        # Domain's reconcile hangs on its IAM reads (the reconcile observes everything before it
        # writes: after its finalizer, before its namespace, Secret and status). The store comes
        # back while the leader is frozen, so on resume the leader could go on where it stopped
        # and make those writes: it must abandon the reconcile instead.
        names.append(unique("fence"))
        seaweedfs = int((stack_run() / "seaweedfs.pid").read_text())
        os.kill(seaweedfs, signal.SIGSTOP)
        try:
            frozen_from = audit_log().stat().st_size
            apply(domain_manifest(names[-1]))
            wait_for(lambda: any(resource == "domains" and name == names[-1]
                                 for _, resource, name, _ in writes_by(audit_events(frozen_from), leader)),
                     timeout=30, interval=0.2, message="the leader to take up the new Domain (its finalizer)")
            # Its Kubernetes and Kafka reads take milliseconds; then it waits on the store.
            time.sleep(2)
            leader.signal(signal.SIGSTOP)
            stopped_at = time.monotonic()
        finally:
            os.kill(seaweedfs, signal.SIGCONT)
        wait_for(lambda: standby.metric("datamesh_operator_leader") == 1,
                 timeout=FENCE_LEASE_SECONDS + 4 * FENCE_RETRY_SECONDS + 5, interval=0.2,
                 message="the standby to take over")
        took_over = time.monotonic() - stopped_at
        print(f"standby took over {took_over:.1f}s after the leader was stopped")
        assert lease_holder() == f"operator-{standby.name}"

        # Work for the reconcilers while the old leader is frozen: its watches deliver it on resume,
        # racing its renewal loop's discovery that it no longer leads.
        names.append(unique("fence"))
        apply(domain_manifest(names[-1]))
        apply(domain_manifest(names[0], description="changed while the old leader was frozen"))
        time.sleep(max(0.0, FENCE_LEASE_SECONDS + 2 - (time.monotonic() - stopped_at)))
        resumed_from = audit_log().stat().st_size
        leader.signal(signal.SIGCONT)
        resumed_at = time.monotonic()
        print(f"old leader resumed {resumed_at - stopped_at:.1f}s after it was stopped")
        names.append(unique("fence"))
        apply(domain_manifest(names[-1]))
        apply(domain_manifest(names[0], description="changed after the old leader was resumed"))

        # The old leader gives up at once and exits non-zero, to restart as a candidate.
        returncode = leader.process.wait(timeout=10)
        print(f"old leader exited {returncode} {time.monotonic() - resumed_at:.1f}s after it was resumed")
        assert returncode != 0, leader.logs()
        assert "lost the leader lease" in leader.logs()

        # The new leader does the work.
        for name in names:
            wait_ready("domain", name)
        wait_for(lambda: json.loads(kubectl("get", "domain", names[0], "-o", "json").stdout)["status"]
                 .get("observedGeneration") == 3, timeout=60, message="the new leader to reconcile the change")

        after = audit_events(resumed_from)
        stale = writes_by(after, leader)
        print(f"writes by the old leader after it was resumed: {len(stale)}; "
              f"by the new leader: {len(writes_by(after, standby))}")
        assert not stale, f"the old leader wrote after losing the lease: {stale}"
        assert writes_by(after, standby), "the new leader's writes must show in the audit log"
        assert lease_holder() == f"operator-{standby.name}"

        for name in names:
            kubectl("delete", "domain", name, "--timeout", "60s")
            kubectl("delete", "namespace", name, "--wait=false")
        assert standby.terminate() == 0, standby.logs()
    finally:
        for process in processes:
            process.kill()
