//! The one error type of the Kafka edge.

use std::fmt;
use std::time::Duration;

pub use rdkafka::types::RDKafkaErrorCode;

/// Which admin call an error came from; also a stable, low-cardinality label for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdminOperation {
    /// Creating the admin client from its configuration.
    Connect,
    /// `CreateTopics`.
    CreateTopics,
    /// `DescribeTopics` together with `DescribeConfigs` for the same topics.
    DescribeTopics,
    /// `CreatePartitions` (increasing a topic's partition count).
    CreatePartitions,
    /// `IncrementalAlterConfigs` on topics.
    AlterTopicConfigs,
    /// `DeleteTopics`.
    DeleteTopics,
    /// `CreateAcls`.
    CreateAcls,
    /// `DescribeAcls`.
    DescribeAcls,
    /// `DeleteAcls`.
    DeleteAcls,
    /// `AlterUserScramCredentials` with upsertions.
    UpsertScramCredentials,
    /// `AlterUserScramCredentials` with deletions.
    DeleteScramCredentials,
    /// `DescribeUserScramCredentials`.
    DescribeScramCredentials,
}

impl AdminOperation {
    /// A short snake_case name, fit for a metric label or an Event reason suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::CreateTopics => "create_topics",
            Self::DescribeTopics => "describe_topics",
            Self::CreatePartitions => "create_partitions",
            Self::AlterTopicConfigs => "alter_topic_configs",
            Self::DeleteTopics => "delete_topics",
            Self::CreateAcls => "create_acls",
            Self::DescribeAcls => "describe_acls",
            Self::DeleteAcls => "delete_acls",
            Self::UpsertScramCredentials => "upsert_scram_credentials",
            Self::DeleteScramCredentials => "delete_scram_credentials",
            Self::DescribeScramCredentials => "describe_scram_credentials",
        }
    }
}

impl fmt::Display for AdminOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What went wrong talking to Kafka, always with the call and the resource it concerned.
///
/// Batched calls return one `Result` per item, so most of these describe a single
/// topic, user or ACL binding; the outer `Result` of a batched call carries the errors
/// that failed the whole request (no broker reachable, timeout, authorization of the
/// admin principal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KafkaAdminError {
    /// Kafka (the broker, or librdkafka on its behalf) answered with an error code.
    #[error("{operation} on {resource}: Kafka error {code:?} (code {code_number}): {message}", code_number = *.code as i32)]
    Kafka {
        /// The admin call.
        operation: AdminOperation,
        /// The topic, user or ACL binding, or `request` when the whole call failed.
        resource: String,
        /// The Kafka error code; its `Debug` form is the error's name.
        code: RDKafkaErrorCode,
        /// The broker's message, which often says more than the code (e.g. which config value is invalid).
        message: String,
    },
    /// The item was refused before it was sent, because it cannot be expressed in the request.
    #[error("{operation} on {resource}: invalid input: {reason}")]
    InvalidInput {
        /// The admin call.
        operation: AdminOperation,
        /// The topic, user or ACL binding.
        resource: String,
        /// Why it was refused.
        reason: String,
    },
    /// No answer arrived within the configured timeout (plus a margin for librdkafka's own timeout).
    #[error("{operation}: no answer from Kafka within {timeout:?}")]
    TimedOut {
        /// The admin call.
        operation: AdminOperation,
        /// How long we waited.
        timeout: Duration,
    },
    /// No bootstrap server accepted a TCP connection, so the request was not sent (see
    /// `reachability` for why the operator checks first).
    #[error("{operation}: no Kafka broker accepts connections at {bootstrap_servers} ({reason})")]
    Unreachable {
        /// The admin call.
        operation: AdminOperation,
        /// The configured bootstrap servers.
        bootstrap_servers: String,
        /// What each server answered.
        reason: String,
    },
    /// The admin client could not be created from its configuration.
    #[error("creating the Kafka admin client for {bootstrap_servers}: {reason}")]
    Client {
        /// The configured bootstrap servers.
        bootstrap_servers: String,
        /// librdkafka's explanation.
        reason: String,
    },
    /// Something that should not happen: an answer without a result for an item, an answer of the
    /// wrong type, a failed background task.
    #[error("{operation}: unexpected answer: {reason}")]
    Unexpected {
        /// The admin call.
        operation: AdminOperation,
        /// What was unexpected.
        reason: String,
    },
}

