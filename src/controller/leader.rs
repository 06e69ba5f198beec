//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's guarantees, so that only
//! one operator replica writes at a time:
//! - a standby judges expiry on its own monotonic clock, from when it last *saw the Lease change*,
//!   never by comparing the holder's timestamps with its own wall clock (no clock-skew steal);
//! - the leader may write until `renew_deadline` after it *sent* its last successful renewal, which
//!   is shorter than the `duration` a standby waits after seeing that renewal land, so their
//!   windows cannot overlap while both clocks tick at the same rate;
//! - every call has a timeout within that window, and a renewal whose answer was lost is
//!   recognised when the Lease is read back, so a write the server applied never reads as a
//!   takeover (no spurious loss on a 409).
//!
//! The decisions ([`observe`], [`claim`], [`claimed`], [`confirms`]) are pure and tested here;
//! [`Elector`] is the IO around them and [`Leadership`] is what the write gate reads.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use tracing::{debug, info, warn};

/// Which Lease, who we are, and the three durations of client-go's election.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// Unique per replica: the pod name in a cluster.
    pub identity: String,
    /// How long a standby waits after it last saw the Lease change before taking it over.
    pub duration: Duration,
    /// How long after sending its last successful renewal the leader may still write.
    pub renew_deadline: Duration,
    /// Between two attempts to renew (leader) or acquire (standby).
    pub retry_period: Duration,
}

/// Standbys wait `retry_period` plus up to this share of it between attempts, so candidates that
/// started together do not poll in lock-step.
const STANDBY_JITTER: f64 = 0.2;

impl LeaseConfig {
    /// client-go's rules: duration > renew deadline > retry period (with its 1.2 jitter factor).
    pub fn check(&self) -> Result<(), String> {
        if self.retry_period.is_zero() {
            return Err("the lease retry period must be above zero".into());
        }
        if self.renew_deadline.as_secs_f64() <= self.retry_period.as_secs_f64() * 1.2 {
            return Err(format!(
                "the lease renew deadline ({:?}) must be longer than 1.2 times the retry period ({:?}): the leader needs more than one try before it stops",
                self.renew_deadline, self.retry_period
            ));
        }
        if self.duration <= self.renew_deadline {
            return Err(format!(
                "the lease duration ({:?}) must be longer than the renew deadline ({:?}): a standby may take over once the duration has passed, so the leader must have stopped writing before",
                self.duration, self.renew_deadline
            ));
        }
        Ok(())
    }
}

/// The Lease as this replica last read it, and when (on the local monotonic clock) it last saw it
/// change. Expiry is judged from `changed_at` alone.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// Whether the Lease object exists.
    pub exists: bool,
    pub spec: Option<LeaseSpec>,
    pub resource_version: Option<String>,
    pub changed_at: Instant,
}

impl Observed {
    fn holder(&self) -> &str {
        self.spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            .unwrap_or("")
    }
}

/// Folds a fresh read of the Lease (None: it does not exist) into what was seen before: the change
/// time moves only when the record differs.
pub fn observe(prev: Option<&Observed>, lease: Option<&Lease>, now: Instant) -> Observed {
    let exists = lease.is_some();
    let spec = lease.and_then(|l| l.spec.clone());
    let changed_at = match prev {
        Some(p) if p.exists == exists && p.spec == spec => p.changed_at,
        _ => now,
    };
    Observed {
        exists,
        spec,
        resource_version: lease.and_then(|l| l.metadata.resource_version.clone()),
        changed_at,
    }
}

/// What a candidate should do about the lease as it stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// Nobody holds it, or the holder has not renewed it for a whole lease duration: take it.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds it; it expires in `expires_in` unless it changes again.
    Wait {
        holder: String,
        expires_in: Duration,
    },
}

/// Decides what `identity` should do at `now`, from what it has observed of the Lease. A holder
/// expires `leaseDurationSeconds` (its own record's) after we last saw the record change.
pub fn claim(observed: &Observed, identity: &str, now: Instant) -> Claim {
    let holder = observed.holder();
    if holder.is_empty() {
        return Claim::Acquire;
    }
    if holder == identity {
        return Claim::Renew;
    }
    let seconds = observed
        .spec
        .as_ref()
        .and_then(|s| s.lease_duration_seconds)
        .unwrap_or(0)
        .max(0);
    let expires = observed.changed_at + Duration::from_secs(seconds as u64);
    match expires.checked_duration_since(now) {
        Some(left) if !left.is_zero() => Claim::Wait {
            holder: holder.to_string(),
            expires_in: left,
        },
        _ => Claim::Acquire,
    }
}

