//! Every `unsafe` of the Kafka edge lives here: the librdkafka admin calls, made through
//! the `rdkafka-sys` bindings that `rdkafka` re-exports (so it is the very librdkafka the
//! client was built with).
//!
//! We call librdkafka directly rather than through `rdkafka::admin` for two reasons: rdkafka
//! has no calls for SCRAM credentials, ACLs, `IncrementalAlterConfigs` or `DescribeTopics`,
//! and its topic calls drop the broker's error message, which is what tells a person which
//! config value is invalid. Going one way for every call keeps one set of rules:
//!
//! - every object we create is held by an [`Owned`] guard that destroys it on every path;
//!   librdkafka copies request objects, so they are destroyed as soon as the call returns;
//! - each call gets its own result queue and waits on it in `spawn_blocking`, with the
//!   request timeout plus a margin, so the async runtime is never blocked;
//! - the `rd_kafka_t` belongs to rdkafka's `AdminClient`; a [`Call`] borrows it, so the
//!   client outlives every queue, option and event made from it.
//!
//! This file only marshals: which result belongs to which input, and what it means, is
//! decided in the safe code of `client.rs`.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString, c_char, c_int};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::bindings as rd;
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use tracing::warn;

use super::acl::{
    AclBinding, AclBindingFilter, AclOperation, AclPatternType, AclPermission, AclResourceType,
};
use super::error::{AdminOperation, KafkaAdminError};
use super::scram::{ScramCredentialInfo, ScramCredentialUpsert, ScramMechanism};
use super::topic::{
    ConfigSource, NewTopic, PartitionIncrease, TopicConfigAlteration, TopicConfigEntry,
};

/// The rdkafka admin client the raw calls borrow their `rd_kafka_t` from.
pub(super) type SharedClient = Arc<AdminClient<DefaultClientContext>>;

/// How long to wait beyond the request timeout: librdkafka answers with `_TIMED_OUT`
/// at the request timeout, so our own timeout only fires if that answer never comes.
const POLL_MARGIN: Duration = Duration::from_secs(5);

/// Size of the buffers librdkafka writes its local error messages into.
const ERRSTR_SIZE: usize = 512;

const NO_ERROR: rd::rd_kafka_resp_err_t = rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR;

/// An error Kafka (or librdkafka) reported for one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct KafkaFailure {
    pub code: RDKafkaErrorCode,
    pub message: String,
}

/// The outcome Kafka reported for one named item (topic or user).
#[derive(Debug)]
pub(super) struct NamedResult {
    pub name: String,
    pub failure: Option<KafkaFailure>,
}

/// One topic's `DescribeTopics` answer.
#[derive(Debug)]
pub(super) struct DescribedTopic {
    pub name: String,
    pub failure: Option<KafkaFailure>,
    pub partitions: i32,
    pub replication_factor: i16,
}

/// One topic's `DescribeConfigs` answer.
#[derive(Debug)]
pub(super) struct DescribedConfigs {
    pub name: String,
    pub failure: Option<KafkaFailure>,
    pub configs: BTreeMap<String, TopicConfigEntry>,
}

/// One user's `DescribeUserScramCredentials` answer.
#[derive(Debug)]
pub(super) struct DescribedUser {
    pub user: String,
    pub failure: Option<KafkaFailure>,
    pub credentials: Vec<ScramCredentialInfo>,
}

/// One change of a user's SCRAM credential of one mechanism.
#[derive(Debug)]
pub(super) enum ScramAlteration {
    Upsert(ScramCredentialUpsert),
    Delete(String, ScramMechanism),
}

impl ScramAlteration {
    fn user(&self) -> &str {
        match self {
            Self::Upsert(upsert) => &upsert.user,
            Self::Delete(user, _) => user,
        }
    }

    fn mechanism(&self) -> rd::rd_kafka_ScramMechanism_t {
        let mechanism = match self {
            Self::Upsert(upsert) => upsert.mechanism,
            Self::Delete(_, mechanism) => *mechanism,
        };
        match mechanism {
            ScramMechanism::Sha256 => {
                rd::rd_kafka_ScramMechanism_t::RD_KAFKA_SCRAM_MECHANISM_SHA_256
            }
            ScramMechanism::Sha512 => {
                rd::rd_kafka_ScramMechanism_t::RD_KAFKA_SCRAM_MECHANISM_SHA_512
            }
        }
    }
}

/// A librdkafka object we own, destroyed exactly once when the guard drops.
struct Owned<T> {
    ptr: NonNull<T>,
    destroy: unsafe extern "C" fn(*mut T),
}

impl<T> Owned<T> {
    /// Takes ownership of `ptr`, or returns `None` if it is NULL.
    ///
    /// # Safety
    /// `ptr` must be NULL or an object nobody else owns or frees, and `destroy` must be
    /// the librdkafka function that frees that kind of object.
    unsafe fn new(ptr: *mut T, destroy: unsafe extern "C" fn(*mut T)) -> Option<Self> {
        NonNull::new(ptr).map(|ptr| Self { ptr, destroy })
    }

    fn as_ptr(&self) -> *mut T {
        self.ptr.as_ptr()
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        // SAFETY: by the contract of `Owned::new` we own the object and `destroy` frees it;
        // the guard is not Clone, so this runs once.
        unsafe { (self.destroy)(self.ptr.as_ptr()) }
    }
}

/// A buffer for librdkafka's local error messages.
struct ErrBuf([c_char; ERRSTR_SIZE]);

impl ErrBuf {
    fn new() -> Self {
        Self([0; ERRSTR_SIZE])
    }

    fn as_mut_ptr(&mut self) -> *mut c_char {
        self.0.as_mut_ptr()
    }

