//! The money: what a pool costs per month, what the same tokens would cost on the hosted API,
//! which is cheaper, where they break even, and the month-to-date totals kept in status.
//! Pure functions over the spec and observed volumes; no clock, no IO.

use crate::api::{
    Cheaper, CompareTo, CostSpec, CostStatus, InferencePoolSpec, MonthToDate, from_time, to_time,
};
use crate::catalog;
use chrono::{DateTime, Datelike, TimeZone, Utc};
use thiserror::Error;

/// Hours in a month for run-rates, as cloud providers bill a "month" (8,760 h / 12).
pub const HOURS_PER_MONTH: f64 = 730.0;
/// Seconds in a run-rate month.
pub const SECONDS_PER_MONTH: f64 = HOURS_PER_MONTH * 3600.0;
/// Output tokens per input token assumed when no traffic shows the real mix (DOMAIN.md scenarios).
pub const DEFAULT_OUTPUT_TO_INPUT_RATIO: f64 = 0.3;

const TOKENS_PER_MILLION: f64 = 1e6;

/// A cost spec that cannot be priced.
#[derive(Debug, Error, PartialEq)]
pub enum CostError {
    #[error(
        "spec.cost sets neither replicaHourlyUsd nor replicaMonthlyUsd: set exactly one (per hour for cloud GPUs, per month for a rented machine)"
    )]
    NoReplicaPrice,
    #[error("spec.cost sets both replicaHourlyUsd and replicaMonthlyUsd: set exactly one")]
    BothReplicaPrices,
    #[error("spec.cost.{field} must be a number zero or more, not {value}")]
    InvalidPrice { field: &'static str, value: f64 },
}

/// What one replica costs, the way its provider bills it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReplicaPrice {
    /// Cloud GPUs, billed per hour.
    Hourly { usd_per_hour: f64 },
    /// A rented machine, billed per month.
    Monthly { usd_per_month: f64 },
}

impl ReplicaPrice {
    /// Reads the replica price from `spec.cost`, which must set exactly one of the two.
    pub fn from_spec(cost: &CostSpec) -> Result<Self, CostError> {
        let check = |field: &'static str, value: f64| {
            if value.is_finite() && value >= 0.0 {
                Ok(value)
            } else {
                Err(CostError::InvalidPrice { field, value })
            }
        };
        match (cost.replica_hourly_usd, cost.replica_monthly_usd) {
            (Some(hourly), None) => Ok(Self::Hourly {
                usd_per_hour: check("replicaHourlyUsd", hourly)?,
            }),
            (None, Some(monthly)) => Ok(Self::Monthly {
                usd_per_month: check("replicaMonthlyUsd", monthly)?,
            }),
            (None, None) => Err(CostError::NoReplicaPrice),
            (Some(_), Some(_)) => Err(CostError::BothReplicaPrices),
        }
    }

    /// One replica for a run-rate month (730 hours).
    pub fn usd_per_month(&self) -> f64 {
        match *self {
            Self::Hourly { usd_per_hour } => usd_per_hour * HOURS_PER_MONTH,
            Self::Monthly { usd_per_month } => usd_per_month,
        }
    }
}

/// The pool's monthly bill, split the way people question it.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolMonthly {
    /// Provisioned replicas: loading and unready replicas bill too.
    pub replicas: u32,
    pub replica_price: ReplicaPrice,
    /// Replicas × replica price per month.
    pub hardware_usd_per_month: f64,
    /// Each overhead by name, USD per month.
    pub overheads: Vec<(String, f64)>,
}

impl PoolMonthly {
    pub fn overheads_usd_per_month(&self) -> f64 {
        self.overheads.iter().map(|(_, usd)| usd).sum()
    }

    pub fn total_usd_per_month(&self) -> f64 {
        self.hardware_usd_per_month + self.overheads_usd_per_month()
    }
}

/// What the pool costs per month with `replicas` provisioned: hardware plus overheads.
pub fn pool_monthly(cost: &CostSpec, replicas: u32) -> Result<PoolMonthly, CostError> {
    pool_monthly_at(cost, f64::from(replicas))
}

/// [`pool_monthly`] for an average replica count (shown rounded in `replicas`).
pub fn pool_monthly_at(cost: &CostSpec, replicas: f64) -> Result<PoolMonthly, CostError> {
    let replica_price = ReplicaPrice::from_spec(cost)?;
    let replicas = if replicas.is_finite() {
        replicas.max(0.0)
    } else {
        0.0
    };
    Ok(PoolMonthly {
        replicas: replicas.round().min(f64::from(u32::MAX)) as u32,
        replica_price,
        hardware_usd_per_month: replicas * replica_price.usd_per_month(),
        overheads: cost
            .overheads
            .iter()
            .map(|o| (o.name.clone(), o.monthly_usd))
            .collect(),
    })
}

/// The hosted API's prices and where they came from.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiPrices {
    /// `compareTo.model`.
    pub model: String,
    pub input_usd_per_million_tokens: f64,
    pub output_usd_per_million_tokens: f64,
    /// "spec", "catalog: gpt-5 (LiteLLM 1.110.2, 2026)", or both when the spec gives one price.
    pub source: String,
}

impl ApiPrices {
    /// The API bill for these tokens.
    pub fn usd(&self, input_tokens: f64, output_tokens: f64) -> f64 {
        input_tokens * self.input_usd_per_million_tokens / TOKENS_PER_MILLION
            + output_tokens * self.output_usd_per_million_tokens / TOKENS_PER_MILLION
    }

    /// What one input token costs once its share of output (`output_per_input` output tokens per
    /// input token) is added: the slope break-even divides by.
    pub fn usd_per_input_token(&self, output_per_input: f64) -> f64 {
        (self.input_usd_per_million_tokens + output_per_input * self.output_usd_per_million_tokens)
            / TOKENS_PER_MILLION
    }
}

