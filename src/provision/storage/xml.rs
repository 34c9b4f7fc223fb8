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

/// The operator's lifecycle rule: enabled, on the whole bucket, expiring objects after `days`.
#[derive(Serialize)]
#[serde(rename = "Rule")]
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

/// The XML of the rule `rule_id` expiring every object of the bucket after `days`.
fn expiration_rule(rule_id: &str, days: u32) -> Result<String, String> {
    to_xml(&RuleOut {
        id: rule_id,
        filter: FilterOut { prefix: "" },
        status: "Enabled",
        expiration: ExpirationOut { days },
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

/// A bucket's lifecycle configuration, as `GetBucketLifecycleConfiguration` returned it.
///
/// Each rule is kept as the exact XML the service sent, so that rules set by others are written
/// back unchanged with every element they have (tag, size and `And` filters, transitions,
/// noncurrent-version expiry, `AbortIncompleteMultipartUpload`, `ExpiredObjectDeleteMarker`, and
/// whatever a service adds), without this module having to model the whole schema. Only the
/// operator's own rule, found by its ID, is read and rewritten. Rules are expected in the
/// default namespace, as S3 services send them; the configuration is written back under
/// [`S3_XMLNS`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Lifecycle {
    rules: Vec<RawRule>,
}

/// The write that brings a bucket's lifecycle configuration to what the operator wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum LifecycleChange {
    /// It already is.
    Unchanged,
    /// `PutBucketLifecycleConfiguration` with these rules.
    Put(Lifecycle),
    /// `DeleteBucketLifecycle`: no rule is left.
    Delete,
}

/// One `<Rule>` element, verbatim, with its ID.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RawRule {
    id: Option<String>,
    xml: String,
}

/// Just the ID of a rule, to recognise the operator's.
#[derive(Deserialize)]
struct RuleIdIn {
    #[serde(rename = "ID")]
    id: Option<String>,
}

impl RawRule {
    fn new(xml: &str) -> Result<Self, String> {
        let RuleIdIn { id } = from_xml(xml)?;
        Ok(Self {
            id,
            xml: xml.to_owned(),
        })
    }
}

/// The reader's position as an index into the text it reads.
fn offset(reader: &quick_xml::Reader<&[u8]>) -> Result<usize, String> {
    usize::try_from(reader.buffer_position())
        .map_err(|_| "could not read response XML: position out of range".to_owned())
}

/// `rules[start..end]`, or an error naming the problem instead of a panic.
fn slice(body: &str, start: usize, end: usize) -> Result<&str, String> {
    body.get(start..end)
        .ok_or_else(|| "could not read response XML: a rule is not on character boundaries".into())
}

impl Lifecycle {
    /// Splits a `LifecycleConfiguration` body into its rules (the root's `Rule` children).
    pub fn parse(body: &str) -> Result<Self, String> {
        use quick_xml::events::Event;
        let mut reader = quick_xml::Reader::from_str(body);
        let mut depth = 0usize;
        let mut rule_start = None;
        let mut rules = Vec::new();
        loop {
            let before = offset(&reader)?;
            let event = reader
                .read_event()
                .map_err(|error| format!("could not read response XML: {error}"))?;
            match event {
                Event::Start(start) => {
                    depth += 1;
                    if depth == 2 && start.local_name().into_inner() == "Rule" {
                        rule_start = Some(before);
                    }
                }
                Event::End(end) => {
                    if depth == 2
                        && end.local_name().into_inner() == "Rule"
                        && let Some(start) = rule_start.take()
                    {
                        rules.push(RawRule::new(slice(body, start, offset(&reader)?)?)?);
                    }
                    depth = depth.saturating_sub(1);
                }
                Event::Empty(empty) if depth == 1 && empty.local_name().into_inner() == "Rule" => {
                    rules.push(RawRule::new(slice(body, before, offset(&reader)?)?)?);
                }
                // A cut-off answer must not read as fewer rules: writing it back would drop some.
                Event::Eof if depth > 0 => {
                    return Err("could not read response XML: it ends inside an element".into());
                }
                Event::Eof => break,
                _ => {}
            }
        }
        Ok(Self { rules })
    }

