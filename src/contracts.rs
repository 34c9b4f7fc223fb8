//! Data contracts: whether a new schema for an output port would break the consumers of the old
//! one. The comparisons are the maintained libraries' own: `json-schema-diff` for JSON Schema and
//! `apache-avro`'s schema resolution for Avro; this module only decides which of their findings
//! break a consumer.
//!
//! Consumers read what the producer writes, and with a `readWrite` grant they write too, so a
//! change is compatible only both ways (what schema registries call *full* compatibility):
//! - JSON Schema: `json-schema-diff` finds no breaking change from the old schema to the new
//!   (nothing the old one accepted is refused: a narrowed type, enum or range, a newly required
//!   field) nor from the new to the old (nothing the new one accepts was refused: a removed or
//!   renamed property, a widened type, an added enum value, a field no longer required). Adding
//!   an optional property is compatible: the library counts it as narrowing only because the old
//!   schema allowed that name with any type, which no consumer relies on;
//! - Avro: each schema can read what the other writes (`mutual_read`): a field removed or added
//!   without a default, a type changed, a field renamed all break. apache-avro 0.22 does not
//!   compare enum symbols or narrow unions, so such changes go through unseen.
//!
//! Protocol Buffers schemas are not compared (no maintained Rust library does it): their changes
//! go through.

use apache_avro::Schema as AvroSchema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use json_schema_diff::ChangeKind;

use crate::api::data_product::SchemaType;

/// What a schema change means for the consumers of the old one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Consumers of the old contract keep working.
    Compatible,
    /// Consumers may break; each entry is one difference, for a person.
    Breaking(Vec<String>),
    /// The new schema cannot be read in its language; the message says why.
    Invalid(String),
}

/// Compares the contract in force (`old`) with a proposed one (`new`), both in `language`.
pub fn compare(language: SchemaType, old: &str, new: &str) -> Verdict {
    if old == new {
        return Verdict::Compatible;
    }
    match language {
        SchemaType::Json => compare_json(old, new),
        SchemaType::Avro => compare_avro(old, new),
        SchemaType::Protobuf => Verdict::Compatible,
    }
}

fn compare_json(old: &str, new: &str) -> Verdict {
    let new: serde_json::Value = match serde_json::from_str(new) {
        Ok(value) => value,
        Err(error) => return Verdict::Invalid(format!("the new schema is not JSON: {error}")),
    };
    let Ok(old) = serde_json::from_str::<serde_json::Value>(old) else {
        // The contract in force was accepted before; one that no longer parses says nothing.
        return Verdict::Compatible;
    };
    let (forward, backward) = match (
        json_schema_diff::diff(old.clone(), new.clone()),
        json_schema_diff::diff(new, old),
    ) {
        (Ok(forward), Ok(backward)) => (forward, backward),
        (Err(error), _) | (_, Err(error)) => {
            return Verdict::Invalid(format!("the new schema is not a JSON Schema: {error}"));
        }
    };
    // Old to new: what the old schema accepted and the new one refuses.
    let refused_now = forward
        .iter()
        .filter(|c| c.change.is_breaking() && !matches!(c.change, ChangeKind::PropertyAdd { .. }))
        .map(|c| describe(&c.path, &c.change, Direction::Narrowed));
    // New to old: what the new schema accepts and the old one refused.
    let accepted_now = backward
        .iter()
        .filter(|c| c.change.is_breaking())
        .map(|c| describe(&c.path, &c.change, Direction::Widened));
    let mut breaking: Vec<String> = refused_now.chain(accepted_now).collect();
    breaking.dedup();
    if breaking.is_empty() {
        Verdict::Compatible
    } else {
        Verdict::Breaking(breaking)
    }
}

/// Which way a change found by `json-schema-diff` points.
#[derive(Clone, Copy)]
enum Direction {
    /// Found from the old schema to the new one.
    Narrowed,
    /// Found from the new schema to the old one: its words are the other way round.
    Widened,
}

