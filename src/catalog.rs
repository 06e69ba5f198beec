//! The built-in hosted-API price list that `compareTo.model` is looked up in when the spec gives no
//! prices. The CSV ships inside the binary (data/api-prices-usd-per-1M.csv, derived from LiteLLM's
//! price map) and is parsed once, on first use.

use std::collections::HashMap;
use std::sync::LazyLock;
use thiserror::Error;

/// Where the catalog's prices come from, as status and `crossover plan` cite it.
pub const CATALOG_SOURCE: &str = "LiteLLM 1.110.2, 2026";

const CATALOG_CSV: &str = include_str!("../data/api-prices-usd-per-1M.csv");

/// One hosted model's list prices.
#[derive(Clone, Debug, PartialEq)]
pub struct CatalogEntry {
    /// The model's key in LiteLLM's map, such as gpt-5 or gemini/gemini-2.5-pro.
    pub model_key: String,
    /// The provider, such as openai or anthropic.
    pub provider: String,
    pub input_usd_per_million_tokens: f64,
    pub output_usd_per_million_tokens: f64,
    /// When the provider retires the model, as YYYY-MM-DD, if announced.
    pub deprecation_date: Option<String>,
}

impl CatalogEntry {
    /// The price source to record in status: "catalog: gpt-5 (LiteLLM 1.110.2, 2026)".
    pub fn source(&self) -> String {
        format!("catalog: {} ({CATALOG_SOURCE})", self.model_key)
    }
}

/// A catalog row that does not parse.
#[derive(Debug, Error, PartialEq)]
#[error("api price catalog line {line}: {reason}")]
pub struct CatalogError {
    pub line: usize,
    pub reason: String,
}

struct Catalog {
    entries: Vec<CatalogEntry>,
    by_key: HashMap<String, usize>,
}

// The shipped file is checked by a test, so a bad row can only come from a broken build; skipping it
// keeps the other prices usable instead of failing every lookup.
static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
    let entries: Vec<CatalogEntry> = parse(CATALOG_CSV)
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    let by_key = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.model_key.to_ascii_lowercase(), i))
        .collect();
    Catalog { entries, by_key }
});

/// Every model in the catalog, in file order.
pub fn entries() -> &'static [CatalogEntry] {
    &CATALOG.entries
}

/// The entry for a model: the exact LiteLLM key first, then the same name case-insensitively, with a
/// provider prefix ("openai/gpt-5", "anthropic/claude-opus-4-5", "gemini-2.5-pro" for
/// "gemini/gemini-2.5-pro") or with a dot for a version dash ("claude-opus-4.5").
pub fn lookup(model: &str) -> Option<&'static CatalogEntry> {
    let catalog = &*CATALOG;
    let find = |key: &str| {
        catalog
            .by_key
            .get(&key.to_ascii_lowercase())
            .map(|&i| &catalog.entries[i])
    };
    let model = model.trim();
    if let Some(entry) = find(model) {
        return Some(entry);
    }
    let unprefixed = model.rsplit_once('/').map_or(model, |(_, name)| name);
    let candidates = [
        unprefixed.to_string(),
        format!("gemini/{unprefixed}"),
        // Anthropic writes versions with dots in prose and dashes in API ids.
        unprefixed.replace('.', "-"),
    ];
    candidates.iter().find_map(|c| find(c))
}