/// The API prices to compare with: each price in the spec overrides the catalog's. None when the
/// model is not in the catalog and the spec does not give both prices.
pub fn api_prices(compare_to: &CompareTo) -> Option<ApiPrices> {
    let entry = catalog::lookup(&compare_to.model);
    let input = compare_to
        .input_usd_per_million_tokens
        .or(entry.map(|e| e.input_usd_per_million_tokens))?;
    let output = compare_to
        .output_usd_per_million_tokens
        .or(entry.map(|e| e.output_usd_per_million_tokens))?;
    let from_spec = (
        compare_to.input_usd_per_million_tokens.is_some(),
        compare_to.output_usd_per_million_tokens.is_some(),
    );
    let source = match (from_spec, entry) {
        ((true, true), _) => "spec".to_string(),
        ((true, false), Some(e)) => format!("spec (input), {} (output)", e.source()),
        ((false, true), Some(e)) => format!("{} (input), spec (output)", e.source()),
        (_, Some(e)) => e.source(),
        // Unreachable: a missing price without a catalog entry returned None above.
        (_, None) => "spec".to_string(),
    };
    Some(ApiPrices {
        model: compare_to.model.clone(),
        input_usd_per_million_tokens: input,
        output_usd_per_million_tokens: output,
        source,
    })
}

/// Tokens per month, input and output.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct MonthlyVolume {
    pub input_tokens_per_month: f64,
    pub output_tokens_per_month: f64,
}

impl MonthlyVolume {
    /// Projects a token rate to a 730-hour month.
    pub fn from_rates(input_tokens_per_second: f64, output_tokens_per_second: f64) -> Self {
        Self {
            input_tokens_per_month: input_tokens_per_second.max(0.0) * SECONDS_PER_MONTH,
            output_tokens_per_month: output_tokens_per_second.max(0.0) * SECONDS_PER_MONTH,
        }
    }

    pub fn total_tokens_per_month(&self) -> f64 {
        self.input_tokens_per_month + self.output_tokens_per_month
    }

    /// Output tokens per input token; None without input traffic.
    pub fn output_to_input_ratio(&self) -> Option<f64> {
        (self.input_tokens_per_month > 0.0)
            .then(|| self.output_tokens_per_month / self.input_tokens_per_month)
    }
}

/// The pool against the API for one monthly volume: everything `status.cost` and `crossover plan`
/// report.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub pool: PoolMonthly,
    pub volume: MonthlyVolume,
    /// None without `compareTo` or without prices for its model.
    pub api: Option<ApiPrices>,
    /// The same tokens on the API per month (0 when there are no prices).
    pub api_usd_per_month: f64,
    /// false when `compareTo.allowed` is false.
    pub api_allowed: bool,
    pub cheaper: Cheaper,
    /// The dearer over the cheaper (>= 1); None when either side is zero or unknown.
    pub ratio: Option<f64>,
    /// The output/input mix break-even assumes.
    pub output_to_input_ratio: f64,
    /// true when there was no input traffic and the mix is DEFAULT_OUTPUT_TO_INPUT_RATIO.
    pub output_ratio_assumed: bool,
    /// Input tokens per month at which the API bill equals the pool's cost, at that mix.
    pub break_even_input_tokens_per_month: Option<f64>,
    /// Pool cost per 1M tokens, input and output together; None without traffic.
    pub pool_usd_per_million_tokens: Option<f64>,
    /// Hardware paid for and unused; None when utilization is unknown.
    pub idle_usd_per_month: Option<f64>,
}

impl Comparison {
    pub fn pool_usd_per_month(&self) -> f64 {
        self.pool.total_usd_per_month()
    }

    /// `status.cost`, with the month-to-date totals the caller keeps.
    pub fn to_status(&self, month_to_date: Option<MonthToDate>) -> CostStatus {
        CostStatus {
            pool_monthly_usd: self.pool_usd_per_month(),
            api_monthly_usd: self.api_usd_per_month,
            cheaper: self.cheaper,
            ratio: self.ratio,
            break_even_input_tokens_per_month: self.break_even_input_tokens_per_month,
            input_tokens_per_month: self.volume.input_tokens_per_month,
            output_tokens_per_month: self.volume.output_tokens_per_month,
            pool_usd_per_million_tokens: self.pool_usd_per_million_tokens,
            idle_monthly_usd: self.idle_usd_per_month.unwrap_or(0.0),
            api_model: self.api.as_ref().map(|a| a.model.clone()),
            api_input_usd_per_million_tokens: self
                .api
                .as_ref()
                .map(|a| a.input_usd_per_million_tokens),
            api_output_usd_per_million_tokens: self
                .api
                .as_ref()
                .map(|a| a.output_usd_per_million_tokens),
            price_source: self.api.as_ref().map(|a| a.source.clone()),
            month_to_date,
            run_rate_seconds: None,
            billed_replicas: None,
            previous_month: None,
        }
    }
}

/// Prices `replicas` provisioned replicas of the pool against the API for `volume` tokens a month.
/// `utilization` is work over ready capacity (clamped to 0..1 for the idle figure); None when the
/// pool's capacity is not known.
pub fn compare(
    spec: &InferencePoolSpec,
    replicas: u32,
    volume: MonthlyVolume,
    utilization: Option<f64>,
) -> Result<Comparison, CostError> {
    compare_at(spec, f64::from(replicas), volume, utilization)
}

