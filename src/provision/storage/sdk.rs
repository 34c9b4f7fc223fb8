//! The real object store: the AWS SDK's S3 client ([`S3BucketStore`]) and IAM client
//! ([`IamIdentityStore`]), paired in [`ObjectStorage`].
//!
//! The SDK signs (SigV4, for the configured region of each API), retries throttling, 5xx
//! answers and broken connections with exponential backoff and jitter, paginates, and takes
//! credentials from a static pair or its default chain (refreshing temporary ones). This module
//! adds what the reconcilers need on top: idempotent calls (creating what exists, deleting what
//! is gone), the operator's lifecycle rule merged with others' rules, the refusal to delete a
//! bucket that holds anything, and errors mapped onto [`StorageError`].

use std::fmt;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::provider_config::ProviderConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketLocationConstraint, BucketVersioningStatus,
    CreateBucketConfiguration, Delete, LifecycleRule, ObjectIdentifier, Tag, Tagging,
    VersioningConfiguration,
};
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use aws_types::region::Region;
use bytes::Bytes;

use crate::metrics::RequestCounter;

use super::lifecycle::{self, LifecycleChange};
use super::{
    AccessKey, AccessKeyMetadata, Addressing, BucketStore, BucketTags, EXPIRATION_RULE_ID,
    ErrorCode, IdentityStore, Operation, PolicyDocument, RetryMode, SecretString, StorageConfig,
    StorageCredentials, StorageError, Subject, UserTags, Versioning,
};

/// Most keys one `DeleteObjects` call may name (the S3 limit).
const DELETE_BATCH: i32 = 1000;

/// Buckets from one backend and identities from another, as one [`super::ObjectStore`]:
/// [`SdkObjectStorage`] for an S3 service with the IAM API, or an S3 service without it (MinIO)
/// paired with an identity backend of its own.
#[derive(Clone, Debug)]
pub struct ObjectStorage<B, I> {
    /// Where buckets are.
    pub buckets: B,
    /// Where users, access keys and inline policies are.
    pub identities: I,
}

/// The S3 and IAM clients of one identity, built from one [`StorageConfig`].
///
/// Cheap to share: hold it in an `Arc` (or as `Arc<dyn ObjectStore>`); both clients share one
/// connection pool and one credentials provider. Construct one per identity: the operator's admin
/// identity for provisioning, or a domain's own keys to act (and be refused) as that domain.
pub type SdkObjectStorage = ObjectStorage<S3BucketStore, IamIdentityStore>;

impl SdkObjectStorage {
    /// The S3 service and its IAM API as `config` says, counting requests with `requests`.
    /// Fails on an unusable configuration (an unreadable CA bundle); it does not connect yet.
    pub async fn connect(
        config: &StorageConfig,
        requests: RequestCounter,
    ) -> Result<Self, StorageError> {
        let parts = SdkParts::new(config).await?;
        Ok(Self {
            buckets: S3BucketStore::from_parts(config, &parts, requests.clone()),
            identities: IamIdentityStore::from_parts(config, &parts, requests),
        })
    }

    /// Writes an object. A data-plane call, for end-to-end checks of what an identity may do.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: impl Into<Bytes>,
    ) -> Result<(), StorageError> {
        self.buckets.put_object(bucket, key, body).await
    }

    /// Reads an object. A data-plane call, for end-to-end checks of what an identity may do.
    pub async fn get_object(&self, bucket: &str, key: &str) -> Result<Bytes, StorageError> {
        self.buckets.get_object(bucket, key).await
    }
}

/// What the S3 and IAM clients share: the HTTP client (TLS roots included) and the credentials.
struct SdkParts {
    http: SharedHttpClient,
    credentials: SharedCredentialsProvider,
}

impl SdkParts {
    /// The default chain, if configured, looks in the process's own environment and files, and
    /// calls STS and the metadata endpoints with the system's CA roots: the CA bundle is the S3
    /// service's, and AWS STS is not signed by it.
    async fn new(config: &StorageConfig) -> Result<Self, StorageError> {
        let http = http_client(config.ca_bundle.as_deref())?;
        let provider = match config.credentials {
            StorageCredentials::DefaultChain => {
                ProviderConfig::default().with_http_client(http_client(None)?)
            }
            StorageCredentials::Static { .. } => ProviderConfig::default(),
        };
        let credentials = credentials_provider(config, provider).await;
        Ok(Self { http, credentials })
    }
}

/// The operator's credentials: the static pair, or the SDK's default chain looking where
/// `provider` says (environment, profile files, web identity token, container and instance
/// metadata endpoints), cached and refreshed before temporary credentials expire.
async fn credentials_provider(
    config: &StorageConfig,
    provider: ProviderConfig,
) -> SharedCredentialsProvider {
    match &config.credentials {
        StorageCredentials::Static {
            access_key_id,
            secret_access_key,
        } => SharedCredentialsProvider::new(Credentials::new(
            access_key_id,
            secret_access_key.expose(),
            None,
            None,
            "datamesh-static",
        )),
        StorageCredentials::DefaultChain => SharedCredentialsProvider::new(
            DefaultCredentialsChain::builder()
                .configure(provider)
                // STS is called in the buckets' region rather than wherever the environment says.
                .region(Region::new(config.region.clone()))
                .build()
                .await,
        ),
    }
}

/// An HTTP(S) client on rustls with ring, trusting `ca_bundle` (PEM) alone when given, else the
/// system's roots.
fn http_client(ca_bundle: Option<&str>) -> Result<SharedHttpClient, StorageError> {
    let trust = match ca_bundle {
        Some(pem) => {
            check_ca_bundle(pem)?;
            TrustStore::empty().with_pem_certificate(pem.as_bytes())
        }
        None => TrustStore::default(),
    };
    let tls_context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|error| StorageError::Config(format!("unusable CA bundle: {error}")))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(tls_context)
        .build_https())
}

