//! Object storage: S3 buckets and IAM users, access keys and policies.
//!
//! The reconcilers talk to object storage only through the [`ObjectStore`] trait, made of
//! [`BucketStore`] (S3 buckets) and [`IdentityStore`] (IAM users, access keys, inline policies),
//! so that their decisions can be unit-tested against [`FakeObjectStore`], and so that a store
//! without the IAM API can be paired with another identity backend in [`ObjectStorage`]. The
//! real ones, [`S3BucketStore`] and [`IamIdentityStore`], are the AWS SDK's S3 and IAM clients
//! (SigV4, retries with backoff, the credential chain, path-style or virtual-hosted URLs, a custom
//! CA), configured by [`StorageConfig`]. [`policy`] builds the IAM policy documents that grant
//! bucket access.
//!
//! Every call is idempotent where the underlying API allows it to be: creating what exists,
//! deleting what is gone and putting an unchanged configuration all succeed, so a reconcile can
//! repeat any step after a crash. Nothing here deletes data unless asked by name:
//! [`ObjectStore::delete_bucket`] refuses a bucket that still holds anything, and only
//! [`ObjectStore::empty_bucket`], which a reconciler calls for `deletionPolicy: Delete` alone,
//! removes objects.
//!
//! # What SeaweedFS 4.48 (the local platform) supports and enforces
//!
//! Found by running each call against `weed server -s3 -s3.iam` (embedded IAM on the S3 port)
//! with boto3 and with this module; `tests/storage_admin.rs` pins the parts the reconcilers
//! depend on.
//!
//! - **IAM users and access keys**: `CreateUser` (a second create is `EntityAlreadyExists`),
//!   `GetUser`, `DeleteUser`, `CreateAccessKey` (several keys per user), `ListAccessKeys`,
//!   `DeleteAccessKey`. A new key authenticates at once and a deleted one is refused at once.
//!   `ListAccessKeys` of a missing user returns an empty list (`ListUserPolicies` answers
//!   `NoSuchEntity`); both are read as "none" here.
//! - **Inline user policies are enforced per bucket and per action**: `PutUserPolicy`,
//!   `GetUserPolicy` (document returned as plain JSON, not URL-encoded as AWS does),
//!   `ListUserPolicies`, `DeleteUserPolicy`. A user may hold several inline policies and the
//!   union applies; a user with none is denied everything (`AccessDenied`); a policy naming bucket
//!   A opens nothing on bucket B; `s3:GetObject` alone does not allow listing; `s3:DeleteObject`
//!   does not imply `s3:PutObject`. Changes took effect by the next request in every run so
//!   far (they travel through a filer subscription, so callers should not rely on zero delay). Limits: only
//!   `Effect: Allow` is accepted (`Deny` is `MalformedPolicyDocument`), and actions are checked
//!   against a fixed list (`s3:ListBucketMultipartUploads` and `s3:ListMultipartUploadParts` are
//!   refused as "not a valid action"; every action [`policy`] emits is accepted). Deleting a
//!   missing policy succeeds (AWS says `NoSuchEntity`).
//! - **Caution: `DeleteUser` leaves the user's inline policies behind**, and a user re-created
//!   under the same name gets them back. [`ObjectStore::delete_user`] therefore deletes the
//!   user's access keys and inline policies first, as AWS requires anyway.
//! - **Caution: `DeleteBucket` deletes a non-empty bucket with all its objects** unless the server
//!   runs with `-s3.allowDeleteBucketNotEmpty=false` (AWS answers `BucketNotEmpty`).
//!   [`ObjectStore::delete_bucket`] therefore checks for objects, versions and delete markers
//!   first and answers `BucketNotEmpty` itself; a write racing that check can still be lost on a
//!   server with the default setting.
//! - **Buckets**: `CreateBucket` of an existing bucket is `BucketAlreadyOwnedByYou` (treated as
//!   success), `HeadBucket` (404 without a body when missing), `ListBuckets` (a non-admin user
//!   sees only the buckets its policies name).
//! - **Versioning** is real: `Enabled` keeps every version and turns deletes into delete markers,
//!   `Suspended` is accepted, and a never-configured bucket reports no status.
//!   `ListObjectVersions` and `DeleteObjects` with version ids work, also on unversioned buckets
//!   (version id `null`).
//! - **Lifecycle**: `PutBucketLifecycleConfiguration` stores several rules and
//!   `GetBucketLifecycleConfiguration` returns them all, in order, with their ids; rules may be
//!   filtered by `Prefix` (also old-style, outside `Filter`), `Tag`, `And`,
//!   `ObjectSizeGreaterThan`/`LessThan`, and carry `Expiration` (`Days`, `Date`,
//!   `ExpiredObjectDeleteMarker`), `NoncurrentVersionExpiration` and
//!   `AbortIncompleteMultipartUpload`; a `Disabled` rule is kept. `Transition`s are refused
//!   (`NotImplemented`), so a bucket there never holds one. `DeleteBucketLifecycle` removes the
//!   whole configuration; no configuration is `NoSuchLifecycleConfiguration`. Expiry itself
//!   is carried out by SeaweedFS's lifecycle worker in a daily pass, which the local platform
//!   does not run, so expiry of objects is not observed there; only the configuration is.
//! - **Tagging**: `PutBucketTagging`, `GetBucketTagging` and `DeleteBucketTagging` store, return
//!   and remove the tag set (keys with `/` and `.` are fine); no tags is `NoSuchTagSet`.
//! - **Authentication errors**: a wrong secret is `SignatureDoesNotMatch`, an unknown key id
//!   `InvalidAccessKeyId`, both HTTP 403.

