//! Request traces for the simulator: the Azure LLM inference trace CSV and a JSONL format, read
//! into requests, then bucketed into per-second demand (optionally scaled by overlaid copies,
//! repeated and shaped by a synthetic day).

use chrono::NaiveDateTime;
use serde::Deserialize;

/// One request of a trace.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Request {
    /// Arrival, seconds after the trace's first request.
    pub arrival_seconds: f64,
    /// Prompt (context) tokens.
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
}

/// Why a trace could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TraceError {
    #[error("line {line}: {message}")]
    Row { line: usize, message: String },
    #[error(
        "the CSV header must name TIMESTAMP, ContextTokens and GeneratedTokens (the Azure LLM inference trace format), found {0:?}"
    )]
    Header(String),
    #[error("the trace holds no requests")]
    Empty,
}

/// Trace file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceFormat {
    /// `TIMESTAMP,ContextTokens,GeneratedTokens`, timestamps like `2023-11-16 18:17:03.9799600`.
    AzureCsv,
    /// One object a line: `{"timestamp": <ms>, "input_length": n, "output_length": n}`.
    Jsonl,
}

impl TraceFormat {
    /// From the file name, else from the first non-blank character.
    pub fn detect(path: &str, text: &str) -> Self {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".jsonl") || lower.ends_with(".json") || lower.ends_with(".ndjson") {
            return Self::Jsonl;
        }
        if lower.ends_with(".csv") {
            return Self::AzureCsv;
        }
        match text.trim_start().chars().next() {
            Some('{') => Self::Jsonl,
            _ => Self::AzureCsv,
        }
    }
}

/// Reads a trace; requests come back sorted by arrival, the first at 0 s.
pub fn parse(text: &str, format: TraceFormat) -> Result<Vec<Request>, TraceError> {
    let mut requests = match format {
        TraceFormat::AzureCsv => parse_azure_csv(text)?,
        TraceFormat::Jsonl => parse_jsonl(text)?,
    };
    if requests.is_empty() {
        return Err(TraceError::Empty);
    }
    requests.sort_by(|a, b| a.arrival_seconds.total_cmp(&b.arrival_seconds));
    let first = requests[0].arrival_seconds;
    for r in &mut requests {
        r.arrival_seconds -= first;
    }
    Ok(requests)
}

fn parse_azure_csv(text: &str) -> Result<Vec<Request>, TraceError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(TraceError::Empty);
    };
    let names: Vec<String> = header
        .split(',')
        .map(|h| h.trim().trim_start_matches('\u{feff}').to_ascii_lowercase())
        .collect();
    let column = |name: &str| names.iter().position(|n| n == name);
    let (Some(ts), Some(ctx), Some(generated)) = (
        column("timestamp"),
        column("contexttokens"),
        column("generatedtokens"),
    ) else {
        return Err(TraceError::Header(header.to_string()));
    };
    let mut out = Vec::new();
    for (index, line) in lines {
        let row = |message: String| TraceError::Row {
            line: index + 1,
            message,
        };
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != names.len() {
            return Err(row(format!(
                "expected {} fields, found {}",
                names.len(),
                fields.len()
            )));
        }
        let when =
            NaiveDateTime::parse_from_str(fields[ts], "%Y-%m-%d %H:%M:%S%.f").map_err(|e| {
                row(format!(
                    "TIMESTAMP {:?} is not like 2023-11-16 18:17:03.9799600: {e}",
                    fields[ts]
                ))
            })?;
        let tokens = |i: usize, name: &str| {
            fields[i].parse::<u64>().map_err(|_| {
                row(format!(
                    "{name} {:?} is not a whole number of tokens",
                    fields[i]
                ))
            })
        };
        out.push(Request {
            arrival_seconds: when.and_utc().timestamp_micros() as f64 / 1e6,
            input_tokens: tokens(ctx, "ContextTokens")?,
            output_tokens: tokens(generated, "GeneratedTokens")?,
        });
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRow {
    /// Milliseconds.
    timestamp: f64,
    input_length: u64,
    output_length: u64,
}

fn parse_jsonl(text: &str) -> Result<Vec<Request>, TraceError> {
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: JsonRow = serde_json::from_str(line).map_err(|e| TraceError::Row {
            line: index + 1,
            message: format!(
                "expected {{\"timestamp\": ms, \"input_length\": n, \"output_length\": n}}: {e}"
            ),
        })?;
        if !row.timestamp.is_finite() {
            return Err(TraceError::Row {
                line: index + 1,
                message: "timestamp is not a number of milliseconds".into(),
            });
        }
        out.push(Request {
            arrival_seconds: row.timestamp / 1000.0,
            input_tokens: row.input_length,
            output_tokens: row.output_length,
        });
    }
    Ok(out)
}