/// Refuses a CA bundle that is not one or more PEM certificates usable as trust anchors. The
/// SDK's TLS layer reads the bundle only at the first connection, and panics on one it cannot.
fn check_ca_bundle(pem: &str) -> Result<(), StorageError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let invalid = |why: String| StorageError::Config(format!("unusable CA bundle: {why}"));
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| invalid(format!("not PEM certificates: {error}")))?;
    if certificates.is_empty() {
        return Err(invalid("it holds no PEM certificate".into()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates {
        roots
            .add(certificate)
            .map_err(|error| invalid(format!("a certificate is not a usable CA: {error}")))?;
    }
    Ok(())
}

fn retry_config(config: &StorageConfig) -> RetryConfig {
    let base = match config.retry_mode {
        RetryMode::Standard => RetryConfig::standard(),
        RetryMode::Adaptive => RetryConfig::adaptive(),
    };
    base.with_max_attempts(config.max_attempts.max(1))
        .with_initial_backoff(config.initial_backoff)
}

fn timeout_config(config: &StorageConfig) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
        .operation_attempt_timeout(config.request_timeout)
        .build()
}

/// Buckets of an S3 service, through the SDK's S3 client.
#[derive(Clone)]
pub struct S3BucketStore {
    client: aws_sdk_s3::Client,
    region: String,
    calls: Calls,
}

impl fmt::Debug for S3BucketStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3BucketStore")
            .field("endpoint", &self.calls.endpoint)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// IAM users, access keys and inline policies, through the SDK's IAM client.
#[derive(Clone)]
pub struct IamIdentityStore {
    client: aws_sdk_iam::Client,
    calls: Calls,
}

/// How one service's calls are sent: counted per operation, logged, and their errors mapped
/// onto [`StorageError`] naming the endpoint. Shared by the S3 and the IAM store.
#[derive(Clone)]
struct Calls {
    /// The service name the request counter uses: `s3` or `iam`.
    service: &'static str,
    endpoint: String,
    timeout: Duration,
    requests: RequestCounter,
}

impl Calls {
    /// Sends one call (the SDK retries it as configured), counted as `operation`.
    async fn send<T, E, F>(
        &self,
        operation: Operation,
        subject: &Subject,
        call: F,
    ) -> Result<T, StorageError>
    where
        F: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let _timer = self.requests.count(self.service, operation.as_str());
        let result = call.await;
        tracing::debug!(%operation, %subject, ok = result.is_ok(), "object storage call");
        result
            .map_err(|error| storage_error(operation, subject, &self.endpoint, self.timeout, error))
    }
}

impl fmt::Debug for IamIdentityStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IamIdentityStore")
            .field("endpoint", &self.calls.endpoint)
            .finish_non_exhaustive()
    }
}

impl S3BucketStore {
    /// An S3 client for `config`, on its own HTTP client.
    pub async fn new(config: &StorageConfig) -> Result<Self, StorageError> {
        let parts = SdkParts::new(config).await?;
        Ok(Self::from_parts(config, &parts, RequestCounter::default()))
    }

    fn from_parts(config: &StorageConfig, parts: &SdkParts, requests: RequestCounter) -> Self {
        let s3 = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .endpoint_url(&config.endpoint)
            .force_path_style(config.addressing == Addressing::Path)
            .credentials_provider(parts.credentials.clone())
            .http_client(parts.http.clone())
            .retry_config(retry_config(config))
            .timeout_config(timeout_config(config))
            // Checksums only where the API requires one (DeleteObjects and the bucket
            // configurations): S3-compatible services differ in the flexible checksums they
            // take, and nothing here streams objects of any size.
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            )
            .build();
        Self {
            client: aws_sdk_s3::Client::from_conf(s3),
            region: config.region.clone(),
            calls: Calls {
                service: "s3",
                endpoint: config.endpoint.clone(),
                timeout: config.request_timeout,
                requests,
            },
        }
    }

    /// Writes an object. A data-plane call, for end-to-end checks of what an identity may do.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: impl Into<Bytes>,
    ) -> Result<(), StorageError> {
        let subject = Subject::Object {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        };
        let request = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body.into()))
            .send();
        self.calls
            .send(Operation::PutObject, &subject, request)
            .await
            .map(drop)
    }

    /// Reads an object. A data-plane call, for end-to-end checks of what an identity may do.
    pub async fn get_object(&self, bucket: &str, key: &str) -> Result<Bytes, StorageError> {
        let subject = Subject::Object {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        };
        let request = self.client.get_object().bucket(bucket).key(key).send();
        let output = self
            .calls
            .send(Operation::GetObject, &subject, request)
            .await?;
        let body = output
            .body
            .collect()
            .await
            .map_err(|error| StorageError::Transport {
                operation: Operation::GetObject,
                subject,
                endpoint: self.calls.endpoint.clone(),
                source: Box::new(error),
            })?;
        Ok(body.into_bytes())
    }

    /// The bucket's lifecycle rules; `None` without a configuration.
    async fn lifecycle(&self, bucket: &str) -> Result<Option<Vec<LifecycleRule>>, StorageError> {
        let subject = Subject::Bucket(bucket.to_owned());
        let request = self
            .client
            .get_bucket_lifecycle_configuration()
            .bucket(bucket)
            .send();
        let result = self
            .calls
            .send(
                Operation::GetBucketLifecycleConfiguration,
                &subject,
                request,
            )
            .await;
        if failed_with(&result, &[ErrorCode::NoSuchLifecycleConfiguration]) {
            return Ok(None);
        }
        Ok(Some(result?.rules().to_vec()))
    }

    /// One page (up to `max_keys`) of versions and delete markers, from the start of the bucket.
    async fn first_versions(
        &self,
        bucket: &str,
        max_keys: i32,
    ) -> Result<Vec<ObjectIdentifier>, StorageError> {
        let subject = Subject::Bucket(bucket.to_owned());
        let request = self
            .client
            .list_object_versions()
            .bucket(bucket)
            .max_keys(max_keys)
            .send();
        let page = self
            .calls
            .send(Operation::ListObjectVersions, &subject, request)
            .await?;
        let versions = page
            .versions()
            .iter()
            .map(|version| (version.key(), version.version_id()));
        let markers = page
            .delete_markers()
            .iter()
            .map(|marker| (marker.key(), marker.version_id()));
        versions
            .chain(markers)
            .map(|(key, version_id)| {
                ObjectIdentifier::builder()
                    .key(key.unwrap_or_default())
                    .set_version_id(version_id.map(str::to_owned))
                    .build()
                    .map_err(|error| StorageError::UnexpectedResponse {
                        operation: Operation::ListObjectVersions,
                        subject: subject.clone(),
                        detail: error.to_string(),
                    })
            })
            .collect()
    }
}

impl IamIdentityStore {
    /// An IAM client for `config`, on its own HTTP client.
    pub async fn new(config: &StorageConfig) -> Result<Self, StorageError> {
        let parts = SdkParts::new(config).await?;
        Ok(Self::from_parts(config, &parts, RequestCounter::default()))
    }

    fn from_parts(config: &StorageConfig, parts: &SdkParts, requests: RequestCounter) -> Self {
        let iam = aws_sdk_iam::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.iam_region.clone()))
            .endpoint_url(&config.iam_endpoint)
            .credentials_provider(parts.credentials.clone())
            .http_client(parts.http.clone())
            .retry_config(retry_config(config))
            .timeout_config(timeout_config(config))
            .build();
        Self {
            client: aws_sdk_iam::Client::from_conf(iam),
            calls: Calls {
                service: "iam",
                endpoint: config.iam_endpoint.clone(),
                timeout: config.request_timeout,
                requests,
            },
        }
    }
}

