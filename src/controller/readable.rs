//! Watches that survive objects the operator cannot read.
//!
//! A typed watch decodes each list page whole: one object that does not fit the Rust types (one
//! stored before the schema tightened, or written around validation) fails the list, the watch
//! retries forever, and no object of that kind is reconciled again. So every watch here lists
//! and watches the kind as untyped JSON and decodes object by object: an object that does not
//! decode is left out of the stream, logged, and told so in its own status (`Ready=False`,
//! `Stalled=True`, reason `UnreadableObject`); the others go on.

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};

use futures::{Stream, StreamExt, future};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::api::conditions::{Outcome, set_progress};

/// The field manager of the status written on an unreadable object (not the operator's main
/// one, so that its other status fields stay as they were).
const FIELD_MANAGER: &str = "datamesh-operator-unreadable";
/// The reason an unreadable object shows.
pub const UNREADABLE: &str = "UnreadableObject";

/// Watch every object of kind `K` (see the module docs), writing what it cannot read on the
/// object (once per generation). There is one such watch per CRD ([`super::stores`]), so each
/// unreadable object is reported once.
pub fn watch<K>(
    client: Client,
    config: watcher::Config,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug + Send + 'static,
{
    let resource = ApiResource::erase::<K>(&());
    let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
    // What was reported already, by (uid, generation): neither a re-list nor the status write
    // itself (a new resourceVersion, the same generation) may write again.
    let reported: Arc<Mutex<HashSet<(String, i64)>>> = Arc::default();
    watcher(api, config).filter_map(move |event| {
        let decoded = match event {
            Err(error) => Some(Err(error)),
            Ok(event) => decode_event(event, |object, error| {
                report_unreadable(&client, &resource, object, error, &reported);
            })
            .map(Ok),
        };
        future::ready(decoded)
    })
}

/// The event with its object decoded as `K`; `None` when it does not decode (`unreadable` is
/// told which object and why).
fn decode_event<K: DeserializeOwned>(
    event: Event<DynamicObject>,
    mut unreadable: impl FnMut(&DynamicObject, &serde_json::Error),
) -> Option<Event<K>> {
    let mut decode = |object: DynamicObject| match decode::<K>(&object) {
        Ok(decoded) => Some(decoded),
        Err(error) => {
            unreadable(&object, &error);
            None
        }
    };
    match event {
        Event::Apply(object) => decode(object).map(Event::Apply),
        Event::InitApply(object) => decode(object).map(Event::InitApply),
        Event::Delete(object) => decode(object).map(Event::Delete),
        Event::Init => Some(Event::Init),
        Event::InitDone => Some(Event::InitDone),
    }
}

/// Decode one object as `K`.
pub fn decode<K: DeserializeOwned>(object: &DynamicObject) -> Result<K, serde_json::Error> {
    serde_json::to_value(object).and_then(serde_json::from_value)
}

/// The status that tells an unreadable object's owners what is wrong. Pure.
pub fn unreadable_status(object: &DynamicObject, error: &serde_json::Error) -> serde_json::Value {
    let outcome = Outcome::stalled(
        UNREADABLE,
        format!(
            "The operator cannot read this object: {error}. It was probably stored before the schema tightened, or written around validation; fix the field (kubectl edit) and it is reconciled again."
        ),
    );
    let mut conditions = Vec::new();
    let generation = object.metadata.generation;
    set_progress(
        &mut conditions,
        &outcome,
        generation,
        &Time(Timestamp::now()),
    );
    json!({"conditions": conditions, "observedGeneration": generation})
}

fn report_unreadable(
    client: &Client,
    resource: &ApiResource,
    object: &DynamicObject,
    error: &serde_json::Error,
    reported: &Arc<Mutex<HashSet<(String, i64)>>>,
) {
    let name = object.name_any();
    let namespace = object.namespace();
    let key = (
        object.uid().unwrap_or_default(),
        object.metadata.generation.unwrap_or_default(),
    );
    if !reported
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key)
    {
        return;
    }
    tracing::error!(kind = %resource.kind, %name, namespace = ?namespace, %error, "cannot read an object; the others go on");
    let api = match &namespace {
        Some(ns) => Api::<DynamicObject>::namespaced_with(client.clone(), ns, resource),
        None => Api::<DynamicObject>::all_with(client.clone(), resource),
    };
    let patch = json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "status": unreadable_status(object, error),
    });
    let kind = resource.kind.clone();
    tokio::spawn(async move {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        if let Err(error) = api
            .patch_status(&name, &params, &Patch::Apply(&patch))
            .await
        {
            tracing::warn!(%kind, %name, %error, "could not report an unreadable object in its status");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DataProduct;

    fn object(partitions: serde_json::Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "datamesh.dev/v1alpha1", "kind": "DataProduct",
            "metadata": {"name": "orders", "namespace": "payments", "generation": 2},
            "spec": {"domain": "payments", "description": {"purpose": "p", "usage": "u"},
                     "owner": {"name": "alice"},
                     "outputPorts": [{"name": "events", "kafka": {"partitions": partitions}}]}
        }))
        .unwrap()
    }

    #[test]
    fn an_unreadable_object_is_left_out_and_named_while_the_others_pass() {
        let mut unreadable = Vec::new();
        let good: Option<Event<DataProduct>> =
            decode_event(Event::InitApply(object(json!(3))), |o, _| {
                unreadable.push(o.name_any())
            });
        assert!(
            matches!(good, Some(Event::InitApply(p)) if p.spec.output_ports[0].kafka.as_ref().unwrap().partitions == 3)
        );
        let bad: Option<Event<DataProduct>> =
            decode_event(Event::InitApply(object(json!("many"))), |o, _| {
                unreadable.push(o.name_any())
            });
        assert!(bad.is_none());
        assert_eq!(unreadable, ["orders"]);
        assert!(matches!(
            decode_event::<DataProduct>(Event::InitDone, |_, _| {}),
            Some(Event::InitDone)
        ));
    }

    #[test]
    fn the_status_of_an_unreadable_object_says_what_is_wrong() {
        let broken = object(json!("many"));
        let error = decode::<DataProduct>(&broken).unwrap_err();
        let status = unreadable_status(&broken, &error);
        let ready = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], UNREADABLE);
        assert!(
            ready["message"].as_str().unwrap().contains("invalid type"),
            "{ready}"
        );
        assert_eq!(status["observedGeneration"], 2);
    }
}
