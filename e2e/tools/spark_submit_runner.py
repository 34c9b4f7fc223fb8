#!/usr/bin/env python3
"""Run a SparkApplication (or one tick of a ScheduledSparkApplication) the way the kubeflow
spark-operator would submit it, but with `spark-submit --master local[2]` on this machine instead
of driver and executor pods: the local platform has no kubelet node yet, so this plays both the
spark-operator's part (turning the object into spark-submit arguments) and the kubelet's
(the pod's environment and mounted volumes).

Only what the object says reaches the job:

- `mainApplicationFile` and `arguments`; `deps.jars`, `deps.files`, `deps.pyFiles`,
  `deps.packages` and `deps.repositories` as spark-submit's `--jars`, `--files`, `--py-files`,
  `--packages`, `--repositories`;
- `sparkConf` as `--conf`, `hadoopConf` as `--conf spark.hadoop.<key>`, `driver.javaOptions` and
  `executor.javaOptions` as `spark.driver.extraJavaOptions` / `spark.executor.extraJavaOptions`,
  `driver.memory` as `spark.driver.memory`, `driver.cores` as `spark.driver.cores`;
- the driver's `env` (values, `secretKeyRef`, `configMapKeyRef`) and `envFrom` (`secretRef`,
  `configMapRef`, with `prefix`), read from the API server as the kubelet reads them: every key
  whose name is a valid environment variable name. The job's process starts from an empty
  environment plus the "image" (`PATH`, `HOME`, `JAVA_HOME`, `SPARK_HOME`, `PYSPARK_PYTHON`),
  so nothing of the caller's environment (the tests' admin credentials) leaks in;
- the driver's `configMaps` and `secrets` (`{name, path}`) are written to files under a private
  root directory, and each mount path in the Spark properties, javaOptions and arguments is
  rewritten to where that directory put it (the one translation this runner makes: a pod would
  see the files at the path itself).

What local mode cannot honour, and is therefore ignored and said so: the image, the executor's
count, cores and memory (executors are threads of the driver JVM, so the executor's env and mounts
are the driver's, which the operator makes identical), the driver's ServiceAccount (the job makes
no Kubernetes calls in local mode), labels and restartPolicy. The runner adds its own settings of
local mode only: `--master local[2]`, `spark.driver.host`/`bindAddress` 127.0.0.1 and
`spark.ui.enabled=false`; none of them grants access to anything.

Usage: spark_submit_runner.py [--kubeconfig FILE] [--workdir DIR] NAMESPACE KIND/NAME
  (KIND: sparkapplication or scheduledsparkapplication). Exits with spark-submit's status; the
  job's output goes to stdout/stderr.
"""

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
IMAGE_ENV = ("PATH", "HOME", "JAVA_HOME", "SPARK_HOME", "PYSPARK_PYTHON", "LANG")


def kubectl(kubeconfig, *args):
    result = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, *args], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"spark_submit_runner: kubectl {' '.join(args)}: {result.stderr.strip()}")
    return json.loads(result.stdout)


class Cluster:
    """Reads the objects a pod of `namespace` refers to, as the kubelet would."""

    def __init__(self, kubeconfig, namespace):
        self.kubeconfig, self.namespace, self.cache = kubeconfig, namespace, {}

    def data(self, kind, name):
        """A Secret's or ConfigMap's data, decoded to bytes."""
        if (kind, name) not in self.cache:
            obj = kubectl(self.kubeconfig, "get", kind, name, "-n", self.namespace, "-o", "json")
            data = {}
            if kind == "secret":
                data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
            else:
                data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
                data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
            self.cache[(kind, name)] = data
        return self.cache[(kind, name)]


def pod_environment(pod, cluster):
    """The container environment the kubelet would give a pod with this spec (envFrom, then env)."""
    environment = {}
    for source in pod.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, ref in (("secret", source.get("secretRef")), ("configmap", source.get("configMapRef"))):
            if ref:
                for key, value in cluster.data(kind, ref["name"]).items():
                    if ENV_NAME.match(prefix + key):
                        environment[prefix + key] = value.decode()
    for var in pod.get("env") or []:
        if "value" in var:
            environment[var["name"]] = var["value"]
            continue
        value_from = var.get("valueFrom") or {}
        for kind, ref in (("secret", value_from.get("secretKeyRef")), ("configmap", value_from.get("configMapKeyRef"))):
            if ref:
                data = cluster.data(kind, ref["name"])
                if ref["key"] in data:
                    environment[var["name"]] = data[ref["key"]].decode()
                elif not ref.get("optional"):
                    sys.exit(f"spark_submit_runner: {kind} {ref['name']} has no key {ref['key']}")
    return environment