/// Maps an SDK failure onto [`StorageError`], keeping the service's code, so that callers and the
/// controllers' conditions (`StorageAccessDenied`, `StorageUnavailable`, ...) see what they saw
/// before the SDK.
fn storage_error<E>(
    operation: Operation,
    subject: &Subject,
    endpoint: &str,
    timeout: Duration,
    error: SdkError<E, HttpResponse>,
) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let subject = subject.clone();
    let timed_out = || StorageError::Timeout {
        operation,
        subject: subject.clone(),
        endpoint: endpoint.to_owned(),
        timeout,
    };
    let context = || DisplayErrorContext(&error).to_string();
    match &error {
        SdkError::ServiceError(failure) => service_error(
            operation,
            subject.clone(),
            failure.raw().status().as_u16(),
            failure.err().code(),
            failure.err().message(),
        ),
        SdkError::TimeoutError(_) => timed_out(),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => timed_out(),
        // E.g. no credentials could be loaded: nothing the network will fix by itself.
        SdkError::DispatchFailure(failure) if failure.is_user() => {
            StorageError::Config(format!("{operation} on {subject}: {}", context()))
        }
        SdkError::ConstructionFailure(_) => {
            StorageError::Config(format!("{operation} on {subject}: {}", context()))
        }
        SdkError::ResponseError(failure) => StorageError::UnexpectedResponse {
            operation,
            subject: subject.clone(),
            detail: format!("HTTP {}: {}", failure.raw().status().as_u16(), context()),
        },
        // Connections refused or broken, TLS failures, and whatever the SDK adds.
        _ => StorageError::Transport {
            operation,
            subject: subject.clone(),
            endpoint: endpoint.to_owned(),
            source: Box::new(error),
        },
    }
}

/// The [`StorageError::Service`] for an error answer: its code, or one derived from the status
/// when the answer named none (HEAD answers carry no body).
fn service_error(
    operation: Operation,
    subject: Subject,
    status: u16,
    code: Option<&str>,
    message: Option<&str>,
) -> StorageError {
    let code = match code {
        Some(code) if !code.is_empty() => ErrorCode::parse(code),
        _ => match status {
            404 => ErrorCode::NotFound,
            403 => ErrorCode::AccessDenied,
            other => ErrorCode::Other(format!("HTTP {other}")),
        },
    };
    let message = message
        .filter(|message| !message.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| {
            http::StatusCode::from_u16(status)
                .ok()
                .and_then(|status| status.canonical_reason())
                .unwrap_or("no message")
                .to_owned()
        });
    StorageError::Service {
        operation,
        subject,
        status,
        code,
        message,
    }
}

/// The marker of the next page of an IAM list: the one the service sent, when it says the list
/// is truncated and the marker moved (a service repeating its marker would loop forever).
fn next_marker(current: Option<&str>, truncated: bool, next: Option<&str>) -> Option<String> {
    next.filter(|next| truncated && Some(*next) != current)
        .map(str::to_owned)
}

/// Whether `result` failed with one of `codes`.
fn failed_with<T>(result: &Result<T, StorageError>, codes: &[ErrorCode]) -> bool {
    matches!(result, Err(error) if error.code().is_some_and(|code| codes.contains(code)))
}

/// Reads a policy document as `GetUserPolicy` returns it: URL-encoded JSON on AWS, plain JSON on
/// SeaweedFS.
fn decode_policy_document(raw: &str) -> Result<PolicyDocument, String> {
    let trimmed = raw.trim();
    let json = if trimmed.starts_with('{') {
        trimmed.to_owned()
    } else {
        percent_encoding::percent_decode_str(trimmed)
            .decode_utf8()
            .map_err(|error| format!("policy document is not UTF-8: {error}"))?
            .into_owned()
    };
    PolicyDocument::from_json(&json)
        .map_err(|error| format!("policy document is not a policy: {error}"))
}

fn unexpected(operation: Operation, subject: &Subject, detail: impl fmt::Display) -> StorageError {
    StorageError::UnexpectedResponse {
        operation,
        subject: subject.clone(),
        detail: detail.to_string(),
    }
}

#[async_trait]
impl IdentityStore for IamIdentityStore {
    async fn ensure_user(&self, user: &str) -> Result<bool, StorageError> {
        if self.user_exists(user).await? {
            return Ok(false);
        }
        let subject = Subject::User(user.to_owned());
        let request = self.client.create_user().user_name(user).send();
        let result = self
            .calls
            .send(Operation::CreateUser, &subject, request)
            .await;
        if failed_with(&result, &[ErrorCode::EntityAlreadyExists]) {
            return Ok(false);
        }
        result?;
        tracing::info!(user, "created IAM user");
        Ok(true)
    }

    async fn user_exists(&self, user: &str) -> Result<bool, StorageError> {
        let subject = Subject::User(user.to_owned());
        let request = self.client.get_user().user_name(user).send();
        let result = self.calls.send(Operation::GetUser, &subject, request).await;
        if failed_with(&result, &[ErrorCode::NoSuchEntity]) {
            return Ok(false);
        }
        result.map(|_| true)
    }

    async fn user_arn(&self, user: &str) -> Result<Option<String>, StorageError> {
        let subject = Subject::User(user.to_owned());
        let request = self.client.get_user().user_name(user).send();
        let result = self.calls.send(Operation::GetUser, &subject, request).await;
        if failed_with(&result, &[ErrorCode::NoSuchEntity]) {
            return Ok(None);
        }
        let answer = result?;
        let arn = answer.user().map(|found| found.arn().to_owned());
        match arn {
            Some(arn) if !arn.is_empty() => Ok(Some(arn)),
            _ => Err(unexpected(
                Operation::GetUser,
                &subject,
                "the answer names no ARN for the user",
            )),
        }
    }

    async fn delete_user(&self, user: &str) -> Result<bool, StorageError> {
        // Policies first: SeaweedFS keeps them past DeleteUser and would hand them to a user
        // re-created under the same name.
        for policy in self.list_user_policies(user).await? {
            self.delete_user_policy(user, &policy).await?;
        }
        for key in self.list_access_keys(user).await? {
            self.delete_access_key(user, &key.access_key_id).await?;
        }
        let subject = Subject::User(user.to_owned());
        let request = self.client.delete_user().user_name(user).send();
        let result = self
            .calls
            .send(Operation::DeleteUser, &subject, request)
            .await;
        if failed_with(&result, &[ErrorCode::NoSuchEntity]) {
            return Ok(false);
        }
        result?;
        tracing::info!(user, "deleted IAM user");
        Ok(true)
    }

