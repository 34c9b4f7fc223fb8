//! Mesh-wide rules a DataProduct must follow that its schema cannot fully say, checked by the
//! controller before anything is provisioned. The CRD refuses most of these at admission too;
//! the controller checks again because an object may have been stored before a rule existed,
//! or written around validation. Pure.

use crate::api::data_product::DataProduct;
use kube::ResourceExt;

/// The Kafka topic config naming how many replicas must acknowledge a write.
const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";

/// A broken rule: a CamelCase reason and a sentence saying what to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The condition reason.
    pub reason: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Every rule `product` breaks; `default_replicas` is what a Kafka port without `replicas` gets.
pub fn violations(product: &DataProduct, default_replicas: i32) -> Vec<Violation> {
    let spec = &product.spec;
    let name = product.name_any();
    let mut found = Vec::new();
    for port in &spec.output_ports {
        let Some(kafka) = &port.kafka else { continue };
        let replicas = kafka.replicas.unwrap_or(default_replicas);
        let min_insync = kafka
            .config
            .as_ref()
            .and_then(|config| config.get(MIN_INSYNC_REPLICAS));
        if let Some(value) = min_insync {
            match value.parse::<i32>() {
                Ok(min) if min >= 1 && min <= replicas => {}
                _ => found.push(Violation {
                    reason: "TopicConfigInvalid",
                    message: format!(
                        "Output port {}: config {MIN_INSYNC_REPLICAS}={value} must be a whole number from 1 to the topic's {replicas} replica(s), or no producer with acks=all could ever write. Lower it or raise replicas.",
                        port.name
                    ),
                }),
            }
        }
    }
    for input in &spec.input_ports {
        let reference = &input.data_product;
        if reference.domain == spec.domain && reference.name == name {
            found.push(Violation {
                reason: "ReadsOwnOutput",
                message: format!(
                    "Input port {} reads output port {} of this same product: a product cannot be its own input. Remove the input port.",
                    input.name, reference.port
                ),
            });
        }
    }
    if let Some(schedule) = spec
        .transformation
        .as_ref()
        .and_then(|t| t.spark.schedule.as_deref())
        && let Err(problem) = check_cron(schedule)
    {
        found.push(Violation {
            reason: "ScheduleInvalid",
            message: format!(
                "spec.transformation.spark.schedule {schedule:?}: {problem}. Use five fields (minute 0-59, hour 0-23, day of month 1-31, month 1-12, day of week 0-6), a descriptor such as @hourly, or @every 15m."
            ),
        });
    }
    found
}

const DESCRIPTORS: [&str; 7] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];
const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Check a schedule as the spark-operator's cron parser (robfig/cron, standard) reads it.
pub fn check_cron(schedule: &str) -> Result<(), String> {
    let schedule = schedule.trim();
    if DESCRIPTORS.contains(&schedule) {
        return Ok(());
    }
    if let Some(duration) = schedule.strip_prefix("@every ") {
        return check_duration(duration.trim());
    }
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    let [minute, hour, day, month, weekday] = fields.as_slice() else {
        return Err(format!("has {} fields, not 5", fields.len()));
    };
    check_field("minute", minute, 0, 59, &[], false)?;
    check_field("hour", hour, 0, 23, &[], false)?;
    check_field("day of month", day, 1, 31, &[], true)?;
    check_field("month", month, 1, 12, &MONTHS, false)?;
    // robfig/cron, which the spark-operator uses, takes Sunday as 0 only (not 7).
    check_field("day of week", weekday, 0, 6, &WEEKDAYS, true)
}

/// A Go duration of whole units, e.g. `15m`, `1h30m`, `90s`: at least one second in all.
fn check_duration(text: &str) -> Result<(), String> {
    let mut rest = text;
    let mut seconds: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (number, after) = rest.split_at(digits);
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(unit_len);
        let value: u64 = number
            .parse()
            .map_err(|_| format!("@every {text} is not a duration such as 15m or 1h30m"))?;
        let scale = match unit {
            "h" => 3600,
            "m" => 60,
            "s" => 1,
            _ => {
                return Err(format!(
                    "@every {text} is not a duration such as 15m or 1h30m"
                ));
            }
        };
        seconds = seconds.saturating_add(value.saturating_mul(scale));
        rest = after;
    }
    if seconds == 0 {
        return Err(format!("@every {text} is not a duration of at least 1s"));
    }
    Ok(())
}

