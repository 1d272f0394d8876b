//! HTTP/1.1 pipelining ([`HttpClient::send_pipelined`]): many small requests to one origin
//! written back to back on one connection, their responses read in order, with one replay
//! of the unanswered idempotent ones if the server closes part way.

use crate::net::client::{read_final_head, HttpClient, Request};
use crate::net::error::NetError;
use crate::net::head::HeaderFields;
use crate::net::origin::Origin;
use crate::net::response::Response;

/// A fully read response to a pipelined request.
#[derive(Debug, Clone)]
pub struct PipelinedResponse {
    pub status: u16,
    pub headers: HeaderFields,
    pub body: Vec<u8>,
}

impl PipelinedResponse {
    /// First value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }
}

impl HttpClient {
    /// Sends several requests to one origin on one connection before reading their
    /// responses (HTTP/1.1 pipelining), then reads each response in order, bodies of at
    /// most `max_body` bytes. Results are in request order. If the server closes the
    /// connection part way (e.g. `Connection: close`, or Go closing after an unread body), the
    /// unanswered idempotent requests are sent once more on a fresh connection. Meant for
    /// many small requests to a server that handles one request at a time per connection.
    pub async fn send_pipelined(
        &self,
        reqs: Vec<Request>,
        max_body: usize,
    ) -> Vec<Result<PipelinedResponse, NetError>> {
        let mut results: Vec<Option<Result<PipelinedResponse, NetError>>> =
            (0..reqs.len()).map(|_| None).collect();
        let Some(origin) = reqs.first().map(|r| r.origin.clone()) else {
            return Vec::new();
        };
        let mut pending: Vec<(usize, Vec<u8>)> = Vec::new();
        for (i, req) in reqs.iter().enumerate() {
            if req.origin != origin {
                results[i] = Some(Err(NetError::InvalidRequest {
                    origin: req.origin.clone(),
                    detail: format!("pipelined requests must all go to {origin}"),
                }));
                continue;
            }
            match req.head_bytes() {
                Ok(mut head) => {
                    if let Some(body) = &req.body {
                        head.extend_from_slice(body);
                    }
                    pending.push((i, head));
                }
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        let mut retried = false;
        while !pending.is_empty() {
            let outcome = self
                .pipeline_once(&origin, &reqs, &pending, max_body, retried, &mut results)
                .await;
            match outcome {
                Ok(answered) if answered == pending.len() => break,
                Ok(answered) => {
                    // Connection ended early; the rest go again once.
                    pending.drain(..answered);
                    let all_idempotent =
                        pending.iter().all(|(i, _)| reqs[*i].method.is_idempotent());
                    if retried || !all_idempotent {
                        for (i, _) in &pending {
                            results[*i] = Some(Err(NetError::Closed {
                                origin: origin.clone(),
                                detail: "before answering this pipelined request",
                            }));
                        }
                        break;
                    }
                    retried = true;
                }
                Err((answered, err)) => {
                    pending.drain(..answered);
                    let mut err = Some(err);
                    for (i, _) in &pending {
                        results[*i] = Some(Err(err.take().unwrap_or_else(|| NetError::Closed {
                            origin: origin.clone(),
                            detail: "after an earlier pipelined request failed",
                        })));
                    }
                    break;
                }
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(NetError::Closed {
                        origin: origin.clone(),
                        detail: "before answering this pipelined request",
                    })
                })
            })
            .collect()
    }

    /// One pipelined round on one connection. Ok(n) = the first n pending requests were
    /// answered (results filled) and the connection then ended cleanly (n < len) or all
    /// were answered; Err((n, e)) = failure after n answers.
    async fn pipeline_once(
        &self,
        origin: &Origin,
        reqs: &[Request],
        pending: &[(usize, Vec<u8>)],
        max_body: usize,
        fresh: bool,
        results: &mut [Option<Result<PipelinedResponse, NetError>>],
    ) -> Result<usize, (usize, NetError)> {
        let config = &self.inner().config;
        let (mut conn, reused) = self
            .inner()
            .checkout(origin, fresh)
            .await
            .map_err(|e| (0, e))?;
        let total: usize = pending.iter().map(|(_, h)| h.len()).sum();
        let mut batch = Vec::with_capacity(total);
        for (_, head) in pending {
            batch.extend_from_slice(head);
        }
        if let Err(err) = conn
            .write_request(batch, None, config.idle_timeout, config.min_rate)
            .await
        {
            return if reused && !fresh && !matches!(err, NetError::Timeout { .. }) {
                Ok(0)
            } else {
                Err((0, err))
            };
        }
        for (answered, (index, _)) in pending.iter().enumerate() {
            let method = &reqs[*index].method;
            let head = match read_final_head(&mut conn, config, config.first_byte_timeout).await {
                Ok(head) => head,
                Err((err, any_byte)) => {
                    let stale = !any_byte && !matches!(err, NetError::Timeout { .. });
                    // A clean close between responses: the server stopped here.
                    return if stale && (answered > 0 || reused) {
                        Ok(answered)
                    } else {
                        Err((answered, err))
                    };
                }
            };
            let framing = match head.framing(method) {
                Ok(f) => f,
                Err(detail) => {
                    return Err((
                        answered,
                        NetError::BadResponse {
                            origin: origin.clone(),
                            detail,
                        },
                    ))
                }
            };
            let mut response = Response::new(head, framing, conn, self.inner().clone(), false);
            let body = match response.read_all(max_body).await {
                Ok(body) => body,
                Err(err) => {
                    results[*index] = Some(Err(err));
                    return Err((
                        answered + 1,
                        NetError::Closed {
                            origin: origin.clone(),
                            detail: "after an earlier pipelined response failed",
                        },
                    ));
                }
            };
            let keep_alive = response.keep_alive;
            let next_conn = response.conn.take();
            results[*index] = Some(Ok(PipelinedResponse {
                status: response.status,
                headers: std::mem::take(&mut response.headers),
                body,
            }));
            match next_conn {
                Some(c) if keep_alive => conn = c,
                _ => return Ok(answered + 1),
            }
        }
        if conn.buffered().is_empty() {
            self.inner().put_back(conn);
        }
        Ok(pending.len())
    }
}