pub mod bucket_policy;
mod fake;
mod lifecycle;
pub mod policy;
mod sdk;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

pub use fake::FakeObjectStore;
pub use policy::PolicyDocument;
pub use sdk::{IamIdentityStore, ObjectStorage, S3BucketStore, SdkObjectStorage};

/// Id of the lifecycle rule this operator manages on each bucket.
pub const EXPIRATION_RULE_ID: &str = "datamesh-expiration";

/// The tags of a bucket, by key.
pub type BucketTags = BTreeMap<String, String>;

pub use crate::secret::SecretString;

/// How to reach the S3 service and its IAM API, and as whom.
#[derive(Clone, Debug)]
pub struct StorageConfig {
    /// S3 endpoint, e.g. `https://127.0.0.1:28333` or `https://s3.eu-west-1.amazonaws.com`.
    pub endpoint: String,
    /// IAM endpoint. SeaweedFS serves IAM on the S3 port, so this is often the same URL; on AWS
    /// it is `https://iam.amazonaws.com`.
    pub iam_endpoint: String,
    /// Who the operator is.
    pub credentials: StorageCredentials,
    /// Region of the S3 signatures' credential scope, and where buckets are created.
    pub region: String,
    /// Region of the IAM signatures' credential scope (`us-east-1` for AWS's global IAM).
    pub iam_region: String,
    /// How buckets appear in URLs.
    pub addressing: Addressing,
    /// PEM certificates of the CAs to trust for https endpoints instead of the system's roots.
    pub ca_bundle: Option<String>,
    /// The SDK's retry strategy for throttling, 5xx answers and broken connections.
    pub retry_mode: RetryMode,
    /// Attempts per call in all, the first included (1: no retries).
    pub max_attempts: u32,
    /// First retry's backoff ceiling; each later one doubles it (with full jitter) up to 20 s.
    pub initial_backoff: Duration,
    /// Upper bound on one attempt (connect, send, answer); a call whose attempts all take
    /// longer fails with [`StorageError::Timeout`] and the reconcile is retried.
    pub request_timeout: Duration,
}

/// Where the operator's S3 and IAM credentials come from.
#[derive(Clone, Debug)]
pub enum StorageCredentials {
    /// A long-lived key pair.
    Static {
        /// Access key id.
        access_key_id: String,
        /// Secret key.
        secret_access_key: SecretString,
    },
    /// The AWS SDK's default chain: environment, shared profile, web identity token (IRSA),
    /// EKS Pod Identity / ECS container credentials, instance metadata.
    DefaultChain,
}

