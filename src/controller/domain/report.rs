//! Tell a Domain's owners what its reconcile did: the status is always written, errors
//! included. A failed step shows as `Ready=False` with a reason naming the system (see
//! [`Applied::outcome`]) and a Warning Event, the rest of the status kept; otherwise the
//! planned status, with an Event when the Domain becomes Ready or stalls. The result is the
//! apply's, so that the controller's error policy counts failures and backs off.

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::apply::Done;
use super::plan::{CleanupPlan, Next, Plan};
use crate::api::conditions::{Outcome, Progress, READY, is_true};
use crate::api::domain::{Domain, DomainStatus};
use crate::controller::applied::Applied;
use crate::controller::apply::apply_status;
use crate::controller::failure::report_outcome;
use crate::controller::{Context, Error, kube_context};

/// Report a reconcile of a Domain that is not being deleted.
pub async fn report(
    domain: &Domain,
    plan: &Plan,
    done: Done,
    ctx: &Context,
) -> Result<Action, Error> {
    // The Domain as stored now: a failure report must keep what was recorded, or it would
    // drop the record of identities that may already exist.
    let stored = match (&plan.record, done.recorded) {
        (Some(record), true) => Domain {
            status: Some(record.clone()),
            ..domain.clone()
        },
        _ => domain.clone(),
    };
    fail_on_errors(&stored, done.applied, ctx).await?;
    write_status(&stored, &plan.status, &plan.outcome, ctx).await?;
    Ok(match plan.next {
        Next::Resync => ctx.resync(),
        Next::After(delay) => Action::requeue(delay),
    })
}

/// Report a Domain's deletion: nothing to remove, blocked by products, or what was removed.
pub async fn report_cleanup(
    domain: &Domain,
    plan: &CleanupPlan,
    applied: Applied,
    ctx: &Context,
) -> Result<Action, Error> {
    match plan {
        CleanupPlan::NothingToRemove { note } => {
            ctx.publish(domain, EventType::Normal, "NothingToRemove", note.clone())
                .await;
            Ok(Action::await_change())
        }
        CleanupPlan::Blocked { outcome, status } => {
            write_status(domain, status, outcome, ctx).await?;
            ctx.publish(
                domain,
                EventType::Warning,
                "DeletionBlocked",
                outcome.message.clone(),
            )
            .await;
            Err(Error::Blocked(outcome.message.clone()))
        }
        CleanupPlan::Remove(removal) => {
            // A deletion that fails (a system down) says so too, while it waits.
            fail_on_errors(domain, applied, ctx).await?;
            tracing::info!(domain = %domain.name_any(), "{}", removal.note);
            ctx.publish(
                domain,
                EventType::Normal,
                "IdentitiesRemoved",
                removal.note.clone(),
            )
            .await;
            Ok(Action::await_change())
        }
    }
}

/// When a step failed: `Ready=False` with what failed, and the first failure as the result.
async fn fail_on_errors(domain: &Domain, applied: Applied, ctx: &Context) -> Result<(), Error> {
    if applied.succeeded() {
        return Ok(());
    }
    if let Some(outcome) = applied.outcome() {
        report_outcome(
            ctx,
            &Api::<Domain>::all(ctx.client.clone()),
            domain,
            outcome,
        )
        .await;
    }
    applied.into_result()
}

/// Write `status` when it differs from the stored one; publish an Event when the Domain
/// becomes Ready or stalls.
async fn write_status(
    domain: &Domain,
    status: &DomainStatus,
    outcome: &Outcome,
    ctx: &Context,
) -> Result<(), Error> {
    let current = domain.status.clone().unwrap_or_default();
    if *status == current {
        return Ok(());
    }
    let name = domain.name_any();
    apply_status(&Api::<Domain>::all(ctx.client.clone()), &name, status)
        .await
        .map_err(kube_context(format!("writing status of Domain {name}")))?;
    let was_ready = is_true(&current.conditions, READY);
    match outcome.progress {
        Progress::Ready if !was_ready => {
            ctx.publish(
                domain,
                EventType::Normal,
                &outcome.reason,
                outcome.message.clone(),
            )
            .await;
        }
        Progress::Stalled => {
            ctx.publish(
                domain,
                EventType::Warning,
                &outcome.reason,
                outcome.message.clone(),
            )
            .await;
        }
        _ => {}
    }
    Ok(())
}
