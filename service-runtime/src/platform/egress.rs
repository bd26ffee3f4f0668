//! Where outgoing calls that a tenant can influence may go (provider base URLs, HTTP tools,
//! fetch-by-URL), and which platform credentials may be sent on a tenant's behalf.
//!
//! Only `http` and `https`. Never loopback, link-local (cloud metadata), private, shared
//! (CGNAT), documentation, benchmarking, multicast, broadcast or reserved addresses, in
//! IPv4, IPv6 or IPv4 embedded in IPv6; never the cluster's own names (`localhost`,
//! `*.svc`, `*.cluster.local`, `kubernetes.default`, single-label names, …) — unless the
//! platform's allowlist (`FAAS_EGRESS_ALLOW`) names the network or the host; with
//! `FAAS_EGRESS_PUBLIC=false`, nothing but the allowlist. A URL is checked, without resolving
//! its name, when it is registered and before every request; [`GuardedResolver`] then judges
//! every address a name resolves to when a connection is made, so a name that points inside
//! (at once, or later by DNS rebinding) is refused. A refusal reads the same whatever is
//! behind the address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures::future::BoxFuture;
use ipnet::IpNet;
use serde::Deserialize;

use super::config::SecretString;

/// The setting holding the allowlist.
pub const ALLOW_SETTING: &str = "FAAS_EGRESS_ALLOW";
/// The setting that, when `false`, confines calls to the allowlist.
pub const PUBLIC_SETTING: &str = "FAAS_EGRESS_PUBLIC";
/// The setting holding the credentials the platform binds to tenants.
pub const CREDENTIALS_SETTING: &str = "FAAS_GATEWAY_CREDENTIALS";
/// Environment variables holding credential values start with this.
pub const KEY_ENV_PREFIX: &str = "LLM_API_KEY_";

/// Why a URL may not be called. The texts are safe to show to the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("only http and https URLs may be called")]
    Scheme,
    #[error("the URL must name a host")]
    NoHost,
    #[error(
        "the host is not allowed by the egress policy or does not resolve to an allowed address"
    )]
    Blocked,
}

/// Networks nobody outside the platform should reach through us.
static FORBIDDEN: LazyLock<Vec<IpNet>> = LazyLock::new(|| {
    [
        "0.0.0.0/8",       // "this network"
        "10.0.0.0/8",      // private
        "100.64.0.0/10",   // shared address space (CGNAT)
        "127.0.0.0/8",     // loopback
        "169.254.0.0/16",  // link-local, cloud metadata
        "172.16.0.0/12",   // private
        "192.0.0.0/24",    // IETF protocol assignments
        "192.0.2.0/24",    // documentation
        "192.88.99.0/24",  // 6to4 relay anycast
        "192.168.0.0/16",  // private
        "198.18.0.0/15",   // benchmarking
        "198.51.100.0/24", // documentation
        "203.0.113.0/24",  // documentation
        "224.0.0.0/4",     // multicast
        "240.0.0.0/4",     // reserved, broadcast
        "::/96",           // unspecified, loopback, IPv4-compatible
        "64:ff9b:1::/48",  // local-use NAT64
        "100::/64",        // discard
        "2001::/32",       // Teredo
        "2001:10::/28",    // ORCHID
        "2001:20::/28",    // ORCHIDv2
        "2001:db8::/32",   // documentation
        "3fff::/20",       // documentation
        "fc00::/7",        // unique local
        "fe80::/10",       // link-local
        "fec0::/10",       // site-local
        "ff00::/8",        // multicast
    ]
    .iter()
    .map(|n| n.parse().expect("a valid network"))
    .collect()
});

/// Name suffixes that only mean something inside a cluster or a host.
const INTERNAL_SUFFIXES: [&str; 10] = [
    "localhost",
    "local",
    "localdomain",
    "internal",
    "home.arpa",
    "svc",
    "cluster.local",
    "test",
    "example",
    "invalid",
];

/// Exact names of the cluster's own API.
const INTERNAL_NAMES: [&str; 2] = ["kubernetes.default", "kubernetes.default.svc"];

