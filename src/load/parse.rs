//! Reads vLLM's Prometheus text exposition into a `Reading`: one pod's gauges, counters and the
//! histograms sizing needs, summed over data-parallel engines and served model names. Pure: the
//! scrape and Prometheus clients do the IO and hand text or samples here.
//!
//! A hand-written parser rather than `prometheus-parse` 0.2: that crate's name regex is `\w+`, so
//! every `vllm:` series (colon in the name) is silently dropped, and it splits labels on `,` and `=`,
//! which breaks label values such as model paths with commas or `=`. It also never reports errors.

use thiserror::Error;

/// One line of exposition that is a sample: `name{labels} value [timestamp]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if the sample carries it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a /metrics body could not be read. `line` is 1-based.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("line {line}: invalid metric name")]
    InvalidName { line: usize },
    #[error("line {line}: malformed labels: {reason}")]
    InvalidLabels { line: usize, reason: &'static str },
    #[error("line {line}: invalid sample value {value:?}")]
    InvalidValue { line: usize, value: String },
    #[error("line {line}: invalid timestamp")]
    InvalidTimestamp { line: usize },
    #[error("body is not UTF-8")]
    NotUtf8,
}

impl ParseError {
    /// A low-cardinality label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ParseError::InvalidName { .. } => "invalid_name",
            ParseError::InvalidLabels { .. } => "invalid_labels",
            ParseError::InvalidValue { .. } => "invalid_value",
            ParseError::InvalidTimestamp { .. } => "invalid_timestamp",
            ParseError::NotUtf8 => "not_utf8",
        }
    }
}

/// A cumulative histogram: `(le, count of observations <= le)` sorted by `le`, the last being
/// `+Inf` when the exposition had it, plus `_sum` and `_count` when present.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
    pub sum: Option<f64>,
    pub count: Option<f64>,
}

impl Histogram {
    /// Adds another histogram's buckets (matched by `le`), sum and count: summing engines or pods.
    pub fn add(&mut self, other: &Histogram) {
        for &(le, n) in &other.buckets {
            add_bucket(&mut self.buckets, le, n);
        }
        self.sum = add_opt(self.sum, other.sum);
        self.count = add_opt(self.count, other.count);
    }

    fn is_empty(&self) -> bool {
        self.buckets.is_empty() && self.sum.is_none() && self.count.is_none()
    }
}

fn add_bucket(buckets: &mut Vec<(f64, f64)>, le: f64, n: f64) {
    // `le="1"` and `le="1.0"` are the same bucket: match on the parsed bound.
    match buckets.iter_mut().find(|(b, _)| *b == le) {
        Some((_, c)) => *c += n,
        None => {
            buckets.push((le, n));
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
    }
}

fn add_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x + y),
        (x, None) => x,
        (None, y) => y,
    }
}

/// A snapshot of one vLLM pod, summed over `engine` (data-parallel ranks) and `model_name`.
/// `None` means the series was absent (or NaN everywhere): missing data is not an idle pod.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Reading {
    /// `vllm:num_requests_running`, summed.
    pub requests_running: Option<f64>,
    /// `vllm:num_requests_waiting`, summed.
    pub requests_waiting: Option<f64>,
    /// `vllm:kv_cache_usage_perc` (or the pre-0.12 `vllm:gpu_cache_usage_perc`), 0 to 1, max over engines.
    pub kv_cache_usage: Option<f64>,
    /// `vllm:prompt_tokens_total`, cumulative.
    pub prompt_tokens_total: Option<f64>,
    /// `vllm:generation_tokens_total`, cumulative.
    pub generation_tokens_total: Option<f64>,
    /// `vllm:request_success_total`, cumulative, summed over `finished_reason`.
    pub request_success_total: Option<f64>,
    /// `vllm:time_to_first_token_seconds`.
    pub time_to_first_token_seconds: Option<Histogram>,
    /// `vllm:inter_token_latency_seconds` (or the older `vllm:time_per_output_token_seconds`).
    pub inter_token_latency_seconds: Option<Histogram>,
    /// `vllm:request_generation_tokens` (output tokens per finished request).
    pub request_generation_tokens: Option<Histogram>,
}

