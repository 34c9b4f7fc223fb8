//! Writing Kubernetes objects the way every reconciler here does: server-side apply with the
//! operator's field manager, and no write at all when the object already says what we want.

use std::collections::BTreeMap;
use std::fmt::Debug;

use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "datamesh-operator";
/// Label on every object the operator makes.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "datamesh-operator";
/// Label naming the domain an object belongs to.
pub const DOMAIN_LABEL: &str = "datamesh.dev/domain";
/// Label naming the data product an object belongs to.
pub const DATA_PRODUCT_LABEL: &str = "datamesh.dev/data-product";
/// Label (and bucket tag) carrying the classification of the data an object concerns.
pub const CLASSIFICATION_LABEL: &str = "datamesh.dev/classification";

/// The watch configuration for the operator's own children: only objects with its
/// `managed-by` label, so that watching a kind cluster-wide holds only what the operator made.
pub fn managed_children() -> kube::runtime::watcher::Config {
    kube::runtime::watcher::Config::default()
        .labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"))
        .any_semantic()
}

/// The labels every child of a domain carries.
pub fn domain_labels(domain: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (DOMAIN_LABEL.to_owned(), domain.to_owned()),
    ])
}

/// The labels every child of a data product carries: the domain's, the product's name and its
/// classification, so that cost and ownership can be attributed by label selector.
pub fn product_labels(
    domain: &str,
    product: &str,
    classification: crate::api::data_product::Classification,
) -> BTreeMap<String, String> {
    let mut labels = domain_labels(domain);
    labels.insert(DATA_PRODUCT_LABEL.to_owned(), product.to_owned());
    labels.insert(
        CLASSIFICATION_LABEL.to_owned(),
        crate::export::classification(classification),
    );
    labels
}

/// Whether every field set in `desired` has the same value in `actual`. Objects are compared
/// key by key (extra keys in `actual`, such as defaults and status, are fine); everything else,
/// lists included, must be equal. Pure.
pub fn is_subset(desired: &Value, actual: &Value) -> bool {
    match (desired, actual) {
        (Value::Object(want), Value::Object(have)) => {
            want.iter().all(|(key, value)| match have.get(key) {
                Some(present) => is_subset(value, present),
                None => is_empty(value),
            })
        }
        (Value::Array(want), Value::Array(have)) => {
            want.len() == have.len() && want.iter().zip(have).all(|(w, h)| is_subset(w, h))
        }
        _ => desired == actual,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.is_empty(),
        _ => false,
    }
}

/// Annotation carrying a digest of the object as the operator last declared it. A field the
/// operator stops declaring is still in the live object, so "the live object holds everything
/// declared" alone would never send the apply that removes it; with the digest declared too,
/// any change of the declaration (a removal included) differs from the live object, and the
/// server-side apply then removes what the operator's field manager no longer declares.
pub const DECLARED_DIGEST_ANNOTATION: &str = "datamesh.dev/declared-digest";

/// Stamp `body` (an object as JSON) with the digest of its declaration.
pub fn declare(body: &mut Value) {
    let digest = ring::digest::digest(&ring::digest::SHA256, body.to_string().as_bytes());
    let hex: String = digest.as_ref()[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    if let Some(metadata) = body
        .as_object_mut()
        .map(|object| {
            object
                .entry("metadata")
                .or_insert_with(|| Value::Object(Default::default()))
        })
        .and_then(Value::as_object_mut)
    {
        let annotations = metadata
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.insert(DECLARED_DIGEST_ANNOTATION.to_owned(), Value::String(hex));
        }
    }
}

/// Whether the live object already holds everything the declared `body` says (ignoring
/// `apiVersion`/`kind`), digest included.
pub fn already_applied(body: &Value, live: &Value) -> bool {
    let mut want = body.clone();
    if let Some(object) = want.as_object_mut() {
        object.remove("apiVersion");
        object.remove("kind");
    }
    is_subset(&want, live)
}

/// Server-side apply `desired` unless the live object already matches it. Returns whether it
/// wrote. `desired` must carry its name (and namespace, for namespaced kinds).
pub async fn apply<K>(api: &Api<K>, desired: &K) -> Result<bool, kube::Error>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
    K::DynamicType: Default,
{
    Ok(apply_unless_foreign(api, desired, false).await? == Applied::Written)
}

/// What [`apply_unless_foreign`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The live object already matched.
    Unchanged,
    /// The object was created or changed.
    Written,
    /// An object of that name exists that the operator did not make; it was left alone.
    Foreign,
}

