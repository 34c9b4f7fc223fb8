"""The floor of `e2e/bench`: what the fresh platform needs for the benchmark's work when driven
directly, in batches, by plain clients, measured in the same run before the operator starts.

The floor does the work the operator does for the bulk phase's mesh, with the same counts and
the same shapes, under names no object of the benchmark ever has (domains `floor1-d000`, ... for
the parts alone and `floor2-d000`, ... for the parts together; topics `<domain>.<product>.events`,
buckets `<domain>-<product>-archive`, Kafka principals and IAM users `<domain>`):

- Kafka, as the platform's admin over SASL_SSL/SCRAM-SHA-512 like the operator, with
  confluent-kafka's AdminClient: one-partition topics created in batches of 100 (waiting for the
  cluster to apply them, as the operator's CreateTopics does); the ACL bindings the operator holds
  at the end in batches of 100 (per product: Write, Describe and Read on its topic, Write and
  Describe on its transactional-id prefix, Read on its group prefix; per AccessPolicy: Read and
  Describe on the topic for the consumer; per domain: the cluster's IdempotentWrite and Read on
  the consumer group prefix); one SCRAM-SHA-512 credential per domain (8,192 iterations), all in
  one request.
- S3, with boto3 and 8 threads: each bucket created, versioning enabled, tagged with the seven
  tags the operator writes (what `src/provision/storage` does on create; a bucket port without
  `expireAfterDays` gets no lifecycle rule) and given its bucket policy: the owning domain's
  statements and the consumers' its AccessPolicies grant, the document the operator ends with,
  written once (the operator writes the owner's part, then the consumers').
- IAM, with boto3, one client in sequence (SeaweedFS rewrites its whole IAM configuration on each
  write, so parallel writers gain nothing and could lose each other's writes): per domain a user
  with the operator's two tags and an access key.
- The API server, as the stack's admin: the domains' namespaces, then the mesh's own objects
  (Domains, DataProducts, AccessPolicies with the benchmark's specs) each created and given one
  status write (a Ready condition), from the benchmark's own applier (8 threads). Real objects
  of the CRDs rather than ConfigMaps, because they cost what the benchmark's objects cost (the
  CRDs' schemas and validation rules, the same sizes in etcd), and the status write is the least
  the operator must do for each. No operator runs yet, so nothing reconciles them; they are
  deleted, with their namespaces, before the operator starts, and a deleted object is never in
  the operator's lists. The same creates (no status writes) from one sequential client are
  reported too, as the hand-measured figure of issue 13 was taken that way.

Every part is first run alone, one after the other, and timed from its first request to its last
answer ("alone"); then all four run again at once, each on its own thread, under the second set
of names ("together"). Both are schedules a batched client could follow for the whole work: the
parts one after the other take the sum of the parts alone, the parts at once take the time
together. The **bulk floor is the shorter of the two**. Neither alone would do: the longest part
alone ignores that the platform's processes share two cores (on this machine the parts at once
take longer than the longest alone, and can take longer than the sum, as SeaweedFS serves S3
and IAM in one process and every part competes for the CPU); the time together alone would
charge the floor for contention a client could avoid by going one system at a time. The floor
ignores one ordering the operator must keep (a status says Ready only after the product's topic
and bucket exist); at this scale the work is throughput-bound, so this moves it little. The
Python clients' own CPU is part of the floor, as the operator's own CPU is part of its time.

The single-product floor, for the single phase's latencies: the median of 5 of each of: one
topic created alone (CreateTopics, waiting for the cluster), one bucket created alone with its
versioning and tags, and one DataProduct created and given its status write. A product is Ready
only after its topic and its bucket exist (which could be made at once) and then its status is
written, so the **single floor is create-and-status + max(topic, bucket)**.

Everything the floor made is deleted before the operator starts (topics, ACLs, SCRAM
credentials, buckets with their policies, IAM users, objects and namespaces), and checked with
independent clients: kafka-topics.sh, kafka-acls.sh and kafka-configs.sh count the floor's
topics, ACLs and SCRAM users after the parts alone and after clean-up, boto3's ListBuckets and
ListUsers the buckets and IAM users, a list of the API server the objects.
"""

