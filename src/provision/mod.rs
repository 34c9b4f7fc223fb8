//! The I/O edge: one module per external system, each behind a small trait so that
//! the reconcilers' decisions can be unit-tested against in-process fakes.

pub mod kafka;
pub mod storage;
