//! The two documents keep-rsync reads from an API server: the discovery document
//! (`defaultCollectionReplication`, `blobSignatureTtl`) and the cluster config (default
//! storage classes), `keep-protocol.md` §3.1.

use serde::Deserialize;

/// The discovery-document fields keep-rsync uses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct DiscoveryDoc {
    #[serde(rename = "defaultCollectionReplication", default)]
    pub default_collection_replication: Option<u32>,
    #[serde(rename = "blobSignatureTtl", default)]
    pub blob_signature_ttl: Option<u64>,
}

impl DiscoveryDoc {
    pub fn from_json(text: &str) -> Result<DiscoveryDoc, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// `StorageClasses.<name>.Default == true` from `/arvados/v1/config`, sorted. Anything
/// unexpected gives no classes (keepclient ignores failures here too).
pub fn default_storage_classes(config_json: &str) -> Vec<String> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(config_json) else {
        return Vec::new();
    };
    let mut classes: Vec<String> = value
        .get("StorageClasses")
        .and_then(|c| c.as_object())
        .map(|map| {
            map.iter()
                .filter(|(_, v)| v.get("Default").and_then(|d| d.as_bool()) == Some(true))
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    classes.sort();
    classes
}
