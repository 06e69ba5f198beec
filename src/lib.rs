//! crossover: a Kubernetes operator that runs vLLM pools, sizes them to the load they observe and
//! prices them against the hosted-API bill for the same tokens.
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod load;
pub mod sim;
pub mod sizing;