    /// Days after which the rule `rule_id` expires objects, if it is an enabled expiration of the
    /// whole bucket; `None` otherwise (no such rule, disabled, narrowed by a filter, or expiring
    /// by date), so that the operator rewrites it. Other rules, even whole-bucket expirations,
    /// are someone else's and not read.
    pub fn expiration_days(&self, rule_id: &str) -> Option<u32> {
        self.rules
            .iter()
            .filter(|rule| rule.id.as_deref() == Some(rule_id))
            .find_map(|rule| from_xml::<RuleIn>(&rule.xml).ok()?.whole_bucket_days())
    }

    /// The same configuration with the rule `rule_id` set to expire every object after `days`
    /// (in its place, or added last), or removed for `None`. Every other rule stays as it was,
    /// in its order.
    pub fn with_expiration(&self, rule_id: &str, days: Option<u32>) -> Result<Self, String> {
        let mut ours = days
            .map(|days| expiration_rule(rule_id, days))
            .transpose()?
            .map(|xml| RawRule {
                id: Some(rule_id.to_owned()),
                xml,
            });
        let mut rules = Vec::with_capacity(self.rules.len() + 1);
        for rule in &self.rules {
            if rule.id.as_deref() == Some(rule_id) {
                // The first of ours is replaced in place; a duplicate (S3 refuses those) goes.
                rules.extend(ours.take());
            } else {
                rules.push(rule.clone());
            }
        }
        rules.extend(ours);
        Ok(Self { rules })
    }

    /// What to do to `current` (`None`: the bucket has no configuration) so that the rule
    /// `rule_id` expires objects after `days`, or is gone for `None`, keeping every other rule.
    pub fn change(
        current: Option<&Self>,
        rule_id: &str,
        days: Option<u32>,
    ) -> Result<LifecycleChange, String> {
        let merged = current
            .cloned()
            .unwrap_or_default()
            .with_expiration(rule_id, days)?;
        Ok(match current {
            Some(current) if *current == merged => LifecycleChange::Unchanged,
            None if merged.is_empty() => LifecycleChange::Unchanged,
            // S3 cannot store a configuration without rules: the last rule goes with it.
            Some(_) if merged.is_empty() => LifecycleChange::Delete,
            _ => LifecycleChange::Put(merged),
        })
    }

