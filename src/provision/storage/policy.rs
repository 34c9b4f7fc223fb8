//! IAM policy documents for bucket access, built as pure values.
//!
//! The reconcilers decide *who* gets *which* access to *which* bucket; this module only turns that
//! decision into the JSON document an S3 service's IAM API understands, and answers "does this
//! document allow that action" for unit tests and fakes.
//!
//! Every document lists its buckets by exact name. A wildcard such as `arn:aws:s3:::payments-*`
//! would be shorter, but it would also match the buckets of a domain called `payments-eu`, so
//! a domain's access could leak to another domain that merely shares a name prefix.
//!
//! Only `Allow` statements are produced: SeaweedFS 4.x refuses `Deny` in inline user policies
//! ("not a valid effect: 'Deny'"), so access is revoked by writing the user's policy again
//! without the bucket (or deleting the policy once it would be empty).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// The policy language version every document declares.
pub const POLICY_VERSION: &str = "2012-10-17";

/// Name of the inline policy that gives a domain read-write access to its own buckets.
pub const OWNER_POLICY_NAME: &str = "datamesh-owner";

/// Name of the inline policy that gives a consumer domain the access AccessPolicies grant it to
/// other domains' buckets: one document for all of them (see
/// `crate::controller::user_policies` for why not one per bucket).
pub const GRANTS_POLICY_NAME: &str = "datamesh-grants";

/// Bucket-level actions a reader needs: listing keys.
const READ_BUCKET_ACTIONS: &[&str] = &["s3:ListBucket"];
/// Object-level actions a reader needs: fetching objects.
const READ_OBJECT_ACTIONS: &[&str] = &["s3:GetObject"];
/// Object-level actions a writer needs on top of reading. Aborting multipart uploads comes with
/// writing because large writes (Spark, multipart clients) otherwise leave parts behind.
const WRITE_OBJECT_ACTIONS: &[&str] =
    &["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"];
/// Extra bucket-level actions the owning domain gets: browsing versions and the bucket's region.
const OWNER_BUCKET_ACTIONS: &[&str] = &["s3:ListBucketVersions", "s3:GetBucketLocation"];
/// Extra object-level actions the owning domain gets. `s3:DeleteObjectVersion` is deliberately
/// absent: with it a domain could destroy the history that versioning keeps; old versions leave
/// through the lifecycle rule instead.
const OWNER_OBJECT_ACTIONS: &[&str] = &[
    "s3:GetObjectVersion",
    "s3:GetObjectTagging",
    "s3:PutObjectTagging",
];

/// How much of a bucket a grant opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BucketAccess {
    /// List keys and get objects.
    Read,
    /// Read, plus put and delete objects.
    ReadWrite,
    /// Everything the owning domain does with its own buckets: read-write plus object versions and
    /// object tags.
    Owner,
}

impl BucketAccess {
    fn bucket_actions(self) -> Vec<&'static str> {
        let mut actions = READ_BUCKET_ACTIONS.to_vec();
        if self == BucketAccess::Owner {
            actions.extend_from_slice(OWNER_BUCKET_ACTIONS);
        }
        actions
    }

    fn object_actions(self) -> Vec<&'static str> {
        let mut actions = READ_OBJECT_ACTIONS.to_vec();
        if self >= BucketAccess::ReadWrite {
            actions.extend_from_slice(WRITE_OBJECT_ACTIONS);
        }
        if self == BucketAccess::Owner {
            actions.extend_from_slice(OWNER_OBJECT_ACTIONS);
        }
        actions
    }

    /// Short name used in statement ids.
    fn label(self) -> &'static str {
        match self {
            BucketAccess::Read => "Read",
            BucketAccess::ReadWrite => "ReadWrite",
            BucketAccess::Owner => "Owner",
        }
    }
}

/// One bucket and the access granted on it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BucketGrant {
    /// The bucket's name.
    pub bucket: String,
    /// The access granted on it.
    pub access: BucketAccess,
}

impl BucketGrant {
    /// A grant of `access` on `bucket`.
    pub fn new(bucket: impl Into<String>, access: BucketAccess) -> Self {
        Self {
            bucket: bucket.into(),
            access,
        }
    }
}

/// Whether a statement allows or denies. Only `Allow` is ever built here (see the module docs),
/// but documents read back from a service may carry either.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    /// The statement grants its actions.
    Allow,
    /// The statement refuses its actions, overriding any allow.
    Deny,
}

