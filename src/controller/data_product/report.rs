//! Telling a DataProduct's owners what a reconcile did: the status (kstatus conditions, each
//! port's endpoint, each input port's access), Events on transitions, and the failure, if
//! any, as `Ready=False` with a reason naming the system. Always written, errors included.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::DEPRECATED;
use super::apply::Done;
use super::desired::{self, TopicPlan};
use super::plan::{Cleanup, Plan};
use crate::api::conditions::{
    Outcome, Progress, READY, condition, find_condition, is_true, set_condition, set_progress,
};
use crate::api::data_product::{
    DataProduct, DataProductStatus, InputAccess, InputPortStatus, Lifecycle, OutputPortStatus,
    PortContract, ports_ready,
};
use crate::controller::applied::Applied;
use crate::controller::apply::apply_status;
use crate::controller::failure::{report_failure, report_outcome};
use crate::controller::{Context, Error, kube_context};

/// What exists for the product after a reconcile, for its status.
#[derive(Debug, Default)]
pub struct Provisioned {
    /// Problems that stop the product from being Ready.
    pub problems: Vec<Outcome>,
    /// Topics that exist and belong to the product.
    pub topics: BTreeSet<String>,
    /// Of those, topics that differ from the spec in a way that was refused.
    pub refused: BTreeSet<String>,
    /// Buckets that exist as declared.
    pub buckets: BTreeSet<String>,
    /// The input ports' access.
    pub inputs: Vec<InputPortStatus>,
    /// The output ports' contracts; `None` keeps the recorded ones.
    pub contracts: Option<Vec<PortContract>>,
}

impl Provisioned {
    /// What `plan` made, given what applying it did.
    pub fn of(plan: &Plan, done: &Done) -> Self {
        let made = |names: &BTreeSet<String>| -> BTreeSet<String> {
            names.difference(&done.unmade).cloned().collect()
        };
        Self {
            problems: plan
                .problems
                .iter()
                .chain(&done.problems)
                .cloned()
                .collect(),
            topics: made(&plan.held_topics),
            refused: plan.refused_topics.clone(),
            buckets: made(&plan.held_buckets),
            inputs: plan.inputs.clone(),
            contracts: plan.contracts.clone(),
        }
    }
}

/// Report a reconcile: a failure as such (the rest of the status as it was), else the status
/// the plan and its writes give, written only when it changed. Returns the reconcile's result.
pub async fn report(
    product: &DataProduct,
    plan: &Plan,
    done: Done,
    ctx: &Context,
) -> Result<Action, Error> {
    let name = product.name_any();
    let namespace = product.namespace().unwrap_or_default();
    let api = Api::<DataProduct>::namespaced(ctx.client.clone(), &namespace);
    if done.released {
        tracing::info!(product = %name, %namespace, "output ports removed: {}", plan.release.note);
        ctx.publish(
            product,
            EventType::Normal,
            "PortsRemoved",
            format!("Output ports removed from the spec: {}", plan.release.note),
        )
        .await;
    }
    if !done.applied.succeeded() {
        if let Some(outcome) = done.applied.outcome() {
            report_outcome(ctx, &api, product, outcome).await;
        }
        return done.applied.into_result().map(|()| ctx.resync());
    }

    let provisioned = Provisioned::of(plan, &done);
    let outcome = overall_outcome(product, &provisioned);
    let current = product.status.clone().unwrap_or_default();
    let status = desired_status(
        product,
        &current,
        &outcome,
        &provisioned,
        &ctx.settings.kafka.domain_bootstrap_servers,
        &ctx.settings.s3.endpoint,
    );
    if status == current {
        return Ok(ctx.resync());
    }
    apply_status(&api, &name, &status)
        .await
        .map_err(kube_context(format!(
            "writing status of DataProduct {namespace}/{name}"
        )))?;
    let was_ready = is_true(&current.conditions, READY);
    let was_deprecated = is_true(&current.conditions, DEPRECATED);
    if product.spec.status == Lifecycle::Deprecated && !was_deprecated {
        ctx.publish(
            product,
            EventType::Warning,
            "Deprecated",
            format!("Data product {namespace}/{name} is deprecated: consumers should move away; no new access is granted."),
        )
        .await;
    }
    match outcome.progress {
        Progress::Ready if !was_ready => {
            ctx.publish(product, EventType::Normal, &outcome.reason, outcome.message)
                .await;
        }
        Progress::Stalled => {
            ctx.publish(
                product,
                EventType::Warning,
                &outcome.reason,
                outcome.message,
            )
            .await;
        }
        _ => {}
    }
    Ok(ctx.resync())
}

/// Report a reconcile that could not read what it decides from: nothing was written.
pub async fn unobserved(
    product: &DataProduct,
    error: Error,
    ctx: &Context,
) -> Result<Action, Error> {
    let api = Api::<DataProduct>::namespaced(
        ctx.client.clone(),
        &product.namespace().unwrap_or_default(),
    );
    report_failure(ctx, &api, product, &error).await;
    Err(error)
}

