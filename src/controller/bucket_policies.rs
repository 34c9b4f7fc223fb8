//! Each managed bucket's policy, kept in step with a remembered copy, and the IAM users' ARNs
//! that its statements name.
//!
//! Access to a bucket is written on the bucket (see [`crate::provision::storage::bucket_policy`]
//! for why): the owning domain's part by the DataProduct controller, the consumers' part by
//! the AccessPolicy controller. Both go through [`BucketPolicies::converge`], which holds one
//! lock per bucket, so the two never write from the same stale read and undo each other.
//!
//! Why remember: most reconciles change nothing in a bucket's policy. The copy of what the
//! service holds is trusted for one resync period; after that the next reconcile reads the
//! service again, so a policy changed directly on the bucket is set back within a resync, as
//! for Kafka configs.
//!
//! Release: a bucket its product lets go (a port removed, or the product deleted, with the
//! bucket kept) loses both parts under the bucket's lock, and stays released until the
//! DataProduct controller writes an owner's part again. The consumers' part is not written on a
//! released bucket, so an AccessPolicy reconcile that read the product before its release, and
//! writes after it, cannot grant the consumers a bucket nobody manages any more: the product's
//! next status no longer lists the bucket, and no later reconcile would take the grant back.
//!
//! Upgrades: operators before bucket policies gave access through inline IAM policies
//! ([`LEGACY_POLICY_NAMES`]). The first time this process needs a user's ARN it removes those
//! from the user, if the user's tags say the operator manages it (an identity it did not make is
//! never changed), so that a grant revoked since can no longer be held through them. Until every
//! product has been reconciled once after the upgrade (seconds, as the operator reconciles
//! everything on start), a bucket whose policy is not written yet may refuse its readers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::controller::apply::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::provision::storage::bucket_policy::{Merged, Part, Principals, merge};
use crate::provision::storage::policy::BucketAccess;
use crate::provision::storage::policy::Statement;
use crate::provision::storage::{ObjectStore, Operation, StorageError, Subject};

/// Inline IAM policies earlier versions of the operator wrote, removed on upgrade.
pub const LEGACY_POLICY_NAMES: [&str; 2] = ["datamesh-owner", "datamesh-grants"];

/// What one call to [`BucketPolicies::converge`] did to the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyWrite {
    /// The bucket's policy already held the part as wanted.
    Unchanged,
    /// The policy was put.
    Put,
    /// Nothing was left in it and the policy was deleted.
    Deleted,
    /// Grants were not written: the bucket was released by its product (see the module docs).
    Released,
}

#[derive(Clone)]
struct Known {
    /// The document as last read or written; `None` for no policy.
    document: Option<String>,
    read_at: Instant,
}

/// What is known of one bucket, behind its lock.
#[derive(Default)]
struct BucketState {
    /// The remembered policy; `None` until read, and after a failed write.
    known: Option<Known>,
    /// Released by its product, and not owned again since.
    released: bool,
}

type Slot = Arc<tokio::sync::Mutex<BucketState>>;

/// The remembered bucket policies (one lock per bucket) and user ARNs.
pub struct BucketPolicies {
    trust_for: Duration,
    slots: Mutex<HashMap<String, Slot>>,
    arns: Mutex<HashMap<String, String>>,
}

impl BucketPolicies {
    /// Remember what the service holds for `trust_for` (the resync period).
    pub fn new(trust_for: Duration) -> Self {
        Self {
            trust_for,
            slots: Mutex::new(HashMap::new()),
            arns: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, bucket: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.entry(bucket.to_owned()).or_default().clone()
    }

    /// Forget the user's ARN (the user is being deleted): a user of the same name made later
    /// is looked up again, and cleaned of legacy policies again.
    pub fn forget_user(&self, user: &str) {
        let mut arns = self.arns.lock().unwrap_or_else(PoisonError::into_inner);
        arns.remove(user);
    }

    /// Forget the bucket's policy (the bucket was deleted).
    pub fn forget_bucket(&self, bucket: &str) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.remove(bucket);
    }

