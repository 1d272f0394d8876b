//! One cluster as keepmover sees it once discovered: its keep services, the token to use,
//! and whether its TLS certificates are verified. Built by `commands` (from settings files,
//! the API server or a services JSON), read by the index walk and the engine alike, so it
//! sits below both.

use crate::keep::services::{Roots, ServiceType};
use crate::keep::wire::Bearer;
use crate::net::Origin;

/// A keepstore (or proxy) keepmover can talk to.
#[derive(Clone, Debug)]
pub struct Service {
    pub uuid: String,
    pub origin: Origin,
    pub read_only: bool,
    pub is_disk: bool,
}

/// A cluster's services plus its credentials. `Debug` never shows the token.
#[derive(Clone)]
pub struct Cluster {
    /// `src` or `dst`, used in messages.
    pub label: &'static str,
    /// The API token, as the `Bearer <token>` value every request to this cluster shares
    /// (`bearer.token()` is the token itself).
    pub bearer: Bearer,
    /// Every listed service (keep-rsync's "local roots"), in API order.
    pub services: Vec<Service>,
    /// Skip TLS verification (the settings file's `ARVADOS_API_HOST_INSECURE`).
    pub insecure_tls: bool,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("label", &self.label)
            .field("bearer", &self.bearer)
            .field("services", &self.services)
            .field("insecure_tls", &self.insecure_tls)
            .finish()
    }
}

/// Why a service list cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{label} keep service {uuid}: {detail}")]
    BadService {
        label: &'static str,
        uuid: String,
        detail: String,
    },
    #[error("{label} cluster lists no keep services")]
    NoServices { label: &'static str },
}

impl Cluster {
    /// Builds the service list from parsed keep_services roots.
    pub fn from_roots(
        label: &'static str,
        token: String,
        roots: &Roots,
        insecure_tls: bool,
    ) -> Result<Cluster, ClusterError> {
        let mut services = Vec::new();
        for root in &roots.local {
            let origin =
                Origin::parse(&root.base_url).map_err(|detail| ClusterError::BadService {
                    label,
                    uuid: root.uuid.clone(),
                    detail,
                })?;
            services.push(Service {
                uuid: root.uuid.clone(),
                origin,
                read_only: root.read_only,
                is_disk: root.service_type == ServiceType::Disk,
            });
        }
        if services.is_empty() {
            return Err(ClusterError::NoServices { label });
        }
        Ok(Cluster {
            label,
            bearer: Bearer::new(&token),
            services,
            insecure_tls,
        })
    }

    /// Indexes of the writable services.
    pub fn writable(&self) -> Vec<usize> {
        (0..self.services.len())
            .filter(|&i| !self.services[i].read_only)
            .collect()
    }

    /// keepclient's "replicas per service" rule: one upload per server only if every
    /// writable service is a disk service (proxies take one upload at a time).
    pub fn all_writable_disk(&self) -> bool {
        self.services
            .iter()
            .filter(|s| !s.read_only)
            .all(|s| s.is_disk)
    }

    /// The services' uuids, in list order (for rendezvous).
    pub fn uuids(&self) -> Vec<&str> {
        self.services.iter().map(|s| s.uuid.as_str()).collect()
    }

    /// Whether two clusters name the same servers (a copy onto itself).
    pub fn same_servers_as(&self, other: &Cluster) -> bool {
        self.services
            .iter()
            .any(|a| other.services.iter().any(|b| a.origin == b.origin))
    }
}