def mount_volumes(pod, cluster, root: Path):
    """Write the pod's configMaps and secrets under `root`; returns {mount path: local path}."""
    mounts = {}
    for kind, field in (("configmap", "configMaps"), ("secret", "secrets")):
        for volume in pod.get(field) or []:
            local = root / volume["path"].lstrip("/")
            local.mkdir(parents=True, exist_ok=True)
            for key, value in cluster.data(kind, volume["name"]).items():
                (local / key).write_bytes(value)
            mounts[volume["path"].rstrip("/")] = str(local)
    return mounts


def relocate(text: str, mounts) -> str:
    for path, local in sorted(mounts.items(), key=lambda m: -len(m[0])):
        text = text.replace(path, local)
    return text


def submit_command(app, mounts, name):
    """spark-submit's arguments for the application spec `app` (the spark-operator's mapping)."""
    if app.get("type", "Python") not in ("Python", "Scala", "Java"):
        sys.exit(f"spark_submit_runner: application type {app.get('type')} is not supported")
    spark_home = os.environ["SPARK_HOME"]
    command = [f"{spark_home}/bin/spark-submit", "--master", "local[2]", "--name", name]
    conf = {
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
    }
    conf.update(app.get("sparkConf") or {})
    conf.update({f"spark.hadoop.{k}": v for k, v in (app.get("hadoopConf") or {}).items()})
    driver, executor = app.get("driver") or {}, app.get("executor") or {}
    if driver.get("javaOptions"):
        conf["spark.driver.extraJavaOptions"] = driver["javaOptions"]
    if executor.get("javaOptions"):
        conf["spark.executor.extraJavaOptions"] = executor["javaOptions"]
    if driver.get("memory"):
        conf["spark.driver.memory"] = driver["memory"]
    if driver.get("cores"):
        conf["spark.driver.cores"] = str(driver["cores"])
    for key, value in conf.items():
        command += ["--conf", f"{key}={relocate(str(value), mounts)}"]
    deps = app.get("deps") or {}
    for field, flag in (("jars", "--jars"), ("files", "--files"), ("pyFiles", "--py-files"),
                        ("packages", "--packages"), ("repositories", "--repositories")):
        if deps.get(field):
            command += [flag, ",".join(relocate(d, mounts) for d in deps[field])]
    if app.get("mainClass"):
        command += ["--class", app["mainClass"]]
    command.append(relocate(app["mainApplicationFile"], mounts))
    command += [relocate(str(a), mounts) for a in app.get("arguments") or []]
    return command


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    parser.add_argument("--workdir", help="where mounted volumes are written (default: a temporary directory)")
    parser.add_argument("namespace")
    parser.add_argument("object", help="sparkapplication/NAME or scheduledsparkapplication/NAME")
    args = parser.parse_args()
    kind, _, name = args.object.partition("/")
    obj = kubectl(args.kubeconfig, "get", kind, name, "-n", args.namespace, "-o", "json")
    spec = obj["spec"]
    app = spec["template"] if obj["kind"] == "ScheduledSparkApplication" else spec
    if spec.get("suspend"):
        sys.exit(f"spark_submit_runner: {args.object} is suspended; the spark-operator would not run it")
    cluster = Cluster(args.kubeconfig, args.namespace)
    driver = app.get("driver") or {}
    root = Path(args.workdir or tempfile.mkdtemp(prefix="spark-pod-"))
    try:
        mounts = mount_volumes(driver, cluster, root)
        environment = {k: os.environ[k] for k in IMAGE_ENV if k in os.environ}
        environment.update(pod_environment(driver, cluster))
        command = submit_command(app, mounts, name)
        print(f"spark_submit_runner: {' '.join(command)}", file=sys.stderr)
        print(f"spark_submit_runner: environment {sorted(environment)}", file=sys.stderr, flush=True)
        sys.exit(subprocess.run(command, env=environment).returncode)
    finally:
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
