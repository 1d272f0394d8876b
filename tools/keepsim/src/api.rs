//! The Arvados API server, as far as Keep clients use it: the discovery document (complete
//! enough for the Python SDK's `arvados.api()`, which builds its client from it with
//! googleapiclient), `/arvados/v1/config` (the exported cluster config, durations as Go
//! prints them: `336h0m0s`), and `/arvados/v1/keep_services/accessible` (all non-proxy
//! services, or only proxies when the request says `X-External-Client: 1`, as the Rails
//! controller decides).

use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::body::SimBody;

/// A duration in whole seconds as Go's `time.Duration.String()` prints it.
pub fn go_duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// One storage class of the cluster (`StorageClasses.<name>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageClass {
    pub name: String,
    /// `Default: true`: clients write to it when they ask for no class.
    pub default: bool,
    pub priority: i32,
}

impl StorageClass {
    pub fn new(name: &str, default: bool, priority: i32) -> StorageClass {
        StorageClass {
            name: name.to_string(),
            default,
            priority,
        }
    }
}

/// What the API server needs to know of its cluster.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    pub cluster_id: String,
    pub system_root_token: String,
    pub port: u16,
    pub default_replication: u32,
    pub blob_signing: bool,
    pub blob_signing_ttl: u64,
    pub blob_trash: bool,
    pub blob_trash_lifetime: u64,
    pub balance_trash_limit: u64,
    pub blob_replicate_concurrency: usize,
    pub blob_trash_concurrency: usize,
    pub storage_classes: Vec<StorageClass>,
    /// Also export the keys a real API server keeps private (BlobTrash,
    /// BlobTrashLifetime, BalanceTrashLimit, ...: `false` in lib/config/export.go).
    pub export_private: bool,
    pub services_json: String,
}

pub struct ApiServer {
    token: String,
    services: String,
    discovery: String,
    config: String,
}

fn method(id: &str, path: &str, response: Option<&str>) -> Value {
    let mut m = json!({
        "id": id, "path": path, "httpMethod": "GET",
        "description": id, "parameters": {}, "parameterOrder": [],
        "scopes": ["https://api.arvados.org/auth/arvados", "https://api.arvados.org/auth/arvados.readonly"],
    });
    m["response"] = match response {
        Some(r) => json!({"$ref": r}),
        None => json!({}),
    };
    m
}

