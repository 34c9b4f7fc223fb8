//! A port's schema (JSON Schema or Avro) as ODCS schema properties: each field becomes a
//! property with its logical type (`string`, `integer`, `number`, `boolean`, `date`,
//! `timestamp`, `time`, `object`, `array`), whether it is required, the options ODCS knows for
//! that type (lengths, pattern, format, bounds, item counts), nested properties for objects and
//! the item type of arrays. The schema language's own type is kept as `physicalType`. Pure.

use apache_avro::Schema as AvroSchema;
use apache_avro::schema::RecordField;
use serde_json::{Map, Value, json};

use super::odcs::{CustomProperty, SchemaProperty};

/// How deep nested objects, arrays and `$ref`s are followed: a recursive schema stops here.
const MAX_DEPTH: usize = 16;

/// The JSON Schema keywords of an integer or a number that become ODCS logical type options.
const NUMERIC_OPTIONS: &[&str] = &[
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
];

/// Why a schema could not be mapped.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("the JSON Schema is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("the Avro schema cannot be parsed: {0}")]
    Avro(#[source] Box<apache_avro::Error>),
}

// ------------------------------------------------------------------------ JSON Schema

/// The properties of an object JSON Schema (its `properties`, with `required`).
pub fn json_properties(definition: &str) -> Result<Vec<SchemaProperty>, SchemaError> {
    let root: Value = serde_json::from_str(definition).map_err(SchemaError::Json)?;
    let resolved = resolve_ref(&root, &root, 0);
    Ok(json_object_properties(&root, resolved, 0))
}

/// A local `$ref` (`#/$defs/...`, `#/definitions/...`) followed within `root`; anything else
/// as it is.
fn resolve_ref<'a>(root: &'a Value, schema: &'a Value, depth: usize) -> &'a Value {
    let Some(reference) = schema.get("$ref").and_then(Value::as_str) else {
        return schema;
    };
    if depth >= MAX_DEPTH {
        return schema;
    }
    match reference
        .strip_prefix('#')
        .and_then(|pointer| root.pointer(pointer))
    {
        Some(target) => resolve_ref(root, target, depth + 1),
        None => schema,
    }
}

fn json_object_properties(root: &Value, object: &Value, depth: usize) -> Vec<SchemaProperty> {
    let required: Vec<&str> = object
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(properties) = object.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    properties
        .iter()
        .map(|(name, schema)| {
            let mut property = json_property(root, name, schema, depth + 1);
            property.required = required.contains(&name.as_str()).then_some(true);
            property
        })
        .collect()
}

/// The JSON Schema type of `schema`, ignoring `null` in a list of types; from `const` or
/// `enum` values when no type is given.
fn json_type(schema: &Value) -> Option<String> {
    match schema.get("type") {
        Some(Value::String(type_)) => return Some(type_.clone()),
        Some(Value::Array(types)) => {
            return types
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .map(str::to_owned);
        }
        _ => {}
    }
    let values: Vec<&Value> = match (schema.get("enum"), schema.get("const")) {
        (Some(Value::Array(values)), _) => values.iter().collect(),
        (_, Some(value)) => vec![value],
        _ => return None,
    };
    let kind = |value: &Value| match value {
        Value::String(_) => Some("string"),
        Value::Bool(_) => Some("boolean"),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some("integer"),
        Value::Number(_) => Some("number"),
        _ => None,
    };
    let first = kind(values.first()?)?;
    values
        .iter()
        .all(|v| kind(v) == Some(first))
        .then(|| first.to_owned())
}

