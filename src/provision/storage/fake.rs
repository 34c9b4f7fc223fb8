//! [`FakeObjectStore`]: an in-process [`ObjectStore`] with the real one's semantics, for unit
//! tests of the reconcilers.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use aws_sdk_s3::types::LifecycleRule;

use super::lifecycle::{self, LifecycleChange};
use super::policy::{bucket_arn, objects_arn};
use super::{
    AccessKey, AccessKeyMetadata, BucketStore, BucketTags, EXPIRATION_RULE_ID, ErrorCode,
    IdentityStore, Operation, PolicyDocument, SecretString, StorageError, Subject, UserTags,
    Versioning,
};

#[derive(Default)]
struct FakeUser {
    /// Key id to (secret, active).
    keys: BTreeMap<String, (SecretString, bool)>,
    policies: BTreeMap<String, PolicyDocument>,
    tags: UserTags,
}

struct FakeBucket {
    versioning: Versioning,
    /// The lifecycle configuration's rules, foreign ones included; `None` without one.
    lifecycle: Option<Vec<LifecycleRule>>,
    tags: BucketTags,
    /// The bucket policy, as put.
    policy: Option<String>,
    /// Key to the number of versions and delete markers stored under it.
    entries: BTreeMap<String, u64>,
}

#[derive(Default)]
struct State {
    users: BTreeMap<String, FakeUser>,
    buckets: BTreeMap<String, FakeBucket>,
    calls: Vec<(Operation, Subject)>,
    failures: Vec<(Operation, ErrorCode)>,
    next_key: u64,
}

/// An in-memory object store that behaves like [`super::ObjectStorage`] against a compliant
/// service: the same idempotency, the same refusals (a non-empty bucket is not deleted, policies
/// and keys need an existing user) and the same error codes.
///
/// For assertions it records every call (see [`FakeObjectStore::calls`] and
/// [`FakeObjectStore::writes`]), can be told to fail an operation
/// ([`FakeObjectStore::fail_next`]), holds objects put with [`FakeObjectStore::put_object`], and
/// evaluates a user's policies ([`FakeObjectStore::allows`]).
#[derive(Default)]
pub struct FakeObjectStore {
    state: Mutex<State>,
}

/// HTTP status a service would send with `code`.
fn status_of(code: &ErrorCode) -> u16 {
    match code {
        ErrorCode::AccessDenied
        | ErrorCode::InvalidAccessKeyId
        | ErrorCode::SignatureDoesNotMatch => 403,
        ErrorCode::NoSuchBucket
        | ErrorCode::NoSuchKey
        | ErrorCode::NoSuchEntity
        | ErrorCode::NoSuchLifecycleConfiguration
        | ErrorCode::NoSuchTagSet
        | ErrorCode::NoSuchBucketPolicy
        | ErrorCode::NotFound => 404,
        ErrorCode::BucketNotEmpty
        | ErrorCode::BucketAlreadyExists
        | ErrorCode::BucketAlreadyOwnedByYou
        | ErrorCode::EntityAlreadyExists => 409,
        ErrorCode::MalformedPolicyDocument | ErrorCode::LimitExceeded => 400,
        ErrorCode::NotImplemented => 501,
        ErrorCode::Other(_) => 500,
    }
}

fn service_error(
    operation: Operation,
    subject: Subject,
    code: ErrorCode,
    message: &str,
) -> StorageError {
    StorageError::Service {
        operation,
        subject,
        status: status_of(&code),
        code,
        message: message.to_owned(),
    }
}

impl State {
    /// Records a call and fails it if a failure was queued for its operation.
    fn enter(&mut self, operation: Operation, subject: &Subject) -> Result<(), StorageError> {
        self.calls.push((operation, subject.clone()));
        if let Some(index) = self
            .failures
            .iter()
            .position(|(failing, _)| *failing == operation)
        {
            let (_, code) = self.failures.remove(index);
            return Err(service_error(
                operation,
                subject.clone(),
                code,
                "injected by FakeObjectStore::fail_next",
            ));
        }
        Ok(())
    }

