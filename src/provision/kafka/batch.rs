//! Per-item bookkeeping of batched calls, and the checks made before a batch is sent.
//!
//! The real client and the fake run the same checks, so an item that cannot be sent fails
//! alone and in the same way in both, while the rest of its batch goes ahead.

use std::collections::HashSet;

use super::acl::{AclBinding, AclBindingFilter};
use super::error::{AdminOperation, KafkaAdminError, RDKafkaErrorCode};
use super::scram::ScramCredentialUpsert;
use super::topic::{NewTopic, PartitionIncrease, TopicConfigAlteration};

/// How a topic is named in errors.
pub(crate) fn topic_resource(name: &str) -> String {
    format!("topic {name}")
}

/// How a SCRAM user is named in errors.
pub(crate) fn user_resource(user: &str) -> String {
    format!("user {user}")
}

/// The outcome of each item of a batch, filled in by the local checks and then by Kafka's answer.
#[derive(Debug)]
pub(crate) struct Outcomes<T> {
    operation: AdminOperation,
    slots: Vec<Option<Result<T, KafkaAdminError>>>,
}

impl<T> Outcomes<T> {
    pub(crate) fn new(operation: AdminOperation, len: usize) -> Self {
        Self {
            operation,
            slots: std::iter::repeat_with(|| None).take(len).collect(),
        }
    }

    /// Settles an item unless it already has an outcome (a local refusal is never overwritten).
    pub(crate) fn settle(&mut self, index: usize, result: Result<T, KafkaAdminError>) {
        if let Some(slot @ None) = self.slots.get_mut(index) {
            *slot = Some(result);
        }
    }

    /// The items still waiting for Kafka's answer, in input order.
    pub(crate) fn pending(&self) -> Vec<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.is_none())
            .map(|(index, _)| index)
            .collect()
    }

    /// One result per item, in input order; an item Kafka did not answer for is an error.
    pub(crate) fn finish(
        self,
        resource: impl Fn(usize) -> String,
    ) -> Vec<Result<T, KafkaAdminError>> {
        let operation = self.operation;
        self.slots
            .into_iter()
            .enumerate()
            .map(|(index, slot)| {
                slot.unwrap_or_else(|| {
                    Err(KafkaAdminError::unexpected(
                        operation,
                        format!("Kafka's answer has no result for {}", resource(index)),
                    ))
                })
            })
            .collect()
    }
}

fn has_nul(text: &str) -> bool {
    text.contains('\0')
}

/// Refuses items whose strings contain NUL (they cannot cross into C) and later duplicates
/// of the same key (Kafka refuses duplicates in one request, failing the whole request).
fn refuse_unsendable<T, I>(
    outcomes: &mut Outcomes<T>,
    keys: I,
    strings_of: impl Fn(usize) -> Vec<String>,
    resource: impl Fn(usize) -> String,
) where
    I: IntoIterator<Item = String>,
{
    let operation = outcomes.operation;
    let mut seen = HashSet::new();
    for (index, key) in keys.into_iter().enumerate() {
        if strings_of(index).iter().any(|s| has_nul(s)) {
            outcomes.settle(
                index,
                Err(KafkaAdminError::invalid_input(
                    operation,
                    resource(index),
                    "a name, key or value contains a NUL character",
                )),
            );
        } else if !seen.insert(key) {
            outcomes.settle(
                index,
                Err(KafkaAdminError::invalid_input(
                    operation,
                    resource(index),
                    "named more than once in the same request",
                )),
            );
        }
    }
}

pub(crate) fn check_new_topics(topics: &[NewTopic]) -> Outcomes<()> {
    let operation = AdminOperation::CreateTopics;
    let mut outcomes = Outcomes::new(operation, topics.len());
    let resource = |i: usize| topic_resource(&topics[i].name);
    refuse_unsendable(
        &mut outcomes,
        topics.iter().map(|t| t.name.clone()),
        |i| {
            let topic = &topics[i];
            std::iter::once(topic.name.clone())
                .chain(
                    topic
                        .configs
                        .iter()
                        .flat_map(|(k, v)| [k.clone(), v.clone()]),
                )
                .collect()
        },
        resource,
    );
    for (index, topic) in topics.iter().enumerate() {
        if topic.partitions < 1 {
            outcomes.settle(
                index,
                Err(KafkaAdminError::kafka(
                    operation,
                    resource(index),
                    RDKafkaErrorCode::InvalidPartitions,
                    format!(
                        "a topic needs at least 1 partition, not {}",
                        topic.partitions
                    ),
                )),
            );
        } else if topic.replication_factor < 1 {
            outcomes.settle(
                index,
                Err(KafkaAdminError::kafka(
                    operation,
                    resource(index),
                    RDKafkaErrorCode::InvalidReplicationFactor,
                    format!(
                        "a topic needs at least 1 replica, not {}",
                        topic.replication_factor
                    ),
                )),
            );
        }
    }
    outcomes
}

