//! Reads vLLM's Prometheus text exposition into a `Reading`: one pod's gauges, and its counters and
//! histograms kept per series (engine, model_name, finished_reason, ...) so that a reset or a
//! series coming and going is judged series by series, never on a sum. Pure: the scrape and
//! Prometheus clients do the IO and hand bytes or samples here.
//!
//! The input may be hostile (any pool author picks the image behind /metrics), so the parser is a
//! streaming one with caps: it reads line by line, keeps only the `vllm:` families the policy uses
//! (and `process_start_time_seconds`), and refuses lines, series and histogram buckets beyond
//! fixed bounds. Memory is bounded by the caps whatever the body's size; work is linear in it.
//!
//! A hand-written parser rather than `prometheus-parse` 0.2: that crate's name regex is `\w+`, so
//! every `vllm:` series (colon in the name) is silently dropped, and it splits labels on `,` and `=`,
//! which breaks label values such as model paths with commas or `=`. It also never reports errors.

use std::collections::BTreeMap;

use thiserror::Error;

/// The longest exposition line read; vLLM's are a few hundred bytes.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Distinct series kept per pod across the families used. One vLLM engine has about 40 (three
/// gauges, two token counters, five finished reasons, 24 TTFT buckets, four sums and counts), so
/// this allows some 50 engines and model names per pod.
pub const MAX_SERIES: usize = 2048;
/// Buckets per histogram series; vLLM's TTFT histogram has 24.
pub const MAX_BUCKETS: usize = 64;

/// Labels that say where a series was collected, not what it measures: two copies of a series
/// that differ only in these are the same series scraped twice (two jobs, two Service endpoints).
pub const IDENTITY_LABELS: &[&str] = &[
    "job",
    "instance",
    "namespace",
    "pod",
    "service",
    "endpoint",
    "container",
    "prometheus",
    "prometheus_replica",
];

/// Why a /metrics body could not be read. `line` is 1-based. Messages never quote the body: it
/// may be anything a pool author chose, and errors end up in status and Events.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("line {line}: invalid metric name")]
    InvalidName { line: usize },
    #[error("line {line}: malformed labels: {reason}")]
    InvalidLabels { line: usize, reason: &'static str },
    #[error("line {line}: invalid sample value")]
    InvalidValue { line: usize },
    #[error("line {line}: invalid timestamp")]
    InvalidTimestamp { line: usize },
    #[error("line {line} is not UTF-8")]
    NotUtf8 { line: usize },
    #[error("line {line} is longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong { line: usize },
    #[error("more than {MAX_SERIES} vLLM series")]
    TooManySeries,
    #[error("a histogram with more than {MAX_BUCKETS} buckets")]
    TooManyBuckets,
}

impl ParseError {
    /// A low-cardinality label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ParseError::InvalidName { .. } => "invalid_name",
            ParseError::InvalidLabels { .. } => "invalid_labels",
            ParseError::InvalidValue { .. } => "invalid_value",
            ParseError::InvalidTimestamp { .. } => "invalid_timestamp",
            ParseError::NotUtf8 { .. } => "not_utf8",
            ParseError::LineTooLong { .. } => "line_too_long",
            ParseError::TooManySeries => "too_many_series",
            ParseError::TooManyBuckets => "too_many_buckets",
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
    /// Adds another histogram's buckets (matched by `le`), sum and count: summing series or pods.
    pub fn add(&mut self, other: &Histogram) {
        for &(le, n) in &other.buckets {
            match find_bucket(&self.buckets, le) {
                Ok(i) => self.buckets[i].1 += n,
                Err(i) => self.buckets.insert(i, (le, n)),
            }
        }
        self.sum = add_opt(self.sum, other.sum);
        self.count = add_opt(self.count, other.count);
    }
}

/// Binary search on the parsed bound (`le="1"` and `le="1.0"` are the same bucket).
fn find_bucket(buckets: &[(f64, f64)], le: f64) -> Result<usize, usize> {
    buckets.binary_search_by(|(b, _)| b.total_cmp(&le))
}

