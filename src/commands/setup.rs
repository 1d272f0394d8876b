//! Turning a settings file (and optionally a keep-services JSON) into a [`Cluster`], the way
//! keep-rsync does: read `ARVADOS_*` from the file, ask the API server for the keep services,
//! the discovery document and the default storage classes.

use std::path::PathBuf;

use crate::cluster::Cluster;
use crate::keep::discovery::{default_storage_classes, DiscoveryDoc};
use crate::keep::services::{KeepServiceList, Roots};
use crate::keep::settings::{parse_settings, settings_path, Settings};
use crate::keep::wire;
use crate::net::{
    build_runtime, ClientConfig, HttpClient, IoBackend, Method, Origin, Request, TlsPolicy,
};

/// A set-up failure, phrased the way keep-rsync phrases it.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("Error loading {label} configuration from file: {detail}")]
    Settings { label: String, detail: String },
    #[error("Error configuring {label} keepclient: {detail}")]
    Services { label: String, detail: String },
    #[error("ARVADOS_API_HOST {host:?}: {detail}")]
    ApiHost { host: String, detail: String },
    #[error("GET {origin}{path}: {detail}")]
    Api {
        origin: Origin,
        path: String,
        detail: String,
    },
    #[error("GET {origin}{path}: Got http status code: {status}")]
    ApiStatus {
        origin: Origin,
        path: String,
        status: u16,
    },
    #[error("{cluster} discovery document has no {field}; use {flag}")]
    Discovery {
        cluster: &'static str,
        field: &'static str,
        flag: &'static str,
    },
    #[error("starting the I/O runtime: {0}")]
    Runtime(std::io::Error),
}

/// Reads and parses a settings file named by `-src`/`-dst` (a path, or a NAME).
pub fn load_settings(label: &str, value: &str) -> Result<Settings, SetupError> {
    let fail = |detail: String| SetupError::Settings {
        label: label.to_string(),
        detail,
    };
    if value.is_empty() {
        return Err(fail("config file not specified".to_string()));
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let path = settings_path(value, &home);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| fail(format!("reading {}: {e}", path.display())))?;
    let settings = parse_settings(&text).map_err(|e| fail(format!("{}: {e}", path.display())))?;
    if settings.api_token.is_empty() {
        return Err(fail(format!(
            "{}: ARVADOS_API_TOKEN is not set",
            path.display()
        )));
    }
    Ok(settings)
}

/// The API server's origin from `ARVADOS_API_HOST` (`host` or `host:port`, always https).
fn api_origin(settings: &Settings) -> Result<Origin, SetupError> {
    let host = settings.api_host.trim().trim_end_matches('/');
    if host.is_empty() {
        return Err(SetupError::ApiHost {
            host: String::new(),
            detail: "ARVADOS_API_HOST is not set".to_string(),
        });
    }
    // `host`, `host:port`, `[v6]` or `[v6]:port`; no port means 443.
    let has_port = match host.strip_prefix('[') {
        Some(rest) => rest.contains("]:"),
        None => host.matches(':').count() == 1,
    };
    let url = if has_port {
        format!("https://{host}")
    } else {
        format!("https://{host}:443")
    };
    Origin::parse(&url).map_err(|detail| SetupError::ApiHost {
        host: host.to_string(),
        detail,
    })
}

/// Talks to one cluster's API server (discovery, keep services, config).
pub struct ApiClient {
    origin: Origin,
    token: String,
    insecure: bool,
    io: IoBackend,
    http: ClientConfig,
}

/// Largest API answer read (a keep_services list or the exported config).
const API_BODY_LIMIT: usize = 64 << 20;

impl ApiClient {
    pub fn new(settings: &Settings, io: IoBackend, http: ClientConfig) -> Result<Self, SetupError> {
        Ok(ApiClient {
            origin: api_origin(settings)?,
            token: settings.api_token.clone(),
            insecure: settings.api_host_insecure,
            io,
            http,
        })
    }

    /// The API host, as the checkpoint names the cluster.
    pub fn host(&self) -> String {
        self.origin.host_header().to_string()
    }

