//! Bucket policies: who may do what with one bucket, written on the bucket itself.
//!
//! Why on the bucket: a policy on each bucket stays the size of that bucket's readers, however
//! many buckets a domain owns or reads, and writing it costs the same in a mesh of ten buckets
//! or ten thousand. An identity's inline policy listing every bucket it may use would instead
//! grow with the mesh: AWS caps a user's inline policies at 2,048 characters in all (a few
//! dozen buckets), and SeaweedFS rewrites its whole IAM configuration on each `PutUserPolicy`
//! (7 ms with no policies, 1.5 s with 600). AWS caps a bucket policy at 20 KB, which at about
//! 60 characters per principal ARN leaves room for some 300 consumer domains per bucket.
//!
//! Why not name prefixes (`arn:aws:s3:::payments-*`): bucket names are `<domain>-<product>-<port>`,
//! so a prefix of domain `payments` also matches every bucket of a domain `payments-eu`.
//!
//! Two controllers write parts of one bucket's policy, told apart by their statement ids: the
//! DataProduct controller the owning domain's access ([`Part::Owner`]), the AccessPolicy
//! controller the consumers' ([`Part::Grants`]). Statements with other ids (a platform
//! engineer's, say) are kept as they are. Each part is written whole: the statements of a part
//! are exactly what the reconcile that writes it wants, so revoking is writing again without.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::policy::{
    BucketAccess, Effect, POLICY_VERSION, Principal, Statement, bucket_arn, objects_arn,
};

/// The part of a bucket's policy one controller owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    /// The owning domain's access, written by the DataProduct controller.
    Owner,
    /// The consumers' access, written by the AccessPolicy controller.
    Grants,
}

impl Part {
    /// Every statement id of this part starts with this.
    fn sid_prefix(self) -> &'static str {
        match self {
            Part::Owner => "DatameshOwner",
            Part::Grants => "DatameshGrant",
        }
    }

    fn owns(self, statement: &Value) -> bool {
        statement
            .get("Sid")
            .and_then(Value::as_str)
            .is_some_and(|sid| sid.starts_with(self.sid_prefix()))
    }
}

/// Who gets which access to one bucket: IAM user ARNs by access level.
pub type Principals = BTreeMap<BucketAccess, BTreeSet<String>>;

/// The statements of `part` for `bucket`: for each access level with principals, one statement
/// on the bucket and one on its objects. Deterministic, so that equal decisions compare equal.
pub fn statements(part: Part, bucket: &str, principals: &Principals) -> Vec<Statement> {
    let mut out = Vec::new();
    for (access, arns) in principals.iter().rev() {
        if arns.is_empty() {
            continue;
        }
        let principal = Some(Principal {
            aws: arns.iter().cloned().collect(),
        });
        let sid = |what: &str| Some(format!("{}{}{what}", part.sid_prefix(), access.label()));
        let actions = |list: Vec<&str>| {
            let set: BTreeSet<String> = list.into_iter().map(String::from).collect();
            set.into_iter().collect()
        };
        out.push(Statement {
            sid: sid("Bucket"),
            effect: Effect::Allow,
            action: actions(access.bucket_actions()),
            resource: vec![bucket_arn(bucket)],
            principal: principal.clone(),
        });
        out.push(Statement {
            sid: sid("Objects"),
            effect: Effect::Allow,
            action: actions(access.object_actions()),
            resource: vec![objects_arn(bucket)],
            principal,
        });
    }
    out
}

/// What a bucket's policy must become for one part to hold `wanted`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Merged {
    /// The policy already holds exactly `wanted` in that part.
    Unchanged,
    /// Put this document.
    Put(String),
    /// Nothing is left in the policy: delete it.
    Delete,
}

/// Replace `part` of the bucket policy `existing` (as the service returned it; `None` for a
/// bucket without one) with `wanted`, keeping every statement of the other part and every
/// statement not the operator's. Fails only when `existing` is not a policy document.
pub fn merge(
    existing: Option<&str>,
    part: Part,
    wanted: &[Statement],
) -> Result<Merged, serde_json::Error> {
    let statements: Vec<Value> = match existing {
        Some(json) => statements_of(&serde_json::from_str(json)?)?,
        None => Vec::new(),
    };
    let (mine, others): (Vec<Value>, Vec<Value>) =
        statements.into_iter().partition(|s| part.owns(s));
    if holds(&mine, wanted) {
        return Ok(Merged::Unchanged);
    }
    let mut kept = others;
    for statement in wanted {
        kept.push(serde_json::to_value(statement)?);
    }
    if kept.is_empty() {
        return Ok(Merged::Delete);
    }
    let document = serde_json::json!({"Version": POLICY_VERSION, "Statement": kept});
    Ok(Merged::Put(document.to_string()))
}

