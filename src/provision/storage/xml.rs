//! The XML bodies of the S3 REST API and the IAM query API: what we send and what we read back.
//!
//! Only the fields this module uses are declared; anything else in a response is ignored, so
//! services that add elements (SeaweedFS, MinIO, AWS) all parse.

use serde::{Deserialize, Serialize};

use super::BucketTags;

/// Namespace of S3 request bodies.
const S3_XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// Serializes a request body. Our request types hold only strings and numbers, which always
/// serialize; an error would be a bug, reported rather than panicking.
fn to_xml<T: Serialize>(value: &T) -> Result<String, String> {
    quick_xml::se::to_string(value).map_err(|error| format!("could not write request XML: {error}"))
}

/// Parses a response body.
pub(super) fn from_xml<'de, T: Deserialize<'de>>(body: &'de str) -> Result<T, String> {
    quick_xml::de::from_str(body).map_err(|error| format!("could not read response XML: {error}"))
}

// ---- errors ------------------------------------------------------------------------------------

/// `<Error><Code/><Message/></Error>` (S3) or
/// `<ErrorResponse><Error><Code/><Message/></Error></ErrorResponse>` (IAM).
#[derive(Debug, Default, Deserialize)]
pub(super) struct ErrorBody {
    #[serde(rename = "Code")]
    pub code: Option<String>,
    #[serde(rename = "Message")]
    pub message: Option<String>,
    #[serde(rename = "Error")]
    pub error: Option<Box<ErrorBody>>,
}

impl ErrorBody {
    /// The code and message wherever the format put them.
    pub fn code_and_message(self) -> (Option<String>, Option<String>) {
        match self.error {
            Some(inner) if self.code.is_none() => (inner.code, inner.message),
            _ => (self.code, self.message),
        }
    }
}

// ---- S3 requests -------------------------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename = "VersioningConfiguration")]
struct VersioningOut<'a> {
    #[serde(rename = "@xmlns")]
    xmlns: &'a str,
    #[serde(rename = "Status")]
    status: &'a str,
}

/// Body of `PutBucketVersioning`.
pub(super) fn versioning_body(enabled: bool) -> Result<String, String> {
    to_xml(&VersioningOut {
        xmlns: S3_XMLNS,
        status: if enabled { "Enabled" } else { "Suspended" },
    })
}

#[derive(Serialize)]
#[serde(rename = "LifecycleConfiguration")]
struct LifecycleOut<'a> {
    #[serde(rename = "@xmlns")]
    xmlns: &'a str,
    #[serde(rename = "Rule")]
    rule: Vec<RuleOut<'a>>,
}

#[derive(Serialize)]
struct RuleOut<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    #[serde(rename = "Filter")]
    filter: FilterOut<'a>,
    #[serde(rename = "Status")]
    status: &'a str,
    #[serde(rename = "Expiration")]
    expiration: ExpirationOut,
}

#[derive(Serialize)]
struct FilterOut<'a> {
    #[serde(rename = "Prefix")]
    prefix: &'a str,
}

#[derive(Serialize)]
struct ExpirationOut {
    #[serde(rename = "Days")]
    days: u32,
}

/// Body of `PutBucketLifecycleConfiguration`: one enabled rule expiring every object after `days`.
pub(super) fn lifecycle_body(rule_id: &str, days: u32) -> Result<String, String> {
    to_xml(&LifecycleOut {
        xmlns: S3_XMLNS,
        rule: vec![RuleOut {
            id: rule_id,
            filter: FilterOut { prefix: "" },
            status: "Enabled",
            expiration: ExpirationOut { days },
        }],
    })
}

#[derive(Serialize)]
#[serde(rename = "Tagging")]
struct TaggingOut<'a> {
    #[serde(rename = "@xmlns")]
    xmlns: &'a str,
    #[serde(rename = "TagSet")]
    tag_set: TagSetOut<'a>,
}

