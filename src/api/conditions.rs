//! Status conditions shared by every kind, following kstatus
//! (<https://github.com/kubernetes-sigs/cli-utils/blob/master/pkg/kstatus/README.md>).
//!
//! Every object carries three conditions: `Ready`, `Reconciling` and `Stalled`,
//! exactly one of them `True`, each stamped with the generation it describes. That is
//! what `kubectl wait --for=condition=Ready`, Argo CD and Flux read.
//!
//! Everything here is pure: the caller passes the current time, so reconcilers can
//! compute a status, compare it with the one stored, and write only when it changed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// Condition type: the object is fully reconciled and usable.
pub const READY: &str = "Ready";
/// Condition type: the controller is working towards the declared state.
pub const RECONCILING: &str = "Reconciling";
/// Condition type: the controller cannot make progress without a person acting.
pub const STALLED: &str = "Stalled";

/// `Condition.status` value for a condition that holds.
pub const TRUE: &str = "True";
/// `Condition.status` value for a condition that does not hold.
pub const FALSE: &str = "False";

/// Where a reconcile left an object, as kstatus sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Everything declared exists and is as declared.
    Ready,
    /// Work is under way and expected to finish without anyone acting.
    Reconciling,
    /// The controller cannot continue until a person changes something.
    Stalled,
}

/// The outcome of one reconcile: how far it got and why, in words for a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Which of the three kstatus states the object is in.
    pub progress: Progress,
    /// A CamelCase machine-readable reason, e.g. `TopicsCreated` or `PartitionDecrease`.
    pub reason: String,
    /// A sentence for a person; never contains secrets.
    pub message: String,
}

impl Outcome {
    /// The object is Ready.
    pub fn ready(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Progress::Ready, reason, message)
    }

    /// The object is still being reconciled.
    pub fn reconciling(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Progress::Reconciling, reason, message)
    }

    /// The object is stuck until a person acts.
    pub fn stalled(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Progress::Stalled, reason, message)
    }

    /// An outcome in `progress`.
    pub fn new(progress: Progress, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            progress,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// A condition of `type_`, true or false, describing `observed_generation`.
pub fn condition(
    type_: &str,
    holds: bool,
    reason: impl Into<String>,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: Time,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if holds { TRUE } else { FALSE }.to_owned(),
        reason: reason.into(),
        message: message.into(),
        observed_generation,
        last_transition_time: now,
    }
}

/// Inserts or replaces the condition with `new.type_`.
///
/// `lastTransitionTime` changes only when the status flips: a condition that stays
/// `True` keeps the time it became `True`, even if its reason or message changes.
/// Returns whether anything other than the transition time changed, so that a
/// reconciler can skip the status write when nothing did.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            if existing.status == new.status {
                new.last_transition_time = existing.last_transition_time.clone();
            }
            let changed = !same_condition(existing, &new);
            *existing = new;
            changed
        }
        None => {
            conditions.push(new);
            true
        }
    }
}

/// Sets `Ready`, `Reconciling` and `Stalled` from one outcome: exactly one of them is
/// `True`, all carry `observed_generation`. The outcome's reason and message go on the
/// `True` condition and on `Ready` (so `kubectl get` and `kubectl wait` show why an
/// object is not ready); the other two say so plainly.
/// Returns whether anything other than transition times changed.
pub fn set_progress(
    conditions: &mut Vec<Condition>,
    outcome: &Outcome,
    observed_generation: Option<i64>,
    now: &Time,
) -> bool {
    let mut changed = false;
    for (type_, progress) in [
        (READY, Progress::Ready),
        (RECONCILING, Progress::Reconciling),
        (STALLED, Progress::Stalled),
    ] {
        let holds = outcome.progress == progress;
        let (reason, message) = if holds || type_ == READY {
            (outcome.reason.clone(), outcome.message.clone())
        } else {
            (
                format!("Not{type_}"),
                format!("The object is not {}.", type_.to_lowercase()),
            )
        };
        let new = condition(
            type_,
            holds,
            reason,
            message,
            observed_generation,
            now.clone(),
        );
        changed |= set_condition(conditions, new);
    }
    changed
}

/// The condition of `type_`, if present.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of `type_` is present and `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find_condition(conditions, type_).is_some_and(|c| c.status == TRUE)
}

/// Whether the object is Ready for the given generation (a Ready condition that
/// describes an older spec does not count).
pub fn is_ready_at(conditions: &[Condition], generation: Option<i64>) -> bool {
    find_condition(conditions, READY)
        .is_some_and(|c| c.status == TRUE && c.observed_generation == generation)
}

