//! [`HttpObjectStore`]: the S3 REST API and the IAM query API over HTTP(S), signed with SigV4.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_rustls::{ConfigBuilderExt as _, HttpsConnector};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::metrics::RequestCounter;

use super::sigv4::{self, CanonicalInput, SigningParams};
use super::xml::{self, VersionEntry};
use super::{
    AccessKey, AccessKeyMetadata, BucketTags, EXPIRATION_RULE_ID, ErrorCode, ObjectStore,
    Operation, PolicyDocument, SecretString, StorageConfig, StorageError, Subject, Versioning,
};

/// API version of the IAM query protocol.
const IAM_VERSION: &str = "2010-05-08";
/// Most keys one `DeleteObjects` call may name (the S3 limit).
const DELETE_BATCH: usize = 1000;

/// Which API, and so which signing service and endpoint.
#[derive(Clone, Copy)]
enum Service {
    S3,
    Iam,
}

/// A parsed endpoint URL: scheme, `host[:port]` and an optional base path (no trailing `/`).
#[derive(Clone)]
struct Endpoint {
    scheme: String,
    authority: String,
    base_path: String,
}

/// How many times a call is sent when it keeps failing transiently.
const ATTEMPTS: u32 = 3;

impl Endpoint {
    fn parse(url: &str, what: &str) -> Result<Self, StorageError> {
        let invalid = |why: &str| StorageError::Config(format!("{what} {url:?} {why}"));
        let uri: http::Uri = url.parse().map_err(|_| invalid("is not a URL"))?;
        let scheme = match uri.scheme_str() {
            Some(scheme @ ("http" | "https")) => scheme.to_owned(),
            _ => return Err(invalid("must start with http:// or https://")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| invalid("has no host"))?
            .as_str()
            .to_owned();
        if authority.contains('@') {
            return Err(invalid("must not carry credentials"));
        }
        if uri.query().is_some() {
            return Err(invalid("must not have a query"));
        }
        Ok(Self {
            scheme,
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    fn is_tls(&self) -> bool {
        self.scheme == "https"
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.base_path)
    }
}

/// One signed round trip to make.
struct Call {
    operation: Operation,
    subject: Subject,
    service: Service,
    method: Method,
    /// Path below the endpoint's base path, percent-encoded, starting with `/`.
    path: String,
    query: Vec<(String, String)>,
    content_type: Option<&'static str>,
    body: Bytes,
    /// Send `x-amz-checksum-sha256`, which AWS requires (instead of `Content-MD5`) on
    /// `PutBucketLifecycleConfiguration`, `PutBucketTagging` and `DeleteObjects`.
    checksum: bool,
}

impl Call {
    fn s3(operation: Operation, subject: Subject, method: Method, path: String) -> Self {
        Self {
            operation,
            subject,
            service: Service::S3,
            method,
            path,
            query: Vec::new(),
            content_type: None,
            body: Bytes::new(),
            checksum: false,
        }
    }

    fn query(mut self, key: &str, value: &str) -> Self {
        self.query.push((key.to_owned(), value.to_owned()));
        self
    }

    fn xml_body(mut self, body: String, checksum: bool) -> Self {
        self.content_type = Some("application/xml");
        self.body = Bytes::from(body);
        self.checksum = checksum;
        self
    }
}

/// Path of a bucket, path-style.
fn bucket_path(bucket: &str) -> String {
    format!("/{}", sigv4::encode(bucket))
}

/// Path of an object: the key keeps its `/`s, everything else outside the unreserved set is encoded.
fn object_path(bucket: &str, key: &str) -> String {
    format!(
        "/{}/{}",
        sigv4::encode(bucket),
        percent_encoding::utf8_percent_encode(key, sigv4::PATH_SEGMENT)
    )
}

/// The real object store: an S3 service and its IAM API, reached over HTTP(S).
///
/// Cheap to share: hold it in an `Arc` (or as `Arc<dyn ObjectStore>`); its connection pool is
/// shared by all calls. Construct one per identity: the operator's admin identity for
/// provisioning, or a domain's own keys to act (and be refused) as that domain.
pub struct HttpObjectStore {
    s3: Endpoint,
    iam: Endpoint,
    access_key_id: String,
    secret_access_key: SecretString,
    region: String,
    timeout: Duration,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    requests: RequestCounter,
}

impl fmt::Debug for HttpObjectStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpObjectStore")
            .field("s3", &self.s3.to_string())
            .field("iam", &self.iam.to_string())
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl HttpObjectStore {
    /// A client for `config`. Fails only on an unusable configuration (a malformed endpoint, or
    /// an `https` endpoint on a machine without CA certificates); it does not connect yet.
    pub fn new(config: StorageConfig) -> Result<Self, StorageError> {
        let s3 = Endpoint::parse(&config.endpoint, "S3 endpoint")?;
        let iam = Endpoint::parse(&config.iam_endpoint, "IAM endpoint")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| StorageError::Config(format!("TLS setup failed: {error}")))?;
        // Plain-http endpoints (the local platform) need no CA roots, so a machine without any
        // must not stop them from working.
        let tls = if s3.is_tls() || iam.is_tls() {
            builder
                .with_native_roots()
                .map_err(|error| {
                    StorageError::Config(format!("https endpoint but no CA roots: {error}"))
                })?
                .with_no_client_auth()
        } else {
            builder
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            s3,
            iam,
            access_key_id: config.access_key_id,
            secret_access_key: config.secret_access_key,
            region: config.region,
            timeout: config.request_timeout,
            http: Client::builder(TokioExecutor::new()).build(connector),
            requests: RequestCounter::default(),
        })
    }

    /// Count every request sent to S3 and IAM with `requests` (the operator's metrics).
    pub fn with_request_counter(mut self, requests: RequestCounter) -> Self {
        self.requests = requests;
        self
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
        let mut call = Call::s3(
            Operation::PutObject,
            subject,
            Method::PUT,
            object_path(bucket, key),
        );
        call.body = body.into();
        call.content_type = Some("application/octet-stream");
        self.execute(call).await.map(drop)
    }

    /// Reads an object. A data-plane call, for end-to-end checks of what an identity may do.
    pub async fn get_object(&self, bucket: &str, key: &str) -> Result<Bytes, StorageError> {
        let subject = Subject::Object {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        };
        self.execute(Call::s3(
            Operation::GetObject,
            subject,
            Method::GET,
            object_path(bucket, key),
        ))
        .await
    }

    /// Sends one call, retrying a transient failure (the connection failed, throttling, a 5xx,
    /// `SlowDown`) up to [`ATTEMPTS`] times in all, 200 ms then 400 ms apart with jitter, before
    /// the failure is reported. A timeout is not retried here: it already took the whole
    /// request timeout, and the reconcile's own backoff retries it.
    async fn execute(&self, call: Call) -> Result<Bytes, StorageError> {
        let mut attempt = 1;
        loop {
            match self.execute_once(&call).await {
                Err(error)
                    if attempt < ATTEMPTS
                        && error.is_transient()
                        && !matches!(error, StorageError::Timeout { .. }) =>
                {
                    let pause = Duration::from_millis(100 << attempt);
                    tracing::debug!(operation = %call.operation, attempt, %error, "retrying a transient failure");
                    tokio::time::sleep(crate::jitter::jittered(pause, 0.2)).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// Signs and sends one call; the body of a 2xx answer, or the error it describes.
    async fn execute_once(&self, call: &Call) -> Result<Bytes, StorageError> {
        let (endpoint, system) = match call.service {
            Service::S3 => (&self.s3, "s3"),
            Service::Iam => (&self.iam, "iam"),
        };
        let _timer = self.requests.count(system, call.operation.as_str());
        let path = format!("{}{}", endpoint.base_path, call.path);
        let query = sigv4::canonical_query(&call.query);
        let url = if query.is_empty() {
            format!("{}://{}{path}", endpoint.scheme, endpoint.authority)
        } else {
            format!("{}://{}{path}?{query}", endpoint.scheme, endpoint.authority)
        };
        let amz_date = sigv4::amz_date(jiff::Timestamp::now());
        let payload_sha256 = sigv4::sha256_hex(&call.body);
        let mut headers = vec![
            ("host".to_owned(), endpoint.authority.clone()),
            ("x-amz-date".to_owned(), amz_date.clone()),
        ];
        if let Service::S3 = call.service {
            headers.push(("x-amz-content-sha256".to_owned(), payload_sha256.clone()));
        }
        if let Some(content_type) = call.content_type {
            headers.push(("content-type".to_owned(), content_type.to_owned()));
        }
        if call.checksum {
            let checksum =
                base64::engine::general_purpose::STANDARD.encode(sigv4::sha256(&call.body));
            headers.push(("x-amz-checksum-sha256".to_owned(), checksum));
            headers.push((
                "x-amz-sdk-checksum-algorithm".to_owned(),
                "SHA256".to_owned(),
            ));
        }
        let authorization = sigv4::authorization(
            &SigningParams {
                access_key_id: &self.access_key_id,
                secret_access_key: &self.secret_access_key,
                region: &self.region,
                service: match call.service {
                    Service::S3 => "s3",
                    Service::Iam => "iam",
                },
                amz_date: &amz_date,
            },
            &CanonicalInput {
                method: call.method.as_str(),
                path: &path,
                query: &call.query,
                headers: &headers,
                payload_sha256: &payload_sha256,
            },
        );

        let mut request = http::Request::builder()
            .method(call.method.clone())
            .uri(&url);
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        let request = request
            .header(http::header::AUTHORIZATION, authorization)
            .body(Full::new(call.body.clone()))
            .map_err(|error| {
                StorageError::Config(format!("cannot build a request to {url}: {error}"))
            })?;

        type BoxError = Box<dyn std::error::Error + Send + Sync>;
        let round_trip = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|error| -> BoxError { Box::new(error) })?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|error| -> BoxError { Box::new(error) })?;
            Ok::<_, BoxError>((status, body.to_bytes()))
        };
        let (status, body) = match tokio::time::timeout(self.timeout, round_trip).await {
            Err(_) => {
                return Err(StorageError::Timeout {
                    operation: call.operation,
                    subject: call.subject.clone(),
                    endpoint: endpoint.to_string(),
                    timeout: self.timeout,
                });
            }
            Ok(Err(source)) => {
                return Err(StorageError::Transport {
                    operation: call.operation,
                    subject: call.subject.clone(),
                    endpoint: endpoint.to_string(),
                    source,
                });
            }
            Ok(Ok(answer)) => answer,
        };
        tracing::debug!(
            operation = %call.operation,
            subject = %call.subject,
            status = status.as_u16(),
            "object storage call"
        );
        if status.is_success() {
            Ok(body)
        } else {
            Err(service_error(
                call.operation,
                call.subject.clone(),
                status,
                &body,
            ))
        }
    }

    /// One IAM query-API call (a form-encoded POST); the XML answer.
    async fn iam_call(
        &self,
        operation: Operation,
        subject: Subject,
        params: &[(&str, &str)],
    ) -> Result<String, StorageError> {
        let mut form = vec![
            format!("Action={}", operation.as_str()),
            format!("Version={IAM_VERSION}"),
        ];
        form.extend(
            params
                .iter()
                .map(|(key, value)| format!("{}={}", sigv4::encode(key), sigv4::encode(value))),
        );
        let call = Call {
            operation,
            subject: subject.clone(),
            service: Service::Iam,
            method: Method::POST,
            path: "/".to_owned(),
            query: Vec::new(),
            content_type: Some("application/x-www-form-urlencoded; charset=utf-8"),
            body: Bytes::from(form.join("&")),
            checksum: false,
        };
        let body = self.execute(call).await?;
        String::from_utf8(body.to_vec()).map_err(|_| StorageError::UnexpectedResponse {
            operation,
            subject,
            detail: "the answer is not UTF-8".to_owned(),
        })
    }

    /// One S3 call whose answer is parsed as XML into `T`.
    async fn s3_xml<T: serde::de::DeserializeOwned>(&self, call: Call) -> Result<T, StorageError> {
        let (operation, subject) = (call.operation, call.subject.clone());
        let body = self.execute(call).await?;
        parse(operation, &subject, &String::from_utf8_lossy(&body))
    }

    /// The bucket's lifecycle configuration, every rule kept verbatim; `None` without one.
    async fn lifecycle(&self, bucket: &str) -> Result<Option<xml::Lifecycle>, StorageError> {
        let subject = Subject::Bucket(bucket.to_owned());
        let call = Call::s3(
            Operation::GetBucketLifecycleConfiguration,
            subject.clone(),
            Method::GET,
            bucket_path(bucket),
        )
        .query("lifecycle", "");
        let result = self.execute(call).await;
        if failed_with(&result, &[ErrorCode::NoSuchLifecycleConfiguration]) {
            return Ok(None);
        }
        let body = result?;
        xml::Lifecycle::parse(&String::from_utf8_lossy(&body))
            .map(Some)
            .map_err(|detail| StorageError::UnexpectedResponse {
                operation: Operation::GetBucketLifecycleConfiguration,
                subject,
                detail,
            })
    }

    /// One page (up to 1000) of versions and delete markers, from the start of the bucket.
    async fn first_versions(
        &self,
        bucket: &str,
        max_keys: usize,
    ) -> Result<Vec<VersionEntry>, StorageError> {
        let call = Call::s3(
            Operation::ListObjectVersions,
            Subject::Bucket(bucket.to_owned()),
            Method::GET,
            bucket_path(bucket),
        )
        .query("versions", "")
        .query("max-keys", &max_keys.to_string());
        let page: xml::ListVersionsIn = self.s3_xml(call).await?;
        Ok(page.version.into_iter().chain(page.delete_marker).collect())
    }
}

/// Parses an XML answer, or says which call answered something unreadable.
fn parse<T: serde::de::DeserializeOwned>(
    operation: Operation,
    subject: &Subject,
    body: &str,
) -> Result<T, StorageError> {
    xml::from_xml(body).map_err(|detail| StorageError::UnexpectedResponse {
        operation,
        subject: subject.clone(),
        detail,
    })
}

/// The error a non-2xx answer describes. HEAD answers and some proxies carry no body; their code
/// is derived from the status.
fn service_error(
    operation: Operation,
    subject: Subject,
    status: StatusCode,
    body: &[u8],
) -> StorageError {
    let (code, message) = xml::from_xml::<xml::ErrorBody>(&String::from_utf8_lossy(body))
        .map(xml::ErrorBody::code_and_message)
        .unwrap_or((None, None));
    let code = match code {
        Some(code) if !code.is_empty() => ErrorCode::parse(&code),
        _ => match status {
            StatusCode::NOT_FOUND => ErrorCode::NotFound,
            StatusCode::FORBIDDEN => ErrorCode::AccessDenied,
            other => ErrorCode::Other(format!("HTTP {}", other.as_u16())),
        },
    };
    let message =
        message.unwrap_or_else(|| status.canonical_reason().unwrap_or("no message").to_owned());
    StorageError::Service {
        operation,
        subject,
        status: status.as_u16(),
        code,
        message,
    }
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

#[async_trait]
impl ObjectStore for HttpObjectStore {
    async fn ensure_user(&self, user: &str) -> Result<bool, StorageError> {
        if self.user_exists(user).await? {
            return Ok(false);
        }
        let result = self
            .iam_call(
                Operation::CreateUser,
                Subject::User(user.to_owned()),
                &[("UserName", user)],
            )
            .await;
        if failed_with(&result, &[ErrorCode::EntityAlreadyExists]) {
            return Ok(false);
        }
        result?;
        tracing::info!(user, "created IAM user");
        Ok(true)
    }

    async fn user_exists(&self, user: &str) -> Result<bool, StorageError> {
        let result = self
            .iam_call(
                Operation::GetUser,
                Subject::User(user.to_owned()),
                &[("UserName", user)],
            )
            .await;
        if failed_with(&result, &[ErrorCode::NoSuchEntity]) {
            return Ok(false);
        }
        result.map(|_| true)
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
        let result = self
            .iam_call(
                Operation::DeleteUser,
                Subject::User(user.to_owned()),
                &[("UserName", user)],
            )
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
            let mut params = vec![("UserName", user)];
            if let Some(marker) = &marker {
                params.push(("Marker", marker));
            }
            let result = self
                .iam_call(Operation::ListAccessKeys, subject.clone(), &params)
                .await;
            if failed_with(&result, &[ErrorCode::NoSuchEntity]) {
                return Ok(Vec::new());
            }
            let page: xml::ListAccessKeysIn = parse(Operation::ListAccessKeys, &subject, &result?)?;
            keys.extend(
                page.result
                    .metadata
                    .into_iter()
                    .flat_map(|m| m.member)
                    .map(|key| AccessKeyMetadata {
                        access_key_id: key.access_key_id,
                        active: key.status.as_deref() != Some("Inactive"),
                    }),
            );
            match page
                .result
                .marker
                .filter(|next| page.result.is_truncated && Some(next) != marker.as_ref())
            {
                Some(next) => marker = Some(next),
                None => return Ok(keys),
            }
        }
    }

    async fn create_access_key(&self, user: &str) -> Result<AccessKey, StorageError> {
        let subject = Subject::User(user.to_owned());
        let body = self
            .iam_call(
                Operation::CreateAccessKey,
                subject.clone(),
                &[("UserName", user)],
            )
            .await?;
        let created: xml::CreateAccessKeyIn = parse(Operation::CreateAccessKey, &subject, &body)?;
        let key = created.result.access_key;
        tracing::info!(user, access_key_id = %key.access_key_id, "created access key");
        Ok(AccessKey {
            access_key_id: key.access_key_id,
            secret_access_key: SecretString::new(key.secret_access_key),
        })
    }

    async fn delete_access_key(&self, user: &str, access_key_id: &str) -> Result<(), StorageError> {
        let subject = Subject::AccessKey {
            user: user.to_owned(),
            access_key_id: access_key_id.to_owned(),
        };
        let result = self
            .iam_call(
                Operation::DeleteAccessKey,
                subject,
                &[("UserName", user), ("AccessKeyId", access_key_id)],
            )
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
        let json = document.to_json();
        self.iam_call(
            Operation::PutUserPolicy,
            subject,
            &[
                ("UserName", user),
                ("PolicyName", policy_name),
                ("PolicyDocument", &json),
            ],
        )
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
        let result = self
            .iam_call(
                Operation::GetUserPolicy,
                subject.clone(),
                &[("UserName", user), ("PolicyName", policy_name)],
            )
            .await;
        if failed_with(&result, &[ErrorCode::NoSuchEntity]) {
            return Ok(None);
        }
        let answer: xml::GetUserPolicyIn = parse(Operation::GetUserPolicy, &subject, &result?)?;
        decode_policy_document(&answer.result.policy_document)
            .map(Some)
            .map_err(|detail| StorageError::UnexpectedResponse {
                operation: Operation::GetUserPolicy,
                subject,
                detail,
            })
    }

    async fn delete_user_policy(&self, user: &str, policy_name: &str) -> Result<(), StorageError> {
        let subject = Subject::UserPolicy {
            user: user.to_owned(),
            policy: policy_name.to_owned(),
        };
        let result = self
            .iam_call(
                Operation::DeleteUserPolicy,
                subject,
                &[("UserName", user), ("PolicyName", policy_name)],
            )
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
            let mut params = vec![("UserName", user)];
            if let Some(marker) = &marker {
                params.push(("Marker", marker));
            }
            let result = self
                .iam_call(Operation::ListUserPolicies, subject.clone(), &params)
                .await;
            if failed_with(&result, &[ErrorCode::NoSuchEntity]) {
                return Ok(Vec::new());
            }
            let page: xml::ListUserPoliciesIn =
                parse(Operation::ListUserPolicies, &subject, &result?)?;
            names.extend(page.result.policy_names.into_iter().flat_map(|m| m.member));
            match page
                .result
                .marker
                .filter(|next| page.result.is_truncated && Some(next) != marker.as_ref())
            {
                Some(next) => marker = Some(next),
                None => break,
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn ensure_bucket(&self, bucket: &str) -> Result<bool, StorageError> {
        if self.bucket_exists(bucket).await? {
            return Ok(false);
        }
        let subject = Subject::Bucket(bucket.to_owned());
        let mut call = Call::s3(
            Operation::CreateBucket,
            subject,
            Method::PUT,
            bucket_path(bucket),
        );
        if self.region != StorageConfig::DEFAULT_REGION {
            // Outside us-east-1, AWS wants the region named in the body.
            call = call.xml_body(
                format!(
                    r#"<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>"#,
                    self.region
                ),
                false,
            );
        }
        let result = self.execute(call).await;
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
        let call = Call::s3(
            Operation::HeadBucket,
            Subject::Bucket(bucket.to_owned()),
            Method::HEAD,
            bucket_path(bucket),
        );
        let result = self.execute(call).await;
        if failed_with(&result, &[ErrorCode::NotFound, ErrorCode::NoSuchBucket]) {
            return Ok(false);
        }
        result.map(|_| true)
    }

    async fn get_versioning(&self, bucket: &str) -> Result<Versioning, StorageError> {
        let subject = Subject::Bucket(bucket.to_owned());
        let call = Call::s3(
            Operation::GetBucketVersioning,
            subject.clone(),
            Method::GET,
            bucket_path(bucket),
        )
        .query("versioning", "");
        let answer: xml::VersioningIn = self.s3_xml(call).await?;
        match answer.status.as_deref() {
            None | Some("") => Ok(Versioning::Unversioned),
            Some("Enabled") => Ok(Versioning::Enabled),
            Some("Suspended") => Ok(Versioning::Suspended),
            Some(other) => Err(StorageError::UnexpectedResponse {
                operation: Operation::GetBucketVersioning,
                subject,
                detail: format!("unknown versioning status {other:?}"),
            }),
        }
    }

    async fn put_versioning(&self, bucket: &str, enabled: bool) -> Result<(), StorageError> {
        let subject = Subject::Bucket(bucket.to_owned());
        let body =
            xml::versioning_body(enabled).map_err(|detail| StorageError::UnexpectedResponse {
                operation: Operation::PutBucketVersioning,
                subject: subject.clone(),
                detail,
            })?;
        let call = Call::s3(
            Operation::PutBucketVersioning,
            subject,
            Method::PUT,
            bucket_path(bucket),
        )
        .query("versioning", "")
        .xml_body(body, false);
        self.execute(call).await?;
        tracing::info!(bucket, enabled, "set bucket versioning");
        Ok(())
    }

    async fn get_expiration_days(&self, bucket: &str) -> Result<Option<u32>, StorageError> {
        Ok(self
            .lifecycle(bucket)
            .await?
            .and_then(|lifecycle| lifecycle.expiration_days(EXPIRATION_RULE_ID)))
    }

    async fn put_expiration_days(
        &self,
        bucket: &str,
        days: Option<u32>,
    ) -> Result<(), StorageError> {
        let subject = Subject::Bucket(bucket.to_owned());
        let current = self.lifecycle(bucket).await?;
        let change = xml::Lifecycle::change(current.as_ref(), EXPIRATION_RULE_ID, days).map_err(
            |detail| StorageError::UnexpectedResponse {
                operation: Operation::PutBucketLifecycleConfiguration,
                subject: subject.clone(),
                detail,
            },
        )?;
        let merged = match change {
            xml::LifecycleChange::Unchanged => return Ok(()),
            xml::LifecycleChange::Put(merged) => merged,
            xml::LifecycleChange::Delete => {
                let call = Call::s3(
                    Operation::DeleteBucketLifecycle,
                    subject,
                    Method::DELETE,
                    bucket_path(bucket),
                )
                .query("lifecycle", "");
                let result = self.execute(call).await;
                if !failed_with(&result, &[ErrorCode::NoSuchLifecycleConfiguration]) {
                    result?;
                }
                tracing::info!(bucket, "removed bucket lifecycle");
                return Ok(());
            }
        };
        let call = Call::s3(
            Operation::PutBucketLifecycleConfiguration,
            subject,
            Method::PUT,
            bucket_path(bucket),
        )
        .query("lifecycle", "")
        .xml_body(merged.body(), true);
        self.execute(call).await?;
        tracing::info!(bucket, ?days, "set the operator's bucket expiration rule");
        Ok(())
    }

    async fn get_tags(&self, bucket: &str) -> Result<BucketTags, StorageError> {
        let call = Call::s3(
            Operation::GetBucketTagging,
            Subject::Bucket(bucket.to_owned()),
            Method::GET,
            bucket_path(bucket),
        )
        .query("tagging", "");
        let result: Result<xml::TaggingIn, _> = self.s3_xml(call).await;
        if failed_with(&result, &[ErrorCode::NoSuchTagSet]) {
            return Ok(BucketTags::new());
        }
        Ok(result?.into_tags())
    }

    async fn put_tags(&self, bucket: &str, tags: &BucketTags) -> Result<(), StorageError> {
        let subject = Subject::Bucket(bucket.to_owned());
        if tags.is_empty() {
            let call = Call::s3(
                Operation::DeleteBucketTagging,
                subject,
                Method::DELETE,
                bucket_path(bucket),
            )
            .query("tagging", "");
            let result = self.execute(call).await;
            if !failed_with(&result, &[ErrorCode::NoSuchTagSet]) {
                result?;
            }
            return Ok(());
        }
        let body = xml::tagging_body(tags).map_err(|detail| StorageError::UnexpectedResponse {
            operation: Operation::PutBucketTagging,
            subject: subject.clone(),
            detail,
        })?;
        let call = Call::s3(
            Operation::PutBucketTagging,
            subject,
            Method::PUT,
            bucket_path(bucket),
        )
        .query("tagging", "")
        .xml_body(body, true);
        self.execute(call).await?;
        tracing::info!(bucket, tags = tags.len(), "set bucket tags");
        Ok(())
    }

    async fn list_buckets(&self) -> Result<Vec<String>, StorageError> {
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut call = Call::s3(
                Operation::ListBuckets,
                Subject::Service,
                Method::GET,
                "/".to_owned(),
            );
            if let Some(token) = &token {
                call = call.query("continuation-token", token);
            }
            let page: xml::ListBucketsIn = self.s3_xml(call).await?;
            names.extend(
                page.buckets
                    .into_iter()
                    .flat_map(|b| b.bucket)
                    .map(|b| b.name),
            );
            match page
                .continuation_token
                .filter(|next| !next.is_empty() && Some(next) != token.as_ref())
            {
                Some(next) => token = Some(next),
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
                status: StatusCode::CONFLICT.as_u16(),
                code: ErrorCode::BucketNotEmpty,
                message: "the bucket still holds objects, versions or delete markers; it must be emptied first"
                    .to_owned(),
            });
        }
        let result = self
            .execute(Call::s3(
                Operation::DeleteBucket,
                subject,
                Method::DELETE,
                bucket_path(bucket),
            ))
            .await;
        if failed_with(&result, &[ErrorCode::NoSuchBucket, ErrorCode::NotFound]) {
            return Ok(false);
        }
        result?;
        tracing::info!(bucket, "deleted bucket");
        Ok(true)
    }

    async fn empty_bucket(&self, bucket: &str) -> Result<u64, StorageError> {
        let mut deleted: u64 = 0;
        let mut previous: Vec<VersionEntry> = Vec::new();
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
                return Err(StorageError::UnexpectedResponse {
                    operation: Operation::DeleteObjects,
                    subject: Subject::Bucket(bucket.to_owned()),
                    detail: format!(
                        "{} entries are still listed after being deleted",
                        page.len()
                    ),
                });
            }
            let subject = Subject::Bucket(bucket.to_owned());
            let body = xml::delete_objects_body(&page).map_err(|detail| {
                StorageError::UnexpectedResponse {
                    operation: Operation::DeleteObjects,
                    subject: subject.clone(),
                    detail,
                }
            })?;
            let call = Call::s3(
                Operation::DeleteObjects,
                subject,
                Method::POST,
                bucket_path(bucket),
            )
            .query("delete", "")
            .xml_body(body, true);
            let answer: xml::DeleteResultIn = self.s3_xml(call).await?;
            if let Some(failure) = answer.error.into_iter().next() {
                return Err(StorageError::Service {
                    operation: Operation::DeleteObjects,
                    subject: Subject::Object {
                        bucket: bucket.to_owned(),
                        key: failure.key.unwrap_or_default(),
                    },
                    status: StatusCode::OK.as_u16(),
                    code: ErrorCode::parse(failure.code.as_deref().unwrap_or("Unknown")),
                    message: failure.message.unwrap_or_default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_with_and_without_base_path() {
        let plain = Endpoint::parse("http://127.0.0.1:28333", "S3 endpoint").unwrap();
        assert_eq!(
            (
                plain.scheme.as_str(),
                plain.authority.as_str(),
                plain.base_path.as_str()
            ),
            ("http", "127.0.0.1:28333", "")
        );
        let slash = Endpoint::parse("http://127.0.0.1:28333/", "S3 endpoint").unwrap();
        assert_eq!(slash.base_path, "");
        let based = Endpoint::parse("https://gw.example.com/s3/", "S3 endpoint").unwrap();
        assert_eq!(based.base_path, "/s3");
        assert!(based.is_tls());
        assert_eq!(based.to_string(), "https://gw.example.com/s3");
    }

    #[test]
    fn bad_endpoints_are_config_errors() {
        for url in [
            "127.0.0.1:28333",
            "ftp://host",
            "http://",
            "http://a:b@host",
            "http://host/?x=1",
        ] {
            assert!(
                matches!(
                    Endpoint::parse(url, "S3 endpoint"),
                    Err(StorageError::Config(_))
                ),
                "{url}"
            );
        }
    }

    #[test]
    fn object_paths_keep_slashes_and_encode_the_rest() {
        assert_eq!(object_path("b", "dir/a b+c.txt"), "/b/dir/a%20b%2Bc.txt");
        assert_eq!(bucket_path("payments-orders-lake"), "/payments-orders-lake");
    }

    #[test]
    fn errors_come_from_the_body_or_the_status() {
        let from_body = service_error(
            Operation::GetObject,
            Subject::Bucket("b".into()),
            StatusCode::FORBIDDEN,
            b"<Error><Code>AccessDenied</Code><Message>Access Denied.</Message></Error>",
        );
        assert!(from_body.is_access_denied());
        assert!(from_body.to_string().contains("Access Denied."));
        let head = service_error(
            Operation::HeadBucket,
            Subject::Bucket("b".into()),
            StatusCode::NOT_FOUND,
            b"",
        );
        assert_eq!(head.code(), Some(&ErrorCode::NotFound));
        let teapot = service_error(
            Operation::HeadBucket,
            Subject::Bucket("b".into()),
            StatusCode::IM_A_TEAPOT,
            b"",
        );
        assert_eq!(teapot.code(), Some(&ErrorCode::Other("HTTP 418".into())));
    }

    #[test]
    fn policy_documents_decode_plain_and_url_encoded() {
        let plain = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::b/*"]}]}"#;
        let encoded = percent_encoding::utf8_percent_encode(plain, sigv4::UNRESERVED).to_string();
        assert_eq!(
            decode_policy_document(plain).unwrap(),
            decode_policy_document(&encoded).unwrap()
        );
        assert!(decode_policy_document("%7Bnope").is_err());
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let store = HttpObjectStore::new(StorageConfig::new(
            "http://127.0.0.1:1",
            "http://127.0.0.1:1",
            "admin",
            SecretString::new("very-secret"),
        ))
        .unwrap();
        let shown = format!("{store:?}");
        assert!(
            shown.contains("admin") && !shown.contains("very-secret"),
            "{shown}"
        );
    }

    /// A server on loopback answering each request (one a connection) with the next status of
    /// `statuses`, then 200; returns its address and how many requests it served.
    async fn scripted_server(
        statuses: Vec<u16>,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let served = std::sync::Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let index = count.fetch_add(1, Ordering::SeqCst);
                let status = statuses.get(index).copied().unwrap_or(200);
                let answer = format!(
                    "HTTP/1.1 {status} Scripted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        (address, served)
    }

    fn store_at(address: &str) -> HttpObjectStore {
        HttpObjectStore::new(StorageConfig::new(
            address,
            address,
            "admin",
            SecretString::new("s"),
        ))
        .unwrap()
    }

    #[tokio::test]
    async fn a_transient_failure_is_retried_before_it_is_reported() {
        use std::sync::atomic::Ordering;
        let (address, served) = scripted_server(vec![503, 503]).await;
        assert!(store_at(&address).bucket_exists("b").await.unwrap());
        assert_eq!(
            served.load(Ordering::SeqCst),
            3,
            "two 503s, then the answer"
        );

        let (address, served) = scripted_server(vec![503; 10]).await;
        let error = store_at(&address).bucket_exists("b").await.unwrap_err();
        assert!(error.is_transient(), "{error}");
        assert_eq!(served.load(Ordering::SeqCst), 3, "three attempts in all");

        let (address, served) = scripted_server(vec![403]).await;
        store_at(&address).bucket_exists("b").await.unwrap_err();
        assert_eq!(served.load(Ordering::SeqCst), 1, "a refusal is not retried");
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_a_transport_error_naming_the_call() {
        // Port 9 (discard) on loopback: nothing listens there on the platform, so connect fails.
        let store = HttpObjectStore::new(StorageConfig::new(
            "http://127.0.0.1:9",
            "http://127.0.0.1:9",
            "admin",
            SecretString::new("s"),
        ))
        .unwrap();
        let error = store.bucket_exists("b").await.unwrap_err();
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
    }
}