/// Parses a /metrics body into the pod's `Reading`.
pub fn parse_reading(text: &str) -> Result<Reading, ParseError> {
    Ok(reading_from_samples(&parse_samples(text)?))
}

/// Builds a `Reading` from samples, however they were obtained (exposition text or a Prometheus
/// query that kept `__name__` and `le`). Samples of other metrics are ignored.
pub fn reading_from_samples(samples: &[Sample]) -> Reading {
    let mut acc = Accumulator::default();
    for s in samples {
        acc.add(s);
    }
    acc.finish()
}

#[derive(Default)]
struct Accumulator {
    running: Option<f64>,
    waiting: Option<f64>,
    kv_new: Option<f64>,
    kv_old: Option<f64>,
    prompt: Option<f64>,
    generation: Option<f64>,
    success: Option<f64>,
    ttft: Histogram,
    itl_new: Histogram,
    itl_old: Histogram,
    gen_tokens: Histogram,
}

impl Accumulator {
    fn add(&mut self, s: &Sample) {
        // NaN means the engine could not compute the value: treat it as absent rather than letting
        // it poison the sum for the other engines.
        if s.value.is_nan() {
            return;
        }
        let v = Some(s.value);
        match s.name.as_str() {
            "vllm:num_requests_running" => self.running = add_opt(self.running, v),
            "vllm:num_requests_waiting" => self.waiting = add_opt(self.waiting, v),
            "vllm:kv_cache_usage_perc" => self.kv_new = max_opt(self.kv_new, s.value),
            "vllm:gpu_cache_usage_perc" => self.kv_old = max_opt(self.kv_old, s.value),
            "vllm:prompt_tokens_total" => self.prompt = add_opt(self.prompt, v),
            "vllm:generation_tokens_total" => self.generation = add_opt(self.generation, v),
            "vllm:request_success_total" => self.success = add_opt(self.success, v),
            name => {
                // Histogram families; `*_created` series never match a suffix below.
                let (family, part) = match name.rsplit_once('_') {
                    Some((f, p @ ("bucket" | "sum" | "count"))) => (f, p),
                    _ => return,
                };
                let h = match family {
                    "vllm:time_to_first_token_seconds" => &mut self.ttft,
                    "vllm:inter_token_latency_seconds" => &mut self.itl_new,
                    "vllm:time_per_output_token_seconds" => &mut self.itl_old,
                    "vllm:request_generation_tokens" => &mut self.gen_tokens,
                    _ => return,
                };
                match part {
                    "bucket" => {
                        if let Some(le) = s.label("le").and_then(parse_float) {
                            add_bucket(&mut h.buckets, le, s.value);
                        }
                    }
                    "sum" => h.sum = add_opt(h.sum, v),
                    _ => h.count = add_opt(h.count, v),
                }
            }
        }
    }

    fn finish(self) -> Reading {
        let some = |h: Histogram| (!h.is_empty()).then_some(h);
        // Servers in the rename window emit both names; the new one is authoritative.
        let itl = some(self.itl_new).or_else(|| some(self.itl_old));
        Reading {
            requests_running: self.running,
            requests_waiting: self.waiting,
            kv_cache_usage: self.kv_new.or(self.kv_old),
            prompt_tokens_total: self.prompt,
            generation_tokens_total: self.generation,
            request_success_total: self.success,
            time_to_first_token_seconds: some(self.ttft),
            inter_token_latency_seconds: itl,
            request_generation_tokens: some(self.gen_tokens),
        }
    }
}

fn max_opt(a: Option<f64>, b: f64) -> Option<f64> {
    Some(a.map_or(b, |a| a.max(b)))
}

/// Parses Prometheus text exposition (format 0.0.4) into samples. Comment lines (`# HELP`,
/// `# TYPE`, anything else after `#`) and blank lines are skipped; `*_created` series are dropped
/// because they are creation timestamps, not values.
pub fn parse_samples(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let sample = parse_line(line, line_no)?;
        if sample.name.ends_with("_created") {
            continue;
        }
        out.push(sample);
    }
    Ok(out)
}

