//! Syslog listeners: UDP (one datagram = one or more LF-separated messages) and TCP (RFC 6587
//! framing, see [`super::framing`]). RFC 3164 and RFC 5424 are parsed by
//! `mamori_ingest::parse_syslog_line`; the sender's address is kept as the event's origin and
//! as `log.source.address` (Filebeat's name for it).
//!
//! Limits (see [`crate::limits`]): the UDP socket's receive buffer is set and the kernel's
//! drops on it are read into the metrics every second; stream connections are capped per
//! listener and closed when idle (sooner when the listener is nearly full).

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mamori_event::{Event, Interner, Origin, Transport, Value};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{watch, Semaphore};

use super::framing::{FrameError, Framer};
use crate::metrics::{Metrics, SourceCounters, SourceKind};
use crate::pipeline::Sink;

/// Most events sent to the pipeline in one batch by a connection.
const MAX_BATCH: usize = 512;

/// Parses one frame into `out`; returns false (and counts it) when it is not a message.
/// How well it was understood (payload format, generic text) goes to `quality`.
fn parse_frame(
    frame: &[u8],
    peer: SocketAddr,
    transport: Transport,
    names: &mut Interner,
    addr_field: &mamori_event::FieldName,
    out: &mut Vec<Event>,
    quality: &SourceCounters,
) -> bool {
    let origin = Origin::Network { peer, transport };
    let mut year = mamori_ingest::YearHint::current();
    match mamori_ingest::parse_syslog_line_info(frame, origin, names, &mut year) {
        Ok((mut ev, info)) => {
            quality.record_read_quality(&ev, &info);
            ev.push(addr_field.clone(), Value::str(peer.ip().to_string()));
            out.push(ev);
            true
        }
        Err(_) => false,
    }
}

/// Binds the UDP listener with a receive buffer of `rcvbuf` bytes (as far as the kernel
/// allows); returns the socket and the buffer size the kernel granted.
pub fn bind_udp(addr: SocketAddr, rcvbuf: usize) -> std::io::Result<(UdpSocket, usize)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(e) = s.set_recv_buffer_size(rcvbuf) {
        tracing::warn!(error = %e, bytes = rcvbuf, "cannot set the UDP receive buffer");
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    let granted = s.recv_buffer_size().unwrap_or(0);
    if granted < rcvbuf {
        tracing::warn!(
            asked = rcvbuf,
            granted,
            "the kernel granted a smaller UDP receive buffer (raise net.core.rmem_max, see docs/limits.md)"
        );
    }
    Ok((UdpSocket::from_std(s.into())?, granted))
}

/// How often the kernel's UDP drop count is read.
const KERNEL_DROPS_EVERY: Duration = Duration::from_secs(1);

/// Serves syslog over UDP until `stop` changes.
pub async fn run_udp(
    sock: UdpSocket,
    sink: Sink,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let c = metrics.source(SourceKind::Udp);
    let mut names = Interner::new();
    let addr_field = names.intern("log.source.address");
    let mut buf = vec![0u8; 65_536];
    #[cfg(unix)]
    let inode = crate::limits::socket_inode(std::os::fd::AsRawFd::as_raw_fd(&sock));
    #[cfg(not(unix))]
    let inode: Option<u64> = None;
    let read_drops = || {
        if let Some(d) = inode.and_then(crate::limits::udp_kernel_drops) {
            metrics.net.udp_kernel_drops.store(d, Relaxed);
        }
    };
    read_drops();
    let mut drops_tick = tokio::time::interval(KERNEL_DROPS_EVERY);
    loop {
        let (n, peer) = tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "UDP receive failed");
                    continue;
                }
            },
            _ = drops_tick.tick() => {
                read_drops();
                continue;
            }
            _ = stop.changed() => return,
        };
        let mut events = Vec::new();
        let mut handle = |data: &[u8], peer: SocketAddr, events: &mut Vec<Event>| {
            c.bytes_in.fetch_add(data.len() as u64, Relaxed);
            for line in data.split(|&b| b == b'\n') {
                if line.iter().all(|b| b.is_ascii_whitespace() || *b == 0) {
                    continue;
                }
                if !parse_frame(
                    line,
                    peer,
                    Transport::Udp,
                    &mut names,
                    &addr_field,
                    events,
                    c,
                ) {
                    c.malformed.fetch_add(1, Relaxed);
                }
            }
        };
        handle(&buf[..n], peer, &mut events);
        // Drain whatever else already arrived into the same batch.
        while events.len() < MAX_BATCH {
            match sock.try_recv_from(&mut buf) {
                Ok((n, peer)) => handle(&buf[..n], peer, &mut events),
                Err(_) => break,
            }
        }
        sink.try_send(events, SourceKind::Udp);
    }
}