fn add_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x + y),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Values of one counter family, by series (its labels other than `le` and `IDENTITY_LABELS`).
pub type Series = BTreeMap<String, f64>;

/// A snapshot of one vLLM pod. Gauges are summed over series (KV cache: the max); counters and
/// histograms stay per series. `None` or empty means the series was absent (or NaN everywhere):
/// missing data is not an idle pod.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Reading {
    /// `vllm:num_requests_running`, summed.
    pub requests_running: Option<f64>,
    /// `vllm:num_requests_waiting`, summed.
    pub requests_waiting: Option<f64>,
    /// `vllm:kv_cache_usage_perc` (or the pre-0.12 `vllm:gpu_cache_usage_perc`), 0 to 1, max over engines.
    pub kv_cache_usage: Option<f64>,
    /// `vllm:prompt_tokens_total` by series.
    pub prompt_tokens: Series,
    /// `vllm:generation_tokens_total` by series.
    pub generation_tokens: Series,
    /// `vllm:request_success_total` by series (one per engine, model and `finished_reason`).
    pub request_success: Series,
    /// `vllm:time_to_first_token_seconds` by series.
    pub time_to_first_token_seconds: BTreeMap<String, Histogram>,
    /// `vllm:request_generation_tokens` `_sum` and `_count` by series (output tokens per request).
    pub request_generation_tokens: BTreeMap<String, Histogram>,
    /// `process_start_time_seconds` (prometheus_client's process collector), when exposed: a
    /// change proves the process restarted, so counters below their baseline are a real reset.
    pub process_start_time_seconds: Option<f64>,
}

fn total(series: &Series) -> Option<f64> {
    (!series.is_empty()).then(|| series.values().sum())
}

impl Reading {
    /// `vllm:prompt_tokens_total` summed over series.
    pub fn prompt_tokens_total(&self) -> Option<f64> {
        total(&self.prompt_tokens)
    }
    /// `vllm:generation_tokens_total` summed over series.
    pub fn generation_tokens_total(&self) -> Option<f64> {
        total(&self.generation_tokens)
    }
    /// `vllm:request_success_total` summed over series.
    pub fn request_success_total(&self) -> Option<f64> {
        total(&self.request_success)
    }
    /// The TTFT histogram summed over series.
    pub fn time_to_first_token(&self) -> Option<Histogram> {
        sum_histograms(&self.time_to_first_token_seconds)
    }
    /// Output tokens per request (`_sum`, `_count`) summed over series.
    pub fn request_generation(&self) -> Option<Histogram> {
        sum_histograms(&self.request_generation_tokens)
    }
}

fn sum_histograms(h: &BTreeMap<String, Histogram>) -> Option<Histogram> {
    let mut it = h.values();
    let mut acc = it.next()?.clone();
    for x in it {
        acc.add(x);
    }
    Some(acc)
}

/// Parses a whole /metrics body into the pod's `Reading`.
pub fn parse_reading(text: &str) -> Result<Reading, ParseError> {
    let mut p = ExpositionParser::default();
    p.feed(text.as_bytes())?;
    p.finish()
}

/// The families the policy reads. Everything else is skipped unparsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    Running,
    Waiting,
    KvNew,
    KvOld,
    Prompt,
    Generation,
    Success,
    TtftBucket,
    TtftSum,
    TtftCount,
    GenSum,
    GenCount,
    ProcessStart,
}

fn family(name: &str) -> Option<Family> {
    Some(match name {
        "vllm:num_requests_running" => Family::Running,
        "vllm:num_requests_waiting" => Family::Waiting,
        "vllm:kv_cache_usage_perc" => Family::KvNew,
        "vllm:gpu_cache_usage_perc" => Family::KvOld,
        "vllm:prompt_tokens_total" => Family::Prompt,
        "vllm:generation_tokens_total" => Family::Generation,
        "vllm:request_success_total" => Family::Success,
        "vllm:time_to_first_token_seconds_bucket" => Family::TtftBucket,
        "vllm:time_to_first_token_seconds_sum" => Family::TtftSum,
        "vllm:time_to_first_token_seconds_count" => Family::TtftCount,
        "vllm:request_generation_tokens_sum" => Family::GenSum,
        "vllm:request_generation_tokens_count" => Family::GenCount,
        "process_start_time_seconds" => Family::ProcessStart,
        _ => return None,
    })
}

