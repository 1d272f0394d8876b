//! The keep_services list (`keep-protocol.md` §3.2) and the roots built from it the way the
//! Go client builds them (§3.3): every service is a read root, writable = not read-only.

use serde::Deserialize;

/// `service_type` values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceType {
    Disk,
    Proxy,
    Blob,
    Gateway(String),
    Other(String),
}

impl ServiceType {
    fn from_text(text: &str) -> ServiceType {
        match text {
            "disk" => ServiceType::Disk,
            "proxy" => ServiceType::Proxy,
            "blob" => ServiceType::Blob,
            t if t.starts_with("gateway:") => ServiceType::Gateway(t.to_string()),
            t => ServiceType::Other(t.to_string()),
        }
    }
}

/// One entry of `items`; other fields are ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeepService {
    pub uuid: String,
    pub service_host: String,
    pub service_port: u16,
    pub service_ssl_flag: bool,
    pub service_type: ServiceType,
    pub read_only: bool,
}

#[derive(Deserialize)]
struct RawService {
    uuid: String,
    service_host: String,
    service_port: u16,
    #[serde(default)]
    service_ssl_flag: bool,
    #[serde(default)]
    service_type: Option<String>,
    #[serde(default)]
    read_only: bool,
}

#[derive(Deserialize)]
struct RawList {
    items: Vec<RawService>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServicesError {
    #[error("keep services JSON: {0}")]
    Json(String),
    #[error("keep services JSON: service {0:?} has an empty or malformed service_host")]
    BadHost(String),
}

/// The parsed list, in API order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeepServiceList {
    pub items: Vec<KeepService>,
}

impl KeepServiceList {
    pub fn from_json(text: &str) -> Result<KeepServiceList, ServicesError> {
        let raw: RawList =
            serde_json::from_str(text).map_err(|e| ServicesError::Json(e.to_string()))?;
        let mut items = Vec::with_capacity(raw.items.len());
        for s in raw.items {
            // A host goes into a URL: refuse what would make it something else (found by
            // fuzzing: "k/" produced the unparsable root "http://k/:2").
            if s.service_host.is_empty()
                || s.service_host.bytes().any(|b| {
                    b.is_ascii_whitespace() || b.is_ascii_control() || b"/?#@".contains(&b)
                })
            {
                return Err(ServicesError::BadHost(s.uuid));
            }
            items.push(KeepService {
                service_type: ServiceType::from_text(s.service_type.as_deref().unwrap_or("disk")),
                uuid: s.uuid,
                service_host: s.service_host,
                service_port: s.service_port,
                service_ssl_flag: s.service_ssl_flag,
                read_only: s.read_only,
            });
        }
        Ok(KeepServiceList { items })
    }
}

/// A service as a URL to talk to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Root {
    pub uuid: String,
    /// `http[s]://host:port`, no trailing slash (IPv6 literals unbracketed, as Go does —
    /// keepmover's HTTP layer brackets them when connecting).
    pub base_url: String,
    pub service_type: ServiceType,
    pub read_only: bool,
}

/// Go's roots: `local` = every service (first uuid wins for a repeated URL), `writable` =
/// indexes into `local` of the services that are not read-only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Roots {
    pub local: Vec<Root>,
    pub writable: Vec<usize>,
}

impl Roots {
    pub fn from_list(list: &KeepServiceList) -> Roots {
        let mut roots = Roots::default();
        for service in &list.items {
            let scheme = if service.service_ssl_flag {
                "https"
            } else {
                "http"
            };
            let base_url = format!(
                "{scheme}://{}:{}",
                service.service_host, service.service_port
            );
            if roots.local.iter().any(|r| r.base_url == base_url) {
                continue;
            }
            if !service.read_only {
                roots.writable.push(roots.local.len());
            }
            roots.local.push(Root {
                uuid: service.uuid.clone(),
                base_url,
                service_type: service.service_type.clone(),
                read_only: service.read_only,
            });
        }
        roots
    }

    /// True when every writable service is a disk service.
    pub fn all_disk(&self) -> bool {
        self.writable
            .iter()
            .all(|&i| self.local[i].service_type == ServiceType::Disk)
    }

    /// keepclient's replicas per service: 1 if all writable services are disks, else unknown.
    pub fn replicas_per_service(&self) -> Option<u32> {
        self.all_disk().then_some(1)
    }
}
