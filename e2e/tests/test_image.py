"""The operator's image (`Containerfile`), built with buildah (daemonless, from Debian's packages)
and run through its own entrypoint as its own non-root user.

No registry is reachable here, so the two bases the Containerfile names by default are replaced,
each by a build option the Containerfile is written for:
- the runtime base (distroless/cc-debian12) by one assembled from this machine's glibc, libgcc and
  OpenSSL 3, which is what distroless/cc carries, plus the CA certificates;
- the `build` stage (`cargo build --release` in the Rust image) by a build context holding the
  binary this suite already built (a debug build of the same source). That stage itself does not
  run here.
The chart's default image is the tag built, so what the chart deploys is what the file builds.
"""

import json
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from conftest import REPO_DIR, run
from operator_process import BINARY

CHART = REPO_DIR / "charts" / "datamesh-operator"
# What the binary loads (ldd): each must be in the runtime base.
SHARED_LIBRARIES = ["libssl.so.3", "libcrypto.so.3", "libgcc_s.so.1", "libm.so.6", "libc.so.6"]


@pytest.fixture(scope="module")
def buildah(tmp_path_factory):
    """buildah with a store of its own (vfs, chroot isolation: no daemon, no overlay mounts)."""
    assert shutil.which("buildah"), "buildah is not installed (.ci/run installs it from Debian)"
    store = tmp_path_factory.mktemp("containers")

    def buildah_(*args, check=True, timeout=300):
        return run(["buildah", "--root", str(store / "root"), "--runroot", str(store / "run"),
                    "--storage-driver", "vfs", *args],
                   check=check, timeout=timeout, extra_env={"BUILDAH_ISOLATION": "chroot"})

    return buildah_


def chart_image():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return f"{values['image']['repository']}:{values['image']['tag'] or chart['appVersion']}"


def runtime_base(buildah, rootfs: Path) -> str:
    libs = rootfs / "lib" / "x86_64-linux-gnu"
    libs.mkdir(parents=True)
    for name in SHARED_LIBRARIES:
        shutil.copy(Path("/lib/x86_64-linux-gnu") / name, libs / name)
    (rootfs / "lib64").mkdir()
    shutil.copy("/lib64/ld-linux-x86-64.so.2", rootfs / "lib64" / "ld-linux-x86-64.so.2")
    (rootfs / "etc" / "ssl" / "certs").mkdir(parents=True)
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", rootfs / "etc" / "ssl" / "certs")
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/sbin/nologin\n"
                                           "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")
    container = buildah("from", "scratch").stdout.strip()
    buildah("copy", container, str(rootfs), "/")
    buildah("commit", "-q", container, "localhost/datamesh-test-runtime-base")
    buildah("rm", container)
    return "localhost/datamesh-test-runtime-base"


def test_image_runs_its_entrypoint_as_non_root(buildah, tmp_path):
    base = runtime_base(buildah, tmp_path / "rootfs")
    built = tmp_path / "build-stage" / "src" / "target" / "release"
    built.mkdir(parents=True)
    shutil.copy(BINARY, built / "datamesh-operator")

    image = chart_image()
    buildah("build", "-q", "--layers=false", "--target", "runtime", "--build-arg", f"RUNTIME_IMAGE={base}",
            "--build-context", f"build={tmp_path / 'build-stage'}", "-t", image,
            "-f", str(REPO_DIR / "Containerfile"), str(REPO_DIR))

    config = json.loads(buildah("inspect", "--type", "image", image).stdout)["OCIv1"]["config"]
    assert config["User"] == "65532:65532", config
    assert config["Entrypoint"] == ["/usr/local/bin/datamesh-operator"], config

    container = buildah("from", image).stdout.strip()
    try:
        version = buildah("run", "--user", config["User"], container, "--", *config["Entrypoint"], "--version")
        cargo = tomllib.loads((REPO_DIR / "Cargo.toml").read_text())["package"]
        assert version.stdout.strip() == f"datamesh-operator {cargo['version']}"
        # As that user, in that image, it gets as far as reading its configuration.
        missing = buildah("run", "--user", config["User"], container, "--", *config["Entrypoint"],
                          "run", "--config", "/etc/datamesh-operator/absent.yaml", check=False)
        assert missing.returncode != 0
        assert "cannot read config file /etc/datamesh-operator/absent.yaml" in missing.stdout + missing.stderr
    finally:
        buildah("rm", container)


def test_chart_deploys_the_tag_the_containerfile_documents():
    assert f"buildah build -t {chart_image()} -f Containerfile ." in (REPO_DIR / "Containerfile").read_text()
    assert subprocess.run(["grep", "-q", chart_image(), str(REPO_DIR / "README.md")]).returncode == 0, \
        "the README says how to build the chart's image"