fn describe(path: &str, change: &ChangeKind, direction: Direction) -> String {
    let place = if path.is_empty() {
        "the root".to_owned()
    } else {
        format!("`{path}`")
    };
    match (direction, change) {
        (Direction::Narrowed, ChangeKind::RequiredAdd { property }) => {
            format!("{place}: `{property}` is newly required")
        }
        (Direction::Widened, ChangeKind::RequiredAdd { property }) => {
            format!("{place}: `{property}` is no longer required")
        }
        (Direction::Widened, ChangeKind::PropertyAdd { added, .. }) => {
            format!("{place}: property `{added}` removed")
        }
        (Direction::Widened, ChangeKind::PropertyRemove { removed, .. }) => {
            format!("{place}: property `{removed}` added where no other was allowed")
        }
        (Direction::Narrowed, other) => format!("{place}: narrowed: {other:?}"),
        (Direction::Widened, other) => format!("{place}: widened (the reverse of {other:?})"),
    }
}

fn compare_avro(old: &str, new: &str) -> Verdict {
    let new = match AvroSchema::parse_str(new) {
        Ok(schema) => schema,
        Err(error) => return Verdict::Invalid(format!("the new schema is not Avro: {error}")),
    };
    let Ok(old) = AvroSchema::parse_str(old) else {
        return Verdict::Compatible;
    };
    match SchemaCompatibility::mutual_read(&old, &new) {
        Ok(_) => Verdict::Compatible,
        Err(error) => Verdict::Breaking(vec![error.to_string()]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = r#"{"type": "object", "required": ["id", "amount"],
        "properties": {"id": {"type": "string"}, "amount": {"type": "integer"},
                       "state": {"enum": ["new", "paid", "refunded"]}, "note": {"type": "string"}}}"#;

    fn json_with(edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut schema: serde_json::Value = serde_json::from_str(ORDER).unwrap();
        edit(&mut schema);
        schema.to_string()
    }

    fn breaking(verdict: &Verdict) -> bool {
        matches!(verdict, Verdict::Breaking(_))
    }

    #[test]
    fn json_schema_changes_that_break_consumers() {
        let cases: Vec<(&str, String)> = vec![
            (
                "a property removed",
                json_with(|s| {
                    s["properties"].as_object_mut().unwrap().remove("note");
                }),
            ),
            (
                "a required property removed",
                json_with(|s| {
                    s["properties"].as_object_mut().unwrap().remove("amount");
                    s["required"] = serde_json::json!(["id"]);
                }),
            ),
            (
                "a field renamed",
                json_with(|s| {
                    let props = s["properties"].as_object_mut().unwrap();
                    let note = props.remove("note").unwrap();
                    props.insert("comment".into(), note);
                }),
            ),
            (
                "a newly required field",
                json_with(|s| s["required"] = serde_json::json!(["id", "amount", "note"])),
            ),
            (
                "a field no longer required",
                json_with(|s| s["required"] = serde_json::json!(["id"])),
            ),
            (
                "a narrowed type",
                json_with(|s| {
                    s["properties"]["amount"] = serde_json::json!({"type": "integer", "minimum": 0})
                }),
            ),
            (
                "a type changed",
                json_with(|s| s["properties"]["id"] = serde_json::json!({"type": "integer"})),
            ),
            (
                "an enum value removed",
                json_with(|s| {
                    s["properties"]["state"] = serde_json::json!({"enum": ["new", "paid"]})
                }),
            ),
            (
                "a maximum lowered",
                json_with(|s| {
                    s["properties"]["amount"] =
                        serde_json::json!({"type": "integer", "maximum": 10})
                }),
            ),
            (
                "an enum value added",
                json_with(|s| {
                    s["properties"]["state"] =
                        serde_json::json!({"enum": ["new", "paid", "refunded", "void"]})
                }),
            ),
            (
                "a type widened",
                json_with(|s| {
                    s["properties"]["amount"] = serde_json::json!({"type": ["integer", "string"]})
                }),
            ),
            (
                "a format added",
                json_with(|s| {
                    s["properties"]["id"] = serde_json::json!({"type": "string", "format": "uuid"})
                }),
            ),
            ("the root type changed", r#"{"type": "array"}"#.to_owned()),
        ];
        for (what, new) in cases {
            let verdict = compare(SchemaType::Json, ORDER, &new);
            assert!(breaking(&verdict), "{what}: {verdict:?}");
        }
    }

    #[test]
    fn json_schema_changes_consumers_survive() {
        let cases: Vec<(&str, String)> = vec![
            ("nothing", ORDER.to_owned()),
            (
                "the same schema, formatted otherwise",
                serde_json::from_str::<serde_json::Value>(ORDER)
                    .unwrap()
                    .to_string(),
            ),
            (
                "an optional property added",
                json_with(|s| s["properties"]["currency"] = serde_json::json!({"type": "string"})),
            ),
            (
                "a description added",
                json_with(|s| s["description"] = serde_json::json!("an order")),
            ),
            (
                "a title added to a property",
                json_with(|s| {
                    s["properties"]["note"] = serde_json::json!({"type": "string", "title": "Note"})
                }),
            ),
        ];
        for (what, new) in cases {
            assert_eq!(
                compare(SchemaType::Json, ORDER, &new),
                Verdict::Compatible,
                "{what}"
            );
        }
    }

    #[test]
    fn json_breaking_differences_say_where_and_what() {
        let new = json_with(|s| {
            s["properties"].as_object_mut().unwrap().remove("note");
        });
        let Verdict::Breaking(differences) = compare(SchemaType::Json, ORDER, &new) else {
            panic!("breaking expected");
        };
        assert!(
            differences.iter().any(|d| d.contains("`note` removed")),
            "{differences:?}"
        );
    }

    #[test]
    fn an_unreadable_new_schema_is_invalid() {
        assert!(matches!(
            compare(SchemaType::Json, ORDER, "{not json"),
            Verdict::Invalid(_)
        ));
        assert!(matches!(
            compare(SchemaType::Avro, AVRO, "{\"type\": \"nonsense\"}"),
            Verdict::Invalid(_)
        ));
    }

    const AVRO: &str = r#"{"type": "record", "name": "Order", "fields": [
        {"name": "id", "type": "string"},
        {"name": "amount", "type": "long"},
        {"name": "state", "type": {"type": "enum", "name": "State", "symbols": ["NEW", "PAID"]}},
        {"name": "note", "type": ["null", "string"], "default": null}]}"#;

    fn avro_with(edit: impl FnOnce(&mut Vec<serde_json::Value>)) -> String {
        let mut schema: serde_json::Value = serde_json::from_str(AVRO).unwrap();
        edit(schema["fields"].as_array_mut().unwrap());
        schema.to_string()
    }

    #[test]
    fn avro_changes_that_break_consumers() {
        let cases: Vec<(&str, String)> = vec![
            (
                "a field without default removed",
                avro_with(|f| {
                    f.remove(1);
                }),
            ),
            (
                "a field renamed without alias",
                avro_with(|f| f[0]["name"] = "orderId".into()),
            ),
            (
                "a type narrowed",
                avro_with(|f| f[1]["type"] = "int".into()),
            ),
            (
                "a type changed",
                avro_with(|f| f[0]["type"] = "long".into()),
            ),
            (
                "a field renamed, even with the old name as alias (old readers know no alias)",
                avro_with(|f| {
                    f[0]["name"] = "orderId".into();
                    f[0]["aliases"] = serde_json::json!(["id"]);
                }),
            ),
            (
                "a field added without default",
                avro_with(|f| f.push(serde_json::json!({"name": "currency", "type": "string"}))),
            ),
        ];
        for (what, new) in cases {
            let verdict = compare(SchemaType::Avro, AVRO, &new);
            assert!(breaking(&verdict), "{what}: {verdict:?}");
        }
    }

    #[test]
    fn avro_changes_consumers_survive() {
        let cases: Vec<(&str, String)> = vec![
            (
                "a field added",
                avro_with(|f| {
                    f.push(
                        serde_json::json!({"name": "currency", "type": "string", "default": "EUR"}),
                    )
                }),
            ),
            (
                "a field with a default removed",
                avro_with(|f| {
                    f.remove(3);
                }),
            ),
            (
                "a doc added",
                avro_with(|f| f[0]["doc"] = "the order id".into()),
            ),
        ];
        for (what, new) in cases {
            assert_eq!(
                compare(SchemaType::Avro, AVRO, &new),
                Verdict::Compatible,
                "{what}"
            );
        }
    }

    #[test]
    fn protobuf_is_not_compared() {
        assert_eq!(
            compare(SchemaType::Protobuf, "message A {}", "message B {}"),
            Verdict::Compatible
        );
    }
}