/// The address outgoing calls go to for the purpose of the rules: IPv4 embedded in IPv6
/// (mapped, NAT64, 6to4) is judged as the IPv4 address it carries.
fn effective(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let s = v6.segments();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return IpAddr::V4(embedded_v4(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return IpAddr::V4(embedded_v4(s[1], s[2]));
    }
    ip
}

fn embedded_v4(hi: u16, lo: u16) -> Ipv4Addr {
    let [a, b] = hi.to_be_bytes();
    let [c, d] = lo.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

/// Whether the address is in a network the rules keep out of reach.
pub fn is_forbidden(ip: IpAddr) -> bool {
    let ip = effective(ip);
    FORBIDDEN.iter().any(|n| n.contains(&ip))
}

/// Lower case, without the trailing dot of a fully qualified name.
fn normalise_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether a (normalised) host name names something inside the cluster or the host.
pub fn is_internal_name(host: &str) -> bool {
    !host.contains('.')
        || INTERNAL_NAMES.contains(&host)
        || INTERNAL_SUFFIXES
            .iter()
            .any(|s| host == *s || host.ends_with(&format!(".{s}")))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostRule {
    Exact(String),
    /// `*.example.com`: every name below example.com.
    Below(String),
}

/// The egress rules plus the platform's allowlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPolicy {
    nets: Vec<IpNet>,
    hosts: Vec<HostRule>,
    /// Whether public addresses the allowlist does not name may be called.
    public: bool,
}

impl Default for EgressPolicy {
    fn default() -> Self {
        Self {
            nets: Vec::new(),
            hosts: Vec::new(),
            public: true,
        }
    }
}

fn valid_host_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

impl EgressPolicy {
    /// Parses the allowlist: entries separated by commas or white space, each a network in
    /// CIDR notation, an IP address, a host name, or `*.` and a domain for every name below it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut policy = Self::default();
        for entry in text.split([',', ' ', '\n', '\t']).filter(|e| !e.is_empty()) {
            if let Ok(net) = entry.parse::<IpNet>() {
                policy.nets.push(net.trunc());
            } else if let Ok(ip) = entry.trim_matches(['[', ']']).parse::<IpAddr>() {
                policy.nets.push(IpNet::from(ip));
            } else if let Some(domain) = entry.strip_prefix("*.") {
                let d = normalise_host(domain);
                if !valid_host_name(&d) {
                    return Err(format!("{entry:?} is not a valid domain"));
                }
                policy.hosts.push(HostRule::Below(d));
            } else {
                let h = normalise_host(entry);
                if !valid_host_name(&h) {
                    return Err(format!(
                        "{entry:?} is neither a network (CIDR), an IP address nor a host name"
                    ));
                }
                policy.hosts.push(HostRule::Exact(h));
            }
        }
        Ok(policy)
    }

    /// The same allowlist, with or without the public Internet.
    pub fn with_public(mut self, public: bool) -> Self {
        self.public = public;
        self
    }

    /// Whether the allowlist names the host (normalised), so its addresses are not judged.
    pub fn allows_host(&self, host: &str) -> bool {
        let host = normalise_host(host);
        self.hosts.iter().any(|r| match r {
            HostRule::Exact(h) => *h == host,
            HostRule::Below(d) => host.ends_with(&format!(".{d}")),
        })
    }

    /// Whether a call may connect to the address.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let eff = effective(ip);
        (self.public && !is_forbidden(ip))
            || self
                .nets
                .iter()
                .any(|n| n.contains(&ip) || n.contains(&eff))
    }

    /// Whether a name the allowlist does not name may be resolved and judged by its
    /// addresses.
    fn may_resolve(&self, host: &str) -> bool {
        self.public && !is_internal_name(host)
    }

    /// Every address must be allowed; an empty answer is refused.
    pub fn check_addrs(&self, addrs: &[IpAddr]) -> Result<(), Refusal> {
        if addrs.is_empty() || !addrs.iter().all(|ip| self.allows_ip(*ip)) {
            return Err(Refusal::Blocked);
        }
        Ok(())
    }

    /// The checks that need no name resolution: the scheme, IP-literal hosts and names.
    pub fn check_url(&self, url: &url::Url) -> Result<(), Refusal> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refusal::Scheme);
        }
        match url.host().ok_or(Refusal::NoHost)? {
            url::Host::Ipv4(ip) => self.check_addrs(&[IpAddr::V4(ip)]),
            url::Host::Ipv6(ip) => self.check_addrs(&[IpAddr::V6(ip)]),
            url::Host::Domain(d) => {
                let d = normalise_host(d);
                if self.allows_host(&d) || self.may_resolve(&d) {
                    Ok(())
                } else {
                    Err(Refusal::Blocked)
                }
            }
        }
    }
}

/// Name resolution, replaceable so that tests (or another resolver) can stand in.
pub trait Lookup: Send + Sync + 'static {
    fn lookup(&self, host: String) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>>;
}