/// How bucket URLs are formed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressing {
    /// `<endpoint>/<bucket>`: every S3 implementation accepts it, and it needs no wildcard DNS
    /// or certificate.
    Path,
    /// `<bucket>.<endpoint host>`: what AWS recommends (and requires for newer features).
    VirtualHosted,
}

/// The SDK's retry strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryMode {
    /// Exponential backoff with jitter, bounded by a retry token bucket.
    Standard,
    /// Standard, plus client-side rate limiting that slows down when the service throttles.
    Adaptive,
}

impl StorageConfig {
    /// Default region of the credential scope; SeaweedFS and MinIO accept any, AWS IAM wants this.
    pub const DEFAULT_REGION: &'static str = "us-east-1";
    /// Default for [`StorageConfig::request_timeout`].
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default for [`StorageConfig::max_attempts`], the SDK's standard.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
    /// Default for [`StorageConfig::initial_backoff`], the SDK's standard.
    pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_secs(1);

    /// A configuration with a static key pair, path-style URLs, the system's CA roots, the
    /// default region for both APIs and standard retries.
    pub fn new(
        endpoint: impl Into<String>,
        iam_endpoint: impl Into<String>,
        access_key_id: impl Into<String>,
        secret_access_key: SecretString,
    ) -> Self {
        Self::with_credentials(
            endpoint,
            iam_endpoint,
            StorageCredentials::Static {
                access_key_id: access_key_id.into(),
                secret_access_key,
            },
        )
    }

    /// A configuration with `credentials` and the defaults of [`StorageConfig::new`].
    pub fn with_credentials(
        endpoint: impl Into<String>,
        iam_endpoint: impl Into<String>,
        credentials: StorageCredentials,
    ) -> Self {
        Self {
            endpoint: endpoint.into(),
            iam_endpoint: iam_endpoint.into(),
            credentials,
            region: Self::DEFAULT_REGION.to_owned(),
            iam_region: Self::DEFAULT_REGION.to_owned(),
            addressing: Addressing::Path,
            ca_bundle: None,
            retry_mode: RetryMode::Standard,
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            initial_backoff: Self::DEFAULT_INITIAL_BACKOFF,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// A freshly created access key. The secret is returned by the service only once, here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessKey {
    /// The key id, not secret.
    pub access_key_id: String,
    /// The secret, to be stored in a Kubernetes Secret and nowhere else.
    pub secret_access_key: SecretString,
}

/// What `ListAccessKeys` tells about a key (never its secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessKeyMetadata {
    /// The key id.
    pub access_key_id: String,
    /// Whether the key is `Active` (as opposed to `Inactive`).
    pub active: bool,
}

/// Versioning state of a bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Versioning {
    /// Versioning was never configured.
    Unversioned,
    /// Every write keeps the previous version.
    Enabled,
    /// Versioning was enabled once and is now paused; existing versions stay.
    Suspended,
}

/// Which S3 or IAM operation a call made; named as in the AWS API references.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // each variant is the AWS operation of the same name
pub enum Operation {
    CreateUser,
    GetUser,
    DeleteUser,
    ListAccessKeys,
    CreateAccessKey,
    DeleteAccessKey,
    PutUserPolicy,
    GetUserPolicy,
    DeleteUserPolicy,
    ListUserPolicies,
    ListUserTags,
    TagUser,
    CreateBucket,
    HeadBucket,
    GetBucketVersioning,
    PutBucketVersioning,
    GetBucketLifecycleConfiguration,
    PutBucketLifecycleConfiguration,
    DeleteBucketLifecycle,
    GetBucketTagging,
    PutBucketTagging,
    DeleteBucketTagging,
    GetBucketPolicy,
    PutBucketPolicy,
    DeleteBucketPolicy,
    ListBuckets,
    DeleteBucket,
    ListObjectVersions,
    DeleteObjects,
    PutObject,
    GetObject,
}