/// [`compare`] for a replica count that is an average over time (the run-rate's).
pub fn compare_at(
    spec: &InferencePoolSpec,
    replicas: f64,
    volume: MonthlyVolume,
    utilization: Option<f64>,
) -> Result<Comparison, CostError> {
    let pool = pool_monthly_at(&spec.cost, replicas)?;
    let pool_usd = pool.total_usd_per_month();
    let api = spec.compare_to.as_ref().and_then(api_prices);
    let api_allowed = spec.compare_to.as_ref().is_none_or(|c| c.allowed);
    let api_usd = api.as_ref().map_or(0.0, |p| {
        p.usd(
            volume.input_tokens_per_month,
            volume.output_tokens_per_month,
        )
    });

    let (cheaper, ratio) = match &api {
        None => (Cheaper::Unknown, None),
        Some(_) if !api_allowed => (Cheaper::SelfHostRequired, None),
        Some(_) if pool_usd == 0.0 && api_usd == 0.0 => (Cheaper::Unknown, None),
        Some(_) if pool_usd <= api_usd => (
            Cheaper::SelfHosted,
            (pool_usd > 0.0).then(|| api_usd / pool_usd),
        ),
        Some(_) => (Cheaper::Api, (api_usd > 0.0).then(|| pool_usd / api_usd)),
    };

    let (output_to_input_ratio, output_ratio_assumed) = match volume.output_to_input_ratio() {
        Some(r) => (r, false),
        None => (DEFAULT_OUTPUT_TO_INPUT_RATIO, true),
    };
    let break_even_input_tokens_per_month = api.as_ref().and_then(|p| {
        let usd_per_input_token = p.usd_per_input_token(output_to_input_ratio);
        (usd_per_input_token > 0.0).then(|| pool_usd / usd_per_input_token)
    });

    let total_tokens = volume.total_tokens_per_month();
    let pool_usd_per_million_tokens =
        (total_tokens > 0.0).then(|| pool_usd / (total_tokens / TOKENS_PER_MILLION));
    let idle_usd_per_month = utilization
        .filter(|u| u.is_finite())
        .map(|u| pool.hardware_usd_per_month * (1.0 - u.clamp(0.0, 1.0)));

    Ok(Comparison {
        pool,
        volume,
        api,
        api_usd_per_month: api_usd,
        api_allowed,
        cheaper,
        ratio,
        output_to_input_ratio,
        output_ratio_assumed,
        break_even_input_tokens_per_month,
        pool_usd_per_million_tokens,
        idle_usd_per_month,
    })
}

/// `status.cost` at the current run-rate: `replicas` provisioned, against the token rates
/// observed over the trailing window (`spec.cost.runRateWindowSeconds`) projected to a 730-hour
/// month. Without any traffic observed yet (`volume` None) the pool
/// side and the break-even are known, the API side is not: `cheaper` is Unknown. The caller passes
/// the month-to-date totals it keeps (see [`accrue`]).
pub fn run_rate(
    spec: &InferencePoolSpec,
    replicas: f64,
    volume: Option<MonthlyVolume>,
    utilization: Option<f64>,
) -> Result<CostStatus, CostError> {
    let observed = volume.is_some();
    let mut c = compare_at(spec, replicas, volume.unwrap_or_default(), utilization)?;
    if !observed && c.cheaper != Cheaper::SelfHostRequired {
        c.cheaper = Cheaper::Unknown;
        c.ratio = None;
    }
    Ok(c.to_status(None))
}

/// A replica as billing sees it: a pod bound to a node (holding its GPUs) since `scheduled_at`,
/// until `ended_at` (finished or gone; None while it runs). Pods still Pending bill nothing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProvisionedPod {
    pub scheduled_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// Replica-seconds provisioned over [from, to]: each pod seen now for its overlap with the span,
/// plus the pods billed at `from` (`billed_at_from`) that have gone since. Those were still there
/// at the last look (`seen_until`, when known), and each bills until half way from it to `to`:
/// the error is at most half the time between two looks per pod that left.
pub fn replica_seconds(
    pods: &[ProvisionedPod],
    billed_at_from: u32,
    from: DateTime<Utc>,
    seen_until: Option<DateTime<Utc>>,
    to: DateTime<Utc>,
) -> f64 {
    let span = seconds_between(from, to).max(0.0);
    let seen = seen_until.map_or(0.0, |s| seconds_between(from, s).clamp(0.0, span));
    let mut held = 0.0;
    let mut survivors: u32 = 0;
    for pod in pods {
        let lo = pod.scheduled_at.max(from);
        let hi = pod.ended_at.unwrap_or(to).min(to);
        held += seconds_between(lo, hi).max(0.0);
        if pod.scheduled_at <= from {
            survivors = survivors.saturating_add(1);
        }
    }
    let vanished = billed_at_from.saturating_sub(survivors);
    held + f64::from(vanished) * (seen + (span - seen) / 2.0)
}

/// What one accounting step adds to month-to-date.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Accrual {
    /// The span this step accounts for; only its part after `accountedUntil` is added.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Replica-seconds provisioned over [from, to] ([`replica_seconds`]).
    pub replica_seconds: f64,
    /// Tokens counted by counter increments in this step, over the `tokens_cover_seconds` before
    /// `to`: added whole (their exactly-once-ness is the counters' baselines', not the span's).
    pub input_tokens: f64,
    pub output_tokens: f64,
    pub tokens_cover_seconds: f64,
    /// Serving time whose tokens no increment covers.
    pub unaccounted_seconds: f64,
}

impl Accrual {
    /// Hardware only: the span passed with no new counter increments.
    pub fn hardware(from: DateTime<Utc>, to: DateTime<Utc>, replica_seconds: f64) -> Self {
        Self {
            from,
            to,
            replica_seconds,
            input_tokens: 0.0,
            output_tokens: 0.0,
            tokens_cover_seconds: 0.0,
            unaccounted_seconds: 0.0,
        }
    }
}

/// Month-to-date after an accrual, and the previous month's final totals when this step closed it.
#[derive(Clone, Debug, PartialEq)]
pub struct Accrued {
    pub month: MonthToDate,
    pub closed: Option<MonthToDate>,
}

