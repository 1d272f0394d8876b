//! TLS client configuration. rustls is driven by hand over owned buffers (`conn.rs` and
//! `tls_session.rs`, not through compio-tls, which goes through futures-rustls and a compat
//! stream: one more buffer copy per read, a zero-fill of the whole destination on every read,
//! and an unexpected EOF silently mapped to a clean end of stream). Here: the two policies
//! (verified against the system roots, or insecure for deployments that ask to skip
//! verification), each built once per process. ALPN offers only `http/1.1`, so a Go server (which
//! would otherwise prefer h2) speaks HTTP/1.1.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// How a server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TlsPolicy {
    /// Against the system's root certificates (rustls-native-certs).
    #[default]
    Verified,
    /// Any certificate is accepted (handshake signatures are still checked).
    Insecure,
}

/// The cryptography: aws-lc-rs, or ring with the `tls-ring` feature.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    #[cfg(feature = "tls-ring")]
    return Arc::new(rustls::crypto::ring::default_provider());
    #[cfg(not(feature = "tls-ring"))]
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn finish(
    builder: rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>,
) -> Arc<rustls::ClientConfig> {
    let mut config = builder.with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // After the handshake keepmover protects TLS 1.3 records itself (`tls_records.rs`), with
    // the traffic secrets rustls hands over; they stay in memory, as they would in rustls.
    config.enable_secret_extraction = crate::net::tls_session::OWN_RECORDS;
    Arc::new(config)
}

/// The client configuration for a policy; built on first use. A verified configuration
/// without any system root certificate is an error (every handshake would fail anyway).
pub(crate) fn client_config(policy: TlsPolicy) -> Result<Arc<rustls::ClientConfig>, String> {
    static VERIFIED: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    static INSECURE: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    match policy {
        TlsPolicy::Verified => VERIFIED.get_or_init(build_verified).clone(),
        TlsPolicy::Insecure => INSECURE.get_or_init(build_insecure).clone(),
    }
}

fn build_verified() -> Result<Arc<rustls::ClientConfig>, String> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        let why = loaded
            .errors
            .first()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        return Err(format!(
            "no system root certificates found (install ca-certificates or set SSL_CERT_FILE){why}"
        ));
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    Ok(finish(builder))
}

fn build_insecure() -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { provider }));
    Ok(finish(builder))
}

/// Accepts any certificate chain and name; still checks that the server signed the
/// handshake with the key in the certificate it presented.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
