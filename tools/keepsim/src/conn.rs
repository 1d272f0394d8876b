//! Connections and listeners: serves HTTP/1.1 with hyper over plain TCP or TLS, with two
//! thin I/O layers that let a response misbehave below HTTP (a reset with `SO_LINGER` 0,
//! endless trailer lines after a chunked body), and listeners that can be dropped and
//! reopened on the same port (a keepstore restart) while every open connection is cut.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::body::SimBody;

/// Per-connection switches that a response body flips to make the connection itself
/// misbehave once the body is done.
#[derive(Debug, Default)]
pub struct ConnControl {
    /// Close with RST instead of FIN.
    pub reset: AtomicBool,
    /// After the chunked terminator `0\r\n`, send `:\r\n` lines forever.
    pub endless_trailers: AtomicBool,
}

/// A handler's way to answer with no HTTP response at all: the connection is closed (and
/// reset if [`ConnControl::reset`] was set).
#[derive(Debug)]
pub struct Abort;

impl std::fmt::Display for Abort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("keepsim: connection aborted on purpose")
    }
}

impl std::error::Error for Abort {}

pub type Reply = Response<SimBody>;

/// Sets `SO_LINGER` to 0 so that closing the socket sends RST.
pub fn set_reset_on_close(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// The TCP stream, resetting instead of closing when asked.
struct RawTcp {
    stream: TcpStream,
    control: Arc<ConnControl>,
}

impl Drop for RawTcp {
    fn drop(&mut self) {
        if self.control.reset.load(Ordering::SeqCst) {
            set_reset_on_close(&self.stream);
        }
    }
}

impl AsyncRead for RawTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for RawTcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.control.reset.load(Ordering::SeqCst) {
            // No FIN: the drop that follows resets the connection.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Plaintext HTTP layer (above TLS) that can turn the end of a chunked body into an endless
/// stream of trailer lines.
struct TrailerIo<S> {
    inner: S,
    control: Arc<ConnControl>,
    /// Once endless: bytes still to write and how far we are.
    endless: Option<(Vec<u8>, usize)>,
}

/// hyper's chunked terminator (no trailers).
const CHUNKED_END: &[u8] = b"0\r\n\r\n";
/// Written per wake-up in endless mode before yielding to other tasks.
const ENDLESS_BURST: usize = 64 << 10;

impl<S: AsyncWrite + Unpin> TrailerIo<S> {
    fn pump(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut burst = 0;
        while let Some((data, pos)) = self.endless.as_mut() {
            if *pos == data.len() {
                *data = b":\r\n".repeat(1024);
                *pos = 0;
            }
            match Pin::new(&mut self.inner).poll_write(cx, &data[*pos..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    *pos += n;
                    burst += n;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            if burst >= ENDLESS_BURST {
                // Let the TLS layer (if any) push its records, then yield to other tasks.
                if let Poll::Ready(Err(e)) = Pin::new(&mut self.inner).poll_flush(cx) {
                    return Poll::Ready(Err(e));
                }
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TrailerIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TrailerIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.endless.is_some() {
            // The message is over for hyper; whatever it writes now is swallowed.
            return Poll::Ready(Ok(buf.len()));
        }
        if self.control.endless_trailers.load(Ordering::SeqCst)
            && (buf == CHUNKED_END
                || (buf.ends_with(CHUNKED_END) && buf[..buf.len() - 5].ends_with(b"\r\n")))
        {
            // Everything up to and including `0\r\n`, then trailers instead of `\r\n`.
            self.endless = Some((buf[..buf.len() - 2].to_vec(), 0));
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    /// Vectored writes pass through (so hyper queues body frames instead of copying them
    /// into a flat buffer); only while endless trailers are armed are they flattened, to
    /// find the chunked terminator.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.endless.is_some() || self.control.endless_trailers.load(Ordering::SeqCst) {
            let flat: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            return self.poll_write(cx, &flat);
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.endless.is_some() {
            return self.pump(cx);
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.endless.is_some() {
            return self.pump(cx);
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn serve_io<I, F, Fut>(io: I, control: Arc<ConnControl>, handler: F)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>, Arc<ConnControl>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Reply, Abort>> + Send + 'static,
{
    let service = service_fn(move |req| {
        let handler = handler.clone();
        let control = control.clone();
        async move { handler(req, control).await }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}

/// Serves one accepted connection until it ends or `shutdown` changes.
pub async fn serve<F, Fut>(
    stream: TcpStream,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<u64>,
    handler: F,
) where
    F: Fn(Request<Incoming>, Arc<ConnControl>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Reply, Abort>> + Send + 'static,
{
    let _ = stream.set_nodelay(true);
    let control = Arc::new(ConnControl::default());
    let raw = RawTcp {
        stream,
        control: control.clone(),
    };
    let connection = async move {
        match acceptor {
            Some(acceptor) => {
                if let Ok(tls) = acceptor.accept(raw).await {
                    let io = TrailerIo {
                        inner: tls,
                        control: control.clone(),
                        endless: None,
                    };
                    serve_io(io, control, handler).await;
                }
            }
            None => {
                let io = TrailerIo {
                    inner: raw,
                    control: control.clone(),
                    endless: None,
                };
                serve_io(io, control, handler).await;
            }
        }
    };
    tokio::select! {
        _ = connection => {}
        _ = shutdown.changed() => {}
    }
}

/// A listening port whose listener can be dropped and reopened (same port), cutting every
/// connection it accepted.
pub struct Listener {
    pub port: u16,
    task: Mutex<Option<JoinHandle<()>>>,
    epoch: watch::Sender<u64>,
    up: AtomicBool,
}

/// What a listener does with each accepted connection.
pub type Acceptor = Arc<dyn Fn(TcpStream, watch::Receiver<u64>) + Send + Sync>;

impl Listener {
    /// Binds `127.0.0.1:port` (0 = any) on the current runtime.
    pub async fn bind(port: u16) -> io::Result<(Arc<Listener>, TcpListener)> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let port = listener.local_addr()?.port();
        let (epoch, _) = watch::channel(0);
        Ok((
            Arc::new(Listener {
                port,
                task: Mutex::new(None),
                epoch,
                up: AtomicBool::new(false),
            }),
            listener,
        ))
    }

    /// Starts accepting on `listener` (must be running inside the runtime).
    pub fn accept_on(self: &Arc<Self>, listener: TcpListener, on_accept: Acceptor) {
        let epoch = self.epoch.clone();
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => on_accept(stream, epoch.subscribe()),
                    // Out of descriptors and the like: do not spin.
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        });
        if let Ok(mut slot) = self.task.lock() {
            *slot = Some(task);
        }
        self.up.store(true, Ordering::SeqCst);
    }

    /// True while the port accepts connections.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    /// Closes the listening socket and every connection it accepted; returns once the
    /// port refuses connections. Callable from any thread (it does not block on the
    /// runtime).
    pub fn stop(&self) {
        self.up.store(false, Ordering::SeqCst);
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            task.abort();
            for _ in 0..2000 {
                if task.is_finished() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        self.epoch.send_modify(|e| *e += 1);
    }

    /// Reopens the same port after `pause`, retrying the bind for a few seconds.
    pub fn restart_after(
        self: &Arc<Self>,
        runtime: &tokio::runtime::Handle,
        pause: Duration,
        on_accept: Acceptor,
    ) {
        let me = self.clone();
        runtime.spawn(async move {
            tokio::time::sleep(pause).await;
            for _ in 0..500 {
                match TcpListener::bind(("127.0.0.1", me.port)).await {
                    Ok(listener) => {
                        me.accept_on(listener, on_accept);
                        return;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        });
    }
}
