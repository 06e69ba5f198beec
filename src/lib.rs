//! crossover: a Kubernetes operator that runs vLLM pools, sizes them to the load they observe and
//! prices them against the hosted-API bill for the same tokens.
//!
//! Layout: `api` (the CRD types), `controller` (reconcile pipeline), `load` (reading vLLM),
//! `cli` and `telemetry` at the edges.
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod controller;
pub mod load;
pub mod telemetry;
pub mod vllmsim;
