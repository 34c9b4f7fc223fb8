"""End to end: the catalog the operator serves (`--catalog-addr`), read as a person reads it, in a
headless Chromium (Debian's `chromium`): the mesh page lists every sample product with its
health, a Stalled product shows the operator's message, and the lineage graph has one edge per
input port, coloured by its access. Screenshots of the mesh page and the lineage graph are saved
under the test's temporary directory (the README's come from a run of this test).
"""

import json
import shutil
import subprocess
import urllib.request

import pytest
import yaml

from conftest import REPO_DIR, apply, get_json, kubectl, run, unique
from operator_process import OperatorProcess, free_port, install_chart_rbac, install_crds, wait_for, workdir

API = "datamesh.dev/v1alpha1"
# Chromium as the machine's notes say it runs here: headless, no sandbox (root), and none of the
# background connections a closed network refuses.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]
ACCESS_COLOURS = {"Granted": "#2e7d32", "Pending": "#f9a825", "Denied": "#c62828", "NotFound": "#6d4c41"}


@pytest.fixture(scope="module")
def catalog():
    install_crds()
    install_chart_rbac("catalog.enabled=true")
    port = free_port()
    process = OperatorProcess(workdir(), "catalog", extra_args=("--catalog-addr", f"127.0.0.1:{port}"))
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: fetch(url + "/api/mesh") is not None, timeout=30, message="the catalog answers")
    yield url
    assert process.terminate() == 0, process.logs()


def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()
    except OSError:
        return None


def chromium(tmp_path, *args):
    assert shutil.which("chromium"), "chromium is not installed (.ci/run installs it from Debian)"
    profile = tmp_path / f"chromium-{len(list(tmp_path.glob('chromium-*')))}"
    return subprocess.run(["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=True).stdout


def test_a_person_sees_the_mesh_its_health_and_its_lineage(catalog, tmp_path):
    rendered = run(["kubectl", "kustomize", str(REPO_DIR / "config" / "samples")]).stdout
    documents = [d for d in yaml.safe_load_all(rendered) if d]
    domains = [d for d in documents if d["kind"] == "Domain"]
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(domains))
    kubectl("wait", "--for", "condition=Ready", "--timeout", "120s", *[f"domain/{d['metadata']['name']}" for d in domains])
    manifest = tmp_path / "samples.yaml"
    manifest.write_text(rendered)
    kubectl("apply", "-f", str(manifest))
    kubectl("wait", "--for", "condition=Ready", "--timeout", "180s", "-f", str(manifest))

    # One product a person must fix: fewer partitions than it has.
    stalled_domain = unique("catalog")
    apply({"apiVersion": API, "kind": "Domain", "metadata": {"name": stalled_domain}, "spec": {}})
    kubectl("wait", "--for", "condition=Ready", "--timeout", "90s", f"domain/{stalled_domain}")

    def shrink_to(partitions):
        apply({"apiVersion": API, "kind": "DataProduct", "metadata": {"name": "shrinking", "namespace": stalled_domain},
               "spec": {"domain": stalled_domain, "owner": {"name": "bob"}, "description": {"purpose": "p", "usage": "u"},
                        "outputPorts": [{"name": "events", "kafka": {"partitions": partitions}}]}})

    shrink_to(2)
    kubectl("wait", "--for", "condition=Ready", "--timeout", "90s", "dataproduct/shrinking", "-n", stalled_domain)
    shrink_to(1)
    stalled = wait_for(lambda: next((c for c in get_json("dataproduct", "shrinking", "-n", stalled_domain)
                                     .get("status", {}).get("conditions", [])
                                     if c["type"] == "Stalled" and c["status"] == "True"), None),
                       timeout=60, message="Stalled")

    # The mesh page, as the browser renders it.
    page = chromium(tmp_path, "--dump-dom", catalog + "/")
    for product in (d for d in documents if d["kind"] == "DataProduct"):
        row = f'data-product="{product["metadata"]["namespace"]}/{product["metadata"]["name"]}"'
        assert row in page, f"{row} listed"
        assert 'data-health="ready"' in page.split(row, 1)[1].split("</tr>", 1)[0], f"{row} shown ready"
    row = page.split(f'data-product="{stalled_domain}/shrinking"', 1)[1].split("</tr>", 1)[0]
    assert 'data-health="stalled"' in row and stalled["message"] in row.replace("&gt;", ">").replace("&lt;", "<")

    # Its page says the same, with the Warning Event the operator emitted.
    product_page = chromium(tmp_path, "--dump-dom", f"{catalog}/products/{stalled_domain}/shrinking")
    events = product_page.split("<h2>Recent Events</h2>", 1)[1].split("</table>", 1)[0]
    assert "Warning" in events and "PartitionDecrease" in events, events

    # Filtering is the server's: only the stalled product is left.
    filtered = chromium(tmp_path, "--dump-dom", catalog + "/?health=stalled")
    assert f'data-product="{stalled_domain}/shrinking"' in filtered
    assert 'data-health="ready"' not in filtered

    # The lineage: one edge per input port of every product, coloured by the access its status
    # reports (kubectl, not the catalog, says what that is).
    expected = {}
    for product in json.loads(kubectl("get", "dataproducts", "-A", "-o", "json").stdout)["items"]:
        for port in product.get("status", {}).get("inputPorts", []):
            expected[port["access"]] = expected.get(port["access"], 0) + 1
    assert expected, "the samples have input ports"
    graph = json.loads(fetch(catalog + "/api/lineage"))
    seen = {}
    for edge in graph["edges"]:
        seen[edge["access"]] = seen.get(edge["access"], 0) + 1
    assert seen == expected
    svg = chromium(tmp_path, "--dump-dom", catalog + "/lineage.svg")
    for access, count in expected.items():
        drawn = svg.count(f'stroke="{ACCESS_COLOURS[access]}')  # layout-rs writes #rrggbbaa
        assert drawn >= count, f"{count} {access} edges, {drawn} strokes of its colour"

    for name, path in (("mesh", "/"), ("lineage", "/lineage")):
        shot = tmp_path / f"catalog-{name}.png"
        chromium(tmp_path, f"--screenshot={shot}", "--window-size=1400,1000", catalog + path)
        assert shot.stat().st_size > 10_000, f"{shot} has content"
    print(f"screenshots in {tmp_path}")

    kubectl("delete", "dataproduct", "shrinking", "-n", stalled_domain, "--timeout", "60s")
