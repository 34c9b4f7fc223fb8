//! `DataProduct`: what a domain publishes (output ports), what it reads (input ports),
//! and the job that turns one into the other.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DeletionPolicy;
use super::conditions::Condition;
use super::naming::{DNS_LABEL_PATTERN, TOPIC_NAME_PATTERN, bucket_name, topic_name};

/// Retention as a number and a unit: `ms`, `s`, `m`, `h`, `d` or `w` (e.g. `7d`, `12h`).
pub const RETENTION_PATTERN: &str = "^[1-9][0-9]{0,8}(ms|s|m|h|d|w)$";
/// A Spark version: `major.minor.patch`.
pub const SPARK_VERSION_PATTERN: &str = r"^[0-9]+\.[0-9]+\.[0-9]+$";
/// JVM memory as Spark reads it: a number and `k`, `m`, `g` or `t`.
pub const SPARK_MEMORY_PATTERN: &str = "^[1-9][0-9]*[kmgt]$";
/// A cron schedule as the spark-operator reads it: five fields, a `@daily`-style
/// descriptor, or `@every <duration>`.
pub const CRON_PATTERN: &str = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|@every ([0-9]+(h|m|s))+|[0-9*/,-]+ [0-9*/,-]+ [0-9*/,?-]+ [0-9A-Za-z*/,-]+ [0-9A-Za-z*/,?-]+)$";
/// The values a field of a five-field cron schedule may take, in the order of the fields,
/// as regular expressions: the bounds of the spark-operator's parser (robfig/cron), which
/// also takes month and weekday names in any case. Day of week is 0-6 (Sunday is 0).
pub const CRON_FIELD_VALUES: [(&str, &str); 5] = [
    ("minute", "[0-5]?[0-9]"),
    ("hour", "[01]?[0-9]|2[0-3]"),
    ("day of month", "0?[1-9]|[12][0-9]|3[01]"),
    (
        "month",
        "0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec",
    ),
    ("day of week", "0?[0-6]|sun|mon|tue|wed|thu|fri|sat"),
];

/// The regular expression one field of a five-field cron schedule must match: a list of
/// `*`, a value or a range of values, each with an optional step of at least 1; `?` too in
/// the day fields (the third and fifth), as [`CRON_PATTERN`] allows.
pub fn cron_field_regex(field: usize) -> String {
    let values = CRON_FIELD_VALUES[field].1;
    let any = if field == 2 || field == 4 {
        "[*?]"
    } else {
        "[*]"
    };
    let term = format!("({any}|({values})(-({values}))?)(/[0-9]*[1-9][0-9]*)?");
    format!("(?i)^{term}(,{term})*$")
}

/// The CEL rules of a schedule, past what [`CRON_PATTERN`] checks: each field's values are
/// in range, and no range runs backwards. (Named ranges, e.g. `fri-mon`, are left to the
/// spark-operator.)
fn schedule_rules() -> serde_json::Value {
    let fields: Vec<String> = (0..5)
        .map(|i| format!("self.split(' ')[{i}].matches('{}')", cron_field_regex(i)))
        .collect();
    serde_json::json!([
        {
            "rule": format!(
                "self.startsWith('@') || size(self.split(' ')) != 5 || ({})",
                fields.join(" && ")
            ),
            "message": "schedule: a cron field is out of range: minute 0-59, hour 0-23, day of month 1-31, month 1-12 or jan-dec, day of week 0-6 or sun-sat, steps (/n) at least 1"
        },
        {
            "rule": "self.startsWith('@') || self.replace(' ', ',').split(',').all(t, !t.matches('^[0-9]{1,2}-[0-9]{1,2}(/[0-9]+)?$') || int(t.split('-')[0]) <= int(t.split('-')[1].split('/')[0]))",
            "message": "schedule: a cron range must not run backwards: write 1-5, not 5-1"
        }
    ])
}

/// A Kafka topic config key, e.g. `cleanup.policy`.
pub const KAFKA_CONFIG_KEY_PATTERN: &str = "^[a-z0-9]+([.][a-z0-9]+)*$";