fn json_property(root: &Value, name: &str, schema: &Value, depth: usize) -> SchemaProperty {
    let schema = resolve_ref(root, schema, 0);
    let type_ = json_type(schema);
    let format = schema.get("format").and_then(Value::as_str);
    let mut property = SchemaProperty::named(name);
    property.description = schema
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_owned);
    property.physical_type = type_.clone();
    let mut options = Map::new();
    let copy = |options: &mut Map<String, Value>, keys: &[&str]| {
        for key in keys {
            if let Some(value) = schema.get(*key) {
                options.insert((*key).to_owned(), value.clone());
            }
        }
    };
    property.logical_type = match type_.as_deref() {
        Some("string") => match format {
            Some("date-time") => Some("timestamp"),
            Some("date") => Some("date"),
            Some("time") => Some("time"),
            _ => {
                copy(
                    &mut options,
                    &["minLength", "maxLength", "pattern", "format"],
                );
                Some("string")
            }
        },
        Some("integer") => {
            copy(&mut options, NUMERIC_OPTIONS);
            Some("integer")
        }
        Some("number") => {
            copy(&mut options, NUMERIC_OPTIONS);
            Some("number")
        }
        Some("boolean") => Some("boolean"),
        Some("object") => {
            if depth < MAX_DEPTH {
                property.properties = json_object_properties(root, schema, depth);
            }
            Some("object")
        }
        Some("array") => {
            copy(&mut options, &["minItems", "maxItems", "uniqueItems"]);
            if depth < MAX_DEPTH
                && let Some(items) = schema.get("items").filter(|i| i.is_object())
            {
                let mut item = json_property(root, "items", items, depth + 1);
                item.required = None;
                property.items = Some(Box::new(item));
            }
            Some("array")
        }
        _ => None,
    }
    .map(str::to_owned);
    // ODCS takes exclusive bounds as numbers; draft-04's booleans are dropped.
    options.retain(|key, value| !(key.starts_with("exclusive") && value.is_boolean()));
    if !options.is_empty() {
        property.logical_type_options = Some(Value::Object(options));
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        property.custom_properties.push(CustomProperty::new(
            "allowedValues",
            Value::Array(values.clone()),
        ));
    }
    if let Some(examples) = schema.get("examples").and_then(Value::as_array) {
        property.examples = examples.clone();
    }
    property
}

// ------------------------------------------------------------------------ Avro

/// The fields of an Avro record schema as properties.
pub fn avro_properties(definition: &str) -> Result<Vec<SchemaProperty>, SchemaError> {
    let schema = AvroSchema::parse_str(definition).map_err(|e| SchemaError::Avro(Box::new(e)))?;
    Ok(match &schema {
        AvroSchema::Record(record) => avro_fields(&record.fields, 0),
        _ => Vec::new(),
    })
}

fn avro_fields(fields: &[RecordField], depth: usize) -> Vec<SchemaProperty> {
    fields
        .iter()
        .map(|field| {
            let (schema, nullable) = non_null(&field.schema);
            let mut property = avro_property(&field.name, schema, depth + 1);
            if property.description.is_none() {
                property.description = field.doc.clone();
            }
            property.required = (!nullable).then_some(true);
            property
        })
        .collect()
}

/// The schema a union with `null` carries, and whether it is nullable.
fn non_null(schema: &AvroSchema) -> (&AvroSchema, bool) {
    if let AvroSchema::Union(union) = schema {
        let others: Vec<&AvroSchema> = union
            .variants()
            .iter()
            .filter(|s| !matches!(s, AvroSchema::Null))
            .collect();
        let nullable = others.len() < union.variants().len();
        if let [only] = others.as_slice() {
            return (only, nullable);
        }
        return (schema, nullable);
    }
    (schema, false)
}

fn sized(format: &str) -> Option<Value> {
    Some(json!({ "format": format }))
}