/// An IAM policy document, as JSON-serialized for `PutUserPolicy`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDocument {
    /// Policy language version, [`POLICY_VERSION`].
    #[serde(rename = "Version")]
    pub version: String,
    /// The statements, in a deterministic order so that equal decisions give equal documents.
    #[serde(rename = "Statement", deserialize_with = "one_or_many")]
    pub statement: Vec<Statement>,
}

/// One statement of a [`PolicyDocument`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    /// Statement id, unique within the document.
    #[serde(rename = "Sid", default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Allow or deny.
    #[serde(rename = "Effect")]
    pub effect: Effect,
    /// Actions such as `s3:GetObject`; `*` wildcards are honoured by [`PolicyDocument::allows`].
    #[serde(rename = "Action", deserialize_with = "one_or_many")]
    pub action: Vec<String>,
    /// Resource ARNs such as `arn:aws:s3:::bucket` or `arn:aws:s3:::bucket/*`.
    #[serde(rename = "Resource", deserialize_with = "one_or_many")]
    pub resource: Vec<String>,
}

/// IAM lets `Action`, `Resource` and `Statement` be a single value or a list; services echo back
/// whichever form they were given.
fn one_or_many<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        Many(Vec<T>),
        One(T),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::Many(values) => values,
        OneOrMany::One(value) => vec![value],
    })
}

/// ARN of a bucket itself (what `s3:ListBucket` applies to).
pub fn bucket_arn(bucket: &str) -> String {
    format!("arn:aws:s3:::{bucket}")
}

/// ARN of every object in a bucket (what `s3:GetObject` applies to).
pub fn objects_arn(bucket: &str) -> String {
    format!("arn:aws:s3:::{bucket}/*")
}

/// The document that gives the owning domain read-write access to each of its buckets.
pub fn owner_policy<S: AsRef<str>>(buckets: &[S]) -> PolicyDocument {
    let grants: Vec<BucketGrant> = buckets
        .iter()
        .map(|bucket| BucketGrant::new(bucket.as_ref(), BucketAccess::Owner))
        .collect();
    bucket_policy(&grants)
}

/// The document that gives a consumer `access` (read or read-write) to one bucket.
pub fn consumer_policy(bucket: &str, access: BucketAccess) -> PolicyDocument {
    bucket_policy(&[BucketGrant::new(bucket, access)])
}

/// The document for any set of grants. Buckets granted at several levels get the highest one;
/// buckets with the same level share a pair of statements (one on the buckets, one on their
/// objects), so the document stays small (AWS caps a user's inline policies at 2 KiB in total).
/// An empty set of grants gives a document with no statements: delete the policy instead of
/// putting that.
pub fn bucket_policy(grants: &[BucketGrant]) -> PolicyDocument {
    let mut highest: std::collections::BTreeMap<&str, BucketAccess> = Default::default();
    for grant in grants {
        let level = highest.entry(grant.bucket.as_str()).or_insert(grant.access);
        *level = (*level).max(grant.access);
    }
    let mut statement = Vec::new();
    for access in [
        BucketAccess::Owner,
        BucketAccess::ReadWrite,
        BucketAccess::Read,
    ] {
        let buckets: BTreeSet<&str> = highest
            .iter()
            .filter(|(_, level)| **level == access)
            .map(|(bucket, _)| *bucket)
            .collect();
        if buckets.is_empty() {
            continue;
        }
        statement.push(Statement {
            sid: Some(format!("{}Buckets", access.label())),
            effect: Effect::Allow,
            action: access
                .bucket_actions()
                .into_iter()
                .map(String::from)
                .collect(),
            resource: buckets.iter().map(|bucket| bucket_arn(bucket)).collect(),
        });
        statement.push(Statement {
            sid: Some(format!("{}Objects", access.label())),
            effect: Effect::Allow,
            action: access
                .object_actions()
                .into_iter()
                .map(String::from)
                .collect(),
            resource: buckets.iter().map(|bucket| objects_arn(bucket)).collect(),
        });
    }
    PolicyDocument {
        version: POLICY_VERSION.to_owned(),
        statement,
    }
}