    /// The ARN of `user`, looked up once per process (an ARN never changes for a user name),
    /// or `None` when the user does not exist (yet). The first lookup also removes the user's
    /// legacy inline policies (see the module docs).
    pub async fn arn(
        &self,
        storage: &dyn ObjectStore,
        user: &str,
    ) -> Result<Option<String>, StorageError> {
        let known = {
            let arns = self.arns.lock().unwrap_or_else(PoisonError::into_inner);
            arns.get(user).cloned()
        };
        if let Some(arn) = known {
            return Ok(Some(arn));
        }
        let Some(arn) = storage.user_arn(user).await? else {
            return Ok(None);
        };
        let tags = storage.user_tags(user).await?;
        if tags.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY) {
            for legacy in storage.list_user_policies(user).await? {
                if LEGACY_POLICY_NAMES.contains(&legacy.as_str()) {
                    storage.delete_user_policy(user, &legacy).await?;
                    tracing::info!(%user, policy = %legacy, "removed a legacy inline policy: access is on the buckets now");
                }
            }
        }
        let mut arns = self.arns.lock().unwrap_or_else(PoisonError::into_inner);
        arns.insert(user.to_owned(), arn.clone());
        Ok(Some(arn))
    }

    /// The ARNs of `users`, by access level, for a part's statements; and the users that do
    /// not exist (yet), which no statement can name.
    pub async fn principals(
        &self,
        storage: &dyn ObjectStore,
        users: &BTreeMap<BucketAccess, BTreeSet<String>>,
    ) -> Result<(Principals, Vec<String>), StorageError> {
        let mut principals = Principals::new();
        let mut missing = Vec::new();
        for (access, names) in users {
            for user in names {
                match self.arn(storage, user).await? {
                    Some(arn) => {
                        principals.entry(*access).or_default().insert(arn);
                    }
                    None => missing.push(user.clone()),
                }
            }
        }
        Ok((principals, missing))
    }

    /// Make `part` of the bucket's policy hold exactly `wanted` (no statements: the part goes),
    /// keeping the rest of the policy. Nothing is sent when the remembered copy already holds
    /// it; otherwise the service's policy is read (unless the copy is still trusted), merged and
    /// written if that changed it.
    ///
    /// Owner's statements make a released bucket held again; grants on a released bucket are
    /// not written ([`PolicyWrite::Released`]), while taking them away always is.
    pub async fn converge(
        &self,
        storage: &dyn ObjectStore,
        bucket: &str,
        part: Part,
        wanted: &[Statement],
    ) -> Result<PolicyWrite, StorageError> {
        let slot = self.slot(bucket);
        let mut state = slot.lock().await;
        match part {
            Part::Grants if state.released && !wanted.is_empty() => {
                return Ok(PolicyWrite::Released);
            }
            Part::Owner if !wanted.is_empty() => state.released = false,
            _ => {}
        }
        self.converge_held(storage, bucket, &mut state.known, part, wanted)
            .await
    }

    /// Take both parts out of the bucket's policy, and write no grants on it until an owner's
    /// part is written again (see the module docs). Returns what each part's removal did.
    pub async fn release(
        &self,
        storage: &dyn ObjectStore,
        bucket: &str,
    ) -> Result<[(Part, PolicyWrite); 2], StorageError> {
        let slot = self.slot(bucket);
        let mut state = slot.lock().await;
        // Before the writes: should one fail, the retry finds the grants still held back.
        state.released = true;
        let grants = self
            .converge_held(storage, bucket, &mut state.known, Part::Grants, &[])
            .await?;
        let owner = self
            .converge_held(storage, bucket, &mut state.known, Part::Owner, &[])
            .await?;
        Ok([(Part::Grants, grants), (Part::Owner, owner)])
    }

    /// [`Self::converge`] with the bucket's lock held.
    async fn converge_held(
        &self,
        storage: &dyn ObjectStore,
        bucket: &str,
        known: &mut Option<Known>,
        part: Part,
        wanted: &[Statement],
    ) -> Result<PolicyWrite, StorageError> {
        let trusted = known
            .as_ref()
            .filter(|k| k.read_at.elapsed() < self.trust_for)
            .cloned();
        let (existing, read_at) = match trusted {
            Some(copy) => (copy.document, copy.read_at),
            None => {
                // Forget the old copy first: if the read fails, the next reconcile reads again.
                *known = None;
                (storage.get_bucket_policy(bucket).await?, Instant::now())
            }
        };
        let merged = merge(existing.as_deref(), part, wanted).map_err(|error| {
            StorageError::UnexpectedResponse {
                operation: Operation::GetBucketPolicy,
                subject: Subject::Bucket(bucket.to_owned()),
                detail: format!("the bucket's policy is not a policy document: {error}"),
            }
        })?;
        let (document, write) = match merged {
            Merged::Unchanged => (existing, PolicyWrite::Unchanged),
            Merged::Put(document) => {
                *known = None;
                storage.put_bucket_policy(bucket, &document).await?;
                (Some(document), PolicyWrite::Put)
            }
            Merged::Delete => {
                *known = None;
                storage.delete_bucket_policy(bucket).await?;
                (None, PolicyWrite::Deleted)
            }
        };
        *known = Some(Known { document, read_at });
        Ok(write)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::controller::apply::domain_labels;
    use crate::provision::storage::bucket_policy::statements;
    use crate::provision::storage::policy::PolicyDocument;
    use crate::provision::storage::{BucketStore, FakeObjectStore, IdentityStore};

    const BUCKET: &str = "payments-orders-lake";

    async fn world() -> FakeObjectStore {
        let storage = FakeObjectStore::new();
        for user in ["payments", "marketing"] {
            storage.ensure_user(user).await.unwrap();
        }
        storage.ensure_bucket(BUCKET).await.unwrap();
        storage
    }

    fn part(part: Part, level: BucketAccess, users: &[&str]) -> Vec<Statement> {
        let arns: BTreeSet<String> = users
            .iter()
            .map(|u| FakeObjectStore::user_arn_of(u))
            .collect();
        let principals: Principals = [(level, arns)].into_iter().collect();
        statements(part, BUCKET, &principals)
    }

    #[tokio::test]
    async fn owner_and_grants_parts_share_the_bucket_and_a_resync_sends_nothing() {
        let storage = world().await;
        let policies = BucketPolicies::new(Duration::from_secs(300));
        let owner = part(Part::Owner, BucketAccess::Owner, &["payments"]);
        let grants = part(Part::Grants, BucketAccess::Read, &["marketing"]);
        let first = policies
            .converge(&storage, BUCKET, Part::Owner, &owner)
            .await;
        assert_eq!(first.unwrap(), PolicyWrite::Put);
        let second = policies
            .converge(&storage, BUCKET, Part::Grants, &grants)
            .await;
        assert_eq!(second.unwrap(), PolicyWrite::Put);
        assert!(storage.allows("payments", "s3:PutObject", BUCKET));
        assert!(storage.allows("marketing", "s3:GetObject", BUCKET));
        assert!(!storage.allows("marketing", "s3:PutObject", BUCKET));

        storage.clear_calls();
        for (which, wanted) in [(Part::Owner, &owner), (Part::Grants, &grants)] {
            let again = policies.converge(&storage, BUCKET, which, wanted).await;
            assert_eq!(again.unwrap(), PolicyWrite::Unchanged);
        }
        assert!(storage.calls().is_empty(), "{:?}", storage.calls());

        // Revoking the grants keeps the owner's access.
        let revoked = policies.converge(&storage, BUCKET, Part::Grants, &[]).await;
        assert_eq!(revoked.unwrap(), PolicyWrite::Put);
        assert!(!storage.allows("marketing", "s3:GetObject", BUCKET));
        assert!(storage.allows("payments", "s3:GetObject", BUCKET));
        let released = policies.converge(&storage, BUCKET, Part::Owner, &[]).await;
        assert_eq!(released.unwrap(), PolicyWrite::Deleted);
        assert_eq!(storage.bucket_policy(BUCKET), None);
    }

    #[tokio::test]
    async fn a_released_bucket_takes_no_grants_until_it_is_owned_again() {
        let storage = world().await;
        let policies = BucketPolicies::new(Duration::from_secs(300));
        let owner = part(Part::Owner, BucketAccess::Owner, &["payments"]);
        let grants = part(Part::Grants, BucketAccess::Read, &["marketing"]);
        policies
            .converge(&storage, BUCKET, Part::Owner, &owner)
            .await
            .unwrap();
        policies
            .converge(&storage, BUCKET, Part::Grants, &grants)
            .await
            .unwrap();

        let released = policies.release(&storage, BUCKET).await.unwrap();
        assert_eq!(
            released,
            [
                (Part::Grants, PolicyWrite::Put),
                (Part::Owner, PolicyWrite::Deleted)
            ]
        );
        let late = policies
            .converge(&storage, BUCKET, Part::Grants, &grants)
            .await;
        assert_eq!(late.unwrap(), PolicyWrite::Released);
        assert_eq!(storage.bucket_policy(BUCKET), None);
        assert!(!storage.allows("marketing", "s3:GetObject", BUCKET));
        assert!(!storage.allows("payments", "s3:GetObject", BUCKET));

        // The port comes back: the owner's part is written, and grants with it.
        policies
            .converge(&storage, BUCKET, Part::Owner, &owner)
            .await
            .unwrap();
        let granted = policies
            .converge(&storage, BUCKET, Part::Grants, &grants)
            .await;
        assert_eq!(granted.unwrap(), PolicyWrite::Put);
        assert!(storage.allows("marketing", "s3:GetObject", BUCKET));
    }

    #[tokio::test]
    async fn a_policy_changed_behind_the_copy_is_set_back_once_the_copy_is_stale() {
        let storage = world().await;
        let policies = BucketPolicies::new(Duration::ZERO);
        let owner = part(Part::Owner, BucketAccess::Owner, &["payments"]);
        policies
            .converge(&storage, BUCKET, Part::Owner, &owner)
            .await
            .unwrap();
        // Someone grants marketing through a statement of the operator's.
        let tampered = statements(
            Part::Owner,
            BUCKET,
            &[(
                BucketAccess::Owner,
                ["payments", "marketing"]
                    .iter()
                    .map(|u| FakeObjectStore::user_arn_of(u))
                    .collect(),
            )]
            .into_iter()
            .collect(),
        );
        let document = PolicyDocument {
            version: "2012-10-17".into(),
            statement: tampered,
        };
        storage
            .put_bucket_policy(BUCKET, &document.to_json())
            .await
            .unwrap();
        assert!(storage.allows("marketing", "s3:PutObject", BUCKET));
        let write = policies
            .converge(&storage, BUCKET, Part::Owner, &owner)
            .await;
        assert_eq!(write.unwrap(), PolicyWrite::Put);
        assert!(!storage.allows("marketing", "s3:PutObject", BUCKET));
    }

    #[tokio::test]
    async fn the_first_lookup_of_a_managed_user_removes_its_legacy_inline_policies_only() {
        let storage = world().await;
        storage
            .tag_user("marketing", &domain_labels("marketing"))
            .await
            .unwrap();
        let legacy = PolicyDocument::from_json(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::payments-orders-lake/*"]}]}"#,
        )
        .unwrap();
        for user in ["marketing", "payments"] {
            for name in ["datamesh-owner", "datamesh-grants", "platform-audit"] {
                storage.put_user_policy(user, name, &legacy).await.unwrap();
            }
        }
        let policies = BucketPolicies::new(Duration::from_secs(300));
        let arn = policies.arn(&storage, "marketing").await.unwrap();
        assert_eq!(arn, Some(FakeObjectStore::user_arn_of("marketing")));
        assert_eq!(
            storage.list_user_policies("marketing").await.unwrap(),
            ["platform-audit"]
        );
        storage.clear_calls();
        policies.arn(&storage, "marketing").await.unwrap();
        assert!(storage.calls().is_empty(), "an ARN is looked up once");
        assert_eq!(policies.arn(&storage, "nobody").await.unwrap(), None);
        // A user without the operator's tags is not the operator's to change.
        policies.arn(&storage, "payments").await.unwrap();
        assert_eq!(
            storage.list_user_policies("payments").await.unwrap(),
            ["datamesh-grants", "datamesh-owner", "platform-audit"]
        );
    }
}