impl Operation {
    /// The operation's AWS name, e.g. `PutBucketVersioning`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::CreateUser => "CreateUser",
            Operation::GetUser => "GetUser",
            Operation::DeleteUser => "DeleteUser",
            Operation::ListAccessKeys => "ListAccessKeys",
            Operation::CreateAccessKey => "CreateAccessKey",
            Operation::DeleteAccessKey => "DeleteAccessKey",
            Operation::PutUserPolicy => "PutUserPolicy",
            Operation::GetUserPolicy => "GetUserPolicy",
            Operation::DeleteUserPolicy => "DeleteUserPolicy",
            Operation::ListUserPolicies => "ListUserPolicies",
            Operation::ListUserTags => "ListUserTags",
            Operation::TagUser => "TagUser",
            Operation::CreateBucket => "CreateBucket",
            Operation::HeadBucket => "HeadBucket",
            Operation::GetBucketVersioning => "GetBucketVersioning",
            Operation::PutBucketVersioning => "PutBucketVersioning",
            Operation::GetBucketLifecycleConfiguration => "GetBucketLifecycleConfiguration",
            Operation::PutBucketLifecycleConfiguration => "PutBucketLifecycleConfiguration",
            Operation::DeleteBucketLifecycle => "DeleteBucketLifecycle",
            Operation::GetBucketTagging => "GetBucketTagging",
            Operation::PutBucketTagging => "PutBucketTagging",
            Operation::DeleteBucketTagging => "DeleteBucketTagging",
            Operation::GetBucketPolicy => "GetBucketPolicy",
            Operation::PutBucketPolicy => "PutBucketPolicy",
            Operation::DeleteBucketPolicy => "DeleteBucketPolicy",
            Operation::ListBuckets => "ListBuckets",
            Operation::DeleteBucket => "DeleteBucket",
            Operation::ListObjectVersions => "ListObjectVersions",
            Operation::DeleteObjects => "DeleteObjects",
            Operation::PutObject => "PutObject",
            Operation::GetObject => "GetObject",
        }
    }

    /// Whether the operation changes anything. A resync that found no drift makes none of these.
    pub fn is_write(self) -> bool {
        !matches!(
            self,
            Operation::GetUser
                | Operation::ListAccessKeys
                | Operation::GetUserPolicy
                | Operation::ListUserPolicies
                | Operation::ListUserTags
                | Operation::HeadBucket
                | Operation::GetBucketVersioning
                | Operation::GetBucketLifecycleConfiguration
                | Operation::GetBucketTagging
                | Operation::GetBucketPolicy
                | Operation::ListBuckets
                | Operation::ListObjectVersions
                | Operation::GetObject
        )
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a call was about, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// The service as a whole (listing buckets).
    Service,
    /// A bucket.
    Bucket(String),
    /// An object in a bucket.
    Object {
        /// The bucket.
        bucket: String,
        /// The object's key.
        key: String,
    },
    /// An IAM user.
    User(String),
    /// One access key of an IAM user (the id only; ids are not secret).
    AccessKey {
        /// The user.
        user: String,
        /// The key id.
        access_key_id: String,
    },
    /// One inline policy of an IAM user.
    UserPolicy {
        /// The user.
        user: String,
        /// The policy's name.
        policy: String,
    },
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Service => f.write_str("the object storage service"),
            Subject::Bucket(bucket) => write!(f, "bucket {bucket:?}"),
            Subject::Object { bucket, key } => write!(f, "object {key:?} in bucket {bucket:?}"),
            Subject::User(user) => write!(f, "IAM user {user:?}"),
            Subject::AccessKey {
                user,
                access_key_id,
            } => {
                write!(f, "access key {access_key_id} of IAM user {user:?}")
            }
            Subject::UserPolicy { user, policy } => {
                write!(f, "policy {policy:?} of IAM user {user:?}")
            }
        }
    }
}

/// The error code an S3 or IAM service answered with. The common ones have variants so that
/// callers can match on them; anything else is kept verbatim in [`ErrorCode::Other`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // each variant is the AWS error code of the same name
pub enum ErrorCode {
    AccessDenied,
    InvalidAccessKeyId,
    SignatureDoesNotMatch,
    NoSuchBucket,
    NoSuchKey,
    NoSuchEntity,
    NoSuchLifecycleConfiguration,
    NoSuchTagSet,
    NoSuchBucketPolicy,
    BucketNotEmpty,
    BucketAlreadyExists,
    BucketAlreadyOwnedByYou,
    EntityAlreadyExists,
    MalformedPolicyDocument,
    LimitExceeded,
    /// The service does not implement the call (SeaweedFS for TagPolicy, for instance).
    NotImplemented,
    /// A 404 without an error body (HEAD requests carry none).
    NotFound,
    /// Any other code, or `HTTP <status>` when the response named none.
    Other(String),
}