/// True for a metric name the policy reads (exposition or a Prometheus `__name__`).
pub fn is_used_family(name: &str) -> bool {
    family(name).is_some()
}

/// Collects samples of one pod, however they were obtained (exposition text or a Prometheus
/// query), into a `Reading`. Copies of a series that differ only in `IDENTITY_LABELS` (the same
/// pod scraped by two jobs) are one series: the highest value is kept, never the sum.
#[derive(Default)]
pub struct ReadingBuilder {
    values: BTreeMap<(Family, String), f64>,
    buckets: BTreeMap<String, Vec<(f64, f64)>>,
    series: usize,
}

impl ReadingBuilder {
    /// Adds one sample. Samples of families the policy does not read are ignored; NaN means the
    /// engine could not compute the value, so it is treated as absent rather than poisoning sums.
    pub fn add<'a>(
        &mut self,
        name: &str,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
        value: f64,
    ) -> Result<(), ParseError> {
        let Some(family) = family(name) else {
            return Ok(());
        };
        if value.is_nan() {
            return Ok(());
        }
        let mut le = None;
        let mut kept: Vec<(&str, &str)> = Vec::new();
        for (k, v) in labels {
            if k == "le" {
                le = Some(v);
            } else if k != "__name__" && !IDENTITY_LABELS.contains(&k) {
                kept.push((k, v));
            }
        }
        kept.sort_unstable();
        let mut key = String::new();
        for (i, (k, v)) in kept.iter().enumerate() {
            if i > 0 {
                key.push(',');
            }
            key.push_str(k);
            key.push('=');
            key.push_str(&format!("{v:?}"));
        }
        if family == Family::TtftBucket {
            let Some(le) = le.and_then(parse_float) else {
                return Ok(());
            };
            let new_series = !self.buckets.contains_key(&key);
            if new_series {
                self.count_series()?;
            }
            let b = self.buckets.entry(key).or_default();
            match find_bucket(b, le) {
                Ok(i) => b[i].1 = b[i].1.max(value),
                Err(i) => {
                    if b.len() >= MAX_BUCKETS {
                        return Err(ParseError::TooManyBuckets);
                    }
                    b.insert(i, (le, value));
                }
            }
            return Ok(());
        }
        match self.values.get_mut(&(family, key.clone())) {
            Some(v) => *v = v.max(value),
            None => {
                self.count_series()?;
                self.values.insert((family, key), value);
            }
        }
        Ok(())
    }

    fn count_series(&mut self) -> Result<(), ParseError> {
        self.series += 1;
        if self.series > MAX_SERIES {
            return Err(ParseError::TooManySeries);
        }
        Ok(())
    }

    pub fn finish(self) -> Reading {
        let mut r = Reading::default();
        let mut kv_old = None;
        let mut ttft: BTreeMap<String, Histogram> = BTreeMap::new();
        let mut generation: BTreeMap<String, Histogram> = BTreeMap::new();
        for (key, buckets) in self.buckets {
            ttft.entry(key).or_default().buckets = buckets;
        }
        for ((family, key), v) in self.values {
            let sum = |a: &mut Option<f64>| *a = Some(a.unwrap_or(0.0) + v);
            let max = |a: &mut Option<f64>| *a = Some(a.map_or(v, |x: f64| x.max(v)));
            match family {
                Family::Running => sum(&mut r.requests_running),
                Family::Waiting => sum(&mut r.requests_waiting),
                Family::KvNew => max(&mut r.kv_cache_usage),
                Family::KvOld => max(&mut kv_old),
                Family::Prompt => {
                    r.prompt_tokens.insert(key, v);
                }
                Family::Generation => {
                    r.generation_tokens.insert(key, v);
                }
                Family::Success => {
                    r.request_success.insert(key, v);
                }
                Family::TtftSum => ttft.entry(key).or_default().sum = Some(v),
                Family::TtftCount => ttft.entry(key).or_default().count = Some(v),
                Family::GenSum => generation.entry(key).or_default().sum = Some(v),
                Family::GenCount => generation.entry(key).or_default().count = Some(v),
                Family::ProcessStart => max(&mut r.process_start_time_seconds),
                // Buckets are kept apart, in `self.buckets`.
                Family::TtftBucket => {}
            }
        }
        // Servers in the rename window emit both names; the new one is authoritative.
        r.kv_cache_usage = r.kv_cache_usage.or(kv_old);
        r.time_to_first_token_seconds = ttft;
        r.request_generation_tokens = generation;
        r
    }
}

