//! Numbers for people: dollars, percentages, token counts and the "cheaper" column as `kubectl get`
//! and `crossover plan` show them, and the parser for token counts typed on the command line.
//! Pure; rounding happens here only, never in the cost model.

use crate::api::{Cheaper, CostStatus, DisplayStatus};
use thiserror::Error;

/// Dollars: whole dollars with thousands separators from $10 up ("$2,750"), cents below ("$0.42").
pub fn usd(amount_usd: f64) -> String {
    if !amount_usd.is_finite() {
        return "-".to_string();
    }
    let sign = if amount_usd < 0.0 { "-" } else { "" };
    let abs = amount_usd.abs();
    if abs < 10.0 {
        // Cents matter below $10 (per-1M-token prices, small pools); above, they are noise.
        let cents = format!("{abs:.2}");
        if cents == "0.00" {
            return "$0".to_string();
        }
        return format!("{sign}${cents}");
    }
    format!("{sign}${}", thousands(abs.round()))
}

/// A share as a whole percentage: 0.341 → "34%".
pub fn percent(share: f64) -> String {
    if !share.is_finite() {
        return "-".to_string();
    }
    format!("{:.0}%", share * 100.0)
}

/// A ratio: one decimal under 10 (4.545 → "4.5x"), whole from 10 up (110.2 → "110x").
pub fn ratio(times: f64) -> String {
    if times < 9.95 {
        format!("{times:.1}x")
    } else {
        format!("{times:.0}x")
    }
}

/// The printer column for which option is cheaper: "self-host 4.5x", "API 6.2x",
/// "self-host (required)", "-" when unknown.
pub fn cheaper(cheaper: Cheaper, times: Option<f64>) -> String {
    let with_ratio = |who: &str| match times {
        Some(t) if t.is_finite() => format!("{who} {}", ratio(t)),
        _ => who.to_string(),
    };
    match cheaper {
        Cheaper::SelfHosted => with_ratio("self-host"),
        Cheaper::Api => with_ratio("API"),
        Cheaper::SelfHostRequired => "self-host (required)".to_string(),
        Cheaper::Unknown => "-".to_string(),
    }
}

/// Token counts with K/M/B suffixes: 500e6 → "500M", 1.5e9 → "1.5B", 310e6 → "310M".
/// Three significant figures at most, trailing zeros dropped.
pub fn tokens(count: f64) -> String {
    if !count.is_finite() {
        return "-".to_string();
    }
    let abs = count.abs();
    let (scaled, suffix) = if abs >= 1e12 {
        (count / 1e12, "T")
    } else if abs >= 1e9 {
        (count / 1e9, "B")
    } else if abs >= 1e6 {
        (count / 1e6, "M")
    } else if abs >= 1e3 {
        (count / 1e3, "K")
    } else {
        (count, "")
    };
    let decimals = if scaled.abs() >= 100.0 {
        0
    } else if scaled.abs() >= 10.0 {
        1
    } else {
        2
    };
    let mut text = format!("{scaled:.decimals$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{text}{suffix}")
}

/// A duration in seconds as people say it: "45s", "10m", "2h5m".
pub fn duration_seconds(seconds: i64) -> String {
    let s = seconds.max(0);
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        if s % 60 == 0 {
            format!("{}m", s / 60)
        } else {
            format!("{}m{}s", s / 60, s % 60)
        }
    } else if s % 3600 / 60 == 0 {
        format!("{}h", s / 3600)
    } else {
        format!("{}h{}m", s / 3600, s % 3600 / 60)
    }
}

/// `status.display`, the printer columns of `kubectl get ipool`: "2/3", "34%", "$2,750", "$605",
/// "self-host 4.5x". Columns without data stay unset and print as `<none>`.
pub fn display(
    replicas: i32,
    ready_replicas: i32,
    utilization: Option<f64>,
    cost: Option<&CostStatus>,
) -> DisplayStatus {
    let api_known = cost.is_some_and(|c| c.cheaper != Cheaper::Unknown || c.price_source.is_some());
    DisplayStatus {
        ready: Some(format!("{ready_replicas}/{replicas}")),
        utilization: utilization.filter(|u| u.is_finite()).map(percent),
        pool_monthly: cost.map(|c| usd(c.pool_monthly_usd)),
        api_monthly: cost.filter(|_| api_known).map(|c| usd(c.api_monthly_usd)),
        cheaper: cost.map(|c| cheaper(c.cheaper, c.ratio)),
    }
}