/// Demand per second of simulated time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Workload {
    /// Prompt tokens arriving in each second.
    pub input_tokens: Vec<f64>,
    /// Generated tokens requested in each second.
    pub output_tokens: Vec<f64>,
    /// Requests arriving in each second.
    pub requests: Vec<f64>,
    /// True when repeated or reshaped: not a real recording.
    pub synthetic: bool,
    /// How it was built, for the report.
    pub description: String,
}

impl Workload {
    pub fn seconds(&self) -> usize {
        self.requests.len()
    }
}

/// How to turn a trace into the workload simulated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shape {
    /// Multiplies the arrival rate by overlaying time-shifted copies of the trace (see [`workload`]).
    pub load_scale: f64,
    /// Copies of the (scaled) trace played back to back.
    pub repeat: u32,
    /// Modulates the rate by a synthetic day (0.5x at midnight, 1.5x at noon, mean 1x).
    pub diurnal: bool,
}

impl Default for Shape {
    fn default() -> Self {
        Self {
            load_scale: 1.0,
            repeat: 1,
            diurnal: false,
        }
    }
}

/// The golden ratio's fractional part: `i * GOLDEN mod 1` spreads any prefix of requests evenly
/// over [0, 1), so thinning by it keeps a fraction of the requests without clumping or randomness.
const GOLDEN: f64 = 0.618_033_988_749_895;