/// A data product: data a domain publishes for others, with its contract (description,
/// owner, classification, schema, SLA), the ports it publishes on (Kafka topics and
/// buckets), the ports it reads from other products, and the Spark job that makes it.
// Each `printcolumn(...)` repeats `type_ = ...`, which clippy takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "datamesh.dev",
    version = "v1alpha1",
    kind = "DataProduct",
    namespaced,
    status = "DataProductStatus",
    derive = "PartialEq",
    shortname = "dp",
    category = "datamesh",
    doc = "A data product: data a domain publishes (Kafka topics, buckets), with its contract, the ports it reads from other products, and the Spark job that makes it. Lives in its domain's namespace.",
    printcolumn(
        name = "Domain",
        type_ = "string",
        json_path = ".spec.domain",
        description = "The domain that owns the product"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".spec.status",
        description = "The product's lifecycle stage (ODPS status)"
    ),
    printcolumn(
        name = "Ports",
        type_ = "string",
        json_path = ".status.portsReady",
        description = "Output ports provisioned / declared"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether every port exists as declared and every input is granted"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        description = "Why the object is or is not Ready",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 63")
        .message("metadata.name of a DataProduct must be a DNS label (lowercase letters, digits and '-', at most 63 characters, no dots): it is part of its topic and bucket names"),
    validation = Rule::new("!has(self.spec.outputPorts) || self.spec.outputPorts.all(p, !has(p.bucket) || size(self.spec.domain) + size(self.metadata.name) + size(p.name) <= 61)")
        .message("spec.outputPorts: a bucket port's bucket is named <domain>-<product>-<port>, which S3 limits to 63 characters; shorten spec.domain, metadata.name or the port's name")
        .field_path(".spec.outputPorts"),
    validation = Rule::new("!has(self.spec.inputPorts) || self.spec.inputPorts.all(i, i.dataProduct.domain != self.spec.domain || i.dataProduct.name != self.metadata.name)")
        .message("spec.inputPorts: an input port must not read the product's own output (its dataProduct names this product's domain and name); read it inside the transformation instead")
        .field_path(".spec.inputPorts"),
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.outputPorts) || self.outputPorts.all(p, !has(p.kafka) || !has(p.kafka.topic) || p.kafka.topic.startsWith(self.domain + '.'))",
     "message": "an output port's explicit kafka.topic must start with the product's domain and a dot (<domain>.), so it stays in the domain's topics",
     "fieldPath": ".outputPorts"},
    {"rule": "self.domain == oldSelf.domain",
     "message": "spec.domain is immutable: a data product cannot move to another domain; create a new product instead",
     "fieldPath": ".domain"}
]))]
pub struct DataProductSpec {
    /// The Domain this product belongs to: the `metadata.name` of a Domain. The product
    /// must live in that domain's namespace, and its topics and buckets are named
    /// `<domain>.<product>.<port>` and `<domain>-<product>-<port>`. Cannot be changed
    /// after creation.
    #[schemars(length(min = 1, max = 63), pattern(DNS_LABEL_PATTERN))]
    pub domain: String,

    /// What the product is for, how to use it and what it cannot do (ODPS description).
    pub description: ProductDescription,

    /// The person accountable for the product.
    pub owner: ProductOwner,

    /// Where the product is in its life (ODPS status): `proposed`, `draft`, `active` (the
    /// default), `deprecated` (consumers are warned and no new access is granted) or
    /// `retired` (its transformation is suspended and its grants revoked).
    #[serde(default)]
    pub status: Lifecycle,

    /// How sensitive the data is: `public`, `internal` (the default), `confidential` or
    /// `restricted` (access policies must state a purpose and an expiry).
    #[serde(default)]
    pub classification: Classification,

    /// The ports the product publishes on: each a Kafka topic or a bucket. Port names
    /// are unique within the product.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub output_ports: Vec<OutputPort>,

    /// The ports of other products this product reads. Each is a request for access,
    /// granted by an AccessPolicy of the producing domain; until then it is `Pending`
    /// and the product is not Ready. Port names are unique within the product.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub input_ports: Vec<InputPort>,

    /// The job that produces the product's data from its inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transformation: Option<Transformation>,

    /// Service-level objectives the product commits to (ODCS slaProperties), e.g.
    /// `{property: freshness, value: 15, unit: m}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub sla: Vec<SlaProperty>,