/// Report a deletion: a failure as such (the product stays, with its finalizer, until the
/// next attempt succeeds), else an Event saying what was kept and what was deleted.
pub async fn report_cleanup(
    product: &DataProduct,
    cleanup: &Cleanup,
    applied: Applied,
    ctx: &Context,
) -> Result<Action, Error> {
    if let Some(outcome) = applied.outcome() {
        let api = Api::<DataProduct>::namespaced(
            ctx.client.clone(),
            &product.namespace().unwrap_or_default(),
        );
        report_outcome(ctx, &api, product, outcome).await;
    }
    applied.into_result()?;
    tracing::info!(product = %product.name_any(), namespace = ?product.namespace(), "{}", cleanup.note);
    ctx.publish(product, EventType::Normal, "Deleted", cleanup.note.clone())
        .await;
    Ok(Action::await_change())
}

/// The one outcome the conditions show: the first Stalled problem, else the first
/// Reconciling one, else the inputs' state, else Ready.
pub fn overall_outcome(product: &DataProduct, provisioned: &Provisioned) -> Outcome {
    for progress in [Progress::Stalled, Progress::Reconciling] {
        if let Some(problem) = provisioned.problems.iter().find(|p| p.progress == progress) {
            return problem.clone();
        }
    }
    let inputs_in = |access: InputAccess| -> Vec<String> {
        provisioned
            .inputs
            .iter()
            .filter(|i| i.access == access)
            .map(|i| format!("{}: {}", i.name, i.message.clone().unwrap_or_default()))
            .collect()
    };
    let denied = inputs_in(InputAccess::Denied);
    if !denied.is_empty() {
        return Outcome::stalled("InputUnavailable", denied.join(" "));
    }
    // An input whose domain, product or port does not exist yet is waited for, not Stalled:
    // delivered from Git (Argo CD applies a wave's objects in any order), the producer often
    // arrives after its consumer, and its arrival triggers this product again.
    let missing = inputs_in(InputAccess::NotFound);
    if !missing.is_empty() {
        return Outcome::reconciling(
            "InputNotFound",
            format!(
                "{} Waiting for it; if it is not expected, correct the input port.",
                missing.join(" ")
            ),
        );
    }
    let pending = inputs_in(InputAccess::Pending);
    if !pending.is_empty() {
        return Outcome::reconciling("AccessPending", pending.join(" "));
    }
    let declared = product.spec.output_ports.len();
    Outcome::ready(
        "Provisioned",
        format!(
            "{declared} output port(s) provisioned and {} input port(s) granted.",
            provisioned.inputs.len()
        ),
    )
}

/// The status a DataProduct should show. Pure but for the transition time of changed
/// conditions: unchanged conditions keep theirs, so equal input gives an equal status and no
/// write.
pub fn desired_status(
    product: &DataProduct,
    current: &DataProductStatus,
    outcome: &Outcome,
    provisioned: &Provisioned,
    bootstrap_servers: &str,
    s3_endpoint: &str,
) -> DataProductStatus {
    let name = product.name_any();
    let spec = &product.spec;
    let generation = product.metadata.generation;
    let now = Time(Timestamp::now());
    let mut status = current.clone();
    set_progress(&mut status.conditions, outcome, generation, &now);
    let deprecated = spec.status == Lifecycle::Deprecated;
    if deprecated || find_condition(&status.conditions, DEPRECATED).is_some() {
        let (reason, message) = if deprecated {
            (
                "Deprecated",
                "The product is deprecated: consumers should move to its successor; no new access is granted.",
            )
        } else {
            ("NotDeprecated", "The product is not deprecated.")
        };
        set_condition(
            &mut status.conditions,
            condition(DEPRECATED, deprecated, reason, message, generation, now),
        );
    }
    status.observed_generation = generation;
    let plans = desired::topic_plans(&name, spec);
    let mut ready = 0;
    status.output_ports = spec
        .output_ports
        .iter()
        .filter_map(|port| {
            if let Some(topic) = spec.topic_name(&name, port) {
                provisioned.topics.contains(&topic).then(|| {
                    if !provisioned.refused.contains(&topic) {
                        ready += 1;
                    }
                    OutputPortStatus {
                        name: port.name.clone(),
                        config_keys: port_config_keys(&plans, &topic),
                        topic: Some(topic),
                        bootstrap_servers: Some(bootstrap_servers.to_owned()),
                        ..OutputPortStatus::default()
                    }
                })
            } else {
                let bucket = spec.bucket_name(&name, port)?;
                provisioned.buckets.contains(&bucket).then(|| {
                    ready += 1;
                    OutputPortStatus {
                        name: port.name.clone(),
                        bucket: Some(bucket),
                        endpoint: Some(s3_endpoint.to_owned()),
                        ..OutputPortStatus::default()
                    }
                })
            }
        })
        .collect();
    status.ports_ready = Some(ports_ready(ready, spec.output_ports.len()));
    status.input_ports = provisioned.inputs.clone();
    if let Some(contracts) = &provisioned.contracts {
        status.contracts = contracts.clone();
    }
    status
}

/// The config keys the spec sets on `topic`, which the status records as set by the operator.
fn port_config_keys(plans: &[TopicPlan], topic: &str) -> Vec<String> {
    plans
        .iter()
        .filter(|plan| plan.topic == topic)
        .flat_map(|plan| plan.configs.keys().cloned())
        .collect()
}