/// The system resolver.
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: String) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves a name the allowlist does not name, as a fully qualified name, so the search
/// domains of a pod (`<ns>.svc.cluster.local`, …) never turn it into a cluster service.
async fn resolve_checked(
    policy: &EgressPolicy,
    lookup: &dyn Lookup,
    host: &str,
) -> Result<Vec<IpAddr>, Refusal> {
    if !policy.may_resolve(host) {
        return Err(Refusal::Blocked);
    }
    match tokio::time::timeout(LOOKUP_TIMEOUT, lookup.lookup(format!("{host}."))).await {
        Ok(Ok(addrs)) => Ok(addrs),
        _ => Err(Refusal::Blocked),
    }
}

/// The resolver of clients that call tenant-influenced URLs: answers only addresses the
/// policy allows, and refuses the name when any of its addresses is not allowed.
pub struct GuardedResolver {
    policy: Arc<EgressPolicy>,
    lookup: Arc<dyn Lookup>,
}

impl GuardedResolver {
    pub fn new(policy: Arc<EgressPolicy>, lookup: Arc<dyn Lookup>) -> Self {
        Self { policy, lookup }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (policy, lookup) = (self.policy.clone(), self.lookup.clone());
        let host = normalise_host(name.as_str());
        Box::pin(async move {
            let addrs = if policy.allows_host(&host) {
                lookup.lookup(host).await?
            } else {
                let addrs = resolve_checked(&policy, lookup.as_ref(), &host).await?;
                policy.check_addrs(&addrs)?;
                addrs
            };
            let out: reqwest::dns::Addrs =
                Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(out)
        })
    }
}

/// Whether an error (of a reqwest call, say) was caused by a refusal of the policy.
pub fn refusal_in(e: &(dyn std::error::Error + 'static)) -> Option<Refusal> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Refusal>() {
            return Some(*r);
        }
        cur = err.source();
    }
    None
}

/// Which tenants a credential serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tenants {
    /// Every tenant: a shared platform credential.
    All,
    Only(Vec<String>),
}

/// A secret the platform lets some tenants use, sent only to `base_url`.
#[derive(Debug, Clone)]
pub struct Credential {
    pub name: String,
    pub tenants: Tenants,
    /// Without a trailing '/'.
    pub base_url: String,
    /// The variable the value was read from (for messages; never the value).
    pub key_env: String,
    pub key: SecretString,
}

impl Credential {
    pub fn serves(&self, tenant: &str) -> bool {
        match &self.tenants {
            Tenants::All => true,
            Tenants::Only(list) => list.iter().any(|t| t == tenant),
        }
    }

