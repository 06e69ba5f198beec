//! `crossover plan` as a user runs it: the built binary on the example manifests, checked against
//! the worked scenarios of DOMAIN.md in table and JSON output.

use std::path::PathBuf;
use std::process::{Command, Output};

fn example(file: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(file)
        .display()
        .to_string()
}

fn crossover(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crossover"))
        .args(args)
        .output()
        .expect("the crossover binary runs")
}

fn plan_ok(args: &[&str]) -> String {
    let out = crossover(args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "crossover {args:?} failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn plan_json(file: &str, input: &str, output: &str) -> serde_json::Value {
    let text = plan_ok(&[
        "plan",
        "-f",
        &example(file),
        "--input-tokens",
        input,
        "--output-tokens",
        output,
        "--output",
        "json",
    ]);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

fn number(value: &serde_json::Value, key: &str) -> f64 {
    value[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing from {value}"))
}

fn assert_contains(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "{part:?} missing from:\n{text}");
    }
}

#[test]
fn scenario_a_small_volume_the_api_is_cheaper() {
    let table = plan_ok(&[
        "plan",
        "-f",
        &example("scenario-a-gemma-small-volume.yaml"),
        "--input-tokens",
        "50M",
        "--output-tokens",
        "15M",
    ]);
    assert_contains(
        &table,
        &[
            "$1,705/month",
            "$275/month",
            "the API is 6.2x cheaper",
            "310M input tokens/month",
        ],
    );

    let json = plan_json("scenario-a-gemma-small-volume.yaml", "50M", "15M");
    assert!((number(&json, "poolMonthlyUsd") - 1705.0).abs() < 1e-6);
    assert!((number(&json, "apiMonthlyUsd") - 275.0).abs() < 1e-6);
    assert_eq!(json["cheaper"], "API");
    assert_eq!(format!("{:.1}", number(&json, "ratio")), "6.2");
    assert!((number(&json, "breakEvenInputTokensPerMonth") - 310e6).abs() < 1.0);
    assert!((number(&json, "poolUsdPerMillionTokens") - 1705.0 / 65.0).abs() < 1e-9);
}

#[test]
fn scenario_b_at_volume_self_hosting_is_cheaper() {
    let table = plan_ok(&[
        "plan",
        "-f",
        &example("scenario-b-gemma-at-volume.yaml"),
        "--input-tokens",
        "500M",
        "--output-tokens",
        "150M",
    ]);
    assert_contains(
        &table,
        &[
            "$605/month",
            "$2,750/month",
            "self-host is 4.5x cheaper",
            "110M input tokens/month",
        ],
    );

    let json = plan_json("scenario-b-gemma-at-volume.yaml", "500M", "150M");
    assert!((number(&json, "poolMonthlyUsd") - 605.0).abs() < 1e-6);
    assert!((number(&json, "apiMonthlyUsd") - 2750.0).abs() < 1e-6);
    assert_eq!(json["cheaper"], "SelfHosted");
    assert_eq!(format!("{:.1}", number(&json, "ratio")), "4.5");
    assert!((number(&json, "breakEvenInputTokensPerMonth") - 110e6).abs() < 1.0);
}

#[test]
fn scenario_c_low_and_high_manifests() {
    for (file, pool, pool_text) in [
        (
            "scenario-c-h100-bare-metal-low.yaml",
            5500.0,
            "$5,500/month",
        ),
        (
            "scenario-c-h100-bare-metal-high.yaml",
            7000.0,
            "$7,000/month",
        ),
    ] {
        let table = plan_ok(&[
            "plan",
            "-f",
            &example(file),
            "--input-tokens",
            "5B",
            "--output-tokens",
            "1.5B",
        ]);
        assert_contains(&table, &[pool_text, "$27,500/month", "self-host is"]);
        let json = plan_json(file, "5B", "1.5B");
        assert!(
            (number(&json, "poolMonthlyUsd") - pool).abs() < 1e-6,
            "{file}"
        );
        assert!(
            (number(&json, "apiMonthlyUsd") - 27_500.0).abs() < 1e-6,
            "{file}"
        );
        assert_eq!(json["cheaper"], "SelfHosted", "{file}");
    }
}

#[test]
fn output_tokens_default_to_thirty_percent_of_input() {
    let table = plan_ok(&[
        "plan",
        "-f",
        &example("scenario-b-gemma-at-volume.yaml"),
        "--input-tokens",
        "500m",
    ]);
    assert_contains(
        &table,
        &["150M output", "output assumed 30% of input", "$2,750/month"],
    );
}

#[test]
fn sweep_prints_the_break_even_and_svg_is_written() {
    let svg = std::env::temp_dir().join(format!("crossover-plan-{}.svg", std::process::id()));
    let svg_arg = svg.display().to_string();
    let table = plan_ok(&[
        "plan",
        "-f",
        &example("scenario-b-gemma-at-volume.yaml"),
        "--input-tokens",
        "500M",
        "--output-tokens",
        "150M",
        "--sweep",
        "--svg",
        &svg_arg,
    ]);
    assert_contains(
        &table,
        &["break-even at $605/month", "10B", "self-host", "API"],
    );
    let chart = std::fs::read_to_string(&svg).expect("the SVG was written");
    let _ = std::fs::remove_file(&svg);
    assert!(chart.starts_with("<svg"));
    assert_contains(
        &chart,
        &[
            "break-even 110M",
            "pool ($605/month)",
            "API bill",
            "polyline",
        ],
    );
}

#[test]
fn replicas_flag_prices_more_replicas() {
    let json = plan_ok(&[
        "plan",
        "-f",
        &example("llama-70b-a100-cloud-autoscaled.yaml"),
        "--input-tokens",
        "1B",
        "--replicas",
        "3",
        "-o",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["replicas"], 3);
    // 3 × $1.89/h × 730 h + $1,500 of engineering; gpt-5 prices from the built-in catalog.
    assert!((number(&json, "poolMonthlyUsd") - (3.0 * 1.89 * 730.0 + 1500.0)).abs() < 1e-6);
    assert_eq!(
        json["priceSource"],
        "catalog: gpt-5 (LiteLLM 1.110.2, 2026)"
    );
}

#[test]
fn a_bad_manifest_fails_naming_the_file() {
    let dir = std::env::temp_dir();
    let bad = dir.join(format!("crossover-bad-{}.yaml", std::process::id()));
    std::fs::write(&bad, "apiVersion: crossover.dev/v1alpha1\nkind: InferencePool\nmetadata: {name: x}\nspec:\n  model: m\n").unwrap();
    let out = crossover(&[
        "plan",
        "-f",
        &bad.display().to_string(),
        "--input-tokens",
        "1M",
    ]);
    let _ = std::fs::remove_file(&bad);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&bad.display().to_string()), "{stderr}");
    assert!(
        stderr.contains("not a valid InferencePool manifest"),
        "{stderr}"
    );
    assert!(stderr.contains("cost"), "names the missing field: {stderr}");

    let missing = crossover(&[
        "plan",
        "-f",
        "/nonexistent/pool.yaml",
        "--input-tokens",
        "1M",
    ]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("cannot read /nonexistent/pool.yaml")
    );

    let bad_volume = crossover(&[
        "plan",
        "-f",
        &example("scenario-a-gemma-small-volume.yaml"),
        "--input-tokens",
        "lots",
    ]);
    assert!(!bad_volume.status.success());
    assert!(String::from_utf8_lossy(&bad_volume.stderr).contains("500M"));
}

#[test]
fn a_cost_spec_without_a_price_is_explained() {
    let dir = std::env::temp_dir();
    let file = dir.join(format!("crossover-noprice-{}.yaml", std::process::id()));
    std::fs::write(&file, "apiVersion: crossover.dev/v1alpha1\nkind: InferencePool\nmetadata: {name: x}\nspec:\n  model: m\n  cost: {}\n").unwrap();
    let out = crossover(&[
        "plan",
        "-f",
        &file.display().to_string(),
        "--input-tokens",
        "1M",
    ]);
    let _ = std::fs::remove_file(&file);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("replicaMonthlyUsd"));
}