fn avro_property(name: &str, schema: &AvroSchema, depth: usize) -> SchemaProperty {
    let mut property = SchemaProperty::named(name);
    let (logical, physical, options): (Option<&str>, String, Option<Value>) = match schema {
        AvroSchema::Boolean => (Some("boolean"), "boolean".into(), None),
        AvroSchema::Int => (Some("integer"), "int".into(), sized("i32")),
        AvroSchema::Long => (Some("integer"), "long".into(), sized("i64")),
        AvroSchema::Float => (Some("number"), "float".into(), sized("f32")),
        AvroSchema::Double => (Some("number"), "double".into(), sized("f64")),
        AvroSchema::String => (Some("string"), "string".into(), None),
        AvroSchema::Uuid(_) => (
            Some("string"),
            "uuid".into(),
            Some(json!({"format": "uuid"})),
        ),
        AvroSchema::Date => (Some("date"), "date".into(), None),
        AvroSchema::TimeMillis => (Some("time"), "time-millis".into(), None),
        AvroSchema::TimeMicros => (Some("time"), "time-micros".into(), None),
        AvroSchema::TimestampMillis => (Some("timestamp"), "timestamp-millis".into(), tz(true)),
        AvroSchema::TimestampMicros => (Some("timestamp"), "timestamp-micros".into(), tz(true)),
        AvroSchema::TimestampNanos => (Some("timestamp"), "timestamp-nanos".into(), tz(true)),
        AvroSchema::LocalTimestampMillis => (
            Some("timestamp"),
            "local-timestamp-millis".into(),
            tz(false),
        ),
        AvroSchema::LocalTimestampMicros => (
            Some("timestamp"),
            "local-timestamp-micros".into(),
            tz(false),
        ),
        AvroSchema::LocalTimestampNanos => {
            (Some("timestamp"), "local-timestamp-nanos".into(), tz(false))
        }
        AvroSchema::Decimal(decimal) => (
            Some("number"),
            format!("decimal({},{})", decimal.precision, decimal.scale),
            None,
        ),
        AvroSchema::BigDecimal => (Some("number"), "big-decimal".into(), None),
        AvroSchema::Enum(enumeration) => {
            property.custom_properties.push(CustomProperty::new(
                "allowedValues",
                json!(enumeration.symbols),
            ));
            property.description = enumeration.doc.clone();
            (Some("string"), "enum".into(), None)
        }
        AvroSchema::Record(record) => {
            if depth < MAX_DEPTH {
                property.properties = avro_fields(&record.fields, depth);
            }
            property.description = record.doc.clone();
            (Some("object"), "record".into(), None)
        }
        AvroSchema::Map(_) => (Some("object"), "map".into(), None),
        AvroSchema::Array(array) => {
            if depth < MAX_DEPTH {
                let (items, _) = non_null(&array.items);
                property.items = Some(Box::new(avro_property("items", items, depth + 1)));
            }
            (Some("array"), "array".into(), None)
        }
        // Bytes, fixed and duration have no ODCS 3.1 logical type; a union of several types
        // none either; a named reference is described where it is defined.
        AvroSchema::Bytes => (None, "bytes".into(), None),
        AvroSchema::Fixed(fixed) => (None, format!("fixed({})", fixed.size), None),
        AvroSchema::Duration(_) => (None, "duration".into(), None),
        AvroSchema::Union(_) => (None, "union".into(), None),
        AvroSchema::Ref { name } => (None, name.name().to_owned(), None),
        AvroSchema::Null => (None, "null".into(), None),
    };
    property.logical_type = logical.map(str::to_owned);
    property.physical_type = Some(physical);
    property.logical_type_options = options;
    property
}