/// Parses exposition text fed in chunks of any size (as the body streams in). Comment lines and
/// blank lines are skipped, and so is every line of a family the policy does not read, after a
/// check of its first byte (an HTML error page is an error, not an empty reading).
#[derive(Default)]
pub struct ExpositionParser {
    line: Vec<u8>,
    line_no: usize,
    builder: ReadingBuilder,
}

impl ExpositionParser {
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), ParseError> {
        while !chunk.is_empty() {
            match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.push(&chunk[..i])?;
                    self.end_line()?;
                    chunk = &chunk[i + 1..];
                }
                None => {
                    self.push(chunk)?;
                    chunk = &[];
                }
            }
        }
        Ok(())
    }

    pub fn finish(mut self) -> Result<Reading, ParseError> {
        if !self.line.is_empty() {
            self.end_line()?;
        }
        Ok(self.builder.finish())
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), ParseError> {
        if self.line.len() + bytes.len() > MAX_LINE_BYTES {
            return Err(ParseError::LineTooLong {
                line: self.line_no + 1,
            });
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn end_line(&mut self) -> Result<(), ParseError> {
        self.line_no += 1;
        let raw = std::mem::take(&mut self.line);
        let result = self.line_done(&raw);
        // Keep the allocation for the next line.
        self.line = raw;
        self.line.clear();
        result
    }

    fn line_done(&mut self, raw: &[u8]) -> Result<(), ParseError> {
        let line_no = self.line_no;
        let trimmed = raw.trim_ascii();
        let Some(&first) = trimmed.first() else {
            return Ok(());
        };
        if first == b'#' {
            return Ok(());
        }
        if !(first.is_ascii_alphabetic() || first == b'_' || first == b':') {
            return Err(ParseError::InvalidName { line: line_no });
        }
        // Cheap skip of everything but the families used: compare the name before any parsing.
        let name_end = trimmed
            .iter()
            .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b':'))
            .unwrap_or(trimmed.len());
        let Ok(name) = std::str::from_utf8(&trimmed[..name_end]) else {
            return Err(ParseError::InvalidName { line: line_no });
        };
        if !is_used_family(name) {
            return Ok(());
        }
        let line =
            std::str::from_utf8(trimmed).map_err(|_| ParseError::NotUtf8 { line: line_no })?;
        let parsed = parse_line(line, line_no)?;
        self.builder.add(
            parsed.name,
            parsed.labels.iter().map(|(k, v)| (*k, v.as_str())),
            parsed.value,
        )
    }
}

/// One sample line: `name{labels} value [timestamp]`.
struct Line<'a> {
    name: &'a str,
    labels: Vec<(&'a str, String)>,
    value: f64,
}

fn parse_line(line: &str, line_no: usize) -> Result<Line<'_>, ParseError> {
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
    let value = parse_float(fields.next().unwrap_or(""))
        .ok_or(ParseError::InvalidValue { line: line_no })?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|_| ParseError::InvalidTimestamp { line: line_no })?;
    }
    if fields.next().is_some() {
        return Err(ParseError::InvalidTimestamp { line: line_no });
    }
    Ok(Line {
        name,
        labels,
        value,
    })
}

