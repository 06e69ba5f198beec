//! Which status changes are written at once and which wait for a checkpoint.
//!
//! A pool's status changes on every reading: counter baselines, token rates, month-to-date
//! dollars, the demand history. Writing each of those is one status patch per pool per interval
//! (65 a second at a thousand pools, measured) for numbers nobody reads between two looks. So the
//! operator keeps the newest status in memory ([`Statuses`]) and writes it
//!
//! - at once when something a person or a restart needs changes ([`settled`]): replicas desired,
//!   running or billed, a condition's status or reason, the verdict and the cheaper side, the
//!   sizing timers and the recommendations' values, the month, which pods are counted (a pod
//!   that leaves takes its counts with it) and their process starts (a counter reset);
//! - otherwise at most once per checkpoint period (`--status-checkpoint-seconds`, 5 minutes by
//!   default, 0 writes every change).
//!
//! The money stays exact across a restart: month-to-date totals and the counter baselines they
//! were counted up to are always written together, so the next replica counts from the last
//! written baseline. What a restart loses is at most one checkpoint period of demand history and
//! of numbers shown in `kubectl get` (rates, utilization); `/metrics` serves them live.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::api::{InferencePoolStatus, Recommendation, to_time};

/// The status with every field that moves on each reading cleared: two statuses with the same
/// settled form differ only in numbers that can wait for a checkpoint.
pub fn settled(s: &InferencePoolStatus) -> InferencePoolStatus {
    let epoch = to_time(DateTime::<Utc>::UNIX_EPOCH);
    let mut s = s.clone();
    s.display = None;
    if let Some(p) = &mut s.provisioning {
        p.message.clear();
    }
    for c in &mut s.conditions {
        c.message.clear();
    }
    if let Some(load) = &mut s.load {
        *load = crate::api::LoadStatus {
            pods_observed: load.pods_observed.take(),
            baselines: std::mem::take(&mut load.baselines)
                .into_iter()
                .map(|b| crate::api::CounterBaseline {
                    pod: b.pod,
                    process_start_unix_seconds: b.process_start_unix_seconds,
                    sampled_at_unix_ms: 0,
                    input_tokens: 0.0,
                    output_tokens: 0.0,
                })
                .collect(),
            ..Default::default()
        };
    }
    if let Some(sizing) = &mut s.sizing {
        sizing.history = None;
        let mut values: Vec<Recommendation> = Vec::new();
        for r in std::mem::take(&mut sizing.recommendations) {
            if values.last().map(|v| v.replicas) != Some(r.replicas) {
                values.push(Recommendation {
                    time: epoch.clone(),
                    replicas: r.replicas,
                    work_replicas: None,
                    requests_waiting: None,
                    readings: 0,
                });
            }
        }
        sizing.recommendations = values;
    }
    if let Some(cost) = &mut s.cost {
        cost.api_monthly_usd = 0.0;
        cost.ratio = None;
        cost.input_tokens_per_month = 0.0;
        cost.output_tokens_per_month = 0.0;
        cost.pool_usd_per_million_tokens = None;
        cost.idle_monthly_usd = 0.0;
        cost.break_even_input_tokens_per_month = None;
        cost.run_rate_seconds = None;
        if let Some(m) = &mut cost.month_to_date {
            *m = crate::cost::fresh_month(std::mem::take(&mut m.period), DateTime::UNIX_EPOCH);
        }
    }
    s
}

/// A digest of the settled form: what is remembered of the last status written.
pub fn settled_digest(s: &InferencePoolStatus) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&settled(s))
        .unwrap_or_default()
        .hash(&mut h);
    h.finish()
}

/// What is remembered of the last status this replica wrote for a pool.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Written {
    pub settled_digest: u64,
    pub at: DateTime<Utc>,
}

/// Whether `next` must be written now. `prev` is the newest status (written or held); `last` is
/// what this replica last wrote, None when it has written nothing for the pool yet (then any
/// change is written: the stored status is all a restart would have).
pub fn write_due(
    last: Option<&Written>,
    prev: &InferencePoolStatus,
    next: &InferencePoolStatus,
    now: DateTime<Utc>,
    checkpoint: Duration,
) -> bool {
    if next == prev {
        return false;
    }
    let Some(last) = last else {
        return true;
    };
    let since = (now - last.at).to_std().unwrap_or_default();
    since >= checkpoint || settled_digest(next) != last.settled_digest
}

