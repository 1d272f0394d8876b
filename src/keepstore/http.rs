//! [`Keepstores`] over HTTP: each [`keep::wire`](crate::keep::wire) request shape sent through
//! the thread's [`HttpClient`], each answer read the way keepclient reads it. This is the only
//! place where Keep requests become HTTP requests.

use bytes::Bytes;

use super::{
    BadReplica, BlockBody, Cause, IndexSource, Keepstores, KeepstoresFactory, PutReply, PutWants,
};
use crate::cluster::Cluster;
use crate::keep::index_format::{IndexBodyParser, IndexEntry};
use crate::keep::wire::{self, header, MountInfo, PullItem, TrashItem, WireMethod, WireRequest};
use crate::keep::ShortLocator;
use crate::net::{
    ClientConfig, HeaderValue, HttpClient, Method, NetError, Request, Response, TlsPolicy,
};

/// Largest `/mounts` answer read (a keepstore with a thousand mounts is well under).
const MOUNTS_BODY_LIMIT: usize = 4 << 20;
/// Index bodies are read in pieces of this size.
const INDEX_READ: usize = 256 << 10;

/// Makes an [`HttpKeepstores`] per worker thread: same timeouts, same TLS policies.
#[derive(Clone, Debug)]
pub struct HttpFactory {
    pub config: ClientConfig,
    /// Origins whose certificates are not verified (`ARVADOS_API_HOST_INSECURE`).
    pub insecure: Vec<crate::net::Origin>,
}

impl HttpFactory {
    /// The factory for jobs over these clusters.
    pub fn new(config: ClientConfig, clusters: &[&Cluster]) -> HttpFactory {
        let insecure = clusters
            .iter()
            .filter(|c| c.insecure_tls)
            .flat_map(|c| c.services.iter().map(|s| s.origin.clone()))
            .collect();
        HttpFactory { config, insecure }
    }
}

impl KeepstoresFactory for HttpFactory {
    type Client = HttpKeepstores;

    fn client(&self) -> HttpKeepstores {
        let client = HttpClient::new(self.config.clone());
        for origin in &self.insecure {
            client.set_tls_policy(origin, TlsPolicy::Insecure);
        }
        HttpKeepstores { client }
    }
}

/// Keepstore operations over one thread's HTTP client.
#[derive(Clone)]
pub struct HttpKeepstores {
    pub client: HttpClient,
}

fn method(m: WireMethod) -> Method {
    match m {
        WireMethod::Get => Method::Get,
        WireMethod::Head => Method::Head,
        WireMethod::Put => Method::Put,
        WireMethod::Delete => Method::Delete,
        WireMethod::Touch => Method::Other("TOUCH".to_string()),
    }
}

fn request_id() -> HeaderValue {
    use rand::{Rng as _, SeedableRng as _};
    // Request ids only tell requests apart in logs; they are not secrets. A small generator
    // per thread, seeded from the system's, costs a tenth of drawing on ChaCha each time
    // (two requests per 4 KiB block).
    thread_local! {
        static IDS: std::cell::RefCell<rand::rngs::SmallRng> =
            std::cell::RefCell::new(rand::rngs::SmallRng::from_rng(&mut rand::rng()));
    }
    wire::request_id(IDS.with_borrow_mut(|ids| ids.random()))
}

/// A short response body (a locator, an error) as trimmed text; bytes that are not UTF-8
/// become U+FFFD. Checked strictly first: the lossy scan cost more than the rest of a PUT's
/// reply handling. Valid UTF-8 keeps the body's own allocation, trimmed in place.
fn trimmed_text(body: Vec<u8>) -> String {
    let mut text = match String::from_utf8(body) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    let end = text.trim_end().len();
    text.truncate(end);
    let start = text.len() - text.trim_start().len();
    text.drain(..start);
    text
}

impl HttpKeepstores {
    fn request(
        &self,
        cluster: &Cluster,
        server: usize,
        wire: WireRequest,
        body: Option<Bytes>,
    ) -> Result<Request, Cause> {
        let service = cluster.services.get(server).ok_or_else(|| {
            Cause::BadAnswer(format!(
                "no server {server} in the {} cluster",
                cluster.label
            ))
        })?;
        Ok(Request {
            method: method(wire.method),
            origin: service.origin.clone(),
            path_and_query: wire.path,
            headers: wire.headers,
            body: body.or(wire.body.map(Bytes::from)),
        })
    }

    /// Sends and returns a 200 response; anything else becomes `Cause::Status` with the
    /// first bytes of its body, as keepclient reports it.
    async fn send_ok(&self, request: Request) -> Result<Response, Cause> {
        let response = self.client.send(request).await?;
        if response.status == 200 {
            return Ok(response);
        }
        Err(status_cause(response).await)
    }
}

async fn status_cause(response: Response) -> Cause {
    let status = response.status;
    let body = response
        .read_to_end(wire::ERROR_BODY_LIMIT)
        .await
        .unwrap_or_default();
    if wire::is_stored_checksum_mismatch(status, &body) {
        return Cause::BadReplica(BadReplica::Stored);
    }
    Cause::Status {
        status,
        body: trimmed_text(body),
    }
}

/// A block body arriving over HTTP.
pub struct HttpBody {
    response: Response,
}

impl BlockBody for HttpBody {
    fn content_length(&self) -> Option<u64> {
        self.response.content_length()
    }

    async fn read_chunk(&mut self, buf: Vec<u8>) -> (Result<usize, Cause>, Vec<u8>) {
        let compio::BufResult(result, buf) = self.response.read_body_chunk(buf).await;
        let result = result.map_err(|e| match NetError::from_io(e) {
            Ok(net) => Cause::Net(net),
            Err(io) => Cause::BadAnswer(io.to_string()),
        });
        (result, buf)
    }
}

