//! The HTTP every metrics read goes through, hardened for endpoints a pool author controls:
//! rustls (ring, as kube uses; system roots or an administrator's CA), no redirects, no proxy,
//! connect and total timeouts, bodies read as a stream under a byte cap (refused at once on a
//! large Content-Length), link-local and cloud-metadata addresses refused by default (for names
//! too, in the resolver), and errors reduced to a kind: no response body, reqwest message or URL
//! query ever reaches status, Events or logs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use thiserror::Error;

/// The most a pod's /metrics may send; vLLM's is tens of kilobytes.
pub const SCRAPE_BODY_LIMIT_BYTES: u64 = 10 * 1024 * 1024;
/// The most one Prometheus answer may send; the queries are scoped to the namespaces with pools.
pub const PROMETHEUS_BODY_LIMIT_BYTES: u64 = 32 * 1024 * 1024;
/// Time to establish a connection (TCP and TLS); the total per request is the caller's timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What a client may connect to and trust.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// Connect to link-local and metadata addresses too (off by default).
    pub allow_link_local: bool,
    /// A PEM bundle to trust instead of the system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Total time of one request, body included.
    pub timeout: Duration,
    /// Keep connections open between requests. Off for scraping: every pod is a host of its own,
    /// so a keep-alive pool holds one connection per pod between scrapes (2,000 at a thousand
    /// pools, most of the operator's memory) to save a TCP handshake.
    pub keep_alive: bool,
}

/// Why a client could not be built.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("the CA bundle holds no PEM certificate")]
    BadCa,
    #[error("the HTTP client cannot be built")]
    Build,
}

/// A client for metrics reads.
pub fn client(opts: &ClientOptions) -> Result<reqwest::Client, ClientError> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(opts.timeout)
        .pool_max_idle_per_host(if opts.keep_alive { usize::MAX } else { 0 })
        .dns_resolver(Arc::new(GuardedResolver {
            allow_link_local: opts.allow_link_local,
        }));
    if let Some(pem) = &opts.ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|_| ClientError::BadCa)?;
        if certs.is_empty() {
            return Err(ClientError::BadCa);
        }
        b = b.tls_built_in_root_certs(false);
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|_| ClientError::Build)
}

/// Link-local (169.254.0.0/16, fe80::/10) and the cloud metadata addresses outside it
/// (AWS's fd00:ec2::254, Alibaba's 100.100.100.200), also as IPv4-mapped IPv6.
pub fn is_refused_address(ip: IpAddr) -> bool {
    const ALIBABA_METADATA: Ipv4Addr = Ipv4Addr::new(100, 100, 100, 200);
    const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
    match ip {
        IpAddr::V4(v4) => v4.is_link_local() || v4 == ALIBABA_METADATA,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_refused_address(IpAddr::V4(v4));
            }
            (v6.segments()[0] & 0xffc0) == 0xfe80 || v6 == AWS_METADATA_V6
        }
    }
}

/// The resolver's refusal, found again in the error chain to name it.
#[derive(Debug, Error)]
#[error("every address of the host is link-local or a cloud metadata address")]
struct AddressRefused;

