//! End-to-end: the object storage edge against the real SeaweedFS of the local platform.
//!
//! Needs `e2e/stack up` and its environment (`eval "$(e2e/stack env)"`): S3_ENDPOINT,
//! S3_IAM_ENDPOINT, S3_ADMIN_ACCESS_KEY, S3_ADMIN_SECRET_KEY, and `stack-python` (the stack's
//! Python with boto3, the independent client) on PATH. Fails, never skips, without them.
//!
//! What the operator's reconcilers rely on, each checked with the service's real answers: bucket
//! configuration round-trips (and boto3 reads the same), bucket policies naming users by the
//! ARN the IAM API reports are enforced per bucket, per action and per user, and read back as
//! written (so a resync writes nothing), IAM inline policies are enforced too (earlier operators
//! wrote those, and the upgrade removes them), revocation takes effect, deleting a user removes
//! its keys and policies, and no bucket with data in it is deleted except through
//! `empty_bucket`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use datamesh_operator::controller::bucket_policies::{BucketPolicies, PolicyWrite};
use datamesh_operator::provision::storage::bucket_policy::{Part, Principals, statements};
use datamesh_operator::provision::storage::policy::{
    self, BucketAccess, Effect, PolicyDocument, Statement, identity_policy,
};
use datamesh_operator::provision::storage::{
    AccessKey, BucketStore, BucketTags, EXPIRATION_RULE_ID, ErrorCode, IdentityStore, Operation,
    SdkObjectStorage, SecretString, StorageConfig, StorageError, Versioning,
};

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: start the platform with `e2e/stack up` and `eval \"$(e2e/stack env)\"`"))
}

fn config(access_key_id: &str, secret: &str) -> StorageConfig {
    let mut config = StorageConfig::new(
        env("S3_ENDPOINT"),
        env("S3_IAM_ENDPOINT"),
        access_key_id,
        SecretString::new(secret),
    );
    config.request_timeout = Duration::from_secs(20);
    // The platform's S3 speaks HTTPS with its own CA, which `e2e/stack env` names.
    config.ca_bundle = std::env::var("AWS_CA_BUNDLE").ok().map(|path| {
        std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("AWS_CA_BUNDLE {path}: {error}"))
    });
    config
}

async fn connect(config: StorageConfig) -> SdkObjectStorage {
    SdkObjectStorage::connect(&config, Default::default())
        .await
        .unwrap()
}

async fn admin() -> SdkObjectStorage {
    connect(config(
        &env("S3_ADMIN_ACCESS_KEY"),
        &env("S3_ADMIN_SECRET_KEY"),
    ))
    .await
}

/// A client that acts as the IAM user whose key this is.
async fn acting_as(key: &AccessKey) -> SdkObjectStorage {
    connect(config(&key.access_key_id, key.secret_access_key.expose())).await
}

/// A name no earlier run used, so reruns against a long-lived platform do not collide.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{:x}{:x}", nanos % 0xffff_ffff, std::process::id())
}

/// Retries `check` until it returns `Ok`, for at most `limit`; then fails with its last message.
/// IAM changes reach SeaweedFS's S3 gateway through a filer subscription, so they are not always
/// visible to the very next request.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(()) => return,
            Err(message) if start.elapsed() > limit => {
                panic!("{what}: still not true after {limit:?}: {message}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn expect_denied<T: std::fmt::Debug>(result: Result<T, StorageError>) -> Result<(), String> {
    match result {
        Err(error) if error.is_access_denied() => Ok(()),
        other => Err(format!("expected AccessDenied, got {other:?}")),
    }
}

/// The platform's Python. `stack-python` on PATH is a symlink into the stack's virtualenv; run
/// through the link, Python would not find the virtualenv (it looks for `pyvenv.cfg` beside the
/// path it was started as) and would import whatever boto3 the system has, if any. Following the
/// link one step starts it from inside the virtualenv.
fn stack_python() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|dir| dir.join("stack-python"))
        .find(|candidate| candidate.exists())
        .expect("stack-python (the platform's Python with boto3) must be on PATH: eval \"$(e2e/stack env)\"");
    match std::fs::read_link(&found) {
        Ok(target) if target.is_absolute() => target,
        Ok(target) => found
            .parent()
            .map(|dir| dir.join(&target))
            .unwrap_or(target),
        Err(_) => found,
    }
}

