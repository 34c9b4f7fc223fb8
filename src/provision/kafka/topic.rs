//! Topics as the admin calls take and return them, and the pure config diff.

use std::collections::{BTreeMap, BTreeSet};

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// The topic name.
    pub name: String,
    /// Number of partitions, at least 1.
    pub partitions: i32,
    /// Replicas of each partition, at least 1 and at most the number of brokers.
    pub replication_factor: i16,
    /// Topic configs to set at creation (e.g. `retention.ms`, `cleanup.policy`).
    pub configs: BTreeMap<String, String>,
}

/// A topic as the cluster has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// The topic name.
    pub name: String,
    /// Number of partitions.
    pub partitions: i32,
    /// Replicas per partition (the largest replica set among its partitions).
    pub replication_factor: i16,
    /// Every config of the topic, with where its value comes from.
    pub configs: BTreeMap<String, TopicConfigEntry>,
}

/// One topic config value as `DescribeConfigs` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfigEntry {
    /// The value; `None` for sensitive values and for unset values without default.
    pub value: Option<String>,
    /// Where the value comes from.
    pub source: ConfigSource,
    /// Whether Kafka hides the value.
    pub sensitive: bool,
    /// Whether the config cannot be changed.
    pub read_only: bool,
}

/// Where a config value comes from; only [`ConfigSource::DynamicTopic`] is set on the topic itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigSource {
    /// Set on this topic (at creation or by an alter call).
    DynamicTopic,
    /// Set dynamically on one broker.
    DynamicBroker,
    /// Set dynamically as the default of all brokers.
    DynamicDefaultBroker,
    /// Set in a broker's `server.properties`.
    StaticBroker,
    /// Kafka's built-in default.
    Default,
    /// Kafka did not say.
    Unknown,
}

impl TopicDescription {
    /// The configs set on the topic itself, the only ones an alter call changes.
    pub fn dynamic_configs(&self) -> BTreeMap<&str, &str> {
        self.configs
            .iter()
            .filter(|(_, entry)| entry.source == ConfigSource::DynamicTopic)
            .filter_map(|(key, entry)| Some((key.as_str(), entry.value.as_deref()?)))
            .collect()
    }

    /// The effective value of a config, wherever it comes from.
    pub fn config_value(&self, key: &str) -> Option<&str> {
        self.configs.get(key)?.value.as_deref()
    }
}

/// Increase a topic's partition count to `total_partitions` (Kafka never decreases it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionIncrease {
    /// The topic name.
    pub topic: String,
    /// The new total number of partitions; must be greater than the current count.
    pub total_partitions: i32,
}

/// An incremental change of one topic's configs: keys not named here are left as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicConfigAlteration {
    /// The topic name.
    pub topic: String,
    /// Keys to set on the topic, with their values.
    pub set: BTreeMap<String, String>,
    /// Keys to remove from the topic, so they fall back to the broker's value.
    pub delete: BTreeSet<String>,
}

impl TopicConfigAlteration {
    /// Whether this alteration changes nothing (so no call is needed).
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.delete.is_empty()
    }
}