/// System DNS, minus the refused addresses: a name pointing at 169.254.169.254 is refused like
/// the literal would be.
struct GuardedResolver {
    allow_link_local: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow_link_local;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let ok: Vec<SocketAddr> = addrs
                .filter(|a| allow || !is_refused_address(a.ip()))
                .collect();
            if ok.is_empty() {
                return Err(Box::new(AddressRefused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(ok.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Why a URL is not read.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum UrlError {
    #[error("is not a valid URL")]
    Invalid,
    #[error("must use http or https")]
    Scheme,
    #[error("must not carry credentials (user:password@); use a PrometheusSource")]
    Credentials,
    #[error("is a link-local or cloud metadata address, which crossover refuses")]
    AddressRefused,
    #[error("must not carry a query or fragment (crossover appends the API path)")]
    Query,
}

/// Checks a base URL before any request: scheme, no userinfo, no refused IP literal (names are
/// checked by the resolver when they are looked up).
pub fn check_url(url: &str, allow_link_local: bool) -> Result<reqwest::Url, UrlError> {
    let u = reqwest::Url::parse(url).map_err(|_| UrlError::Invalid)?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(UrlError::Scheme);
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(UrlError::Credentials);
    }
    // A `?` or `#` would turn the appended /api/v1/query into a parameter: any path on the host.
    if u.query().is_some() || u.fragment().is_some() {
        return Err(UrlError::Query);
    }
    let host = u.host_str().ok_or(UrlError::Invalid)?;
    let ip = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok();
    if !allow_link_local && ip.is_some_and(is_refused_address) {
        return Err(UrlError::AddressRefused);
    }
    Ok(u)
}

/// A URL as it may be shown: no userinfo, query or fragment.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string().trim_end_matches('/').to_string()
        }
        Err(_) => "(an invalid URL)".to_string(),
    }
}

/// A failed request, by kind only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum RequestError {
    #[error("timed out")]
    Timeout,
    #[error("could not connect")]
    Connect,
    #[error("refused: the address is link-local or a cloud metadata address")]
    AddressRefused,
    #[error("TLS handshake failed (check the CA and the server name)")]
    Tls,
    #[error("the request failed")]
    Other,
}

impl RequestError {
    pub fn kind(&self) -> &'static str {
        match self {
            RequestError::Timeout => "timeout",
            RequestError::Connect => "connect",
            RequestError::AddressRefused => "address_refused",
            RequestError::Tls => "tls",
            RequestError::Other => "request",
        }
    }
}

impl From<reqwest::Error> for RequestError {
    fn from(e: reqwest::Error) -> Self {
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            if s.downcast_ref::<AddressRefused>().is_some() {
                return RequestError::AddressRefused;
            }
            // rustls is not a direct dependency: its errors are recognised by their words (used
            // only to pick the kind, never shown).
            let words = s.to_string().to_ascii_lowercase();
            if words.contains("certificate") || words.contains("tls") {
                return RequestError::Tls;
            }
            source = s.source();
        }
        if e.is_timeout() {
            RequestError::Timeout
        } else if e.is_connect() {
            RequestError::Connect
        } else {
            RequestError::Other
        }
    }
}

/// Why a body was not read to the end.
#[derive(Debug, Error)]
pub enum BodyError<E> {
    #[error("the response is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("reading the response failed: {0}")]
    Read(RequestError),
    #[error(transparent)]
    Sink(E),
}

/// Streams a response body into `sink` chunk by chunk, refusing it past `limit` bytes (at once
/// when Content-Length says so). Nothing is buffered here beyond one chunk.
pub async fn stream_body<E>(
    resp: reqwest::Response,
    limit: u64,
    mut sink: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), BodyError<E>> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut read = 0u64;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| BodyError::Read(e.into()))?;
        read += chunk.len() as u64;
        if read > limit {
            return Err(BodyError::TooLarge { limit });
        }
        sink(&chunk).map_err(BodyError::Sink)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_and_link_local_addresses_are_refused() {
        for ip in [
            "169.254.169.254",
            "169.254.0.1",
            "100.100.100.200",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_refused_address(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "10.0.0.7",
            "127.0.0.1",
            "127.2.0.9",
            "fd00::7",
            "192.168.1.1",
        ] {
            assert!(!is_refused_address(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_are_checked_and_redacted() {
        assert!(check_url("http://prometheus.monitoring:9090", false).is_ok());
        assert_eq!(
            check_url("http://169.254.169.254/latest", false).unwrap_err(),
            UrlError::AddressRefused
        );
        assert!(check_url("http://169.254.169.254/latest", true).is_ok());
        assert_eq!(
            check_url("https://u:p@thanos:443", false).unwrap_err(),
            UrlError::Credentials
        );
        assert_eq!(
            check_url("file:///etc/passwd", false).unwrap_err(),
            UrlError::Scheme
        );
        assert_eq!(
            check_url("http://10.0.0.5:8500/v1/agent/self?", false).unwrap_err(),
            UrlError::Query
        );
        assert_eq!(
            redact_url("https://user:pw@thanos.example:443/prom?token=s3cret#x"),
            "https://thanos.example/prom"
        );
    }
}