/// The discovery document, with the fields services/api's schema controller fills in.
pub fn discovery_document(s: &ApiSettings) -> Value {
    let root = format!("https://127.0.0.1:{}/", s.port);
    let string_param =
        |desc: &str| json!({"type": "string", "description": desc, "location": "query"});
    let mut doc = json!({
        "kind": "discovery#restDescription",
        "discoveryVersion": "v1",
        "id": "arvados:v1",
        "name": "arvados",
        "version": "v1",
        "revision": "20250402",
        "source_version": "keepsim",
        "sourceVersion": "keepsim",
        "packageVersion": "keepsim",
        "generatedAt": "2025-01-01T00:00:00Z",
        "title": "Arvados API",
        "description": "The API to interact with Arvados (simulated by keepsim: keep services and config only).",
        "documentationLink": "http://doc.arvados.org/api/index.html",
        "defaultCollectionReplication": s.default_replication,
        "protocol": "rest",
        "baseUrl": format!("{root}arvados/v1/"),
        "basePath": "/arvados/v1/",
        "rootUrl": root,
        "servicePath": "arvados/v1/",
        "batchPath": "batch",
        "uuidPrefix": s.cluster_id,
        "defaultTrashLifetime": 1_209_600,
        "blobSignatureTtl": s.blob_signing_ttl,
        "maxRequestSize": 134_217_728,
        "maxItemsPerResponse": 1000,
        "dockerImageFormats": ["v2"],
        "crunchLogUpdatePeriod": 1800,
        "crunchLogUpdateSize": 33_554_432,
        "remoteHosts": {},
        "remoteHostsViaDNS": false,
        "websocketUrl": "",
        "workbenchUrl": "",
        "workbench2Url": "",
        "keepWebServiceUrl": "",
    });
    doc["parameters"] = json!({
            "alt": {"type": "string", "description": "Data format for the response.", "default": "json",
                    "enum": ["json"], "enumDescriptions": ["Responses with Content-Type of application/json"],
                    "location": "query"},
            "fields": string_param("Selector specifying which fields to include in a partial response."),
            "key": string_param("API key."),
            "oauth_token": string_param("OAuth 2.0 token for the current user."),
    });
    doc["auth"] = json!({"oauth2": {"scopes": {
            "https://api.arvados.org/auth/arvados": {"description": "View and manage objects"},
            "https://api.arvados.org/auth/arvados.readonly": {"description": "View objects"},
    }}});
    doc["schemas"] = json!({
            "KeepService": {"id": "KeepService", "type": "object", "properties": {
                "uuid": {"type": "string"}, "service_host": {"type": "string"},
                "service_port": {"type": "integer"}, "service_ssl_flag": {"type": "boolean"},
                "service_type": {"type": "string"}, "read_only": {"type": "boolean"}}},
            "KeepServiceList": {"id": "KeepServiceList", "type": "object", "properties": {
                "kind": {"type": "string"}, "items_available": {"type": "integer"},
                "items": {"type": "array", "items": {"$ref": "KeepService"}}}},
    });
    doc["resources"] = json!({
            "keep_services": {"methods": {
                "accessible": method("arvados.keep_services.accessible", "keep_services/accessible", Some("KeepServiceList")),
                "list": method("arvados.keep_services.list", "keep_services", Some("KeepServiceList")),
            }},
            "configs": {"methods": {"get": method("arvados.configs.get", "config", None)}},
    });
    doc
}

/// `/arvados/v1/config`: what lib/config/export.go exports, plus (with `export_private`)
/// the trash settings keepmover's tests read.
pub fn config_document(s: &ApiSettings) -> Value {
    let classes: serde_json::Map<String, Value> = s
        .storage_classes
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                json!({"Default": c.default, "Priority": c.priority}),
            )
        })
        .collect();
    let mut collections = json!({
        "BlobSigning": s.blob_signing,
        "BlobSigningTTL": go_duration(s.blob_signing_ttl),
        "DefaultReplication": s.default_replication,
        "DefaultTrashLifetime": go_duration(1_209_600),
        "CollectionVersioning": true,
        "TrustAllContent": false,
    });
    if s.export_private {
        collections["BlobTrash"] = json!(s.blob_trash);
        collections["BlobTrashLifetime"] = json!(go_duration(s.blob_trash_lifetime));
        collections["BalanceTrashLimit"] = json!(s.balance_trash_limit);
        collections["BalancePullLimit"] = json!(100_000);
        collections["BlobReplicateConcurrency"] = json!(s.blob_replicate_concurrency);
        collections["BlobTrashConcurrency"] = json!(s.blob_trash_concurrency);
    }
    json!({
        "ClusterID": s.cluster_id,
        "Collections": collections,
        "StorageClasses": classes,
        "API": {"MaxItemsPerResponse": 1000, "MaxRequestSize": 134_217_728},
    })
}

impl ApiServer {
    pub fn new(settings: &ApiSettings) -> ApiServer {
        ApiServer {
            token: settings.system_root_token.clone(),
            services: settings.services_json.clone(),
            discovery: discovery_document(settings).to_string(),
            config: config_document(settings).to_string(),
        }
    }

