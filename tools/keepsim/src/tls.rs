//! A self-signed certificate for 127.0.0.1 and localhost, made at start-up with rcgen, so
//! keepsim can serve HTTPS (clients then need ARVADOS_API_HOST_INSECURE, as with a real
//! cluster using a private CA). The cipher suite is chosen as a Go keepstore chooses it.

use std::sync::Arc;

pub fn acceptor() -> Result<tokio_rustls::TlsAcceptor, String> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .map_err(|e| format!("generating certificate: {e}"))?;
    let cert = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der())
        .map_err(|e| format!("certificate key: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server_config(
        cert, key,
    )?)))
}

fn server_config(
    cert: rustls::pki_types::CertificateDer<'static>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, String> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| go_preference(suite.suite()));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(|e| format!("TLS config: {e}"))?;
    config.ignore_client_order = true;
    Ok(config)
}

/// Go's server order (`crypto/tls`, `defaultCipherSuitesTLS13` and
/// `cipherSuitesPreferenceOrder`, used whatever the client prefers since Go 1.17): AES-128-GCM,
/// then AES-256-GCM, then ChaCha20-Poly1305, in TLS 1.3 and 1.2 alike. Go puts ChaCha20 first
/// only when the client lists ChaCha20 before any AES-GCM suite, or when the server itself
/// has no AES-GCM hardware; rustls clients list AES-GCM first, so a Go keepstore on an AES
/// machine gives them AES-128-GCM, and so does keepsim.
fn go_preference(suite: rustls::CipherSuite) -> u8 {
    let name = suite.as_str().unwrap_or_default();
    if name.contains("AES_128_GCM") {
        0
    } else if name.contains("AES_256_GCM") {
        1
    } else {
        2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CipherSuite;

    /// The suite a rustls client (AES-256-GCM listed first, as keepmover's is) gets from
    /// keepsim over `version`, handshaking in memory.
    fn negotiated(version: &'static rustls::SupportedProtocolVersion) -> CipherSuite {
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
        let cert = certified.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der())
            .expect("key");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.clone()).expect("root");
        let client_config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let mut client = rustls::Connection::from(
            rustls::ClientConnection::new(Arc::new(client_config), name).expect("client"),
        );
        let mut server = rustls::Connection::from(
            rustls::ServerConnection::new(Arc::new(server_config(cert, key).expect("config")))
                .expect("server"),
        );
        while client.is_handshaking() || server.is_handshaking() {
            deliver(&mut client, &mut server);
            deliver(&mut server, &mut client);
        }
        server.negotiated_cipher_suite().expect("a suite").suite()
    }

    /// Everything `from` has to send, read and processed by `to`.
    fn deliver(from: &mut rustls::Connection, to: &mut rustls::Connection) {
        let mut wire = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut wire).expect("write_tls");
        }
        let mut unread = &wire[..];
        while !unread.is_empty() {
            to.read_tls(&mut unread).expect("read_tls");
        }
        to.process_new_packets().expect("handshake");
    }

    #[test]
    fn a_rustls_client_gets_aes_128_gcm_as_from_a_go_keepstore() {
        assert_eq!(
            negotiated(&rustls::version::TLS13),
            CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        assert_eq!(
            negotiated(&rustls::version::TLS12),
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        );
    }
}