/// The configs the spec names whose value differs from what is set on the topic itself, and
/// the keys the operator set before (`previously`) that the spec no longer names.
///
/// Only keys the spec names, or named before, are managed: other dynamic configs on the topic
/// (set by whoever made an adopted topic) are left alone. A key the spec no longer names is
/// removed from the topic, so it falls back to the broker's value. A key the spec names that is
/// not set on the topic is drift even when the broker default happens to equal the spec, so
/// that a later change of the broker default cannot change the product's topic; after the
/// first alter the key is set and the topic stays in sync with no further writes.
pub fn config_drift(
    desired: &BTreeMap<String, String>,
    previously: &BTreeSet<String>,
    topic: &TopicDescription,
) -> TopicConfigAlteration {
    let dynamic = topic.dynamic_configs();
    let set = desired
        .iter()
        .filter(|(key, value)| dynamic.get(key.as_str()) != Some(&value.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let delete = previously
        .iter()
        .filter(|key| !desired.contains_key(*key) && dynamic.contains_key(key.as_str()))
        .cloned()
        .collect();
    TopicConfigAlteration {
        topic: topic.name.clone(),
        set,
        delete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(value: &str, source: ConfigSource) -> TopicConfigEntry {
        TopicConfigEntry {
            value: Some(value.to_owned()),
            source,
            sensitive: false,
            read_only: false,
        }
    }

    fn topic(configs: &[(&str, &str, ConfigSource)]) -> TopicDescription {
        TopicDescription {
            name: "payments.orders.events".into(),
            partitions: 6,
            replication_factor: 1,
            configs: configs
                .iter()
                .map(|(k, v, s)| ((*k).to_owned(), entry(v, *s)))
                .collect(),
        }
    }

    fn spec(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn no_drift_when_every_named_key_is_set_to_the_spec_value() {
        let topic = topic(&[
            ("retention.ms", "604800000", ConfigSource::DynamicTopic),
            ("cleanup.policy", "delete", ConfigSource::DynamicTopic),
        ]);
        let drift = config_drift(
            &spec(&[("retention.ms", "604800000"), ("cleanup.policy", "delete")]),
            &BTreeSet::new(),
            &topic,
        );
        assert!(drift.is_empty(), "{drift:?}");
        assert_eq!(drift.topic, "payments.orders.events");
    }

    #[test]
    fn a_changed_value_is_drift_and_is_set_back() {
        let topic = topic(&[("retention.ms", "1000", ConfigSource::DynamicTopic)]);
        let drift = config_drift(
            &spec(&[("retention.ms", "604800000")]),
            &BTreeSet::new(),
            &topic,
        );
        assert_eq!(drift.set, spec(&[("retention.ms", "604800000")]));
        assert!(drift.delete.is_empty());
    }

    #[test]
    fn a_named_key_that_only_has_its_default_is_drift() {
        let topic = topic(&[("cleanup.policy", "delete", ConfigSource::Default)]);
        let drift = config_drift(
            &spec(&[("cleanup.policy", "delete")]),
            &BTreeSet::new(),
            &topic,
        );
        assert_eq!(drift.set, spec(&[("cleanup.policy", "delete")]));
    }

    #[test]
    fn keys_the_spec_does_not_name_are_left_alone() {
        let topic = topic(&[
            ("retention.ms", "604800000", ConfigSource::DynamicTopic),
            ("max.message.bytes", "2000000", ConfigSource::DynamicTopic),
        ]);
        let drift = config_drift(
            &spec(&[("retention.ms", "604800000")]),
            &BTreeSet::new(),
            &topic,
        );
        assert!(drift.is_empty(), "{drift:?}");
    }

    #[test]
    fn a_key_the_operator_set_and_the_spec_no_longer_names_is_removed() {
        let topic = topic(&[
            ("retention.ms", "604800000", ConfigSource::DynamicTopic),
            ("cleanup.policy", "compact", ConfigSource::DynamicTopic),
            ("max.message.bytes", "2000000", ConfigSource::DynamicTopic),
        ]);
        let previously = BTreeSet::from(["retention.ms".to_owned(), "cleanup.policy".to_owned()]);
        let drift = config_drift(&spec(&[("retention.ms", "604800000")]), &previously, &topic);
        assert!(drift.set.is_empty(), "{drift:?}");
        assert_eq!(
            drift.delete,
            BTreeSet::from(["cleanup.policy".to_owned()]),
            "only the key the operator set goes; max.message.bytes was set by someone else"
        );
        let gone_already = topic_without_dynamic_cleanup_policy();
        assert!(
            config_drift(&spec(&[]), &previously, &gone_already)
                .delete
                .contains("retention.ms")
        );
        assert!(
            !config_drift(&spec(&[]), &previously, &gone_already)
                .delete
                .contains("cleanup.policy")
        );
    }

    fn topic_without_dynamic_cleanup_policy() -> TopicDescription {
        topic(&[
            ("retention.ms", "604800000", ConfigSource::DynamicTopic),
            ("cleanup.policy", "delete", ConfigSource::Default),
        ])
    }

    #[test]
    fn dynamic_configs_exclude_broker_and_default_values() {
        let topic = topic(&[
            ("retention.ms", "1", ConfigSource::DynamicTopic),
            ("segment.bytes", "2", ConfigSource::StaticBroker),
            ("cleanup.policy", "delete", ConfigSource::Default),
        ]);
        assert_eq!(
            topic.dynamic_configs(),
            BTreeMap::from([("retention.ms", "1")])
        );
        assert_eq!(topic.config_value("cleanup.policy"), Some("delete"));
        assert_eq!(topic.config_value("nope"), None);
    }
}