/// Buckets `requests` into seconds, shaped by `shape`.
///
/// A load scale of X plays `ceil(X)` copies of the trace over the same duration, copy `k` shifted
/// circularly by the fractional part of `k` times the golden ratio of it (evenly spread, never
/// periodic), the last copy thinned to the fractional part (X below 1
/// thins the one copy). More traffic is more users: the trace keeps its length and the time scale
/// of its bursts, and bursts of different copies overlap as independent users' would. Scaling by
/// compressing time instead would shorten every burst along with the trace, so a 180 s replica
/// startup would face bursts eight times shorter at x8 than any real pool sees.
pub fn workload(requests: &[Request], shape: Shape, label: &str) -> Workload {
    let scale = if shape.load_scale.is_finite() && shape.load_scale > 0.0 {
        shape.load_scale
    } else {
        1.0
    };
    let last = requests
        .iter()
        .map(|r| r.arrival_seconds)
        .fold(0.0, f64::max);
    let seconds = last.floor() as usize + 1;
    let mut w = Workload {
        input_tokens: vec![0.0; seconds],
        output_tokens: vec![0.0; seconds],
        requests: vec![0.0; seconds],
        ..Default::default()
    };
    let copies = scale.ceil().max(1.0) as usize;
    for copy in 0..copies {
        // Share of this copy's requests kept: 1 for all but the last, the fraction for the last.
        let keep = (scale - copy as f64).min(1.0);
        // Shifts at multiples of the golden ratio spread the copies evenly without making the
        // sum periodic: shifts of k / copies would turn x4 into one quarter hour played 4 times.
        let shift = seconds as f64 * (copy as f64 * GOLDEN).fract();
        for (i, r) in requests.iter().enumerate() {
            if keep < 1.0 && (i as f64 * GOLDEN).fract() >= keep {
                continue;
            }
            let s = ((r.arrival_seconds + shift).floor() as usize) % seconds;
            w.input_tokens[s] += r.input_tokens as f64;
            w.output_tokens[s] += r.output_tokens as f64;
            w.requests[s] += 1.0;
        }
    }
    let repeat = shape.repeat.max(1) as usize;
    if repeat > 1 {
        for v in [&mut w.input_tokens, &mut w.output_tokens, &mut w.requests] {
            *v = v.repeat(repeat);
        }
    }
    if shape.diurnal {
        for s in 0..w.seconds() {
            // A day with its trough at midnight (t = 0) and its peak at noon; the mean is 1x.
            let day = s as f64 / 86_400.0;
            let factor = 1.0 - 0.5 * (2.0 * std::f64::consts::PI * day).cos();
            w.input_tokens[s] *= factor;
            w.output_tokens[s] *= factor;
            w.requests[s] *= factor;
        }
    }
    w.synthetic = scale != 1.0 || repeat > 1 || shape.diurnal;
    w.description = format!(
        "{label}{}{}{}",
        if scale != 1.0 {
            format!(", load x{scale}")
        } else {
            String::new()
        },
        if repeat > 1 {
            format!(", repeated {repeat}x")
        } else {
            String::new()
        },
        if shape.diurnal { ", diurnal" } else { "" },
    );
    if w.synthetic {
        w.description
            .push_str(" (SYNTHETIC: built from the real trace, not a recording)");
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_azure_csv() {
        let text = "TIMESTAMP,ContextTokens,GeneratedTokens\n\
                    2023-11-16 18:17:03.9799600,4808,10\n\
                    2023-11-16 18:17:05.4799600,3180,8\n";
        let r = parse(text, TraceFormat::AzureCsv).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].arrival_seconds, 0.0);
        assert!((r[1].arrival_seconds - 1.5).abs() < 1e-6);
        assert_eq!((r[1].input_tokens, r[1].output_tokens), (3180, 8));
    }

    #[test]
    fn bad_csv_rows_name_their_line() {
        let text = "TIMESTAMP,ContextTokens,GeneratedTokens\n\
                    2023-11-16 18:17:03.9799600,4808,10\n\
                    2023-11-16 18:17:04.0319600,many,8\n";
        let err = parse(text, TraceFormat::AzureCsv).unwrap_err();
        assert!(matches!(err, TraceError::Row { line: 3, .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("line 3: ContextTokens \"many\""),
            "{err}"
        );

        let text = "TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,1,2\n";
        let err = parse(text, TraceFormat::AzureCsv).unwrap_err();
        assert!(matches!(err, TraceError::Row { line: 2, .. }), "{err}");

        let text = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,1\n";
        assert!(matches!(
            parse(text, TraceFormat::AzureCsv),
            Err(TraceError::Row { line: 2, .. })
        ));

        assert!(matches!(
            parse("time,in,out\n", TraceFormat::AzureCsv),
            Err(TraceError::Header(_))
        ));
        assert_eq!(
            parse(
                "TIMESTAMP,ContextTokens,GeneratedTokens\n",
                TraceFormat::AzureCsv
            ),
            Err(TraceError::Empty)
        );
    }

    #[test]
    fn reads_jsonl_and_names_bad_lines() {
        let text = "{\"timestamp\": 2000, \"input_length\": 100, \"output_length\": 20}\n\
                    \n\
                    {\"timestamp\": 500, \"input_length\": 50, \"output_length\": 5}\n";
        let r = parse(text, TraceFormat::Jsonl).unwrap();
        assert_eq!(r[0].input_tokens, 50);
        assert!((r[1].arrival_seconds - 1.5).abs() < 1e-9);

        let bad =
            "{\"timestamp\": 0, \"input_length\": 1, \"output_length\": 1}\n{\"timestamp\": 1}\n";
        assert!(matches!(
            parse(bad, TraceFormat::Jsonl),
            Err(TraceError::Row { line: 2, .. })
        ));
    }

    #[test]
    fn detects_the_format() {
        assert_eq!(TraceFormat::detect("a.jsonl", ""), TraceFormat::Jsonl);
        assert_eq!(TraceFormat::detect("a.csv", "{"), TraceFormat::AzureCsv);
        assert_eq!(
            TraceFormat::detect("trace", " {\"timestamp\""),
            TraceFormat::Jsonl
        );
    }

    #[test]
    fn load_scale_overlays_shifted_copies_and_repeat_tiles() {
        let r = |at: f64, input: u64| Request {
            arrival_seconds: at,
            input_tokens: input,
            output_tokens: 1,
        };
        // Four seconds long (0..=3).
        let reqs = [r(0.0, 10), r(1.5, 20), r(3.0, 30)];
        let w = workload(&reqs, Shape::default(), "t");
        assert_eq!(w.input_tokens, vec![10.0, 20.0, 0.0, 30.0]);
        assert!(!w.synthetic);

        // x2: the trace, plus a copy shifted by 0.618 of its length (2.47 s), wrapping around.
        let w = workload(
            &reqs,
            Shape {
                load_scale: 2.0,
                ..Default::default()
            },
            "t",
        );
        assert_eq!(w.input_tokens, vec![10.0, 50.0, 10.0, 50.0]);
        assert_eq!(w.requests.iter().sum::<f64>(), 6.0);
        assert!(w.synthetic && w.description.contains("load x2"));

        // x1.5: the second copy keeps half its requests; x0.5 thins the one copy to half.
        let many: Vec<Request> = (0..1000).map(|i| r(i as f64, 1)).collect();
        for (scale, want) in [(1.5, 1500.0), (0.5, 500.0)] {
            let w = workload(
                &many,
                Shape {
                    load_scale: scale,
                    ..Default::default()
                },
                "t",
            );
            assert_eq!(w.seconds(), 1000, "x{scale} keeps the trace's length");
            assert_eq!(w.requests.iter().sum::<f64>(), want, "x{scale}");
        }

        let w = workload(
            &reqs,
            Shape {
                load_scale: 1.0,
                repeat: 2,
                diurnal: false,
            },
            "t",
        );
        assert_eq!(w.requests, vec![1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0]);
        assert!(w.synthetic && w.description.contains("SYNTHETIC"));
    }
}