/// Adds an accrual to the calendar month's (UTC) totals.
///
/// Restart-safe: hardware and overheads accrue only for the part of the span after
/// `prev.accounted_until`, so re-applying a span already counted adds nothing. `accounted_until`
/// is kept to whole seconds (the precision status round-trips) and the span's last fraction of a
/// second is left for the next step. When the span crosses into a new month, the old month is
/// completed up to its last second and returned in `closed`; tokens are split between the months
/// pro rata over the time their increments cover, hardware over the span.
///
/// Monthly prices and overheads accrue by seconds over the calendar month's real length, so a full
/// month of one replica at replicaMonthlyUsd=205 accrues exactly $205 plus the overheads. Hourly
/// prices accrue per real hour, as clouds bill (744 hours in a 31-day month, against 730 in the
/// run-rate). A spec without a valid replica price accrues no hardware cost; the controller rejects
/// such specs before it gets here.
pub fn accrue(prev: Option<&MonthToDate>, spec: &InferencePoolSpec, a: &Accrual) -> Accrued {
    let end = floor_to_second(a.to);
    let prev_until = prev.map(|p| from_time(&p.accounted_until));
    // An instant exactly at midnight on the 1st belongs to the month it closes.
    let (month_start, _) = month_bounds(end - chrono::Duration::nanoseconds(1));
    let period = period_of(end - chrono::Duration::nanoseconds(1));
    let hardware_from = prev_until.map_or(a.from, |u| a.from.max(u));

    let (mut current, closed) = match prev {
        Some(p) if p.period == period => (p.clone(), None),
        // A clock that went back across a month boundary: keep counting into the later month.
        Some(p) if p.period > period => {
            let mut kept = p.clone();
            add_tokens(&mut kept, spec, a, 1.0);
            return Accrued {
                month: kept,
                closed: None,
            };
        }
        Some(p) => {
            let mut old = p.clone();
            let until = from_time(&p.accounted_until);
            let (_, old_end) = month_bounds(until - chrono::Duration::nanoseconds(1));
            if hardware_from < old_end {
                add_part(&mut old, spec, a, hardware_from, old_end.min(end));
            }
            old.accounted_until = to_time(old_end);
            (fresh_month(period, month_start), Some(old))
        }
        None => (fresh_month(period, hardware_from.max(month_start)), None),
    };
    let lo = hardware_from.max(month_start);
    if lo < end {
        add_part(&mut current, spec, a, lo, end);
        current.accounted_until = to_time(end);
    } else {
        // Nothing new on the clock (a replayed or too-early step): tokens still count.
        add_tokens(&mut current, spec, a, 1.0);
    }
    Accrued {
        month: current,
        closed,
    }
}

/// A month with nothing accounted yet, accounted until `start`.
pub fn fresh_month(period: String, start: DateTime<Utc>) -> MonthToDate {
    MonthToDate {
        period,
        accounted_until: to_time(start),
        input_tokens: 0.0,
        output_tokens: 0.0,
        replica_hours: 0.0,
        pool_usd: 0.0,
        api_usd: 0.0,
        unaccounted_seconds: 0.0,
    }
}

/// Adds the part [lo, hi] of the accrual (all within one calendar month) to `totals`.
fn add_part(
    totals: &mut MonthToDate,
    spec: &InferencePoolSpec,
    a: &Accrual,
    lo: DateTime<Utc>,
    hi: DateTime<Utc>,
) {
    let counted_seconds = seconds_between(lo, hi).max(0.0);
    let span_seconds = seconds_between(a.from, a.to);
    // The replicas provisioned on average over the span, for the counted part of it.
    let replica_seconds = if span_seconds > 0.0 {
        a.replica_seconds.max(0.0) * (counted_seconds / span_seconds).min(1.0)
    } else {
        0.0
    };
    let (month_start, next_month_start) = month_bounds(lo);
    let month_seconds = seconds_between(month_start, next_month_start);
    let hardware_usd = match ReplicaPrice::from_spec(&spec.cost) {
        Ok(ReplicaPrice::Hourly { usd_per_hour }) => usd_per_hour * replica_seconds / 3600.0,
        Ok(ReplicaPrice::Monthly { usd_per_month }) => {
            usd_per_month * replica_seconds / month_seconds
        }
        Err(_) => 0.0,
    };
    let overheads_usd: f64 = spec
        .cost
        .overheads
        .iter()
        .map(|o| o.monthly_usd)
        .sum::<f64>()
        * counted_seconds
        / month_seconds;
    totals.replica_hours += replica_seconds / 3600.0;
    totals.pool_usd += hardware_usd + overheads_usd;
    if span_seconds > 0.0 {
        totals.unaccounted_seconds +=
            a.unaccounted_seconds.max(0.0) * (counted_seconds / span_seconds).min(1.0);
    }
    // Increments are new whatever span they cover (the counters' baselines make them exactly
    // once): only a month boundary splits them, never `accounted_until`.
    add_tokens(totals, spec, a, token_share(a, month_start, hi));
}

/// Share of the accrual's tokens whose covered time falls in [lo, hi]: exactly 1 when all of it
/// does. Measured in nanoseconds: two pieces each cut to the millisecond lost up to a
/// millisecond per reading (0.05% of a 2 s interval's tokens, found by the fault tests' control).
fn token_share(a: &Accrual, lo: DateTime<Utc>, hi: DateTime<Utc>) -> f64 {
    let cover_ns = (a.tokens_cover_seconds.max(0.0) * 1e9) as i64;
    let cover_from = a.to - chrono::Duration::nanoseconds(cover_ns);
    let cover = exact_seconds_between(cover_from, a.to);
    if cover <= 0.0 {
        // No covered time given: the increments belong to the instant they were read.
        return if a.to > lo && a.to <= hi + chrono::Duration::seconds(1) {
            1.0
        } else {
            0.0
        };
    }
    // The last fraction of a second (left for the next step's hardware) still holds tokens.
    let until = if hi == floor_to_second(a.to) {
        a.to
    } else {
        a.to.min(hi)
    };
    let inside = exact_seconds_between(cover_from.max(lo), until).max(0.0);
    (inside / cover).clamp(0.0, 1.0)
}

fn exact_seconds_between(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    let d = b - a;
    d.num_nanoseconds()
        .map_or(d.num_milliseconds() as f64 / 1000.0, |ns| ns as f64 / 1e9)
}

fn add_tokens(totals: &mut MonthToDate, spec: &InferencePoolSpec, a: &Accrual, share: f64) {
    let input = a.input_tokens.max(0.0) * share;
    let output = a.output_tokens.max(0.0) * share;
    totals.input_tokens += input;
    totals.output_tokens += output;
    totals.api_usd += spec
        .compare_to
        .as_ref()
        .and_then(api_prices)
        .map_or(0.0, |p| p.usd(input, output));
}

/// The calendar month (UTC) of an instant, as status writes it: "2026-03".
pub fn period_of(at: DateTime<Utc>) -> String {
    format!("{:04}-{:02}", at.year(), at.month())
}

