//! The pool's money as the reconcile keeps it, pure: hardware accrues for the replicas that were
//! provisioned (scheduled pods) over each span whatever the metrics do; tokens accrue from the
//! counter increments an observation carries; the run-rate prices the replicas holding GPUs now
//! against the token rates averaged over the run-rate window.
//! The formulas are in `crate::cost`; this decides when to apply them and to what.

use chrono::{DateTime, Utc};
use kube::runtime::events::EventType;

use super::decide::Note;
use crate::api::{CostStatus, InferencePoolSpec, InferencePoolStatus, MonthToDate, from_time};
use crate::cost::{self, Accrual, MonthlyVolume, ProvisionedPod};
use crate::format;
use crate::load::Observation;

/// Without new counter increments and with the same pods billed, the money is brought up to
/// date this often: the span is integrated exactly either way, so a longer tick loses nothing and
/// spares the API server a status write per pool and interval.
pub const MONEY_TICK_SECONDS: f64 = 300.0;

/// What the money is computed from, for one reconcile.
pub struct MoneyInputs<'a> {
    pub spec: &'a InferencePoolSpec,
    pub prev: &'a InferencePoolStatus,
    /// A fresh observation: its counter increments are this step's tokens.
    pub observation: Option<&'a Observation>,
    /// The pool's pods that hold (or held) GPUs, from the pod cache.
    pub pods: &'a [ProvisionedPod],
    /// Work over ready capacity, for the idle figure; the last known one when there is no reading.
    pub utilization: Option<f64>,
    /// When the pool was created: a new pool bills from there (its first model load included).
    pub created: Option<DateTime<Utc>>,
    /// The previous reconcile's look at the pods (in memory; None after a restart): pods billed
    /// then and gone now left after it.
    pub last_look: Option<DateTime<Utc>>,
    pub now: DateTime<Utc>,
}

/// When each pool's pods were last looked at, kept in memory by the controller. Lost on a
/// restart, which only widens the estimate for a pod that left in between.
#[derive(Default)]
pub struct Looks(std::sync::Mutex<std::collections::HashMap<(String, String), DateTime<Utc>>>);

impl Looks {
    /// Records a look at `now`; returns the one before.
    pub fn exchange(&self, pool: (String, String), now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(pool, now)
    }

    /// Forgets a deleted pool.
    pub fn forget(&self, pool: &(String, String)) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(pool);
    }
}

/// The next `status.cost` (None only when there never was one and it cannot be priced) and the
/// Events that go with it.
pub struct Money {
    pub cost: Option<CostStatus>,
    pub events: Vec<Note>,
}

/// Accrues the span since `monthToDate.accountedUntil` and prices the run-rate.
pub fn account(inp: &MoneyInputs) -> Money {
    let prev_cost = inp.prev.cost.as_ref();
    let prev_mtd = prev_cost.and_then(|c| c.month_to_date.as_ref());
    let interval = f64::from(inp.spec.scaling.interval_seconds.max(1));
    let last = prev_mtd.map(|m| from_time(&m.accounted_until));
    let billed_now = billed(inp.pods, inp.now);
    let billed_before = prev_cost.and_then(|c| c.billed_replicas);
    // Accrue at once when pods came or went, so the half-span estimate for a pod gone between
    // two looks stays within one interval.
    let due = inp.observation.is_some()
        || billed_before != Some(i32::try_from(billed_now).unwrap_or(i32::MAX))
        || last.is_none_or(|l| seconds(l, inp.now) >= MONEY_TICK_SECONDS.max(interval));
    if !due {
        return Money {
            cost: prev_cost.cloned(),
            events: Vec::new(),
        };
    }

    let from = last
        .or(inp.created)
        .unwrap_or(inp.now - chrono::Duration::seconds(interval as i64))
        .min(inp.now);
    let billed_at_from = billed_before.map_or(0, |n| n.max(0) as u32);
    let seen_until = inp.last_look.filter(|l| *l > from && *l <= inp.now);
    let replica_seconds =
        cost::replica_seconds(inp.pods, billed_at_from, from, seen_until, inp.now);
    let accrual = match inp.observation {
        Some(o) => Accrual {
            from,
            to: inp.now,
            replica_seconds,
            input_tokens: o.input_tokens,
            output_tokens: o.output_tokens,
            tokens_cover_seconds: o.covered_seconds,
            unaccounted_seconds: o.unaccounted_seconds,
        },
        None => Accrual::hardware(from, inp.now, replica_seconds),
    };
    let accrued = cost::accrue(prev_mtd, inp.spec, &accrual);

    let window = f64::from(inp.spec.cost.run_rate_window_seconds.max(60));
    let tokens = token_rates(inp, window);

    // The pool side prices the replicas holding GPUs now: a steady pool shows exactly its price.
    let mut events = Vec::new();
    let priced = cost::run_rate(
        inp.spec,
        f64::from(billed_now),
        tokens.map(|(volume, _)| volume),
        inp.utilization,
    );
    let mut next = match priced {
        Ok(c) => c,
        Err(e) => {
            events.push(Note {
                type_: EventType::Warning,
                reason: "CostUnavailable",
                message: format!("cannot price the pool: {e}"),
            });
            return Money {
                cost: prev_cost.cloned(),
                events,
            };
        }
    };
    next.run_rate_seconds = tokens.map(|(_, covered)| covered);
    next.billed_replicas = Some(i32::try_from(billed_now).unwrap_or(i32::MAX));
    next.month_to_date = Some(accrued.month);
    next.previous_month = match accrued.closed {
        Some(closed) => {
            events.push(Note {
                type_: EventType::Normal,
                reason: "MonthClosed",
                message: month_message(&closed),
            });
            Some(closed)
        }
        None => prev_cost.and_then(|c| c.previous_month.clone()),
    };
    if let Some(field) = non_finite(&next) {
        events.push(Note {
            type_: EventType::Warning,
            reason: "CostUnavailable",
            message: format!(
                "the pool's cost came out as no number ({field}); keeping the last good figures"
            ),
        });
        return Money {
            cost: prev_cost.cloned(),
            events,
        };
    }
    Money {
        cost: Some(next),
        events,
    }
}