type PoolKey = (String, String);

/// The newest status of each pool, written or not, for the pools this term has reconciled.
/// The pool watch keeps no status (it would be a second copy), so a pool's first reconcile in a
/// term reads its status from the API server.
#[derive(Default)]
pub struct Statuses(Mutex<HashMap<PoolKey, Entry>>);

struct Entry {
    uid: Option<String>,
    latest: InferencePoolStatus,
    written: Option<Written>,
}

impl Statuses {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PoolKey, Entry>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The newest status of the pool with this uid, and what was last written of it; None when
    /// this term has not seen the pool (or saw another pool of the same name).
    pub fn latest(
        &self,
        key: &PoolKey,
        uid: Option<&str>,
    ) -> Option<(InferencePoolStatus, Option<Written>)> {
        self.lock()
            .get(key)
            .filter(|e| e.uid.as_deref() == uid)
            .map(|e| (e.latest.clone(), e.written))
    }

    /// Keeps `status` as the pool's newest; `written` when it was just written.
    pub fn keep(
        &self,
        key: PoolKey,
        uid: Option<String>,
        status: InferencePoolStatus,
        written: Option<Written>,
    ) {
        let mut map = self.lock();
        let entry = map.entry(key).or_insert_with(|| Entry {
            uid: uid.clone(),
            latest: InferencePoolStatus::default(),
            written: None,
        });
        if entry.uid != uid {
            entry.written = None;
            entry.uid = uid;
        }
        entry.latest = status;
        if written.is_some() {
            entry.written = written;
        }
    }

