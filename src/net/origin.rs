//! Where a request goes: scheme, host and port, and nothing else. Connection pools and TLS
//! policies are keyed by it.

use std::fmt;
use std::sync::Arc;

/// `http://host:port` or `https://host:port`. Cloned for every request and response, so the
/// texts are shared (`Arc<str>`), not copied.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Origin {
    pub tls: bool,
    pub host: Arc<str>,
    pub port: u16,
    /// The `Host` request header, made once from the three above.
    host_header: Arc<str>,
    /// A digest of the scheme and the `Host` header (which decide the other fields), made
    /// once: the connection pool looks an origin up twice per request, and hashing the
    /// text each time cost more than the lookup.
    digest: u64,
}

impl std::hash::Hash for Origin {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.digest);
    }
}

impl Origin {
    /// The origin of `host` (an IPv6 address without brackets) and `port`.
    pub fn new(tls: bool, host: &str, port: u16) -> Origin {
        let default_port = if tls { 443 } else { 80 };
        let bracketed = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let host_header = if port == default_port {
            bracketed
        } else {
            format!("{bracketed}:{port}")
        };
        let digest = {
            use std::hash::{Hash as _, Hasher as _};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            tls.hash(&mut hasher);
            host_header.hash(&mut hasher);
            hasher.finish()
        };
        Origin {
            tls,
            host: host.into(),
            port,
            host_header: host_header.into(),
            digest,
        }
    }

    /// Parses `http://h[:p]` or `https://h[:p]` (IPv6 as `[::1]`). A trailing `/` is allowed;
    /// any other path, a query or user info is an error.
    pub fn parse(url: &str) -> Result<Origin, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else {
            return Err(format!("{url:?}: expected http:// or https://"));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        if authority.contains(['/', '?', '#', '@', ' ']) {
            return Err(format!("{url:?}: only scheme://host:port is allowed here"));
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{url:?}: unterminated IPv6 address"))?;
            let port = match after {
                "" => default_port,
                p => p
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| format!("{url:?}: bad port"))?,
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (
                    host,
                    port.parse().map_err(|_| format!("{url:?}: bad port"))?,
                ),
                None => (authority, default_port),
            }
        };
        if host.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        Ok(Origin::new(tls, host, port))
    }

    /// The value of the `Host` request header.
    pub fn host_header(&self) -> &str {
        &self.host_header
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl std::str::FromStr for Origin {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Origin::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays() {
        let o = Origin::parse("http://keep0.example:25107").expect("test input");
        assert_eq!((o.tls, &*o.host, o.port), (false, "keep0.example", 25107));
        assert_eq!(o.to_string(), "http://keep0.example:25107");
        let o = Origin::parse("https://h/").expect("test input");
        assert_eq!((o.tls, o.port), (true, 443));
        assert_eq!(o.host_header(), "h");
        let o = Origin::parse("http://[::1]:8080").expect("test input");
        assert_eq!(&*o.host, "::1");
        assert_eq!(o.host_header(), "[::1]:8080");
        assert_eq!(o.to_string(), "http://[::1]:8080");
        assert!(Origin::parse("http://h:1/path").is_err());
        assert!(Origin::parse("ftp://h").is_err());
        assert!(Origin::parse("http://h:x").is_err());
        assert!(Origin::parse("http://").is_err());
    }
}