impl PolicyDocument {
    /// The document as the compact JSON string `PutUserPolicy` takes.
    pub fn to_json(&self) -> String {
        // Serializing plain strings and enums into a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a document as returned by `GetUserPolicy` (after URL-decoding).
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// Whether the document allows `action` (e.g. `s3:PutObject`) on `resource` (an ARN), by IAM's
    /// rules: some `Allow` statement matches and no `Deny` statement does. `*` and `?` in actions
    /// and resources are wildcards; actions compare case-insensitively, resources exactly.
    pub fn allows(&self, action: &str, resource: &str) -> bool {
        let matches = |statement: &Statement| {
            statement.action.iter().any(|pattern| {
                wildcard_match(&pattern.to_ascii_lowercase(), &action.to_ascii_lowercase())
            }) && statement
                .resource
                .iter()
                .any(|pattern| wildcard_match(pattern, resource))
        };
        let denied = self
            .statement
            .iter()
            .any(|s| s.effect == Effect::Deny && matches(s));
        let allowed = self
            .statement
            .iter()
            .any(|s| s.effect == Effect::Allow && matches(s));
        allowed && !denied
    }

    /// The buckets this document names in any resource, for finding which grants exist.
    pub fn buckets(&self) -> BTreeSet<String> {
        self.statement
            .iter()
            .flat_map(|statement| statement.resource.iter())
            .filter_map(|arn| arn.strip_prefix("arn:aws:s3:::"))
            .map(|rest| rest.split('/').next().unwrap_or(rest).to_owned())
            .filter(|bucket| !bucket.is_empty())
            .collect()
    }
}

/// IAM-style glob: `*` matches any run of characters, `?` any single character.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            backtrack = Some((p, t));
            p += 1;
        } else if let Some((star, matched)) = backtrack {
            p = star + 1;
            t = matched + 1;
            backtrack = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_grant_allows_list_and_get_only() {
        let policy = consumer_policy("payments-orders-lake", BucketAccess::Read);
        assert!(policy.allows("s3:ListBucket", "arn:aws:s3:::payments-orders-lake"));
        assert!(policy.allows(
            "s3:GetObject",
            "arn:aws:s3:::payments-orders-lake/2026/01/a.parquet"
        ));
        assert!(!policy.allows("s3:PutObject", "arn:aws:s3:::payments-orders-lake/a"));
        assert!(!policy.allows("s3:DeleteObject", "arn:aws:s3:::payments-orders-lake/a"));
        // The object statement does not open the bucket to listing and vice versa.
        assert!(!policy.allows("s3:GetObject", "arn:aws:s3:::payments-orders-lake"));
        assert!(!policy.allows("s3:ListBucket", "arn:aws:s3:::payments-orders-lake/a"));
    }

    #[test]
    fn read_write_grant_adds_put_and_delete() {
        let policy = consumer_policy("payments-orders-lake", BucketAccess::ReadWrite);
        for action in [
            "s3:GetObject",
            "s3:PutObject",
            "s3:DeleteObject",
            "s3:AbortMultipartUpload",
        ] {
            assert!(
                policy.allows(action, "arn:aws:s3:::payments-orders-lake/k"),
                "{action}"
            );
        }
        assert!(policy.allows("s3:ListBucket", "arn:aws:s3:::payments-orders-lake"));
        assert!(!policy.allows(
            "s3:DeleteObjectVersion",
            "arn:aws:s3:::payments-orders-lake/k"
        ));
    }

    #[test]
    fn grants_never_reach_other_buckets() {
        let policy = consumer_policy("payments-orders-lake", BucketAccess::ReadWrite);
        assert!(!policy.allows("s3:GetObject", "arn:aws:s3:::payments-orders-lake2/k"));
        assert!(!policy.allows("s3:GetObject", "arn:aws:s3:::marketing-x-y/k"));
        assert!(!policy.allows("s3:ListBucket", "arn:aws:s3:::payments-orders"));
    }

    #[test]
    fn owner_policy_covers_every_bucket_of_the_domain_and_no_other() {
        let policy = owner_policy(&["payments-orders-lake", "payments-refunds-archive"]);
        for bucket in ["payments-orders-lake", "payments-refunds-archive"] {
            assert!(policy.allows("s3:PutObject", &objects_arn(bucket).replace('*', "x")));
            assert!(policy.allows("s3:GetObjectVersion", &format!("arn:aws:s3:::{bucket}/x")));
            assert!(policy.allows("s3:ListBucketVersions", &bucket_arn(bucket)));
            assert!(!policy.allows(
                "s3:DeleteObjectVersion",
                &format!("arn:aws:s3:::{bucket}/x")
            ));
        }
        assert!(!policy.allows("s3:PutObject", "arn:aws:s3:::payments-eu-orders-lake/x"));
        assert_eq!(
            policy.buckets().into_iter().collect::<Vec<_>>(),
            vec![
                "payments-orders-lake".to_owned(),
                "payments-refunds-archive".to_owned()
            ]
        );
    }

    #[test]
    fn owner_policy_serializes_to_the_expected_json() {
        let policy = owner_policy(&["payments-orders-lake"]);
        let json: serde_json::Value = serde_json::from_str(&policy.to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [
                    {"Sid": "OwnerBuckets", "Effect": "Allow",
                     "Action": ["s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketLocation"],
                     "Resource": ["arn:aws:s3:::payments-orders-lake"]},
                    {"Sid": "OwnerObjects", "Effect": "Allow",
                     "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                                "s3:GetObjectVersion", "s3:GetObjectTagging", "s3:PutObjectTagging"],
                     "Resource": ["arn:aws:s3:::payments-orders-lake/*"]}
                ]
            })
        );
    }

    #[test]
    fn mixed_grants_group_by_level_and_keep_the_highest_per_bucket() {
        let policy = bucket_policy(&[
            BucketGrant::new("b-read", BucketAccess::Read),
            BucketGrant::new("a-both", BucketAccess::Read),
            BucketGrant::new("a-both", BucketAccess::ReadWrite),
            BucketGrant::new("c-read", BucketAccess::Read),
        ]);
        let sids: Vec<_> = policy
            .statement
            .iter()
            .map(|s| s.sid.clone().unwrap())
            .collect();
        assert_eq!(
            sids,
            [
                "ReadWriteBuckets",
                "ReadWriteObjects",
                "ReadBuckets",
                "ReadObjects"
            ]
        );
        assert_eq!(policy.statement[0].resource, ["arn:aws:s3:::a-both"]);
        assert_eq!(
            policy.statement[2].resource,
            ["arn:aws:s3:::b-read", "arn:aws:s3:::c-read"]
        );
        assert!(policy.allows("s3:PutObject", "arn:aws:s3:::a-both/k"));
        assert!(!policy.allows("s3:PutObject", "arn:aws:s3:::b-read/k"));
    }

    #[test]
    fn equal_decisions_give_equal_documents() {
        let a = bucket_policy(&[
            BucketGrant::new("x", BucketAccess::Read),
            BucketGrant::new("y", BucketAccess::Read),
        ]);
        let b = bucket_policy(&[
            BucketGrant::new("y", BucketAccess::Read),
            BucketGrant::new("x", BucketAccess::Read),
        ]);
        assert_eq!(a, b);
        assert_eq!(a.to_json(), b.to_json());
    }

    #[test]
    fn empty_grants_give_a_document_without_statements() {
        assert!(bucket_policy(&[]).statement.is_empty());
    }

    #[test]
    fn documents_round_trip_and_accept_single_values() {
        let policy = consumer_policy("b", BucketAccess::Read);
        assert_eq!(
            PolicyDocument::from_json(&policy.to_json()).unwrap(),
            policy
        );
        let single = PolicyDocument::from_json(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::b*"}}"#,
        )
        .unwrap();
        assert!(single.allows("s3:PutObject", "arn:aws:s3:::b/k"));
        assert!(single.allows("S3:PUTOBJECT", "arn:aws:s3:::bx"));
    }

    #[test]
    fn deny_overrides_allow() {
        let mut policy = consumer_policy("b", BucketAccess::ReadWrite);
        policy.statement.push(Statement {
            sid: None,
            effect: Effect::Deny,
            action: vec!["s3:Put*".into()],
            resource: vec!["arn:aws:s3:::b/*".into()],
        });
        assert!(!policy.allows("s3:PutObject", "arn:aws:s3:::b/k"));
        assert!(policy.allows("s3:GetObject", "arn:aws:s3:::b/k"));
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a*c", "abbbc"));
        assert!(wildcard_match("a?c", "abc"));
        assert!(!wildcard_match("a?c", "ac"));
        assert!(wildcard_match("arn:aws:s3:::b/*", "arn:aws:s3:::b/x/y"));
        assert!(!wildcard_match("arn:aws:s3:::b/*", "arn:aws:s3:::bb/x"));
        assert!(wildcard_match("*a*b", "xxaxxb"));
        assert!(!wildcard_match("*a*b", "xxaxxbx"));
    }
}