    fn message(&self) -> String {
        // Force a terminator so a full buffer can still be read.
        let mut bytes: Vec<u8> = self.0.iter().map(|&c| c as u8).collect();
        bytes.push(0);
        CStr::from_bytes_until_nul(&bytes)
            .map(|text| text.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// Copies a C string into an owned `String` (lossily); `None` for NULL.
///
/// # Safety
/// `text` must be NULL or point to a NUL-terminated string that stays valid during the call.
unsafe fn owned_string(text: *const c_char) -> Option<String> {
    if text.is_null() {
        return None;
    }
    // SAFETY: non-NULL and NUL-terminated by this function's contract.
    Some(
        unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// The text librdkafka has for an error code.
fn code_text(code: rd::rd_kafka_resp_err_t) -> String {
    // SAFETY: rd_kafka_err2str accepts any code and returns a static string.
    unsafe { owned_string(rd::rd_kafka_err2str(code)) }.unwrap_or_default()
}

/// A slice over an array of pointers owned by a result event, living as long as the event.
///
/// # Safety
/// `items` must be NULL or point to `count` pointers owned by `_owner`'s object, valid
/// as long as it is.
unsafe fn result_array<E, T>(
    _owner: &Owned<E>,
    items: *const *const T,
    count: usize,
) -> &[*const T] {
    if items.is_null() || count == 0 {
        return &[];
    }
    // SAFETY: non-NULL, `count` elements, alive while `_owner` is (this function's contract).
    unsafe { std::slice::from_raw_parts(items, count) }
}

/// The failure in a per-item `rd_kafka_error_t`, if any.
///
/// # Safety
/// `error` must be NULL or a valid error object (owned by a live result).
unsafe fn failure_of(error: *const rd::rd_kafka_error_t) -> Option<KafkaFailure> {
    if error.is_null() {
        return None;
    }
    // SAFETY: non-NULL and valid by this function's contract.
    let code = unsafe { rd::rd_kafka_error_code(error) };
    if code == NO_ERROR {
        return None;
    }
    // SAFETY: as above; the string lives as long as the error object and is copied.
    let message = unsafe { owned_string(rd::rd_kafka_error_string(error)) };
    Some(KafkaFailure {
        code: code.into(),
        message: message.unwrap_or_else(|| code_text(code)),
    })
}

/// The failure of an item that reports a code and an optional message.
///
/// # Safety
/// `message` must be NULL or a valid NUL-terminated string.
unsafe fn failure_of_code(
    code: rd::rd_kafka_resp_err_t,
    message: *const c_char,
) -> Option<KafkaFailure> {
    if code == NO_ERROR {
        return None;
    }
    // SAFETY: by this function's contract.
    let message = unsafe { owned_string(message) };
    Some(KafkaFailure {
        code: code.into(),
        message: message.unwrap_or_else(|| code_text(code)),
    })
}

fn millis(duration: Duration) -> c_int {
    c_int::try_from(duration.as_millis()).unwrap_or(c_int::MAX)
}

/// One admin call in flight: its result queue, borrowed from a live client.
struct Call<'client> {
    rk: *mut rd::rd_kafka_t,
    queue: Owned<rd::rd_kafka_queue_t>,
    operation: AdminOperation,
    timeout: Duration,
    _client: PhantomData<&'client AdminClient<DefaultClientContext>>,
}

impl<'client> Call<'client> {
    fn new(
        client: &'client AdminClient<DefaultClientContext>,
        operation: AdminOperation,
        timeout: Duration,
    ) -> Result<Self, KafkaAdminError> {
        let rk = client.inner().native_ptr();
        // SAFETY: `rk` is the live handle owned by `client`, which outlives this Call (the
        // 'client borrow); rd_kafka_queue_new returns a new queue that we own and free with
        // rd_kafka_queue_destroy.
        let queue = unsafe { Owned::new(rd::rd_kafka_queue_new(rk), rd::rd_kafka_queue_destroy) }
            .ok_or_else(|| {
            KafkaAdminError::unexpected(operation, "librdkafka could not create a result queue")
        })?;
        Ok(Self {
            rk,
            queue,
            operation,
            timeout,
            _client: PhantomData,
        })
    }

    fn cstring(&self, resource: &str, text: &str) -> Result<CString, KafkaAdminError> {
        CString::new(text).map_err(|_| {
            KafkaAdminError::invalid_input(
                self.operation,
                resource,
                "a name, key or value contains a NUL character",
            )
        })
    }

    /// Admin options with our request timeout (and operation timeout, for the calls that
    /// wait for the cluster to apply a change).
    fn options(
        &self,
        api: rd::rd_kafka_admin_op_t,
        with_operation_timeout: bool,
    ) -> Result<Owned<rd::rd_kafka_AdminOptions_t>, KafkaAdminError> {
        // SAFETY: `self.rk` is live for the Call; the options object is new and ours.
        let options = unsafe {
            Owned::new(
                rd::rd_kafka_AdminOptions_new(self.rk, api),
                rd::rd_kafka_AdminOptions_destroy,
            )
        }
        .ok_or_else(|| {
            KafkaAdminError::unexpected(self.operation, "librdkafka could not create admin options")
        })?;
        let timeout = millis(self.timeout);
        let mut errstr = ErrBuf::new();
        // SAFETY: `options` is live; `errstr` is writable for ERRSTR_SIZE bytes.
        let code = unsafe {
            rd::rd_kafka_AdminOptions_set_request_timeout(
                options.as_ptr(),
                timeout,
                errstr.as_mut_ptr(),
                ERRSTR_SIZE,
            )
        };
        if code != NO_ERROR {
            return Err(KafkaAdminError::unexpected(
                self.operation,
                format!("setting the request timeout: {}", errstr.message()),
            ));
        }
        if with_operation_timeout {
            // SAFETY: as above.
            let code = unsafe {
                rd::rd_kafka_AdminOptions_set_operation_timeout(
                    options.as_ptr(),
                    timeout,
                    errstr.as_mut_ptr(),
                    ERRSTR_SIZE,
                )
            };
            if code != NO_ERROR {
                return Err(KafkaAdminError::unexpected(
                    self.operation,
                    format!("setting the operation timeout: {}", errstr.message()),
                ));
            }
        }
        Ok(options)
    }

    /// Blocks this (dedicated) thread until the result event arrives, and turns an error
    /// of the whole request into `Err`.
    fn wait(&self, event_type: c_int) -> Result<Owned<rd::rd_kafka_event_t>, KafkaAdminError> {
        let wait_for = self.timeout + POLL_MARGIN;
        // SAFETY: the queue is live (owned by self); poll returns a new event that we own and
        // free with rd_kafka_event_destroy, or NULL when the timeout passes.
        let event = unsafe {
            Owned::new(
                rd::rd_kafka_queue_poll(self.queue.as_ptr(), millis(wait_for)),
                rd::rd_kafka_event_destroy,
            )
        }
        .ok_or(KafkaAdminError::TimedOut {
            operation: self.operation,
            timeout: wait_for,
        })?;
        // SAFETY: `event` is live.
        let actual = unsafe { rd::rd_kafka_event_type(event.as_ptr()) };
        if actual != event_type {
            return Err(KafkaAdminError::unexpected(
                self.operation,
                format!("expected result event {event_type}, got event {actual}"),
            ));
        }
        // SAFETY: `event` is live; the error string lives as long as it and is copied.
        let failure = unsafe {
            let code = rd::rd_kafka_event_error(event.as_ptr());
            failure_of_code(code, rd::rd_kafka_event_error_string(event.as_ptr()))
        };
        match failure {
            Some(failure) => Err(KafkaAdminError::kafka(
                self.operation,
                "request",
                failure.code,
                failure.message,
            )),
            None => Ok(event),
        }
    }

    fn missing_result(&self) -> KafkaAdminError {
        KafkaAdminError::unexpected(self.operation, "the result event holds no result")
    }
}

/// Runs `body` with a fresh [`Call`] on a blocking thread, so waiting for librdkafka never
/// blocks the async runtime.
async fn run<T, F>(
    client: &SharedClient,
    operation: AdminOperation,
    timeout: Duration,
    body: F,
) -> Result<T, KafkaAdminError>
where
    T: Send + 'static,
    F: FnOnce(&Call<'_>) -> Result<T, KafkaAdminError> + Send + 'static,
{
    let client = Arc::clone(client);
    tokio::task::spawn_blocking(move || {
        let call = Call::new(&client, operation, timeout)?;
        body(&call)
    })
    .await
    .map_err(|err| {
        KafkaAdminError::unexpected(operation, format!("the blocking admin task failed: {err}"))
    })?
}

/// Topic results (name, code, message) of CreateTopics, DeleteTopics and CreatePartitions.
///
/// # Safety
/// `items`/`count` must come from the result accessor of `event`'s result.
unsafe fn topic_results(
    event: &Owned<rd::rd_kafka_event_t>,
    items: *const *const rd::rd_kafka_topic_result_t,
    count: usize,
) -> Vec<NamedResult> {
    // SAFETY: by this function's contract the array belongs to `event`.
    let items = unsafe { result_array(event, items, count) };
    items
        .iter()
        .map(|&item| {
            // SAFETY: each element is a valid topic result owned by `event`; strings are copied.
            unsafe {
                NamedResult {
                    name: owned_string(rd::rd_kafka_topic_result_name(item)).unwrap_or_default(),
                    failure: failure_of_code(
                        rd::rd_kafka_topic_result_error(item),
                        rd::rd_kafka_topic_result_error_string(item),
                    ),
                }
            }
        })
        .collect()
}

fn local_failure(message: String) -> Option<KafkaFailure> {
    Some(KafkaFailure {
        code: RDKafkaErrorCode::InvalidArgument,
        message,
    })
}

/// `CreateTopics`. Items librdkafka refuses locally come back as failures; the rest are sent
/// in one request.
pub(super) async fn create_topics(
    client: &SharedClient,
    timeout: Duration,
    topics: Vec<NewTopic>,
) -> Result<Vec<NamedResult>, KafkaAdminError> {
    run(client, AdminOperation::CreateTopics, timeout, move |call| {
        let mut refused = Vec::new();
        let mut owned = Vec::with_capacity(topics.len());
        'topics: for topic in &topics {
            let resource = super::batch::topic_resource(&topic.name);
            let name = call.cstring(&resource, &topic.name)?;
            let mut errstr = ErrBuf::new();
            // SAFETY: `name` is NUL-terminated and outlives the call; `errstr` is writable for
            // ERRSTR_SIZE bytes; the NewTopic is new and ours.
            let new_topic = unsafe {
                Owned::new(
                    rd::rd_kafka_NewTopic_new(
                        name.as_ptr(),
                        topic.partitions,
                        c_int::from(topic.replication_factor),
                        errstr.as_mut_ptr(),
                        ERRSTR_SIZE,
                    ),
                    rd::rd_kafka_NewTopic_destroy,
                )
            };
            let Some(new_topic) = new_topic else {
                refused.push(NamedResult {
                    name: topic.name.clone(),
                    failure: local_failure(errstr.message()),
                });
                continue;
            };
            for (key, value) in &topic.configs {
                let key_c = call.cstring(&resource, key)?;
                let value_c = call.cstring(&resource, value)?;
                // SAFETY: `new_topic` is live; the strings are NUL-terminated and copied.
                let code = unsafe {
                    rd::rd_kafka_NewTopic_set_config(
                        new_topic.as_ptr(),
                        key_c.as_ptr(),
                        value_c.as_ptr(),
                    )
                };
                if code != NO_ERROR {
                    refused.push(NamedResult {
                        name: topic.name.clone(),
                        failure: local_failure(format!("config {key}: {}", code_text(code))),
                    });
                    continue 'topics;
                }
            }
            owned.push(new_topic);
        }
        if owned.is_empty() {
            return Ok(refused);
        }
        let mut pointers: Vec<*mut rd::rd_kafka_NewTopic_t> =
            owned.iter().map(Owned::as_ptr).collect();
        let options = call.options(
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATETOPICS,
            true,
        )?;
        // SAFETY: `rk`, the queue and `options` are live; `pointers` holds `len` live NewTopics,
        // which librdkafka copies before returning.
        unsafe {
            rd::rd_kafka_CreateTopics(
                call.rk,
                pointers.as_mut_ptr(),
                pointers.len(),
                options.as_ptr(),
                call.queue.as_ptr(),
            );
        }
        let event = call.wait(rd::RD_KAFKA_EVENT_CREATETOPICS_RESULT)?;
        // SAFETY: `event` is live and of the CreateTopics type (checked in `wait`).
        let result = unsafe { rd::rd_kafka_event_CreateTopics_result(event.as_ptr()) };
        if result.is_null() {
            return Err(call.missing_result());
        }
        let mut count = 0;
        // SAFETY: `result` is live while `event` is; `count` is written by the call.
        let items = unsafe { rd::rd_kafka_CreateTopics_result_topics(result, &mut count) };
        // SAFETY: the array comes from `event`'s result.
        refused.extend(unsafe { topic_results(&event, items.cast_const(), count) });
        Ok(refused)
    })
    .await
}

/// `DeleteTopics`.
pub(super) async fn delete_topics(
    client: &SharedClient,
    timeout: Duration,
    names: Vec<String>,
) -> Result<Vec<NamedResult>, KafkaAdminError> {
    run(client, AdminOperation::DeleteTopics, timeout, move |call| {
        let mut owned = Vec::with_capacity(names.len());
        for name in &names {
            let name_c = call.cstring(&super::batch::topic_resource(name), name)?;
            // SAFETY: `name_c` is NUL-terminated and copied; the DeleteTopic is new and ours.
            let delete = unsafe {
                Owned::new(
                    rd::rd_kafka_DeleteTopic_new(name_c.as_ptr()),
                    rd::rd_kafka_DeleteTopic_destroy,
                )
            }
            .ok_or_else(|| {
                KafkaAdminError::unexpected(
                    call.operation,
                    "librdkafka could not allocate a DeleteTopic",
                )
            })?;
            owned.push(delete);
        }
        let mut pointers: Vec<*mut rd::rd_kafka_DeleteTopic_t> =
            owned.iter().map(Owned::as_ptr).collect();
        let options = call.options(
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DELETETOPICS,
            true,
        )?;
        // SAFETY: `rk`, the queue and `options` are live; `pointers` holds `len` live
        // DeleteTopics, which librdkafka copies before returning.
        unsafe {
            rd::rd_kafka_DeleteTopics(
                call.rk,
                pointers.as_mut_ptr(),
                pointers.len(),
                options.as_ptr(),
                call.queue.as_ptr(),
            );
        }
        let event = call.wait(rd::RD_KAFKA_EVENT_DELETETOPICS_RESULT)?;
        // SAFETY: `event` is live and of the DeleteTopics type.
        let result = unsafe { rd::rd_kafka_event_DeleteTopics_result(event.as_ptr()) };
        if result.is_null() {
            return Err(call.missing_result());
        }
        let mut count = 0;
        // SAFETY: `result` is live while `event` is.
        let items = unsafe { rd::rd_kafka_DeleteTopics_result_topics(result, &mut count) };
        // SAFETY: the array comes from `event`'s result.
        Ok(unsafe { topic_results(&event, items.cast_const(), count) })
    })
    .await
}

/// `CreatePartitions`.
pub(super) async fn create_partitions(
    client: &SharedClient,
    timeout: Duration,
    increases: Vec<PartitionIncrease>,
) -> Result<Vec<NamedResult>, KafkaAdminError> {
    run(
        client,
        AdminOperation::CreatePartitions,
        timeout,
        move |call| {
            let mut refused = Vec::new();
            let mut owned = Vec::with_capacity(increases.len());
            for increase in &increases {
                let name = call.cstring(
                    &super::batch::topic_resource(&increase.topic),
                    &increase.topic,
                )?;
                let total = usize::try_from(increase.total_partitions).unwrap_or(0);
                let mut errstr = ErrBuf::new();
                // SAFETY: `name` is NUL-terminated and copied; `errstr` is writable for
                // ERRSTR_SIZE bytes; the NewPartitions is new and ours.
                let new_partitions = unsafe {
                    Owned::new(
                        rd::rd_kafka_NewPartitions_new(
                            name.as_ptr(),
                            total,
                            errstr.as_mut_ptr(),
                            ERRSTR_SIZE,
                        ),
                        rd::rd_kafka_NewPartitions_destroy,
                    )
                };
                match new_partitions {
                    Some(new_partitions) => owned.push(new_partitions),
                    None => refused.push(NamedResult {
                        name: increase.topic.clone(),
                        failure: local_failure(errstr.message()),
                    }),
                }
            }
            if owned.is_empty() {
                return Ok(refused);
            }
            let mut pointers: Vec<*mut rd::rd_kafka_NewPartitions_t> =
                owned.iter().map(Owned::as_ptr).collect();
            let options = call.options(
                rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATEPARTITIONS,
                true,
            )?;
            // SAFETY: `rk`, the queue and `options` are live; `pointers` holds `len` live
            // NewPartitions, which librdkafka copies before returning.
            unsafe {
                rd::rd_kafka_CreatePartitions(
                    call.rk,
                    pointers.as_mut_ptr(),
                    pointers.len(),
                    options.as_ptr(),
                    call.queue.as_ptr(),
                );
            }
            let event = call.wait(rd::RD_KAFKA_EVENT_CREATEPARTITIONS_RESULT)?;
            // SAFETY: `event` is live and of the CreatePartitions type.
            let result = unsafe { rd::rd_kafka_event_CreatePartitions_result(event.as_ptr()) };
            if result.is_null() {
                return Err(call.missing_result());
            }
            let mut count = 0;
            // SAFETY: `result` is live while `event` is.
            let items = unsafe { rd::rd_kafka_CreatePartitions_result_topics(result, &mut count) };
            // SAFETY: the array comes from `event`'s result.
            refused.extend(unsafe { topic_results(&event, items.cast_const(), count) });
            Ok(refused)
        },
    )
    .await
}

/// A topic `ConfigResource` to send (owned by the returned guard).
fn topic_config_resource(
    call: &Call<'_>,
    topic: &str,
) -> Result<Owned<rd::rd_kafka_ConfigResource_t>, KafkaAdminError> {
    let name = call.cstring(&super::batch::topic_resource(topic), topic)?;
    // SAFETY: `name` is NUL-terminated and copied; the ConfigResource is new and ours.
    unsafe {
        Owned::new(
            rd::rd_kafka_ConfigResource_new(
                rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
                name.as_ptr(),
            ),
            rd::rd_kafka_ConfigResource_destroy,
        )
    }
    .ok_or_else(|| {
        KafkaAdminError::unexpected(
            call.operation,
            "librdkafka could not allocate a ConfigResource",
        )
    })
}

/// `IncrementalAlterConfigs` on topics: SET for `set`, DELETE for `delete`.
pub(super) async fn alter_topic_configs(
    client: &SharedClient,
    timeout: Duration,
    alterations: Vec<TopicConfigAlteration>,
) -> Result<Vec<NamedResult>, KafkaAdminError> {
    run(
        client,
        AdminOperation::AlterTopicConfigs,
        timeout,
        move |call| {
            let mut refused = Vec::new();
            let mut owned = Vec::with_capacity(alterations.len());
            'alterations: for alteration in &alterations {
                let resource_name = super::batch::topic_resource(&alteration.topic);
                let resource = topic_config_resource(call, &alteration.topic)?;
                let set = alteration.set.iter().map(|(k, v)| {
                    (
                        k,
                        Some(v),
                        rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_SET,
                    )
                });
                let delete = alteration.delete.iter().map(|k| {
                    (
                        k,
                        None,
                        rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_DELETE,
                    )
                });
                for (key, value, op_type) in set.chain(delete) {
                    let key_c = call.cstring(&resource_name, key)?;
                    let value_c = value.map(|v| call.cstring(&resource_name, v)).transpose()?;
                    let value_ptr = value_c.as_ref().map_or(std::ptr::null(), |v| v.as_ptr());
                    // SAFETY: `resource` is live; the strings are NUL-terminated (value may be NULL
                    // for DELETE) and copied; a returned error object is ours to free.
                    let error = unsafe {
                        Owned::new(
                            rd::rd_kafka_ConfigResource_add_incremental_config(
                                resource.as_ptr(),
                                key_c.as_ptr(),
                                op_type,
                                value_ptr,
                            ),
                            rd::rd_kafka_error_destroy,
                        )
                    };
                    if let Some(error) = error {
                        // SAFETY: `error` is live.
                        let failure = unsafe { failure_of(error.as_ptr()) };
                        refused.push(NamedResult {
                            name: alteration.topic.clone(),
                            failure: failure
                                .or_else(|| local_failure(format!("config {key} refused"))),
                        });
                        continue 'alterations;
                    }
                }
                owned.push(resource);
            }
            if owned.is_empty() {
                return Ok(refused);
            }
            let mut pointers: Vec<*mut rd::rd_kafka_ConfigResource_t> =
                owned.iter().map(Owned::as_ptr).collect();
            let options = call.options(
                rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS,
                false,
            )?;
            // SAFETY: `rk`, the queue and `options` are live; `pointers` holds `len` live
            // ConfigResources, which librdkafka copies before returning.
            unsafe {
                rd::rd_kafka_IncrementalAlterConfigs(
                    call.rk,
                    pointers.as_mut_ptr(),
                    pointers.len(),
                    options.as_ptr(),
                    call.queue.as_ptr(),
                );
            }
            let event = call.wait(rd::RD_KAFKA_EVENT_INCREMENTALALTERCONFIGS_RESULT)?;
            // SAFETY: `event` is live and of the IncrementalAlterConfigs type.
            let result =
                unsafe { rd::rd_kafka_event_IncrementalAlterConfigs_result(event.as_ptr()) };
            if result.is_null() {
                return Err(call.missing_result());
            }
            let mut count = 0;
            // SAFETY: `result` is live while `event` is; the array belongs to it.
            let items = unsafe {
                result_array(
                    &event,
                    rd::rd_kafka_IncrementalAlterConfigs_result_resources(result, &mut count)
                        .cast_const(),
                    count,
                )
            };
            refused.extend(items.iter().map(|&item| {
                // SAFETY: each element is a ConfigResource owned by `event`; strings are copied.
                unsafe {
                    NamedResult {
                        name: owned_string(rd::rd_kafka_ConfigResource_name(item))
                            .unwrap_or_default(),
                        failure: failure_of_code(
                            rd::rd_kafka_ConfigResource_error(item),
                            rd::rd_kafka_ConfigResource_error_string(item),
                        ),
                    }
                }
            }));
            Ok(refused)
        },
    )
    .await
}

fn config_source(source: rd::rd_kafka_ConfigSource_t) -> ConfigSource {
    use rd::rd_kafka_ConfigSource_t::*;
    match source {
        RD_KAFKA_CONFIG_SOURCE_DYNAMIC_TOPIC_CONFIG => ConfigSource::DynamicTopic,
        RD_KAFKA_CONFIG_SOURCE_DYNAMIC_BROKER_CONFIG => ConfigSource::DynamicBroker,
        RD_KAFKA_CONFIG_SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG => ConfigSource::DynamicDefaultBroker,
        RD_KAFKA_CONFIG_SOURCE_STATIC_BROKER_CONFIG => ConfigSource::StaticBroker,
        RD_KAFKA_CONFIG_SOURCE_DEFAULT_CONFIG => ConfigSource::Default,
        _ => ConfigSource::Unknown,
    }
}

/// `DescribeConfigs` on topics.
pub(super) async fn describe_topic_configs(
    client: &SharedClient,
    timeout: Duration,
    names: Vec<String>,
) -> Result<Vec<DescribedConfigs>, KafkaAdminError> {
    run(
        client,
        AdminOperation::DescribeTopics,
        timeout,
        move |call| {
            let owned = names
                .iter()
                .map(|name| topic_config_resource(call, name))
                .collect::<Result<Vec<_>, _>>()?;
            let mut pointers: Vec<*mut rd::rd_kafka_ConfigResource_t> =
                owned.iter().map(Owned::as_ptr).collect();
            let options = call.options(
                rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS,
                false,
            )?;
            // SAFETY: `rk`, the queue and `options` are live; `pointers` holds `len` live
            // ConfigResources, which librdkafka copies before returning.
            unsafe {
                rd::rd_kafka_DescribeConfigs(
                    call.rk,
                    pointers.as_mut_ptr(),
                    pointers.len(),
                    options.as_ptr(),
                    call.queue.as_ptr(),
                );
            }
            let event = call.wait(rd::RD_KAFKA_EVENT_DESCRIBECONFIGS_RESULT)?;
            // SAFETY: `event` is live and of the DescribeConfigs type.
            let result = unsafe { rd::rd_kafka_event_DescribeConfigs_result(event.as_ptr()) };
            if result.is_null() {
                return Err(call.missing_result());
            }
            let mut count = 0;
            // SAFETY: `result` is live while `event` is; the array belongs to it.
            let resources = unsafe {
                result_array(
                    &event,
                    rd::rd_kafka_DescribeConfigs_result_resources(result, &mut count).cast_const(),
                    count,
                )
            };
            let described = resources
                .iter()
                .map(|&resource| {
                    let mut entry_count = 0;
                    // SAFETY: `resource` is owned by `event`; its entries array belongs to it too.
                    let entries = unsafe {
                        result_array(
                            &event,
                            rd::rd_kafka_ConfigResource_configs(resource, &mut entry_count)
                                .cast_const(),
                            entry_count,
                        )
                    };
                    let configs = entries
                        .iter()
                        .filter_map(|&entry| {
                            // SAFETY: `entry` is a ConfigEntry owned by `event`; strings are copied.
                            unsafe {
                                let name = owned_string(rd::rd_kafka_ConfigEntry_name(entry))?;
                                Some((
                                    name,
                                    TopicConfigEntry {
                                        value: owned_string(rd::rd_kafka_ConfigEntry_value(entry)),
                                        source: config_source(rd::rd_kafka_ConfigEntry_source(
                                            entry,
                                        )),
                                        sensitive: rd::rd_kafka_ConfigEntry_is_sensitive(entry)
                                            != 0,
                                        read_only: rd::rd_kafka_ConfigEntry_is_read_only(entry)
                                            != 0,
                                    },
                                ))
                            }
                        })
                        .collect();
                    // SAFETY: `resource` is owned by `event`; strings are copied.
                    unsafe {
                        DescribedConfigs {
                            name: owned_string(rd::rd_kafka_ConfigResource_name(resource))
                                .unwrap_or_default(),
                            failure: failure_of_code(
                                rd::rd_kafka_ConfigResource_error(resource),
                                rd::rd_kafka_ConfigResource_error_string(resource),
                            ),
                            configs,
                        }
                    }
                })
                .collect();
            Ok(described)
        },
    )
    .await
}

/// `DescribeTopics`: partition count and replication factor of each topic.
pub(super) async fn describe_topics(
    client: &SharedClient,
    timeout: Duration,
    names: Vec<String>,
) -> Result<Vec<DescribedTopic>, KafkaAdminError> {
    run(
        client,
        AdminOperation::DescribeTopics,
        timeout,
        move |call| {
            let names_c = names
                .iter()
                .map(|name| call.cstring(&super::batch::topic_resource(name), name))
                .collect::<Result<Vec<_>, _>>()?;
            let mut pointers: Vec<*const c_char> =
                names_c.iter().map(|name| name.as_ptr()).collect();
            // SAFETY: `pointers` holds `len` NUL-terminated names, which librdkafka copies; the
            // collection is new and ours.
            let collection = unsafe {
                Owned::new(
                    rd::rd_kafka_TopicCollection_of_topic_names(
                        pointers.as_mut_ptr(),
                        pointers.len(),
                    ),
                    rd::rd_kafka_TopicCollection_destroy,
                )
            }
            .ok_or_else(|| {
                KafkaAdminError::unexpected(
                    call.operation,
                    "librdkafka could not allocate a TopicCollection",
                )
            })?;
            let options = call.options(
                rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
                false,
            )?;
            // SAFETY: `rk`, the queue, `options` and `collection` are live; librdkafka copies the
            // names before returning.
            unsafe {
                rd::rd_kafka_DescribeTopics(
                    call.rk,
                    collection.as_ptr(),
                    options.as_ptr(),
                    call.queue.as_ptr(),
                );
            }
            let event = call.wait(rd::RD_KAFKA_EVENT_DESCRIBETOPICS_RESULT)?;
            // SAFETY: `event` is live and of the DescribeTopics type.
            let result = unsafe { rd::rd_kafka_event_DescribeTopics_result(event.as_ptr()) };
            if result.is_null() {
                return Err(call.missing_result());
            }
            let mut count = 0;
            // SAFETY: `result` is live while `event` is; the array belongs to it.
            let topics = unsafe {
                result_array(
                    &event,
                    rd::rd_kafka_DescribeTopics_result_topics(result, &mut count).cast_const(),
                    count,
                )
            };
            let described = topics
                .iter()
                .map(|&topic| {
                    let mut partition_count = 0;
                    // SAFETY: `topic` is owned by `event`; its partitions array belongs to it too.
                    let partitions = unsafe {
                        result_array(
                            &event,
                            rd::rd_kafka_TopicDescription_partitions(topic, &mut partition_count)
                                .cast_const(),
                            partition_count,
                        )
                    };
                    let replication_factor = partitions
                        .iter()
                        .map(|&partition| {
                            let mut replicas = 0;
                            // SAFETY: `partition` is owned by `event`; only the count is read.
                            unsafe {
                                rd::rd_kafka_TopicPartitionInfo_replicas(partition, &mut replicas)
                            };
                            replicas
                        })
                        .max()
                        .unwrap_or(0);
                    // SAFETY: `topic` is owned by `event`; strings and the error are copied.
                    unsafe {
                        DescribedTopic {
                            name: owned_string(rd::rd_kafka_TopicDescription_name(topic))
                                .unwrap_or_default(),
                            failure: failure_of(rd::rd_kafka_TopicDescription_error(topic)),
                            partitions: i32::try_from(partitions.len()).unwrap_or(i32::MAX),
                            replication_factor: i16::try_from(replication_factor)
                                .unwrap_or(i16::MAX),
                        }
                    }
                })
                .collect();
            Ok(described)
        },
    )
    .await
}

fn native_resource_type(resource_type: Option<AclResourceType>) -> rd::rd_kafka_ResourceType_t {
    use rd::rd_kafka_ResourceType_t::*;
    match resource_type {
        None => RD_KAFKA_RESOURCE_ANY,
        Some(AclResourceType::Topic) => RD_KAFKA_RESOURCE_TOPIC,
        Some(AclResourceType::Group) => RD_KAFKA_RESOURCE_GROUP,
        Some(AclResourceType::TransactionalId) => RD_KAFKA_RESOURCE_TRANSACTIONAL_ID,
        // Kafka's ACL resource type 4 is CLUSTER; librdkafka names the same code BROKER.
        Some(AclResourceType::Cluster) => RD_KAFKA_RESOURCE_BROKER,
    }
}

fn native_pattern_type(pattern_type: Option<AclPatternType>) -> rd::rd_kafka_ResourcePatternType_t {
    use rd::rd_kafka_ResourcePatternType_t::*;
    match pattern_type {
        None => RD_KAFKA_RESOURCE_PATTERN_ANY,
        Some(AclPatternType::Literal) => RD_KAFKA_RESOURCE_PATTERN_LITERAL,
        Some(AclPatternType::Prefixed) => RD_KAFKA_RESOURCE_PATTERN_PREFIXED,
    }
}

fn native_operation(operation: Option<AclOperation>) -> rd::rd_kafka_AclOperation_t {
    use rd::rd_kafka_AclOperation_t::*;
    match operation {
        None => RD_KAFKA_ACL_OPERATION_ANY,
        Some(AclOperation::All) => RD_KAFKA_ACL_OPERATION_ALL,
        Some(AclOperation::Read) => RD_KAFKA_ACL_OPERATION_READ,
        Some(AclOperation::Write) => RD_KAFKA_ACL_OPERATION_WRITE,
        Some(AclOperation::Create) => RD_KAFKA_ACL_OPERATION_CREATE,
        Some(AclOperation::Delete) => RD_KAFKA_ACL_OPERATION_DELETE,
        Some(AclOperation::Alter) => RD_KAFKA_ACL_OPERATION_ALTER,
        Some(AclOperation::Describe) => RD_KAFKA_ACL_OPERATION_DESCRIBE,
        Some(AclOperation::ClusterAction) => RD_KAFKA_ACL_OPERATION_CLUSTER_ACTION,
        Some(AclOperation::DescribeConfigs) => RD_KAFKA_ACL_OPERATION_DESCRIBE_CONFIGS,
        Some(AclOperation::AlterConfigs) => RD_KAFKA_ACL_OPERATION_ALTER_CONFIGS,
        Some(AclOperation::IdempotentWrite) => RD_KAFKA_ACL_OPERATION_IDEMPOTENT_WRITE,
    }
}

fn native_permission(permission: Option<AclPermission>) -> rd::rd_kafka_AclPermissionType_t {
    use rd::rd_kafka_AclPermissionType_t::*;
    match permission {
        None => RD_KAFKA_ACL_PERMISSION_TYPE_ANY,
        Some(AclPermission::Allow) => RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW,
        Some(AclPermission::Deny) => RD_KAFKA_ACL_PERMISSION_TYPE_DENY,
    }
}

/// Reads an ACL binding Kafka returned; `None` (logged) for kinds this module does not
/// model, such as ACLs on delegation tokens.
///
/// # Safety
/// `binding` must be a valid binding owned by a live result.
unsafe fn binding_of(binding: *const rd::rd_kafka_AclBinding_t) -> Option<AclBinding> {
    // SAFETY: by this function's contract; strings are copied.
    let (restype, pattern, name, principal, host, operation, permission) = unsafe {
        (
            rd::rd_kafka_AclBinding_restype(binding),
            rd::rd_kafka_AclBinding_resource_pattern_type(binding),
            owned_string(rd::rd_kafka_AclBinding_name(binding)),
            owned_string(rd::rd_kafka_AclBinding_principal(binding)),
            owned_string(rd::rd_kafka_AclBinding_host(binding)),
            rd::rd_kafka_AclBinding_operation(binding),
            rd::rd_kafka_AclBinding_permission_type(binding),
        )
    };
    let resource_type = match restype {
        rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC => Some(AclResourceType::Topic),
        rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_GROUP => Some(AclResourceType::Group),
        rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TRANSACTIONAL_ID => {
            Some(AclResourceType::TransactionalId)
        }
        rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_BROKER => Some(AclResourceType::Cluster),
        _ => None,
    };
    let pattern_type = match pattern {
        rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_LITERAL => {
            Some(AclPatternType::Literal)
        }
        rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_PREFIXED => {
            Some(AclPatternType::Prefixed)
        }
        _ => None,
    };
    let operation = {
        use rd::rd_kafka_AclOperation_t::*;
        match operation {
            RD_KAFKA_ACL_OPERATION_ALL => Some(AclOperation::All),
            RD_KAFKA_ACL_OPERATION_READ => Some(AclOperation::Read),
            RD_KAFKA_ACL_OPERATION_WRITE => Some(AclOperation::Write),
            RD_KAFKA_ACL_OPERATION_CREATE => Some(AclOperation::Create),
            RD_KAFKA_ACL_OPERATION_DELETE => Some(AclOperation::Delete),
            RD_KAFKA_ACL_OPERATION_ALTER => Some(AclOperation::Alter),
            RD_KAFKA_ACL_OPERATION_DESCRIBE => Some(AclOperation::Describe),
            RD_KAFKA_ACL_OPERATION_CLUSTER_ACTION => Some(AclOperation::ClusterAction),
            RD_KAFKA_ACL_OPERATION_DESCRIBE_CONFIGS => Some(AclOperation::DescribeConfigs),
            RD_KAFKA_ACL_OPERATION_ALTER_CONFIGS => Some(AclOperation::AlterConfigs),
            RD_KAFKA_ACL_OPERATION_IDEMPOTENT_WRITE => Some(AclOperation::IdempotentWrite),
            _ => None,
        }
    };
    let permission = match permission {
        rd::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW => {
            Some(AclPermission::Allow)
        }
        rd::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_DENY => {
            Some(AclPermission::Deny)
        }
        _ => None,
    };
    match (
        resource_type,
        pattern_type,
        name,
        principal,
        host,
        operation,
        permission,
    ) {
        (
            Some(resource_type),
            Some(pattern_type),
            Some(resource_name),
            Some(principal),
            Some(host),
            Some(operation),
            Some(permission),
        ) => Some(AclBinding {
            resource_type,
            pattern_type,
            resource_name,
            principal,
            host,
            operation,
            permission,
        }),
        _ => {
            warn!(
                resource_type = ?restype,
                pattern_type = ?pattern,
                operation = ?operation,
                "ignoring an ACL binding of a kind this operator does not manage"
            );
            None
        }
    }
}

/// A native binding or filter (both are `rd_kafka_AclBinding_t`), owned by the guard.
fn native_binding(
    call: &Call<'_>,
    filter: &AclBindingFilter,
    as_filter: bool,
) -> Result<Owned<rd::rd_kafka_AclBinding_t>, KafkaAdminError> {
    let resource = filter.to_string();
    let optional = |text: &Option<String>| {
        text.as_deref()
            .map(|t| call.cstring(&resource, t))
            .transpose()
    };
    let name = optional(&filter.resource_name)?;
    let principal = optional(&filter.principal)?;
    let host = optional(&filter.host)?;
    let ptr_of = |text: &Option<CString>| text.as_ref().map_or(std::ptr::null(), |t| t.as_ptr());
    let mut errstr = ErrBuf::new();
    let constructor = if as_filter {
        rd::rd_kafka_AclBindingFilter_new
    } else {
        rd::rd_kafka_AclBinding_new
    };
    // SAFETY: the strings are NUL-terminated or NULL (meaning any, for filters) and copied;
    // `errstr` is writable for ERRSTR_SIZE bytes; the binding is new and ours.
    unsafe {
        Owned::new(
            constructor(
                native_resource_type(filter.resource_type),
                ptr_of(&name),
                native_pattern_type(filter.pattern_type),
                ptr_of(&principal),
                ptr_of(&host),
                native_operation(filter.operation),
                native_permission(filter.permission),
                errstr.as_mut_ptr(),
                ERRSTR_SIZE,
            ),
            rd::rd_kafka_AclBinding_destroy,
        )
    }
    .ok_or_else(|| KafkaAdminError::invalid_input(call.operation, resource, errstr.message()))
}

/// `CreateAcls`: one outcome per binding, in input order.
pub(super) async fn create_acls(
    client: &SharedClient,
    timeout: Duration,
    bindings: Vec<AclBinding>,
) -> Result<Vec<Option<KafkaFailure>>, KafkaAdminError> {
    run(client, AdminOperation::CreateAcls, timeout, move |call| {
        // A binding librdkafka refuses locally would shift the positional results, so it fails
        // alone here and the others are sent.
        let mut outcomes: Vec<Option<Option<KafkaFailure>>> = Vec::with_capacity(bindings.len());
        let mut owned = Vec::with_capacity(bindings.len());
        for binding in &bindings {
            match native_binding(call, &AclBindingFilter::exact(binding), false) {
                Ok(native) => {
                    owned.push(native);
                    outcomes.push(None);
                }
                Err(err) => outcomes.push(Some(local_failure(err.to_string()))),
            }
        }
        if owned.is_empty() {
            return Ok(outcomes.into_iter().flatten().collect());
        }
        let mut pointers: Vec<*mut rd::rd_kafka_AclBinding_t> =
            owned.iter().map(Owned::as_ptr).collect();
        let options = call.options(rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATEACLS, false)?;
        // SAFETY: `rk`, the queue and `options` are live; `pointers` holds `len` live bindings,
        // which librdkafka copies before returning.
        unsafe {
            rd::rd_kafka_CreateAcls(
                call.rk,
                pointers.as_mut_ptr(),
                pointers.len(),
                options.as_ptr(),
                call.queue.as_ptr(),
            );
        }
        let event = call.wait(rd::RD_KAFKA_EVENT_CREATEACLS_RESULT)?;
        // SAFETY: `event` is live and of the CreateAcls type.
        let result = unsafe { rd::rd_kafka_event_CreateAcls_result(event.as_ptr()) };
        if result.is_null() {
            return Err(call.missing_result());
        }
        let mut count = 0;
        // SAFETY: `result` is live while `event` is; the array belongs to it.
        let results = unsafe {
            result_array(
                &event,
                rd::rd_kafka_CreateAcls_result_acls(result, &mut count).cast_const(),
                count,
            )
        };
        if results.len() != owned.len() {
            return Err(KafkaAdminError::unexpected(
                call.operation,
                format!("{} results for {} bindings", results.len(), owned.len()),
            ));
        }
        // Kafka answers CreateAcls positionally, in request order.
        let mut answers = results.iter().map(|&item| {
            // SAFETY: `item` is an acl_result owned by `event`; the error is copied.
            unsafe { failure_of(rd::rd_kafka_acl_result_error(item)) }
        });
        Ok(outcomes
            .into_iter()
            .map(|outcome| outcome.unwrap_or_else(|| answers.next().flatten()))
            .collect())
    })
    .await
}

/// `DescribeAcls` with one filter.
pub(super) async fn describe_acls(
    client: &SharedClient,
    timeout: Duration,
    filter: AclBindingFilter,
) -> Result<Vec<AclBinding>, KafkaAdminError> {
    run(client, AdminOperation::DescribeAcls, timeout, move |call| {
        let native = native_binding(call, &filter, true)?;
        let options = call.options(
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBEACLS,
            false,
        )?;
        // SAFETY: `rk`, the queue, `options` and the filter are live; librdkafka copies the
        // filter before returning.
        unsafe {
            rd::rd_kafka_DescribeAcls(
                call.rk,
                native.as_ptr(),
                options.as_ptr(),
                call.queue.as_ptr(),
            );
        }
        let event = call.wait(rd::RD_KAFKA_EVENT_DESCRIBEACLS_RESULT)?;
        // SAFETY: `event` is live and of the DescribeAcls type.
        let result = unsafe { rd::rd_kafka_event_DescribeAcls_result(event.as_ptr()) };
        if result.is_null() {
            return Err(call.missing_result());
        }
        let mut count = 0;
        // SAFETY: `result` is live while `event` is; the array belongs to it.
        let bindings = unsafe {
            result_array(
                &event,
                rd::rd_kafka_DescribeAcls_result_acls(result, &mut count).cast_const(),
                count,
            )
        };
        Ok(bindings
            .iter()
            // SAFETY: each element is a binding owned by `event`.
            .filter_map(|&binding| unsafe { binding_of(binding) })
            .collect())
    })
    .await
}

/// `DeleteAcls`: per filter, the bindings deleted or the failure, in input order.
pub(super) async fn delete_acls(
    client: &SharedClient,
    timeout: Duration,
    filters: Vec<AclBindingFilter>,
) -> Result<Vec<Result<Vec<AclBinding>, KafkaFailure>>, KafkaAdminError> {
    run(client, AdminOperation::DeleteAcls, timeout, move |call| {
        let mut outcomes: Vec<Option<Result<Vec<AclBinding>, KafkaFailure>>> =
            Vec::with_capacity(filters.len());
        let mut owned = Vec::with_capacity(filters.len());
        for filter in &filters {
            match native_binding(call, filter, true) {
                Ok(native) => {
                    owned.push(native);
                    outcomes.push(None);
                }
                Err(err) => outcomes.push(Some(Err(KafkaFailure {
                    code: RDKafkaErrorCode::InvalidArgument,
                    message: err.to_string(),
                }))),
            }
        }
        if owned.is_empty() {
            return Ok(outcomes.into_iter().flatten().collect());
        }
        let mut pointers: Vec<*mut rd::rd_kafka_AclBindingFilter_t> =
            owned.iter().map(Owned::as_ptr).collect();
        let options = call.options(rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DELETEACLS, false)?;
        // SAFETY: `rk`, the queue and `options` are live; `pointers` holds `len` live filters,
        // which librdkafka copies before returning.
        unsafe {
            rd::rd_kafka_DeleteAcls(
                call.rk,
                pointers.as_mut_ptr(),
                pointers.len(),
                options.as_ptr(),
                call.queue.as_ptr(),
            );
        }
        let event = call.wait(rd::RD_KAFKA_EVENT_DELETEACLS_RESULT)?;
        // SAFETY: `event` is live and of the DeleteAcls type.
        let result = unsafe { rd::rd_kafka_event_DeleteAcls_result(event.as_ptr()) };
        if result.is_null() {
            return Err(call.missing_result());
        }
        let mut count = 0;
        // SAFETY: `result` is live while `event` is; the array belongs to it.
        let responses = unsafe {
            result_array(
                &event,
                rd::rd_kafka_DeleteAcls_result_responses(result, &mut count).cast_const(),
                count,
            )
        };
        if responses.len() != owned.len() {
            return Err(KafkaAdminError::unexpected(
                call.operation,
                format!("{} responses for {} filters", responses.len(), owned.len()),
            ));
        }
        // Kafka answers DeleteAcls positionally, in request order.
        let mut answers = responses.iter().map(|&response| {
            // SAFETY: `response` is owned by `event`; the error is copied.
            if let Some(failure) =
                unsafe { failure_of(rd::rd_kafka_DeleteAcls_result_response_error(response)) }
            {
                return Err(failure);
            }
            let mut matching = 0;
            // SAFETY: `response` is owned by `event`; its bindings array belongs to it too.
            let deleted = unsafe {
                result_array(
                    &event,
                    rd::rd_kafka_DeleteAcls_result_response_matching_acls(response, &mut matching)
                        .cast_const(),
                    matching,
                )
            };
            // SAFETY: each element is a binding owned by `event`.
            Ok(deleted
                .iter()
                .filter_map(|&binding| unsafe { binding_of(binding) })
                .collect())
        });
        Ok(outcomes
            .into_iter()
            .map(|outcome| {
                outcome.unwrap_or_else(|| {
                    answers.next().unwrap_or_else(|| {
                        Err(KafkaFailure {
                            code: RDKafkaErrorCode::Fail,
                            message: "no response for this filter".into(),
                        })
                    })
                })
            })
            .collect())
    })
    .await
}

/// `AlterUserScramCredentials` (upsertions and deletions, each of its own mechanism).
///
/// For an upsertion librdkafka draws a 64-byte salt from OpenSSL's `RAND_priv_bytes` (we pass
/// no salt) and sends only the salted password.
pub(super) async fn alter_scram_credentials(
    client: &SharedClient,
    operation: AdminOperation,
    timeout: Duration,
    alterations: Vec<ScramAlteration>,
) -> Result<Vec<NamedResult>, KafkaAdminError> {
    run(client, operation, timeout, move |call| {
        let mut owned = Vec::with_capacity(alterations.len());
        for alteration in &alterations {
            let user = call.cstring(
                &super::batch::user_resource(alteration.user()),
                alteration.user(),
            )?;
            let mechanism = alteration.mechanism();
            let native = match alteration {
                // SAFETY: `user` is NUL-terminated; the password is passed as `len` bytes from a
                // live String; salt NULL/0 asks librdkafka for a random salt; everything is
                // copied, and the alteration is new and ours.
                ScramAlteration::Upsert(upsert) => unsafe {
                    rd::rd_kafka_UserScramCredentialUpsertion_new(
                        user.as_ptr(),
                        mechanism,
                        upsert.iterations,
                        upsert.password.as_ptr(),
                        upsert.password.len(),
                        std::ptr::null(),
                        0,
                    )
                },
                // SAFETY: `user` is NUL-terminated and copied; the alteration is new and ours.
                ScramAlteration::Delete(..) => unsafe {
                    rd::rd_kafka_UserScramCredentialDeletion_new(user.as_ptr(), mechanism)
                },
            };
            // SAFETY: `native` is NULL or a new alteration that we own.
            let native =
                unsafe { Owned::new(native, rd::rd_kafka_UserScramCredentialAlteration_destroy) }
                    .ok_or_else(|| {
                    KafkaAdminError::unexpected(
                        call.operation,
                        "librdkafka could not allocate a SCRAM alteration",
                    )
                })?;
            owned.push(native);
        }
        let mut pointers: Vec<*mut rd::rd_kafka_UserScramCredentialAlteration_t> =
            owned.iter().map(Owned::as_ptr).collect();
        let options = call.options(
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_ALTERUSERSCRAMCREDENTIALS,
            false,
        )?;
        // SAFETY: `rk`, the queue and `options` are live; `pointers` holds `len` live
        // alterations, which librdkafka copies before returning.
        unsafe {
            rd::rd_kafka_AlterUserScramCredentials(
                call.rk,
                pointers.as_mut_ptr(),
                pointers.len(),
                options.as_ptr(),
                call.queue.as_ptr(),
            );
        }
        let event = call.wait(rd::RD_KAFKA_EVENT_ALTERUSERSCRAMCREDENTIALS_RESULT)?;
        // SAFETY: `event` is live and of the AlterUserScramCredentials type.
        let result = unsafe { rd::rd_kafka_event_AlterUserScramCredentials_result(event.as_ptr()) };
        if result.is_null() {
            return Err(call.missing_result());
        }
        let mut count = 0;
        // SAFETY: `result` is live while `event` is; the array belongs to it.
        let responses = unsafe {
            result_array(
                &event,
                rd::rd_kafka_AlterUserScramCredentials_result_responses(result, &mut count)
                    .cast_const(),
                count,
            )
        };
        Ok(responses
            .iter()
            .map(|&response| {
                // SAFETY: `response` is owned by `event`; the user and error are copied.
                unsafe {
                    NamedResult {
                        name: owned_string(
                            rd::rd_kafka_AlterUserScramCredentials_result_response_user(response),
                        )
                        .unwrap_or_default(),
                        failure: failure_of(
                            rd::rd_kafka_AlterUserScramCredentials_result_response_error(response),
                        ),
                    }
                }
            })
            .collect())
    })
    .await
}

/// `DescribeUserScramCredentials`; an empty `users` describes every user.
pub(super) async fn describe_scram_credentials(
    client: &SharedClient,
    timeout: Duration,
    users: Vec<String>,
) -> Result<Vec<DescribedUser>, KafkaAdminError> {
    run(client, AdminOperation::DescribeScramCredentials, timeout, move |call| {
        let users_c = users
            .iter()
            .map(|user| call.cstring(&super::batch::user_resource(user), user))
            .collect::<Result<Vec<_>, _>>()?;
        let mut pointers: Vec<*const c_char> = users_c.iter().map(|user| user.as_ptr()).collect();
        let options = call.options(rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBEUSERSCRAMCREDENTIALS, false)?;
        // SAFETY: `rk`, the queue and `options` are live; `pointers` holds `len` NUL-terminated
        // names (none: describe all), which librdkafka copies before returning.
        unsafe {
            rd::rd_kafka_DescribeUserScramCredentials(
                call.rk,
                pointers.as_mut_ptr(),
                pointers.len(),
                options.as_ptr(),
                call.queue.as_ptr(),
            );
        }
        let event = call.wait(rd::RD_KAFKA_EVENT_DESCRIBEUSERSCRAMCREDENTIALS_RESULT)?;
        // SAFETY: `event` is live and of the DescribeUserScramCredentials type.
        let result = unsafe { rd::rd_kafka_event_DescribeUserScramCredentials_result(event.as_ptr()) };
        if result.is_null() {
            return Err(call.missing_result());
        }
        let mut count = 0;
        // SAFETY: `result` is live while `event` is; the array belongs to it.
        let descriptions = unsafe {
            result_array(
                &event,
                rd::rd_kafka_DescribeUserScramCredentials_result_descriptions(result, &mut count).cast_const(),
                count,
            )
        };
        Ok(descriptions
            .iter()
            .map(|&description| {
                // SAFETY: `description` is owned by `event`; its infos are too; everything is copied.
                unsafe {
                    let infos = rd::rd_kafka_UserScramCredentialsDescription_scramcredentialinfo_count(description);
                    let credentials = (0..infos)
                        .map(|index| rd::rd_kafka_UserScramCredentialsDescription_scramcredentialinfo(description, index))
                        .filter(|info| !info.is_null())
                        .filter_map(|info| {
                            let mechanism = match rd::rd_kafka_ScramCredentialInfo_mechanism(info) {
                                rd::rd_kafka_ScramMechanism_t::RD_KAFKA_SCRAM_MECHANISM_SHA_256 => ScramMechanism::Sha256,
                                rd::rd_kafka_ScramMechanism_t::RD_KAFKA_SCRAM_MECHANISM_SHA_512 => ScramMechanism::Sha512,
                                _ => return None,
                            };
                            Some(ScramCredentialInfo {
                                mechanism,
                                iterations: rd::rd_kafka_ScramCredentialInfo_iterations(info),
                            })
                        })
                        .collect();
                    DescribedUser {
                        user: owned_string(rd::rd_kafka_UserScramCredentialsDescription_user(description))
                            .unwrap_or_default(),
                        failure: failure_of(rd::rd_kafka_UserScramCredentialsDescription_error(description)),
                        credentials,
                    }
                }
            })
            .collect())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errbuf_reads_a_message_and_survives_a_full_buffer() {
        let mut buf = ErrBuf::new();
        assert_eq!(buf.message(), "");
        for (slot, byte) in buf.0.iter_mut().zip(b"bad value\0") {
            *slot = *byte as c_char;
        }
        assert_eq!(buf.message(), "bad value");
        let full = ErrBuf([b'x' as c_char; ERRSTR_SIZE]);
        assert_eq!(full.message().len(), ERRSTR_SIZE);
    }

    #[test]
    fn error_codes_convert_with_their_names() {
        let code: RDKafkaErrorCode =
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS.into();
        assert_eq!(code, RDKafkaErrorCode::TopicAlreadyExists);
        assert!(
            !code_text(rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS).is_empty()
        );
    }

    #[test]
    fn millis_saturates() {
        assert_eq!(millis(Duration::from_millis(1500)), 1500);
        assert_eq!(millis(Duration::from_secs(u64::MAX)), c_int::MAX);
    }

    #[test]
    fn acl_enums_map_to_kafka_codes() {
        // Kafka's wire codes: CLUSTER is 4, TRANSACTIONAL_ID 5; IDEMPOTENT_WRITE is 12.
        assert_eq!(
            native_resource_type(Some(AclResourceType::Cluster)) as u32,
            4
        );
        assert_eq!(
            native_resource_type(Some(AclResourceType::TransactionalId)) as u32,
            5
        );
        assert_eq!(
            native_operation(Some(AclOperation::IdempotentWrite)) as u32,
            12
        );
        assert_eq!(native_permission(None) as u32, 1);
        assert_eq!(
            native_pattern_type(Some(AclPatternType::Prefixed)) as u32,
            4
        );
    }
}