pub(crate) fn check_partition_increases(increases: &[PartitionIncrease]) -> Outcomes<()> {
    let operation = AdminOperation::CreatePartitions;
    let mut outcomes = Outcomes::new(operation, increases.len());
    let resource = |i: usize| topic_resource(&increases[i].topic);
    refuse_unsendable(
        &mut outcomes,
        increases.iter().map(|p| p.topic.clone()),
        |i| vec![increases[i].topic.clone()],
        resource,
    );
    for (index, increase) in increases.iter().enumerate() {
        if increase.total_partitions < 1 {
            outcomes.settle(
                index,
                Err(KafkaAdminError::kafka(
                    operation,
                    resource(index),
                    RDKafkaErrorCode::InvalidPartitions,
                    format!(
                        "a topic needs at least 1 partition, not {}",
                        increase.total_partitions
                    ),
                )),
            );
        }
    }
    outcomes
}

pub(crate) fn check_config_alterations(alterations: &[TopicConfigAlteration]) -> Outcomes<()> {
    let operation = AdminOperation::AlterTopicConfigs;
    let mut outcomes = Outcomes::new(operation, alterations.len());
    let resource = |i: usize| topic_resource(&alterations[i].topic);
    refuse_unsendable(
        &mut outcomes,
        alterations.iter().map(|a| a.topic.clone()),
        |i| {
            let alteration = &alterations[i];
            std::iter::once(alteration.topic.clone())
                .chain(
                    alteration
                        .set
                        .iter()
                        .flat_map(|(k, v)| [k.clone(), v.clone()]),
                )
                .chain(alteration.delete.iter().cloned())
                .collect()
        },
        resource,
    );
    for (index, alteration) in alterations.iter().enumerate() {
        if let Some(key) = alteration
            .set
            .keys()
            .find(|key| alteration.delete.contains(*key))
        {
            outcomes.settle(
                index,
                Err(KafkaAdminError::invalid_input(
                    operation,
                    resource(index),
                    format!("config {key} is both set and deleted"),
                )),
            );
        }
    }
    outcomes
}

pub(crate) fn check_topic_names(operation: AdminOperation, names: &[String]) -> Outcomes<()> {
    let mut outcomes = Outcomes::new(operation, names.len());
    refuse_unsendable(
        &mut outcomes,
        names.iter().cloned(),
        |i| vec![names[i].clone()],
        |i| topic_resource(&names[i]),
    );
    outcomes
}

pub(crate) fn check_scram_upserts(upserts: &[ScramCredentialUpsert]) -> Outcomes<()> {
    let operation = AdminOperation::UpsertScramCredentials;
    let mut outcomes = Outcomes::new(operation, upserts.len());
    let resource = |i: usize| user_resource(&upserts[i].user);
    // The password goes to C as bytes with a length, so only the user name must be NUL-free.
    refuse_unsendable(
        &mut outcomes,
        upserts.iter().map(|u| u.user.clone()),
        |i| vec![upserts[i].user.clone()],
        resource,
    );
    for (index, upsert) in upserts.iter().enumerate() {
        let reason = if upsert.user.is_empty() {
            Some("the user name is empty")
        } else if upsert.password.is_empty() {
            Some("the password is empty")
        } else {
            None
        };
        if let Some(reason) = reason {
            outcomes.settle(
                index,
                Err(KafkaAdminError::invalid_input(
                    operation,
                    resource(index),
                    reason,
                )),
            );
        }
    }
    outcomes
}

pub(crate) fn check_scram_deletions(users: &[String]) -> Outcomes<()> {
    let operation = AdminOperation::DeleteScramCredentials;
    let mut outcomes = Outcomes::new(operation, users.len());
    let resource = |i: usize| user_resource(&users[i]);
    refuse_unsendable(
        &mut outcomes,
        users.iter().cloned(),
        |i| vec![users[i].clone()],
        resource,
    );
    for (index, user) in users.iter().enumerate() {
        if user.is_empty() {
            outcomes.settle(
                index,
                Err(KafkaAdminError::invalid_input(
                    operation,
                    resource(index),
                    "the user name is empty",
                )),
            );
        }
    }
    outcomes
}

