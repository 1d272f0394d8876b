//! The pull worker's HTTP client: one GET over plain HTTP or HTTPS (certificates not
//! verified, as keepsim clusters use self-signed ones and keepstore's own client runs with
//! the cluster's TLS.Insecure), with keepclient's whole-request timeout.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// A response: status, its Content-Length, and the body (whole).
#[derive(Debug)]
pub struct Fetched {
    pub status: u16,
    pub content_length: Option<u64>,
    pub body: Bytes,
}

/// Accepts any server certificate.
#[derive(Debug)]
struct Insecure(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Insecure {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Insecure(provider)))
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

async fn exchange<I>(
    io: I,
    request: hyper::Request<Empty<Bytes>>,
    limit: usize,
) -> Result<Fetched, String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let content_length = response
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = http_body_util::Limited::new(response.into_body(), limit)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Fetched {
        status,
        content_length,
        body,
    })
}

/// `GET <server>/<locator>` with `Authorization: Bearer <token>`; `server` is
/// `http[s]://host:port`. Fails on network errors, bodies over `limit` and `timeout`.
pub async fn get(
    server: &str,
    locator: &str,
    token: &str,
    timeout: Duration,
    limit: usize,
) -> Result<Fetched, String> {
    let (tls, authority) = if let Some(rest) = server.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = server.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(format!("unsupported server URL {server:?}"));
    };
    let authority = authority.trim_end_matches('/').to_string();
    let request = hyper::Request::get(format!("/{locator}"))
        .header(hyper::header::HOST, &authority)
        .header(
            crate::keep::wire::header::AUTHORIZATION,
            crate::keep::wire::authorization(token),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let work = async move {
        let stream = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(|e| format!("connect {authority}: {e}"))?;
        let _ = stream.set_nodelay(true);
        if tls {
            let host = authority
                .rsplit_once(':')
                .map_or(authority.as_str(), |(h, _)| h)
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let name = ServerName::try_from(host).map_err(|e| e.to_string())?;
            let stream = tls_connector()?
                .connect(name, stream)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            exchange(stream, request, limit).await
        } else {
            exchange(stream, request, limit).await
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("timeout after {timeout:?}"))?
}