impl ErrorCode {
    /// Parses a code as it appears in an error response.
    pub fn parse(code: &str) -> Self {
        match code {
            "AccessDenied" => ErrorCode::AccessDenied,
            "InvalidAccessKeyId" | "InvalidClientTokenId" => ErrorCode::InvalidAccessKeyId,
            "SignatureDoesNotMatch" => ErrorCode::SignatureDoesNotMatch,
            "NoSuchBucket" => ErrorCode::NoSuchBucket,
            "NoSuchKey" => ErrorCode::NoSuchKey,
            "NoSuchEntity" => ErrorCode::NoSuchEntity,
            "NoSuchLifecycleConfiguration" => ErrorCode::NoSuchLifecycleConfiguration,
            "NoSuchTagSet" | "NoSuchTagSetError" => ErrorCode::NoSuchTagSet,
            "NoSuchBucketPolicy" => ErrorCode::NoSuchBucketPolicy,
            "BucketNotEmpty" => ErrorCode::BucketNotEmpty,
            "BucketAlreadyExists" => ErrorCode::BucketAlreadyExists,
            "BucketAlreadyOwnedByYou" => ErrorCode::BucketAlreadyOwnedByYou,
            "EntityAlreadyExists" => ErrorCode::EntityAlreadyExists,
            "MalformedPolicyDocument" => ErrorCode::MalformedPolicyDocument,
            "LimitExceeded" => ErrorCode::LimitExceeded,
            "NotImplemented" => ErrorCode::NotImplemented,
            "NotFound" => ErrorCode::NotFound,
            other => ErrorCode::Other(other.to_owned()),
        }
    }