/// Parses the catalog CSV: one result per data row, so a test can point at the exact bad line.
fn parse(csv: &str) -> Vec<Result<CatalogEntry, CatalogError>> {
    let mut lines = csv.lines().enumerate();
    let header: Vec<&str> = match lines.next() {
        Some((_, h)) => h.split(',').map(str::trim).collect(),
        None => return Vec::new(),
    };
    let column = |name: &str| header.iter().position(|h| *h == name);
    let (Some(key), Some(provider), Some(input), Some(output)) = (
        column("model_key"),
        column("litellm_provider"),
        column("input_usd_per_1M"),
        column("output_usd_per_1M"),
    ) else {
        return vec![Err(CatalogError {
            line: 1,
            reason:
                "header lacks model_key, litellm_provider, input_usd_per_1M or output_usd_per_1M"
                    .into(),
        })];
    };
    let deprecation = column("deprecation_date");
    lines
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            let line_no = index + 1;
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let err = |reason: String| CatalogError {
                line: line_no,
                reason,
            };
            if fields.len() != header.len() {
                return Err(err(format!(
                    "{} fields where the header has {}",
                    fields.len(),
                    header.len()
                )));
            }
            let price = |i: usize| -> Result<f64, CatalogError> {
                let value: f64 = fields[i]
                    .parse()
                    .map_err(|_| err(format!("{} is not a price: {:?}", header[i], fields[i])))?;
                if value.is_finite() && value >= 0.0 {
                    Ok(value)
                } else {
                    Err(err(format!("{} must be zero or more: {value}", header[i])))
                }
            };
            if fields[key].is_empty() {
                return Err(err("empty model_key".into()));
            }
            Ok(CatalogEntry {
                model_key: fields[key].to_string(),
                provider: fields[provider].to_string(),
                input_usd_per_million_tokens: price(input)?,
                output_usd_per_million_tokens: price(output)?,
                deprecation_date: deprecation
                    .map(|i| fields[i])
                    .filter(|d| !d.is_empty())
                    .map(str::to_string),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_catalog_parses_fully() {
        let rows = parse(CATALOG_CSV);
        let bad: Vec<_> = rows.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(bad.is_empty(), "bad rows: {bad:?}");
        let data_lines = CATALOG_CSV
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .count();
        assert_eq!(rows.len(), data_lines);
        assert_eq!(entries().len(), data_lines);
        assert!(data_lines > 50);
    }

    #[test]
    fn model_keys_are_unique() {
        let mut keys: Vec<_> = entries()
            .iter()
            .map(|e| e.model_key.to_ascii_lowercase())
            .collect();
        keys.sort();
        let before = keys.len();
        keys.dedup();
        assert_eq!(before, keys.len());
    }

    #[test]
    fn finds_gpt5_with_its_source() {
        let gpt5 = lookup("gpt-5").expect("gpt-5 is in the catalog");
        assert_eq!(gpt5.input_usd_per_million_tokens, 1.25);
        assert_eq!(gpt5.output_usd_per_million_tokens, 10.0);
        assert_eq!(gpt5.source(), "catalog: gpt-5 (LiteLLM 1.110.2, 2026)");
    }

    #[test]
    fn accepts_obvious_aliases() {
        assert_eq!(
            lookup("openai/gpt-5-mini").map(|e| e.model_key.as_str()),
            Some("gpt-5-mini")
        );
        assert_eq!(lookup("GPT-5").map(|e| e.model_key.as_str()), Some("gpt-5"));
        assert_eq!(
            lookup("gemini-2.5-pro").map(|e| e.model_key.as_str()),
            Some("gemini/gemini-2.5-pro")
        );
        assert_eq!(
            lookup("anthropic/claude-opus-4.5").map(|e| e.model_key.as_str()),
            Some("claude-opus-4-5")
        );
        assert_eq!(lookup("no-such-model"), None);
    }

    #[test]
    fn bad_rows_are_reported_with_their_line() {
        let csv = "model_key,litellm_provider,input_usd_per_1M,output_usd_per_1M\n\
                   good,openai,1.0,2.0\n\
                   bad,openai,cheap,2.0\n\
                   short,openai\n\
                   negative,openai,-1,2\n";
        let rows = parse(csv);
        assert!(rows[0].is_ok());
        assert_eq!(rows[1].as_ref().unwrap_err().line, 3);
        assert!(rows[2].as_ref().unwrap_err().reason.contains("fields"));
        assert!(
            rows[3]
                .as_ref()
                .unwrap_err()
                .reason
                .contains("zero or more")
        );
        assert!(parse("a,b\n")[0].is_err());
    }
}