    /// `GET path` with the token; returns the body of a 200 response.
    pub fn get(&self, path: &str) -> Result<String, SetupError> {
        let (runtime, _) = build_runtime(self.io).map_err(SetupError::Runtime)?;
        let api = |detail: String| SetupError::Api {
            origin: self.origin.clone(),
            path: path.to_string(),
            detail,
        };
        runtime.block_on(async {
            let client = HttpClient::new(self.http.clone());
            if self.insecure {
                client.set_tls_policy(&self.origin, TlsPolicy::Insecure);
            }
            let request = Request::new(Method::Get, self.origin.clone(), path)
                .header(
                    wire::header::AUTHORIZATION,
                    wire::authorization(&self.token),
                )
                .header(wire::header::REQUEST_ID, wire::request_id(rand::random()));
            let response = client.send(request).await.map_err(|e| api(e.to_string()))?;
            let status = response.status;
            let body = response
                .read_to_end(API_BODY_LIMIT)
                .await
                .map_err(|e| api(e.to_string()))?;
            if status != 200 {
                return Err(SetupError::ApiStatus {
                    origin: self.origin.clone(),
                    path: path.to_string(),
                    status,
                });
            }
            String::from_utf8(body).map_err(|_| api("body is not UTF-8".to_string()))
        })
    }

    pub fn discovery(&self) -> Result<DiscoveryDoc, SetupError> {
        let path = "/discovery/v1/apis/arvados/v1/rest";
        let text = self.get(path)?;
        DiscoveryDoc::from_json(&text).map_err(|e| SetupError::Api {
            origin: self.origin.clone(),
            path: path.to_string(),
            detail: format!("parsing the discovery document: {e}"),
        })
    }

    /// The exported cluster config (`GET /arvados/v1/config`), as JSON.
    pub fn config(&self) -> Result<serde_json::Value, SetupError> {
        let path = "/arvados/v1/config";
        let text = self.get(path)?;
        serde_json::from_str(&text).map_err(|e| SetupError::Api {
            origin: self.origin.clone(),
            path: path.to_string(),
            detail: format!("parsing the config: {e}"),
        })
    }
}

/// The keep-services JSON flag: the JSON text itself (keep-rsync), or a path to a file that
/// holds it (what keep-rsync's help text promises).
fn services_json_text(flag_value: &str) -> Result<String, String> {
    let trimmed = flag_value.trim_start();
    if trimmed.starts_with('{') {
        return Ok(flag_value.to_string());
    }
    std::fs::read_to_string(flag_value).map_err(|e| {
        format!("keep services JSON is neither JSON text nor a readable file ({flag_value:?}): {e}")
    })
}

/// A cluster, and the name a checkpoint records for it.
pub struct Discovered {
    pub cluster: Cluster,
    /// The API host, or the service uuids when they came from a JSON flag.
    pub identity: String,
}

/// Builds a cluster from its settings and either the JSON flag or the API server.
pub fn build_cluster(
    label: &'static str,
    settings: &Settings,
    services_json: Option<&str>,
    api: &ApiClient,
) -> Result<Discovered, SetupError> {
    let fail = |detail: String| SetupError::Services {
        label: label.to_string(),
        detail,
    };
    let from_json = services_json.filter(|s| !s.is_empty());
    let text = match from_json {
        Some(flag) => services_json_text(flag).map_err(fail)?,
        None => api
            .get("/arvados/v1/keep_services/accessible")
            .map_err(|e| fail(e.to_string()))?,
    };
    let list = KeepServiceList::from_json(&text).map_err(|e| fail(e.to_string()))?;
    let roots = Roots::from_list(&list);
    let cluster = Cluster::from_roots(
        label,
        settings.api_token.clone(),
        &roots,
        settings.api_host_insecure,
    )
    .map_err(|e| fail(e.to_string()))?;
    let identity = match from_json {
        Some(_) => {
            let mut uuids = cluster.uuids().join(",");
            if uuids.is_empty() {
                uuids = api.host();
            }
            uuids
        }
        None => api.host(),
    };
    Ok(Discovered { cluster, identity })
}

/// The destination's default storage classes; failures are ignored, as keepclient does.
pub fn default_classes(api: &ApiClient) -> Vec<String> {
    api.get("/arvados/v1/config")
        .map(|text| default_storage_classes(&text))
        .unwrap_or_default()
}