/// The spec a claim writes: `previous` renewed by us, or taken over (a new acquire time and one
/// more transition). The wall-clock times are for people and other tools; no decision reads them.
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

/// The spec that gives the lease up: no holder, so a standby takes it at its next attempt.
pub fn released(previous: &LeaseSpec, now: DateTime<Utc>) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        renew_time: Some(to_micro(now)),
        ..previous.clone()
    }
}

/// A write whose answer never came (a timeout, a dropped connection, a 5xx): the renew time it
/// carried and when it was sent. The server may or may not have applied it.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    pub renew_time: Option<MicroTime>,
    pub sent_at: Instant,
}

/// Whether the Lease as read shows that `pending` landed: our identity with its renew time. No one
/// else writes our identity, and the renew time has microseconds, so this is that very write.
pub fn confirms(pending: &Pending, spec: Option<&LeaseSpec>, identity: &str) -> bool {
    spec.is_some_and(|s| {
        s.holder_identity.as_deref() == Some(identity)
            && pending.renew_time.is_some()
            && s.renew_time == pending.renew_time
    })
}

fn to_micro(t: DateTime<Utc>) -> MicroTime {
    MicroTime(
        k8s_openapi::jiff::Timestamp::from_microsecond(t.timestamp_micros())
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

/// Until when this replica may write: the send time of its last successful renewal plus the renew
/// deadline. The elector extends it; the write gate ([`super::gate`]) reads it before every write.
/// It closes by itself when time passes: a leader frozen (SIGSTOP, a long GC-like stall) finds its
/// writes refused the moment it runs again, before its renewal loop has noticed anything.
#[derive(Clone, Debug, Default)]
pub struct Leadership(Arc<Mutex<Option<Instant>>>);

impl Leadership {
    /// How long this replica may still write, None when it may not.
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        let until = (*self.lock())?;
        until.checked_duration_since(now).filter(|d| !d.is_zero())
    }

    pub(crate) fn extend(&self, until: Instant) {
        let mut guard = self.lock();
        if guard.is_none_or(|u| u < until) {
            *guard = Some(until);
        }
    }

    fn end(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why one call about the Lease failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("the lease {0} did not answer in time")]
    Timeout(&'static str),
    #[error("the lease {what} failed: {source}")]
    Api {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
}

/// What one attempt found.
#[derive(Debug, PartialEq)]
enum Attempt {
    /// We hold the lease, renewed by a write sent at this instant.
    Leading { renewed_at: Instant },
    /// Someone else holds it and it has not expired.
    Standby { holder: String },
    /// Our write lost a race (409): read again at the next attempt.
    Contended,
}

/// One replica's side of the election: what it has seen of the Lease, and its leadership.
pub struct Elector {
    api: Api<Lease>,
    cfg: LeaseConfig,
    observed: Option<Observed>,
    pending: Option<Pending>,
    leadership: Leadership,
}

impl Elector {
    /// `api` should come from a client without kube's built-in retries: a renewal retried after a
    /// lost answer would be refused by its own first attempt's new resourceVersion.
    pub fn new(api: Api<Lease>, cfg: LeaseConfig) -> Self {
        Self {
            api,
            cfg,
            observed: None,
            pending: None,
            leadership: Leadership::default(),
        }
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.cfg
    }

    /// The validity that the write gate reads.
    pub fn leadership(&self) -> Leadership {
        self.leadership.clone()
    }

    fn leading(&self) -> bool {
        self.leadership.remaining(Instant::now()).is_some()
    }

    /// Waits until this replica leads.
    pub async fn acquire(&mut self) {
        let mut announced: Option<String> = None;
        loop {
            match self.attempt(self.cfg.renew_deadline).await {
                Ok(Attempt::Leading { renewed_at }) => {
                    self.leadership.extend(renewed_at + self.cfg.renew_deadline);
                    info!(lease = %self.cfg.name, identity = %self.cfg.identity, "leading: this replica writes");
                    return;
                }
                Ok(Attempt::Standby { holder }) => {
                    if announced.as_deref() != Some(holder.as_str()) {
                        info!(lease = %self.cfg.name, %holder, "standing by: another replica leads");
                        announced = Some(holder);
                    }
                }
                Ok(Attempt::Contended) => {
                    debug!(lease = %self.cfg.name, "another candidate wrote the lease first")
                }
                Err(e) => {
                    warn!(lease = %self.cfg.name, error = %e, "cannot read or write the lease")
                }
            }
            let jitter = 1.0 + STANDBY_JITTER * super::random_fraction();
            tokio::time::sleep(self.cfg.retry_period.mul_f64(jitter)).await;
        }
    }

    /// Renews the lease every retry period until it is lost, and returns why. Leadership ends at
    /// the renew deadline whatever this loop is doing: the write gate closes on its own.
    pub async fn hold(&mut self) -> String {
        loop {
            let Some(left) = self.leadership.remaining(Instant::now()) else {
                return self.deadline_passed();
            };
            tokio::time::sleep(self.cfg.retry_period.min(left)).await;
            let Some(left) = self.leadership.remaining(Instant::now()) else {
                return self.deadline_passed();
            };
            match self.attempt(left).await {
                Ok(Attempt::Leading { renewed_at }) => {
                    self.leadership.extend(renewed_at + self.cfg.renew_deadline)
                }
                Ok(Attempt::Standby { holder }) => {
                    self.leadership.end();
                    return format!("{holder} holds the lease now");
                }
                Ok(Attempt::Contended) => {
                    warn!(lease = %self.cfg.name, "lease renewal conflicted; reading it again")
                }
                Err(e) => {
                    warn!(lease = %self.cfg.name, error = %e, "lease renewal failed; retrying until the renew deadline")
                }
            }
        }
    }

    fn deadline_passed(&self) -> String {
        self.leadership.end();
        format!(
            "no renewal succeeded within the renew deadline ({:?})",
            self.cfg.renew_deadline
        )
    }

    /// Gives the lease up on a clean shutdown so a standby takes over at once, not after it expires.
    pub async fn release(&mut self) {
        self.leadership.end();
        let limit = self.cfg.renew_deadline;
        let deadline = Instant::now() + limit;
        let lease = match timed(deadline, "read", self.api.get_opt(&self.cfg.name)).await {
            Ok(Some(lease)) => lease,
            Ok(None) => return,
            Err(e) => {
                warn!(lease = %self.cfg.name, error = %e, "could not release the lease");
                return;
            }
        };
        let Some(spec) = lease.spec.as_ref() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return;
        }
        let mut given_up = lease.clone();
        given_up.spec = Some(released(spec, Utc::now()));
        let params = PostParams::default();
        let write = self.api.replace(&self.cfg.name, &params, &given_up);
        match timed(deadline, "release", write).await {
            Ok(_) => info!(lease = %self.cfg.name, "released the lease"),
            Err(e) => warn!(lease = %self.cfg.name, error = %e, "could not release the lease"),
        }
    }

    /// One try to acquire or renew, all of it within `limit`.
    async fn attempt(&mut self, limit: Duration) -> Result<Attempt, LeaseError> {
        let deadline = Instant::now() + limit;
        // The leader first writes over the version it last saw, without reading (client-go's fast
        // path): one call per renewal instead of two.
        if self.leading()
            && let Some(seen) = self.observed.clone()
            && seen.exists
            && seen.holder() == self.cfg.identity
        {
            match self.write(&seen, deadline).await {
                Ok(Some(renewed_at)) => return Ok(Attempt::Leading { renewed_at }),
                Ok(None) => {
                    debug!(lease = %self.cfg.name, "the lease changed since we last saw it")
                }
                Err(e) => {
                    debug!(lease = %self.cfg.name, error = %e, "renewal failed; reading the lease")
                }
            }
        }
        let lease = timed(deadline, "read", self.api.get_opt(&self.cfg.name)).await?;
        let now = Instant::now();
        let seen = observe(self.observed.as_ref(), lease.as_ref(), now);
        self.observed = Some(seen.clone());
        // A write whose answer was lost either shows now or never landed.
        if let Some(p) = self.pending.take()
            && confirms(&p, seen.spec.as_ref(), &self.cfg.identity)
        {
            return Ok(Attempt::Leading {
                renewed_at: p.sent_at,
            });
        }
        match claim(&seen, &self.cfg.identity, now) {
            Claim::Wait { holder, .. } => Ok(Attempt::Standby { holder }),
            Claim::Acquire | Claim::Renew => Ok(match self.write(&seen, deadline).await? {
                Some(renewed_at) => Attempt::Leading { renewed_at },
                None => Attempt::Contended,
            }),
        }
    }

    /// Writes our claim over `seen` (create when there is no Lease). Some(send time) when the
    /// server took it; None on a conflict, which is definite: the server did not apply it.
    async fn write(
        &mut self,
        seen: &Observed,
        deadline: Instant,
    ) -> Result<Option<Instant>, LeaseError> {
        let spec = claimed(seen.spec.as_ref(), &self.cfg, Utc::now());
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.cfg.name.clone()),
                namespace: Some(self.cfg.namespace.clone()),
                resource_version: seen.resource_version.clone(),
                ..Default::default()
            },
            spec: Some(spec.clone()),
        };
        let sent_at = Instant::now();
        self.pending = Some(Pending {
            renew_time: spec.renew_time.clone(),
            sent_at,
        });
        let params = PostParams::default();
        let written = if seen.exists {
            let call = self.api.replace(&self.cfg.name, &params, &lease);
            timed(deadline, "renewal", call).await
        } else {
            timed(deadline, "creation", self.api.create(&params, &lease)).await
        };
        match written {
            Ok(lease) => {
                self.pending = None;
                self.observed = Some(observe(Some(seen), Some(&lease), Instant::now()));
                Ok(Some(sent_at))
            }
            Err(LeaseError::Api {
                source: kube::Error::Api(e),
                ..
            }) if e.code == 409 => {
                self.pending = None;
                Ok(None)
            }
            // A timeout or a 5xx: the write may still have landed; `pending` remembers it.
            Err(e) => Err(e),
        }
    }
}

