"""The sample mesh (config/samples) applied and Ready, with the operator and its catalog
running out of cluster: shared by the suites that read what the samples made."""

import urllib.error
import urllib.request

import yaml

from conftest import REPO_DIR, kubectl, run
from operator_process import OperatorProcess, free_port, install_chart_rbac, install_crds, wait_for, workdir


def fetch(url):
    """(status, content type, body) of a GET, or (None, None, None) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers.get("Content-Type"), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type"), error.read().decode()
    except OSError:
        return None, None, None


def samples_with_catalog(name):
    """A generator for a module fixture: yields (catalog URL, the sample DataProducts, the
    sample Domains) as manifests, once every sample is Ready; stops the operator after."""
    install_crds()
    install_chart_rbac("catalog.enabled=true")
    port = free_port()
    process = OperatorProcess(workdir(), name, extra_args=("--catalog-addr", f"127.0.0.1:{port}"))
    url = f"http://127.0.0.1:{port}"
    rendered = run(["kubectl", "kustomize", str(REPO_DIR / "config" / "samples")]).stdout
    documents = [d for d in yaml.safe_load_all(rendered) if d]
    domains = [d for d in documents if d["kind"] == "Domain"]
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(domains))
    kubectl("wait", "--for", "condition=Ready", "--timeout", "120s", *[f"domain/{d['metadata']['name']}" for d in domains])
    kubectl("apply", "-f", "-", input=rendered)
    products = [d for d in documents if d["kind"] == "DataProduct"]
    for product in products:
        kubectl("wait", "--for", "condition=Ready", "--timeout", "180s", "-n", product["metadata"]["namespace"],
                f"dataproduct/{product['metadata']['name']}")
    wait_for(lambda: fetch(url + "/api/mesh")[0] == 200, timeout=30, message="the catalog answers")
    yield url, products, domains
    assert process.terminate() == 0, process.logs()