/// Runs a boto3 script in the platform's Python with `vars` in its environment; its stdout, parsed
/// as JSON.
fn boto3(script: &str, vars: &[(&str, &str)]) -> serde_json::Value {
    let prelude = r#"
import json, os, sys, boto3, botocore
from botocore.config import Config
E = os.environ
cfg = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})
def client(service, ak, sk, endpoint):
    return boto3.client(service, endpoint_url=endpoint, aws_access_key_id=ak, aws_secret_access_key=sk,
                        region_name="us-east-1", config=cfg, verify=E.get("AWS_CA_BUNDLE"))
def outcome(call):
    try:
        result = call()
        return {"ok": result}
    except botocore.exceptions.ClientError as error:
        return {"error": error.response.get("Error", {}).get("Code")}
"#;
    let output = Command::new(stack_python())
        .arg("-c")
        .arg(format!("{prelude}\n{script}"))
        .envs(vars.iter().copied())
        .output()
        .expect("stack-python (the platform's Python with boto3) must be on PATH: eval \"$(e2e/stack env)\"");
    assert!(
        output.status.success(),
        "boto3 check failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "boto3 printed no JSON ({error}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[tokio::test]
async fn bucket_configuration_round_trips_and_boto3_reads_the_same() {
    let store = admin().await;
    let bucket = unique("e2e-config");

    assert!(
        store.ensure_bucket(&bucket).await.unwrap(),
        "first ensure creates"
    );
    assert!(
        !store.ensure_bucket(&bucket).await.unwrap(),
        "an existing bucket is not an error"
    );
    assert!(store.bucket_exists(&bucket).await.unwrap());
    assert!(store.list_buckets().await.unwrap().contains(&bucket));

    assert_eq!(
        store.get_versioning(&bucket).await.unwrap(),
        Versioning::Unversioned
    );
    store.put_versioning(&bucket, true).await.unwrap();
    assert_eq!(
        store.get_versioning(&bucket).await.unwrap(),
        Versioning::Enabled
    );

    assert_eq!(store.get_expiration_days(&bucket).await.unwrap(), None);
    store.put_expiration_days(&bucket, Some(30)).await.unwrap();
    assert_eq!(store.get_expiration_days(&bucket).await.unwrap(), Some(30));
    store.put_expiration_days(&bucket, Some(365)).await.unwrap();
    assert_eq!(store.get_expiration_days(&bucket).await.unwrap(), Some(365));

    assert!(store.get_tags(&bucket).await.unwrap().is_empty());
    assert_eq!(
        store.get_tags_if_exists(&bucket).await.unwrap(),
        Some(BucketTags::new()),
        "a bucket without tags exists"
    );
    let tags: BucketTags = [
        ("app.kubernetes.io/managed-by", "datamesh-operator"),
        ("datamesh.dev/domain", "payments"),
        ("datamesh.dev/data-product", "orders"),
        ("datamesh.dev/port", "lake"),
        ("datamesh.dev/classification", "internal"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    store.put_tags(&bucket, &tags).await.unwrap();
    assert_eq!(store.get_tags(&bucket).await.unwrap(), tags);
    assert_eq!(
        store.get_tags_if_exists(&bucket).await.unwrap(),
        Some(tags.clone())
    );

    // An independent client sees exactly what we wrote.
    let seen = boto3(
        r#"
s3 = client("s3", E["S3_ADMIN_ACCESS_KEY"], E["S3_ADMIN_SECRET_KEY"], E["S3_ENDPOINT"])
b = E["CHECK_BUCKET"]
rules = s3.get_bucket_lifecycle_configuration(Bucket=b)["Rules"]
print(json.dumps({
    "versioning": s3.get_bucket_versioning(Bucket=b).get("Status"),
    "rules": [{"id": r.get("ID"), "status": r["Status"], "days": r.get("Expiration", {}).get("Days")} for r in rules],
    "tags": {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=b)["TagSet"]},
}))
"#,
        &[("CHECK_BUCKET", &bucket)],
    );
    assert_eq!(seen["versioning"], "Enabled");
    assert_eq!(
        seen["rules"],
        serde_json::json!([{"id": EXPIRATION_RULE_ID, "status": "Enabled", "days": 365}])
    );
    assert_eq!(seen["tags"], serde_json::to_value(&tags).unwrap());

    // Removing configuration.
    store.put_expiration_days(&bucket, None).await.unwrap();
    assert_eq!(store.get_expiration_days(&bucket).await.unwrap(), None);
    store.put_tags(&bucket, &BucketTags::new()).await.unwrap();
    assert!(store.get_tags(&bucket).await.unwrap().is_empty());
    store.put_versioning(&bucket, false).await.unwrap();
    assert_eq!(
        store.get_versioning(&bucket).await.unwrap(),
        Versioning::Suspended
    );

    store.empty_bucket(&bucket).await.unwrap();
    assert!(store.delete_bucket(&bucket).await.unwrap());
}

/// The lifecycle rules boto3 sees on `bucket`, as boto3 parsed them (`null` without a
/// configuration).
fn lifecycle_rules_seen_by_boto3(bucket: &str) -> serde_json::Value {
    boto3(
        r#"
s3 = client("s3", E["S3_ADMIN_ACCESS_KEY"], E["S3_ADMIN_SECRET_KEY"], E["S3_ENDPOINT"])
got = outcome(lambda: s3.get_bucket_lifecycle_configuration(Bucket=E["CHECK_BUCKET"])["Rules"])
print(json.dumps(got.get("ok"), default=str))
"#,
        &[("CHECK_BUCKET", bucket)],
    )
}

#[tokio::test]
async fn the_expiration_rule_is_merged_with_rules_others_set() {
    let store = admin().await;
    let bucket = unique("e2e-lifecycle");
    store.ensure_bucket(&bucket).await.unwrap();
    // Another client's rules, one of each kind SeaweedFS accepts (it refuses Transitions).
    let foreign = boto3(
        r#"
s3 = client("s3", E["S3_ADMIN_ACCESS_KEY"], E["S3_ADMIN_SECRET_KEY"], E["S3_ENDPOINT"])
rules = [
    {"ID": "tmp", "Filter": {"Prefix": "tmp/"}, "Status": "Enabled", "Expiration": {"Days": 1}},
    {"ID": "tagged", "Filter": {"Tag": {"Key": "k", "Value": "v"}}, "Status": "Enabled", "Expiration": {"Days": 2}},
    {"ID": "and", "Filter": {"And": {"Prefix": "logs/", "Tags": [{"Key": "k", "Value": "v"}]}}, "Status": "Enabled", "Expiration": {"Days": 3}},
    {"ID": "noncurrent", "Filter": {"Prefix": ""}, "Status": "Enabled", "NoncurrentVersionExpiration": {"NoncurrentDays": 7}},
    {"ID": "uploads", "Filter": {"Prefix": "up/"}, "Status": "Enabled", "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2}},
    {"ID": "markers", "Filter": {"Prefix": ""}, "Status": "Enabled", "Expiration": {"ExpiredObjectDeleteMarker": True}},
    {"ID": "retention", "Filter": {"Prefix": ""}, "Status": "Disabled", "Expiration": {"Days": 400}},
]
s3.put_bucket_lifecycle_configuration(Bucket=E["CHECK_BUCKET"], LifecycleConfiguration={"Rules": rules})
print(json.dumps(s3.get_bucket_lifecycle_configuration(Bucket=E["CHECK_BUCKET"])["Rules"], default=str))
"#,
        &[("CHECK_BUCKET", &bucket)],
    );
    let foreign = foreign.as_array().expect("a list of rules").clone();
    assert_eq!(
        foreign.len(),
        7,
        "SeaweedFS kept every foreign rule: {foreign:?}"
    );
    assert_eq!(
        store.get_expiration_days(&bucket).await.unwrap(),
        None,
        "the foreign rules are not the operator's"
    );

    let ours = |days: u32| serde_json::json!({"ID": EXPIRATION_RULE_ID, "Filter": {"Prefix": ""}, "Status": "Enabled", "Expiration": {"Days": days}});
    let with_ours = |days: u32| {
        let mut rules = foreign.clone();
        rules.push(ours(days));
        serde_json::Value::Array(rules)
    };
    store.put_expiration_days(&bucket, Some(30)).await.unwrap();
    assert_eq!(store.get_expiration_days(&bucket).await.unwrap(), Some(30));
    assert_eq!(lifecycle_rules_seen_by_boto3(&bucket), with_ours(30));

    store.put_expiration_days(&bucket, Some(365)).await.unwrap();
    assert_eq!(store.get_expiration_days(&bucket).await.unwrap(), Some(365));
    assert_eq!(lifecycle_rules_seen_by_boto3(&bucket), with_ours(365));

    // Removing the operator's rule leaves the others as they were.
    store.put_expiration_days(&bucket, None).await.unwrap();
    assert_eq!(store.get_expiration_days(&bucket).await.unwrap(), None);
    assert_eq!(
        lifecycle_rules_seen_by_boto3(&bucket),
        serde_json::Value::Array(foreign.clone())
    );

    // Alone, the operator's rule goes with the whole configuration.
    boto3(
        r#"
s3 = client("s3", E["S3_ADMIN_ACCESS_KEY"], E["S3_ADMIN_SECRET_KEY"], E["S3_ENDPOINT"])
s3.delete_bucket_lifecycle(Bucket=E["CHECK_BUCKET"])
print("null")
"#,
        &[("CHECK_BUCKET", &bucket)],
    );
    store.put_expiration_days(&bucket, Some(30)).await.unwrap();
    assert_eq!(
        lifecycle_rules_seen_by_boto3(&bucket),
        serde_json::json!([ours(30)])
    );
    store.put_expiration_days(&bucket, None).await.unwrap();
    assert_eq!(
        lifecycle_rules_seen_by_boto3(&bucket),
        serde_json::Value::Null
    );

    assert!(store.delete_bucket(&bucket).await.unwrap());
}

#[tokio::test]
async fn a_bucket_with_data_is_deleted_only_after_empty_bucket() {
    let store = admin().await;
    let bucket = unique("e2e-delete");
    store.ensure_bucket(&bucket).await.unwrap();
    store.put_versioning(&bucket, true).await.unwrap();
    store
        .put_object(&bucket, "dir/a b+c.txt", "v1")
        .await
        .unwrap();
    store
        .put_object(&bucket, "dir/a b+c.txt", "v2")
        .await
        .unwrap();
    store.put_object(&bucket, "k", "x").await.unwrap();
    // A delete marker on top of "k": versions stay behind it.
    let deleted_marker = boto3(
        r#"
s3 = client("s3", E["S3_ADMIN_ACCESS_KEY"], E["S3_ADMIN_SECRET_KEY"], E["S3_ENDPOINT"])
print(json.dumps(s3.delete_object(Bucket=E["CHECK_BUCKET"], Key="k").get("DeleteMarker", False)))
"#,
        &[("CHECK_BUCKET", &bucket)],
    );
    assert_eq!(deleted_marker, serde_json::json!(true));

    let refused = store.delete_bucket(&bucket).await.unwrap_err();
    assert_eq!(
        refused.code(),
        Some(&ErrorCode::BucketNotEmpty),
        "{refused}"
    );
    assert_eq!(refused.operation(), Some(Operation::DeleteBucket));
    assert!(
        store.bucket_exists(&bucket).await.unwrap(),
        "refused means the bucket is still there"
    );
    assert_eq!(
        &store.get_object(&bucket, "dir/a b+c.txt").await.unwrap()[..],
        b"v2"
    );

    // Two versions of one key, one version of "k" and its delete marker.
    assert_eq!(store.empty_bucket(&bucket).await.unwrap(), 4);
    assert_eq!(
        store.empty_bucket(&bucket).await.unwrap(),
        0,
        "emptying an empty bucket is a no-op"
    );
    assert!(store.delete_bucket(&bucket).await.unwrap());
    assert!(
        !store.delete_bucket(&bucket).await.unwrap(),
        "deleting a deleted bucket is a no-op"
    );
    assert!(!store.bucket_exists(&bucket).await.unwrap());
    assert_eq!(
        store.empty_bucket(&bucket).await.unwrap(),
        0,
        "a repeated deletion finds nothing to empty"
    );
}

#[tokio::test]
async fn inline_policies_are_enforced_per_bucket_and_per_action() {
    let store = admin().await;
    let bucket = unique("e2e-granted");
    let other_bucket = unique("e2e-other");
    let user = unique("e2e-consumer");
    for b in [&bucket, &other_bucket] {
        store.ensure_bucket(b).await.unwrap();
        store
            .put_object(b, "data/hello.txt", "hello")
            .await
            .unwrap();
    }

    assert!(store.ensure_user(&user).await.unwrap());
    assert!(!store.ensure_user(&user).await.unwrap());
    assert!(store.user_exists(&user).await.unwrap());
    let key = store.create_access_key(&user).await.unwrap();
    let keys = store.list_access_keys(&user).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].access_key_id, key.access_key_id);
    assert!(keys[0].active);
    let consumer = acting_as(&key).await;

    // No policy: nothing is allowed.
    eventually(
        "a user without policies is denied",
        Duration::from_secs(10),
        || async { expect_denied(consumer.get_object(&bucket, "data/hello.txt").await) },
    )
    .await;

    // Read grant.
    let grant = "grants".to_owned();
    let read = identity_policy(&bucket, BucketAccess::Read);
    store.put_user_policy(&user, &grant, &read).await.unwrap();
    assert_eq!(
        store.get_user_policy(&user, &grant).await.unwrap(),
        Some(read.clone())
    );
    assert_eq!(
        store.list_user_policies(&user).await.unwrap(),
        std::slice::from_ref(&grant)
    );
    eventually("read grant allows get", Duration::from_secs(10), || async {
        match consumer.get_object(&bucket, "data/hello.txt").await {
            Ok(body) if &body[..] == b"hello" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    expect_denied(consumer.put_object(&bucket, "data/new.txt", "x").await).unwrap();
    expect_denied(consumer.get_object(&other_bucket, "data/hello.txt").await).unwrap();
    expect_denied(consumer.put_versioning(&bucket, false).await).unwrap();
    expect_denied(consumer.ensure_bucket(&unique("e2e-not-allowed")).await).unwrap();

    // The same, through an independent client with the user's keys.
    let seen = boto3(
        r#"
s3 = client("s3", E["CHECK_AK"], E["CHECK_SK"], E["S3_ENDPOINT"])
b = E["CHECK_BUCKET"]
print(json.dumps({
    "get": outcome(lambda: s3.get_object(Bucket=b, Key="data/hello.txt")["Body"].read().decode()),
    "list": outcome(lambda: [o["Key"] for o in s3.list_objects_v2(Bucket=b).get("Contents", [])]),
    "put": outcome(lambda: s3.put_object(Bucket=b, Key="data/boto3.txt", Body=b"x") and None),
    "other": outcome(lambda: s3.get_object(Bucket=E["CHECK_OTHER"], Key="data/hello.txt") and None),
}))
"#,
        &[
            ("CHECK_AK", &key.access_key_id),
            ("CHECK_SK", key.secret_access_key.expose()),
            ("CHECK_BUCKET", &bucket),
            ("CHECK_OTHER", &other_bucket),
        ],
    );
    assert_eq!(seen["get"], serde_json::json!({"ok": "hello"}));
    assert_eq!(seen["list"], serde_json::json!({"ok": ["data/hello.txt"]}));
    assert_eq!(seen["put"], serde_json::json!({"error": "AccessDenied"}));
    assert_eq!(seen["other"], serde_json::json!({"error": "AccessDenied"}));

    // Read-write grant replaces the read grant under the same name.
    store
        .put_user_policy(
            &user,
            &grant,
            &identity_policy(&bucket, BucketAccess::ReadWrite),
        )
        .await
        .unwrap();
    eventually(
        "read-write grant allows put",
        Duration::from_secs(10),
        || async {
            consumer
                .put_object(&bucket, "data/new.txt", "written")
                .await
                .map_err(|e| e.to_string())
        },
    )
    .await;
    assert_eq!(
        &consumer.get_object(&bucket, "data/new.txt").await.unwrap()[..],
        b"written"
    );
    expect_denied(consumer.get_object(&other_bucket, "data/hello.txt").await).unwrap();

    // Revocation: the policy goes, access goes.
    store.delete_user_policy(&user, &grant).await.unwrap();
    store.delete_user_policy(&user, &grant).await.unwrap();
    assert_eq!(store.get_user_policy(&user, &grant).await.unwrap(), None);
    assert!(store.list_user_policies(&user).await.unwrap().is_empty());
    eventually(
        "revoked grant denies get",
        Duration::from_secs(10),
        || async { expect_denied(consumer.get_object(&bucket, "data/hello.txt").await) },
    )
    .await;
    expect_denied(consumer.put_object(&bucket, "data/after.txt", "x").await).unwrap();

    // Two policies at once: the union applies, and removing one leaves the other.
    store
        .put_user_policy(
            &user,
            "owner",
            &identity_policy(&other_bucket, BucketAccess::Owner),
        )
        .await
        .unwrap();
    store.put_user_policy(&user, &grant, &read).await.unwrap();
    eventually(
        "owner and grant policies together",
        Duration::from_secs(10),
        || async {
            consumer
                .put_object(&other_bucket, "owned.txt", "mine")
                .await
                .map_err(|e| e.to_string())?;
            consumer
                .get_object(&bucket, "data/hello.txt")
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        },
    )
    .await;
    store.delete_user_policy(&user, &grant).await.unwrap();
    eventually(
        "removing one policy keeps the other",
        Duration::from_secs(10),
        || async {
            expect_denied(consumer.get_object(&bucket, "data/hello.txt").await)?;
            consumer
                .get_object(&other_bucket, "owned.txt")
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        },
    )
    .await;

    // Rotating keys: a deleted key stops authenticating, the new one works.
    let second = store.create_access_key(&user).await.unwrap();
    store
        .delete_access_key(&user, &key.access_key_id)
        .await
        .unwrap();
    store
        .delete_access_key(&user, &key.access_key_id)
        .await
        .unwrap();
    let listed: Vec<_> = store
        .list_access_keys(&user)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.access_key_id)
        .collect();
    assert_eq!(listed, std::slice::from_ref(&second.access_key_id));
    eventually(
        "a deleted key is refused",
        Duration::from_secs(10),
        || async {
            match consumer.get_object(&other_bucket, "owned.txt").await {
                Err(StorageError::Service { status: 403, .. }) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let rotated = acting_as(&second).await;
    eventually("the new key works", Duration::from_secs(10), || async {
        rotated
            .get_object(&other_bucket, "owned.txt")
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    })
    .await;

    // Deleting the user takes its policies with it: a user re-created under the same name starts
    // with none (SeaweedFS's own DeleteUser would leave them for the newcomer).
    assert!(store.delete_user(&user).await.unwrap());
    assert!(!store.delete_user(&user).await.unwrap());
    assert!(!store.user_exists(&user).await.unwrap());
    eventually(
        "a deleted user's key is refused",
        Duration::from_secs(10),
        || async {
            match rotated.get_object(&other_bucket, "owned.txt").await {
                Err(StorageError::Service { status: 403, .. }) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert!(store.ensure_user(&user).await.unwrap());
    assert!(store.list_user_policies(&user).await.unwrap().is_empty());
    assert!(store.list_access_keys(&user).await.unwrap().is_empty());
    assert!(store.delete_user(&user).await.unwrap());

    for b in [&bucket, &other_bucket] {
        store.empty_bucket(b).await.unwrap();
        assert!(store.delete_bucket(b).await.unwrap());
    }
}

#[tokio::test]
async fn errors_name_the_call_the_subject_and_the_code() {
    let store = admin().await;
    let missing = unique("e2e-missing");

    let error = store.get_versioning(&missing).await.unwrap_err();
    assert_eq!(error.code(), Some(&ErrorCode::NoSuchBucket));
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "GetBucketVersioning on bucket \"{missing}\" failed: NoSuchBucket (HTTP 404)"
        )),
        "{message}"
    );
    assert!(!store.bucket_exists(&missing).await.unwrap());
    // Observing a bucket is one GetBucketTagging: a missing bucket is NoSuchBucket, not "no tags".
    assert_eq!(store.get_tags_if_exists(&missing).await.unwrap(), None);
    assert!(!store.delete_bucket(&missing).await.unwrap());

    let error = store
        .put_user_policy(&missing, "p", &identity_policy("b", BucketAccess::Read))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&ErrorCode::NoSuchEntity), "{error}");
    assert!(error.to_string().starts_with(&format!(
        "PutUserPolicy on policy \"p\" of IAM user \"{missing}\""
    )));
    assert_eq!(store.get_user_policy(&missing, "p").await.unwrap(), None);
    assert!(store.list_access_keys(&missing).await.unwrap().is_empty());

    // SeaweedFS accepts only Allow statements; a Deny is refused as malformed, never half-applied.
    let user = unique("e2e-deny");
    store.ensure_user(&user).await.unwrap();
    let deny = PolicyDocument {
        version: policy::POLICY_VERSION.to_owned(),
        statement: vec![Statement {
            sid: None,
            effect: Effect::Deny,
            action: vec!["s3:PutObject".to_owned()],
            resource: vec!["arn:aws:s3:::b/*".to_owned()],
            principal: None,
        }],
    };
    let error = store
        .put_user_policy(&user, "deny", &deny)
        .await
        .unwrap_err();
    assert_eq!(
        error.code(),
        Some(&ErrorCode::MalformedPolicyDocument),
        "{error}"
    );
    store.delete_user(&user).await.unwrap();

    // Wrong credentials are refused, and the secret is in no message.
    let impostor = connect(config(
        &env("S3_ADMIN_ACCESS_KEY"),
        "not-the-secret-0123456789",
    ))
    .await;
    let error = impostor.list_buckets().await.unwrap_err();
    assert_eq!(
        error.code(),
        Some(&ErrorCode::SignatureDoesNotMatch),
        "{error}"
    );
    assert!(!format!("{error} {error:?}").contains("not-the-secret"));
    let unknown = connect(config("AKIANOSUCHKEY0000000", "whatever")).await;
    let error = unknown.list_buckets().await.unwrap_err();
    assert_eq!(
        error.code(),
        Some(&ErrorCode::InvalidAccessKeyId),
        "{error}"
    );
}

/// Whether `client` may get the object (`Err` with the error otherwise), for `eventually`.
async fn reads(client: &SdkObjectStorage, bucket: &str, key: &str) -> Result<(), String> {
    client
        .get_object(bucket, key)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Whether `client` may put the object, for `eventually`.
async fn writes(
    client: &SdkObjectStorage,
    bucket: &str,
    key: &str,
    body: &str,
) -> Result<(), String> {
    client
        .put_object(bucket, key, body.to_owned())
        .await
        .map_err(|e| e.to_string())
}

/// The access the operator writes on a bucket: `users` at `access`, in `part` of its policy.
async fn give(
    policies: &BucketPolicies,
    store: &SdkObjectStorage,
    bucket: &str,
    part: Part,
    access: BucketAccess,
    users: &[&str],
) -> PolicyWrite {
    let mut principals = Principals::new();
    for user in users {
        let arn = policies.arn(store, user).await.unwrap().unwrap();
        principals.entry(access).or_default().insert(arn);
    }
    let wanted = statements(part, bucket, &principals);
    policies
        .converge(store, bucket, part, &wanted)
        .await
        .unwrap()
}

#[tokio::test]
async fn bucket_policies_are_enforced_per_bucket_per_action_and_per_user() {
    let store = admin().await;
    let bucket = unique("e2e-bp");
    let other_bucket = unique("e2e-bp-other");
    for b in [&bucket, &other_bucket] {
        store.ensure_bucket(b).await.unwrap();
        store
            .put_object(b, "data/hello.txt", "hello")
            .await
            .unwrap();
    }
    let (owner, reader, stranger) = (
        unique("e2e-bp-owner"),
        unique("e2e-bp-reader"),
        unique("e2e-bp-stranger"),
    );
    let mut clients = Vec::new();
    for user in [&owner, &reader, &stranger] {
        store.ensure_user(user).await.unwrap();
        clients.push(acting_as(&store.create_access_key(user).await.unwrap()).await);
    }
    let [as_owner, as_reader, as_stranger] = clients.as_slice() else {
        unreachable!()
    };

    // The ARN the IAM API reports is what the bucket policy names.
    let arn = store.user_arn(&reader).await.unwrap().unwrap();
    assert!(
        arn.starts_with("arn:aws:iam::") && arn.ends_with(&format!(":user/{reader}")),
        "{arn}"
    );
    assert_eq!(store.user_arn(&unique("e2e-nobody")).await.unwrap(), None);
    assert_eq!(store.get_bucket_policy(&bucket).await.unwrap(), None);

    let policies = BucketPolicies::new(Duration::from_secs(300));
    let owned = give(
        &policies,
        &store,
        &bucket,
        Part::Owner,
        BucketAccess::Owner,
        &[&owner],
    )
    .await;
    assert_eq!(owned, PolicyWrite::Put);
    let granted = give(
        &policies,
        &store,
        &bucket,
        Part::Grants,
        BucketAccess::Read,
        &[&reader],
    )
    .await;
    assert_eq!(granted, PolicyWrite::Put);
    eventually(
        "owner writes, reader reads",
        Duration::from_secs(10),
        || async {
            writes(as_owner, &bucket, "data/owner.txt", "mine").await?;
            reads(as_reader, &bucket, "data/hello.txt").await
        },
    )
    .await;
    expect_denied(as_reader.put_object(&bucket, "data/reader.txt", "x").await).unwrap();
    expect_denied(as_reader.get_object(&other_bucket, "data/hello.txt").await).unwrap();
    expect_denied(as_owner.get_object(&other_bucket, "data/hello.txt").await).unwrap();
    expect_denied(as_stranger.get_object(&bucket, "data/hello.txt").await).unwrap();
    expect_denied(as_reader.put_bucket_policy(&bucket, "{}").await).unwrap();
    expect_denied(as_owner.delete_bucket_policy(&bucket).await).unwrap();

    // The same, through an independent client with the reader's and the stranger's keys is
    // left to the end-to-end suites; here the service's echo of the policy must read as what
    // was written, or every resync would write it again.
    let fresh = BucketPolicies::new(Duration::from_secs(300));
    for (part, access, users) in [
        (Part::Owner, BucketAccess::Owner, [owner.as_str()]),
        (Part::Grants, BucketAccess::Read, [reader.as_str()]),
    ] {
        let again = give(&fresh, &store, &bucket, part, access, &users).await;
        assert_eq!(
            again,
            PolicyWrite::Unchanged,
            "{part:?} read back as written"
        );
    }

    // Read-write, then revocation: the owner's part stays.
    give(
        &policies,
        &store,
        &bucket,
        Part::Grants,
        BucketAccess::ReadWrite,
        &[&reader],
    )
    .await;
    eventually(
        "read-write grant allows put",
        Duration::from_secs(10),
        || async { writes(as_reader, &bucket, "data/reader.txt", "written").await },
    )
    .await;
    give(
        &policies,
        &store,
        &bucket,
        Part::Grants,
        BucketAccess::Read,
        &[],
    )
    .await;
    eventually(
        "revoked grant denies get",
        Duration::from_secs(10),
        || async { expect_denied(as_reader.get_object(&bucket, "data/hello.txt").await) },
    )
    .await;
    as_owner
        .get_object(&bucket, "data/reader.txt")
        .await
        .unwrap();

    // Upgrading from inline policies: the first ARN lookup of a user the operator manages (its
    // tags say so) removes the operator's old inline grants (here, read on the other bucket),
    // and leaves any other inline policy.
    let managed = [("app.kubernetes.io/managed-by", "datamesh-operator")]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
    store.tag_user(&reader, &managed).await.unwrap();
    store
        .put_user_policy(
            &reader,
            "datamesh-grants",
            &identity_policy(&other_bucket, BucketAccess::Read),
        )
        .await
        .unwrap();
    store
        .put_user_policy(
            &reader,
            "platform-audit",
            &identity_policy(&bucket, BucketAccess::Read),
        )
        .await
        .unwrap();
    eventually(
        "the legacy grant reads",
        Duration::from_secs(10),
        || async { reads(as_reader, &other_bucket, "data/hello.txt").await },
    )
    .await;
    BucketPolicies::new(Duration::from_secs(300))
        .arn(&store, &reader)
        .await
        .unwrap();
    assert_eq!(
        store.list_user_policies(&reader).await.unwrap(),
        ["platform-audit"]
    );
    eventually(
        "the legacy grant is gone",
        Duration::from_secs(10),
        || async { expect_denied(as_reader.get_object(&other_bucket, "data/hello.txt").await) },
    )
    .await;

    // The last part going deletes the policy.
    let released = give(
        &policies,
        &store,
        &bucket,
        Part::Owner,
        BucketAccess::Owner,
        &[],
    )
    .await;
    assert_eq!(released, PolicyWrite::Deleted);
    assert_eq!(store.get_bucket_policy(&bucket).await.unwrap(), None);
    store.delete_bucket_policy(&bucket).await.unwrap();
    eventually(
        "the owner's access is gone",
        Duration::from_secs(10),
        || async { expect_denied(as_owner.get_object(&bucket, "data/hello.txt").await) },
    )
    .await;
}
