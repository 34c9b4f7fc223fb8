"""End to end: two operator processes share one Lease; only the holder reconciles, and when it is
killed the other takes over within the lease duration (plus one retry period to notice)."""

import json
import time

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
    first = OperatorProcess(directory, "a")
    second = OperatorProcess(directory, "b")
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

        # The new leader reconciles: a change made now is picked up.
        apply(domain_manifest(name, description="changed after failover"))
        wait_for(lambda: json.loads(kubectl("get", "domain", name, "-o", "json").stdout)["status"]
                 .get("observedGeneration") == 2, timeout=60, message="the new leader to reconcile")
        assert reconciles(standby) > 0

        kubectl("delete", "domain", name, "--timeout", "60s")
        kubectl("delete", "namespace", name, "--wait=false")

        # A graceful stop hands the lease back at once.
        assert standby.terminate() == 0, standby.logs()
        assert lease_holder() == "", "SIGTERM must release the lease"
    finally:
        for process in processes:
            process.kill()
