//! The operator's lifecycle rule among the rules others set on a bucket.
//!
//! The operator owns one rule per bucket, [`super::EXPIRATION_RULE_ID`]. An adopted bucket may
//! carry rules that others set (tag, size and `And` filters, transitions, noncurrent-version
//! expiry, `AbortIncompleteMultipartUpload`, old-style prefixes, disabled rules): those are
//! written back exactly as the service returned them, every field the S3 model has, in their
//! order. Only the operator's own rule, found by its ID, is read and rewritten.

use aws_sdk_s3::types::{
    ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter,
};

/// The write that brings a bucket's lifecycle configuration to what the operator wants.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum LifecycleChange {
    /// It already is.
    Unchanged,
    /// `PutBucketLifecycleConfiguration` with these rules.
    Put(Vec<LifecycleRule>),
    /// `DeleteBucketLifecycle`: no rule is left (S3 cannot store a configuration without rules).
    Delete,
}

/// The rule `rule_id` expiring every object of the bucket after `days`.
pub(super) fn expiration_rule(rule_id: &str, days: u32) -> Result<LifecycleRule, String> {
    let days = i32::try_from(days).map_err(|_| format!("{days} days is out of range"))?;
    LifecycleRule::builder()
        .id(rule_id)
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .status(ExpirationStatus::Enabled)
        .expiration(LifecycleExpiration::builder().days(days).build())
        .build()
        .map_err(|error| format!("could not build the expiration rule: {error}"))
}

/// Days after which the rule `rule_id` expires objects, if it is an enabled expiration of the
/// whole bucket; `None` otherwise (no such rule, disabled, narrowed by a filter, or expiring by
/// date), so that the operator rewrites it. Other rules, even whole-bucket expirations, are
/// someone else's and not read.
pub(super) fn expiration_days(rules: &[LifecycleRule], rule_id: &str) -> Option<u32> {
    rules
        .iter()
        .filter(|rule| rule.id() == Some(rule_id))
        .find_map(whole_bucket_days)
}

/// The rule's days if it is an enabled expiration of every object in the bucket.
fn whole_bucket_days(rule: &LifecycleRule) -> Option<u32> {
    let enabled = *rule.status() == ExpirationStatus::Enabled;
    #[allow(deprecated)] // old-style rules put the prefix directly in the rule
    let legacy_prefix = rule.prefix().unwrap_or("");
    let narrowed = !legacy_prefix.is_empty()
        || rule.filter().is_some_and(|filter| {
            !filter.prefix().unwrap_or("").is_empty()
                || filter.tag().is_some()
                || filter.and().is_some()
                || filter.object_size_greater_than().is_some()
                || filter.object_size_less_than().is_some()
        });
    if !enabled || narrowed {
        return None;
    }
    rule.expiration()
        .and_then(LifecycleExpiration::days)
        .and_then(|days| u32::try_from(days).ok())
}

/// `rules` with the rule `rule_id` set to expire every object after `days` (in its place, or
/// added last), or removed for `None`. Every other rule stays as it was, in its order.
pub(super) fn with_expiration(
    rules: &[LifecycleRule],
    rule_id: &str,
    days: Option<u32>,
) -> Result<Vec<LifecycleRule>, String> {
    let mut ours = days
        .map(|days| expiration_rule(rule_id, days))
        .transpose()?;
    let mut merged = Vec::with_capacity(rules.len() + 1);
    for rule in rules {
        if rule.id() == Some(rule_id) {
            // The first of ours is replaced in place; a duplicate (S3 refuses those) goes.
            merged.extend(ours.take());
        } else {
            merged.push(rule.clone());
        }
    }
    merged.extend(ours);
    Ok(merged)
}

/// What to do to `current` (`None`: the bucket has no configuration) so that the rule
/// `rule_id` expires objects after `days`, or is gone for `None`, keeping every other rule.
pub(super) fn change(
    current: Option<&[LifecycleRule]>,
    rule_id: &str,
    days: Option<u32>,
) -> Result<LifecycleChange, String> {
    let merged = with_expiration(current.unwrap_or_default(), rule_id, days)?;
    Ok(match current {
        Some(current) if current == merged.as_slice() => LifecycleChange::Unchanged,
        None if merged.is_empty() => LifecycleChange::Unchanged,
        Some(_) if merged.is_empty() => LifecycleChange::Delete,
        _ => LifecycleChange::Put(merged),
    })
}

