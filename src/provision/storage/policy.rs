//! IAM policy documents as pure values: the access levels a grant gives, the JSON an S3
//! service's IAM and bucket-policy APIs understand, and "does this document allow that action"
//! for unit tests and fakes. Bucket policies are built in [`super::bucket_policy`].
//!
//! Only `Allow` statements are produced: SeaweedFS 4.x refuses `Deny` in inline user policies
//! ("not a valid effect: 'Deny'"), so access is revoked by writing a policy again without it.

use serde::{Deserialize, Serialize};

/// The policy language version every document declares.
pub const POLICY_VERSION: &str = "2012-10-17";

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
    pub(super) fn bucket_actions(self) -> Vec<&'static str> {
        let mut actions = READ_BUCKET_ACTIONS.to_vec();
        if self == BucketAccess::Owner {
            actions.extend_from_slice(OWNER_BUCKET_ACTIONS);
        }
        actions
    }

    pub(super) fn object_actions(self) -> Vec<&'static str> {
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
    pub(super) fn label(self) -> &'static str {
        match self {
            BucketAccess::Read => "Read",
            BucketAccess::ReadWrite => "ReadWrite",
            BucketAccess::Owner => "Owner",
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
    /// Who the statement is about: only in a bucket policy (an identity's own policy is about
    /// that identity).
    #[serde(rename = "Principal", default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<Principal>,
}

/// The principals of a bucket policy's statement: IAM users, by ARN.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// ARNs such as `arn:aws:iam::123456789012:user/payments`.
    #[serde(rename = "AWS", deserialize_with = "one_or_many")]
    pub aws: Vec<String>,
}

/// IAM lets `Action`, `Resource` and `Statement` be a single value or a list; services echo back
/// whichever form they were given.
pub(super) fn one_or_many<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
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

/// An identity's policy giving `access` to one bucket: what an inline IAM policy of a user
/// holds (the operator writes access on the buckets instead, see [`super::bucket_policy`], but
/// an identity policy says the same for stores and tests that need one).
pub fn identity_policy(bucket: &str, access: BucketAccess) -> PolicyDocument {
    let statement = |actions: Vec<&str>, resource: String| Statement {
        sid: None,
        effect: Effect::Allow,
        action: actions.into_iter().map(String::from).collect(),
        resource: vec![resource],
        principal: None,
    };
    PolicyDocument {
        version: POLICY_VERSION.to_owned(),
        statement: vec![
            statement(access.bucket_actions(), bucket_arn(bucket)),
            statement(access.object_actions(), objects_arn(bucket)),
        ],
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
        self.decide(None, action, resource)
    }

    /// Whether this bucket policy allows the IAM user `arn` to take `action` on `resource`: as
    /// [`PolicyDocument::allows`], counting only the statements that name that user (or `*`).
    pub fn allows_principal(&self, arn: &str, action: &str, resource: &str) -> bool {
        self.decide(Some(arn), action, resource)
    }

    fn decide(&self, principal: Option<&str>, action: &str, resource: &str) -> bool {
        let about = |statement: &Statement| match (&statement.principal, principal) {
            (None, None) => true,
            (Some(named), Some(arn)) => named.aws.iter().any(|p| p == arn || p == "*"),
            _ => false,
        };
        let matches = |statement: &Statement| {
            about(statement)
                && statement.action.iter().any(|pattern| {
                    wildcard_match(&pattern.to_ascii_lowercase(), &action.to_ascii_lowercase())
                })
                && statement
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
    fn each_level_adds_to_the_one_below_and_none_deletes_versions() {
        let object = "arn:aws:s3:::b/2026/a.parquet";
        let read = identity_policy("b", BucketAccess::Read);
        assert!(read.allows("s3:ListBucket", "arn:aws:s3:::b"));
        assert!(read.allows("s3:GetObject", object));
        assert!(!read.allows("s3:PutObject", object));
        // The object statement does not open the bucket to listing and vice versa.
        assert!(!read.allows("s3:GetObject", "arn:aws:s3:::b"));
        assert!(!read.allows("s3:ListBucket", "arn:aws:s3:::b/a"));
        let write = identity_policy("b", BucketAccess::ReadWrite);
        for action in ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"] {
            assert!(write.allows(action, object), "{action}");
        }
        assert!(!write.allows("s3:GetObjectVersion", object));
        let owner = identity_policy("b", BucketAccess::Owner);
        assert!(owner.allows("s3:GetObjectVersion", object));
        assert!(owner.allows("s3:ListBucketVersions", "arn:aws:s3:::b"));
        for document in [read, write, owner] {
            assert!(!document.allows("s3:DeleteObjectVersion", object));
            assert!(!document.allows("s3:GetObject", "arn:aws:s3:::b2/k"));
        }
    }

    #[test]
    fn documents_round_trip_and_accept_single_values() {
        let policy = identity_policy("b", BucketAccess::Read);
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
        let mut policy = identity_policy("b", BucketAccess::ReadWrite);
        policy.statement.push(Statement {
            sid: None,
            effect: Effect::Deny,
            action: vec!["s3:Put*".into()],
            resource: vec!["arn:aws:s3:::b/*".into()],
            principal: None,
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