pub(crate) fn check_acl_bindings(bindings: &[AclBinding]) -> Outcomes<()> {
    let mut outcomes = Outcomes::new(AdminOperation::CreateAcls, bindings.len());
    // Creating the same binding twice is harmless, so duplicates get distinct keys.
    refuse_unsendable(
        &mut outcomes,
        (0..bindings.len()).map(|i| i.to_string()),
        |i| {
            let b = &bindings[i];
            vec![b.resource_name.clone(), b.principal.clone(), b.host.clone()]
        },
        |i| bindings[i].to_string(),
    );
    outcomes
}

pub(crate) fn check_acl_filters(
    operation: AdminOperation,
    filters: &[AclBindingFilter],
) -> Outcomes<Vec<AclBinding>> {
    let mut outcomes = Outcomes::new(operation, filters.len());
    refuse_unsendable(
        &mut outcomes,
        (0..filters.len()).map(|i| i.to_string()),
        |i| {
            let f = &filters[i];
            [&f.resource_name, &f.principal, &f.host]
                .into_iter()
                .flatten()
                .cloned()
                .collect()
        },
        |i| filters[i].to_string(),
    );
    outcomes
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn new_topic(name: &str, partitions: i32, replication_factor: i16) -> NewTopic {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor,
            configs: BTreeMap::new(),
        }
    }

    #[test]
    fn bad_topics_are_refused_alone_and_the_rest_stay_pending() {
        let topics = [
            new_topic("good", 3, 1),
            new_topic("zero", 0, 1),
            new_topic("good", 3, 1),
            new_topic("nul\0", 1, 1),
            new_topic("norepl", 1, 0),
            new_topic("also-good", 1, 1),
        ];
        let outcomes = check_new_topics(&topics);
        assert_eq!(outcomes.pending(), [0, 5]);
        let results = outcomes.finish(|i| topic_resource(&topics[i].name));
        assert_eq!(
            results[1].as_ref().unwrap_err().code(),
            Some(RDKafkaErrorCode::InvalidPartitions)
        );
        assert!(
            matches!(&results[2], Err(KafkaAdminError::InvalidInput { reason, .. }) if reason.contains("more than once"))
        );
        assert!(
            matches!(&results[3], Err(KafkaAdminError::InvalidInput { reason, .. }) if reason.contains("NUL"))
        );
        assert_eq!(
            results[4].as_ref().unwrap_err().code(),
            Some(RDKafkaErrorCode::InvalidReplicationFactor)
        );
        // Items nobody settled are reported, not silently dropped.
        assert!(
            matches!(&results[0], Err(KafkaAdminError::Unexpected { reason, .. }) if reason.contains("topic good"))
        );
    }

    #[test]
    fn settle_never_overwrites_a_local_refusal() {
        let mut outcomes =
            check_topic_names(AdminOperation::DeleteTopics, &["a".into(), "a".into()]);
        outcomes.settle(1, Ok(()));
        outcomes.settle(0, Ok(()));
        let results = outcomes.finish(|_| String::new());
        assert!(results[0].is_ok());
        assert!(results[1].is_err());
    }

    #[test]
    fn config_alterations_may_not_set_and_delete_one_key() {
        let alteration = TopicConfigAlteration {
            topic: "t".into(),
            set: BTreeMap::from([("retention.ms".into(), "1".into())]),
            delete: ["retention.ms".to_owned()].into(),
        };
        let outcomes = check_config_alterations(&[alteration]);
        assert!(outcomes.pending().is_empty());
    }

    #[test]
    fn scram_upserts_need_a_user_and_a_password_and_may_hold_any_password_bytes() {
        let upserts = [
            ScramCredentialUpsert::new("", "p"),
            ScramCredentialUpsert::new("u", ""),
            ScramCredentialUpsert::new("v", "with\0nul"),
            ScramCredentialUpsert::new("v", "again"),
        ];
        let outcomes = check_scram_upserts(&upserts);
        assert_eq!(outcomes.pending(), [2]);
    }

    #[test]
    fn identical_acl_bindings_may_be_created_together() {
        let binding = AclBinding::allow(
            crate::provision::kafka::AclResourceType::Topic,
            crate::provision::kafka::AclPatternType::Literal,
            "t",
            "User:a",
            crate::provision::kafka::AclOperation::Read,
        );
        let outcomes = check_acl_bindings(&[binding.clone(), binding]);
        assert_eq!(outcomes.pending(), [0, 1]);
    }
}