    /// Whether no rule is left; S3 cannot store an empty configuration, it must be deleted.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Body of `PutBucketLifecycleConfiguration` with these rules.
    pub fn body(&self) -> String {
        let mut body = format!(r#"<LifecycleConfiguration xmlns="{S3_XMLNS}">"#);
        for rule in &self.rules {
            body.push_str(&rule.xml);
        }
        body.push_str("</LifecycleConfiguration>");
        body
    }
}

/// The parts of a lifecycle rule needed to read the operator's own.
#[derive(Debug, Deserialize)]
struct RuleIn {
    #[serde(rename = "Status")]
    status: Option<String>,
    /// Old-style rules put the prefix directly in the rule.
    #[serde(rename = "Prefix")]
    prefix: Option<String>,
    #[serde(rename = "Filter")]
    filter: Option<FilterIn>,
    #[serde(rename = "Expiration")]
    expiration: Option<ExpirationIn>,
}

/// A rule's filter; anything but an empty prefix narrows the rule to part of the bucket.
#[derive(Debug, Deserialize)]
struct FilterIn {
    #[serde(rename = "Prefix")]
    prefix: Option<String>,
    #[serde(rename = "Tag")]
    tag: Option<serde::de::IgnoredAny>,
    #[serde(rename = "And")]
    and: Option<serde::de::IgnoredAny>,
    #[serde(rename = "ObjectSizeGreaterThan")]
    size_greater_than: Option<serde::de::IgnoredAny>,
    #[serde(rename = "ObjectSizeLessThan")]
    size_less_than: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
struct ExpirationIn {
    #[serde(rename = "Days")]
    days: Option<u32>,
}

impl RuleIn {
    /// The rule's days if it is an enabled expiration of every object in the bucket.
    fn whole_bucket_days(&self) -> Option<u32> {
        let enabled = self.status.as_deref() == Some("Enabled");
        let narrowed = self.filter.as_ref().is_some_and(|f| {
            !f.prefix.as_deref().unwrap_or("").is_empty()
                || f.tag.is_some()
                || f.and.is_some()
                || f.size_greater_than.is_some()
                || f.size_less_than.is_some()
        }) || !self.prefix.as_deref().unwrap_or("").is_empty();
        if enabled && !narrowed {
            self.expiration.as_ref().and_then(|e| e.days)
        } else {
            None
        }
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

    /// What SeaweedFS 4.48 returned for foreign rules of every kind it accepts (captured with
    /// boto3 on the local platform; `Transition` is refused there as `NotImplemented`).
    const FOREIGN_RULES: [&str; 8] = [
        "<Rule><ID>tagged</ID><Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter><Status>Enabled</Status><Expiration><Days>2</Days></Expiration></Rule>",
        "<Rule><ID>and</ID><Filter><And><Prefix>logs/</Prefix><Tag><Key>k</Key><Value>v</Value></Tag></And></Filter><Status>Enabled</Status><Expiration><Days>3</Days></Expiration></Rule>",
        "<Rule><ID>nc</ID><Filter><Prefix /></Filter><Status>Enabled</Status><NoncurrentVersionExpiration><NoncurrentDays>7</NoncurrentDays></NoncurrentVersionExpiration></Rule>",
        "<Rule><ID>ab</ID><Filter><Prefix>up/</Prefix></Filter><Status>Enabled</Status><AbortIncompleteMultipartUpload><DaysAfterInitiation>2</DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule>",
        "<Rule><ID>dm</ID><Filter><Prefix /></Filter><Status>Enabled</Status><Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration></Rule>",
        "<Rule><ID>size</ID><Filter><ObjectSizeGreaterThan>1000</ObjectSizeGreaterThan></Filter><Status>Disabled</Status><Expiration><Days>5</Days></Expiration></Rule>",
        "<Rule><ID>date</ID><Filter><Prefix>d/</Prefix></Filter><Status>Enabled</Status><Expiration><Date>2030-01-01T00:00:00Z</Date></Expiration></Rule>",
        "<Rule><ID>legacy</ID><Prefix>old/</Prefix><Status>Enabled</Status><Expiration><Days>9</Days></Expiration></Rule>",
    ];

    const OURS_30: &str = "<Rule><ID>datamesh-expiration</ID><Filter><Prefix/></Filter><Status>Enabled</Status><Expiration><Days>30</Days></Expiration></Rule>";

    fn configuration(rules: &[&str]) -> String {
        format!(
            r#"<LifecycleConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{}</LifecycleConfiguration>"#,
            rules.concat()
        )
    }

    #[test]
    fn writes_the_operators_rule() {
        assert_eq!(
            Lifecycle::default()
                .with_expiration("datamesh-expiration", Some(30))
                .unwrap()
                .body(),
            configuration(&[OURS_30])
        );
    }

    #[test]
    fn adding_the_operators_rule_keeps_every_foreign_rule_verbatim() {
        let current = Lifecycle::parse(&configuration(&FOREIGN_RULES)).unwrap();
        assert_eq!(current.expiration_days("datamesh-expiration"), None);
        let merged = current
            .with_expiration("datamesh-expiration", Some(30))
            .unwrap();
        let mut expected = FOREIGN_RULES.to_vec();
        expected.push(OURS_30);
        assert_eq!(merged.body(), configuration(&expected));
        let reread = Lifecycle::parse(&merged.body()).unwrap();
        assert_eq!(reread, merged);
        assert_eq!(reread.expiration_days("datamesh-expiration"), Some(30));
    }

    #[test]
    fn changing_the_operators_rule_replaces_it_in_place() {
        let ours_7 = OURS_30.replace("<Days>30</Days>", "<Days>7</Days>");
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LifecycleConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\n  {}\n  {ours_7}\n  {}\n</LifecycleConfiguration>",
            FOREIGN_RULES[0], FOREIGN_RULES[1]
        );
        let current = Lifecycle::parse(&body).unwrap();
        assert_eq!(current.expiration_days("datamesh-expiration"), Some(7));
        let merged = current
            .with_expiration("datamesh-expiration", Some(30))
            .unwrap();
        assert_eq!(
            merged.body(),
            configuration(&[FOREIGN_RULES[0], OURS_30, FOREIGN_RULES[1]])
        );
    }