    /// What happens to the product's topics and buckets when the DataProduct is deleted:
    /// `Retain` (the default) keeps them and their data, marked as orphaned; `Delete`
    /// deletes the topics and empties and deletes the buckets.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// A data product's description (ODPS `description`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductDescription {
    /// Why the product exists: the business question it answers.
    #[schemars(length(min = 1, max = 2048))]
    pub purpose: String,
    /// How to use it: what a record or object means, keys, joins, caveats.
    #[schemars(length(min = 1, max = 4096))]
    pub usage: String,
    /// What it must not be used for, or known gaps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub limitations: Option<String>,
}

/// The person accountable for a data product.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductOwner {
    /// The owner's name or user name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Where to reach the owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(email, length(max = 254))]
    pub email: Option<String>,
}

/// The lifecycle stage of a data product (ODPS `status`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Lifecycle {
    /// Suggested; nothing is provisioned yet.
    Proposed,
    /// Being built; provisioned but not yet promised to consumers.
    Draft,
    /// Published and supported.
    #[default]
    Active,
    /// Still served, but consumers should move away; no new access is granted.
    Deprecated,
    /// No longer served: its transformation is suspended and its grants revoked.
    Retired,
}

/// How sensitive a data product's data is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Classification {
    /// Anyone may see it.
    Public,
    /// Anyone in the company may see it, once granted.
    #[default]
    Internal,
    /// Only those with a need to know.
    Confidential,
    /// Only with a stated purpose and for a limited time.
    Restricted,
}

/// A port a data product publishes on: exactly one of a Kafka topic or a bucket.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.kafka) != has(self.bucket)",
     "message": "an output port sets exactly one of kafka or bucket"},
    {"rule": "!has(self.bucket) || !(self.name.endsWith('-s3alias') || self.name.endsWith('--ol-s3') || self.name.endsWith('--x-s3') || self.name.endsWith('--table-s3'))",
     "message": "a bucket port's name must not end with -s3alias, --ol-s3, --x-s3 or --table-s3: S3 reserves these bucket name suffixes"}
]))]
pub struct OutputPort {
    /// The port's name, unique within the product: a DNS label (lowercase letters, digits
    /// and '-'). It ends the port's topic (`<domain>.<product>.<port>`) or bucket
    /// (`<domain>-<product>-<port>`) name.
    #[schemars(length(min = 1, max = 63), pattern(DNS_LABEL_PATTERN))]
    pub name: String,
    /// What consumers find on this port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// Publish on a Kafka topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaPort>,
    /// Publish in an object-storage bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<BucketPort>,
    /// The contract of the data on this port (ODCS schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<PortSchema>,
}

/// A Kafka topic output port.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.retention) || !has(self.config) || !('retention.ms' in self.config)",
     "message": "set retention or config[retention.ms], not both"},
    {"rule": "!has(self.config) || !('min.insync.replicas' in self.config) || self.config['min.insync.replicas'].matches('^[1-9][0-9]{0,8}$')",
     "message": "config[min.insync.replicas] must be a whole number of at least 1",
     "fieldPath": ".config"},
    {"rule": "!has(self.replicas) || !has(self.config) || !('min.insync.replicas' in self.config) || !self.config['min.insync.replicas'].matches('^[1-9][0-9]{0,8}$') || int(self.config['min.insync.replicas']) <= self.replicas",
     "message": "config[min.insync.replicas] must not exceed replicas: the topic would refuse every write that waits for all in-sync replicas (acks=all)",
     "fieldPath": ".config"}
]))]
pub struct KafkaPort {
    /// An explicit topic name, instead of `<domain>.<product>.<port>`. It must start with
    /// `<domain>.` and use only lowercase letters, digits, '.', '_' and '-' (at most 249).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249), pattern(TOPIC_NAME_PATTERN))]
    pub topic: Option<String>,
    /// How many partitions the topic has (at least 1). It may grow; a decrease is
    /// refused, since Kafka cannot remove partitions.
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1, max = 10000))]
    pub partitions: i32,
    /// How many replicas each partition has (at least 1). Defaults to the operator's
    /// configured replication factor. Cannot be changed once the topic exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 32))]
    pub replicas: Option<i32>,
    /// How long records are kept: a number and a unit `ms`, `s`, `m`, `h`, `d` or `w`,
    /// e.g. `7d` (sets `retention.ms`). Defaults to the broker's retention. For
    /// unlimited retention set `config: {retention.ms: "-1"}` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 12), pattern(RETENTION_PATTERN))]
    pub retention: Option<String>,
    /// Further topic configs, e.g. `cleanup.policy: compact`. Only the keys named here
    /// are managed; changes made directly in Kafka are set back. Values are at most 4096
    /// characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 4096}, "x-kubernetes-validations" = [
        {"rule": "self.all(k, size(k) <= 128 && k.matches('^[a-z0-9]+([.][a-z0-9]+)*$'))",
         "message": "config keys are Kafka topic configs such as cleanup.policy: lowercase words separated by dots"}
    ]))]
    pub config: Option<BTreeMap<String, String>>,
}