/// Pods holding GPUs at `now`.
fn billed(pods: &[ProvisionedPod], now: DateTime<Utc>) -> u32 {
    let n = pods
        .iter()
        .filter(|p| p.scheduled_at <= now && p.ended_at.is_none_or(|e| e > now))
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A trailing average over `window` seconds: the exact mean while less than the window has been
/// seen, then an exponential average with the window as its time constant. `prev` is the average
/// so far and the seconds it covers; returns the new pair.
fn average(prev: Option<(f64, f64)>, sample: f64, dt: f64, window: f64) -> (f64, f64) {
    let dt = dt.clamp(0.0, window);
    match prev {
        Some((avg, covered)) if avg.is_finite() && covered > 0.0 => {
            let covered_next = (covered + dt).min(window);
            if covered_next <= 0.0 {
                return (avg, covered);
            }
            (avg + dt / covered_next * (sample - avg), covered_next)
        }
        _ => (sample, dt.max(1.0).min(window)),
    }
}

/// The run-rate token volume (per month) and the seconds of observations it averages; None when
/// no traffic was ever observed.
fn token_rates(inp: &MoneyInputs, window: f64) -> Option<(MonthlyVolume, f64)> {
    let prev = inp
        .prev
        .cost
        .as_ref()
        .and_then(|c| c.run_rate_seconds.map(|s| (c, s)));
    let Some(o) = inp.observation else {
        return prev.map(|(c, covered)| {
            (
                MonthlyVolume {
                    input_tokens_per_month: c.input_tokens_per_month,
                    output_tokens_per_month: c.output_tokens_per_month,
                },
                covered,
            )
        });
    };
    let dt = if o.covered_seconds > 0.0 {
        o.covered_seconds
    } else {
        f64::from(inp.spec.scaling.interval_seconds.max(1))
    };
    let per_second = |per_month: f64| per_month / cost::SECONDS_PER_MONTH;
    let (input, covered) = average(
        prev.map(|(c, s)| (per_second(c.input_tokens_per_month), s)),
        o.input_tokens_per_second,
        dt,
        window,
    );
    let (output, _) = average(
        prev.map(|(c, s)| (per_second(c.output_tokens_per_month), s)),
        o.output_tokens_per_second,
        dt,
        window,
    );
    Some((MonthlyVolume::from_rates(input, output), covered))
}

/// The first money figure that is not a finite number, by name.
fn non_finite(c: &CostStatus) -> Option<&'static str> {
    let mut fields = vec![
        ("poolMonthlyUsd", Some(c.pool_monthly_usd)),
        ("apiMonthlyUsd", Some(c.api_monthly_usd)),
        ("ratio", c.ratio),
        (
            "breakEvenInputTokensPerMonth",
            c.break_even_input_tokens_per_month,
        ),
        ("inputTokensPerMonth", Some(c.input_tokens_per_month)),
        ("outputTokensPerMonth", Some(c.output_tokens_per_month)),
        ("poolUsdPerMillionTokens", c.pool_usd_per_million_tokens),
        ("idleMonthlyUsd", Some(c.idle_monthly_usd)),
    ];
    for (name, m) in [
        ("monthToDate", c.month_to_date.as_ref()),
        ("previousMonth", c.previous_month.as_ref()),
    ] {
        if let Some(m) = m {
            fields.extend([
                (name, Some(m.input_tokens)),
                (name, Some(m.output_tokens)),
                (name, Some(m.replica_hours)),
                (name, Some(m.pool_usd)),
                (name, Some(m.api_usd)),
                (name, Some(m.unaccounted_seconds)),
            ]);
        }
    }
    fields
        .into_iter()
        .find(|(_, v)| v.is_some_and(|v| !v.is_finite()))
        .map(|(name, _)| name)
}

/// The MonthClosed Event: the month's final totals.
pub fn month_message(m: &MonthToDate) -> String {
    format!(
        "{} closed: pool {} for {:.1} replica-hours; {} input and {} output tokens, {} on the API",
        m.period,
        format::usd(m.pool_usd),
        m.replica_hours,
        format::tokens(m.input_tokens),
        format::tokens(m.output_tokens),
        format::usd(m.api_usd),
    )
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    ((to - from).num_milliseconds() as f64 / 1000.0).max(0.0)
}