    /// Whether `url` lies under the base URL the credential is bound to.
    pub fn covers(&self, url: &str) -> bool {
        url.strip_prefix(&self.base_url)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

/// The credentials of the platform, by name.
#[derive(Debug, Clone, Default)]
pub struct CredentialSet(Vec<Credential>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialEntry {
    name: String,
    tenants: TenantsEntry,
    base_url: String,
    key_env: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TenantsEntry {
    One(String),
    List(Vec<String>),
}

/// Lower-case letters, digits and '-', 1 to 63 characters, not starting with '-'.
pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && !n.starts_with('-')
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// An absolute http(s) URL without credentials, query or fragment, without trailing '/'.
pub fn normalise_base_url(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|_| "must be an absolute http(s) URL".to_string())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("must be an absolute http(s) URL".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not hold credentials".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or a fragment".into());
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

impl CredentialSet {
    /// Parses the setting (YAML or JSON: a list of `{name, tenants, base_url, key_env}`);
    /// `keys` are the `LLM_API_KEY_*` variables of the process.
    pub fn parse(
        text: &str,
        keys: &std::collections::HashMap<String, String>,
        policy: &EgressPolicy,
    ) -> Result<Self, String> {
        let entries: Vec<CredentialEntry> = serde_yaml::from_str(text)
            .map_err(|e| format!("must be a list of {{name, tenants, base_url, key_env}}: {e}"))?;
        let mut out: Vec<Credential> = Vec::new();
        for e in entries {
            let c = Self::entry(e, keys, policy)?;
            if out.iter().any(|o| o.name == c.name) {
                return Err(format!("credential {} is listed twice", c.name));
            }
            out.push(c);
        }
        Ok(Self(out))
    }

    fn entry(
        e: CredentialEntry,
        keys: &std::collections::HashMap<String, String>,
        policy: &EgressPolicy,
    ) -> Result<Credential, String> {
        if !valid_name(&e.name) {
            return Err(format!(
                "credential {:?}: name must be 1 to 63 lower-case letters, digits or '-'",
                e.name
            ));
        }
        let at = |m: String| format!("credential {}: {m}", e.name);
        let tenants = match e.tenants {
            TenantsEntry::One(s) if s == "*" => Tenants::All,
            TenantsEntry::One(s) => Tenants::Only(vec![s]),
            TenantsEntry::List(l) => Tenants::Only(l),
        };
        if let Tenants::Only(list) = &tenants
            && (list.is_empty() || !list.iter().all(|t| super::auth::valid_tenant_id(t)))
        {
            return Err(at(
                "tenants must be \"*\" or a non-empty list of tenant ids".into(),
            ));
        }
        let base_url = normalise_base_url(&e.base_url).map_err(|m| at(format!("base_url {m}")))?;
        let parsed = url::Url::parse(&base_url).map_err(|_| at("base_url is not a URL".into()))?;
        policy.check_url(&parsed).map_err(|r| {
            at(format!(
                "base_url: {r}; add its host to {ALLOW_SETTING} if the platform means it"
            ))
        })?;
        if !e.key_env.starts_with(KEY_ENV_PREFIX) {
            return Err(at(format!("key_env must start with {KEY_ENV_PREFIX}")));
        }
        let key = keys
            .get(&e.key_env)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| at(format!("the variable {} is not set", e.key_env)))?;
        Ok(Credential {
            name: e.name,
            tenants,
            base_url,
            key_env: e.key_env,
            key: SecretString::from(key.as_str()),
        })
    }

    /// The credential named `name` when it serves `tenant`; `None` when it does not exist
    /// or serves others only, which callers must not tell apart.
    pub fn for_tenant(&self, name: &str, tenant: &str) -> Option<&Credential> {
        self.0.iter().find(|c| c.name == name && c.serves(tenant))
    }

    /// Every credential that serves `tenant`.
    pub fn available_to<'a>(&'a self, tenant: &'a str) -> impl Iterator<Item = &'a Credential> {
        self.0.iter().filter(move |c| c.serves(tenant))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Credential> {
        self.0.iter()
    }
}

/// Both egress settings, read once at start-up.
#[derive(Debug, Clone, Default)]
pub struct EgressSettings {
    pub policy: Arc<EgressPolicy>,
    pub credentials: Arc<CredentialSet>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forbidden_ranges_cover_every_internal_kind_of_address() {
        for a in [
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2001:db8::1",
        ] {
            assert!(is_forbidden(ip(a)), "{a} must be forbidden");
        }
        for a in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "172.32.0.1",
        ] {
            assert!(!is_forbidden(ip(a)), "{a} must be allowed");
        }
    }

    #[test]
    fn urls_are_checked_without_resolving_names() {
        let p = EgressPolicy::default();
        let check = |u: &str| p.check_url(&url::Url::parse(u).unwrap());
        for u in [
            "http://127.0.0.1:8080/v1",
            "http://[::1]/",
            "http://[::ffff:7f00:1]/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.1/",
            "http://localhost:11434",
            "http://LOCALHOST./",
            "http://api.localhost/",
            "http://redis:6379/",
            "http://vllm.ml.svc/",
            "http://vllm.ml.svc.cluster.local./v1",
            "https://kubernetes.default/api",
            "http://metadata.google.internal/",
            "http://printer.local/",
        ] {
            assert_eq!(check(u), Err(Refusal::Blocked), "{u}");
        }
        assert_eq!(check("ftp://example.com/"), Err(Refusal::Scheme));
        assert_eq!(check("file:///etc/passwd"), Err(Refusal::Scheme));
        assert_eq!(check("https://api.openai.com/v1"), Ok(()));
        assert_eq!(check("http://93.184.215.14/"), Ok(()));
    }

    #[test]
    fn the_allowlist_opens_networks_and_hosts() {
        let p = EgressPolicy::parse(
            "127.0.0.1, 10.20.0.0/16 vllm.ml.svc.cluster.local\n*.corp.example.com",
        )
        .unwrap();
        let check = |u: &str| p.check_url(&url::Url::parse(u).unwrap());
        assert_eq!(check("http://127.0.0.1:9000/"), Ok(()));
        assert_eq!(check("http://[::ffff:127.0.0.1]:9000/"), Ok(()));
        assert_eq!(check("http://127.0.0.2/"), Err(Refusal::Blocked));
        assert_eq!(check("http://10.20.3.4/"), Ok(()));
        assert_eq!(check("http://10.21.0.1/"), Err(Refusal::Blocked));
        assert_eq!(check("http://vllm.ml.svc.cluster.local/v1"), Ok(()));
        assert_eq!(
            check("http://other.ml.svc.cluster.local/v1"),
            Err(Refusal::Blocked)
        );
        assert!(p.allows_host("llm.corp.example.com."));
        assert!(!p.allows_host("corp.example.com"));
        assert_eq!(check("https://api.openai.com/v1"), Ok(()));
        let only = p.clone().with_public(false);
        let check = |u: &str| only.check_url(&url::Url::parse(u).unwrap());
        assert_eq!(check("https://api.openai.com/v1"), Err(Refusal::Blocked));
        assert_eq!(check("http://8.8.8.8/"), Err(Refusal::Blocked));
        assert_eq!(check("http://127.0.0.1:9000/"), Ok(()));
        assert_eq!(check("http://llm.corp.example.com/"), Ok(()));
        for bad in ["10.0.0.0/33", "bad_host", "*.", "a..b", "http://x.com"] {
            assert!(EgressPolicy::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn any_forbidden_address_refuses_the_name() {
        let p = EgressPolicy::default();
        assert_eq!(p.check_addrs(&[ip("8.8.8.8")]), Ok(()));
        assert_eq!(
            p.check_addrs(&[ip("8.8.8.8"), ip("127.0.0.1")]),
            Err(Refusal::Blocked)
        );
        assert_eq!(p.check_addrs(&[]), Err(Refusal::Blocked));
    }

    fn keys() -> std::collections::HashMap<String, String> {
        [("LLM_API_KEY_OPENAI".to_string(), "sk-value".to_string())].into()
    }

    #[test]
    fn credentials_are_bound_to_tenants_and_a_base_url() {
        let text = r#"
- name: shared
  tenants: "*"
  base_url: https://api.openai.com/v1/
  key_env: LLM_API_KEY_OPENAI
- name: team-a
  tenants: [team-a, team-b]
  base_url: https://api.anthropic.com
  key_env: LLM_API_KEY_OPENAI
"#;
        let set = CredentialSet::parse(text, &keys(), &EgressPolicy::default()).unwrap();
        let shared = set.for_tenant("shared", "anyone").unwrap();
        assert_eq!(shared.base_url, "https://api.openai.com/v1");
        assert!(shared.covers("https://api.openai.com/v1/chat/completions"));
        assert!(!shared.covers("https://api.openai.com/v10/x"));
        assert!(!shared.covers("https://api.openai.com.evil.test/v1"));
        assert!(set.for_tenant("team-a", "team-b").is_some());
        assert!(set.for_tenant("team-a", "team-c").is_none());
        assert!(set.for_tenant("nope", "team-a").is_none());
        assert!(!format!("{set:?}").contains("sk-value"));
    }

    #[test]
    fn wrong_credential_entries_are_refused_with_a_reason() {
        let p = EgressPolicy::default();
        for (text, word) in [
            ("name: x", "list"),
            (
                "- {name: Bad, tenants: '*', base_url: 'https://a.com', key_env: LLM_API_KEY_OPENAI}",
                "name",
            ),
            (
                "- {name: a, tenants: [], base_url: 'https://a.com', key_env: LLM_API_KEY_OPENAI}",
                "tenants",
            ),
            (
                "- {name: a, tenants: ['bad id'], base_url: 'https://a.com', key_env: LLM_API_KEY_OPENAI}",
                "tenants",
            ),
            (
                "- {name: a, tenants: '*', base_url: 'https://u:p@a.com', key_env: LLM_API_KEY_OPENAI}",
                "credentials",
            ),
            (
                "- {name: a, tenants: '*', base_url: 'http://10.0.0.1', key_env: LLM_API_KEY_OPENAI}",
                ALLOW_SETTING,
            ),
            (
                "- {name: a, tenants: '*', base_url: 'https://a.com', key_env: DATABASE_URL}",
                "key_env",
            ),
            (
                "- {name: a, tenants: '*', base_url: 'https://a.com', key_env: LLM_API_KEY_MISSING}",
                "not set",
            ),
            (
                "- {name: a, tenants: '*', base_url: 'https://a.com', key_env: LLM_API_KEY_OPENAI, extra: 1}",
                "unknown field",
            ),
            (
                "[{name: a, tenants: '*', base_url: 'https://a.com', key_env: LLM_API_KEY_OPENAI}, {name: a, tenants: '*', base_url: 'https://b.com', key_env: LLM_API_KEY_OPENAI}]",
                "twice",
            ),
        ] {
            let err = CredentialSet::parse(text, &keys(), &p).unwrap_err();
            assert!(err.contains(word), "{text}: {err}");
        }
    }
}
