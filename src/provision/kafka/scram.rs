//! SCRAM credentials: what we ask Kafka to store, and what it tells us it has.

use std::fmt;

/// A SCRAM mechanism: of a stored credential, and the one clients authenticate with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ScramMechanism {
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512, the default.
    #[default]
    Sha512,
}

impl ScramMechanism {
    /// Both mechanisms Kafka knows.
    pub const ALL: [Self; 2] = [Self::Sha512, Self::Sha256];

    /// The name Kafka and its clients use (`sasl.mechanism`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism named `name` as Kafka writes it (`SCRAM-SHA-512`, `SCRAM-SHA-256`).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|mechanism| mechanism.as_str() == name)
    }
}

impl fmt::Display for ScramMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Iterations for the salted password: Kafka accepts 4096 to 16384.
pub const DEFAULT_SCRAM_ITERATIONS: i32 = 8192;

/// The smallest iteration count Kafka accepts.
pub const MIN_SCRAM_ITERATIONS: i32 = 4096;

/// The largest iteration count Kafka accepts.
pub const MAX_SCRAM_ITERATIONS: i32 = 16384;

/// Create or replace a user's SCRAM credential of one mechanism. librdkafka salts the password with
/// 64 random bytes and sends only the salted password; the password never leaves this
/// process in clear and is never printed (`Debug` redacts it).
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredentialUpsert {
    /// The user name (the principal is `User:<user>`).
    pub user: String,
    /// The password the user will authenticate with.
    pub password: String,
    /// PBKDF2 iterations, see [`DEFAULT_SCRAM_ITERATIONS`].
    pub iterations: i32,
    /// The mechanism the credential is for.
    pub mechanism: ScramMechanism,
}

impl ScramCredentialUpsert {
    /// A SCRAM-SHA-512 credential with the default iteration count.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            password: password.into(),
            iterations: DEFAULT_SCRAM_ITERATIONS,
            mechanism: ScramMechanism::Sha512,
        }
    }

    /// The same credential for `mechanism`.
    pub fn with_mechanism(self, mechanism: ScramMechanism) -> Self {
        Self { mechanism, ..self }
    }
}

impl fmt::Debug for ScramCredentialUpsert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredentialUpsert")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("iterations", &self.iterations)
            .field("mechanism", &self.mechanism)
            .finish()
    }
}

/// A user that has at least one SCRAM credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramUser {
    /// The user name.
    pub user: String,
    /// Its credentials (at most one per mechanism).
    pub credentials: Vec<ScramCredentialInfo>,
}

impl ScramUser {
    /// Whether the user has a SCRAM-SHA-512 credential.
    pub fn has_sha512(&self) -> bool {
        self.has(ScramMechanism::Sha512)
    }

    /// Whether the user has a credential of `mechanism`.
    pub fn has(&self, mechanism: ScramMechanism) -> bool {
        self.credentials.iter().any(|c| c.mechanism == mechanism)
    }
}

/// One stored credential, without its secret parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScramCredentialInfo {
    /// The mechanism.
    pub mechanism: ScramMechanism,
    /// The PBKDF2 iterations it was stored with.
    pub iterations: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let upsert = ScramCredentialUpsert::new("payments", "s3cret-pa55");
        let text = format!("{upsert:?}");
        assert!(!text.contains("s3cret-pa55"), "{text}");
        assert!(text.contains("payments"), "{text}");
        assert_eq!(upsert.iterations, DEFAULT_SCRAM_ITERATIONS);
    }

    #[test]
    fn has_sha512_looks_only_at_sha512() {
        let user = ScramUser {
            user: "a".into(),
            credentials: vec![ScramCredentialInfo {
                mechanism: ScramMechanism::Sha256,
                iterations: 4096,
            }],
        };
        assert!(!user.has_sha512());
        assert!(user.has(ScramMechanism::Sha256));
    }

    #[test]
    fn mechanisms_are_named_as_kafka_names_them() {
        for mechanism in ScramMechanism::ALL {
            assert_eq!(
                ScramMechanism::from_name(mechanism.as_str()),
                Some(mechanism)
            );
        }
        assert_eq!(ScramMechanism::Sha256.as_str(), "SCRAM-SHA-256");
        assert_eq!(ScramMechanism::from_name("scram-sha-512"), None);
        assert_eq!(ScramMechanism::from_name("PLAIN"), None);
    }
}