/// Accepts connections until `ctx.stop` changes, at most `max_connections` at once (more
/// wait for a free slot), counts them under `ctx.kind`, and runs `handle` for each in its own
/// task. Shared by the TCP and TLS listeners.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    ctx: StreamCtx,
    max_connections: usize,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr, StreamCtx) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut stop = ctx.stop.clone();
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut ctx = ctx;
    ctx.load = Some(Load {
        slots: Arc::clone(&slots),
        max: max_connections.max(1),
    });
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.changed() => return,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, source = ctx.kind.as_str(), "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        ctx.metrics
            .source(ctx.kind)
            .connections
            .fetch_add(1, Relaxed);
        let conn = handle(stream, peer, ctx.clone());
        tokio::spawn(async move {
            conn.await;
            drop(permit);
        });
    }
}

/// Serves syslog over TCP until `ctx.stop` changes; each connection is its own task.
pub async fn run_tcp(listener: TcpListener, ctx: StreamCtx, max_connections: usize) {
    accept_loop(listener, ctx, max_connections, |stream, peer, ctx| {
        serve_stream::<TcpStream>(stream, peer, ctx)
    })
    .await
}

/// What a stream connection needs from its listener.
#[derive(Clone)]
pub struct StreamCtx {
    /// Counters to bump.
    pub kind: SourceKind,
    /// Recorded in the events' origin.
    pub transport: Transport,
    pub sink: Sink,
    pub metrics: Arc<Metrics>,
    pub max_frame: usize,
    pub stop: watch::Receiver<bool>,
    /// Close a connection idle this long…
    pub idle: Duration,
    /// …or this long once the listener is three-quarters full.
    pub idle_when_full: Duration,
    /// The listener's connection slots (set by [`accept_loop`]).
    pub load: Option<Load>,
}

/// How full a listener is.
#[derive(Clone)]
pub struct Load {
    slots: Arc<Semaphore>,
    max: usize,
}

impl Load {
    fn nearly_full(&self) -> bool {
        self.slots.available_permits() * 4 < self.max
    }
}

impl StreamCtx {
    /// How long a connection may stay idle right now.
    fn idle_limit(&self) -> Duration {
        match &self.load {
            Some(l) if l.nearly_full() => self.idle_when_full.min(self.idle),
            _ => self.idle,
        }
    }
}

/// How often an idle connection checks its idle limit.
const IDLE_CHECK: Duration = Duration::from_millis(500);

/// Reads frames from one connection (plain TCP, or TLS once the handshake is done) until EOF,
/// an error, or shutdown. Counts under `kind`; events carry `transport` in their origin.
pub async fn serve_stream<S: AsyncRead + Unpin>(mut stream: S, peer: SocketAddr, ctx: StreamCtx) {
    let (kind, transport, max_frame) = (ctx.kind, ctx.transport, ctx.max_frame);
    let (sink, metrics, mut stop) = (ctx.sink.clone(), Arc::clone(&ctx.metrics), ctx.stop.clone());
    let c = metrics.source(kind);
    let mut names = Interner::new();
    let addr_field = names.intern("log.source.address");
    let mut framer = Framer::new(max_frame);
    let mut buf = vec![0u8; 64 * 1024];
    let mut events = Vec::new();
    let mut last_data = Instant::now();
    loop {
        let n = loop {
            tokio::select! {
                r = stream.read(&mut buf) => break r.unwrap_or(0),
                _ = stop.changed() => break 0,
                _ = tokio::time::sleep(IDLE_CHECK) => {
                    if last_data.elapsed() >= ctx.idle_limit() {
                        metrics.net.stream_idle_closed.fetch_add(1, Relaxed);
                        tracing::debug!(%peer, source = kind.as_str(), "closing an idle connection");
                        return;
                    }
                }
            }
        };
        last_data = Instant::now();
        let eof = n == 0;
        c.bytes_in.fetch_add(n as u64, Relaxed);
        framer.feed(&buf[..n]);
        while let Some(f) = framer.next_frame(eof) {
            match f {
                Ok(r) => {
                    if !parse_frame(
                        framer.get(r),
                        peer,
                        transport,
                        &mut names,
                        &addr_field,
                        &mut events,
                        c,
                    ) {
                        c.malformed.fetch_add(1, Relaxed);
                    }
                }
                Err(FrameError::Oversized) => {
                    c.oversized.fetch_add(1, Relaxed);
                }
                Err(FrameError::Truncated) => {
                    c.malformed.fetch_add(1, Relaxed);
                }
            }
            if events.len() >= MAX_BATCH
                && sink.send(std::mem::take(&mut events), kind).await.is_err()
            {
                return;
            }
        }
        // Nothing more buffered: hand over what we have (waits when the queue is full, which
        // stops us reading and lets TCP flow control slow the sender).
        if sink.send(std::mem::take(&mut events), kind).await.is_err() || eof {
            return;
        }
    }
}