fn parse_line(line: &str, line_no: usize) -> Result<Sample, ParseError> {
    let name_len = line
        .char_indices()
        .find(|&(i, c)| !is_name_char(c, i == 0))
        .map_or(line.len(), |(i, _)| i);
    if name_len == 0 {
        return Err(ParseError::InvalidName { line: line_no });
    }
    let name = &line[..name_len];
    let mut rest = &line[name_len..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, remaining) = parse_labels(after, line_no)?;
        labels = parsed;
        rest = remaining;
    }
    if !rest.starts_with([' ', '\t']) {
        return Err(ParseError::InvalidName { line: line_no });
    }
    let mut fields = rest.split_ascii_whitespace();
    let value_str = fields.next().unwrap_or("");
    let value = parse_float(value_str).ok_or_else(|| ParseError::InvalidValue {
        line: line_no,
        value: value_str.chars().take(40).collect(),
    })?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|_| ParseError::InvalidTimestamp { line: line_no })?;
    }
    if fields.next().is_some() {
        return Err(ParseError::InvalidTimestamp { line: line_no });
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

fn is_name_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (!first && c.is_ascii_digit())
}

type Labels = Vec<(String, String)>;

/// Parses `k="v",k2="v2"}` (the opening brace already consumed); returns labels and the text after `}`.
fn parse_labels(mut s: &str, line: usize) -> Result<(Labels, &str), ParseError> {
    let err = |reason| ParseError::InvalidLabels { line, reason };
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let key_len = s
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit())))
            .map_or(s.len(), |(i, _)| i);
        if key_len == 0 {
            return Err(err("expected a label name"));
        }
        let key = &s[..key_len];
        s = s[key_len..].trim_start();
        s = s.strip_prefix('=').ok_or_else(|| err("expected '='"))?;
        s = s.trim_start();
        s = s.strip_prefix('"').ok_or_else(|| err("expected '\"'"))?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(err("unterminated label value")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    _ => return Err(err("invalid escape in label value")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((key.to_string(), value));
        s = s[end + 1..].trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err(err("expected ',' or '}'"));
        }
    }
}