    /// Forgets a pool that no longer exists.
    pub fn forget(&self, key: &PoolKey) {
        self.lock().remove(key);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Cheaper, CostStatus, CounterBaseline, LoadStatus, MonthToDate, SizingStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_780_000_000 + s, 0).unwrap()
    }

    fn rec(at: i64, replicas: i32) -> Recommendation {
        Recommendation {
            time: to_time(t(at)),
            replicas,
            work_replicas: Some(f64::from(replicas) * 0.8),
            requests_waiting: Some(0.0),
            readings: 1,
        }
    }

    /// A steady pool after one reading: 2 replicas, its money and baselines.
    fn status(reading: i64) -> InferencePoolStatus {
        let n = reading as f64;
        InferencePoolStatus {
            replicas: 2,
            ready_replicas: 2,
            desired_replicas: Some(2),
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: "Serving".into(),
                message: format!("utilization {}%", 40 + reading % 7),
                last_transition_time: to_time(t(0)),
                observed_generation: Some(1),
            }],
            load: Some(LoadStatus {
                output_tokens_per_second: 100.0 + n,
                pods_observed: Some("2/2".into()),
                baselines: ["a", "b"]
                    .iter()
                    .map(|p| CounterBaseline {
                        pod: (*p).into(),
                        sampled_at_unix_ms: reading * 15_000,
                        process_start_unix_seconds: Some(1.0),
                        input_tokens: 1000.0 * n,
                        output_tokens: 300.0 * n,
                    })
                    .collect(),
                ..Default::default()
            }),
            sizing: Some(SizingStatus {
                recommendations: (0..=reading).map(|i| rec(i * 15, 2)).collect(),
                ..Default::default()
            }),
            cost: Some(CostStatus {
                pool_monthly_usd: 5475.0,
                api_monthly_usd: 4159.0 + n,
                cheaper: Cheaper::Api,
                ratio: Some(1.3),
                break_even_input_tokens_per_month: Some(1e9),
                input_tokens_per_month: 1e8 + n,
                output_tokens_per_month: 3e7 + n,
                pool_usd_per_million_tokens: Some(40.0 - n / 100.0),
                idle_monthly_usd: 100.0 + n,
                api_model: None,
                api_input_usd_per_million_tokens: Some(3.0),
                api_output_usd_per_million_tokens: Some(15.0),
                price_source: None,
                month_to_date: Some(MonthToDate {
                    period: "2026-12".into(),
                    accounted_until: to_time(t(reading * 15)),
                    input_tokens: 2000.0 * n,
                    output_tokens: 600.0 * n,
                    replica_hours: n * 30.0 / 3600.0,
                    pool_usd: n * 0.1,
                    api_usd: n * 0.05,
                    unaccounted_seconds: 0.0,
                }),
                run_rate_seconds: Some(300.0),
                billed_replicas: Some(2),
                previous_month: None,
            }),
            ..Default::default()
        }
    }

    const CHECKPOINT: Duration = Duration::from_secs(300);

    #[test]
    fn steady_readings_wait_for_the_checkpoint() {
        let last = Written {
            settled_digest: settled_digest(&status(1)),
            at: t(15),
        };
        for reading in 2..20 {
            let now = t(reading * 15);
            assert!(
                !write_due(
                    Some(&last),
                    &status(reading - 1),
                    &status(reading),
                    now,
                    CHECKPOINT
                ),
                "reading {reading} changed only numbers that can wait"
            );
        }
        assert!(write_due(
            Some(&last),
            &status(20),
            &status(21),
            t(15 + 300),
            CHECKPOINT
        ));
    }

    #[test]
    fn what_a_person_or_a_restart_needs_is_written_at_once() {
        let last = Written {
            settled_digest: settled_digest(&status(1)),
            at: t(15),
        };
        let prev = status(2);
        let at = t(30);
        let due = |next: &InferencePoolStatus| write_due(Some(&last), &prev, next, at, CHECKPOINT);
        let mut s = status(2);
        s.desired_replicas = Some(3);
        assert!(due(&s), "a new desired count");
        let mut s = status(2);
        s.ready_replicas = 1;
        assert!(due(&s), "a replica fewer ready");
        let mut s = status(2);
        s.conditions[0].reason = "UnderProvisioned".into();
        assert!(due(&s), "a condition's reason");
        let mut s = status(2);
        s.load.as_mut().unwrap().baselines.pop();
        assert!(due(&s), "a pod left: its counts go with it");
        let mut s = status(2);
        s.load.as_mut().unwrap().baselines[0].process_start_unix_seconds = Some(2.0);
        assert!(due(&s), "a counter reset");
        let mut s = status(2);
        s.sizing.as_mut().unwrap().recommendations.push(rec(45, 1));
        assert!(due(&s), "a recommendation of a new size");
        let mut s = status(2);
        s.cost
            .as_mut()
            .unwrap()
            .month_to_date
            .as_mut()
            .unwrap()
            .period = "2027-01".into();
        assert!(due(&s), "a new month");
        let mut s = status(2);
        s.cost.as_mut().unwrap().billed_replicas = Some(3);
        assert!(due(&s), "a replica more billed");
    }

    #[test]
    fn a_zero_checkpoint_writes_every_change_and_nothing_unchanged() {
        let last = Written {
            settled_digest: settled_digest(&status(1)),
            at: t(15),
        };
        assert!(write_due(
            Some(&last),
            &status(1),
            &status(2),
            t(30),
            Duration::ZERO
        ));
        assert!(!write_due(
            Some(&last),
            &status(2),
            &status(2),
            t(30),
            Duration::ZERO
        ));
    }

    #[test]
    fn the_first_change_of_a_term_is_written() {
        assert!(write_due(None, &status(1), &status(2), t(30), CHECKPOINT));
        assert!(!write_due(None, &status(2), &status(2), t(30), CHECKPOINT));
    }

    #[test]
    fn another_pool_of_the_same_name_starts_afresh() {
        let statuses = Statuses::default();
        let key = ("ns".to_string(), "p".to_string());
        let written = Written {
            settled_digest: 1,
            at: t(0),
        };
        statuses.keep(key.clone(), Some("u1".into()), status(1), Some(written));
        assert_eq!(
            statuses.latest(&key, Some("u1")),
            Some((status(1), Some(written)))
        );
        assert_eq!(statuses.latest(&key, Some("u2")), None);
        statuses.keep(key.clone(), Some("u2".into()), status(2), None);
        assert_eq!(statuses.latest(&key, Some("u2")), Some((status(2), None)));
        statuses.forget(&key);
        assert!(statuses.is_empty());
    }
}