    /// The code as the service spells it.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::AccessDenied => "AccessDenied",
            ErrorCode::InvalidAccessKeyId => "InvalidAccessKeyId",
            ErrorCode::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            ErrorCode::NoSuchBucket => "NoSuchBucket",
            ErrorCode::NoSuchKey => "NoSuchKey",
            ErrorCode::NoSuchEntity => "NoSuchEntity",
            ErrorCode::NoSuchLifecycleConfiguration => "NoSuchLifecycleConfiguration",
            ErrorCode::NoSuchTagSet => "NoSuchTagSet",
            ErrorCode::NoSuchBucketPolicy => "NoSuchBucketPolicy",
            ErrorCode::BucketNotEmpty => "BucketNotEmpty",
            ErrorCode::BucketAlreadyExists => "BucketAlreadyExists",
            ErrorCode::BucketAlreadyOwnedByYou => "BucketAlreadyOwnedByYou",
            ErrorCode::EntityAlreadyExists => "EntityAlreadyExists",
            ErrorCode::MalformedPolicyDocument => "MalformedPolicyDocument",
            ErrorCode::LimitExceeded => "LimitExceeded",
            ErrorCode::NotImplemented => "NotImplemented",
            ErrorCode::NotFound => "NotFound",
            ErrorCode::Other(code) => code,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed object storage call: which operation, on what, and why.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The service answered with an error code.
    #[error("{operation} on {subject} failed: {code} (HTTP {status}): {message}")]
    Service {
        /// The operation.
        operation: Operation,
        /// What it was about.
        subject: Subject,
        /// HTTP status of the answer.
        status: u16,
        /// The service's error code.
        code: ErrorCode,
        /// The service's message.
        message: String,
    },
    /// The service could not be reached, or the connection broke.
    #[error("{operation} on {subject}: could not reach {endpoint}: {source}")]
    Transport {
        /// The operation.
        operation: Operation,
        /// What it was about.
        subject: Subject,
        /// The endpoint that was called.
        endpoint: String,
        /// The underlying I/O or HTTP error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No complete answer within the configured request timeout.
    #[error("{operation} on {subject}: no answer from {endpoint} within {timeout:?}")]
    Timeout {
        /// The operation.
        operation: Operation,
        /// What it was about.
        subject: Subject,
        /// The endpoint that was called.
        endpoint: String,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// The service answered success with a body this module cannot read.
    #[error("{operation} on {subject}: unexpected response: {detail}")]
    UnexpectedResponse {
        /// The operation.
        operation: Operation,
        /// What it was about.
        subject: Subject,
        /// What was wrong with it.
        detail: String,
    },
    /// The [`StorageConfig`] is unusable (bad endpoint URL, unreadable CA bundle), or a request
    /// could not be built from it.
    #[error("invalid object storage configuration: {0}")]
    Config(String),
}

impl StorageError {
    /// The service's error code, if the service answered with one.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            StorageError::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether the service answered that the user (or other IAM entity) does not exist.
    pub fn is_no_such_entity(&self) -> bool {
        self.code() == Some(&ErrorCode::NoSuchEntity)
    }

    /// Whether the service refused the call for lack of permission.
    pub fn is_not_implemented(&self) -> bool {
        self.code() == Some(&ErrorCode::NotImplemented)
    }

    /// Whether the service refused the caller.
    pub fn is_access_denied(&self) -> bool {
        self.code() == Some(&ErrorCode::AccessDenied)
    }

    /// The operation that failed, if any was made.
    pub fn operation(&self) -> Option<Operation> {
        match self {
            StorageError::Service { operation, .. }
            | StorageError::Transport { operation, .. }
            | StorageError::Timeout { operation, .. }
            | StorageError::UnexpectedResponse { operation, .. } => Some(*operation),
            StorageError::Config(_) => None,
        }
    }

    /// Whether retrying the same call later may succeed without anyone changing anything: the
    /// network, a timeout, throttling or a server-side (5xx) error.
    pub fn is_transient(&self) -> bool {
        match self {
            StorageError::Transport { .. } | StorageError::Timeout { .. } => true,
            StorageError::Service { status, code, .. } => {
                (*status >= 500 && *code != ErrorCode::NotImplemented)
                    || *status == 429
                    || matches!(code, ErrorCode::Other(c) if c == "SlowDown")
            }
            StorageError::UnexpectedResponse { .. } | StorageError::Config(_) => false,
        }
    }

    /// A short, bounded label for metrics and Event reasons: the error code, or the kind of
    /// failure when the service did not answer with one.
    pub fn reason(&self) -> &str {
        match self {
            StorageError::Service { code, .. } => code.as_str(),
            StorageError::Transport { .. } => "Unreachable",
            StorageError::Timeout { .. } => "Timeout",
            StorageError::UnexpectedResponse { .. } => "UnexpectedResponse",
            StorageError::Config(_) => "InvalidConfig",
        }
    }
}

/// IAM identities: users, their access keys and their inline policies. Implemented by
/// [`IamIdentityStore`] (an IAM API: AWS, SeaweedFS, Ceph RGW) and [`FakeObjectStore`]; a
/// store without the IAM API (MinIO) can plug in another backend here.
#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// Creates the IAM user unless it exists (looking first, so an existing user costs no write).
    /// Returns `true` when this call created it.
    async fn ensure_user(&self, user: &str) -> Result<bool, StorageError>;

    /// Whether the IAM user exists.
    async fn user_exists(&self, user: &str) -> Result<bool, StorageError>;

    /// The user's ARN as the IAM API reports it, which bucket policies name as the principal
    /// (on AWS it carries the account, on SeaweedFS a placeholder account), or `None` when there
    /// is no such user.
    async fn user_arn(&self, user: &str) -> Result<Option<String>, StorageError>;

    /// Deletes the IAM user with all its access keys and inline policies. Returns `false` when
    /// there was no such user.
    async fn delete_user(&self, user: &str) -> Result<bool, StorageError>;

    /// The user's access keys (ids and status, never secrets). Empty for a missing user.
    async fn list_access_keys(&self, user: &str) -> Result<Vec<AccessKeyMetadata>, StorageError>;

    /// Creates a new access key for the user. Its secret is in the answer and nowhere else.
    async fn create_access_key(&self, user: &str) -> Result<AccessKey, StorageError>;

    /// Deletes one access key of the user; a key that is already gone is not an error.
    async fn delete_access_key(&self, user: &str, access_key_id: &str) -> Result<(), StorageError>;

    /// Creates or replaces the user's inline policy `policy_name`.
    async fn put_user_policy(
        &self,
        user: &str,
        policy_name: &str,
        document: &PolicyDocument,
    ) -> Result<(), StorageError>;

    /// The user's inline policy `policy_name`, or `None` if it has none of that name.
    async fn get_user_policy(
        &self,
        user: &str,
        policy_name: &str,
    ) -> Result<Option<PolicyDocument>, StorageError>;

    /// Deletes the user's inline policy `policy_name`; a missing policy is not an error.
    async fn delete_user_policy(&self, user: &str, policy_name: &str) -> Result<(), StorageError>;

    /// Names of the user's inline policies, sorted.
    async fn list_user_policies(&self, user: &str) -> Result<Vec<String>, StorageError>;

    /// The user's tags (empty for a missing user).
    async fn user_tags(&self, user: &str) -> Result<UserTags, StorageError>;

    /// Adds or overwrites the given tags on the user; tags it does not name stay.
    async fn tag_user(&self, user: &str, tags: &UserTags) -> Result<(), StorageError>;
}

/// An IAM user's tags, by key.
pub type UserTags = BTreeMap<String, String>;

/// S3 buckets and their configuration. Implemented by [`S3BucketStore`] (any S3 service) and
/// [`FakeObjectStore`].
#[async_trait]
pub trait BucketStore: Send + Sync {
    /// Creates the bucket unless it exists (looking first, so an existing bucket costs no write;
    /// an existing bucket is not an error). Returns `true` when this call created it.
    async fn ensure_bucket(&self, bucket: &str) -> Result<bool, StorageError>;