impl KafkaAdminError {
    /// The Kafka error code, when Kafka answered with one.
    pub fn code(&self) -> Option<RDKafkaErrorCode> {
        match self {
            Self::Kafka { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The admin call this error came from, when known.
    pub fn operation(&self) -> Option<AdminOperation> {
        match self {
            Self::Kafka { operation, .. }
            | Self::InvalidInput { operation, .. }
            | Self::TimedOut { operation, .. }
            | Self::Unreachable { operation, .. }
            | Self::Unexpected { operation, .. } => Some(*operation),
            Self::Client { .. } => Some(AdminOperation::Connect),
        }
    }

    /// Whether trying the same request again may succeed without anyone changing anything: the
    /// broker, the controller or a partition leader was unreachable or moving, or the request timed
    /// out. The codes are those `controller::failure` reports as `KafkaUnavailable`, less the ones
    /// that are not about availability (`Fail`, a client that could not be created), plus
    /// `DestroyBroker`. The admin
    /// client retries these inside the call (`retry`) before returning them.
    pub fn is_transient(&self) -> bool {
        use RDKafkaErrorCode as Code;
        match self {
            Self::TimedOut { .. } | Self::Unreachable { .. } => true,
            Self::Kafka { code, .. } => matches!(
                code,
                Code::BrokerTransportFailure
                    | Code::AllBrokersDown
                    | Code::NetworkException
                    | Code::RequestTimedOut
                    | Code::OperationTimedOut
                    | Code::BrokerNotAvailable
                    | Code::LeaderNotAvailable
                    | Code::NotLeaderForPartition
                    | Code::NotController
                    | Code::Resolve
                    // librdkafka dropped the broker connection the request waited on (seen on
                    // the local platform under load); a new request goes over a new one.
                    | Code::DestroyBroker
            ),
            Self::InvalidInput { .. } | Self::Client { .. } | Self::Unexpected { .. } => false,
        }
    }

    /// Whether Kafka said the topic already exists (creating it again is not an error for a reconciler).
    pub fn is_topic_already_exists(&self) -> bool {
        self.code() == Some(RDKafkaErrorCode::TopicAlreadyExists)
    }

    /// Whether Kafka said the topic does not exist.
    pub fn is_unknown_topic(&self) -> bool {
        self.code() == Some(RDKafkaErrorCode::UnknownTopicOrPartition)
    }

    /// Whether Kafka said the user has no SCRAM credential to delete.
    pub fn is_resource_not_found(&self) -> bool {
        self.code() == Some(RDKafkaErrorCode::ResourceNotFound)
    }

    pub(crate) fn kafka(
        operation: AdminOperation,
        resource: impl Into<String>,
        code: RDKafkaErrorCode,
        message: impl Into<String>,
    ) -> Self {
        Self::Kafka {
            operation,
            resource: resource.into(),
            code,
            message: message.into(),
        }
    }

    pub(crate) fn invalid_input(
        operation: AdminOperation,
        resource: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self::InvalidInput {
            operation,
            resource: resource.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn unexpected(operation: AdminOperation, reason: impl Into<String>) -> Self {
        Self::Unexpected {
            operation,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_errors_name_the_call_the_resource_and_the_code() {
        let err = KafkaAdminError::kafka(
            AdminOperation::CreateTopics,
            "topic payments.orders.events",
            RDKafkaErrorCode::TopicAlreadyExists,
            "Topic 'payments.orders.events' already exists.",
        );
        let text = err.to_string();
        assert!(text.contains("create_topics"), "{text}");
        assert!(text.contains("topic payments.orders.events"), "{text}");
        assert!(text.contains("TopicAlreadyExists"), "{text}");
        assert!(text.contains("code 36"), "{text}");
        assert!(err.is_topic_already_exists());
        assert!(!err.is_unknown_topic());
        assert_eq!(err.operation(), Some(AdminOperation::CreateTopics));
    }
}
