//! Behaviour proven against the real control plane (kube-apiserver, controller manager,
//! scheduler, kwok GPU nodes) that `make test` starts. Each test has its own namespace and its own
//! operator process, so they run in parallel.

mod children;
mod fleet;
mod harness;
mod helm;
mod hostile;
mod image;
mod load;
mod money;
mod monitoring;
mod ops;
mod pools;
mod prometheus;
mod sim;
mod sources;