fn is_name_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (!first && c.is_ascii_digit())
}

type Labels<'a> = Vec<(&'a str, String)>;

/// Parses `k="v",k2="v2"}` (the opening brace already consumed); returns labels and the text after `}`.
fn parse_labels(mut s: &str, line: usize) -> Result<(Labels<'_>, &str), ParseError> {
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
        labels.push((key, value));
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
    const LEGACY: &str = include_str!("testdata/legacy-names.txt");
    const BLOCK_C: &str = include_str!("testdata/vllm-block-c.txt");

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

        // However the body is split into chunks as it streams in, the reading is the same.
        #[test]
        fn chunking_does_not_change_the_reading(sizes in prop::collection::vec(1usize..300, 1..40)) {
            let whole = parse_reading(V1_TWO_ENGINES).unwrap();
            let mut p = ExpositionParser::default();
            let mut rest = V1_TWO_ENGINES.as_bytes();
            for n in sizes.iter().cycle() {
                if rest.is_empty() { break; }
                let (a, b) = rest.split_at((*n).min(rest.len()));
                p.feed(a).unwrap();
                rest = b;
            }
            prop_assert_eq!(p.finish().unwrap(), whole);
        }

        // The caps hold for any number of distinct buckets or series: a typed error, and the
        // kept state never grows past them.
        #[test]
        fn caps_on_buckets_and_series(buckets in 0usize..200, series in 0usize..3000) {
            let mut text = String::new();
            for i in 0..buckets {
                text.push_str(&format!("vllm:time_to_first_token_seconds_bucket{{le=\"{i}.5\"}} 1\n"));
            }
            let r = parse_reading(&text);
            if buckets > MAX_BUCKETS {
                prop_assert_eq!(r.unwrap_err(), ParseError::TooManyBuckets);
            } else {
                prop_assert!(r.is_ok());
            }
            let mut text = String::new();
            for i in 0..series {
                text.push_str(&format!("vllm:generation_tokens_total{{engine=\"{i}\"}} 1\n"));
            }
            let r = parse_reading(&text);
            if series > MAX_SERIES {
                prop_assert_eq!(r.unwrap_err(), ParseError::TooManySeries);
            } else {
                prop_assert_eq!(r.unwrap().generation_tokens.len(), series);
            }
        }
    }

    #[test]
    fn sums_two_engines_and_finished_reasons() {
        let r = parse_reading(V1_TWO_ENGINES).unwrap();
        assert_eq!(r.requests_running, Some(12.0));
        assert_eq!(r.requests_waiting, Some(3.0));
        // max over engines, not a sum: usage is a share of each engine's own cache
        assert_eq!(r.kv_cache_usage, Some(0.5));
        assert_eq!(r.prompt_tokens_total(), Some(30000.0));
        assert_eq!(r.generation_tokens_total(), Some(9000.0));
        assert_eq!(r.request_success_total(), Some(60.0));
        // kept per series: two engines, three finished reasons each
        assert_eq!(r.generation_tokens.len(), 2);
        assert_eq!(r.request_success.len(), 6);
        let ttft = r.time_to_first_token().unwrap();
        assert_eq!(ttft.count, Some(60.0));
        assert_eq!(ttft.buckets.first(), Some(&(0.001, 0.0)));
        assert_eq!(ttft.buckets.last(), Some(&(f64::INFINITY, 60.0)));
        assert!(ttft.buckets.contains(&(0.1, 40.0)));
        let gen_tokens = r.request_generation().unwrap();
        assert_eq!(gen_tokens.sum, Some(9000.0));
        assert_eq!(gen_tokens.count, Some(60.0));
    }

    #[test]
    fn accepts_pre_rename_names() {
        let r = parse_reading(LEGACY).unwrap();
        assert_eq!(r.kv_cache_usage, Some(0.25));
        assert_eq!(r.requests_running, Some(8.0));
    }

    #[test]
    fn created_series_are_ignored() {
        let r = parse_reading(BLOCK_C).unwrap();
        // the _created gauges hold ~1.78e9: had they leaked in, these would not be zero
        assert_eq!(r.prompt_tokens_total(), Some(0.0));
        assert_eq!(r.generation_tokens_total(), Some(0.0));
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
        assert_eq!(r.generation_tokens_total(), None);
        assert_eq!(r.time_to_first_token(), None);
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
    fn the_same_series_from_two_jobs_counts_once() {
        let mut b = ReadingBuilder::default();
        for (job, v) in [("kubernetes-pods", 100.0), ("podmonitor/vllm", 104.0)] {
            let labels = [("job", job), ("instance", "10.0.0.7:8000"), ("engine", "0")];
            b.add("vllm:generation_tokens_total", labels, v).unwrap();
            b.add("vllm:num_requests_running", labels, 3.0).unwrap();
        }
        let r = b.finish();
        assert_eq!(r.generation_tokens_total(), Some(104.0), "max, not sum");
        assert_eq!(r.requests_running, Some(3.0));
    }

    #[test]
    fn process_start_time_is_read() {
        let r = parse_reading("process_start_time_seconds 1.7e9\nprocess_cpu_seconds_total 3\n")
            .unwrap();
        assert_eq!(r.process_start_time_seconds, Some(1.7e9));
    }

    #[test]
    fn label_values_with_slashes_colons_spaces_commas_and_escapes() {
        let line = r#"vllm:num_requests_running{model_name="/models/Llama 3.1: 8B, FP8",engine="0",x="a\"b\\c}="} 1.5e0 1700000000000"#;
        let s = parse_line(line, 1).unwrap();
        assert_eq!(s.name, "vllm:num_requests_running");
        assert_eq!(
            s.labels[0],
            ("model_name", "/models/Llama 3.1: 8B, FP8".into())
        );
        assert_eq!(s.labels[2], ("x", "a\"b\\c}=".into()));
        assert_eq!(s.value, 1.5);
        assert_eq!(parse_reading(line).unwrap().requests_running, Some(1.5));
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
    fn unparseable_input_is_a_typed_error_that_quotes_nothing() {
        let e = parse_reading("ok 1\nvllm:num_requests_running{engine=\"0\" 1\n").unwrap_err();
        assert_eq!(e.kind(), "invalid_labels");
        assert!(matches!(e, ParseError::InvalidLabels { line: 2, .. }));
        let e = parse_reading("vllm:num_requests_running 12abc-secret\n").unwrap_err();
        assert_eq!(e, ParseError::InvalidValue { line: 1 });
        assert!(!e.to_string().contains("secret"));
        let e = parse_reading("<html>oops</html>\n").unwrap_err();
        assert_eq!(e.kind(), "invalid_name");
        let e = parse_reading("vllm:num_requests_running{a=\"unterminated} 1\n").unwrap_err();
        assert_eq!(e.kind(), "invalid_labels");
    }

    #[test]
    fn other_families_are_skipped_unparsed() {
        // Syntax errors in lines the policy does not read cost nothing and fail nothing.
        let r = parse_reading("python_info{broken 1\nvllm:num_requests_waiting 2\n").unwrap();
        assert_eq!(r.requests_waiting, Some(2.0));
    }

    #[test]
    fn an_endless_line_is_refused_at_the_cap() {
        let mut p = ExpositionParser::default();
        let chunk = vec![b'a'; 8192];
        let mut fed = 0;
        let err = loop {
            match p.feed(&chunk) {
                Ok(()) => fed += chunk.len(),
                Err(e) => break e,
            }
            assert!(fed <= MAX_LINE_BYTES, "kept feeding past the cap");
        };
        assert_eq!(err, ParseError::LineTooLong { line: 1 });
    }

    #[test]
    fn empty_body_is_an_empty_reading() {
        assert_eq!(parse_reading("").unwrap(), Reading::default());
    }
}