    #[test]
    fn removing_the_operators_rule_keeps_the_others_and_leaves_nothing_when_alone() {
        let current = Lifecycle::parse(&configuration(&[
            FOREIGN_RULES[2],
            OURS_30,
            FOREIGN_RULES[3],
        ]))
        .unwrap();
        let removed = current
            .with_expiration("datamesh-expiration", None)
            .unwrap();
        assert!(!removed.is_empty());
        assert_eq!(
            removed.body(),
            configuration(&[FOREIGN_RULES[2], FOREIGN_RULES[3]])
        );
        let alone = Lifecycle::parse(&configuration(&[OURS_30])).unwrap();
        assert!(
            alone
                .with_expiration("datamesh-expiration", None)
                .unwrap()
                .is_empty()
        );
        let unchanged = current.with_expiration("nobody", None).unwrap();
        assert_eq!(unchanged, current);
    }

    #[test]
    fn the_change_is_a_put_a_delete_or_nothing() {
        let id = "datamesh-expiration";
        let ours = Lifecycle::parse(&configuration(&[OURS_30])).unwrap();
        let both = Lifecycle::parse(&configuration(&[FOREIGN_RULES[0], OURS_30])).unwrap();
        let foreign = Lifecycle::parse(&configuration(&[FOREIGN_RULES[0]])).unwrap();
        assert_eq!(
            Lifecycle::change(None, id, None).unwrap(),
            LifecycleChange::Unchanged
        );
        assert_eq!(
            Lifecycle::change(None, id, Some(30)).unwrap(),
            LifecycleChange::Put(ours.clone())
        );
        assert_eq!(
            Lifecycle::change(Some(&ours), id, Some(30)).unwrap(),
            LifecycleChange::Unchanged
        );
        assert_eq!(
            Lifecycle::change(Some(&ours), id, None).unwrap(),
            LifecycleChange::Delete
        );
        assert_eq!(
            Lifecycle::change(Some(&both), id, None).unwrap(),
            LifecycleChange::Put(foreign.clone())
        );
        assert_eq!(
            Lifecycle::change(Some(&foreign), id, None).unwrap(),
            LifecycleChange::Unchanged
        );
        assert_eq!(
            Lifecycle::change(Some(&foreign), id, Some(30)).unwrap(),
            LifecycleChange::Put(both)
        );
    }

    #[test]
    fn a_duplicated_operators_rule_is_written_once() {
        let current =
            Lifecycle::parse(&configuration(&[OURS_30, FOREIGN_RULES[0], OURS_30])).unwrap();
        let merged = current
            .with_expiration("datamesh-expiration", Some(30))
            .unwrap();
        assert_eq!(merged.body(), configuration(&[OURS_30, FOREIGN_RULES[0]]));
    }

    #[test]
    fn only_the_operators_enabled_whole_bucket_rule_is_read() {
        let days = |rules: &[&str]| {
            Lifecycle::parse(&configuration(rules))
                .unwrap()
                .expiration_days("datamesh-expiration")
        };
        // A foreign whole-bucket expiration is someone else's, not the operator's expiry.
        let foreign_whole_bucket = OURS_30.replace("datamesh-expiration", "retention");
        assert_eq!(days(&[&foreign_whole_bucket]), None);
        assert_eq!(days(&[&foreign_whole_bucket, OURS_30]), Some(30));
        let disabled = OURS_30.replace("Enabled", "Disabled");
        assert_eq!(days(&[&disabled]), None);
        for narrowing in [
            "<Prefix>tmp/</Prefix>",
            "<Tag><Key>a</Key><Value>b</Value></Tag>",
            "<And><Prefix/><Tag><Key>a</Key><Value>b</Value></Tag></And>",
            "<ObjectSizeLessThan>10</ObjectSizeLessThan>",
        ] {
            let narrowed = OURS_30.replace("<Prefix/>", narrowing);
            assert_eq!(days(&[&narrowed]), None, "{narrowing}");
        }
        let by_date = OURS_30.replace("<Days>30</Days>", "<Date>2030-01-01T00:00:00Z</Date>");
        assert_eq!(days(&[&by_date]), None);
    }

    #[test]
    fn escaped_text_in_foreign_rules_is_kept_escaped() {
        let escaped = "<Rule><ID>a&amp;b</ID><Filter><Prefix>x&lt;y/</Prefix></Filter><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>";
        let merged = Lifecycle::parse(&configuration(&[escaped]))
            .unwrap()
            .with_expiration("datamesh-expiration", Some(30))
            .unwrap();
        assert_eq!(merged.body(), configuration(&[escaped, OURS_30]));
        assert!(Lifecycle::parse("<LifecycleConfiguration><Rule>").is_err());
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