/// [`apply`], but when `only_ours` is set an existing object without the operator's
/// `managed-by` label is left as it is: in a namespace of another domain, the operator writes
/// only what it made.
pub async fn apply_unless_foreign<K>(
    api: &Api<K>,
    desired: &K,
    only_ours: bool,
) -> Result<Applied, kube::Error>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
    K::DynamicType: Default,
{
    let name = desired.name_any();
    let mut body = serde_json::to_value(desired).map_err(kube::Error::SerdeError)?;
    if let Some(object) = body.as_object_mut() {
        let dt = K::DynamicType::default();
        object.insert("apiVersion".into(), K::api_version(&dt).into());
        object.insert("kind".into(), K::kind(&dt).into());
    }
    declare(&mut body);
    if let Some(live) = api.get_opt(&name).await? {
        let live_json = serde_json::to_value(&live).map_err(kube::Error::SerdeError)?;
        if already_applied(&body, &live_json) {
            return Ok(Applied::Unchanged);
        }
        if only_ours && live.labels().get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY)
        {
            return Ok(Applied::Foreign);
        }
    }
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(Applied::Written)
}

/// Server-side apply `status` to the status subresource of `name`, as the operator's field
/// manager. Callers compare first and call this only when the status changed.
pub async fn apply_status<K, S>(api: &Api<K>, name: &str, status: &S) -> Result<(), kube::Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
    K::DynamicType: Default,
    S: Serialize,
{
    let dt = K::DynamicType::default();
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&dt),
        "kind": K::kind(&dt),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Whether a Kubernetes API error says the object (or its kind) does not exist.
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// Delete an object in the background; one that is already gone is not an error.
pub async fn delete_ignoring_missing<K>(api: &Api<K>, name: &str) -> Result<(), kube::Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(error) if is_not_found(&error) => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_field_no_longer_declared_makes_the_live_object_differ() {
        let mut before =
            json!({"metadata": {"name": "job"}, "spec": {"mainClass": "Main", "arguments": ["a"]}});
        declare(&mut before);
        // The live object is what was applied, plus what the server added.
        let mut live = before.clone();
        live["metadata"]["uid"] = json!("u1");
        assert!(already_applied(&before, &live), "nothing changed: no write");
        let mut after = json!({"metadata": {"name": "job"}, "spec": {"mainClass": "Main"}});
        declare(&mut after);
        assert!(
            !already_applied(&after, &live),
            "removing arguments must send the apply that removes them"
        );
        let mut again =
            json!({"metadata": {"name": "job"}, "spec": {"mainClass": "Main", "arguments": ["a"]}});
        declare(&mut again);
        assert_eq!(again, before, "the digest is deterministic");
    }

    #[test]
    fn a_live_object_with_extra_defaults_matches() {
        let desired = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"hard": {"pods": "1"}}});
        let live = json!({
            "metadata": {"name": "a", "uid": "u", "labels": {"x": "1", "other": "2"}},
            "spec": {"hard": {"pods": "1"}, "scopes": []},
            "status": {}
        });
        assert!(is_subset(&desired, &live));
    }

    #[test]
    fn a_changed_value_or_missing_key_does_not_match() {
        let desired = json!({"metadata": {"labels": {"x": "1"}}});
        assert!(!is_subset(
            &desired,
            &json!({"metadata": {"labels": {"x": "2"}}})
        ));
        assert!(!is_subset(&desired, &json!({"metadata": {}})));
    }

    #[test]
    fn an_empty_desired_field_matches_an_absent_one_but_not_a_filled_one() {
        let desired = json!({"roleRef": {"name": "r"}, "subjects": []});
        assert!(is_subset(&desired, &json!({"roleRef": {"name": "r"}})));
        assert!(!is_subset(
            &desired,
            &json!({"roleRef": {"name": "r"}, "subjects": [{"name": "a"}]})
        ));
    }

    #[test]
    fn lists_must_match_element_by_element() {
        let desired = json!({"subjects": [{"kind": "User", "name": "a"}]});
        assert!(is_subset(
            &desired,
            &json!({"subjects": [{"kind": "User", "name": "a", "apiGroup": "rbac"}]})
        ));
        assert!(!is_subset(
            &desired,
            &json!({"subjects": [{"kind": "User", "name": "a"}, {"kind": "User", "name": "b"}]})
        ));
    }
}