    fn bucket(
        &mut self,
        operation: Operation,
        bucket: &str,
    ) -> Result<&mut FakeBucket, StorageError> {
        let subject = Subject::Bucket(bucket.to_owned());
        self.enter(operation, &subject)?;
        self.buckets.get_mut(bucket).ok_or_else(|| {
            service_error(
                operation,
                subject,
                ErrorCode::NoSuchBucket,
                "The specified bucket does not exist",
            )
        })
    }

    fn user(
        &mut self,
        operation: Operation,
        user: &str,
        subject: Subject,
    ) -> Result<&mut FakeUser, StorageError> {
        self.enter(operation, &subject)?;
        self.users.get_mut(user).ok_or_else(|| {
            service_error(
                operation,
                subject,
                ErrorCode::NoSuchEntity,
                &format!("the user with name {user} cannot be found"),
            )
        })
    }
}

impl FakeObjectStore {
    /// An empty store: no users, no buckets.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock must not hide the state from the next one.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every call so far, oldest first, as the operation that decided its effect: an `ensure_*`
    /// that found the user or bucket records `GetUser`/`HeadBucket`, one that created it records
    /// `CreateUser`/`CreateBucket`.
    pub fn calls(&self) -> Vec<(Operation, Subject)> {
        self.lock().calls.clone()
    }

    /// The calls that changed something ([`Operation::is_write`]); empty after a reconcile that
    /// found no drift.
    pub fn writes(&self) -> Vec<(Operation, Subject)> {
        self.lock()
            .calls
            .iter()
            .filter(|(operation, _)| operation.is_write())
            .cloned()
            .collect()
    }

    /// Forgets the recorded calls, e.g. between the first reconcile and a resync.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// Makes the next call of `operation` fail with `code` (queued; one failure per call).
    pub fn fail_next(&self, operation: Operation, code: ErrorCode) {
        self.lock().failures.push((operation, code));
    }

    /// Stores an object version under `key`, as a client with write access would. With
    /// versioning enabled every put adds a version; otherwise it replaces the object.
    pub fn put_object(&self, bucket: &str, key: &str) -> Result<(), StorageError> {
        let mut state = self.lock();
        let stored = state.bucket(Operation::PutObject, bucket)?;
        let versioned = stored.versioning == Versioning::Enabled;
        let count = stored.entries.entry(key.to_owned()).or_insert(0);
        *count = if versioned { *count + 1 } else { 1 };
        Ok(())
    }

    /// Sets the bucket's whole lifecycle configuration, as another client of the service would
    /// (`PutBucketLifecycleConfiguration`); not recorded as one of the calls.
    pub fn put_lifecycle_configuration(
        &self,
        bucket: &str,
        rules: Vec<LifecycleRule>,
    ) -> Result<(), StorageError> {
        let subject = Subject::Bucket(bucket.to_owned());
        let mut state = self.lock();
        let stored = state.buckets.get_mut(bucket).ok_or_else(|| {
            service_error(
                Operation::PutBucketLifecycleConfiguration,
                subject,
                ErrorCode::NoSuchBucket,
                "The specified bucket does not exist",
            )
        })?;
        stored.lifecycle = (!rules.is_empty()).then_some(rules);
        Ok(())
    }

    /// The bucket's lifecycle rules as `GetBucketLifecycleConfiguration` would return them;
    /// `None` without a configuration (or without the bucket).
    pub fn lifecycle_configuration(&self, bucket: &str) -> Option<Vec<LifecycleRule>> {
        self.lock()
            .buckets
            .get(bucket)
            .and_then(|stored| stored.lifecycle.clone())
    }

    /// Objects, versions and delete markers in the bucket (0 for a missing bucket).
    pub fn entry_count(&self, bucket: &str) -> u64 {
        self.lock()
            .buckets
            .get(bucket)
            .map(|b| b.entries.values().sum())
            .unwrap_or(0)
    }