import json
import os
import statistics
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import botocore.exceptions
from botocore.config import Config
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient,
                                   NewTopic, ResourcePatternType, ResourceType, ScramCredentialInfo,
                                   ScramMechanism, UserScramCredentialDeletion, UserScramCredentialUpsertion)

BATCH = 100
THREADS = 8
TRIALS = 5
TIMEOUT = 60
GROUP = "/apis/datamesh.dev/v1alpha1"
PLURALS = {"Domain": "domains", "DataProduct": "dataproducts", "AccessPolicy": "accesspolicies"}
FLOOR_LABEL = "datamesh.dev/bench-floor"


# ---------------------------------------------------------------------------- the work


class Work:
    """The floor's version of the bulk phase's mesh, under `prefix`."""

    def __init__(self, prefix, mesh_objects):
        self.prefix = prefix
        domains = [o for o in mesh_objects if o["kind"] == "Domain"]
        self.renamed = {d["metadata"]["name"]: f"{prefix}-d{i:03d}" for i, d in enumerate(domains)}
        self.domains = list(self.renamed.values())
        self.objects = [self._rename(o) for o in mesh_objects]
        self.products = [(o["spec"]["domain"], o["metadata"]["name"]) for o in self.objects
                         if o["kind"] == "DataProduct"]
        self.grants = [(o["metadata"]["namespace"], o["spec"]["dataProduct"], o["spec"]["consumers"][0]["domain"])
                       for o in self.objects if o["kind"] == "AccessPolicy"]

    def _rename(self, obj):
        text = json.dumps(obj)
        for old, new in self.renamed.items():
            text = text.replace(f'"{old}"', f'"{new}"').replace(f'"{old}-team"', f'"{new}-team"')
        obj = json.loads(text)
        obj["metadata"].setdefault("labels", {})[FLOOR_LABEL] = self.prefix
        return obj

    @staticmethod
    def topic(domain, product):
        return f"{domain}.{product}.events"

    @staticmethod
    def bucket(domain, product):
        return f"{domain}-{product}-archive"

    def topics(self):
        return [self.topic(d, p) for d, p in self.products]

    def buckets(self):
        return [self.bucket(d, p) for d, p in self.products]

    def acls(self):
        """The bindings the operator holds at the end, for the floor's names."""
        bindings = set()
        for domain, product in self.products:
            principal = f"User:{domain}"
            topic = self.topic(domain, product)
            for operation in (AclOperation.WRITE, AclOperation.DESCRIBE, AclOperation.READ):
                bindings.add(allow(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, principal, operation))
            prefix = f"{domain}.{product}."
            for operation in (AclOperation.WRITE, AclOperation.DESCRIBE):
                bindings.add(allow(ResourceType.TRANSACTIONAL_ID, prefix, ResourcePatternType.PREFIXED, principal,
                                   operation))
            bindings.add(allow(ResourceType.GROUP, prefix, ResourcePatternType.PREFIXED, principal, AclOperation.READ))
            bindings.add(allow(ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL, principal,
                               AclOperation.IDEMPOTENT_WRITE))
        for domain, product, consumer in self.grants:
            principal = f"User:{consumer}"
            for operation in (AclOperation.READ, AclOperation.DESCRIBE):
                bindings.add(allow(ResourceType.TOPIC, self.topic(domain, product), ResourcePatternType.LITERAL,
                                   principal, operation))
            bindings.add(allow(ResourceType.GROUP, f"{consumer}.", ResourcePatternType.PREFIXED, principal,
                               AclOperation.READ))
        return sorted(bindings, key=str)

    def tags(self, domain, product):
        return {"app.kubernetes.io/managed-by": "datamesh-operator", "datamesh.dev/domain": domain,
                "datamesh.dev/data-product": product, "datamesh.dev/classification": "internal",
                "datamesh.dev/port": "archive", "datamesh.dev/namespace": domain,
                "datamesh.dev/data-product-uid": "00000000-0000-0000-0000-000000000000"}

    def bucket_policy(self, domain, product):
        """The bucket's policy as the operator leaves it: the owner's statements and the readers'."""
        bucket = self.bucket(domain, product)
        readers = sorted(c for d, p, c in self.grants if (d, p) == (domain, product))
        owner_bucket = ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketVersions"]
        owner_object = ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:GetObjectTagging",
                        "s3:GetObjectVersion", "s3:PutObject", "s3:PutObjectTagging"]
        statements = statements_for(bucket, "DatameshOwnerOwner", [domain], owner_bucket, owner_object)
        if readers:
            statements += statements_for(bucket, "DatameshGrantRead", readers, ["s3:ListBucket"], ["s3:GetObject"])
        return json.dumps({"Version": "2012-10-17", "Statement": statements})