/// The statements of a policy document, which IAM lets be one statement or a list.
fn statements_of(document: &Value) -> Result<Vec<Value>, serde_json::Error> {
    use serde::de::Error;
    match document.get("Statement") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(list)) => Ok(list.clone()),
        Some(one @ Value::Object(_)) => Ok(vec![one.clone()]),
        Some(_) => Err(serde_json::Error::custom(
            "Statement is neither a list nor an object",
        )),
    }
}

/// Whether the statements found (as the service echoes them, single values or lists in any
/// order) say exactly what `wanted` says.
fn holds(found: &[Value], wanted: &[Statement]) -> bool {
    let Ok(mut found) = found
        .iter()
        .map(|s| serde_json::from_value::<Statement>(s.clone()).map(normalized))
        .collect::<Result<Vec<_>, _>>()
    else {
        return false;
    };
    let mut wanted: Vec<Statement> = wanted.iter().cloned().map(normalized).collect();
    found.sort_by(|a, b| a.sid.cmp(&b.sid));
    wanted.sort_by(|a, b| a.sid.cmp(&b.sid));
    found == wanted
}

fn normalized(mut statement: Statement) -> Statement {
    fn sort(list: &mut Vec<String>) {
        list.sort();
        list.dedup();
    }
    sort(&mut statement.action);
    sort(&mut statement.resource);
    if let Some(principal) = &mut statement.principal {
        sort(&mut principal.aws);
    }
    statement
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::storage::policy::PolicyDocument;

    const OWNER: &str = "arn:aws:iam::000000000000:user/payments";
    const READER: &str = "arn:aws:iam::000000000000:user/marketing";
    const WRITER: &str = "arn:aws:iam::000000000000:user/bi";

    fn principals(levels: &[(BucketAccess, &[&str])]) -> Principals {
        levels
            .iter()
            .map(|(access, arns)| (*access, arns.iter().map(|a| a.to_string()).collect()))
            .collect()
    }

    fn put(merged: Merged) -> PolicyDocument {
        match merged {
            Merged::Put(json) => PolicyDocument::from_json(&json).unwrap(),
            other => panic!("expected a put, got {other:?}"),
        }
    }

    fn owner_only() -> String {
        let owner = statements(
            Part::Owner,
            "payments-orders-lake",
            &principals(&[(BucketAccess::Owner, &[OWNER])]),
        );
        match merge(None, Part::Owner, &owner).unwrap() {
            Merged::Put(json) => json,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_principal_gets_its_level_on_this_bucket_only() {
        let grants = statements(
            Part::Grants,
            "payments-orders-lake",
            &principals(&[
                (BucketAccess::Read, &[READER]),
                (BucketAccess::ReadWrite, &[WRITER]),
            ]),
        );
        let document = put(merge(Some(&owner_only()), Part::Grants, &grants).unwrap());
        let object = "arn:aws:s3:::payments-orders-lake/2026/a.parquet";
        let bucket = "arn:aws:s3:::payments-orders-lake";
        assert!(document.allows_principal(OWNER, "s3:PutObjectTagging", object));
        assert!(document.allows_principal(OWNER, "s3:ListBucketVersions", bucket));
        assert!(!document.allows_principal(OWNER, "s3:DeleteObjectVersion", object));
        assert!(document.allows_principal(READER, "s3:GetObject", object));
        assert!(document.allows_principal(READER, "s3:ListBucket", bucket));
        assert!(!document.allows_principal(READER, "s3:PutObject", object));
        assert!(document.allows_principal(WRITER, "s3:PutObject", object));
        assert!(!document.allows_principal(WRITER, "s3:ListBucketVersions", bucket));
        let stranger = "arn:aws:iam::000000000000:user/payments-eu";
        assert!(!document.allows_principal(stranger, "s3:GetObject", object));
        assert!(!document.allows_principal(
            READER,
            "s3:GetObject",
            "arn:aws:s3:::payments-orders-lake2/k"
        ));
    }

    #[test]
    fn a_part_is_replaced_whole_and_the_rest_is_kept() {
        let foreign = serde_json::json!({
            "Sid": "BackupReads", "Effect": "Allow", "Principal": "*",
            "Action": "s3:GetObject", "Resource": "arn:aws:s3:::payments-orders-lake/*",
            "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}
        });
        let mut existing: Value = serde_json::from_str(&owner_only()).unwrap();
        existing["Statement"]
            .as_array_mut()
            .unwrap()
            .push(foreign.clone());
        let existing = existing.to_string();

        let grants = |arns: &[&str]| {
            statements(
                Part::Grants,
                "payments-orders-lake",
                &principals(&[(BucketAccess::Read, arns)]),
            )
        };
        let Merged::Put(with_two) =
            merge(Some(&existing), Part::Grants, &grants(&[READER, WRITER])).unwrap()
        else {
            panic!()
        };
        let Merged::Put(with_one) =
            merge(Some(&with_two), Part::Grants, &grants(&[WRITER])).unwrap()
        else {
            panic!()
        };
        let document: Value = serde_json::from_str(&with_one).unwrap();
        let list = document["Statement"].as_array().unwrap();
        assert!(list.contains(&foreign), "{document}");
        let read = PolicyDocument::from_json(
            &serde_json::json!({"Version": POLICY_VERSION, "Statement": list.iter().filter(|s| s != &&foreign).cloned().collect::<Vec<_>>()}).to_string(),
        )
        .unwrap();
        assert!(read.allows_principal(
            OWNER,
            "s3:PutObject",
            "arn:aws:s3:::payments-orders-lake/k"
        ));
        assert!(read.allows_principal(
            WRITER,
            "s3:GetObject",
            "arn:aws:s3:::payments-orders-lake/k"
        ));
        assert!(!read.allows_principal(
            READER,
            "s3:GetObject",
            "arn:aws:s3:::payments-orders-lake/k"
        ));

        // Revoking everything leaves the owner's part and the foreign statement.
        let Merged::Put(none) = merge(Some(&with_one), Part::Grants, &[]).unwrap() else {
            panic!()
        };
        let none: Value = serde_json::from_str(&none).unwrap();
        let expected: Value = serde_json::from_str(&existing).unwrap();
        assert_eq!(none, expected);
    }

    #[test]
    fn the_same_part_again_writes_nothing_even_as_the_service_reformats_it() {
        let existing = owner_only();
        let owner = statements(
            Part::Owner,
            "payments-orders-lake",
            &principals(&[(BucketAccess::Owner, &[OWNER])]),
        );
        assert_eq!(
            merge(Some(&existing), Part::Owner, &owner).unwrap(),
            Merged::Unchanged
        );
        // Services echo single values as scalars and lists in their own order.
        let mut echoed: Value = serde_json::from_str(&existing).unwrap();
        for statement in echoed["Statement"].as_array_mut().unwrap() {
            statement["Principal"]["AWS"] = Value::String(OWNER.into());
            statement["Action"].as_array_mut().unwrap().reverse();
            statement["Resource"] = statement["Resource"][0].clone();
        }
        assert_eq!(
            merge(Some(&echoed.to_string()), Part::Owner, &owner).unwrap(),
            Merged::Unchanged
        );
        // No grants wanted and none there: nothing to write.
        assert_eq!(
            merge(Some(&existing), Part::Grants, &[]).unwrap(),
            Merged::Unchanged
        );
        assert_eq!(merge(None, Part::Grants, &[]).unwrap(), Merged::Unchanged);
    }

    #[test]
    fn the_last_statement_going_deletes_the_policy() {
        assert_eq!(
            merge(Some(&owner_only()), Part::Owner, &[]).unwrap(),
            Merged::Delete
        );
    }

    #[test]
    fn a_statement_of_ours_changed_by_hand_is_set_back() {
        let mut tampered: Value = serde_json::from_str(&owner_only()).unwrap();
        tampered["Statement"][1]["Action"] = serde_json::json!(["s3:*"]);
        let owner = statements(
            Part::Owner,
            "payments-orders-lake",
            &principals(&[(BucketAccess::Owner, &[OWNER])]),
        );
        let document = put(merge(Some(&tampered.to_string()), Part::Owner, &owner).unwrap());
        assert!(!document.allows_principal(
            OWNER,
            "s3:DeleteObjectVersion",
            "arn:aws:s3:::payments-orders-lake/k"
        ));
    }

    #[test]
    fn what_is_no_policy_document_is_an_error() {
        assert!(merge(Some("not json"), Part::Owner, &[]).is_err());
        assert!(merge(Some(r#"{"Statement": 3}"#), Part::Owner, &[]).is_err());
    }
}
