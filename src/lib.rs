//! datamesh-operator: a Kubernetes operator that turns a data mesh into declared,
//! continuously reconciled state (Kafka topics and ACLs, buckets and IAM access,
//! Spark jobs, namespaces and RBAC).

pub mod api;
pub mod catalog;
pub mod config;
pub mod contracts;
pub mod controller;
pub mod export;
pub mod governance;
pub mod http;
pub mod jitter;
pub mod metrics;
pub mod provision;
pub mod runner;
pub mod secret;
pub mod telemetry;
pub mod truststore;
