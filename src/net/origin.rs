//! Where a request goes: scheme, host and port, parsed from `http[s]://host:port`.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    pub tls: bool,
    /// A DNS name or an IP literal, without brackets.
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// Parses `http://host[:port]` or `https://host[:port]` (a trailing `/` is allowed; IPv6
    /// literals may be bracketed or, as Go builds them, not).
    pub fn parse(url: &str) -> Result<Origin, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("{url:?} is not an http:// or https:// URL"));
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') {
            return Err(format!("{url:?}: expected scheme://host:port with no path"));
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| format!("{url:?}: unclosed '['"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("{url:?}: bad port"))?,
                None if after.is_empty() => default_port,
                None => return Err(format!("{url:?}: bad port")),
            };
            (host.to_string(), port)
        } else if rest.matches(':').count() > 1 {
            // Unbracketed IPv6 with a port, as Go's keepclient builds it: port after the last ':'.
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| format!("{url:?}: bad host"))?;
            (
                host.to_string(),
                port.parse().map_err(|_| format!("{url:?}: bad port"))?,
            )
        } else if let Some((host, port)) = rest.split_once(':') {
            (
                host.to_string(),
                port.parse().map_err(|_| format!("{url:?}: bad port"))?,
            )
        } else {
            (rest.to_string(), default_port)
        };
        if host.is_empty() {
            return Err(format!("{url:?}: empty host"));
        }
        Ok(Origin { tls, host, port })
    }

    /// `host:port` for connecting and for the Host header (IPv6 bracketed).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.authority())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_and_bracketed_forms() {
        let o = Origin::parse("http://keep0.zzzzz.arvadosapi.com:25107").expect("test input");
        assert_eq!(
            (o.tls, o.host.as_str(), o.port),
            (false, "keep0.zzzzz.arvadosapi.com", 25107)
        );
        let o = Origin::parse("https://[::1]:8443/").expect("test input");
        assert_eq!((o.host.as_str(), o.port), ("::1", 8443));
        assert_eq!(o.to_string(), "https://[::1]:8443");
        let o = Origin::parse("http://::1:25107").expect("test input");
        assert_eq!((o.host.as_str(), o.port), ("::1", 25107));
        assert_eq!(Origin::parse("https://h").expect("test input").port, 443);
        assert!(Origin::parse("ftp://h").is_err());
        assert!(Origin::parse("http://h:99999").is_err());
        assert!(Origin::parse("http://h:1/path").is_err());
    }
}