/// Whether two conditions say the same thing, ignoring `lastTransitionTime`.
pub fn same_condition(a: &Condition, b: &Condition) -> bool {
    a.type_ == b.type_
        && a.status == b.status
        && a.reason == b.reason
        && a.message == b.message
        && a.observed_generation == b.observed_generation
}

/// Whether two condition lists say the same thing: same types with the same status,
/// reason, message and observed generation, in any order, ignoring transition times.
pub fn same_conditions(a: &[Condition], b: &[Condition]) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|ca| find_condition(b, &ca.type_).is_some_and(|cb| same_condition(ca, cb)))
}

/// Whether `desired` must be written over `current`.
///
/// Build `desired` from `current` with [`set_condition`]/[`set_progress`] so that
/// unchanged conditions keep their transition time; then plain equality is exact and
/// a reconcile that found nothing new writes nothing.
pub fn status_changed<S: PartialEq>(current: Option<&S>, desired: &S) -> bool {
    current != Some(desired)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn a_condition_that_keeps_its_status_keeps_its_transition_time() {
        let mut conditions = vec![];
        assert!(set_condition(
            &mut conditions,
            condition(READY, true, "Done", "all good", Some(1), at(100))
        ));
        let changed = set_condition(
            &mut conditions,
            condition(READY, true, "Done", "all good", Some(1), at(200)),
        );
        assert!(!changed, "the same condition later is no change");
        assert_eq!(conditions[0].last_transition_time, at(100));

        let changed = set_condition(
            &mut conditions,
            condition(READY, true, "Done", "all good", Some(2), at(300)),
        );
        assert!(changed, "a new observed generation is a change");
        assert_eq!(conditions[0].last_transition_time, at(100));
        assert_eq!(conditions[0].observed_generation, Some(2));
    }

    #[test]
    fn a_condition_that_flips_gets_a_new_transition_time() {
        let mut conditions = vec![condition(READY, true, "Done", "ok", Some(1), at(100))];
        assert!(set_condition(
            &mut conditions,
            condition(READY, false, "TopicMissing", "topic gone", Some(1), at(200))
        ));
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].status, FALSE);
        assert_eq!(conditions[0].last_transition_time, at(200));
    }

    #[test]
    fn progress_sets_exactly_one_of_the_three_kstatus_conditions() {
        let mut conditions = vec![];
        let outcome = Outcome::stalled("PartitionDecrease", "partitions cannot shrink from 6 to 3");
        assert!(set_progress(&mut conditions, &outcome, Some(4), &at(10)));
        assert_eq!(conditions.len(), 3);
        assert!(is_true(&conditions, STALLED));
        assert!(!is_true(&conditions, READY));
        assert!(!is_true(&conditions, RECONCILING));
        assert!(conditions.iter().all(|c| c.observed_generation == Some(4)));
        let ready = find_condition(&conditions, READY).unwrap();
        assert_eq!(
            ready.reason, "PartitionDecrease",
            "Ready says why it is not ready"
        );

        let before = conditions.clone();
        assert!(!set_progress(&mut conditions, &outcome, Some(4), &at(20)));
        assert_eq!(
            conditions, before,
            "a repeated outcome changes nothing, not even times"
        );

        assert!(set_progress(
            &mut conditions,
            &Outcome::ready("Provisioned", "ok"),
            Some(4),
            &at(30)
        ));
        assert!(is_ready_at(&conditions, Some(4)));
        assert!(
            !is_ready_at(&conditions, Some(5)),
            "Ready for an older generation does not count"
        );
        assert!(!is_true(&conditions, STALLED));
    }

    #[test]
    fn condition_lists_compare_by_content_not_order_or_time() {
        let a = vec![
            condition(READY, true, "R", "m", Some(1), at(1)),
            condition(STALLED, false, "S", "m", Some(1), at(1)),
        ];
        let b = vec![
            condition(STALLED, false, "S", "m", Some(1), at(9)),
            condition(READY, true, "R", "m", Some(1), at(9)),
        ];
        assert!(same_conditions(&a, &b));
        let c = vec![
            condition(STALLED, true, "S", "m", Some(1), at(9)),
            condition(READY, true, "R", "m", Some(1), at(9)),
        ];
        assert!(!same_conditions(&a, &c));
        assert!(!same_conditions(&a, &a[..1]));
    }

    #[test]
    fn status_is_written_only_when_it_changed() {
        assert!(status_changed(None, &1));
        assert!(!status_changed(Some(&1), &1));
        assert!(status_changed(Some(&1), &2));
    }
}