#[derive(Serialize)]
struct TagSetOut<'a> {
    #[serde(rename = "Tag")]
    tag: Vec<TagOut<'a>>,
}

#[derive(Serialize)]
struct TagOut<'a> {
    #[serde(rename = "Key")]
    key: &'a str,
    #[serde(rename = "Value")]
    value: &'a str,
}

/// Body of `PutBucketTagging`.
pub(super) fn tagging_body(tags: &BucketTags) -> Result<String, String> {
    to_xml(&TaggingOut {
        xmlns: S3_XMLNS,
        tag_set: TagSetOut {
            tag: tags
                .iter()
                .map(|(key, value)| TagOut { key, value })
                .collect(),
        },
    })
}

#[derive(Serialize)]
#[serde(rename = "Delete")]
struct DeleteOut<'a> {
    #[serde(rename = "@xmlns")]
    xmlns: &'a str,
    #[serde(rename = "Quiet")]
    quiet: bool,
    #[serde(rename = "Object")]
    object: Vec<ObjectIdOut<'a>>,
}

#[derive(Serialize)]
struct ObjectIdOut<'a> {
    #[serde(rename = "Key")]
    key: &'a str,
    #[serde(rename = "VersionId", skip_serializing_if = "Option::is_none")]
    version_id: Option<&'a str>,
}

/// Body of `DeleteObjects` in quiet mode (the answer lists failures only).
pub(super) fn delete_objects_body(entries: &[VersionEntry]) -> Result<String, String> {
    to_xml(&DeleteOut {
        xmlns: S3_XMLNS,
        quiet: true,
        object: entries
            .iter()
            .map(|entry| ObjectIdOut {
                key: &entry.key,
                version_id: entry.version_id.as_deref(),
            })
            .collect(),
    })
}

// ---- S3 responses ------------------------------------------------------------------------------

/// `GetBucketVersioning`.
#[derive(Debug, Deserialize)]
pub(super) struct VersioningIn {
    #[serde(rename = "Status")]
    pub status: Option<String>,
}

/// `GetBucketLifecycleConfiguration`.
#[derive(Debug, Deserialize)]
pub(super) struct LifecycleIn {
    #[serde(rename = "Rule", default)]
    pub rule: Vec<RuleIn>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RuleIn {
    #[serde(rename = "ID")]
    pub id: Option<String>,
    #[serde(rename = "Status")]
    pub status: Option<String>,
    /// Old-style rules put the prefix directly in the rule.
    #[serde(rename = "Prefix")]
    pub prefix: Option<String>,
    #[serde(rename = "Filter")]
    pub filter: Option<FilterIn>,
    #[serde(rename = "Expiration")]
    pub expiration: Option<ExpirationIn>,
}

#[derive(Debug, Deserialize)]
pub(super) struct FilterIn {
    #[serde(rename = "Prefix")]
    pub prefix: Option<String>,
    #[serde(rename = "Tag")]
    pub tag: Option<TagIn>,
    #[serde(rename = "And")]
    pub and: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ExpirationIn {
    #[serde(rename = "Days")]
    pub days: Option<u32>,
}

impl LifecycleIn {
    /// Days of the rule `rule_id` if it is an enabled whole-bucket expiration; otherwise of the
    /// first enabled whole-bucket expiration rule (services that rename rules, like older
    /// SeaweedFS, still report the expiry we set).
    pub fn expiration_days(&self, rule_id: &str) -> Option<u32> {
        let whole_bucket_days = |rule: &RuleIn| {
            let enabled = rule.status.as_deref() == Some("Enabled");
            let filter_prefix = rule
                .filter
                .as_ref()
                .and_then(|f| f.prefix.as_deref())
                .unwrap_or("");
            let narrowed = rule
                .filter
                .as_ref()
                .is_some_and(|f| f.tag.is_some() || f.and.is_some());
            let whole = filter_prefix.is_empty()
                && rule.prefix.as_deref().unwrap_or("").is_empty()
                && !narrowed;
            if enabled && whole {
                rule.expiration.as_ref().and_then(|e| e.days)
            } else {
                None
            }
        };
        self.rule
            .iter()
            .filter(|rule| rule.id.as_deref() == Some(rule_id))
            .find_map(whole_bucket_days)
            .or_else(|| self.rule.iter().find_map(whole_bucket_days))
    }
}

/// `GetBucketTagging`.
#[derive(Debug, Deserialize)]
pub(super) struct TaggingIn {
    #[serde(rename = "TagSet")]
    pub tag_set: Option<TagSetIn>,
}

#[derive(Debug, Deserialize)]
pub(super) struct TagSetIn {
    #[serde(rename = "Tag", default)]
    pub tag: Vec<TagIn>,
}

#[derive(Debug, Deserialize)]
pub(super) struct TagIn {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "Value", default)]
    pub value: String,
}

