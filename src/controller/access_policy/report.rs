//! *Report*: what the reconcile comes to, on the policy, always. A failed step turns `Ready`
//! `False` with a reason naming the system (the rest of the status as it was) and a Warning
//! Event; otherwise the planned status is written, if it changed, and the planned Events (grants
//! made and revoked, a policy turning Stalled) are published.

use kube::{Api, ResourceExt};

use super::State;
use super::plan::Plan;
use crate::api::access_policy::AccessPolicy;
use crate::controller::applied::Applied;
use crate::controller::failure::report_outcome;
use crate::controller::{Error, kube_context};

/// Report on `policy` what applying `plan` did. Returns the first failure, if any, for the
/// controller's error policy to count and back off on.
pub async fn report(
    policy: &AccessPolicy,
    plan: &Plan,
    applied: Applied,
    state: &State,
) -> Result<(), Error> {
    let ctx = &*state.ctx;
    let name = policy.name_any();
    let namespace = policy.namespace().unwrap_or_default();
    let api = Api::<AccessPolicy>::namespaced(ctx.client.clone(), &namespace);
    if let Some(outcome) = applied.outcome() {
        report_outcome(ctx, &api, policy, outcome).await;
    }
    // A failure not worth a status change (a stale copy) is still retried, and reports nothing
    // that the next reconcile could contradict.
    applied.into_result()?;
    if let Some(status) = &plan.status {
        crate::controller::apply::apply_status(&api, &name, status)
            .await
            .map_err(kube_context(format!(
                "writing status of AccessPolicy {namespace}/{name}"
            )))?;
    }
    for event in &plan.events {
        tracing::info!(policy = %name, %namespace, reason = %event.reason, "{}", event.note);
        ctx.publish(policy, event.type_, &event.reason, event.note.clone())
            .await;
    }
    Ok(())
}
