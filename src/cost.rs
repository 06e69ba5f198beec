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
    let replica_price = ReplicaPrice::from_spec(cost)?;
    Ok(PoolMonthly {
        replicas,
        replica_price,
        hardware_usd_per_month: f64::from(replicas) * replica_price.usd_per_month(),
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
    let pool = pool_monthly(&spec.cost, replicas)?;
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

/// `status.cost` at the current run-rate: the token rates observed over the trailing window
/// (`spec.cost.runRateWindowSeconds`) projected to a 730-hour month, priced with the provisioned
/// replicas. The caller passes the month-to-date totals it keeps (see [`accumulate`]).
pub fn run_rate(
    spec: &InferencePoolSpec,
    input_tokens_per_second: f64,
    output_tokens_per_second: f64,
    replicas: u32,
    utilization: Option<f64>,
    month_to_date: Option<MonthToDate>,
) -> Result<CostStatus, CostError> {
    let volume = MonthlyVolume::from_rates(input_tokens_per_second, output_tokens_per_second);
    Ok(compare(spec, replicas, volume, utilization)?.to_status(month_to_date))
}

/// Adds the interval [from, to] to the calendar month's (UTC) totals. `replicas` were provisioned
/// throughout and `input_tokens`/`output_tokens` were served over the whole interval.
///
/// Restart-safe: only the part after `prev.accounted_until` is added, so re-applying an interval
/// already counted adds nothing. `accounted_until` is kept to whole seconds (the precision status
/// round-trips) and the interval's last fraction of a second is left out rather than risk counting
/// it twice. When `to` falls in a new month a fresh period starts at the month boundary; the part
/// of the interval before it is dropped (at most one sync interval), and tokens are split pro rata
/// by time.
///
/// Monthly prices and overheads accrue by seconds over the calendar month's real length, so a full
/// month of one replica at replicaMonthlyUsd=205 accrues exactly $205 plus the overheads. Hourly
/// prices accrue per real hour, as clouds bill (744 hours in a 31-day month, against 730 in the
/// run-rate). A spec without a valid replica price accrues no hardware cost; the controller rejects
/// such specs before it gets here.
pub fn accumulate(
    prev: Option<&MonthToDate>,
    spec: &InferencePoolSpec,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    replicas: u32,
    input_tokens: f64,
    output_tokens: f64,
) -> MonthToDate {
    let end = floor_to_second(to);
    let prev_until = prev.map(|p| from_time(&p.accounted_until));
    if let (Some(p), Some(until)) = (prev, prev_until)
        && end <= until
    {
        return p.clone();
    }

    // An interval ending exactly at midnight on the 1st belongs to the month it closes.
    let month_anchor = end - chrono::Duration::nanoseconds(1);
    let (month_start, next_month_start) = month_bounds(month_anchor);
    let period = period_of(month_anchor);
    let mut totals = match (prev, prev_until) {
        (Some(p), Some(_)) if p.period == period => p.clone(),
        _ => MonthToDate {
            period,
            accounted_until: to_time(month_start),
            input_tokens: 0.0,
            output_tokens: 0.0,
            replica_hours: 0.0,
            pool_usd: 0.0,
            api_usd: 0.0,
        },
    };
    let already = from_time(&totals.accounted_until);
    let start = from.max(already).max(month_start);
    if start >= end {
        return totals;
    }
    let end_time = to_time(end);

    let counted_seconds = seconds_between(start, end);
    let interval_seconds = seconds_between(from, to);
    // Tokens are reported for the whole interval: the counted share assumes an even rate over it.
    let share = if interval_seconds > 0.0 {
        (counted_seconds / interval_seconds).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let input = input_tokens.max(0.0) * share;
    let output = output_tokens.max(0.0) * share;
    let month_seconds = seconds_between(month_start, next_month_start);
    let month_share = counted_seconds / month_seconds;
    let replicas = f64::from(replicas);
    let hardware_usd = match ReplicaPrice::from_spec(&spec.cost) {
        Ok(ReplicaPrice::Hourly { usd_per_hour }) => {
            replicas * usd_per_hour * counted_seconds / 3600.0
        }
        Ok(ReplicaPrice::Monthly { usd_per_month }) => replicas * usd_per_month * month_share,
        Err(_) => 0.0,
    };
    let overheads_usd: f64 = spec
        .cost
        .overheads
        .iter()
        .map(|o| o.monthly_usd)
        .sum::<f64>()
        * month_share;
    let api_usd = spec
        .compare_to
        .as_ref()
        .and_then(api_prices)
        .map_or(0.0, |p| p.usd(input, output));

    totals.accounted_until = end_time;
    totals.input_tokens += input;
    totals.output_tokens += output;
    totals.replica_hours += replicas * counted_seconds / 3600.0;
    totals.pool_usd += hardware_usd + overheads_usd;
    totals.api_usd += api_usd;
    totals
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
        let status = run_rate(&spec, per_second, 0.3 * per_second, 1, Some(0.25), None).unwrap();
        assert!(close(status.input_tokens_per_month, 500e6, 1e-3));
        assert!(close(status.api_monthly_usd, 2750.0, 1e-6));
        assert!(close(status.pool_monthly_usd, 605.0, 1e-9));
        assert!(close(status.idle_monthly_usd, 205.0 * 0.75, 1e-9));
        assert_eq!(status.cheaper, Cheaper::SelfHosted);
        assert_eq!(status.price_source.as_deref(), Some("spec"));
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
    fn a_new_month_starts_a_fresh_period_at_the_boundary() {
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
        let april = accumulate(
            Some(&march),
            &spec,
            at("2026-03-31T23:59:00Z"),
            at("2026-04-01T00:01:00Z"),
            2,
            120.0,
            0.0,
        );
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
        let again = accumulate(
            Some(&back),
            &spec,
            at("2026-05-10T00:00:00Z"),
            at("2026-05-10T00:00:15.750Z"),
            1,
            1500.0,
            450.0,
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
        fn reapplying_an_accounted_span_adds_nothing(
            spec in arb_spec(),
            start in 0i64..(20 * 86400),
            length in 1i64..86400,
            overlap in 0i64..86400,
            tokens in 0.0f64..1e9,
        ) {
            let t0 = at("2026-07-01T00:00:00Z") + chrono::Duration::seconds(start);
            let t1 = t0 + chrono::Duration::seconds(length);
            let once = accumulate(None, &spec, t0, t1, 2, tokens, tokens);
            let twice = accumulate(Some(&once), &spec, t0, t1, 2, tokens, tokens);
            prop_assert_eq!(&twice, &once);
            // A span that ends inside what is already counted adds nothing either.
            let inner_end = t1 - chrono::Duration::seconds(overlap.min(length));
            let inside = accumulate(Some(&once), &spec, t0 - chrono::Duration::seconds(overlap), inner_end, 2, tokens, tokens);
            prop_assert_eq!(&inside, &once);
        }
    }
}