/// Runs `call` until `deadline`.
async fn timed<T>(
    deadline: Instant,
    what: &'static str,
    call: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, LeaseError> {
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(LeaseError::Api { what, source }),
        Err(_) => Err(LeaseError::Timeout(what)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wall(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn held_by(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(to_micro(wall(-100))),
            renew_time: Some(to_micro(wall(renewed))),
            lease_transitions: Some(2),
            ..Default::default()
        }
    }

    fn lease(spec: LeaseSpec, rv: &str) -> Lease {
        Lease {
            metadata: ObjectMeta {
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            spec: Some(spec),
        }
    }

    fn cfg(identity: &str) -> LeaseConfig {
        LeaseConfig {
            namespace: "ns".into(),
            name: "crossover-leader".into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn expiry_counts_from_when_the_record_was_seen_to_change_not_from_its_timestamps() {
        let t0 = Instant::now();
        // The holder's clock is an hour behind ours: its renewTime looks ancient. Comparing clocks
        // would steal a healthy lease; observed time does not.
        let skewed = held_by("b", -3600);
        let seen = observe(None, Some(&lease(skewed.clone(), "1")), t0);
        assert_eq!(
            claim(&seen, "a", t0 + secs(5)),
            Claim::Wait {
                holder: "b".into(),
                expires_in: secs(10)
            }
        );
        // The same record read again later does not move the change time...
        let again = observe(
            Some(&seen),
            Some(&lease(skewed.clone(), "1")),
            t0 + secs(10),
        );
        assert_eq!(again.changed_at, t0);
        assert_eq!(claim(&again, "a", t0 + secs(15)), Claim::Acquire);
        // ...a renewal does, whatever time it carries (here one an hour ahead).
        let renewed = observe(
            Some(&again),
            Some(&lease(held_by("b", 3600), "2")),
            t0 + secs(14),
        );
        assert_eq!(renewed.changed_at, t0 + secs(14));
        assert!(matches!(
            claim(&renewed, "a", t0 + secs(20)),
            Claim::Wait { .. }
        ));
    }

    #[test]
    fn a_new_standby_waits_a_whole_duration_before_taking_over() {
        let t0 = Instant::now();
        // Its first look: it cannot know when the record last changed, so it counts from now.
        let seen = observe(None, Some(&lease(held_by("b", -1000), "7")), t0);
        assert!(matches!(
            claim(&seen, "a", t0 + secs(14)),
            Claim::Wait { .. }
        ));
        assert_eq!(claim(&seen, "a", t0 + secs(15)), Claim::Acquire);
    }

    #[test]
    fn claims_for_a_missing_a_released_and_our_own_lease() {
        let t0 = Instant::now();
        assert_eq!(claim(&observe(None, None, t0), "a", t0), Claim::Acquire);
        let ours = observe(None, Some(&lease(held_by("a", 0), "1")), t0);
        assert_eq!(claim(&ours, "a", t0), Claim::Renew);
        let given_up = released(&held_by("b", 0), wall(1));
        let seen = observe(None, Some(&lease(given_up, "2")), t0);
        assert_eq!(claim(&seen, "a", t0), Claim::Acquire);
    }

    #[test]
    fn a_takeover_counts_a_transition_and_a_renewal_does_not() {
        let renewed = claimed(Some(&held_by("a", -5)), &cfg("a"), wall(0));
        assert_eq!(renewed.lease_transitions, Some(2));
        assert_eq!(renewed.acquire_time, Some(to_micro(wall(-100))));
        assert_eq!(renewed.renew_time, Some(to_micro(wall(0))));

        let taken = claimed(Some(&held_by("b", -30)), &cfg("a"), wall(0));
        assert_eq!(taken.holder_identity.as_deref(), Some("a"));
        assert_eq!(taken.lease_transitions, Some(3));
        assert_eq!(taken.acquire_time, Some(to_micro(wall(0))));
        assert_eq!(taken.lease_duration_seconds, Some(15));

        let first = claimed(None, &cfg("a"), wall(0));
        assert_eq!(first.lease_transitions, Some(0));
    }

    #[test]
    fn a_renewal_whose_answer_was_lost_is_recognised_when_read_back() {
        let sent = Instant::now();
        let wrote = claimed(Some(&held_by("a", -2)), &cfg("a"), wall(0));
        let pending = Pending {
            renew_time: wrote.renew_time.clone(),
            sent_at: sent,
        };
        // The server applied it: the read shows our renew time. Not a takeover, not a loss.
        assert!(confirms(&pending, Some(&wrote), "a"));
        // It never landed: the read shows our previous renewal.
        assert!(!confirms(&pending, Some(&held_by("a", -2)), "a"));
        // Someone else wrote after it.
        assert!(!confirms(&pending, Some(&held_by("b", 0)), "a"));
        assert!(!confirms(&pending, None, "a"));
    }

    #[test]
    fn the_leader_stops_before_any_standby_may_start() {
        // The leader sends a renewal at t; the server applies it at t + d (d ≥ 0); a standby sees
        // it no earlier. The leader writes until t + renew deadline; the standby takes over no
        // sooner than t + d + duration. The gap is at least duration − renew deadline.
        let c = cfg("a");
        assert!(c.check().is_ok());
        let sent = Instant::now();
        let leadership = Leadership::default();
        leadership.extend(sent + c.renew_deadline);
        let seen_by_standby = observe(None, Some(&lease(held_by("a", 0), "3")), sent);
        let first_standby_write = sent + c.duration;
        assert_eq!(
            claim(&seen_by_standby, "b", first_standby_write),
            Claim::Acquire
        );
        assert!(matches!(
            claim(
                &seen_by_standby,
                "b",
                first_standby_write - Duration::from_millis(1)
            ),
            Claim::Wait { .. }
        ));
        assert_eq!(leadership.remaining(sent + c.renew_deadline), None);
        assert_eq!(
            leadership.remaining(sent + Duration::from_secs(4)),
            Some(Duration::from_secs(6))
        );
        // A later renewal extends it; an earlier confirmation never shortens it.
        leadership.extend(sent + secs(12));
        leadership.extend(sent + secs(9));
        assert_eq!(leadership.remaining(sent + secs(11)), Some(secs(1)));
        leadership.end();
        assert_eq!(leadership.remaining(sent), None);
    }

    #[test]
    fn durations_that_would_let_two_replicas_write_are_refused() {
        let mut c = cfg("a");
        c.renew_deadline = secs(15);
        assert!(
            c.check()
                .unwrap_err()
                .contains("longer than the renew deadline")
        );
        let mut c = cfg("a");
        c.retry_period = secs(9);
        assert!(c.check().unwrap_err().contains("retry period"));
        let mut c = cfg("a");
        c.retry_period = Duration::ZERO;
        assert!(c.check().is_err());
    }
}