fn default_partitions() -> i32 {
    1
}

impl KafkaPort {
    /// `retention` in milliseconds, if set and well-formed (the schema guarantees the
    /// form; this is the controller's side of the same rule).
    pub fn retention_ms(&self) -> Option<i64> {
        self.retention.as_deref().and_then(parse_duration_ms)
    }
}

/// Parses a duration such as `7d`, `12h`, `30m`, `45s`, `500ms` or `2w` into milliseconds.
pub fn parse_duration_ms(duration: &str) -> Option<i64> {
    let split = duration.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = duration.split_at(split);
    let number: i64 = number.parse().ok()?;
    let unit_ms: i64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        _ => return None,
    };
    number.checked_mul(unit_ms).filter(|ms| *ms > 0)
}

/// An object-storage bucket output port.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BucketPort {
    /// Whether the bucket keeps every version of an object (default `true`), so an
    /// overwrite or delete can be undone.
    #[serde(default = "default_versioning")]
    pub versioning: bool,
    /// Objects older than this many days are deleted (a lifecycle rule). Unset keeps them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 36500))]
    pub expire_after_days: Option<i32>,
}

fn default_versioning() -> bool {
    true
}

/// The contract of the data on a port.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortSchema {
    /// The schema language: `json` (JSON Schema), `avro` or `protobuf`.
    #[serde(rename = "type")]
    pub type_: SchemaType,
    /// The schema itself, in that language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 262144))]
    pub definition: Option<String>,
}

/// A schema language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SchemaType {
    /// JSON Schema.
    Json,
    /// Apache Avro.
    Avro,
    /// Protocol Buffers.
    Protobuf,
}

/// A port of another data product that this product reads.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InputPort {
    /// The input's name, unique within the product: a DNS label. Workloads find the
    /// input's connection details in a ConfigMap of this name.
    #[schemars(length(min = 1, max = 63), pattern(DNS_LABEL_PATTERN))]
    pub name: String,
    /// The output port read, by domain, product and port name.
    pub data_product: PortReference,
}

/// A reference to an output port of a data product, possibly in another domain.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortReference {
    /// The producing Domain's name.
    #[schemars(length(min = 1, max = 63), pattern(DNS_LABEL_PATTERN))]
    pub domain: String,
    /// The producing DataProduct's name.
    #[schemars(length(min = 1, max = 63), pattern(DNS_LABEL_PATTERN))]
    pub name: String,
    /// The name of the output port read.
    #[schemars(length(min = 1, max = 63), pattern(DNS_LABEL_PATTERN))]
    pub port: String,
}

/// How a data product is made.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Transformation {
    /// A Spark application, run by the kubeflow spark-operator, once or on a schedule.
    pub spark: SparkTransformation,
}