/// Prometheus floats: Go's ParseFloat syntax plus `+Inf`, `-Inf`, `NaN` in any case.
pub(crate) fn parse_float(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        "+inf" | "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        // Rust would accept "infinity" and "nan" spellings above; everything else must be numeric.
        l if l.contains("inf") || l.contains("nan") => None,
        _ => s.parse::<f64>().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const V1_TWO_ENGINES: &str = include_str!("testdata/v1-two-engines.txt");

    proptest! {
        // Fuzzing the parser: whatever a pod (or something squatting on its port) sends, parsing
        // returns a reading or a typed error, never a panic.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            let _ = parse_reading(&text);
        }

        // Real expositions cut short, or with one byte replaced, still never panic.
        #[test]
        fn damaged_expositions_never_panic(
            cut in 0usize..4000,
            at in 0usize..4000,
            byte in prop::sample::select(vec![b'{', b'}', b'"', b'\\', b'=', b',', b' ', b'\n', b'#', b'e', b'-', b'+', b'.']),
        ) {
            for base in [V1_TWO_ENGINES, LEGACY, BLOCK_C] {
                let mut bytes = base.as_bytes()[..cut.min(base.len())].to_vec();
                if !bytes.is_empty() {
                    let i = at % bytes.len();
                    bytes[i] = byte;
                }
                let _ = parse_reading(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    const LEGACY: &str = include_str!("testdata/legacy-names.txt");
    const BLOCK_C: &str = include_str!("testdata/vllm-block-c.txt");

    #[test]
    fn sums_two_engines_and_finished_reasons() {
        let r = parse_reading(V1_TWO_ENGINES).unwrap();
        assert_eq!(r.requests_running, Some(12.0));
        assert_eq!(r.requests_waiting, Some(3.0));
        // max over engines, not a sum: usage is a share of each engine's own cache
        assert_eq!(r.kv_cache_usage, Some(0.5));
        assert_eq!(r.prompt_tokens_total, Some(30000.0));
        assert_eq!(r.generation_tokens_total, Some(9000.0));
        assert_eq!(r.request_success_total, Some(60.0));
        let ttft = r.time_to_first_token_seconds.unwrap();
        assert_eq!(ttft.count, Some(60.0));
        assert_eq!(ttft.buckets.first(), Some(&(0.001, 0.0)));
        assert_eq!(ttft.buckets.last(), Some(&(f64::INFINITY, 60.0)));
        assert!(ttft.buckets.contains(&(0.1, 40.0)));
        let gen_tokens = r.request_generation_tokens.unwrap();
        assert_eq!(gen_tokens.sum, Some(9000.0));
        assert_eq!(gen_tokens.count, Some(60.0));
        assert!(r.inter_token_latency_seconds.is_some());
    }

    #[test]
    fn accepts_pre_rename_names() {
        let r = parse_reading(LEGACY).unwrap();
        assert_eq!(r.kv_cache_usage, Some(0.25));
        let itl = r.inter_token_latency_seconds.unwrap();
        assert_eq!(itl.count, Some(140.0));
        assert_eq!(r.requests_running, Some(8.0));
    }

    #[test]
    fn created_series_are_ignored() {
        let samples = parse_samples(BLOCK_C).unwrap();
        assert!(samples.iter().all(|s| !s.name.ends_with("_created")));
        let r = reading_from_samples(&samples);
        // the _created gauges hold ~1.78e9: had they leaked in, these would not be zero
        assert_eq!(r.prompt_tokens_total, Some(0.0));
        assert_eq!(r.generation_tokens_total, Some(0.0));
        assert_eq!(r.kv_cache_usage, Some(0.0));
    }

    #[test]
    fn missing_series_are_none_not_zero() {
        let r = parse_reading(
            "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{engine=\"0\",model_name=\"m\"} 2.0\n",
        )
        .unwrap();
        assert_eq!(r.requests_running, Some(2.0));
        assert_eq!(r.requests_waiting, None);
        assert_eq!(r.generation_tokens_total, None);
        assert_eq!(r.time_to_first_token_seconds, None);
    }

    #[test]
    fn nan_is_absent_and_does_not_poison_sums() {
        let r = parse_reading(
            "vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"m\"} NaN\n\
             vllm:num_requests_waiting{engine=\"0\",model_name=\"m\"} NaN\n\
             vllm:num_requests_waiting{engine=\"1\",model_name=\"m\"} 4\n",
        )
        .unwrap();
        assert_eq!(r.kv_cache_usage, None);
        assert_eq!(r.requests_waiting, Some(4.0));
    }

    #[test]
    fn label_values_with_slashes_colons_spaces_commas_and_escapes() {
        let s = parse_samples(
            r#"vllm:num_requests_running{model_name="/models/Llama 3.1: 8B, FP8",engine="0",x="a\"b\\c}="} 1.5e0 1700000000000"#,
        )
        .unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].name, "vllm:num_requests_running");
        assert_eq!(s[0].label("model_name"), Some("/models/Llama 3.1: 8B, FP8"));
        assert_eq!(s[0].label("x"), Some("a\"b\\c}="));
        assert_eq!(s[0].value, 1.5);
    }

    #[test]
    fn special_floats() {
        assert_eq!(parse_float("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_float("-Inf"), Some(f64::NEG_INFINITY));
        assert!(parse_float("NaN").unwrap().is_nan());
        assert_eq!(
            parse_float("1.7769301736864316e+09"),
            Some(1.7769301736864316e9)
        );
        assert_eq!(parse_float("infinity"), None);
        assert_eq!(parse_float("abc"), None);
    }

    #[test]
    fn unparseable_input_is_a_typed_error() {
        let e = parse_samples("ok 1\nvllm:x{engine=\"0\" 1\n").unwrap_err();
        assert_eq!(e.kind(), "invalid_labels");
        assert!(matches!(e, ParseError::InvalidLabels { line: 2, .. }));
        let e = parse_samples("vllm:x 12abc\n").unwrap_err();
        assert!(matches!(e, ParseError::InvalidValue { line: 1, .. }));
        let e = parse_samples("<html>oops</html>\n").unwrap_err();
        assert_eq!(e.kind(), "invalid_name");
        let e = parse_samples("vllm:x{a=\"unterminated} 1\n").unwrap_err();
        assert_eq!(e.kind(), "invalid_labels");
    }

    #[test]
    fn empty_body_is_an_empty_reading() {
        assert_eq!(parse_reading("").unwrap(), Reading::default());
    }
}
