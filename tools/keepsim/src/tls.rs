//! A self-signed certificate for 127.0.0.1 and localhost, made at start-up with rcgen, so
//! keepsim can serve HTTPS (clients then need ARVADOS_API_HOST_INSECURE, as with a real
//! cluster using a private CA).

use std::sync::Arc;

pub fn acceptor() -> Result<tokio_rustls::TlsAcceptor, String> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .map_err(|e| format!("generating certificate: {e}"))?;
    let cert = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der())
        .map_err(|e| format!("certificate key: {e}"))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .map_err(|e| format!("TLS config: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
