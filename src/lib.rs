//! crossover: a Kubernetes operator that runs vLLM pools, sizes them to the load they observe and
//! prices them against the hosted-API bill for the same tokens.
//!
//! Layout: `api` (the CRD types), `controller` (reconcile pipeline), `load` (reading vLLM),
//! `cli`, `ops` (health, readiness, metrics) and `telemetry` at the edges.
#![forbid(unsafe_code)]

pub mod api;
pub mod catalog;
pub mod cli;
pub mod controller;
pub mod cost;
pub mod format;
pub mod load;
pub mod ops;
pub mod plan;
pub mod provisioning;
pub mod sim;
pub mod sizing;
pub mod telemetry;
pub mod vllmsim;