def allow(resource_type, name, pattern, principal, operation):
    return AclBinding(resource_type, name, pattern, principal, "*", operation, AclPermissionType.ALLOW)


def user_arn(user):
    """The ARN SeaweedFS's IAM reports for a user (GetUser), which the operator's policies name."""
    return f"arn:aws:iam::000000000000:user/{user}"


def statements_for(bucket, sid, users, bucket_actions, object_actions):
    principal = {"AWS": [user_arn(u) for u in users]}
    return [{"Sid": f"{sid}Bucket", "Effect": "Allow", "Principal": principal, "Action": bucket_actions,
             "Resource": [f"arn:aws:s3:::{bucket}"]},
            {"Sid": f"{sid}Objects", "Effect": "Allow", "Principal": principal, "Action": object_actions,
             "Resource": [f"arn:aws:s3:::{bucket}/*"]}]


def batches(items, size=BATCH):
    return [items[i:i + size] for i in range(0, len(items), size)]


# ---------------------------------------------------------------------------- clients


def kafka_admin():
    config = {"bootstrap.servers": os.environ["KAFKA_BOOTSTRAP_SERVERS"],
              "security.protocol": os.environ["KAFKA_SECURITY_PROTOCOL"],
              "sasl.mechanism": "SCRAM-SHA-512",
              "sasl.username": os.environ["KAFKA_ADMIN_USER"],
              "sasl.password": os.environ["KAFKA_ADMIN_PASSWORD"]}
    if os.environ["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL":
        config["ssl.ca.location"] = os.environ["KAFKA_CA_FILE"]
    return AdminClient(config)


def aws(service):
    endpoint = os.environ["S3_IAM_ENDPOINT" if service == "iam" else "S3_ENDPOINT"]
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=os.environ["S3_ADMIN_ACCESS_KEY"],
                        aws_secret_access_key=os.environ["S3_ADMIN_SECRET_KEY"],
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5},
                                      max_pool_connections=THREADS * 2))


def wait_all(futures, gone_ok=False):
    """Every future's result; raises the first failure (with `gone_ok`, but an unknown topic)."""
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as error:
            if gone_ok and error.args and error.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                continue
            raise RuntimeError(f"floor: {name}: {error}") from error


def gone_ok(call, **kwargs):
    """A delete that may find its subject gone: botocore retries a request that timed out, and
    the retry of a delete that had been done answers NoSuchBucket or NoSuchEntity. (What is left
    is counted after the clean-up, with listings.)"""
    try:
        call(**kwargs)
    except botocore.exceptions.ClientError as error:
        if error.response["Error"]["Code"] not in ("NoSuchBucket", "NoSuchEntity"):
            raise


def kafka_tool(name, *args):
    result = subprocess.run([name, "--bootstrap-server", os.environ["KAFKA_BOOTSTRAP_SERVERS"],
                             "--command-config", os.environ["KAFKA_ADMIN_CONFIG"], *args],
                            capture_output=True, text=True, check=True, timeout=300)
    return result.stdout


# ---------------------------------------------------------------------------- the parts