    /// The ARN [`IdentityStore::user_arn`] reports for `user` (SeaweedFS's form).
    pub fn user_arn_of(user: &str) -> String {
        format!("arn:aws:iam::000000000000:user/{user}")
    }

    /// The bucket's policy document, as put; `None` without one (or without the bucket).
    pub fn bucket_policy(&self, bucket: &str) -> Option<String> {
        self.lock().buckets.get(bucket)?.policy.clone()
    }

    /// Whether the user's inline policies, taken together, or the bucket's policy allow `action`
    /// (e.g. `s3:GetObject`) on `bucket`: on the bucket itself for bucket actions
    /// (`s3:ListBucket*`, `s3:GetBucketLocation`), on an object in it otherwise.
    pub fn allows(&self, user: &str, action: &str, bucket: &str) -> bool {
        let state = self.lock();
        let Some(found) = state.users.get(user) else {
            return false;
        };
        let lowercase = action.to_ascii_lowercase();
        let resource =
            if lowercase.starts_with("s3:listbucket") || lowercase == "s3:getbucketlocation" {
                bucket_arn(bucket)
            } else {
                objects_arn(bucket).replace('*', "any-object")
            };
        let union = PolicyDocument {
            version: super::policy::POLICY_VERSION.to_owned(),
            statement: found
                .policies
                .values()
                .flat_map(|policy| policy.statement.iter().cloned())
                .collect(),
        };
        let by_bucket_policy = state
            .buckets
            .get(bucket)
            .and_then(|b| b.policy.as_deref())
            .and_then(|json| PolicyDocument::from_json(json).ok())
            .is_some_and(|policy| {
                policy.allows_principal(&Self::user_arn_of(user), action, &resource)
            });
        union.allows(action, &resource) || by_bucket_policy
    }
}

#[async_trait]
impl IdentityStore for FakeObjectStore {
    async fn ensure_user(&self, user: &str) -> Result<bool, StorageError> {
        let mut state = self.lock();
        let subject = Subject::User(user.to_owned());
        if state.users.contains_key(user) {
            state.enter(Operation::GetUser, &subject)?;
            return Ok(false);
        }
        state.enter(Operation::CreateUser, &subject)?;
        state.users.insert(user.to_owned(), FakeUser::default());
        Ok(true)
    }

    async fn user_exists(&self, user: &str) -> Result<bool, StorageError> {
        let mut state = self.lock();
        state.enter(Operation::GetUser, &Subject::User(user.to_owned()))?;
        Ok(state.users.contains_key(user))
    }

    async fn user_arn(&self, user: &str) -> Result<Option<String>, StorageError> {
        let mut state = self.lock();
        state.enter(Operation::GetUser, &Subject::User(user.to_owned()))?;
        Ok(state
            .users
            .contains_key(user)
            .then(|| Self::user_arn_of(user)))
    }

    async fn delete_user(&self, user: &str) -> Result<bool, StorageError> {
        let mut state = self.lock();
        state.enter(Operation::DeleteUser, &Subject::User(user.to_owned()))?;
        Ok(state.users.remove(user).is_some())
    }