/// A count with thousands separators, rounded: 2840.4 → "2,840", -1500 → "-1,500".
pub fn thousands(value: f64) -> String {
    let rounded = value.round();
    let digits = format!("{}", rounded.abs() as u64);
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if rounded < 0.0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A token count that could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParseTokensError {
    #[error("empty token count: give a number such as 500M, 1.5B or 20000")]
    Empty,
    #[error(
        "{0:?} is not a token count: use a number with an optional K, M or B suffix, such as 500M or 1.5B"
    )]
    Invalid(String),
    #[error("{0:?} is negative: a token count is zero or more")]
    Negative(String),
}

/// Reads a token count: plain numbers ("20000", "1e6") or K/M/B suffixes, any case, with decimals
/// ("1.5B"); underscores and commas as digit separators are accepted ("1,000,000").
pub fn parse_tokens(text: &str) -> Result<f64, ParseTokensError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ParseTokensError::Empty);
    }
    let cleaned: String = trimmed.chars().filter(|c| *c != '_' && *c != ',').collect();
    let (number, multiplier) = match cleaned.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&cleaned[..cleaned.len() - 1], 1e3),
        Some('M') => (&cleaned[..cleaned.len() - 1], 1e6),
        Some('B') | Some('G') => (&cleaned[..cleaned.len() - 1], 1e9),
        Some('T') => (&cleaned[..cleaned.len() - 1], 1e12),
        _ => (cleaned.as_str(), 1.0),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| ParseTokensError::Invalid(trimmed.to_string()))?;
    if !value.is_finite() {
        return Err(ParseTokensError::Invalid(trimmed.to_string()));
    }
    if value < 0.0 {
        return Err(ParseTokensError::Negative(trimmed.to_string()));
    }
    Ok(value * multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_are_whole_with_separators_from_ten_up() {
        assert_eq!(usd(2750.0), "$2,750");
        assert_eq!(usd(1705.0), "$1,705");
        assert_eq!(usd(27_500.0), "$27,500");
        assert_eq!(usd(4803.4), "$4,803");
        assert_eq!(usd(1_234_567.0), "$1,234,567");
        assert_eq!(usd(605.0), "$605");
        assert_eq!(usd(10.0), "$10");
        assert_eq!(usd(999.5), "$1,000");
    }

    #[test]
    fn dollars_under_ten_show_cents() {
        assert_eq!(usd(0.42), "$0.42");
        assert_eq!(usd(9.994), "$9.99");
        assert_eq!(usd(2.5), "$2.50");
        assert_eq!(usd(0.0), "$0");
        assert_eq!(usd(-3.2), "-$3.20");
        assert_eq!(usd(f64::NAN), "-");
    }

    #[test]
    fn percentages_are_whole() {
        assert_eq!(percent(0.341), "34%");
        assert_eq!(percent(1.04), "104%");
        assert_eq!(percent(0.0), "0%");
    }

    #[test]
    fn cheaper_column() {
        assert_eq!(
            cheaper(Cheaper::SelfHosted, Some(2750.0 / 605.0)),
            "self-host 4.5x"
        );
        assert_eq!(cheaper(Cheaper::Api, Some(1705.0 / 275.0)), "API 6.2x");
        assert_eq!(
            cheaper(Cheaper::SelfHostRequired, Some(3.0)),
            "self-host (required)"
        );
        assert_eq!(cheaper(Cheaper::Unknown, None), "-");
        assert_eq!(cheaper(Cheaper::Api, None), "API");
        assert_eq!(cheaper(Cheaper::Api, Some(110.02)), "API 110x");
        assert_eq!(ratio(9.96), "10x");
    }

    #[test]
    fn printer_columns() {
        let cost = CostStatus {
            run_rate_seconds: None,
            pool_monthly_usd: 605.0,
            api_monthly_usd: 2750.0,
            cheaper: Cheaper::SelfHosted,
            ratio: Some(2750.0 / 605.0),
            break_even_input_tokens_per_month: Some(110e6),
            input_tokens_per_month: 500e6,
            output_tokens_per_month: 150e6,
            pool_usd_per_million_tokens: Some(0.93),
            idle_monthly_usd: 0.0,
            api_model: Some("gpt-5".into()),
            api_input_usd_per_million_tokens: Some(2.5),
            api_output_usd_per_million_tokens: Some(10.0),
            price_source: Some("spec".into()),
            month_to_date: None,
            billed_replicas: Some(3),
            previous_month: None,
        };
        let d = display(3, 2, Some(0.341), Some(&cost));
        assert_eq!(d.ready.as_deref(), Some("2/3"));
        assert_eq!(d.utilization.as_deref(), Some("34%"));
        assert_eq!(d.pool_monthly.as_deref(), Some("$605"));
        assert_eq!(d.api_monthly.as_deref(), Some("$2,750"));
        assert_eq!(d.cheaper.as_deref(), Some("self-host 4.5x"));

        let unpriced = CostStatus {
            cheaper: Cheaper::Unknown,
            ratio: None,
            price_source: None,
            ..cost
        };
        let d = display(1, 0, None, Some(&unpriced));
        assert_eq!((d.utilization, d.api_monthly), (None, None));
        assert_eq!(d.cheaper.as_deref(), Some("-"));
    }

    #[test]
    fn token_counts() {
        assert_eq!(tokens(500e6), "500M");
        assert_eq!(tokens(1.5e9), "1.5B");
        assert_eq!(tokens(110e6), "110M");
        assert_eq!(tokens(310e6), "310M");
        assert_eq!(tokens(5e9), "5B");
        assert_eq!(tokens(15e6), "15M");
        assert_eq!(tokens(2.5e3), "2.5K");
        assert_eq!(tokens(42.0), "42");
        assert_eq!(tokens(1.0e6), "1M");
        assert_eq!(tokens(3.16e6), "3.16M");
    }

    #[test]
    fn durations() {
        assert_eq!(duration_seconds(45), "45s");
        assert_eq!(duration_seconds(600), "10m");
        assert_eq!(duration_seconds(90), "1m30s");
        assert_eq!(duration_seconds(7500), "2h5m");
        assert_eq!(duration_seconds(3600), "1h");
    }

    #[test]
    fn parses_suffixes_in_any_case() {
        assert_eq!(parse_tokens("500M"), Ok(500e6));
        assert_eq!(parse_tokens("500m"), Ok(500e6));
        assert_eq!(parse_tokens("1.5B"), Ok(1.5e9));
        assert_eq!(parse_tokens("1.5b"), Ok(1.5e9));
        assert_eq!(parse_tokens("20k"), Ok(20e3));
        assert_eq!(parse_tokens("20000"), Ok(20_000.0));
        assert_eq!(parse_tokens(" 1e6 "), Ok(1e6));
        assert_eq!(parse_tokens("1,000,000"), Ok(1e6));
        assert_eq!(parse_tokens("0"), Ok(0.0));
    }

    #[test]
    fn rejects_what_is_not_a_count() {
        assert_eq!(parse_tokens(""), Err(ParseTokensError::Empty));
        assert!(matches!(
            parse_tokens("lots"),
            Err(ParseTokensError::Invalid(_))
        ));
        assert!(matches!(
            parse_tokens("M"),
            Err(ParseTokensError::Invalid(_))
        ));
        assert!(matches!(
            parse_tokens("5X"),
            Err(ParseTokensError::Invalid(_))
        ));
        assert!(matches!(
            parse_tokens("inf"),
            Err(ParseTokensError::Invalid(_))
        ));
        assert!(matches!(
            parse_tokens("-5M"),
            Err(ParseTokensError::Negative(_))
        ));
        let message = parse_tokens("lots").unwrap_err().to_string();
        assert!(message.contains("500M"), "{message}");
    }
}