class Floor:
    def __init__(self, kube, log):
        self.kube = kube
        self.log = log
        self.kafka = kafka_admin()
        self.s3 = aws("s3")
        self.iam = aws("iam")

    # Kafka --------------------------------------------------------------------

    def create_topics(self, names):
        for batch in batches(names):
            new = [NewTopic(t, num_partitions=1, replication_factor=1) for t in batch]
            wait_all(self.kafka.create_topics(new, operation_timeout=15, request_timeout=TIMEOUT))

    def kafka_part(self, work):
        began = time.monotonic()
        self.create_topics(work.topics())
        topics_done = time.monotonic()
        for batch in batches(work.acls()):
            wait_all(self.kafka.create_acls(batch, request_timeout=TIMEOUT))
        acls_done = time.monotonic()
        upserts = [UserScramCredentialUpsertion(d, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192),
                                                f"floor-password-{d}".encode()) for d in work.domains]
        wait_all(self.kafka.alter_user_scram_credentials(upserts, request_timeout=TIMEOUT))
        done = time.monotonic()
        return {"topics": topics_done - began, "acls": acls_done - topics_done, "scram": done - acls_done,
                "seconds": done - began}

    def kafka_clean(self, work):
        for batch in batches(work.topics()):
            wait_all(self.kafka.delete_topics(batch, operation_timeout=15, request_timeout=TIMEOUT), gone_ok=True)
        filters = [AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, f"User:{d}", None,
                                    AclOperation.ANY, AclPermissionType.ANY) for d in work.domains]
        # One principal per request: a broker deletes at most 10,000 ACLs per DeleteAcls request,
        # all filters of it together (at 5,000 products the 50 domains hold 35,100).
        for batch in batches(filters, size=1):
            wait_all(self.kafka.delete_acls(batch, request_timeout=TIMEOUT))
        deletions = [UserScramCredentialDeletion(d, ScramMechanism.SCRAM_SHA_512) for d in work.domains]
        wait_all(self.kafka.alter_user_scram_credentials(deletions, request_timeout=TIMEOUT))

    # S3 and IAM ---------------------------------------------------------------

    def make_bucket(self, domain, product, work):
        bucket = work.bucket(domain, product)
        self.s3.create_bucket(Bucket=bucket)
        self.s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        tags = [{"Key": k, "Value": v} for k, v in work.tags(domain, product).items()]
        self.s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tags})
        self.s3.put_bucket_policy(Bucket=bucket, Policy=work.bucket_policy(domain, product))

    def s3_part(self, work):
        began = time.monotonic()
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            list(pool.map(lambda dp: self.make_bucket(*dp, work), work.products))
        return {"seconds": time.monotonic() - began}

    def iam_part(self, work):
        began = time.monotonic()
        for domain in work.domains:
            self.iam.create_user(UserName=domain)
            self.iam.tag_user(UserName=domain, Tags=[
                {"Key": "app.kubernetes.io/managed-by", "Value": "datamesh-operator"},
                {"Key": "datamesh.dev/domain", "Value": domain}])
            self.iam.create_access_key(UserName=domain)
        return {"seconds": time.monotonic() - began}

    def storage_clean(self, work):
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            list(pool.map(lambda b: gone_ok(self.s3.delete_bucket, Bucket=b), work.buckets()))
        for domain in work.domains:
            for key in self.iam.list_access_keys(UserName=domain)["AccessKeyMetadata"]:
                gone_ok(self.iam.delete_access_key, UserName=domain, AccessKeyId=key["AccessKeyId"])
            gone_ok(self.iam.delete_user, UserName=domain)

    # the API server -------------------------------------------------------------

    def path(self, obj, status=False):
        plural = PLURALS[obj["kind"]]
        namespace = obj["metadata"].get("namespace")
        path = f"{GROUP}/namespaces/{namespace}/{plural}" if namespace else f"{GROUP}/{plural}"
        return path + (f"/{obj['metadata']['name']}/status" if status else "")

    def create_object(self, obj, with_status=True):
        status, answer = self.kube.request("POST", self.path(obj), obj)
        if status not in (200, 201):
            raise RuntimeError(f"floor: creating {obj['kind']} {obj['metadata']['name']}: {status} {answer}")
        if not with_status:
            return
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        patch = {"status": {"conditions": [{
            "type": "Ready", "status": "True", "reason": "Floor", "message": "The benchmark's floor.",
            "lastTransitionTime": now, "observedGeneration": answer["metadata"].get("generation", 1)}]}}
        status, answer = self.kube.request("PATCH", self.path(obj, status=True), patch,
                                           content_type="application/merge-patch+json")
        if status != 200:
            raise RuntimeError(f"floor: status of {obj['kind']} {obj['metadata']['name']}: {status} {answer}")

    def create_namespaces(self, work):
        for domain in work.domains:
            body = {"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": domain, "labels": {FLOOR_LABEL: work.prefix}}}
            status, answer = self.kube.request("POST", "/api/v1/namespaces", body)
            if status not in (200, 201):
                raise RuntimeError(f"floor: creating namespace {domain}: {status} {answer}")

    def api_part(self, work):
        began = time.monotonic()
        self.create_namespaces(work)
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            list(pool.map(self.create_object, work.objects))
        return {"seconds": time.monotonic() - began}

    def api_sequential(self, work):
        """The same creates from one client, one after another (no status writes)."""
        began = time.monotonic()
        for obj in work.objects:
            self.create_object(obj, with_status=False)
        return time.monotonic() - began

    def api_clean(self, work):
        selector = f"labelSelector={FLOOR_LABEL}%3D{work.prefix}"
        for domain in work.domains:
            for plural in ("accesspolicies", "dataproducts"):
                self.kube.request("DELETE", f"{GROUP}/namespaces/{domain}/{plural}?{selector}")
        self.kube.request("DELETE", f"{GROUP}/domains?{selector}")
        for domain in work.domains:
            self.kube.request("DELETE", f"/api/v1/namespaces/{domain}")

    def api_count(self, work):
        selector = f"labelSelector={FLOOR_LABEL}%3D{work.prefix}"
        total = 0
        for plural in PLURALS.values():
            status, listed = self.kube.request("GET", f"{GROUP}/{plural}?{selector}")
            total += len(listed["items"])
        return total

    def wait_namespaces_gone(self, work, timeout=300):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, listed = self.kube.request("GET", f"/api/v1/namespaces?labelSelector={FLOOR_LABEL}")
            if not listed["items"]:
                return True
            time.sleep(1)
        return False

    # checks ---------------------------------------------------------------------

    def count(self, prefix):
        """What exists under names starting with `prefix`, seen by clients other than the
        floor's writers (Kafka's own tools) or by other requests than its writes (listings)."""
        topics = [t for t in kafka_tool("kafka-topics.sh", "--list").split() if t.startswith(prefix)]
        acls = kafka_tool("kafka-acls.sh", "--list").count(f"principal=User:{prefix}")
        scram = kafka_tool("kafka-configs.sh", "--describe", "--entity-type", "users").count(f"'{prefix}")
        buckets = [b["Name"] for b in aws("s3").list_buckets()["Buckets"] if b["Name"].startswith(prefix)]
        users = [u["UserName"] for u in aws("iam").list_users()["Users"] if u["UserName"].startswith(prefix)]
        return {"topics": len(topics), "acls": acls, "scram_users": scram, "buckets": len(buckets),
                "iam_users": len(users)}

    def clean(self, work):
        self.kafka_clean(work)
        self.storage_clean(work)
        self.api_clean(work)

    # single-object latencies -------------------------------------------------------

    def singles(self, work):
        """Medians of TRIALS: one topic alone, one bucket alone, one object create + status."""
        domain = work.domains[0]
        topic, bucket, api = [], [], []
        for i in range(TRIALS):
            product = f"single-{i:03d}"
            began = time.monotonic()
            self.create_topics([work.topic(domain, product)])
            topic.append(time.monotonic() - began)
            began = time.monotonic()
            self.make_bucket(domain, product, work)
            bucket.append(time.monotonic() - began)
            obj = json.loads(json.dumps(next(o for o in work.objects if o["kind"] == "DataProduct")))
            obj["metadata"]["name"] = product
            began = time.monotonic()
            self.create_object(obj)
            api.append(time.monotonic() - began)
        for batch in batches([work.topic(domain, f"single-{i:03d}") for i in range(TRIALS)]):
            wait_all(self.kafka.delete_topics(batch, operation_timeout=15, request_timeout=TIMEOUT), gone_ok=True)
        for i in range(TRIALS):
            self.s3.delete_bucket(Bucket=work.bucket(domain, f"single-{i:03d}"))
        result = {"topic": statistics.median(topic), "bucket": statistics.median(bucket),
                  "object": statistics.median(api)}
        result["floor"] = result["object"] + max(result["topic"], result["bucket"])
        return result


