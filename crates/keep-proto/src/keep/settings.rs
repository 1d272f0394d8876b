//! keep-rsync's settings files (`keep-protocol.md` §3.4): `KEY=VALUE` lines, trimmed, unknown
//! keys ignored. Pure: the caller reads the file and passes `$HOME` in. Unlike keep-rsync,
//! a line without `=` is an error naming its line number (keep-rsync panics); its content is
//! never echoed, since it may be a secret.

use std::path::{Path, PathBuf};

/// The values keep-rsync reads. `Debug` redacts the token and the key.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub api_token: String,
    pub api_host: String,
    pub api_host_insecure: bool,
    pub blob_signing_key: Option<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("api_token", &"<redacted>")
            .field("api_host", &self.api_host)
            .field("api_host_insecure", &self.api_host_insecure)
            .field(
                "blob_signing_key",
                &self.blob_signing_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("line {line}: expected KEY=VALUE")]
    NoEquals { line: usize },
}

/// `-src NAME` without a `/` means `$HOME/.config/arvados/NAME.conf`.
pub fn settings_path(value: &str, home: &Path) -> PathBuf {
    if value.contains('/') {
        PathBuf::from(value)
    } else {
        home.join(".config")
            .join("arvados")
            .join(format!("{value}.conf"))
    }
}

/// Go's `StringBool` for ARVADOS_API_HOST_INSECURE.
pub fn insecure_flag(value: &str) -> bool {
    matches!(value.to_ascii_lowercase().as_str(), "1" | "yes" | "true")
}

pub fn parse_settings(text: &str) -> Result<Settings, SettingsError> {
    let mut settings = Settings::default();
    for (index, raw) in text.split('\n').enumerate() {
        if raw.is_empty() {
            continue;
        }
        let Some((key, value)) = raw.split_once('=') else {
            if raw.trim().is_empty() {
                continue;
            }
            return Err(SettingsError::NoEquals { line: index + 1 });
        };
        let value = value.trim();
        match key.trim() {
            "ARVADOS_API_TOKEN" => settings.api_token = value.to_string(),
            "ARVADOS_API_HOST" => settings.api_host = value.to_string(),
            "ARVADOS_API_HOST_INSECURE" => settings.api_host_insecure = insecure_flag(value),
            "ARVADOS_BLOB_SIGNING_KEY" => settings.blob_signing_key = Some(value.to_string()),
            _ => {}
        }
    }
    Ok(settings)
}
