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

/// The cryptography: aws-lc-rs, or ring with the `tls-ring` feature, with AES-128-GCM
/// offered first (see [`aes128_first`]).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    #[cfg(feature = "tls-ring")]
    let mut provider = rustls::crypto::ring::default_provider();
    #[cfg(not(feature = "tls-ring"))]
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    aes128_first(&mut provider.cipher_suites);
    Arc::new(provider)
}

/// Puts the AES-128-GCM suites ahead of the others, keeping every suite and otherwise the
/// provider's order (TLS 1.3 first). rustls offers AES-256 first; a server that follows the
/// client's order (rustls's default, nginx's for TLS 1.3) then spends 14 AES rounds per block
/// instead of 10 on every byte, both ways. A Go keepstore already picks AES-128-GCM on
/// hardware with AES instructions, so offering it first also makes keepsim's TLS measure what
/// production pays. AES-128-GCM is TLS 1.3's mandatory suite (RFC 8446 §9.1).
fn aes128_first(suites: &mut [rustls::SupportedCipherSuite]) {
    use rustls::CipherSuite::{
        TLS13_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    };
    suites.sort_by_key(|suite| {
        let tls12 = matches!(suite, rustls::SupportedCipherSuite::Tls12(_));
        let aes128 = matches!(
            suite.suite(),
            TLS13_AES_128_GCM_SHA256
                | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        );
        (tls12, !aes128)
    });
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

#[cfg(test)]
mod tests {
    use rustls::CipherSuite::*;

    #[test]
    fn aes128_gcm_is_offered_first_and_no_suite_is_dropped() {
        let default = rustls::crypto::aws_lc_rs::default_provider().cipher_suites;
        let offered: Vec<_> = super::provider()
            .cipher_suites
            .iter()
            .map(|suite| suite.suite())
            .collect();
        assert_eq!(offered.len(), default.len());
        assert!(default.iter().all(|suite| offered.contains(&suite.suite())));
        #[cfg(not(feature = "tls-ring"))]
        assert_eq!(
            offered,
            [
                TLS13_AES_128_GCM_SHA256,
                TLS13_AES_256_GCM_SHA384,
                TLS13_CHACHA20_POLY1305_SHA256,
                TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            ]
        );
        assert_eq!(offered[0], TLS13_AES_128_GCM_SHA256);
    }
}