    pub fn answer<B>(&self, req: &Request<B>) -> Response<SimBody> {
        let path = req.uri().path();
        let json = |status: u16, text: String| {
            let mut r = Response::new(SimBody::full(text));
            *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            r.headers_mut().insert(
                "content-type",
                hyper::header::HeaderValue::from_static("application/json"),
            );
            r
        };
        if path == "/discovery/v1/apis/arvados/v1/rest" {
            return json(200, self.discovery.clone());
        }
        if path == "/arvados/v1/config" {
            // Public in Arvados: no token needed.
            return json(200, self.config.clone());
        }
        if crate::keepstore::request_token(req).as_deref() != Some(self.token.as_str()) {
            return json(401, r#"{"errors":["Not logged in"]}"#.to_string());
        }
        match path {
            "/arvados/v1/keep_services/accessible" | "/arvados/v1/keep_services" => {
                let external = req
                    .headers()
                    .get("x-external-client")
                    .is_some_and(|v| v.as_bytes() == b"1");
                if external {
                    // Only proxies are listed for outside clients; keepsim has none.
                    return json(
                        200,
                        json!({"kind": "arvados#keepServiceList", "items_available": 0, "offset": 0, "limit": 0, "items": []})
                            .to_string(),
                    );
                }
                json(200, self.services.clone())
            }
            _ => json(404, r#"{"errors":["Path not found"]}"#.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(export_private: bool) -> ApiSettings {
        ApiSettings {
            cluster_id: "zzzzz".into(),
            system_root_token: "root".into(),
            port: 1234,
            default_replication: 2,
            blob_signing: true,
            blob_signing_ttl: 7200,
            blob_trash: false,
            blob_trash_lifetime: 0,
            balance_trash_limit: 500,
            blob_replicate_concurrency: 4,
            blob_trash_concurrency: 4,
            storage_classes: vec![
                StorageClass::new("default", true, 0),
                StorageClass::new("cold", false, 5),
            ],
            export_private,
            services_json: r#"{"items":[{"uuid":"x"}]}"#.into(),
        }
    }

    fn body(r: Response<SimBody>) -> (u16, Value) {
        use http_body_util::BodyExt;
        let status = r.status().as_u16();
        let bytes = block_on(r.into_body().collect()).map(|c| c.to_bytes());
        (
            status,
            bytes
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null),
        )
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn documents_and_who_sees_which_services() {
        let api = ApiServer::new(&settings(true));
        let get = |path: &str, headers: &[(&str, &str)]| {
            let mut req = Request::get(path);
            for (n, v) in headers {
                req = req.header(*n, *v);
            }
            body(api.answer(&req.body(()).expect("request")))
        };
        let (status, doc) = get("/discovery/v1/apis/arvados/v1/rest", &[]);
        assert_eq!(status, 200);
        assert_eq!(doc["rootUrl"], "https://127.0.0.1:1234/");
        assert_eq!(doc["baseUrl"], "https://127.0.0.1:1234/arvados/v1/");
        assert_eq!(doc["blobSignatureTtl"], 7200);
        assert_eq!(
            doc["resources"]["keep_services"]["methods"]["accessible"]["path"],
            "keep_services/accessible"
        );
        let (_, config) = get("/arvados/v1/config", &[]);
        assert_eq!(config["Collections"]["BlobSigningTTL"], "2h0m0s");
        assert_eq!(config["Collections"]["BlobTrash"], false);
        assert_eq!(config["Collections"]["BlobTrashLifetime"], "0s");
        assert_eq!(config["Collections"]["BalanceTrashLimit"], 500);
        assert_eq!(config["StorageClasses"]["cold"]["Priority"], 5);
        let real = config_document(&settings(false));
        assert!(real["Collections"].get("BlobTrash").is_none());
        assert_eq!(real["Collections"]["BlobSigningTTL"], "2h0m0s");
        let auth = [("Authorization", "Bearer root")];
        assert_eq!(get("/arvados/v1/keep_services/accessible", &[]).0, 401);
        assert_eq!(
            get("/arvados/v1/keep_services/accessible", &auth).1["items"][0]["uuid"],
            "x"
        );
        let outside = [("Authorization", "Bearer root"), ("X-External-Client", "1")];
        let (_, list) = get("/arvados/v1/keep_services/accessible", &outside);
        assert_eq!(
            list["items"],
            serde_json::json!([]),
            "outside clients see only proxies"
        );
    }

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration(1_209_600), "336h0m0s");
        assert_eq!(go_duration(7200), "2h0m0s");
        assert_eq!(go_duration(90), "1m30s");
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(3661), "1h1m1s");
    }
}
