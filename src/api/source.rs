//! The `PrometheusSource` custom resource (`crossover.dev/v1alpha1`, cluster-scoped): a Prometheus
//! server an administrator vouches for, with its CA and credentials, that pools name in
//! `spec.scaling.metrics.prometheus.sourceRef`. A pool author can therefore never pair a token
//! with a URL of their choosing (KEDA's ClusterTriggerAuthentication model). The Secrets and
//! ConfigMaps it names live in the operator's own namespace. Types only, no IO.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A Prometheus server (or a compatible API: Thanos, Mimir, VictoriaMetrics) pools may read load
/// from, defined by a cluster administrator.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "crossover.dev",
    version = "v1alpha1",
    kind = "PrometheusSource",
    plural = "prometheussources",
    singular = "prometheussource",
    shortname = "promsource",
    category = "crossover",
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.url", description = "Base URL of the Prometheus HTTP API"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    cel,
    validation = Rule::new("!has(self.spec.bearerTokenSecretRef) || self.spec.url.startsWith('https://') || self.spec.allowTokenOverHttp").message("spec.bearerTokenSecretRef would travel over plain http: use an https:// URL, or set spec.allowTokenOverHttp: true to accept that risk")
)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSourceSpec {
    /// Base URL of the Prometheus HTTP API, such as https://prometheus.monitoring:9090.
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("spec.url must start with http:// or https://"))]
    #[x_kube(validation = Rule::new("!self.matches('^https?://[^/?#]*@')").message("spec.url must not carry credentials (user:password@): use spec.bearerTokenSecretRef"))]
    pub url: String,

    /// CA bundle (PEM) that signs the server's certificate, from a ConfigMap or a Secret in the
    /// operator's namespace. Without it, the system roots are trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CaBundle>,

    /// Secret key in the operator's namespace holding a bearer token for the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret_ref: Option<KeyRef>,

    /// Send the bearer token over plain http (off: an http URL with a token is refused).
    #[serde(default)]
    pub allow_token_over_http: bool,

    /// Extra request headers, such as X-Scope-OrgID for a multi-tenant Mimir. Not for secrets:
    /// they are visible to whoever can read this object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub headers: Vec<Header>,

    /// PromQL label matchers every query on this server adds, such as cluster="east" for a store
    /// that holds several clusters. Pools may narrow further with their own selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new(SELECTOR_RULE).message(SELECTOR_MESSAGE))]
    pub selector: Option<String>,
}

/// PromQL label matchers, and nothing else (so a selector can only narrow a query).
pub const SELECTOR_RULE: &str = r#"self.matches('^\\s*([a-zA-Z_][a-zA-Z0-9_]*\\s*(=|!=|=~|!~)\\s*"([^"\\\\]|\\\\.)*"\\s*(,\\s*|$))*$')"#;
pub const SELECTOR_MESSAGE: &str =
    r#"selector must be PromQL label matchers such as job="vllm",cluster=~"east|west""#;

/// A key in a ConfigMap or Secret of the operator's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct KeyRef {
    /// Object name.
    #[schemars(length(max = 253))]
    pub name: String,
    /// Key within it.
    #[schemars(length(max = 253))]
    pub key: String,
}

/// Where a CA bundle is.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.configMapKeyRef) != has(self.secretKeyRef)").message("spec.ca needs exactly one of configMapKeyRef or secretKeyRef"))]
pub struct CaBundle {
    /// A ConfigMap key holding PEM certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeyRef>,
    /// A Secret key holding PEM certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeyRef>,
}

/// One request header.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Header {
    /// Header name. Authorization and Host are refused: use bearerTokenSecretRef and url.
    #[schemars(length(max = 256))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9!#$%&*+.^_`|~-]+$') && !(self.lowerAscii() in ['authorization', 'host', 'cookie'])").message("spec.headers[].name must be a header name other than Authorization, Host or Cookie"))]
    pub name: String,
    /// Header value.
    #[schemars(length(max = 4096))]
    pub value: String,
}