    /// Whether the bucket exists.
    async fn bucket_exists(&self, bucket: &str) -> Result<bool, StorageError>;

    /// The bucket's versioning state.
    async fn get_versioning(&self, bucket: &str) -> Result<Versioning, StorageError>;

    /// Enables versioning, or suspends it when `enabled` is false (S3 cannot turn it off).
    async fn put_versioning(&self, bucket: &str, enabled: bool) -> Result<(), StorageError>;

    /// Days after which objects expire, from the operator's own lifecycle rule
    /// [`EXPIRATION_RULE_ID`] if it is an enabled expiration of the whole bucket; `None`
    /// otherwise. Other rules are someone else's and not read, even whole-bucket expirations.
    async fn get_expiration_days(&self, bucket: &str) -> Result<Option<u32>, StorageError>;

    /// Sets the operator's lifecycle rule [`EXPIRATION_RULE_ID`] to expire every object after
    /// `days`, or removes it for `None`, keeping every other rule of the bucket exactly as it was
    /// (an adopted bucket keeps the rules others set). Reads the configuration, merges, and
    /// writes only if that changed it; the configuration is deleted only when no rule is left.
    /// S3 has no conditional write for lifecycle, so a rule another client writes between the
    /// read and the write is lost; the window is one round trip.
    async fn put_expiration_days(
        &self,
        bucket: &str,
        days: Option<u32>,
    ) -> Result<(), StorageError>;

    /// The bucket's tags; empty when it has none.
    async fn get_tags(&self, bucket: &str) -> Result<BucketTags, StorageError>;

    /// The bucket's tags (empty when it has none), or `None` when there is no such bucket. One
    /// `GetBucketTagging` answers both, as it says `NoSuchBucket` for a missing bucket (AWS and
    /// SeaweedFS alike), so observing a bucket needs no `HeadBucket` before it.
    async fn get_tags_if_exists(&self, bucket: &str) -> Result<Option<BucketTags>, StorageError> {
        match self.get_tags(bucket).await {
            Err(error) if error.code() == Some(&ErrorCode::NoSuchBucket) => Ok(None),
            answer => answer.map(Some),
        }
    }