    async fn list_access_keys(&self, user: &str) -> Result<Vec<AccessKeyMetadata>, StorageError> {
        let subject = Subject::User(user.to_owned());
        let mut keys = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let request = self
                .client
                .list_access_keys()
                .user_name(user)
                .set_marker(marker.clone())
                .send();
            let result = self
                .calls
                .send(Operation::ListAccessKeys, &subject, request)
                .await;
            if failed_with(&result, &[ErrorCode::NoSuchEntity]) {
                return Ok(Vec::new());
            }
            let page = result?;
            keys.extend(page.access_key_metadata().iter().filter_map(|key| {
                Some(AccessKeyMetadata {
                    access_key_id: key.access_key_id()?.to_owned(),
                    active: key.status() != Some(&aws_sdk_iam::types::StatusType::Inactive),
                })
            }));
            marker = next_marker(marker.as_deref(), page.is_truncated(), page.marker());
            if marker.is_none() {
                return Ok(keys);
            }
        }
    }

    async fn create_access_key(&self, user: &str) -> Result<AccessKey, StorageError> {
        let subject = Subject::User(user.to_owned());
        let request = self.client.create_access_key().user_name(user).send();
        let created = self
            .calls
            .send(Operation::CreateAccessKey, &subject, request)
            .await?;
        let key = created.access_key().ok_or_else(|| {
            unexpected(
                Operation::CreateAccessKey,
                &subject,
                "the answer holds no access key",
            )
        })?;
        tracing::info!(user, access_key_id = %key.access_key_id(), "created access key");
        Ok(AccessKey {
            access_key_id: key.access_key_id().to_owned(),
            secret_access_key: SecretString::new(key.secret_access_key()),
        })
    }

    async fn delete_access_key(&self, user: &str, access_key_id: &str) -> Result<(), StorageError> {
        let subject = Subject::AccessKey {
            user: user.to_owned(),
            access_key_id: access_key_id.to_owned(),
        };
        let request = self
            .client
            .delete_access_key()
            .user_name(user)
            .access_key_id(access_key_id)
            .send();
        let result = self
            .calls
            .send(Operation::DeleteAccessKey, &subject, request)
            .await;
        if failed_with(&result, &[ErrorCode::NoSuchEntity]) {
            return Ok(());
        }
        result?;
        tracing::info!(user, access_key_id, "deleted access key");
        Ok(())
    }

    async fn put_user_policy(
        &self,
        user: &str,
        policy_name: &str,
        document: &PolicyDocument,
    ) -> Result<(), StorageError> {
        let subject = Subject::UserPolicy {
            user: user.to_owned(),
            policy: policy_name.to_owned(),
        };
        let request = self
            .client
            .put_user_policy()
            .user_name(user)
            .policy_name(policy_name)
            .policy_document(document.to_json())
            .send();
        self.calls
            .send(Operation::PutUserPolicy, &subject, request)
            .await?;
        tracing::info!(user, policy = policy_name, "put IAM user policy");
        Ok(())
    }

    async fn get_user_policy(
        &self,
        user: &str,
        policy_name: &str,
    ) -> Result<Option<PolicyDocument>, StorageError> {
        // SeaweedFS 4.48 answers GetUserPolicy for a name the user does not have with another
        // of the user's policies instead of NoSuchEntity; ListUserPolicies is exact. So a name
        // that is not listed does not exist (one more call, only on reads).
        if !self
            .list_user_policies(user)
            .await?
            .iter()
            .any(|name| name == policy_name)
        {
            return Ok(None);
        }
        let subject = Subject::UserPolicy {
            user: user.to_owned(),
            policy: policy_name.to_owned(),
        };
        let request = self
            .client
            .get_user_policy()
            .user_name(user)
            .policy_name(policy_name)
            .send();
        let result = self
            .calls
            .send(Operation::GetUserPolicy, &subject, request)
            .await;
        if failed_with(&result, &[ErrorCode::NoSuchEntity]) {
            return Ok(None);
        }
        decode_policy_document(result?.policy_document())
            .map(Some)
            .map_err(|detail| unexpected(Operation::GetUserPolicy, &subject, detail))
    }

    async fn delete_user_policy(&self, user: &str, policy_name: &str) -> Result<(), StorageError> {
        let subject = Subject::UserPolicy {
            user: user.to_owned(),
            policy: policy_name.to_owned(),
        };
        let request = self
            .client
            .delete_user_policy()
            .user_name(user)
            .policy_name(policy_name)
            .send();
        let result = self
            .calls
            .send(Operation::DeleteUserPolicy, &subject, request)
            .await;
        if failed_with(&result, &[ErrorCode::NoSuchEntity]) {
            return Ok(());
        }
        result?;
        tracing::info!(user, policy = policy_name, "deleted IAM user policy");
        Ok(())
    }

    async fn list_user_policies(&self, user: &str) -> Result<Vec<String>, StorageError> {
        let subject = Subject::User(user.to_owned());
        let mut names = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let request = self
                .client
                .list_user_policies()
                .user_name(user)
                .set_marker(marker.clone())
                .send();
            let result = self
                .calls
                .send(Operation::ListUserPolicies, &subject, request)
                .await;
            if failed_with(&result, &[ErrorCode::NoSuchEntity]) {
                return Ok(Vec::new());
            }
            let page = result?;
            names.extend(page.policy_names().iter().cloned());
            marker = next_marker(marker.as_deref(), page.is_truncated(), page.marker());
            if marker.is_none() {
                break;
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn user_tags(&self, user: &str) -> Result<UserTags, StorageError> {
        let subject = Subject::User(user.to_owned());
        let mut tags = UserTags::new();
        let mut marker: Option<String> = None;
        loop {
            let request = self
                .client
                .list_user_tags()
                .user_name(user)
                .set_marker(marker.clone())
                .send();
            let result = self
                .calls
                .send(Operation::ListUserTags, &subject, request)
                .await;
            if failed_with(&result, &[ErrorCode::NoSuchEntity]) {
                return Ok(UserTags::new());
            }
            let page = result?;
            tags.extend(
                page.tags()
                    .iter()
                    .map(|tag| (tag.key().to_owned(), tag.value().to_owned())),
            );
            marker = next_marker(marker.as_deref(), page.is_truncated(), page.marker());
            if marker.is_none() {
                break;
            }
        }
        Ok(tags)
    }

    async fn tag_user(&self, user: &str, tags: &UserTags) -> Result<(), StorageError> {
        let subject = Subject::User(user.to_owned());
        let mut request = self.client.tag_user().user_name(user);
        for (key, value) in tags {
            let tag = aws_sdk_iam::types::Tag::builder()
                .key(key)
                .value(value)
                .build()
                .map_err(|e| unexpected(Operation::TagUser, &subject, e.to_string()))?;
            request = request.tags(tag);
        }
        self.calls
            .send(Operation::TagUser, &subject, request.send())
            .await?;
        tracing::info!(user, "tagged IAM user");
        Ok(())
    }
}

#[async_trait]
impl BucketStore for S3BucketStore {
    async fn ensure_bucket(&self, bucket: &str) -> Result<bool, StorageError> {
        if self.bucket_exists(bucket).await? {
            return Ok(false);
        }
        let subject = Subject::Bucket(bucket.to_owned());
        let mut request = self.client.create_bucket().bucket(bucket);
        if self.region != StorageConfig::DEFAULT_REGION {
            // Outside us-east-1, AWS wants the region named in the request.
            request = request.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(self.region.as_str()))
                    .build(),
            );
        }
        let result = self
            .calls
            .send(Operation::CreateBucket, &subject, request.send())
            .await;
        if failed_with(&result, &[ErrorCode::BucketAlreadyOwnedByYou]) {
            return Ok(false);
        }
        // Some servers say BucketAlreadyExists for their own buckets too; AWS says it only when
        // someone else owns the name. We can tell the two apart by whether we can see it.
        if failed_with(&result, &[ErrorCode::BucketAlreadyExists])
            && self.bucket_exists(bucket).await.unwrap_or(false)
        {
            return Ok(false);
        }
        result?;
        tracing::info!(bucket, "created bucket");
        Ok(true)
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool, StorageError> {
        let subject = Subject::Bucket(bucket.to_owned());
        let request = self.client.head_bucket().bucket(bucket).send();
        let result = self
            .calls
            .send(Operation::HeadBucket, &subject, request)
            .await;
        if failed_with(&result, &[ErrorCode::NotFound, ErrorCode::NoSuchBucket]) {
            return Ok(false);
        }
        result.map(|_| true)
    }

    async fn get_versioning(&self, bucket: &str) -> Result<Versioning, StorageError> {
        let subject = Subject::Bucket(bucket.to_owned());
        let request = self.client.get_bucket_versioning().bucket(bucket).send();
        let answer = self
            .calls
            .send(Operation::GetBucketVersioning, &subject, request)
            .await?;
        match answer.status() {
            None => Ok(Versioning::Unversioned),
            Some(BucketVersioningStatus::Enabled) => Ok(Versioning::Enabled),
            Some(BucketVersioningStatus::Suspended) => Ok(Versioning::Suspended),
            Some(other) if other.as_str().is_empty() => Ok(Versioning::Unversioned),
            Some(other) => Err(unexpected(
                Operation::GetBucketVersioning,
                &subject,
                format!("unknown versioning status {:?}", other.as_str()),
            )),
        }
    }

    async fn put_versioning(&self, bucket: &str, enabled: bool) -> Result<(), StorageError> {
        let subject = Subject::Bucket(bucket.to_owned());
        let status = if enabled {
            BucketVersioningStatus::Enabled
        } else {
            BucketVersioningStatus::Suspended
        };
        let request = self
            .client
            .put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(VersioningConfiguration::builder().status(status).build())
            .send();
        self.calls
            .send(Operation::PutBucketVersioning, &subject, request)
            .await?;
        tracing::info!(bucket, enabled, "set bucket versioning");
        Ok(())
    }

    async fn get_expiration_days(&self, bucket: &str) -> Result<Option<u32>, StorageError> {
        Ok(self
            .lifecycle(bucket)
            .await?
            .and_then(|rules| lifecycle::expiration_days(&rules, EXPIRATION_RULE_ID)))
    }

    async fn put_expiration_days(
        &self,
        bucket: &str,
        days: Option<u32>,
    ) -> Result<(), StorageError> {
        let subject = Subject::Bucket(bucket.to_owned());
        let current = self.lifecycle(bucket).await?;
        let change =
            lifecycle::change(current.as_deref(), EXPIRATION_RULE_ID, days).map_err(|detail| {
                unexpected(Operation::PutBucketLifecycleConfiguration, &subject, detail)
            })?;
        let merged = match change {
            LifecycleChange::Unchanged => return Ok(()),
            LifecycleChange::Put(merged) => merged,
            LifecycleChange::Delete => {
                let request = self.client.delete_bucket_lifecycle().bucket(bucket).send();
                let result = self
                    .calls
                    .send(Operation::DeleteBucketLifecycle, &subject, request)
                    .await;
                if !failed_with(&result, &[ErrorCode::NoSuchLifecycleConfiguration]) {
                    result?;
                }
                tracing::info!(bucket, "removed bucket lifecycle");
                return Ok(());
            }
        };
        let configuration = BucketLifecycleConfiguration::builder()
            .set_rules(Some(merged))
            .build()
            .map_err(|error| {
                unexpected(Operation::PutBucketLifecycleConfiguration, &subject, error)
            })?;
        let request = self
            .client
            .put_bucket_lifecycle_configuration()
            .bucket(bucket)
            .lifecycle_configuration(configuration)
            .send();
        self.calls
            .send(
                Operation::PutBucketLifecycleConfiguration,
                &subject,
                request,
            )
            .await?;
        tracing::info!(bucket, ?days, "set the operator's bucket expiration rule");
        Ok(())
    }

    async fn get_tags(&self, bucket: &str) -> Result<BucketTags, StorageError> {
        let subject = Subject::Bucket(bucket.to_owned());
        let request = self.client.get_bucket_tagging().bucket(bucket).send();
        let result = self
            .calls
            .send(Operation::GetBucketTagging, &subject, request)
            .await;
        if failed_with(&result, &[ErrorCode::NoSuchTagSet]) {
            return Ok(BucketTags::new());
        }
        Ok(result?
            .tag_set()
            .iter()
            .map(|tag| (tag.key().to_owned(), tag.value().to_owned()))
            .collect())
    }

    async fn get_bucket_policy(&self, bucket: &str) -> Result<Option<String>, StorageError> {
        let subject = Subject::Bucket(bucket.to_owned());
        let request = self.client.get_bucket_policy().bucket(bucket).send();
        let result = self
            .calls
            .send(Operation::GetBucketPolicy, &subject, request)
            .await;
        if failed_with(&result, &[ErrorCode::NoSuchBucketPolicy]) {
            return Ok(None);
        }
        Ok(result?.policy().map(str::to_owned))
    }

    async fn put_bucket_policy(&self, bucket: &str, document: &str) -> Result<(), StorageError> {
        let subject = Subject::Bucket(bucket.to_owned());
        let request = self
            .client
            .put_bucket_policy()
            .bucket(bucket)
            .policy(document)
            .send();
        self.calls
            .send(Operation::PutBucketPolicy, &subject, request)
            .await?;
        Ok(())
    }

    async fn delete_bucket_policy(&self, bucket: &str) -> Result<(), StorageError> {
        let subject = Subject::Bucket(bucket.to_owned());
        let request = self.client.delete_bucket_policy().bucket(bucket).send();
        let result = self
            .calls
            .send(Operation::DeleteBucketPolicy, &subject, request)
            .await;
        if !failed_with(&result, &[ErrorCode::NoSuchBucketPolicy]) {
            result?;
        }
        Ok(())
    }

    async fn put_tags(&self, bucket: &str, tags: &BucketTags) -> Result<(), StorageError> {
        let subject = Subject::Bucket(bucket.to_owned());
        if tags.is_empty() {
            let request = self.client.delete_bucket_tagging().bucket(bucket).send();
            let result = self
                .calls
                .send(Operation::DeleteBucketTagging, &subject, request)
                .await;
            if !failed_with(&result, &[ErrorCode::NoSuchTagSet]) {
                result?;
            }
            return Ok(());
        }
        let tag_set = tags
            .iter()
            .map(|(key, value)| Tag::builder().key(key).value(value).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| unexpected(Operation::PutBucketTagging, &subject, error))?;
        let tagging = Tagging::builder()
            .set_tag_set(Some(tag_set))
            .build()
            .map_err(|error| unexpected(Operation::PutBucketTagging, &subject, error))?;
        let request = self
            .client
            .put_bucket_tagging()
            .bucket(bucket)
            .tagging(tagging)
            .send();
        self.calls
            .send(Operation::PutBucketTagging, &subject, request)
            .await?;
        tracing::info!(bucket, tags = tags.len(), "set bucket tags");
        Ok(())
    }

    async fn list_buckets(&self) -> Result<Vec<String>, StorageError> {
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let request = self
                .client
                .list_buckets()
                .set_continuation_token(token.clone())
                .send();
            let page = self
                .calls
                .send(Operation::ListBuckets, &Subject::Service, request)
                .await?;
            names.extend(
                page.buckets()
                    .iter()
                    .filter_map(|bucket| bucket.name().map(str::to_owned)),
            );
            match page
                .continuation_token()
                .filter(|next| !next.is_empty() && Some(*next) != token.as_deref())
            {
                Some(next) => token = Some(next.to_owned()),
                None => break,
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<bool, StorageError> {
        let subject = Subject::Bucket(bucket.to_owned());
        let remaining = self.first_versions(bucket, 1).await;
        if failed_with(&remaining, &[ErrorCode::NoSuchBucket, ErrorCode::NotFound]) {
            return Ok(false);
        }
        if !remaining?.is_empty() {
            return Err(StorageError::Service {
                operation: Operation::DeleteBucket,
                subject,
                status: 409,
                code: ErrorCode::BucketNotEmpty,
                message: "the bucket still holds objects, versions or delete markers; it must be emptied first"
                    .to_owned(),
            });
        }
        let request = self.client.delete_bucket().bucket(bucket).send();
        let result = self
            .calls
            .send(Operation::DeleteBucket, &subject, request)
            .await;
        if failed_with(&result, &[ErrorCode::NoSuchBucket, ErrorCode::NotFound]) {
            return Ok(false);
        }
        result?;
        tracing::info!(bucket, "deleted bucket");
        Ok(true)
    }

    async fn empty_bucket(&self, bucket: &str) -> Result<u64, StorageError> {
        let subject = Subject::Bucket(bucket.to_owned());
        let mut deleted: u64 = 0;
        let mut previous: Vec<ObjectIdentifier> = Vec::new();
        loop {
            // Always the first page: what was deleted no longer shows, so no markers are needed,
            // and a page that comes back unchanged means deletes are not taking effect.
            let listed = self.first_versions(bucket, DELETE_BATCH).await;
            if deleted == 0 && failed_with(&listed, &[ErrorCode::NoSuchBucket, ErrorCode::NotFound])
            {
                return Ok(0);
            }
            let page = listed?;
            if page.is_empty() {
                break;
            }
            if page == previous {
                return Err(unexpected(
                    Operation::DeleteObjects,
                    &subject,
                    format!(
                        "{} entries are still listed after being deleted",
                        page.len()
                    ),
                ));
            }
            let delete = Delete::builder()
                .set_objects(Some(page.clone()))
                .quiet(true)
                .build()
                .map_err(|error| unexpected(Operation::DeleteObjects, &subject, error))?;
            let request = self
                .client
                .delete_objects()
                .bucket(bucket)
                .delete(delete)
                .send();
            let answer = self
                .calls
                .send(Operation::DeleteObjects, &subject, request)
                .await?;
            if let Some(failure) = answer.errors().first() {
                return Err(StorageError::Service {
                    operation: Operation::DeleteObjects,
                    subject: Subject::Object {
                        bucket: bucket.to_owned(),
                        key: failure.key().unwrap_or_default().to_owned(),
                    },
                    status: 200,
                    code: ErrorCode::parse(failure.code().unwrap_or("Unknown")),
                    message: failure.message().unwrap_or_default().to_owned(),
                });
            }
            deleted += page.len() as u64;
            previous = page;
        }
        if deleted > 0 {
            tracing::warn!(
                bucket,
                deleted,
                "emptied bucket: objects and versions permanently deleted"
            );
        }
        Ok(deleted)
    }
}

#[async_trait]
impl<B: BucketStore, I: IdentityStore> IdentityStore for ObjectStorage<B, I> {
    async fn ensure_user(&self, user: &str) -> Result<bool, StorageError> {
        self.identities.ensure_user(user).await
    }
    async fn user_exists(&self, user: &str) -> Result<bool, StorageError> {
        self.identities.user_exists(user).await
    }
    async fn user_arn(&self, user: &str) -> Result<Option<String>, StorageError> {
        self.identities.user_arn(user).await
    }
    async fn delete_user(&self, user: &str) -> Result<bool, StorageError> {
        self.identities.delete_user(user).await
    }
    async fn list_access_keys(&self, user: &str) -> Result<Vec<AccessKeyMetadata>, StorageError> {
        self.identities.list_access_keys(user).await
    }
    async fn create_access_key(&self, user: &str) -> Result<AccessKey, StorageError> {
        self.identities.create_access_key(user).await
    }
    async fn delete_access_key(&self, user: &str, access_key_id: &str) -> Result<(), StorageError> {
        self.identities.delete_access_key(user, access_key_id).await
    }
    async fn put_user_policy(
        &self,
        user: &str,
        policy_name: &str,
        document: &PolicyDocument,
    ) -> Result<(), StorageError> {
        self.identities
            .put_user_policy(user, policy_name, document)
            .await
    }
    async fn get_user_policy(
        &self,
        user: &str,
        policy_name: &str,
    ) -> Result<Option<PolicyDocument>, StorageError> {
        self.identities.get_user_policy(user, policy_name).await
    }
    async fn delete_user_policy(&self, user: &str, policy_name: &str) -> Result<(), StorageError> {
        self.identities.delete_user_policy(user, policy_name).await
    }
    async fn list_user_policies(&self, user: &str) -> Result<Vec<String>, StorageError> {
        self.identities.list_user_policies(user).await
    }

    async fn user_tags(&self, user: &str) -> Result<UserTags, StorageError> {
        self.identities.user_tags(user).await
    }

    async fn tag_user(&self, user: &str, tags: &UserTags) -> Result<(), StorageError> {
        self.identities.tag_user(user, tags).await
    }
}

#[async_trait]
impl<B: BucketStore, I: IdentityStore> BucketStore for ObjectStorage<B, I> {
    async fn ensure_bucket(&self, bucket: &str) -> Result<bool, StorageError> {
        self.buckets.ensure_bucket(bucket).await
    }
    async fn bucket_exists(&self, bucket: &str) -> Result<bool, StorageError> {
        self.buckets.bucket_exists(bucket).await
    }
    async fn get_versioning(&self, bucket: &str) -> Result<Versioning, StorageError> {
        self.buckets.get_versioning(bucket).await
    }
    async fn put_versioning(&self, bucket: &str, enabled: bool) -> Result<(), StorageError> {
        self.buckets.put_versioning(bucket, enabled).await
    }
    async fn get_expiration_days(&self, bucket: &str) -> Result<Option<u32>, StorageError> {
        self.buckets.get_expiration_days(bucket).await
    }
    async fn put_expiration_days(
        &self,
        bucket: &str,
        days: Option<u32>,
    ) -> Result<(), StorageError> {
        self.buckets.put_expiration_days(bucket, days).await
    }
    async fn get_tags(&self, bucket: &str) -> Result<BucketTags, StorageError> {
        self.buckets.get_tags(bucket).await
    }
    async fn put_tags(&self, bucket: &str, tags: &BucketTags) -> Result<(), StorageError> {
        self.buckets.put_tags(bucket, tags).await
    }
    async fn get_bucket_policy(&self, bucket: &str) -> Result<Option<String>, StorageError> {
        self.buckets.get_bucket_policy(bucket).await
    }
    async fn put_bucket_policy(&self, bucket: &str, document: &str) -> Result<(), StorageError> {
        self.buckets.put_bucket_policy(bucket, document).await
    }
    async fn delete_bucket_policy(&self, bucket: &str) -> Result<(), StorageError> {
        self.buckets.delete_bucket_policy(bucket).await
    }
    async fn list_buckets(&self) -> Result<Vec<String>, StorageError> {
        self.buckets.list_buckets().await
    }
    async fn delete_bucket(&self, bucket: &str) -> Result<bool, StorageError> {
        self.buckets.delete_bucket(bucket).await
    }
    async fn empty_bucket(&self, bucket: &str) -> Result<u64, StorageError> {
        self.buckets.empty_bucket(bucket).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn an_iam_list_goes_on_only_while_truncated_with_a_new_marker() {
        assert_eq!(next_marker(None, true, Some("b")), Some("b".to_owned()));
        assert_eq!(
            next_marker(Some("a"), true, Some("b")),
            Some("b".to_owned())
        );
        // The last page, a page without a marker, and a service repeating its marker all end it.
        assert_eq!(next_marker(Some("a"), false, Some("b")), None);
        assert_eq!(next_marker(Some("a"), true, None), None);
        assert_eq!(next_marker(Some("a"), true, Some("a")), None);
    }

    /// A server on loopback answering each request (one a connection) with the next status of
    /// `statuses`, then 200 without a body; returns its address and the request heads it read.
    async fn scripted_server(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let heads = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&request).into_owned();
                let index = {
                    let mut heads = heads.lock().unwrap();
                    heads.push(head);
                    heads.len() - 1
                };
                let status = statuses.get(index).copied().unwrap_or(200);
                let answer = format!(
                    "HTTP/1.1 {status} Scripted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        (address, seen)
    }

    fn config_at(address: &str) -> StorageConfig {
        let mut config = StorageConfig::new(address, address, "AKIDTEST", SecretString::new("s"));
        config.initial_backoff = Duration::from_millis(5);
        config.request_timeout = Duration::from_secs(5);
        config
    }

    async fn stores(config: &StorageConfig) -> SdkObjectStorage {
        SdkObjectStorage::connect(config, RequestCounter::default())
            .await
            .unwrap()
    }

    /// The `Credential=` scope of the request's Authorization header, e.g.
    /// `AKIDTEST/20250101/eu-west-1/s3/aws4_request`.
    fn credential_scope(head: &str) -> String {
        let authorization = head
            .lines()
            .find(|line| line.to_ascii_lowercase().starts_with("authorization:"))
            .unwrap_or_else(|| panic!("no Authorization header in {head}"));
        let start = authorization.find("Credential=").unwrap() + "Credential=".len();
        authorization[start..].split(',').next().unwrap().to_owned()
    }

    fn without_date(scope: &str) -> String {
        let parts: Vec<&str> = scope.split('/').collect();
        format!("{}/{}/{}/{}", parts[0], parts[2], parts[3], parts[4])
    }

    #[tokio::test]
    async fn s3_signs_for_the_configured_region_and_iam_for_its_own() {
        let (address, seen) = scripted_server(vec![]).await;
        let mut config = config_at(&address);
        config.region = "eu-west-1".into();
        config.iam_region = "ap-south-1".into();
        let store = stores(&config).await;
        assert!(store.bucket_exists("payments-lake").await.unwrap());
        // The empty 200 is no IAM answer; only the request matters here.
        let _ = store.user_exists("payments").await;
        let heads = seen.lock().unwrap().clone();
        assert_eq!(heads.len(), 2, "{heads:?}");
        assert_eq!(
            without_date(&credential_scope(&heads[0])),
            "AKIDTEST/eu-west-1/s3/aws4_request"
        );
        assert_eq!(
            without_date(&credential_scope(&heads[1])),
            "AKIDTEST/ap-south-1/iam/aws4_request"
        );
        // Path-style: the bucket is the path, the host is the endpoint's.
        assert!(
            heads[0].starts_with("HEAD /payments-lake/ "),
            "{}",
            heads[0]
        );
        assert!(
            heads[0].contains(&format!("host: {}", &address["http://".len()..])),
            "{}",
            heads[0]
        );
        assert!(heads[1].starts_with("POST / "), "{}", heads[1]);
    }

    #[tokio::test]
    async fn a_transient_failure_is_retried_with_backoff_before_it_is_reported() {
        let (address, seen) = scripted_server(vec![503, 503]).await;
        assert!(
            stores(&config_at(&address))
                .await
                .bucket_exists("b")
                .await
                .unwrap()
        );
        assert_eq!(seen.lock().unwrap().len(), 3, "two 503s, then the answer");

        let (address, seen) = scripted_server(vec![503; 10]).await;
        let error = stores(&config_at(&address))
            .await
            .bucket_exists("b")
            .await
            .unwrap_err();
        assert!(error.is_transient(), "{error}");
        assert_eq!(error.reason(), "HTTP 503", "{error}");
        assert_eq!(seen.lock().unwrap().len(), 3, "three attempts in all");

        let (address, seen) = scripted_server(vec![503; 10]).await;
        let mut config = config_at(&address);
        config.max_attempts = 5;
        config.retry_mode = RetryMode::Adaptive;
        stores(&config).await.bucket_exists("b").await.unwrap_err();
        assert_eq!(
            seen.lock().unwrap().len(),
            5,
            "as many attempts as configured"
        );

        let (address, seen) = scripted_server(vec![503; 10]).await;
        let mut config = config_at(&address);
        config.max_attempts = 1;
        stores(&config).await.bucket_exists("b").await.unwrap_err();
        assert_eq!(seen.lock().unwrap().len(), 1, "retries off");

        let (address, seen) = scripted_server(vec![403]).await;
        let error = stores(&config_at(&address))
            .await
            .bucket_exists("b")
            .await
            .unwrap_err();
        assert!(error.is_access_denied(), "{error}");
        assert_eq!(seen.lock().unwrap().len(), 1, "a refusal is not retried");
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_a_transient_transport_error_naming_the_call() {
        // Port 9 (discard) on loopback: nothing listens there on the platform, so connect fails.
        let mut config = config_at("http://127.0.0.1:9");
        config.max_attempts = 1;
        let error = stores(&config).await.bucket_exists("b").await.unwrap_err();
        assert!(
            matches!(
                error,
                StorageError::Transport {
                    operation: Operation::HeadBucket,
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.is_transient());
        assert_eq!(error.reason(), "Unreachable");
    }

    #[test]
    fn error_answers_keep_the_code_or_take_one_from_the_status() {
        let denied = service_error(
            Operation::GetObject,
            Subject::Bucket("b".into()),
            403,
            Some("AccessDenied"),
            Some("Access Denied."),
        );
        assert!(denied.is_access_denied());
        assert!(denied.to_string().contains("Access Denied."));
        let head = service_error(
            Operation::HeadBucket,
            Subject::Bucket("b".into()),
            404,
            None,
            None,
        );
        assert_eq!(head.code(), Some(&ErrorCode::NotFound));
        assert!(head.to_string().contains("Not Found"), "{head}");
        let teapot = service_error(
            Operation::HeadBucket,
            Subject::Bucket("b".into()),
            418,
            Some(""),
            None,
        );
        assert_eq!(teapot.code(), Some(&ErrorCode::Other("HTTP 418".into())));
        let iam = service_error(
            Operation::GetUser,
            Subject::User("u".into()),
            403,
            Some("InvalidClientTokenId"),
            None,
        );
        assert_eq!(iam.code(), Some(&ErrorCode::InvalidAccessKeyId));
    }

    #[test]
    fn policy_documents_decode_plain_and_url_encoded() {
        let plain = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::b/*"]}]}"#;
        let encoded =
            percent_encoding::utf8_percent_encode(plain, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        assert_eq!(
            decode_policy_document(plain).unwrap(),
            decode_policy_document(&encoded).unwrap()
        );
        assert!(decode_policy_document("%7Bnope").is_err());
    }

    #[tokio::test]
    async fn debug_output_hides_the_secret() {
        let store = stores(&StorageConfig::new(
            "http://127.0.0.1:1",
            "http://127.0.0.1:1",
            "admin",
            SecretString::new("very-secret"),
        ))
        .await;
        let shown = format!("{store:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("http://127.0.0.1:1"), "{shown}");
    }

    /// An STS endpoint in-process: records each request and answers
    /// `AssumeRoleWithWebIdentity` with temporary credentials.
    #[derive(Clone, Debug, Default)]
    struct FakeSts {
        requests: Arc<Mutex<Vec<(String, String)>>>,
    }

    const STS_ANSWER: &str = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <AccessKeyId>ASIAFROMWEBIDENTITY</AccessKeyId>
      <SecretAccessKey>temporary-secret</SecretAccessKey>
      <SessionToken>session-token</SessionToken>
      <Expiration>2099-01-01T00:00:00Z</Expiration>
    </Credentials>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/datamesh-operator/session</Arn>
      <AssumedRoleId>AROA:session</AssumedRoleId>
    </AssumedRoleUser>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>"#;

    impl aws_smithy_runtime_api::client::http::HttpConnector for FakeSts {
        fn call(
            &self,
            request: aws_smithy_runtime_api::client::orchestrator::HttpRequest,
        ) -> aws_smithy_runtime_api::client::http::HttpConnectorFuture {
            let body = request
                .body()
                .bytes()
                .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
                .unwrap_or_default();
            self.requests
                .lock()
                .unwrap()
                .push((request.uri().to_owned(), body));
            let response = HttpResponse::new(
                200.try_into().unwrap(),
                aws_smithy_types::body::SdkBody::from(STS_ANSWER),
            );
            aws_smithy_runtime_api::client::http::HttpConnectorFuture::ready(Ok(response))
        }
    }

    impl aws_smithy_runtime_api::client::http::HttpClient for FakeSts {
        fn http_connector(
            &self,
            _settings: &aws_smithy_runtime_api::client::http::HttpConnectorSettings,
            _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        ) -> aws_smithy_runtime_api::client::http::SharedHttpConnector {
            aws_smithy_runtime_api::client::http::SharedHttpConnector::new(self.clone())
        }
    }

    /// Marks the child process of [`the_default_chain_takes_a_web_identity_as_irsa_sets_it`].
    const WEB_IDENTITY_CHILD: &str = "DATAMESH_TEST_WEB_IDENTITY_CHILD";

    /// The operator started with nothing but what IRSA puts in a pod's environment (a projected
    /// token file, the role to assume) and `credentials: default` takes a web identity: the SDK's
    /// chain calls STS `AssumeRoleWithWebIdentity` with the token and the role, and signs with
    /// the temporary credentials it gets. Run in a child process of this test binary, so that
    /// the chain reads a real environment that nothing else in it shares.
    #[test]
    fn the_default_chain_takes_a_web_identity_as_irsa_sets_it() {
        let dir = std::env::temp_dir().join(format!("datamesh-irsa-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token = dir.join("token");
        std::fs::write(&token, "projected-service-account-token").unwrap();
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "provision::storage::sdk::tests::web_identity_in_an_irsa_environment",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env(WEB_IDENTITY_CHILD, "1")
            .env("AWS_WEB_IDENTITY_TOKEN_FILE", &token)
            .env(
                "AWS_ROLE_ARN",
                "arn:aws:iam::123456789012:role/datamesh-operator",
            )
            // No profile files and no metadata service: the token is the only source.
            .env("HOME", &dir)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let stdout = String::from_utf8_lossy(&child.stdout);
        assert!(
            child.status.success() && stdout.contains("1 passed"),
            "{stdout}\n{}",
            String::from_utf8_lossy(&child.stderr)
        );
    }

    #[tokio::test]
    #[ignore = "run by the_default_chain_takes_a_web_identity_as_irsa_sets_it, in a child process"]
    async fn web_identity_in_an_irsa_environment() {
        use aws_credential_types::provider::ProvideCredentials;
        assert!(
            std::env::var_os(WEB_IDENTITY_CHILD).is_some(),
            "run the_default_chain_takes_a_web_identity_as_irsa_sets_it instead"
        );
        let sts = FakeSts::default();
        let mut config = StorageConfig::with_credentials(
            "https://s3.eu-west-1.amazonaws.com",
            "https://iam.amazonaws.com",
            StorageCredentials::DefaultChain,
        );
        config.region = "eu-west-1".into();
        // The process's own environment and files, as the operator reads them; STS in-process.
        let provider = ProviderConfig::default().with_http_client(sts.clone());
        let credentials = credentials_provider(&config, provider)
            .await
            .provide_credentials()
            .await
            .unwrap();
        assert_eq!(credentials.access_key_id(), "ASIAFROMWEBIDENTITY");
        assert_eq!(credentials.session_token(), Some("session-token"));
        let requests = sts.requests.lock().unwrap().clone();
        assert_eq!(requests.len(), 1, "{requests:?}");
        let (uri, body) = &requests[0];
        assert!(uri.contains("sts.eu-west-1.amazonaws.com"), "{uri}");
        assert!(body.contains("Action=AssumeRoleWithWebIdentity"), "{body}");
        assert!(
            body.contains("WebIdentityToken=projected-service-account-token"),
            "{body}"
        );
        assert!(
            body.contains("RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fdatamesh-operator"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn static_credentials_are_the_configured_pair() {
        use aws_credential_types::provider::ProvideCredentials;
        let config = StorageConfig::new(
            "http://s3",
            "http://s3",
            "AKIDSTATIC",
            SecretString::new("pair"),
        );
        let credentials = credentials_provider(&config, ProviderConfig::empty())
            .await
            .provide_credentials()
            .await
            .unwrap();
        assert_eq!(credentials.access_key_id(), "AKIDSTATIC");
        assert_eq!(credentials.secret_access_key(), "pair");
        assert_eq!(credentials.session_token(), None);
    }

    #[test]
    fn an_unreadable_ca_bundle_is_a_configuration_error() {
        for bundle in [
            "not a certificate",
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        ] {
            let error = http_client(Some(bundle)).unwrap_err();
            assert!(matches!(error, StorageError::Config(_)), "{error}");
            assert!(error.to_string().contains("unusable CA bundle"), "{error}");
        }
    }
}