/// One cron field: a comma list of `*`, `*/step`, `n`, `a-b`, `a-b/step` or `n/step`, each
/// number within `min..=max` (or a name from `names`, counted from `min`); `?` stands for `*`
/// in the day fields.
fn check_field(
    what: &str,
    field: &str,
    min: u32,
    max: u32,
    names: &[&str],
    question_mark: bool,
) -> Result<(), String> {
    let value = |text: &str| -> Result<u32, String> {
        let lower = text.to_ascii_lowercase();
        if let Some(index) = names.iter().position(|name| *name == lower) {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            return Ok(min.saturating_add(index));
        }
        match text.parse::<u32>() {
            Ok(number) if (min..=max).contains(&number) => Ok(number),
            _ => Err(format!(
                "{what} {text:?} is not a number from {min} to {max}"
            )),
        }
    };
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        if let Some(step) = step {
            match step.parse::<u32>() {
                Ok(step) if step >= 1 && step <= max => {}
                _ => {
                    return Err(format!(
                        "{what} step {step:?} is not a number from 1 to {max}"
                    ));
                }
            }
        }
        if range == "*" || (question_mark && range == "?") {
            continue;
        }
        match range.split_once('-') {
            Some((low, high)) => {
                let (low, high) = (value(low)?, value(high)?);
                if low > high {
                    return Err(format!("{what} range {range} runs backwards"));
                }
            }
            None => {
                value(range)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn product(spec: serde_json::Value) -> DataProduct {
        crate::controller::data_product::desired::tests::product("orders", 1, spec)
    }

    fn reasons(product: &DataProduct, default_replicas: i32) -> Vec<&'static str> {
        violations(product, default_replicas)
            .into_iter()
            .map(|v| v.reason)
            .collect()
    }

    #[test]
    fn min_insync_replicas_above_the_replicas_makes_a_topic_unwritable() {
        let port = |config: serde_json::Value, replicas: Option<i32>| {
            let mut kafka = json!({"config": config});
            if let Some(r) = replicas {
                kafka["replicas"] = json!(r);
            }
            product(json!({"outputPorts": [{"name": "events", "kafka": kafka}]}))
        };
        assert!(reasons(&port(json!({"min.insync.replicas": "2"}), Some(3)), 1).is_empty());
        assert_eq!(
            reasons(&port(json!({"min.insync.replicas": "4"}), Some(3)), 1),
            ["TopicConfigInvalid"]
        );
        // Without replicas, the operator's default counts.
        assert_eq!(
            reasons(&port(json!({"min.insync.replicas": "2"}), None), 1),
            ["TopicConfigInvalid"]
        );
        assert!(reasons(&port(json!({"min.insync.replicas": "2"}), None), 3).is_empty());
        assert_eq!(
            reasons(&port(json!({"min.insync.replicas": "two"}), Some(3)), 1),
            ["TopicConfigInvalid"]
        );
    }

    #[test]
    fn a_product_cannot_read_its_own_output() {
        let own = product(json!({"inputPorts": [
            {"name": "loop", "dataProduct": {"domain": "payments", "name": "orders", "port": "events"}}
        ]}));
        assert_eq!(reasons(&own, 1), ["ReadsOwnOutput"]);
        let sibling = product(json!({"inputPorts": [
            {"name": "in", "dataProduct": {"domain": "payments", "name": "refunds", "port": "events"}}
        ]}));
        assert!(reasons(&sibling, 1).is_empty());
    }

    #[test]
    fn cron_fields_must_be_in_range() {
        for good in [
            "*/15 * * * *",
            "0 2 * * 1-5",
            "30 6 1,15 * ?",
            "0 0 1 jan *",
            "0 12 * JAN-MAR mon-fri",
            "5-55/10 0-23/2 1-31 1-12 0-6",
            "@hourly",
            "@every 15m",
            "@every 1h30m",
        ] {
            assert_eq!(check_cron(good), Ok(()), "{good}");
        }
        for bad in [
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * 32 * *",
            "* * * 13 *",
            "* * * * 7",
            "*/0 * * * *",
            "5-1 * * * *",
            "* * * *",
            "* * * * * *",
            "@every 0s",
            "@every soon",
            "@sometimes",
        ] {
            assert!(check_cron(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bad_schedule_is_a_violation_naming_the_field() {
        let p = product(json!({"transformation": {"spark": {
            "image": "spark:4", "mainApplicationFile": "local:///job.py", "sparkVersion": "4.0.1",
            "schedule": "99 * * * *"}}}));
        let found = violations(&p, 1);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].reason, "ScheduleInvalid");
        assert!(
            found[0].message.contains("minute \"99\""),
            "{}",
            found[0].message
        );
    }
}