    /// Replaces the bucket's tags; an empty map removes them.
    async fn put_tags(&self, bucket: &str, tags: &BucketTags) -> Result<(), StorageError>;

    /// The bucket's policy document (JSON, as the service returns it), or `None` when the bucket
    /// has no policy.
    async fn get_bucket_policy(&self, bucket: &str) -> Result<Option<String>, StorageError>;

    /// Replaces the bucket's policy with `document` (JSON).
    async fn put_bucket_policy(&self, bucket: &str, document: &str) -> Result<(), StorageError>;

    /// Deletes the bucket's policy; a bucket without one is not an error.
    async fn delete_bucket_policy(&self, bucket: &str) -> Result<(), StorageError>;

    /// Names of all buckets the identity can see, sorted.
    async fn list_buckets(&self) -> Result<Vec<String>, StorageError>;

    /// Deletes an empty bucket. A bucket that still holds objects, versions or delete markers is
    /// refused with [`ErrorCode::BucketNotEmpty`] (even on servers that would delete it).
    /// Returns `false` when there was no such bucket.
    async fn delete_bucket(&self, bucket: &str) -> Result<bool, StorageError>;

    /// Permanently deletes every object, version and delete marker in the bucket, and returns how
    /// many entries it deleted (0 for a bucket that does not exist, so a deletion interrupted
    /// after the bucket went can be repeated). Only for `deletionPolicy: Delete`: this destroys
    /// data.
    async fn empty_bucket(&self, bucket: &str) -> Result<u64, StorageError>;
}

/// Everything the reconcilers need from object storage: buckets and the identities that may use
/// them, each call idempotent where the API allows. Any type that is both is one, e.g.
/// [`ObjectStorage`] (an S3 service and an IAM API, possibly at different places) and
/// [`FakeObjectStore`] (in-process, for unit tests); use it as `Arc<dyn ObjectStore>`.
pub trait ObjectStore: BucketStore + IdentityStore {}

impl<T: BucketStore + IdentityStore + ?Sized> ObjectStore for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let key = AccessKey {
            access_key_id: "AKIA1".into(),
            secret_access_key: SecretString::new("hunter2"),
        };
        let shown = format!("{key:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("AKIA1"));
        let config =
            StorageConfig::new("http://a", "http://a", "admin", SecretString::new("s3cr3t"));
        assert!(!format!("{config:?}").contains("s3cr3t"));
    }

    #[test]
    fn errors_name_the_call_the_subject_and_the_code() {
        let error = StorageError::Service {
            operation: Operation::PutBucketVersioning,
            subject: Subject::Bucket("payments-orders-lake".into()),
            status: 403,
            code: ErrorCode::AccessDenied,
            message: "Access Denied.".into(),
        };
        assert_eq!(
            error.to_string(),
            "PutBucketVersioning on bucket \"payments-orders-lake\" failed: AccessDenied (HTTP 403): Access Denied."
        );
        assert!(error.is_access_denied());
        assert!(!error.is_transient());
        assert_eq!(error.reason(), "AccessDenied");
        assert_eq!(error.operation(), Some(Operation::PutBucketVersioning));
    }

    #[test]
    fn error_codes_round_trip() {
        for code in [
            "AccessDenied",
            "NoSuchBucket",
            "NoSuchEntity",
            "BucketNotEmpty",
            "Weird",
        ] {
            assert_eq!(ErrorCode::parse(code).as_str(), code);
        }
        assert_eq!(
            ErrorCode::parse("InvalidClientTokenId"),
            ErrorCode::InvalidAccessKeyId
        );
    }

    #[test]
    fn server_errors_and_throttling_are_transient() {
        let service = |status, code: &str| StorageError::Service {
            operation: Operation::ListBuckets,
            subject: Subject::Service,
            status,
            code: ErrorCode::parse(code),
            message: String::new(),
        };
        assert!(service(500, "InternalError").is_transient());
        assert!(service(503, "SlowDown").is_transient());
        assert!(!service(404, "NoSuchBucket").is_transient());
        // A call the service does not have is not worth retrying.
        let missing = service(501, "NotImplemented");
        assert!(!missing.is_transient() && missing.is_not_implemented());
    }
}