def measure(kube, mesh_objects, log):
    """Runs the floor (see the module's docs) and returns its figures; leaves nothing behind."""
    floor = Floor(kube, log)
    alone = Work("floor1", mesh_objects)
    together = Work("floor2", mesh_objects)
    sequential = Work("floor0", mesh_objects)
    result = {"topics": len(alone.topics()), "acls": len(alone.acls()), "buckets": len(alone.buckets()),
              "domains": len(alone.domains), "iam_writes": 3 * len(alone.domains),
              "objects": len(alone.objects) + len(alone.domains)}

    log(f"floor: {result['topics']} topics, {result['acls']} ACLs, {result['domains']} SCRAM users, "
        f"{result['buckets']} buckets, {result['iam_writes']} IAM writes, {result['objects']} API objects")
    parts = {"kafka": floor.kafka_part(alone)}
    parts["s3"] = floor.s3_part(alone)
    parts["iam"] = floor.iam_part(alone)
    parts["api"] = floor.api_part(alone)
    result["alone"] = parts
    result["alone_sum"] = sum(p["seconds"] for p in parts.values())
    result["alone_max"] = max(p["seconds"] for p in parts.values())
    log("floor alone: " + ", ".join(f"{k} {v['seconds']:.2f} s" for k, v in parts.items())
        + f" (Kafka topics {parts['kafka']['topics']:.2f} s, ACLs {parts['kafka']['acls']:.2f} s)")
    result["checked"] = floor.count("floor1-")
    result["checked"]["objects"] = floor.api_count(alone)
    log(f"floor alone made (kafka-topics.sh, kafka-acls.sh, kafka-configs.sh, boto3, API server): "
        f"{result['checked']}")
    result["singles"] = floor.singles(alone)
    log("floor single: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in result["singles"].items()))
    floor.clean(alone)

    floor.create_namespaces(sequential)
    result["api_sequential"] = floor.api_sequential(sequential)
    log(f"floor: {len(sequential.objects)} objects from one sequential client in {result['api_sequential']:.2f} s")
    floor.api_clean(sequential)

    together_parts, errors = {}, []

    def run(name, part):
        try:
            together_parts[name] = part(together)
        except Exception as error:  # reported below, after every part has ended
            errors.append(error)

    threads = [threading.Thread(target=run, args=item) for item in
               (("kafka", floor.kafka_part), ("s3", floor.s3_part), ("iam", floor.iam_part), ("api", floor.api_part))]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result["together"] = time.monotonic() - began
    result["together_parts"] = together_parts
    if errors:
        raise errors[0]
    result["bulk_floor"] = min(result["alone_sum"], result["together"])
    log(f"floor together: {result['together']:.2f} s (" + ", ".join(
        f"{k} {v['seconds']:.2f} s" for k, v in together_parts.items()) + f"); "
        f"bulk floor {result['bulk_floor']:.2f} s")
    floor.clean(together)
    if not floor.wait_namespaces_gone(together):
        log("floor: namespaces still terminating after 300 s")
    result["left"] = floor.count("floor")
    result["left"]["objects"] = sum(floor.api_count(w) for w in (alone, together, sequential))
    log(f"floor cleaned up; left behind: {result['left']}")
    return result