/// A Spark application that produces a data product. It runs with its own
/// ServiceAccount and receives its inputs' and outputs' locations (`DATAMESH_INPUT_<PORT>`,
/// `DATAMESH_OUTPUT_<PORT>`), its domain's credentials Secret as environment, S3A settings
/// in `hadoopConf`, Kafka client options as `spark.datamesh.kafka.*` properties, and a trust
/// store of the platform's CAs: the job contract in the README.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.type == 'Python' || has(self.mainClass)",
     "message": "mainClass is required for Scala and Java applications"}
]))]
pub struct SparkTransformation {
    /// The container image with Spark and the application.
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// The application's main file, e.g. `local:///opt/app/job.py` or `s3a://.../job.jar`.
    #[schemars(length(min = 1, max = 1024))]
    pub main_application_file: String,
    /// The main class, for Scala and Java applications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub main_class: Option<String>,
    /// The application's language: `Scala`, `Java` or `Python` (the default).
    #[serde(default, rename = "type")]
    pub type_: SparkApplicationType,
    /// The Spark version in the image, e.g. `4.0.1`.
    #[schemars(length(max = 32), pattern(SPARK_VERSION_PATTERN))]
    pub spark_version: String,
    /// A cron schedule: five fields (minute 0-59, hour 0-23, day of month 1-31, month 1-12
    /// or `jan`-`dec`, day of week 0-6 or `sun`-`sat`; each `*`, a value, a range or a
    /// list, with an optional `/n` step), `@hourly`-style, or `@every 15m`. With a schedule
    /// the job runs as a ScheduledSparkApplication; without, it runs once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128), pattern(CRON_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = schedule_rules()))]
    pub schedule: Option<String>,
    /// Arguments passed to the application (the operator adds none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 4096)))]
    pub arguments: Vec<String>,
    /// Resources of the driver pod; unset uses the spark-operator's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<DriverResources>,
    /// Resources and count of the executor pods; unset uses the spark-operator's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<ExecutorResources>,
}

/// The language of a Spark application.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum SparkApplicationType {
    /// Scala, on the JVM.
    Scala,
    /// Java, on the JVM.
    Java,
    /// Python (PySpark).
    #[default]
    Python,
}

/// Resources of a Spark driver.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriverResources {
    /// CPU cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub cores: Option<i32>,
    /// JVM memory, as a number and `k`, `m`, `g` or `t`, e.g. `2g`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), pattern(SPARK_MEMORY_PATTERN))]
    pub memory: Option<String>,
}

/// Resources and count of Spark executors.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutorResources {
    /// CPU cores per executor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub cores: Option<i32>,
    /// JVM memory per executor, as a number and `k`, `m`, `g` or `t`, e.g. `4g`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), pattern(SPARK_MEMORY_PATTERN))]
    pub memory: Option<String>,
    /// How many executors run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub instances: Option<i32>,
}

/// A service-level objective (ODCS `slaProperties` entry).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlaProperty {
    /// What is promised, e.g. `freshness`, `latency`, `availability`, `retention`.
    #[schemars(length(min = 1, max = 128))]
    pub property: String,
    /// The promised value: a whole number (`15`) or a string (`"09:00"`). Quote decimals
    /// (`"99.9"`): Kubernetes schemas cannot accept both numbers and strings otherwise.
    pub value: IntOrString,
    /// The unit of `value`, e.g. `m`, `h`, `d`, `percent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub unit: Option<String>,
}

/// What the operator observed and made for a DataProduct.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataProductStatus {
    /// `Ready`, `Reconciling` and `Stalled` (kstatus), each with the generation it describes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Output ports provisioned out of those declared, e.g. `2/3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports_ready: Option<String>,
    /// Where consumers find each output port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub output_ports: Vec<OutputPortStatus>,
    /// Whether each input port has been granted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub input_ports: Vec<InputPortStatus>,
    /// The contract in force on each output port with a schema: the schema its consumers were
    /// granted. A change that would break them is refused while any consumer holds a grant on
    /// the port (the product is `Stalled` with reason `ContractBreaking`), and this keeps the
    /// old one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["port"]))]
    pub contracts: Vec<PortContract>,
}

/// The schema in force on one output port.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortContract {
    /// The output port.
    pub port: String,
    /// The schema language and the schema.
    pub schema: PortSchema,
}

/// The endpoint of one output port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputPortStatus {
    /// The port's name.
    pub name: String,
    /// The Kafka topic, for a Kafka port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The Kafka bootstrap servers, for a Kafka port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_servers: Option<String>,
    /// The topic config keys the operator set from the spec, for a Kafka port. A key the
    /// spec stops naming is removed from the topic, which then takes the broker's value;
    /// config keys set by others are left alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_keys: Vec<String>,
    /// The bucket, for a bucket port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// The S3 endpoint, for a bucket port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// Whether one input port may read what it names.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InputPortStatus {
    /// The input port's name.
    pub name: String,
    /// `Granted`, `Pending` (no AccessPolicy grants it yet), `NotFound` (no such domain,
    /// product or port) or `Denied` (a governance rule refuses it).
    pub access: InputAccess,
    /// Why, in words for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The state of an input port's access request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum InputAccess {
    /// An AccessPolicy of the producer grants it.
    Granted,
    /// No AccessPolicy grants it yet.
    Pending,
    /// The referenced domain, product or port does not exist.
    NotFound,
    /// A governance rule refuses it (e.g. the product is deprecated or retired).
    Denied,
}