impl TaggingIn {
    pub fn into_tags(self) -> BucketTags {
        self.tag_set
            .map(|set| {
                set.tag
                    .into_iter()
                    .map(|tag| (tag.key, tag.value))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `ListBuckets`.
#[derive(Debug, Deserialize)]
pub(super) struct ListBucketsIn {
    #[serde(rename = "Buckets")]
    pub buckets: Option<BucketsIn>,
    #[serde(rename = "ContinuationToken")]
    pub continuation_token: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct BucketsIn {
    #[serde(rename = "Bucket", default)]
    pub bucket: Vec<BucketIn>,
}

#[derive(Debug, Deserialize)]
pub(super) struct BucketIn {
    #[serde(rename = "Name")]
    pub name: String,
}

/// One object version or delete marker, as listed and as deleted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(super) struct VersionEntry {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "VersionId")]
    pub version_id: Option<String>,
}

/// `ListObjectVersions`. Versions and delete markers interleave in key order, which is why the
/// `overlapped-lists` feature of quick-xml is on. Only first pages are read (see
/// `empty_bucket`), so the pagination markers are not.
#[derive(Debug, Deserialize)]
pub(super) struct ListVersionsIn {
    #[serde(rename = "Version", default)]
    pub version: Vec<VersionEntry>,
    #[serde(rename = "DeleteMarker", default)]
    pub delete_marker: Vec<VersionEntry>,
}

/// `DeleteObjects` in quiet mode: only the failures.
#[derive(Debug, Deserialize)]
pub(super) struct DeleteResultIn {
    #[serde(rename = "Error", default)]
    pub error: Vec<DeleteErrorIn>,
}

#[derive(Debug, Deserialize)]
pub(super) struct DeleteErrorIn {
    #[serde(rename = "Key")]
    pub key: Option<String>,
    #[serde(rename = "Code")]
    pub code: Option<String>,
    #[serde(rename = "Message")]
    pub message: Option<String>,
}

// ---- IAM responses -----------------------------------------------------------------------------

/// `CreateAccessKey`.
#[derive(Deserialize)]
pub(super) struct CreateAccessKeyIn {
    #[serde(rename = "CreateAccessKeyResult")]
    pub result: CreateAccessKeyResult,
}

#[derive(Deserialize)]
pub(super) struct CreateAccessKeyResult {
    #[serde(rename = "AccessKey")]
    pub access_key: AccessKeyIn,
}

/// Deliberately without `Debug`: it holds a secret.
#[derive(Deserialize)]
pub(super) struct AccessKeyIn {
    #[serde(rename = "AccessKeyId")]
    pub access_key_id: String,
    #[serde(rename = "SecretAccessKey")]
    pub secret_access_key: String,
}

/// `ListAccessKeys`.
#[derive(Debug, Deserialize)]
pub(super) struct ListAccessKeysIn {
    #[serde(rename = "ListAccessKeysResult")]
    pub result: ListAccessKeysResult,
}

#[derive(Debug, Deserialize)]
pub(super) struct ListAccessKeysResult {
    #[serde(rename = "AccessKeyMetadata")]
    pub metadata: Option<Members<AccessKeyMetadataIn>>,
    #[serde(rename = "IsTruncated", default)]
    pub is_truncated: bool,
    #[serde(rename = "Marker")]
    pub marker: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct AccessKeyMetadataIn {
    #[serde(rename = "AccessKeyId")]
    pub access_key_id: String,
    #[serde(rename = "Status")]
    pub status: Option<String>,
}

/// IAM's list wrapper: `<List><member>..</member>..</List>`.
#[derive(Debug, Deserialize)]
pub(super) struct Members<T> {
    #[serde(rename = "member", default = "Vec::new")]
    pub member: Vec<T>,
}

/// `GetUserPolicy`.
#[derive(Debug, Deserialize)]
pub(super) struct GetUserPolicyIn {
    #[serde(rename = "GetUserPolicyResult")]
    pub result: GetUserPolicyResult,
}

#[derive(Debug, Deserialize)]
pub(super) struct GetUserPolicyResult {
    #[serde(rename = "PolicyDocument")]
    pub policy_document: String,
}

/// `ListUserPolicies`.
#[derive(Debug, Deserialize)]
pub(super) struct ListUserPoliciesIn {
    #[serde(rename = "ListUserPoliciesResult")]
    pub result: ListUserPoliciesResult,
}

#[derive(Debug, Deserialize)]
pub(super) struct ListUserPoliciesResult {
    #[serde(rename = "PolicyNames")]
    pub policy_names: Option<Members<String>>,
    #[serde(rename = "IsTruncated", default)]
    pub is_truncated: bool,
    #[serde(rename = "Marker")]
    pub marker: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_s3_and_iam_errors() {
        let s3: ErrorBody = from_xml(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><Resource>/nope</Resource><RequestId>1</RequestId></Error>"#,
        )
        .unwrap();
        assert_eq!(
            s3.code_and_message(),
            (
                Some("NoSuchBucket".into()),
                Some("The specified bucket does not exist".into())
            )
        );
        let iam: ErrorBody = from_xml(
            r#"<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type><Code>NoSuchEntity</Code><Message>the user with name x cannot be found.</Message></Error><RequestId>2</RequestId></ErrorResponse>"#,
        )
        .unwrap();
        assert_eq!(iam.code_and_message().0.as_deref(), Some("NoSuchEntity"));
    }

    #[test]
    fn writes_versioning() {
        assert_eq!(
            versioning_body(true).unwrap(),
            r#"<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status></VersioningConfiguration>"#
        );
        assert!(
            versioning_body(false)
                .unwrap()
                .contains("<Status>Suspended</Status>")
        );
    }

    #[test]
    fn writes_lifecycle() {
        assert_eq!(
            lifecycle_body("datamesh-expiration", 365).unwrap(),
            r#"<LifecycleConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Rule><ID>datamesh-expiration</ID><Filter><Prefix/></Filter><Status>Enabled</Status><Expiration><Days>365</Days></Expiration></Rule></LifecycleConfiguration>"#
        );
    }

    #[test]
    fn writes_tags_escaped() {
        let tags: BucketTags = [("datamesh.dev/domain".to_owned(), "a<b&c".to_owned())].into();
        assert_eq!(
            tagging_body(&tags).unwrap(),
            r#"<Tagging xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><TagSet><Tag><Key>datamesh.dev/domain</Key><Value>a&lt;b&amp;c</Value></Tag></TagSet></Tagging>"#
        );
    }

    #[test]
    fn writes_delete_objects() {
        let body = delete_objects_body(&[
            VersionEntry {
                key: "a & b".into(),
                version_id: Some("v1".into()),
            },
            VersionEntry {
                key: "c".into(),
                version_id: None,
            },
        ])
        .unwrap();
        assert_eq!(
            body,
            r#"<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Quiet>true</Quiet><Object><Key>a &amp; b</Key><VersionId>v1</VersionId></Object><Object><Key>c</Key></Object></Delete>"#
        );
    }

    #[test]
    fn reads_versioning() {
        let v: VersioningIn = from_xml(r#"<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status></VersioningConfiguration>"#).unwrap();
        assert_eq!(v.status.as_deref(), Some("Enabled"));
        let never: VersioningIn =
            from_xml(r#"<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"></VersioningConfiguration>"#).unwrap();
        assert_eq!(never.status, None);
    }

    #[test]
    fn reads_lifecycle_rules() {
        let ours: LifecycleIn = from_xml(
            r#"<LifecycleConfiguration><Rule><ID>other</ID><Filter><Prefix>tmp/</Prefix></Filter><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule><Rule><ID>datamesh-expiration</ID><Filter><Prefix></Prefix></Filter><Status>Enabled</Status><Expiration><Days>30</Days></Expiration></Rule></LifecycleConfiguration>"#,
        )
        .unwrap();
        assert_eq!(ours.expiration_days("datamesh-expiration"), Some(30));
        let renamed: LifecycleIn = from_xml(
            r#"<LifecycleConfiguration><Rule><ID></ID><Prefix></Prefix><Status>Enabled</Status><Expiration><Days>7</Days></Expiration></Rule></LifecycleConfiguration>"#,
        )
        .unwrap();
        assert_eq!(renamed.expiration_days("datamesh-expiration"), Some(7));
        let disabled: LifecycleIn = from_xml(
            r#"<LifecycleConfiguration><Rule><ID>datamesh-expiration</ID><Filter/><Status>Disabled</Status><Expiration><Days>7</Days></Expiration></Rule></LifecycleConfiguration>"#,
        )
        .unwrap();
        assert_eq!(disabled.expiration_days("datamesh-expiration"), None);
        let narrowed: LifecycleIn = from_xml(
            r#"<LifecycleConfiguration><Rule><ID>x</ID><Filter><Tag><Key>a</Key><Value>b</Value></Tag></Filter><Status>Enabled</Status><Expiration><Days>7</Days></Expiration></Rule></LifecycleConfiguration>"#,
        )
        .unwrap();
        assert_eq!(narrowed.expiration_days("datamesh-expiration"), None);
    }

    #[test]
    fn reads_tags() {
        let t: TaggingIn = from_xml(
            r#"<Tagging><TagSet><Tag><Key>b</Key><Value>2</Value></Tag><Tag><Key>a</Key><Value></Value></Tag></TagSet></Tagging>"#,
        )
        .unwrap();
        let tags = t.into_tags();
        assert_eq!(tags.get("a").map(String::as_str), Some(""));
        assert_eq!(tags.get("b").map(String::as_str), Some("2"));
    }

    #[test]
    fn reads_bucket_list() {
        let l: ListBucketsIn = from_xml(
            r#"<ListAllMyBucketsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Owner><ID>a</ID></Owner><Buckets><Bucket><Name>x</Name><CreationDate>2026-01-01T00:00:00Z</CreationDate></Bucket><Bucket><Name>y</Name></Bucket></Buckets></ListAllMyBucketsResult>"#,
        )
        .unwrap();
        let names: Vec<_> = l
            .buckets
            .unwrap()
            .bucket
            .into_iter()
            .map(|b| b.name)
            .collect();
        assert_eq!(names, ["x", "y"]);
        let empty: ListBucketsIn = from_xml(r#"<ListAllMyBucketsResult><Owner><ID>a</ID></Owner><Buckets></Buckets></ListAllMyBucketsResult>"#).unwrap();
        assert!(empty.buckets.map(|b| b.bucket.is_empty()).unwrap_or(true));
    }

    #[test]
    fn reads_interleaved_versions_and_delete_markers() {
        let l: ListVersionsIn = from_xml(
            r#"<ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><IsTruncated>true</IsTruncated><NextKeyMarker>k</NextKeyMarker><NextVersionIdMarker>v3</NextVersionIdMarker><Version><Key>a</Key><VersionId>v1</VersionId><IsLatest>true</IsLatest></Version><DeleteMarker><Key>k</Key><VersionId>v3</VersionId></DeleteMarker><Version><Key>k</Key><VersionId>v2</VersionId></Version></ListVersionsResult>"#,
        )
        .unwrap();
        assert_eq!(l.version.len(), 2);
        assert_eq!(
            l.delete_marker,
            [VersionEntry {
                key: "k".into(),
                version_id: Some("v3".into())
            }]
        );
    }

    #[test]
    fn reads_delete_errors() {
        let ok: DeleteResultIn = from_xml(
            r#"<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"></DeleteResult>"#,
        )
        .unwrap();
        assert!(ok.error.is_empty());
        let failed: DeleteResultIn = from_xml(
            r#"<DeleteResult><Deleted><Key>a</Key></Deleted><Error><Key>b</Key><Code>AccessDenied</Code><Message>no</Message></Error></DeleteResult>"#,
        )
        .unwrap();
        assert_eq!(failed.error[0].code.as_deref(), Some("AccessDenied"));
    }

    #[test]
    fn reads_iam_answers() {
        let created: CreateAccessKeyIn = from_xml(
            r#"<CreateAccessKeyResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><CreateAccessKeyResult><AccessKey><UserName>u</UserName><AccessKeyId>AKIA1</AccessKeyId><Status>Active</Status><SecretAccessKey>s/e+c</SecretAccessKey></AccessKey></CreateAccessKeyResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></CreateAccessKeyResponse>"#,
        )
        .unwrap();
        assert_eq!(created.result.access_key.access_key_id, "AKIA1");
        assert_eq!(created.result.access_key.secret_access_key, "s/e+c");

        let keys: ListAccessKeysIn = from_xml(
            r#"<ListAccessKeysResponse><ListAccessKeysResult><AccessKeyMetadata><member><AccessKeyId>AKIA1</AccessKeyId><Status>Active</Status><UserName>u</UserName></member><member><AccessKeyId>AKIA2</AccessKeyId><Status>Inactive</Status></member></AccessKeyMetadata><IsTruncated>false</IsTruncated></ListAccessKeysResult></ListAccessKeysResponse>"#,
        )
        .unwrap();
        let members = keys.result.metadata.unwrap().member;
        assert_eq!(members.len(), 2);
        assert_eq!(members[1].status.as_deref(), Some("Inactive"));
        let none: ListAccessKeysIn = from_xml(
            r#"<ListAccessKeysResponse><ListAccessKeysResult><AccessKeyMetadata></AccessKeyMetadata><IsTruncated>false</IsTruncated></ListAccessKeysResult></ListAccessKeysResponse>"#,
        )
        .unwrap();
        assert!(
            none.result
                .metadata
                .map(|m| m.member.is_empty())
                .unwrap_or(true)
        );

        let policy: GetUserPolicyIn = from_xml(
            r#"<GetUserPolicyResponse><GetUserPolicyResult><UserName>u</UserName><PolicyName>p</PolicyName><PolicyDocument>{&#34;Version&#34;:&#34;2012-10-17&#34;}</PolicyDocument></GetUserPolicyResult></GetUserPolicyResponse>"#,
        )
        .unwrap();
        assert_eq!(policy.result.policy_document, r#"{"Version":"2012-10-17"}"#);

        let names: ListUserPoliciesIn = from_xml(
            r#"<ListUserPoliciesResponse><ListUserPoliciesResult><PolicyNames><member>a</member><member>b</member></PolicyNames><IsTruncated>true</IsTruncated><Marker>m</Marker></ListUserPoliciesResult></ListUserPoliciesResponse>"#,
        )
        .unwrap();
        assert_eq!(names.result.policy_names.unwrap().member, ["a", "b"]);
        assert!(names.result.is_truncated);
        assert_eq!(names.result.marker.as_deref(), Some("m"));
    }
}
