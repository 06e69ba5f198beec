//! Writes a simulated pod's state in vLLM 0.33's /metrics format: `vllm:` names, `engine` and
//! `model_name` labels on every series, `_total` counters with prometheus_client's `_created`
//! gauges, cumulative histogram buckets ending in `+Inf`, and HELP/TYPE lines. Pure.

use std::fmt::Write;

use super::model::{EngineModel, SimHistogram};

/// vLLM's `finished_reason` values; the simulator finishes every request with `stop`.
const FINISHED_REASONS: &[&str] = &["stop", "length", "abort", "error", "repetition"];

/// The full /metrics body for one pod with `engines.len()` data-parallel ranks.
pub fn render_metrics(
    model: &str,
    engines: &[EngineModel],
    legacy_names: bool,
    created_unix_seconds: f64,
) -> String {
    let model = escape(model);
    let mut out = String::new();
    let labels = |engine: usize| format!("engine=\"{engine}\",model_name=\"{model}\"");
    let created = fmt_value(created_unix_seconds);

    let gauge = |out: &mut String, name: &str, help: &str, value: &dyn Fn(&EngineModel) -> f64| {
        family(out, name, "gauge", help);
        for (i, e) in engines.iter().enumerate() {
            let _ = writeln!(out, "{name}{{{}}} {}", labels(i), fmt_value(value(e)));
        }
    };
    gauge(
        &mut out,
        "vllm:num_requests_running",
        "Number of requests in model execution batches.",
        &|e| e.requests_running() as f64,
    );
    gauge(
        &mut out,
        "vllm:num_requests_waiting",
        "Number of requests waiting to be processed.",
        &|e| e.requests_waiting() as f64,
    );
    if legacy_names {
        gauge(
            &mut out,
            "vllm:gpu_cache_usage_perc",
            "GPU KV-cache usage. 1 means 100 percent usage.",
            &|e| e.kv_cache_usage(),
        );
    } else {
        gauge(
            &mut out,
            "vllm:kv_cache_usage_perc",
            "KV-cache usage. 1 means 100 percent usage.",
            &|e| e.kv_cache_usage(),
        );
    }

    let counter =
        |out: &mut String, base: &str, help: &str, value: &dyn Fn(&EngineModel) -> f64| {
            family(out, &format!("{base}_total"), "counter", help);
            for (i, e) in engines.iter().enumerate() {
                let _ = writeln!(out, "{base}_total{{{}}} {}", labels(i), fmt_value(value(e)));
            }
            family(out, &format!("{base}_created"), "gauge", help);
            for i in 0..engines.len() {
                let _ = writeln!(out, "{base}_created{{{}}} {created}", labels(i));
            }
        };
    counter(
        &mut out,
        "vllm:num_preemptions",
        "Cumulative number of preemption from the engine.",
        &|_| 0.0,
    );
    counter(
        &mut out,
        "vllm:prompt_tokens",
        "Number of prefill tokens processed.",
        &|e| e.prompt_tokens_total.floor(),
    );
    counter(
        &mut out,
        "vllm:generation_tokens",
        "Number of generation tokens processed.",
        &|e| e.generation_tokens_total.floor(),
    );

    let help = "Count of successfully processed requests.";
    family(&mut out, "vllm:request_success_total", "counter", help);
    for (i, e) in engines.iter().enumerate() {
        for reason in FINISHED_REASONS {
            let v = if *reason == "stop" {
                e.request_success_total
            } else {
                0.0
            };
            let _ = writeln!(
                out,
                "vllm:request_success_total{{engine=\"{i}\",finished_reason=\"{reason}\",model_name=\"{model}\"}} {}",
                fmt_value(v)
            );
        }
    }
    family(&mut out, "vllm:request_success_created", "gauge", help);
    for i in 0..engines.len() {
        for reason in FINISHED_REASONS {
            let _ = writeln!(
                out,
                "vllm:request_success_created{{engine=\"{i}\",finished_reason=\"{reason}\",model_name=\"{model}\"}} {created}"
            );
        }
    }

    let itl_name = if legacy_names {
        "vllm:time_per_output_token_seconds"
    } else {
        "vllm:inter_token_latency_seconds"
    };
    let histograms: [(&str, &str, HistogramOf); 5] = [
        (
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            |e| &e.time_to_first_token_seconds,
        ),
        (
            itl_name,
            "Histogram of inter-token latency in seconds.",
            |e| &e.inter_token_latency_seconds,
        ),
        (
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            |e| &e.e2e_request_latency_seconds,
        ),
        (
            "vllm:request_prompt_tokens",
            "Number of prefill tokens processed.",
            |e| &e.request_prompt_tokens,
        ),
        (
            "vllm:request_generation_tokens",
            "Number of generation tokens processed.",
            |e| &e.request_generation_tokens,
        ),
    ];
    for (name, help, get) in histograms {
        family(&mut out, name, "histogram", help);
        for (i, e) in engines.iter().enumerate() {
            let h = get(e);
            let _ = writeln!(out, "{name}_sum{{{}}} {}", labels(i), fmt_value(h.sum));
            for (le, n) in h.cumulative() {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{engine=\"{i}\",le=\"{}\",model_name=\"{model}\"}} {}",
                    fmt_value(le),
                    fmt_value(n)
                );
            }
            let _ = writeln!(out, "{name}_count{{{}}} {}", labels(i), fmt_value(h.count));
        }
        family(&mut out, &format!("{name}_created"), "gauge", help);
        for i in 0..engines.len() {
            let _ = writeln!(out, "{name}_created{{{}}} {created}", labels(i));
        }
    }
    // prometheus_client's process collector: what tells a restart from a glitch.
    family(
        &mut out,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
    );
    let _ = writeln!(out, "process_start_time_seconds {created}");
    out
}

type HistogramOf = fn(&EngineModel) -> &SimHistogram;

/// Adds `labels` to every sample line of an exposition.
pub fn with_labels(text: &str, labels: &[(String, String)]) -> String {
    if labels.is_empty() {
        return text.to_string();
    }
    let extra: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    let extra = extra.join(",");
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            out.push_str(line);
        } else if let Some((name, rest)) = line.split_once('{') {
            let _ = write!(out, "{name}{{{extra},{rest}");
        } else if let Some((name, rest)) = line.split_once(' ') {
            let _ = write!(out, "{name}{{{extra}}} {rest}");
        }
        out.push('\n');
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Floats as prometheus_client writes them: `12.0`, `0.5`, `+Inf`, `NaN`.
fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v:?}")
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_look_like_prometheus_client() {
        assert_eq!(fmt_value(12.0), "12.0");
        assert_eq!(fmt_value(0.001), "0.001");
        assert_eq!(fmt_value(f64::INFINITY), "+Inf");
        assert_eq!(fmt_value(f64::NAN), "NaN");
    }
}