impl Keepstores for HttpKeepstores {
    type Body = HttpBody;

    async fn get_block(
        &self,
        cluster: &Cluster,
        server: usize,
        locator: &str,
    ) -> Result<HttpBody, Cause> {
        let wire = wire::block_get(locator, &cluster.bearer, request_id());
        let request = self.request(cluster, server, wire, None)?;
        let response = self.send_ok(request).await?;
        Ok(HttpBody { response })
    }

    async fn head_block(
        &self,
        cluster: &Cluster,
        server: usize,
        locator: &str,
    ) -> Result<(), Cause> {
        let wire = wire::block_head(locator, &cluster.bearer, request_id());
        let request = self.request(cluster, server, wire, None)?;
        let response = self.send_ok(request).await?;
        response.discard().await?;
        Ok(())
    }

    async fn put_block(
        &self,
        cluster: &Cluster,
        server: usize,
        block: &ShortLocator,
        body: Bytes,
        wants: &PutWants,
    ) -> Result<PutReply, Cause> {
        let wire = wire::block_put(
            block.hash_hex(),
            &cluster.bearer,
            request_id(),
            wants.replicas,
            &wants.classes,
        );
        let request = self.request(cluster, server, wire, Some(body))?;
        let response = self.send_ok(request).await?;
        let replicas = wire::replicas_stored(response.header(header::REPLICAS_STORED));
        let classes = wire::classes_confirmed(response.header(header::CLASSES_CONFIRMED));
        // The body is the locator, signed by the server for our token: what a read-back
        // (HEAD) of this replica needs.
        let body = response.read_to_end(wire::ERROR_BODY_LIMIT).await?;
        Ok(PutReply {
            replicas,
            classes,
            locator: trimmed_text(body),
        })
    }

    async fn index(
        &self,
        cluster: &Cluster,
        server: usize,
        source: IndexSource<'_>,
        prefix: &str,
        max_entries: usize,
        entries: &mut Vec<IndexEntry>,
    ) -> Result<(), Cause> {
        let wire = match source {
            IndexSource::Server => wire::index(prefix, &cluster.bearer),
            IndexSource::Mount(uuid) => wire::mount_index(uuid, prefix, &cluster.bearer),
        };
        let request = self.request(cluster, server, wire, None)?;
        let mut response = self.send_ok(request).await?;
        let mut parser = IndexBodyParser::new(Some(prefix.to_string()));
        let start = entries.len();
        let mut buffer: Vec<u8> = Vec::with_capacity(INDEX_READ);
        loop {
            buffer.clear();
            let compio::BufResult(read, returned) = response.read_body_chunk(buffer).await;
            buffer = returned;
            let read = read.map_err(|e| match NetError::from_io(e) {
                Ok(net) => Cause::Net(net),
                Err(io) => Cause::BadAnswer(io.to_string()),
            })?;
            if read == 0 {
                break;
            }
            parser
                .feed(&buffer, |entry| entries.push(entry))
                .map_err(|e| Cause::BadAnswer(e.to_string()))?;
            if entries.len() - start > max_entries {
                return Err(Cause::BadAnswer(format!(
                    "index slice {prefix:?} holds more than {max_entries} entries; use a longer -prefix-length"
                )));
            }
        }
        parser
            .finish()
            .map_err(|e| Cause::BadAnswer(e.to_string()))?;
        Ok(())
    }

    async fn mounts(&self, cluster: &Cluster, server: usize) -> Result<Vec<MountInfo>, Cause> {
        let request = self.request(cluster, server, wire::mounts(&cluster.bearer), None)?;
        let response = self.send_ok(request).await?;
        let body = response.read_to_end(MOUNTS_BODY_LIMIT).await?;
        wire::parse_mounts(&body).map_err(|e| Cause::BadAnswer(format!("/mounts: {e}")))
    }

    async fn send_pull(
        &self,
        cluster: &Cluster,
        server: usize,
        items: &[PullItem],
    ) -> Result<(), Cause> {
        let request = self.request(cluster, server, wire::pull(items, &cluster.bearer), None)?;
        let response = self.send_ok(request).await?;
        response.discard().await?;
        Ok(())
    }

    async fn send_trash(
        &self,
        cluster: &Cluster,
        server: usize,
        items: &[TrashItem],
    ) -> Result<(), Cause> {
        let request = self.request(cluster, server, wire::trash(items, &cluster.bearer), None)?;
        let response = self.send_ok(request).await?;
        response.discard().await?;
        Ok(())
    }

    async fn touch(
        &self,
        cluster: &Cluster,
        server: usize,
        short_locator: &str,
    ) -> Result<(), Cause> {
        let request = self.request(
            cluster,
            server,
            wire::touch(short_locator, &cluster.bearer),
            None,
        )?;
        let response = self.send_ok(request).await?;
        response.discard().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::trimmed_text;

    #[test]
    fn trimmed_text_trims_both_ends_and_replaces_bad_utf8() {
        for (body, text) in [
            (&b"  abc+3+A1@2 \r\n"[..], "abc+3+A1@2"),
            (b"abc", "abc"),
            (b"", ""),
            (b" \n\t ", ""),
            (b"\xe2\x80\x83x\xe2\x80\x83", "x"), // Unicode spaces, as str::trim
            (b" a\xffb \n", "a\u{fffd}b"),
        ] {
            assert_eq!(trimmed_text(body.to_vec()), text, "{body:?}");
            let old = String::from_utf8_lossy(body).trim().to_string();
            assert_eq!(trimmed_text(body.to_vec()), old, "{body:?}");
        }
    }
}