/// First instant of the month holding `at`, and of the month after.
fn month_bounds(at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let (year, month) = (at.year(), at.month());
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let start = Utc
        .with_ymd_and_hms(year, month, 1, 0, 0, 0)
        .single()
        .unwrap_or(at);
    let next = Utc
        .with_ymd_and_hms(next_year, next_month, 1, 0, 0, 0)
        .single()
        .unwrap_or(at);
    (start, next)
}

fn seconds_between(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a).num_milliseconds() as f64 / 1000.0
}

fn floor_to_second(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{InferencePool, Overhead};
    use proptest::prelude::*;

    fn scenario(file: &str) -> InferencePoolSpec {
        let path = format!("{}/examples/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).expect("example manifest");
        let pool: InferencePool = serde_saphyr::from_str(&text).expect("example parses");
        pool.spec
    }

    fn volume(input: f64, output: f64) -> MonthlyVolume {
        MonthlyVolume {
            input_tokens_per_month: input,
            output_tokens_per_month: output,
        }
    }

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    #[test]
    fn scenario_a_the_api_is_about_six_times_cheaper() {
        let spec = scenario("scenario-a-gemma-small-volume.yaml");
        let c = compare(&spec, 1, volume(50e6, 15e6), None).unwrap();
        assert!(close(c.api_usd_per_month, 275.0, 1e-9));
        assert!(close(c.pool_usd_per_month(), 1705.0, 1e-9));
        assert_eq!(c.cheaper, Cheaper::Api);
        assert_eq!(format!("{:.1}", c.ratio.unwrap()), "6.2");
        assert!(close(
            c.break_even_input_tokens_per_month.unwrap(),
            310e6,
            1.0
        ));
        assert_eq!(c.api.as_ref().unwrap().source, "spec");
    }

    #[test]
    fn scenario_b_self_hosting_is_four_and_a_half_times_cheaper() {
        let spec = scenario("scenario-b-gemma-at-volume.yaml");
        let c = compare(&spec, 1, volume(500e6, 150e6), None).unwrap();
        assert!(close(c.api_usd_per_month, 2750.0, 1e-9));
        assert!(close(c.pool_usd_per_month(), 605.0, 1e-9));
        assert_eq!(c.cheaper, Cheaper::SelfHosted);
        assert_eq!(format!("{:.1}", c.ratio.unwrap()), "4.5");
        assert!(close(
            c.break_even_input_tokens_per_month.unwrap(),
            110e6,
            1.0
        ));
        assert!(close(
            c.pool_usd_per_million_tokens.unwrap(),
            605.0 / 650.0,
            1e-12
        ));
    }

    #[test]
    fn scenario_c_low_and_high() {
        for (file, pool_usd) in [
            ("scenario-c-h100-bare-metal-low.yaml", 5500.0),
            ("scenario-c-h100-bare-metal-high.yaml", 7000.0),
        ] {
            let spec = scenario(file);
            let c = compare(&spec, 1, volume(5e9, 1.5e9), None).unwrap();
            assert!(close(c.api_usd_per_month, 27_500.0, 1e-6), "{file}");
            assert!(close(c.pool_usd_per_month(), pool_usd, 1e-9), "{file}");
            assert_eq!(c.cheaper, Cheaper::SelfHosted, "{file}");
        }
    }

    #[test]
    fn run_rate_projects_tokens_per_second_to_730_hours() {
        let spec = scenario("scenario-b-gemma-at-volume.yaml");
        let per_second = 500e6 / SECONDS_PER_MONTH;
        let volume = MonthlyVolume::from_rates(per_second, 0.3 * per_second);
        let status = run_rate(&spec, 1.0, Some(volume), Some(0.25)).unwrap();
        assert!(close(status.input_tokens_per_month, 500e6, 1e-3));
        assert!(close(status.api_monthly_usd, 2750.0, 1e-6));
        assert!(close(status.pool_monthly_usd, 605.0, 1e-9));
        assert!(close(status.idle_monthly_usd, 205.0 * 0.75, 1e-9));
        assert_eq!(status.cheaper, Cheaper::SelfHosted);
        assert_eq!(status.price_source.as_deref(), Some("spec"));
        // Before any traffic: the pool side and the break-even are known, the verdict is not.
        let unseen = run_rate(&spec, 1.0, None, None).unwrap();
        assert!(close(unseen.pool_monthly_usd, 605.0, 1e-9));
        assert_eq!(unseen.cheaper, Cheaper::Unknown);
        assert!(unseen.break_even_input_tokens_per_month.is_some());
    }

    #[test]
    fn hourly_replicas_bill_730_hours_each_loading_or_not() {
        let mut spec = scenario("scenario-a-gemma-small-volume.yaml");
        spec.cost.replica_monthly_usd = None;
        spec.cost.replica_hourly_usd = Some(3.29);
        spec.cost.overheads.clear();
        let pool = pool_monthly(&spec.cost, 3).unwrap();
        assert!(close(pool.hardware_usd_per_month, 3.0 * 3.29 * 730.0, 1e-9));
    }

    #[test]
    fn prices_come_from_the_catalog_unless_the_spec_overrides() {
        let mut compare_to = CompareTo {
            model: "gpt-5".into(),
            input_usd_per_million_tokens: None,
            output_usd_per_million_tokens: None,
            allowed: true,
        };
        let catalog = api_prices(&compare_to).unwrap();
        assert_eq!(catalog.input_usd_per_million_tokens, 1.25);
        assert_eq!(catalog.source, "catalog: gpt-5 (LiteLLM 1.110.2, 2026)");

        compare_to.input_usd_per_million_tokens = Some(2.5);
        let mixed = api_prices(&compare_to).unwrap();
        assert_eq!(mixed.input_usd_per_million_tokens, 2.5);
        assert_eq!(mixed.output_usd_per_million_tokens, 10.0);
        assert!(mixed.source.starts_with("spec (input)"), "{}", mixed.source);

        compare_to.model = "in-house-model".into();
        assert_eq!(
            api_prices(&compare_to),
            None,
            "one price and no catalog entry"
        );
        compare_to.output_usd_per_million_tokens = Some(4.0);
        assert_eq!(api_prices(&compare_to).unwrap().source, "spec");
    }

    #[test]
    fn unknown_without_compare_to_or_prices() {
        let mut spec = scenario("scenario-b-gemma-at-volume.yaml");
        spec.compare_to = None;
        let c = compare(&spec, 1, volume(500e6, 150e6), None).unwrap();
        assert_eq!(
            (c.cheaper, c.ratio, c.break_even_input_tokens_per_month),
            (Cheaper::Unknown, None, None)
        );
        let status = c.to_status(None);
        assert_eq!(status.api_monthly_usd, 0.0);
        assert_eq!(status.price_source, None);

        spec.compare_to = Some(CompareTo {
            model: "not-in-the-catalog".into(),
            input_usd_per_million_tokens: None,
            output_usd_per_million_tokens: None,
            allowed: true,
        });
        let c = compare(&spec, 1, volume(500e6, 150e6), None).unwrap();
        assert_eq!(c.cheaper, Cheaper::Unknown);
    }

    #[test]
    fn self_host_is_required_when_the_api_is_not_allowed() {
        let mut spec = scenario("scenario-a-gemma-small-volume.yaml");
        spec.compare_to.as_mut().unwrap().allowed = false;
        let c = compare(&spec, 1, volume(50e6, 15e6), None).unwrap();
        assert_eq!(c.cheaper, Cheaper::SelfHostRequired);
        // The figures still show what residency costs.
        assert!(close(c.api_usd_per_month, 275.0, 1e-9));
        assert!(c.break_even_input_tokens_per_month.is_some());
    }

    #[test]
    fn without_traffic_the_mix_is_assumed_and_said() {
        let spec = scenario("scenario-b-gemma-at-volume.yaml");
        let c = compare(&spec, 1, volume(0.0, 0.0), Some(0.0)).unwrap();
        assert!(c.output_ratio_assumed);
        assert_eq!(c.output_to_input_ratio, DEFAULT_OUTPUT_TO_INPUT_RATIO);
        assert!(close(
            c.break_even_input_tokens_per_month.unwrap(),
            110e6,
            1.0
        ));
        assert_eq!(c.cheaper, Cheaper::Api, "no tokens cost nothing on the API");
        assert_eq!(c.ratio, None);
        assert_eq!(c.pool_usd_per_million_tokens, None);
        assert_eq!(c.idle_usd_per_month, Some(205.0));
    }

    #[test]
    fn idle_clamps_utilization() {
        let spec = scenario("scenario-b-gemma-at-volume.yaml");
        let over = compare(&spec, 1, volume(1.0, 1.0), Some(1.7)).unwrap();
        assert_eq!(over.idle_usd_per_month, Some(0.0));
        let under = compare(&spec, 1, volume(1.0, 1.0), Some(-0.5)).unwrap();
        assert_eq!(under.idle_usd_per_month, Some(205.0));
    }

    #[test]
    fn cost_spec_errors_say_what_to_set() {
        let mut cost = CostSpec::default();
        assert_eq!(pool_monthly(&cost, 1), Err(CostError::NoReplicaPrice));
        cost.replica_hourly_usd = Some(1.0);
        cost.replica_monthly_usd = Some(1.0);
        assert_eq!(pool_monthly(&cost, 1), Err(CostError::BothReplicaPrices));
        cost.replica_monthly_usd = None;
        cost.replica_hourly_usd = Some(f64::NAN);
        assert!(matches!(
            pool_monthly(&cost, 1),
            Err(CostError::InvalidPrice { .. })
        ));
        assert!(
            CostError::NoReplicaPrice
                .to_string()
                .contains("replicaMonthlyUsd")
        );
    }

    // ---- month to date ----

    /// `replicas` provisioned throughout [from, to], and tokens served evenly over it.
    fn accumulate(
        prev: Option<&MonthToDate>,
        spec: &InferencePoolSpec,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        replicas: u32,
        input_tokens: f64,
        output_tokens: f64,
    ) -> MonthToDate {
        accrue_both(prev, spec, from, to, replicas, input_tokens, output_tokens).month
    }

    fn accrue_both(
        prev: Option<&MonthToDate>,
        spec: &InferencePoolSpec,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        replicas: u32,
        input_tokens: f64,
        output_tokens: f64,
    ) -> Accrued {
        let span = seconds_between(from, to);
        accrue(
            prev,
            spec,
            &Accrual {
                from,
                to,
                replica_seconds: f64::from(replicas) * span,
                input_tokens,
                output_tokens,
                tokens_cover_seconds: span,
                unaccounted_seconds: 0.0,
            },
        )
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn monthly_spec(replica_usd: f64, overhead_usd: f64) -> InferencePoolSpec {
        let mut spec = scenario("scenario-b-gemma-at-volume.yaml");
        spec.cost.replica_monthly_usd = Some(replica_usd);
        spec.cost.overheads = vec![Overhead {
            name: "setup".into(),
            monthly_usd: overhead_usd,
        }];
        spec
    }

    #[test]
    fn a_full_month_accrues_the_monthly_price() {
        let spec = monthly_spec(205.0, 400.0);
        let march = accumulate(
            None,
            &spec,
            at("2026-03-01T00:00:00Z"),
            at("2026-04-01T00:00:00Z"),
            1,
            0.0,
            0.0,
        );
        assert_eq!(march.period, "2026-03");
        assert!(close(march.pool_usd, 605.0, 1e-9));
        assert!(close(march.replica_hours, 744.0, 1e-9));

        // In 15-second sync intervals through February's 28 days: the same $605.
        let mut mtd: Option<MonthToDate> = None;
        let mut t = at("2026-02-01T00:00:00Z");
        while t < at("2026-03-01T00:00:00Z") {
            let next = t + chrono::Duration::seconds(15);
            mtd = Some(accumulate(mtd.as_ref(), &spec, t, next, 1, 1500.0, 450.0));
            t = next;
        }
        let february = mtd.unwrap();
        assert_eq!(february.period, "2026-02");
        assert!(close(february.pool_usd, 605.0, 1e-6));
        assert!(close(february.input_tokens, 28.0 * 86400.0 * 100.0, 1e-3));

        // The next interval opens March without losing anything.
        let next = accumulate(
            Some(&february),
            &spec,
            at("2026-03-01T00:00:00Z"),
            at("2026-03-01T00:00:15Z"),
            1,
            1500.0,
            450.0,
        );
        assert_eq!(next.period, "2026-03");
        assert!(close(next.input_tokens, 1500.0, 1e-9));
    }

    #[test]
    fn readings_at_sub_millisecond_instants_count_every_token() {
        // Readings land at arbitrary instants, not on whole milliseconds: 2 s apart, 0.4567 ms
        // past a millisecond. Each one's tokens count whole (the sum is exact, not 0.05% short).
        let spec = monthly_spec(205.0, 0.0);
        let start = at("2026-03-10T12:00:00Z") + chrono::Duration::nanoseconds(123_456_789);
        let mut mtd: Option<MonthToDate> = None;
        for i in 0..500 {
            let from = start + chrono::Duration::milliseconds(2000 * i);
            let to = from + chrono::Duration::nanoseconds(2_000_456_700);
            mtd = Some(accumulate(mtd.as_ref(), &spec, from, to, 1, 0.0, 1000.0));
        }
        let m = mtd.unwrap();
        assert_eq!(m.output_tokens, 500.0 * 1000.0, "{}", m.output_tokens);
    }

    #[test]
    fn a_new_month_closes_the_old_one_and_keeps_its_totals() {
        let spec = monthly_spec(205.0, 0.0);
        let march = accumulate(
            None,
            &spec,
            at("2026-03-31T23:00:00Z"),
            at("2026-03-31T23:59:00Z"),
            1,
            59.0,
            0.0,
        );
        let step = accrue_both(
            Some(&march),
            &spec,
            at("2026-03-31T23:59:00Z"),
            at("2026-04-01T00:01:00Z"),
            2,
            120.0,
            0.0,
        );
        let april = step.month;
        assert_eq!(april.period, "2026-04");
        assert!(
            close(april.input_tokens, 60.0, 1e-9),
            "only April's half of the tokens"
        );
        assert!(close(april.replica_hours, 2.0 / 60.0, 1e-9));
        assert!(close(
            april.pool_usd,
            2.0 * 205.0 * 60.0 / (30.0 * 86400.0),
            1e-9
        ));
        let closed = step.closed.expect("March closed");
        assert_eq!(closed.period, "2026-03");
        assert_eq!(closed.accounted_until, to_time(at("2026-04-01T00:00:00Z")));
        assert!(
            close(closed.input_tokens, 59.0 + 60.0, 1e-9),
            "March keeps its last minute"
        );
        assert!(close(closed.replica_hours, 59.0 / 60.0 + 2.0 / 60.0, 1e-9));
    }

    #[test]
    fn replica_seconds_bill_scheduled_pods_and_half_the_last_gap_for_those_gone() {
        let t0 = at("2026-05-10T00:00:00Z");
        let t1 = at("2026-05-10T00:01:00Z");
        let pods = [
            ProvisionedPod {
                scheduled_at: t0 - chrono::Duration::hours(1),
                ended_at: None,
            },
            // Scheduled half way through the span: bills its last 30 s.
            ProvisionedPod {
                scheduled_at: t0 + chrono::Duration::seconds(30),
                ended_at: None,
            },
        ];
        // Three were billed at t0; two of them have gone since (half the span each).
        assert!(close(
            replica_seconds(&pods, 3, t0, None, t1),
            60.0 + 30.0 + 2.0 * 30.0,
            1e-9
        ));
        // Seen still there 40 s in: they bill 40 s plus half the 20 s after.
        let look = t0 + chrono::Duration::seconds(40);
        assert!(close(
            replica_seconds(&pods, 3, t0, Some(look), t1),
            60.0 + 30.0 + 2.0 * 50.0,
            1e-9
        ));
        assert!(close(replica_seconds(&pods, 0, t0, None, t1), 90.0, 1e-9));
        assert!(close(replica_seconds(&[], 0, t0, None, t1), 0.0, 1e-9));
    }

    #[test]
    fn hourly_prices_accrue_per_real_hour() {
        let mut spec = monthly_spec(0.0, 0.0);
        spec.cost.replica_monthly_usd = None;
        spec.cost.replica_hourly_usd = Some(2.0);
        let mtd = accumulate(
            None,
            &spec,
            at("2026-05-10T00:00:00Z"),
            at("2026-05-10T10:00:00Z"),
            3,
            1e6,
            1e5,
        );
        assert!(close(mtd.pool_usd, 60.0, 1e-9));
        // gpt-5 at the spec's prices: 1M × $2.50 + 100K × $10 per 1M.
        assert!(close(mtd.api_usd, 3.5, 1e-9));
    }

    #[test]
    fn accounted_until_survives_a_status_round_trip() {
        let spec = monthly_spec(205.0, 400.0);
        let mtd = accumulate(
            None,
            &spec,
            at("2026-05-10T00:00:00Z"),
            at("2026-05-10T00:00:15.750Z"),
            1,
            1500.0,
            450.0,
        );
        let json = serde_json::to_string(&mtd).unwrap();
        let back: MonthToDate = serde_json::from_str(&json).unwrap();
        assert_eq!(back, mtd);
        // The same span again (a retry): no hardware twice; tokens come only with new increments.
        let again = accumulate(
            Some(&back),
            &spec,
            at("2026-05-10T00:00:00Z"),
            at("2026-05-10T00:00:15.750Z"),
            1,
            0.0,
            0.0,
        );
        assert_eq!(again, mtd);
    }

    fn arb_spec() -> impl Strategy<Value = InferencePoolSpec> {
        (
            0.0f64..10_000.0,
            0.0f64..5000.0,
            any::<bool>(),
            0.0f64..20.0,
            0.0f64..100.0,
        )
            .prop_map(|(replica_usd, overhead_usd, hourly, p_in, p_out)| {
                let mut spec = monthly_spec(replica_usd, overhead_usd);
                if hourly {
                    spec.cost.replica_monthly_usd = None;
                    spec.cost.replica_hourly_usd = Some(replica_usd / 730.0);
                }
                let c = spec.compare_to.as_mut().unwrap();
                c.input_usd_per_million_tokens = Some(p_in);
                c.output_usd_per_million_tokens = Some(p_out);
                spec
            })
    }

    proptest! {
        #[test]
        fn pool_cost_grows_with_replicas(spec in arb_spec(), replicas in 0u32..64) {
            let fewer = pool_monthly(&spec.cost, replicas).unwrap().total_usd_per_month();
            let more = pool_monthly(&spec.cost, replicas + 1).unwrap().total_usd_per_month();
            prop_assert!(more >= fewer);
        }

        #[test]
        fn bills_grow_with_prices(
            spec in arb_spec(),
            bump in 0.0f64..100.0,
            input in 0.0f64..1e10,
            output in 0.0f64..1e10,
        ) {
            let base = compare(&spec, 2, volume(input, output), None).unwrap();
            let mut dearer = spec.clone();
            match &mut dearer.cost.replica_hourly_usd {
                Some(h) => *h += bump,
                None => *dearer.cost.replica_monthly_usd.as_mut().unwrap() += bump,
            }
            let c = dearer.compare_to.as_mut().unwrap();
            *c.input_usd_per_million_tokens.as_mut().unwrap() += bump;
            *c.output_usd_per_million_tokens.as_mut().unwrap() += bump;
            let dear = compare(&dearer, 2, volume(input, output), None).unwrap();
            prop_assert!(dear.pool_usd_per_month() >= base.pool_usd_per_month());
            prop_assert!(dear.api_usd_per_month >= base.api_usd_per_month);
        }

        #[test]
        fn at_break_even_the_bills_agree_within_a_cent(
            spec in arb_spec(),
            replicas in 1u32..8,
            output_ratio in 0.01f64..5.0,
        ) {
            let probe = compare(&spec, replicas, volume(1e6, output_ratio * 1e6), None).unwrap();
            if let Some(v) = probe.break_even_input_tokens_per_month {
                let at_v = compare(&spec, replicas, volume(v, output_ratio * v), None).unwrap();
                prop_assert!((at_v.api_usd_per_month - at_v.pool_usd_per_month()).abs() < 0.01,
                    "api {} pool {}", at_v.api_usd_per_month, at_v.pool_usd_per_month());
            }
        }

        #[test]
        fn month_to_date_is_additive(
            spec in arb_spec(),
            start in 0i64..(20 * 86400),
            first in 1i64..(3 * 86400),
            second in 1i64..(3 * 86400),
            replicas in 0u32..8,
            tokens_per_second in 0.0f64..100_000.0,
        ) {
            let t0 = at("2026-07-01T00:00:00Z") + chrono::Duration::seconds(start);
            let t1 = t0 + chrono::Duration::seconds(first);
            let t2 = t1 + chrono::Duration::seconds(second);
            let tokens = |a: DateTime<Utc>, b: DateTime<Utc>| tokens_per_second * (b - a).num_seconds() as f64;
            let whole = accumulate(None, &spec, t0, t2, replicas, tokens(t0, t2), 0.3 * tokens(t0, t2));
            let half = accumulate(None, &spec, t0, t1, replicas, tokens(t0, t1), 0.3 * tokens(t0, t1));
            let both = accumulate(Some(&half), &spec, t1, t2, replicas, tokens(t1, t2), 0.3 * tokens(t1, t2));
            let near = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
            prop_assert_eq!(&both.accounted_until, &whole.accounted_until);
            prop_assert!(near(both.input_tokens, whole.input_tokens));
            prop_assert!(near(both.output_tokens, whole.output_tokens));
            prop_assert!(near(both.replica_hours, whole.replica_hours));
            prop_assert!(near(both.pool_usd, whole.pool_usd));
            prop_assert!(near(both.api_usd, whole.api_usd));
        }

        #[test]
        fn reapplying_an_accounted_span_adds_no_hardware(
            spec in arb_spec(),
            start in 0i64..(20 * 86400),
            length in 1i64..86400,
            overlap in 0i64..86400,
            tokens in 0.0f64..1e9,
        ) {
            let t0 = at("2026-07-01T00:00:00Z") + chrono::Duration::seconds(start);
            let t1 = t0 + chrono::Duration::seconds(length);
            let once = accumulate(None, &spec, t0, t1, 2, tokens, tokens);
            let twice = accumulate(Some(&once), &spec, t0, t1, 2, 0.0, 0.0);
            prop_assert_eq!(&twice, &once);
            // A span that ends inside what is already counted adds no hardware either; its
            // tokens (new counter increments) still count.
            let inner_end = t1 - chrono::Duration::seconds(overlap.min(length));
            let inside = accumulate(Some(&once), &spec, t0 - chrono::Duration::seconds(overlap), inner_end, 2, tokens, 0.0);
            prop_assert_eq!(inside.pool_usd, once.pool_usd);
            prop_assert_eq!(inside.replica_hours, once.replica_hours);
            prop_assert!((inside.input_tokens - once.input_tokens - tokens).abs() <= 1e-6 * tokens.max(1.0));
        }

        #[test]
        fn hardware_equals_the_integral_of_provisioned_replicas(
            spec in arb_spec(),
            steps in proptest::collection::vec((1i64..120, 0u32..6), 1..60),
        ) {
            let mut t = at("2026-07-01T00:00:00Z");
            let mut mtd: Option<MonthToDate> = None;
            let mut integral = 0.0;
            for (seconds, replicas) in steps {
                let next = t + chrono::Duration::seconds(seconds);
                mtd = Some(accumulate(mtd.as_ref(), &spec, t, next, replicas, 0.0, 0.0));
                integral += f64::from(replicas) * seconds as f64;
                t = next;
            }
            let hours = mtd.unwrap().replica_hours;
            prop_assert!((hours * 3600.0 - integral).abs() <= 1e-6 * integral.max(1.0), "{hours} h vs {integral} s");
        }
    }
}