    async fn list_access_keys(&self, user: &str) -> Result<Vec<AccessKeyMetadata>, StorageError> {
        let mut state = self.lock();
        state.enter(Operation::ListAccessKeys, &Subject::User(user.to_owned()))?;
        Ok(state
            .users
            .get(user)
            .map(|found| {
                found
                    .keys
                    .iter()
                    .map(|(id, (_, active))| AccessKeyMetadata {
                        access_key_id: id.clone(),
                        active: *active,
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn create_access_key(&self, user: &str) -> Result<AccessKey, StorageError> {
        let mut state = self.lock();
        state.next_key += 1;
        let number = state.next_key;
        let found = state.user(
            Operation::CreateAccessKey,
            user,
            Subject::User(user.to_owned()),
        )?;
        let key = AccessKey {
            access_key_id: format!("FAKEAK{number:014}"),
            secret_access_key: SecretString::new(format!("fake-secret-{number}")),
        };
        found.keys.insert(
            key.access_key_id.clone(),
            (key.secret_access_key.clone(), true),
        );
        Ok(key)
    }

    async fn delete_access_key(&self, user: &str, access_key_id: &str) -> Result<(), StorageError> {
        let mut state = self.lock();
        let subject = Subject::AccessKey {
            user: user.to_owned(),
            access_key_id: access_key_id.to_owned(),
        };
        state.enter(Operation::DeleteAccessKey, &subject)?;
        if let Some(found) = state.users.get_mut(user) {
            found.keys.remove(access_key_id);
        }
        Ok(())
    }

    async fn put_user_policy(
        &self,
        user: &str,
        policy_name: &str,
        document: &PolicyDocument,
    ) -> Result<(), StorageError> {
        let mut state = self.lock();
        let subject = Subject::UserPolicy {
            user: user.to_owned(),
            policy: policy_name.to_owned(),
        };
        let found = state.user(Operation::PutUserPolicy, user, subject)?;
        found
            .policies
            .insert(policy_name.to_owned(), document.clone());
        Ok(())
    }

    async fn get_user_policy(
        &self,
        user: &str,
        policy_name: &str,
    ) -> Result<Option<PolicyDocument>, StorageError> {
        let mut state = self.lock();
        let subject = Subject::UserPolicy {
            user: user.to_owned(),
            policy: policy_name.to_owned(),
        };
        state.enter(Operation::GetUserPolicy, &subject)?;
        Ok(state
            .users
            .get(user)
            .and_then(|found| found.policies.get(policy_name))
            .cloned())
    }

    async fn delete_user_policy(&self, user: &str, policy_name: &str) -> Result<(), StorageError> {
        let mut state = self.lock();
        let subject = Subject::UserPolicy {
            user: user.to_owned(),
            policy: policy_name.to_owned(),
        };
        state.enter(Operation::DeleteUserPolicy, &subject)?;
        if let Some(found) = state.users.get_mut(user) {
            found.policies.remove(policy_name);
        }
        Ok(())
    }

    async fn list_user_policies(&self, user: &str) -> Result<Vec<String>, StorageError> {
        let mut state = self.lock();
        state.enter(Operation::ListUserPolicies, &Subject::User(user.to_owned()))?;
        Ok(state
            .users
            .get(user)
            .map(|found| found.policies.keys().cloned().collect())
            .unwrap_or_default())
    }

    async fn user_tags(&self, user: &str) -> Result<UserTags, StorageError> {
        let mut state = self.lock();
        state.enter(Operation::ListUserTags, &Subject::User(user.to_owned()))?;
        Ok(state
            .users
            .get(user)
            .map(|found| found.tags.clone())
            .unwrap_or_default())
    }

    async fn tag_user(&self, user: &str, tags: &UserTags) -> Result<(), StorageError> {
        let mut state = self.lock();
        let found = state.user(Operation::TagUser, user, Subject::User(user.to_owned()))?;
        found.tags.extend(tags.clone());
        Ok(())
    }
}

#[async_trait]
impl BucketStore for FakeObjectStore {
    async fn ensure_bucket(&self, bucket: &str) -> Result<bool, StorageError> {
        let mut state = self.lock();
        let subject = Subject::Bucket(bucket.to_owned());
        if state.buckets.contains_key(bucket) {
            state.enter(Operation::HeadBucket, &subject)?;
            return Ok(false);
        }
        state.enter(Operation::CreateBucket, &subject)?;
        state.buckets.insert(
            bucket.to_owned(),
            FakeBucket {
                versioning: Versioning::Unversioned,
                lifecycle: None,
                tags: BucketTags::new(),
                policy: None,
                entries: BTreeMap::new(),
            },
        );
        Ok(true)
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool, StorageError> {
        let mut state = self.lock();
        state.enter(Operation::HeadBucket, &Subject::Bucket(bucket.to_owned()))?;
        Ok(state.buckets.contains_key(bucket))
    }

    async fn get_versioning(&self, bucket: &str) -> Result<Versioning, StorageError> {
        Ok(self
            .lock()
            .bucket(Operation::GetBucketVersioning, bucket)?
            .versioning)
    }

    async fn put_versioning(&self, bucket: &str, enabled: bool) -> Result<(), StorageError> {
        self.lock()
            .bucket(Operation::PutBucketVersioning, bucket)?
            .versioning = if enabled {
            Versioning::Enabled
        } else {
            Versioning::Suspended
        };
        Ok(())
    }

    async fn get_expiration_days(&self, bucket: &str) -> Result<Option<u32>, StorageError> {
        Ok(self
            .lock()
            .bucket(Operation::GetBucketLifecycleConfiguration, bucket)?
            .lifecycle
            .as_deref()
            .and_then(|rules| lifecycle::expiration_days(rules, EXPIRATION_RULE_ID)))
    }

    async fn put_expiration_days(
        &self,
        bucket: &str,
        days: Option<u32>,
    ) -> Result<(), StorageError> {
        // Like the real client: read the configuration, then write only if the merge changed it.
        let mut state = self.lock();
        let current = state
            .bucket(Operation::GetBucketLifecycleConfiguration, bucket)?
            .lifecycle
            .clone();
        let change =
            lifecycle::change(current.as_deref(), EXPIRATION_RULE_ID, days).map_err(|detail| {
                StorageError::UnexpectedResponse {
                    operation: Operation::PutBucketLifecycleConfiguration,
                    subject: Subject::Bucket(bucket.to_owned()),
                    detail,
                }
            })?;
        match change {
            LifecycleChange::Unchanged => {}
            LifecycleChange::Put(merged) => {
                state
                    .bucket(Operation::PutBucketLifecycleConfiguration, bucket)?
                    .lifecycle = Some(merged);
            }
            LifecycleChange::Delete => {
                state
                    .bucket(Operation::DeleteBucketLifecycle, bucket)?
                    .lifecycle = None;
            }
        }
        Ok(())
    }

    async fn get_tags(&self, bucket: &str) -> Result<BucketTags, StorageError> {
        Ok(self
            .lock()
            .bucket(Operation::GetBucketTagging, bucket)?
            .tags
            .clone())
    }

    async fn put_tags(&self, bucket: &str, tags: &BucketTags) -> Result<(), StorageError> {
        let operation = if tags.is_empty() {
            Operation::DeleteBucketTagging
        } else {
            Operation::PutBucketTagging
        };
        self.lock().bucket(operation, bucket)?.tags = tags.clone();
        Ok(())
    }

    async fn get_bucket_policy(&self, bucket: &str) -> Result<Option<String>, StorageError> {
        Ok(self
            .lock()
            .bucket(Operation::GetBucketPolicy, bucket)?
            .policy
            .clone())
    }

    /// Refuses, as AWS does, a document that does not parse and a principal that names no
    /// existing user.
    async fn put_bucket_policy(&self, bucket: &str, document: &str) -> Result<(), StorageError> {
        let mut state = self.lock();
        let subject = Subject::Bucket(bucket.to_owned());
        state.bucket(Operation::PutBucketPolicy, bucket)?;
        let malformed = |message: String| {
            service_error(
                Operation::PutBucketPolicy,
                subject.clone(),
                ErrorCode::Other("MalformedPolicy".into()),
                &message,
            )
        };
        let parsed = PolicyDocument::from_json(document).map_err(|e| malformed(e.to_string()))?;
        for arn in parsed
            .statement
            .iter()
            .filter_map(|statement| statement.principal.as_ref())
            .flat_map(|principal| &principal.aws)
        {
            let known = arn == "*"
                || state
                    .users
                    .keys()
                    .any(|user| Self::user_arn_of(user) == *arn);
            if !known {
                return Err(malformed(format!("Invalid principal in policy: {arn}")));
            }
        }
        if let Some(found) = state.buckets.get_mut(bucket) {
            found.policy = Some(document.to_owned());
        }
        Ok(())
    }

    async fn delete_bucket_policy(&self, bucket: &str) -> Result<(), StorageError> {
        self.lock()
            .bucket(Operation::DeleteBucketPolicy, bucket)?
            .policy = None;
        Ok(())
    }

    async fn list_buckets(&self) -> Result<Vec<String>, StorageError> {
        let mut state = self.lock();
        state.enter(Operation::ListBuckets, &Subject::Service)?;
        Ok(state.buckets.keys().cloned().collect())
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<bool, StorageError> {
        let mut state = self.lock();
        let subject = Subject::Bucket(bucket.to_owned());
        state.enter(Operation::DeleteBucket, &subject)?;
        match state.buckets.get(bucket) {
            None => Ok(false),
            Some(found) if !found.entries.is_empty() => Err(service_error(
                Operation::DeleteBucket,
                subject,
                ErrorCode::BucketNotEmpty,
                "the bucket still holds objects, versions or delete markers; it must be emptied first",
            )),
            Some(_) => {
                state.buckets.remove(bucket);
                Ok(true)
            }
        }
    }

    async fn empty_bucket(&self, bucket: &str) -> Result<u64, StorageError> {
        let mut state = self.lock();
        state.enter(
            Operation::DeleteObjects,
            &Subject::Bucket(bucket.to_owned()),
        )?;
        Ok(state
            .buckets
            .get_mut(bucket)
            .map(|stored| std::mem::take(&mut stored.entries).into_values().sum())
            .unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::storage::ObjectStore;
    use crate::provision::storage::policy::{BucketAccess, identity_policy};

    #[tokio::test]
    async fn users_keys_and_policies() {
        let store = FakeObjectStore::new();
        assert!(store.ensure_user("payments").await.unwrap());
        assert!(!store.ensure_user("payments").await.unwrap());
        let key = store.create_access_key("payments").await.unwrap();
        let listed = store.list_access_keys("payments").await.unwrap();
        assert_eq!(
            listed,
            [AccessKeyMetadata {
                access_key_id: key.access_key_id.clone(),
                active: true
            }]
        );
        let other = store.create_access_key("payments").await.unwrap();
        assert_ne!(key, other);

        store
            .put_user_policy(
                "payments",
                "p",
                &identity_policy("payments-orders-lake", BucketAccess::Owner),
            )
            .await
            .unwrap();
        assert_eq!(store.list_user_policies("payments").await.unwrap(), ["p"]);
        assert!(
            store
                .get_user_policy("payments", "p")
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .get_user_policy("payments", "q")
                .await
                .unwrap()
                .is_none()
        );
        assert!(store.allows("payments", "s3:PutObject", "payments-orders-lake"));
        assert!(!store.allows("payments", "s3:PutObject", "marketing-x-y"));

        store
            .delete_access_key("payments", &key.access_key_id)
            .await
            .unwrap();
        store
            .delete_access_key("payments", &key.access_key_id)
            .await
            .unwrap();
        assert_eq!(store.list_access_keys("payments").await.unwrap().len(), 1);
        store.delete_user_policy("payments", "p").await.unwrap();
        store.delete_user_policy("payments", "p").await.unwrap();
        assert!(!store.allows("payments", "s3:GetObject", "payments-orders-lake"));

        assert!(store.delete_user("payments").await.unwrap());
        assert!(!store.delete_user("payments").await.unwrap());
        assert!(!store.user_exists("payments").await.unwrap());
        assert!(store.list_access_keys("payments").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn policies_and_keys_need_an_existing_user() {
        let store = FakeObjectStore::new();
        let error = store
            .put_user_policy("ghost", "p", &identity_policy("b", BucketAccess::Read))
            .await
            .unwrap_err();
        assert_eq!(error.code(), Some(&ErrorCode::NoSuchEntity));
        assert_eq!(
            store.create_access_key("ghost").await.unwrap_err().code(),
            Some(&ErrorCode::NoSuchEntity)
        );
    }

    #[tokio::test]
    async fn a_recreated_user_starts_without_policies() {
        let store = FakeObjectStore::new();
        store.ensure_user("u").await.unwrap();
        store
            .put_user_policy("u", "p", &identity_policy("b", BucketAccess::Read))
            .await
            .unwrap();
        store.delete_user("u").await.unwrap();
        store.ensure_user("u").await.unwrap();
        assert!(store.list_user_policies("u").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn bucket_configuration_round_trips() {
        let store = FakeObjectStore::new();
        assert!(store.ensure_bucket("b").await.unwrap());
        assert!(!store.ensure_bucket("b").await.unwrap());
        assert!(store.bucket_exists("b").await.unwrap());
        assert_eq!(
            store.get_versioning("b").await.unwrap(),
            Versioning::Unversioned
        );
        store.put_versioning("b", true).await.unwrap();
        assert_eq!(
            store.get_versioning("b").await.unwrap(),
            Versioning::Enabled
        );
        store.put_versioning("b", false).await.unwrap();
        assert_eq!(
            store.get_versioning("b").await.unwrap(),
            Versioning::Suspended
        );
        assert_eq!(store.get_expiration_days("b").await.unwrap(), None);
        store.put_expiration_days("b", Some(30)).await.unwrap();
        assert_eq!(store.get_expiration_days("b").await.unwrap(), Some(30));
        store.put_expiration_days("b", None).await.unwrap();
        assert_eq!(store.get_expiration_days("b").await.unwrap(), None);
        assert_eq!(store.lifecycle_configuration("b"), None);
        let tags: BucketTags = [("datamesh.dev/domain".to_owned(), "payments".to_owned())].into();
        store.put_tags("b", &tags).await.unwrap();
        assert_eq!(store.get_tags("b").await.unwrap(), tags);
        assert_eq!(store.get_tags_if_exists("b").await.unwrap(), Some(tags));
        assert_eq!(store.get_tags_if_exists("nope").await.unwrap(), None);
        assert_eq!(store.list_buckets().await.unwrap(), ["b"]);
        assert_eq!(
            store.get_versioning("nope").await.unwrap_err().code(),
            Some(&ErrorCode::NoSuchBucket)
        );
    }

    #[tokio::test]
    async fn the_expiration_rule_is_merged_with_foreign_lifecycle_rules() {
        let store = FakeObjectStore::new();
        store.ensure_bucket("b").await.unwrap();
        // Someone else's whole-bucket expiry, and rules of every other kind.
        let retention = lifecycle::expiration_rule("retention", 90).unwrap();
        let mut foreign = vec![retention];
        foreign.extend(lifecycle::tests::foreign_rules());
        store
            .put_lifecycle_configuration("b", foreign.clone())
            .unwrap();
        // Someone else's whole-bucket expiry is not the operator's.
        assert_eq!(store.get_expiration_days("b").await.unwrap(), None);
        store.clear_calls();
        store.put_expiration_days("b", Some(30)).await.unwrap();
        assert_eq!(store.get_expiration_days("b").await.unwrap(), Some(30));
        let ours = lifecycle::expiration_rule(EXPIRATION_RULE_ID, 30).unwrap();
        let mut both = foreign.clone();
        both.push(ours.clone());
        assert_eq!(store.lifecycle_configuration("b"), Some(both));
        // Setting the same expiry again writes nothing.
        store.put_expiration_days("b", Some(30)).await.unwrap();
        let subject = Subject::Bucket("b".into());
        assert_eq!(
            store.writes(),
            [(Operation::PutBucketLifecycleConfiguration, subject.clone())]
        );
        // Removing the operator's expiry keeps the foreign rules, and only the last rule's
        // removal deletes the configuration.
        store.put_expiration_days("b", None).await.unwrap();
        assert_eq!(store.lifecycle_configuration("b"), Some(foreign));
        store.put_lifecycle_configuration("b", vec![ours]).unwrap();
        store.clear_calls();
        store.put_expiration_days("b", None).await.unwrap();
        assert_eq!(store.lifecycle_configuration("b"), None);
        assert_eq!(
            store.writes(),
            [(Operation::DeleteBucketLifecycle, subject)]
        );
    }

    #[tokio::test]
    async fn data_is_deleted_only_by_empty_bucket() {
        let store = FakeObjectStore::new();
        store.ensure_bucket("b").await.unwrap();
        store.put_versioning("b", true).await.unwrap();
        store.put_object("b", "k").unwrap();
        store.put_object("b", "k").unwrap();
        store.put_object("b", "j").unwrap();
        let refused = store.delete_bucket("b").await.unwrap_err();
        assert_eq!(refused.code(), Some(&ErrorCode::BucketNotEmpty));
        assert!(store.bucket_exists("b").await.unwrap());
        assert_eq!(store.empty_bucket("b").await.unwrap(), 3);
        assert!(store.delete_bucket("b").await.unwrap());
        assert!(!store.delete_bucket("b").await.unwrap());
        assert_eq!(store.empty_bucket("b").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_steady_state_makes_no_writes() {
        let store = FakeObjectStore::new();
        store.ensure_user("u").await.unwrap();
        store.ensure_bucket("b").await.unwrap();
        assert_eq!(
            store.writes(),
            [
                (Operation::CreateUser, Subject::User("u".into())),
                (Operation::CreateBucket, Subject::Bucket("b".into()))
            ]
        );
        store.clear_calls();
        store.ensure_user("u").await.unwrap();
        store.ensure_bucket("b").await.unwrap();
        store.get_versioning("b").await.unwrap();
        assert!(store.writes().is_empty());
        assert_eq!(store.calls().len(), 3);
    }

    #[tokio::test]
    async fn injected_failures_fail_once() {
        let store = FakeObjectStore::new();
        store.fail_next(Operation::CreateBucket, ErrorCode::AccessDenied);
        let error = store.ensure_bucket("b").await.unwrap_err();
        assert!(error.is_access_denied());
        assert_eq!(
            error.to_string(),
            "CreateBucket on bucket \"b\" failed: AccessDenied (HTTP 403): injected by FakeObjectStore::fail_next"
        );
        assert!(store.ensure_bucket("b").await.unwrap());
    }

    #[tokio::test]
    async fn usable_as_a_shared_trait_object() {
        let store: std::sync::Arc<dyn ObjectStore> = std::sync::Arc::new(FakeObjectStore::new());
        let handle = tokio::spawn({
            let store = store.clone();
            async move { store.ensure_bucket("b").await }
        });
        assert!(handle.await.unwrap().unwrap());
        assert!(store.bucket_exists("b").await.unwrap());
    }

    #[tokio::test]
    async fn user_tags_are_added_and_kept() {
        let store = FakeObjectStore::new();
        store.ensure_user("payments").await.unwrap();
        assert!(store.user_tags("payments").await.unwrap().is_empty());
        let tags = UserTags::from([("datamesh.dev/domain".to_owned(), "payments".to_owned())]);
        store.tag_user("payments", &tags).await.unwrap();
        let more = UserTags::from([("team".to_owned(), "a".to_owned())]);
        store.tag_user("payments", &more).await.unwrap();
        let have = store.user_tags("payments").await.unwrap();
        assert_eq!(have.len(), 2);
        assert_eq!(have["datamesh.dev/domain"], "payments");
        let error = store.tag_user("nobody", &tags).await.unwrap_err();
        assert_eq!(error.code(), Some(&ErrorCode::NoSuchEntity));
        assert!(store.user_tags("nobody").await.unwrap().is_empty());
    }
}
