//! Turning a settings file (and optionally a keep-services JSON) into a [`Cluster`], the way
//! keep-rsync does: read `ARVADOS_*` from the file, ask the API server for the keep services,
//! the discovery document and the default storage classes.

use std::path::PathBuf;

use crate::keep::discovery::{default_storage_classes, DiscoveryDoc};
use crate::keep::services::{KeepServiceList, Roots};
use crate::keep::settings::{parse_settings, settings_path, Settings};
use crate::mover::Cluster;
use crate::net::{build_runtime, HttpClient, IoBackend, Method, Origin, Request, TlsPolicy};

/// A setup failure, already phrased the way keep-rsync phrases it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

/// Reads and parses a settings file named by `-src`/`-dst` (a path, or a NAME).
pub fn load_settings(label: &str, value: &str) -> Result<Settings, SetupError> {
    let fail = |detail: String| {
        SetupError(format!(
            "Error loading {label} configuration from file: {detail}"
        ))
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
        return Err(SetupError("ARVADOS_API_HOST is not set".to_string()));
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
    Origin::parse(&url).map_err(|e| SetupError(format!("ARVADOS_API_HOST {host:?}: {e}")))
}

/// Talks to one cluster's API server (discovery, keep services, config).
pub struct ApiClient {
    origin: Origin,
    token: String,
    insecure: bool,
    io: IoBackend,
    http: crate::net::ClientConfig,
}

impl ApiClient {
    pub fn new(
        settings: &Settings,
        io: IoBackend,
        http: crate::net::ClientConfig,
    ) -> Result<Self, SetupError> {
        Ok(ApiClient {
            origin: api_origin(settings)?,
            token: settings.api_token.clone(),
            insecure: settings.api_host_insecure,
            io,
            http,
        })
    }

    /// `GET path` with the token; returns the body of a 200 response.
    pub fn get(&self, path: &str) -> Result<String, SetupError> {
        let (runtime, _) = build_runtime(self.io)
            .map_err(|e| SetupError(format!("starting the I/O runtime: {e}")))?;
        runtime.block_on(async {
            let client = HttpClient::new(self.http.clone());
            if self.insecure {
                client.set_tls_policy(&self.origin, TlsPolicy::Insecure);
            }
            let request = Request {
                method: Method::Get,
                origin: self.origin.clone(),
                path_and_query: path.to_string(),
                headers: vec![(
                    "Authorization".to_string(),
                    format!("Bearer {}", self.token),
                )],
                body: None,
            };
            let response = client
                .send(request)
                .await
                .map_err(|e| SetupError(format!("GET {}{path}: {e}", self.origin)))?;
            let status = response.status;
            let body = response
                .read_to_end(64 << 20)
                .await
                .map_err(|e| SetupError(format!("GET {}{path}: {e}", self.origin)))?;
            if status != 200 {
                return Err(SetupError(format!(
                    "GET {}{path}: Got http status code: {status}",
                    self.origin
                )));
            }
            String::from_utf8(body)
                .map_err(|_| SetupError(format!("GET {}{path}: body is not UTF-8", self.origin)))
        })
    }

    pub fn discovery(&self) -> Result<DiscoveryDoc, SetupError> {
        let text = self.get("/discovery/v1/apis/arvados/v1/rest")?;
        DiscoveryDoc::from_json(&text).map_err(|e| {
            SetupError(format!(
                "parsing discovery document from {}: {e}",
                self.origin
            ))
        })
    }
}

/// The keep-services JSON flag: the JSON text itself (keep-rsync), or a path to a file that
/// holds it (what keep-rsync's help text promises).
fn services_json_text(flag_value: &str) -> Result<String, SetupError> {
    let trimmed = flag_value.trim_start();
    if trimmed.starts_with('{') {
        return Ok(flag_value.to_string());
    }
    std::fs::read_to_string(flag_value).map_err(|e| {
        SetupError(format!(
            "keep services JSON is neither JSON text nor a readable file ({flag_value:?}): {e}"
        ))
    })
}

/// Builds a cluster from its settings and either the JSON flag or the API server.
pub fn build_cluster(
    label: &'static str,
    settings: &Settings,
    services_json: Option<&str>,
    api: &ApiClient,
) -> Result<Cluster, SetupError> {
    let fail =
        |detail: String| SetupError(format!("Error configuring {label} keepclient: {detail}"));
    let text = match services_json.filter(|s| !s.is_empty()) {
        Some(flag) => services_json_text(flag).map_err(|e| fail(e.0))?,
        None => api
            .get("/arvados/v1/keep_services/accessible")
            .map_err(|e| fail(e.0))?,
    };
    let list = KeepServiceList::from_json(&text).map_err(|e| fail(e.to_string()))?;
    let roots = Roots::from_list(&list);
    Cluster::from_roots(
        label,
        settings.api_token.clone(),
        &roots,
        settings.api_host_insecure,
    )
    .map_err(fail)
}

/// The destination's default storage classes; failures are ignored, as keepclient does.
pub fn default_classes(api: &ApiClient) -> Vec<String> {
    api.get("/arvados/v1/config")
        .map(|text| default_storage_classes(&text))
        .unwrap_or_default()
}