#[cfg(test)]
pub(super) mod tests {
    use aws_sdk_s3::primitives::DateTime;
    use aws_sdk_s3::types::{
        AbortIncompleteMultipartUpload, LifecycleRuleAndOperator, NoncurrentVersionExpiration,
        NoncurrentVersionTransition, Tag, Transition, TransitionStorageClass,
    };

    use super::*;

    const ID: &str = "datamesh-expiration";

    fn rule(id: &str) -> aws_sdk_s3::types::builders::LifecycleRuleBuilder {
        LifecycleRule::builder()
            .id(id)
            .status(ExpirationStatus::Enabled)
    }

    fn tag(key: &str, value: &str) -> Tag {
        Tag::builder().key(key).value(value).build().unwrap()
    }

    fn prefix(prefix: &str) -> LifecycleRuleFilter {
        LifecycleRuleFilter::builder().prefix(prefix).build()
    }

    fn days(days: i32) -> LifecycleExpiration {
        LifecycleExpiration::builder().days(days).build()
    }

    /// Rules of every kind S3 knows, as another client would set them: the merge must write
    /// each back exactly as it was.
    #[allow(deprecated)] // the old-style prefix outside the filter is one of them
    pub(crate) fn foreign_rules() -> Vec<LifecycleRule> {
        [
            rule("tagged")
                .filter(LifecycleRuleFilter::builder().tag(tag("k", "v")).build())
                .expiration(days(2)),
            rule("and")
                .filter(
                    LifecycleRuleFilter::builder()
                        .and(
                            LifecycleRuleAndOperator::builder()
                                .prefix("logs/")
                                .tags(tag("k", "v"))
                                .object_size_greater_than(10)
                                .build(),
                        )
                        .build(),
                )
                .expiration(days(3)),
            rule("nc").filter(prefix("")).noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(7)
                    .newer_noncurrent_versions(2)
                    .build(),
            ),
            rule("ab")
                .filter(prefix("up/"))
                .abort_incomplete_multipart_upload(
                    AbortIncompleteMultipartUpload::builder()
                        .days_after_initiation(2)
                        .build(),
                ),
            rule("dm").filter(prefix("")).expiration(
                LifecycleExpiration::builder()
                    .expired_object_delete_marker(true)
                    .build(),
            ),
            rule("size")
                .filter(
                    LifecycleRuleFilter::builder()
                        .object_size_greater_than(1000)
                        .build(),
                )
                .status(ExpirationStatus::Disabled)
                .expiration(days(5)),
            rule("date").filter(prefix("d/")).expiration(
                LifecycleExpiration::builder()
                    .date(DateTime::from_secs(1_893_456_000))
                    .build(),
            ),
            rule("tiered")
                .filter(prefix("cold/"))
                .transitions(
                    Transition::builder()
                        .days(30)
                        .storage_class(TransitionStorageClass::Glacier)
                        .build(),
                )
                .noncurrent_version_transitions(
                    NoncurrentVersionTransition::builder()
                        .noncurrent_days(10)
                        .storage_class(TransitionStorageClass::StandardIa)
                        .build(),
                ),
            rule("legacy").prefix("old/").expiration(days(9)),
        ]
        .into_iter()
        .map(|builder| builder.build().unwrap())
        .collect()
    }

    fn ours(days: u32) -> LifecycleRule {
        expiration_rule(ID, days).unwrap()
    }

    #[test]
    fn the_operators_rule_expires_the_whole_bucket() {
        let rule = ours(30);
        assert_eq!(rule.id(), Some(ID));
        assert_eq!(*rule.status(), ExpirationStatus::Enabled);
        assert_eq!(rule.filter().and_then(|f| f.prefix()), Some(""));
        assert_eq!(rule.expiration().and_then(|e| e.days()), Some(30));
        assert_eq!(expiration_days(&[rule], ID), Some(30));
    }

    #[test]
    fn adding_the_operators_rule_keeps_every_foreign_rule_as_it_was() {
        let current = foreign_rules();
        assert_eq!(expiration_days(&current, ID), None);
        let merged = with_expiration(&current, ID, Some(30)).unwrap();
        let mut expected = foreign_rules();
        expected.push(ours(30));
        assert_eq!(merged, expected);
        assert_eq!(expiration_days(&merged, ID), Some(30));
    }

    #[test]
    fn changing_the_operators_rule_replaces_it_in_place() {
        let foreign = foreign_rules();
        let current = vec![foreign[0].clone(), ours(7), foreign[1].clone()];
        assert_eq!(expiration_days(&current, ID), Some(7));
        assert_eq!(
            with_expiration(&current, ID, Some(30)).unwrap(),
            [foreign[0].clone(), ours(30), foreign[1].clone()]
        );
    }

    #[test]
    fn removing_the_operators_rule_keeps_the_others_and_leaves_nothing_when_alone() {
        let foreign = foreign_rules();
        let current = vec![foreign[2].clone(), ours(30), foreign[3].clone()];
        assert_eq!(
            with_expiration(&current, ID, None).unwrap(),
            [foreign[2].clone(), foreign[3].clone()]
        );
        assert!(with_expiration(&[ours(30)], ID, None).unwrap().is_empty());
        assert_eq!(with_expiration(&current, "nobody", None).unwrap(), current);
    }

    #[test]
    fn the_change_is_a_put_a_delete_or_nothing() {
        let foreign = vec![foreign_rules()[0].clone()];
        let ours_only = vec![ours(30)];
        let both = vec![foreign[0].clone(), ours(30)];
        assert_eq!(change(None, ID, None).unwrap(), LifecycleChange::Unchanged);
        assert_eq!(
            change(None, ID, Some(30)).unwrap(),
            LifecycleChange::Put(ours_only.clone())
        );
        assert_eq!(
            change(Some(&ours_only), ID, Some(30)).unwrap(),
            LifecycleChange::Unchanged
        );
        assert_eq!(
            change(Some(&ours_only), ID, None).unwrap(),
            LifecycleChange::Delete
        );
        assert_eq!(
            change(Some(&both), ID, None).unwrap(),
            LifecycleChange::Put(foreign.clone())
        );
        assert_eq!(
            change(Some(&foreign), ID, None).unwrap(),
            LifecycleChange::Unchanged
        );
        assert_eq!(
            change(Some(&foreign), ID, Some(30)).unwrap(),
            LifecycleChange::Put(both)
        );
    }

    #[test]
    fn a_duplicated_operators_rule_is_written_once() {
        let foreign = foreign_rules();
        let current = vec![ours(30), foreign[0].clone(), ours(30)];
        assert_eq!(
            with_expiration(&current, ID, Some(30)).unwrap(),
            [ours(30), foreign[0].clone()]
        );
    }

    #[test]
    #[allow(deprecated)]
    fn only_the_operators_enabled_whole_bucket_rule_is_read() {
        let retention = rule("retention")
            .filter(prefix(""))
            .expiration(days(30))
            .build()
            .unwrap();
        // A foreign whole-bucket expiration is someone else's, not the operator's expiry.
        assert_eq!(expiration_days(std::slice::from_ref(&retention), ID), None);
        assert_eq!(expiration_days(&[retention, ours(30)], ID), Some(30));
        let variant = |edit: fn(
            aws_sdk_s3::types::builders::LifecycleRuleBuilder,
        ) -> aws_sdk_s3::types::builders::LifecycleRuleBuilder| {
            edit(rule(ID).filter(prefix("")).expiration(days(30)))
                .build()
                .unwrap()
        };
        assert_eq!(
            expiration_days(&[variant(|r| r.status(ExpirationStatus::Disabled))], ID),
            None
        );
        for narrowed in [
            variant(|r| r.filter(prefix("tmp/"))),
            variant(|r| r.filter(LifecycleRuleFilter::builder().tag(tag("a", "b")).build())),
            variant(|r| {
                r.filter(
                    LifecycleRuleFilter::builder()
                        .and(LifecycleRuleAndOperator::builder().prefix("").build())
                        .build(),
                )
            }),
            variant(|r| {
                r.filter(
                    LifecycleRuleFilter::builder()
                        .object_size_less_than(10)
                        .build(),
                )
            }),
            variant(|r| r.set_filter(None).prefix("tmp/")),
        ] {
            assert_eq!(
                expiration_days(std::slice::from_ref(&narrowed), ID),
                None,
                "{narrowed:?}"
            );
        }
        let by_date = variant(|r| {
            r.expiration(
                LifecycleExpiration::builder()
                    .date(DateTime::from_secs(1_893_456_000))
                    .build(),
            )
        });
        assert_eq!(expiration_days(&[by_date], ID), None);
        // An old-style rule without a filter and with an empty prefix is still the whole bucket.
        let legacy_whole = variant(|r| r.set_filter(None).prefix(""));
        assert_eq!(expiration_days(&[legacy_whole], ID), Some(30));
    }
}
