//! Why the pipeline stopped or could not start, and whether running it
//! again, unchanged, may help.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Why the pipeline stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The broker did not take a finding or dead letter; `code` is the
    /// broker's or librdkafka's, when there is one.
    #[error("publishing to {topic} failed: {reason}")]
    Publish {
        topic: String,
        reason: String,
        code: Option<RDKafkaErrorCode>,
    },
    #[error("no Kafka broker answered at {bootstrap} ({detail}); check that a broker listens there, that kafka.bootstrap_servers (or --bootstrap-servers) names it as it advertises itself, and the [kafka.librdkafka] security settings")]
    Unreachable { bootstrap: String, detail: String },
    /// Settings that cannot work as given: a client property librdkafka
    /// refuses, a schema file, transactions the cluster lacks.
    #[error("{0}")]
    Config(String),
    /// The cluster's topics are not what the configuration needs: missing,
    /// not co-partitioned, or refused at creation.
    #[error("{0}")]
    Topics(String),
    /// The schema registry failed for longer than its patience.
    #[error("{0}")]
    Registry(String),
    /// Reading a topic made no progress for too long.
    #[error("{0}")]
    Stalled(String),
    /// The Kafka client broke an assumption the detector relies on to lose
    /// nothing; it stops without committing past it.
    #[error("{0}")]
    Client(String),
    /// A finding the configured encoding cannot express.
    #[error("encoding a finding for {topic}: {reason}")]
    Encode { topic: String, reason: String },
    /// A task of the detector panicked: a defect, which the same input
    /// would likely hit again.
    #[error("{0}")]
    Panicked(String),
    /// The admin port could not be bound.
    #[error("{0}")]
    Admin(std::io::Error),
    #[error("restoring partition {partition}: {reason}")]
    Restore { partition: i32, reason: String },
}

impl PipelineError {
    /// Whether running again with the same configuration may succeed: an
    /// outage (broker, registry), a stall or a failed publish the broker
    /// may take later. Not so for what needs a change first: settings,
    /// topics, permissions, a port in use, a record the broker will always
    /// refuse.
    pub fn retryable(&self) -> bool {
        match self {
            PipelineError::Kafka(e) => match e {
                KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) => false,
                other => other.rdkafka_error_code().is_none_or(code_retryable),
            },
            PipelineError::Publish { code, .. } => code.is_none_or(code_retryable),
            PipelineError::Unreachable { .. }
            | PipelineError::Registry(_)
            | PipelineError::Stalled(_)
            | PipelineError::Client(_)
            | PipelineError::Restore { .. } => true,
            PipelineError::Config(_)
            | PipelineError::Topics(_)
            | PipelineError::Encode { .. }
            | PipelineError::Panicked(_)
            | PipelineError::Admin(_) => false,
        }
    }
}

/// Whether an error code of the broker or librdkafka can go away by itself.
fn code_retryable(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    !matches!(
        code,
        C::Authentication
            | C::SaslAuthenticationFailed
            | C::UnsupportedSASLMechanism
            | C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed
            | C::UnknownTopic
            | C::InvalidTopic
            | C::MessageSizeTooLarge
            | C::InvalidMessageSize
            | C::MessageBatchTooLarge
            | C::InvalidRecord
            | C::InvalidConfig
            | C::InvalidRequiredAcks
            | C::InvalidTransactionTimeout
            | C::PolicyViolation
            | C::UnsupportedVersion
            | C::UnsupportedFeature
            | C::UnsupportedCompressionType
            | C::InvalidArgument
            // Another member of the group uses this kafka.group_instance_id.
            | C::FencedInstanceId
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(code: Option<RDKafkaErrorCode>) -> PipelineError {
        PipelineError::Publish {
            topic: "t".into(),
            reason: "r".into(),
            code,
        }
    }

    #[test]
    fn outages_are_retryable_and_what_needs_a_change_is_not() {
        assert!(publish(None).retryable());
        assert!(publish(Some(RDKafkaErrorCode::MessageTimedOut)).retryable());
        assert!(publish(Some(RDKafkaErrorCode::NotLeaderForPartition)).retryable());
        assert!(!publish(Some(RDKafkaErrorCode::MessageSizeTooLarge)).retryable());
        assert!(!publish(Some(RDKafkaErrorCode::TopicAuthorizationFailed)).retryable());
        assert!(PipelineError::Unreachable {
            bootstrap: "b".into(),
            detail: "d".into()
        }
        .retryable());
        assert!(
            PipelineError::Kafka(KafkaError::Global(RDKafkaErrorCode::AllBrokersDown)).retryable()
        );
        assert!(!PipelineError::Kafka(KafkaError::ClientCreation("bad".into())).retryable());
        assert!(!PipelineError::Topics("missing".into()).retryable());
        assert!(!PipelineError::Config("bad".into()).retryable());
        assert!(PipelineError::Registry("down".into()).retryable());
    }
}