impl DataProductSpec {
    /// The topic of a Kafka output port: its explicit `topic`, or `<domain>.<product>.<port>`.
    /// `None` for a bucket port.
    pub fn topic_name(&self, product: &str, port: &OutputPort) -> Option<String> {
        let kafka = port.kafka.as_ref()?;
        Some(
            kafka
                .topic
                .clone()
                .unwrap_or_else(|| topic_name(&self.domain, product, &port.name)),
        )
    }

    /// The bucket of a bucket output port, `<domain>-<product>-<port>`; `None` for a Kafka port.
    pub fn bucket_name(&self, product: &str, port: &OutputPort) -> Option<String> {
        port.bucket
            .as_ref()
            .map(|_| bucket_name(&self.domain, product, &port.name))
    }
}

/// `ready/declared`, as the Ports column shows it.
pub fn ports_ready(ready: usize, declared: usize) -> String {
    format!("{ready}/{declared}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_product_gets_its_defaults() {
        let spec: DataProductSpec = serde_json::from_value(serde_json::json!({
            "domain": "payments",
            "description": {"purpose": "p", "usage": "u"},
            "owner": {"name": "alice"},
            "outputPorts": [{"name": "events", "kafka": {}}, {"name": "lake", "bucket": {}}],
        }))
        .unwrap();
        assert_eq!(spec.status, Lifecycle::Active);
        assert_eq!(spec.classification, Classification::Internal);
        assert_eq!(spec.deletion_policy, DeletionPolicy::Retain);
        let kafka = spec.output_ports[0].kafka.as_ref().unwrap();
        assert_eq!(kafka.partitions, 1);
        assert_eq!(kafka.replicas, None);
        assert!(spec.output_ports[1].bucket.as_ref().unwrap().versioning);
        assert!(spec.input_ports.is_empty() && spec.sla.is_empty());
    }

    #[test]
    fn ports_are_named_by_the_mesh_rule() {
        let spec: DataProductSpec = serde_json::from_value(serde_json::json!({
            "domain": "payments",
            "description": {"purpose": "p", "usage": "u"},
            "owner": {"name": "alice"},
            "outputPorts": [
                {"name": "events", "kafka": {}},
                {"name": "audit", "kafka": {"topic": "payments.audit-v2"}},
                {"name": "lake", "bucket": {}}
            ],
        }))
        .unwrap();
        let [events, audit, lake] = &spec.output_ports[..] else {
            panic!("three ports")
        };
        assert_eq!(
            spec.topic_name("orders", events).as_deref(),
            Some("payments.orders.events")
        );
        assert_eq!(
            spec.topic_name("orders", audit).as_deref(),
            Some("payments.audit-v2")
        );
        assert_eq!(spec.topic_name("orders", lake), None);
        assert_eq!(
            spec.bucket_name("orders", lake).as_deref(),
            Some("payments-orders-lake")
        );
        assert_eq!(spec.bucket_name("orders", events), None);
    }

    #[test]
    fn durations_parse_to_milliseconds() {
        assert_eq!(parse_duration_ms("7d"), Some(604_800_000));
        assert_eq!(parse_duration_ms("12h"), Some(43_200_000));
        assert_eq!(parse_duration_ms("30m"), Some(1_800_000));
        assert_eq!(parse_duration_ms("45s"), Some(45_000));
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("2w"), Some(1_209_600_000));
        for bad in [
            "",
            "7",
            "d",
            "7x",
            "0d",
            "-1d",
            "7 d",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_duration_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sla_values_are_whole_numbers_or_strings() {
        let sla: Vec<SlaProperty> = serde_json::from_value(serde_json::json!([
            {"property": "freshness", "value": 15, "unit": "m"},
            {"property": "availability", "value": "99.9", "unit": "percent"},
        ]))
        .unwrap();
        assert_eq!(sla[0].value, IntOrString::Int(15));
        assert_eq!(sla[1].value, IntOrString::String("99.9".into()));
    }
}
