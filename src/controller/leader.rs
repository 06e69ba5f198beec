//! Leader election on a `coordination.k8s.io/v1` Lease, so that only one operator replica writes.
//! The decision ([`claim`]) is pure; [`acquire`], [`hold`] and [`release`] are the IO around it.
//! Writes use `replace` with the Lease's resourceVersion: two candidates racing for an expired
//! lease cannot both win, the loser gets a conflict and reads again.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use tracing::{info, warn};

/// Which Lease, who we are, and how long a claim lasts.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// Unique per replica: the pod name in a cluster.
    pub identity: String,
    /// A holder that has not renewed for this long has lost the lease.
    pub duration: Duration,
}

impl LeaseConfig {
    /// Renew three times per lease duration, as client-go does.
    pub fn renew_every(&self) -> Duration {
        self.duration / 3
    }
}

/// What a candidate should do about the lease as it stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// Nobody holds it, or the holder let it expire: take it (a new leader).
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds it until `until`.
    Wait {
        holder: String,
        until: DateTime<Utc>,
    },
}

/// Decides from the lease's spec (None: no Lease yet) what `identity` should do at `now`.
pub fn claim(spec: Option<&LeaseSpec>, identity: &str, now: DateTime<Utc>) -> Claim {
    let Some(spec) = spec else {
        return Claim::Acquire;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() {
        return Claim::Acquire;
    }
    if holder == identity {
        return Claim::Renew;
    }
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(from_micro);
    let duration = TimeDelta::seconds(spec.lease_duration_seconds.unwrap_or(0).max(0) as i64);
    match renewed {
        Some(at) if at + duration > now => Claim::Wait {
            holder: holder.to_string(),
            until: at + duration,
        },
        _ => Claim::Acquire,
    }
}

/// The spec a claim writes: `previous` renewed by us, or taken over (a new acquire time and one
/// more transition).
pub fn claimed(previous: Option<&LeaseSpec>, cfg: &LeaseConfig, now: DateTime<Utc>) -> LeaseSpec {
    let ours = previous.and_then(|p| p.holder_identity.as_deref()) == Some(cfg.identity.as_str());
    let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(cfg.duration.as_secs().max(1) as i32),
        acquire_time: if ours {
            previous.and_then(|p| p.acquire_time.clone())
        } else {
            Some(to_micro(now))
        },
        renew_time: Some(to_micro(now)),
        lease_transitions: Some(if ours || previous.is_none() {
            transitions
        } else {
            transitions + 1
        }),
        ..Default::default()
    }
}

fn to_micro(t: DateTime<Utc>) -> MicroTime {
    MicroTime(
        k8s_openapi::jiff::Timestamp::from_microsecond(t.timestamp_micros())
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

fn from_micro(t: &MicroTime) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.0.as_microsecond()).unwrap_or_default()
}

/// Tries once to acquire or renew: Ok(None) when we hold the lease afterwards, else who does (as
/// far as we saw).
async fn try_claim(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<Option<String>, kube::Error> {
    let now = Utc::now();
    let current = api.get_opt(&cfg.name).await?;
    let spec = current.as_ref().and_then(|l| l.spec.as_ref());
    match claim(spec, &cfg.identity, now) {
        Claim::Wait { holder, .. } => Ok(Some(holder)),
        Claim::Acquire | Claim::Renew => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    resource_version: current
                        .as_ref()
                        .and_then(|l| l.metadata.resource_version.clone()),
                    ..Default::default()
                },
                spec: Some(claimed(spec, cfg, now)),
            };
            let written = match current {
                None => api.create(&PostParams::default(), &lease).await,
                Some(_) => api.replace(&cfg.name, &PostParams::default(), &lease).await,
            };
            match written {
                Ok(_) => Ok(None),
                // Another candidate wrote first (conflict) or created it first (already exists).
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    Ok(Some("another candidate".to_string()))
                }
                Err(e) => Err(e),
            }
        }
    }
}

/// Waits until this replica holds the lease.
pub async fn acquire(api: &Api<Lease>, cfg: &LeaseConfig) {
    let mut announced = false;
    loop {
        match try_claim(api, cfg).await {
            Ok(None) => {
                info!(lease = %cfg.name, identity = %cfg.identity, "leading: this replica writes");
                return;
            }
            Ok(Some(holder)) if !announced => {
                info!(lease = %cfg.name, %holder, "standing by: another replica leads");
                announced = true;
            }
            Ok(Some(_)) => {}
            Err(e) => warn!(lease = %cfg.name, error = %e, "cannot read or write the lease"),
        }
        tokio::time::sleep(cfg.renew_every()).await;
    }
}

/// Renews the lease until it is lost; returns why. Renewals that fail for a transient reason are
/// retried until the lease would have expired.
pub async fn hold(api: &Api<Lease>, cfg: &LeaseConfig) -> String {
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(cfg.renew_every()).await;
        match try_claim(api, cfg).await {
            Ok(None) => last_renewal = tokio::time::Instant::now(),
            Ok(Some(holder)) => return format!("{holder} took the lease"),
            Err(e) if last_renewal.elapsed() >= cfg.duration => {
                return format!("could not renew the lease for {:?}: {e}", cfg.duration);
            }
            Err(e) => warn!(lease = %cfg.name, error = %e, "lease renewal failed; retrying"),
        }
    }
}

/// Gives the lease up on a clean shutdown so a standby takes over at once, not after it expires.
pub async fn release(api: &Api<Lease>, cfg: &LeaseConfig) {
    let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => info!(lease = %cfg.name, "released the lease"),
        Err(e) => warn!(lease = %cfg.name, error = %e, "could not release the lease"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn held_by(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(to_micro(t(-100))),
            renew_time: Some(to_micro(t(renewed))),
            lease_transitions: Some(2),
            ..Default::default()
        }
    }

    fn cfg(identity: &str) -> LeaseConfig {
        LeaseConfig {
            namespace: "ns".into(),
            name: "crossover-leader".into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
        }
    }

    #[test]
    fn claims() {
        assert_eq!(claim(None, "a", t(0)), Claim::Acquire);
        assert_eq!(claim(Some(&held_by("a", -5)), "a", t(0)), Claim::Renew);
        assert_eq!(
            claim(Some(&held_by("b", -5)), "a", t(0)),
            Claim::Wait {
                holder: "b".into(),
                until: t(10)
            }
        );
        // Not renewed for the whole duration: expired.
        assert_eq!(claim(Some(&held_by("b", -15)), "a", t(0)), Claim::Acquire);
        // Released (no holder).
        let mut released = held_by("b", -1);
        released.holder_identity = None;
        assert_eq!(claim(Some(&released), "a", t(0)), Claim::Acquire);
    }

    #[test]
    fn a_takeover_counts_a_transition_and_a_renewal_does_not() {
        let renewed = claimed(Some(&held_by("a", -5)), &cfg("a"), t(0));
        assert_eq!(renewed.lease_transitions, Some(2));
        assert_eq!(renewed.acquire_time, Some(to_micro(t(-100))));
        assert_eq!(renewed.renew_time, Some(to_micro(t(0))));

        let taken = claimed(Some(&held_by("b", -30)), &cfg("a"), t(0));
        assert_eq!(taken.holder_identity.as_deref(), Some("a"));
        assert_eq!(taken.lease_transitions, Some(3));
        assert_eq!(taken.acquire_time, Some(to_micro(t(0))));
        assert_eq!(taken.lease_duration_seconds, Some(15));

        let first = claimed(None, &cfg("a"), t(0));
        assert_eq!(first.lease_transitions, Some(0));
    }
}