fn tz(timezone: bool) -> Option<Value> {
    Some(json!({ "timezone": timezone }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(properties: &'a [SchemaProperty], name: &str) -> &'a SchemaProperty {
        properties
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no property {name}"))
    }

    #[test]
    fn json_schema_fields_become_typed_properties() {
        let properties = json_properties(
            r#"{"type": "object", "required": ["id", "at"],
                "properties": {
                  "id": {"type": "string", "description": "the key", "pattern": "^[a-z]+$"},
                  "at": {"type": "string", "format": "date-time"},
                  "day": {"type": "string", "format": "date"},
                  "amount": {"type": "integer", "minimum": 0},
                  "ratio": {"type": ["number", "null"], "maximum": 1},
                  "state": {"enum": ["a", "b"]},
                  "flag": {"type": "boolean"},
                  "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
                  "address": {"type": "object", "required": ["city"],
                              "properties": {"city": {"type": "string"}, "zip": {"type": "string"}}}
                }}"#,
        )
        .unwrap();
        assert_eq!(properties.len(), 9);
        let id = find(&properties, "id");
        assert_eq!(id.logical_type.as_deref(), Some("string"));
        assert_eq!(id.required, Some(true));
        assert_eq!(id.description.as_deref(), Some("the key"));
        assert_eq!(
            id.logical_type_options,
            Some(json!({"pattern": "^[a-z]+$"}))
        );
        assert_eq!(
            find(&properties, "at").logical_type.as_deref(),
            Some("timestamp")
        );
        assert_eq!(find(&properties, "at").required, Some(true));
        assert_eq!(
            find(&properties, "day").logical_type.as_deref(),
            Some("date")
        );
        let amount = find(&properties, "amount");
        assert_eq!(amount.logical_type.as_deref(), Some("integer"));
        assert_eq!(amount.required, None);
        assert_eq!(amount.logical_type_options, Some(json!({"minimum": 0})));
        assert_eq!(
            find(&properties, "ratio").logical_type.as_deref(),
            Some("number")
        );
        let state = find(&properties, "state");
        assert_eq!(state.logical_type.as_deref(), Some("string"));
        assert_eq!(state.custom_properties[0].property, "allowedValues");
        assert_eq!(state.custom_properties[0].value, json!(["a", "b"]));
        assert_eq!(
            find(&properties, "flag").logical_type.as_deref(),
            Some("boolean")
        );
        let tags = find(&properties, "tags");
        assert_eq!(tags.logical_type.as_deref(), Some("array"));
        assert_eq!(
            tags.items.as_ref().unwrap().logical_type.as_deref(),
            Some("string")
        );
        let address = find(&properties, "address");
        assert_eq!(address.logical_type.as_deref(), Some("object"));
        assert_eq!(find(&address.properties, "city").required, Some(true));
        assert_eq!(find(&address.properties, "zip").required, None);
    }

    #[test]
    fn json_schema_refs_are_followed_and_recursion_stops() {
        let properties = json_properties(
            r##"{"$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}},
                 "type": "object", "properties": {"head": {"$ref": "#/$defs/node"}}}"##,
        )
        .unwrap();
        let head = find(&properties, "head");
        assert_eq!(head.logical_type.as_deref(), Some("object"));
        assert_eq!(
            find(&head.properties, "next").logical_type.as_deref(),
            Some("object")
        );
    }

    #[test]
    fn a_broken_json_schema_is_an_error() {
        assert!(matches!(
            json_properties("{not json"),
            Err(SchemaError::Json(_))
        ));
    }

    #[test]
    fn avro_fields_become_typed_properties() {
        let properties = avro_properties(
            r#"{"type": "record", "name": "Profile", "fields": [
                 {"name": "id", "type": "string", "doc": "the key"},
                 {"name": "segment", "type": ["null", "string"], "default": null},
                 {"name": "count", "type": "int"},
                 {"name": "total", "type": "long"},
                 {"name": "score", "type": "double"},
                 {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                 {"name": "born", "type": {"type": "int", "logicalType": "date"}},
                 {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
                 {"name": "tags", "type": {"type": "array", "items": "string"}},
                 {"name": "address", "type": {"type": "record", "name": "Address",
                   "fields": [{"name": "city", "type": "string"}]}},
                 {"name": "raw", "type": "bytes"}
               ]}"#,
        )
        .unwrap();
        assert_eq!(properties.len(), 11);
        let id = find(&properties, "id");
        assert_eq!(id.logical_type.as_deref(), Some("string"));
        assert_eq!(id.required, Some(true));
        assert_eq!(id.description.as_deref(), Some("the key"));
        let segment = find(&properties, "segment");
        assert_eq!(segment.logical_type.as_deref(), Some("string"));
        assert_eq!(segment.required, None);
        assert_eq!(
            find(&properties, "count").logical_type_options,
            Some(json!({"format": "i32"}))
        );
        assert_eq!(
            find(&properties, "total").logical_type_options,
            Some(json!({"format": "i64"}))
        );
        assert_eq!(
            find(&properties, "score").logical_type.as_deref(),
            Some("number")
        );
        let at = find(&properties, "at");
        assert_eq!(at.logical_type.as_deref(), Some("timestamp"));
        assert_eq!(at.physical_type.as_deref(), Some("timestamp-millis"));
        assert_eq!(
            find(&properties, "born").logical_type.as_deref(),
            Some("date")
        );
        let kind = find(&properties, "kind");
        assert_eq!(kind.custom_properties[0].value, json!(["A", "B"]));
        assert_eq!(
            find(&properties, "tags")
                .items
                .as_ref()
                .unwrap()
                .logical_type
                .as_deref(),
            Some("string")
        );
        let address = find(&properties, "address");
        assert_eq!(address.logical_type.as_deref(), Some("object"));
        assert_eq!(find(&address.properties, "city").required, Some(true));
        let raw = find(&properties, "raw");
        assert_eq!(raw.logical_type, None);
        assert_eq!(raw.physical_type.as_deref(), Some("bytes"));
    }

    #[test]
    fn a_broken_avro_schema_is_an_error() {
        assert!(matches!(
            avro_properties(r#"{"type": "record"}"#),
            Err(SchemaError::Avro(_))
        ));
    }
}
