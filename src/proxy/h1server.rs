//! Our own HTTP/1.1 server for the proxy listener: one connection, served
//! in its own task with no other task, channel or timer per request.
//!
//! - Request heads are parsed with `httparse` from the connection's
//!   buffer (reused); the head's bytes are frozen once and shared by the
//!   URI and the header values. What framing and persistence need
//!   (Content-Length, Transfer-Encoding, Connection, Expect, Upgrade) is
//!   noted while the map is built, never looked up after.
//! - The body's framing follows RFC 9112 §6.3 (`h1body`); a head with
//!   both Content-Length and Transfer-Encoding is refused (400, then
//!   close: it is how requests are smuggled). Malformed heads get 400,
//!   oversized ones or too many fields 431, a client that does not finish
//!   its head within `header_read_timeout` (or sends nothing) 408.
//! - The response head is written straight into a reused buffer, with the
//!   first body bytes behind it when they are ready (one write for a small
//!   response): Content-Length when known, chunked for an unknown length
//!   on HTTP/1.1, delimited by the close on HTTP/1.0; no body for HEAD,
//!   1xx, 204 and 304; a `Date` unless the response has one.
//! - Persistence: HTTP/1.1 keeps the connection unless either side says
//!   `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
//!   Pipelined requests are served in order from the buffer. A body the
//!   pipeline left unread is drained (a little of it at most) or the
//!   connection closed.
//! - A connection that opens with HTTP/2's preface is handed back to the
//!   listener (for hyper's HTTP/2 server); a 101 hands the connection, with
//!   what was read ahead, to the pipeline's upgrade.
//! - On `stop`: an idle connection closes at once, the request in flight
//!   is finished and answered with `Connection: close`.
//! - Not watched for: a client closing while its request is at the
//!   upstream is noticed when the answer is written (an extra read per
//!   request would notice sooner); writes have no time limit, as before.

use std::future::{poll_fn, Future};
use std::io;
use std::mem::MaybeUninit;
use std::pin::{pin, Pin};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use http::header::HeaderName;
use http::{Method, Request, StatusCode, Uri, Version};
use http_body::Body as HttpBody;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::h1body::{Chunk, Framing};
use super::h1incoming::{self, Continue, Incoming, Wire};
use super::h1parse::{
    add_length, decimal, field_spans, header_map, lists, span, Deadline, Field, Hops,
};
use super::listener::ConnInfo;
use super::passthrough::{Answer, Passed};
use super::rewind::{ClientIo, Rewound};
use super::{errors, pipeline, Shared};
use crate::observe::GaugeGuard;
use crate::plugins::Body;

/// Most request header fields (hyper's default); beyond: 431.
const MAX_HEADERS: usize = 100;
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Most bytes of an unread request body read off to keep the connection.
const MAX_DRAIN: u64 = 64 * 1024;
/// Data frames up to this size are copied behind the head or the frames
/// before them; larger ones are written on their own.
const COPY_LIMIT: usize = 16 * 1024;
/// Most bytes held before they are written.
const OUT_LIMIT: usize = 64 * 1024;

/// How a connection's HTTP/1.1 service ended.
pub enum Ended<I> {
    Closed,
    /// It spoke HTTP/2: the connection, with the preface in front.
    Http2(Rewound<I>),
}

/// A request head, parsed.
struct Head {
    req: Request<()>,
    body: Framing,
    /// The client allows another request after this one.
    keep: bool,
    expect: bool,
    /// Content-Length and Transfer-Encoding both.
    conflict: bool,
    upgrade: bool,
}

/// Why a head is refused before it is served.
#[derive(Debug, PartialEq)]
enum Refused {
    Bad,
    TooLarge,
}

/// What waiting for the next head came to.
enum Next {
    /// A head is in `Conn::parsed`.
    Head,
    Http2,
    Closed,
    /// The deadline passed; whether bytes of a head had come.
    TimedOut(bool),
    Refused(Refused),
}

/// Parses a request head off the front of `buf` (`None`: incomplete).
fn parse_head(
    buf: &mut BytesMut,
    spans: &mut Vec<[usize; 4]>,
    max: usize,
) -> Result<Option<Head>, Refused> {
    let (len, method, target, minor) = {
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
            &mut req,
            buf,
            &mut fields,
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => {
                if buf.len() > max {
                    return Err(Refused::TooLarge);
                }
                return Ok(None);
            }
            Err(httparse::Error::TooManyHeaders) => return Err(Refused::TooLarge),
            Err(_) => return Err(Refused::Bad),
        };
        if len > max {
            return Err(Refused::TooLarge);
        }
        let head = &buf[..len];
        if !field_spans(head, req.headers, spans) {
            return Err(Refused::Bad);
        }
        let (Some(m), Some(t)) = (req.method, req.path) else {
            return Err(Refused::Bad);
        };
        let method = Method::from_bytes(m.as_bytes()).map_err(|_| Refused::Bad)?;
        let target = span(head, t.as_bytes()).ok_or(Refused::Bad)?;
        (len, method, target, req.version.unwrap_or(0))
    };
    let head = buf.split_to(len).freeze();
    let uri = Uri::from_maybe_shared(head.slice(target.0..target.1)).map_err(|_| Refused::Bad)?;
    // Room for what the pipeline adds (the forwarded headers go into the
    // upstream head, not the map) without growing it.
    let (headers, facts) = header_map(&head, spans, 4, Hops::Keep).map_err(|_| Refused::Bad)?;
    let http11 = minor == 1;
    let conflict = facts.chunked.is_some() && facts.length.is_some();
    let body = match (facts.chunked, facts.length) {
        _ if conflict => Framing::Done,
        // A coding other than chunked last cannot be framed; HTTP/1.0
        // has no Transfer-Encoding (RFC 9112 §6.1).
        (Some(true), _) if http11 => Framing::Chunked(Chunk::Size),
        (Some(_), _) => return Err(Refused::Bad),
        (None, Some(Ok(0)) | None) => Framing::Done,
        (None, Some(Ok(n))) => Framing::Length(n),
        (None, Some(Err(()))) => return Err(Refused::Bad),
    };
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = if http11 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    *req.headers_mut() = headers;
    Ok(Some(Head {
        req,
        body,
        keep: !facts.close && (http11 || facts.keep_alive),
        expect: http11 && facts.expect,
        conflict,
        upgrade: http11 && facts.upgrade && facts.conn_upgrade,
    }))
}

/// How the response body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoder {
    /// No body at all (HEAD, 1xx, 204, 304).
    None,
    /// This many bytes remain.
    Length(u64),
    Chunked,
    /// Until the connection closes (HTTP/1.0, unknown length).
    Close,
}

/// What of the request the response head depends on.
struct Asked {
    head: bool,
    http10: bool,
    keep: bool,
}

/// Writes the head of a response into `out`; the body's encoding, whether
/// the connection may be kept, and the trailer names the response
/// declared (only those are sent, as hyper did).
fn encode_head(
    parts: &http::response::Parts,
    passed: Option<&Passed>,
    body: &Body,
    asked: &Asked,
    out: &mut Vec<u8>,
) -> (Encoder, bool, Option<Vec<HeaderName>>) {
    let status = parts.status;
    let mut keep = asked.keep;
    if status == StatusCode::OK && !asked.http10 {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(if asked.http10 {
            b"HTTP/1.0 "
        } else {
            b"HTTP/1.1 "
        });
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let no_body = asked.head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let length_allowed = !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED);
    let mut length = None;
    let mut said_close = false;
    let mut said_keep = false;
    let mut dated = false;
    let mut trailers: Option<Vec<HeaderName>> = None;
    if let Some(passed) = passed {
        // What `field` below does for each field, in fewer copies: the
        // upstream's fields passed on hold no framing or connection
        // field, and at most one valid length.
        (length, dated) = passed.write(out, length_allowed);
    }
    let mut field = |name: &[u8], bytes: &[u8]| {
        match Field::of(name) {
            Field::ContentLength => {
                // One valid length is written; others, and lengths where
                // none may be, are not.
                if !length_allowed || length.is_some() {
                    return;
                }
                match add_length(None, bytes) {
                    Ok(n) => length = Some(n),
                    Err(()) => return,
                }
            }
            // The framing is ours to choose.
            Field::TransferEncoding => return,
            Field::Connection => {
                said_close |= lists(bytes, "close");
                said_keep |= lists(bytes, "keep-alive");
            }
            Field::Date => dated = true,
            Field::Trailer => {
                let names = bytes
                    .split(|&b| b == b',')
                    .filter_map(|t| HeaderName::from_bytes(t.trim_ascii()).ok());
                trailers.get_or_insert_with(Vec::new).extend(names);
            }
            _ => {}
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(bytes);
        out.extend_from_slice(b"\r\n");
    };
    for (name, value) in &parts.headers {
        field(name.as_str().as_bytes(), value.as_bytes());
    }
    keep &= !said_close;
    let encoder = if no_body {
        if length.is_none() && asked.head && length_allowed {
            // A HEAD answer says how long the body would have been.
            if let Some(n) = body.size_hint().exact().filter(|n| *n > 0) {
                write_length(out, n);
            }
        }
        Encoder::None
    } else if let Some(n) = length {
        Encoder::Length(n)
    } else if body.is_end_stream() {
        write_length(out, 0);
        Encoder::Length(0)
    } else if let Some(n) = body.size_hint().exact() {
        write_length(out, n);
        Encoder::Length(n)
    } else if asked.http10 {
        keep = false;
        Encoder::Close
    } else {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        Encoder::Chunked
    };
    if asked.http10 && keep && !said_keep {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    } else if !asked.http10 && !keep && !said_close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if !dated {
        out.extend_from_slice(b"date: ");
        date::write(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let trailers = trailers.filter(|_| encoder == Encoder::Chunked);
    (encoder, keep, trailers)
}

fn write_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"content-length: ");
    write_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

fn write_decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(decimal(n, &mut [0; 20]));
}

fn write_hex(out: &mut Vec<u8>, mut n: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = HEX[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// The `Date` header's value, formatted once a second per thread.
mod date {
    use super::SystemTime;
    use std::cell::RefCell;

    thread_local! {
        static CACHE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
    }

    pub fn write(out: &mut Vec<u8>) {
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if c.0 != secs {
                *c = (secs, format(secs));
            }
            out.extend_from_slice(&c.1);
        });
    }

    /// IMF-fixdate (RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
    pub fn format(secs: u64) -> [u8; 29] {
        const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
        const MONTHS: [&[u8; 3]; 12] = [
            b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
            b"Dec",
        ];
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (year, month, day) = crate::observe::access_log::civil_from_days(days as i64);
        let (year, month, day) = (year as u64, month as usize, u64::from(day));
        let mut b = [0u8; 29];
        b[..3].copy_from_slice(DAYS[(days % 7) as usize]);
        b[3..5].copy_from_slice(b", ");
        two(&mut b[5..7], day);
        b[7] = b' ';
        b[8..11].copy_from_slice(MONTHS[(month - 1) % 12]);
        b[11] = b' ';
        two(&mut b[12..14], (year / 100) % 100);
        two(&mut b[14..16], year % 100);
        b[16] = b' ';
        two(&mut b[17..19], rem / 3600);
        b[19] = b':';
        two(&mut b[20..22], rem / 60 % 60);
        b[22] = b':';
        two(&mut b[23..25], rem % 60);
        b[25..29].copy_from_slice(b" GMT");
        b
    }

    fn two(dst: &mut [u8], n: u64) {
        dst[0] = b'0' + (n / 10 % 10) as u8;
        dst[1] = b'0' + (n % 10) as u8;
    }
}

/// The client's side of an HTTP/1.1 upgrade: the connection, once the
/// 101 has been written to it.
pub type Upgrade = oneshot::Receiver<Box<dyn ClientIo>>;

/// One client connection.
struct Conn<I> {
    wire: h1incoming::Shared<I>,
    /// The response being written (reused).
    out: Vec<u8>,
    /// Scratch for the head parser (reused).
    spans: Vec<[usize; 4]>,
    max_head: usize,
    /// When the head being waited for must have come: `timeout` after the
    /// wait began.
    deadline: Deadline,
    timeout: Duration,
    /// Nothing but a part of HTTP/2's preface was read yet.
    first: bool,
    seq: u64,
    /// The head `poll_head` parsed.
    parsed: Option<Head>,
    /// Shutdown asked for; `watching`: this task is registered to be woken
    /// when it is (the stop future was polled once: reading the flag is
    /// enough after that).
    stop: watch::Receiver<bool>,
    watching: bool,
}

/// How a response left the connection.
enum Answered {
    Keep,
    Close,
    /// A 101 was written: the connection goes to the upgrade.
    Upgrade(oneshot::Sender<Box<dyn ClientIo>>),
}

impl<I: AsyncRead + AsyncWrite + Send + Unpin + 'static> Conn<I> {
    /// The wait for the next head (or the rest of a body) starts now.
    fn arm(&mut self) {
        self.deadline.set(Instant::now() + self.timeout);
    }

    /// Reads until a head is complete (or the connection turns out to be
    /// something else, ends, or times out). Shutdown closes it while it is
    /// idle (no byte of a head read yet).
    fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        mut stopping: Pin<&mut impl Future<Output = ()>>,
    ) -> Poll<Next> {
        let mut w = h1incoming::lock(&self.wire);
        loop {
            if !w.buf.is_empty() {
                let n = w.buf.len().min(PREFACE.len());
                if self.first && w.buf[..n] == PREFACE[..n] {
                    if n == PREFACE.len() {
                        return Poll::Ready(Next::Http2);
                    }
                } else {
                    self.first = false;
                    match parse_head(&mut w.buf, &mut self.spans, self.max_head) {
                        Ok(Some(head)) => {
                            self.parsed = Some(head);
                            return Poll::Ready(Next::Head);
                        }
                        Ok(None) => {}
                        Err(r) => return Poll::Ready(Next::Refused(r)),
                    }
                }
            }
            match w.poll_fill(cx) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Next::Closed),
                Poll::Ready(Ok(_)) => {}
                Poll::Pending => {
                    let partial = !w.buf.is_empty();
                    if !partial {
                        let asked = if self.watching {
                            *self.stop.borrow()
                        } else {
                            self.watching = true;
                            stopping.as_mut().poll(cx).is_ready()
                        };
                        if asked {
                            return Poll::Ready(Next::Closed);
                        }
                    }
                    ready!(self.deadline.poll(cx));
                    return Poll::Ready(Next::TimedOut(partial));
                }
            }
        }
    }

    /// Writes all of `bytes` (or of `out`, when `None`), then flushes.
    async fn write(&mut self, bytes: Option<&[u8]>) -> io::Result<()> {
        let wire = &self.wire;
        let out = bytes.unwrap_or(&self.out);
        let mut done = 0;
        poll_fn(|cx| {
            let mut w = h1incoming::lock(wire);
            while done < out.len() {
                let n = ready!(Pin::new(&mut w.io).poll_write(cx, &out[done..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                done += n;
            }
            Pin::new(&mut w.io).poll_flush(cx)
        })
        .await?;
        if bytes.is_none() {
            self.out.clear();
        }
        Ok(())
    }

    /// An answer of the server's own, then the end of the connection.
    async fn refuse(&mut self, status: StatusCode, message: &str) {
        let answer = errors::raw_http1(status, message);
        if self.write(Some(&answer)).await.is_ok() {
            self.shutdown().await;
        }
    }

    async fn shutdown(&mut self) {
        let wire = &self.wire;
        let _ = poll_fn(|cx| Pin::new(&mut h1incoming::lock(wire).io).poll_shutdown(cx)).await;
    }

    /// Writes the response; what the connection is fit for after it.
    async fn respond(
        &mut self,
        answer: Answer,
        asked: &Asked,
        upgrade: Option<oneshot::Sender<Box<dyn ClientIo>>>,
    ) -> Answered {
        let (parts, mut body) = answer.response.into_parts();
        self.out.clear();
        let passed = answer.passed.as_ref();
        let (mut encoder, mut keep, trailers) =
            encode_head(&parts, passed, &body, asked, &mut self.out);
        drop(answer.passed);
        if parts.status == StatusCode::SWITCHING_PROTOCOLS {
            drop(body);
            let wrote = self.write(None).await.is_ok();
            return match (wrote, upgrade) {
                (true, Some(tx)) => Answered::Upgrade(tx),
                _ => Answered::Close,
            };
        }
        if encoder == Encoder::None {
            drop(body);
            return answered(self.write(None).await.is_ok() && keep);
        }
        loop {
            // Frames ready now go behind the head; the bytes held are
            // written when the body has to wait, or grows large.
            let next = poll_fn(|cx| match Pin::new(&mut body).poll_frame(cx) {
                Poll::Pending if !self.out.is_empty() => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
                Poll::Ready(frame) => Poll::Ready(Some(frame)),
            })
            .await;
            let frame = match next {
                None => {
                    if self.write(None).await.is_err() {
                        return Answered::Close;
                    }
                    continue;
                }
                Some(Some(Ok(frame))) => frame,
                Some(None) => break,
                Some(Some(Err(e))) => {
                    tracing::debug!(error = %e, "response body failed");
                    let _ = self.write(None).await;
                    return Answered::Close;
                }
            };
            let data = match frame.into_data() {
                Ok(data) => data,
                Err(frame) => {
                    if let (Ok(t), Some(allowed)) = (frame.into_trailers(), &trailers) {
                        self.out.extend_from_slice(b"0\r\n");
                        for (name, value) in &t {
                            if allowed.contains(name) {
                                self.out.extend_from_slice(name.as_str().as_bytes());
                                self.out.extend_from_slice(b": ");
                                self.out.extend_from_slice(value.as_bytes());
                                self.out.extend_from_slice(b"\r\n");
                            }
                        }
                        self.out.extend_from_slice(b"\r\n");
                        encoder = Encoder::Length(0);
                    }
                    continue;
                }
            };
            if data.is_empty() {
                continue;
            }
            match &mut encoder {
                Encoder::Length(rest) => {
                    if data.len() as u64 > *rest {
                        tracing::debug!("response body longer than its content-length");
                        let _ = self.write(None).await;
                        return Answered::Close;
                    }
                    *rest -= data.len() as u64;
                }
                Encoder::Chunked => {
                    write_hex(&mut self.out, data.len());
                    self.out.extend_from_slice(b"\r\n");
                }
                Encoder::Close | Encoder::None => {}
            }
            if data.len() <= COPY_LIMIT {
                self.out.extend_from_slice(&data);
            } else if self.write(None).await.is_err() || self.write(Some(&data)).await.is_err() {
                return Answered::Close;
            }
            if encoder == Encoder::Chunked {
                self.out.extend_from_slice(b"\r\n");
            }
            if self.out.len() > OUT_LIMIT && self.write(None).await.is_err() {
                return Answered::Close;
            }
        }
        drop(body);
        match encoder {
            Encoder::Chunked => self.out.extend_from_slice(b"0\r\n\r\n"),
            Encoder::Length(0) => {}
            Encoder::Length(_) => {
                tracing::debug!("response body shorter than its content-length");
                keep = false;
            }
            Encoder::Close | Encoder::None => {}
        }
        answered(self.write(None).await.is_ok() && keep)
    }

    /// After a 101: the connection, with what was read ahead, to the
    /// upgrade (it closes if the upgrade is gone).
    fn hand_over(self, tx: oneshot::Sender<Box<dyn ClientIo>>) {
        let Ok(wire) = Arc::try_unwrap(self.wire) else {
            tracing::debug!("upgrade while the request body is still held");
            return;
        };
        let wire = wire.into_inner().unwrap_or_else(|e| e.into_inner());
        let _ = tx.send(Box::new(Rewound::new(wire.buf.freeze(), wire.io)));
    }

    /// The body of request `seq` is read from the wire from now on.
    fn expect_body(&mut self, framing: Framing, expect: bool) {
        let mut w = h1incoming::lock(&self.wire);
        w.seq = self.seq;
        w.body = framing;
        w.expect = if expect {
            Continue::Owed(0)
        } else {
            Continue::No
        };
    }

    /// Ends the request's body for whoever still holds it, and reads off
    /// what the pipeline left of it, a little at most; whether the
    /// connection can carry another request.
    async fn drain(&mut self) -> bool {
        {
            let mut w = h1incoming::lock(&self.wire);
            w.seq = 0;
            if w.body.is_done() {
                w.expect = Continue::No;
                return true;
            }
        }
        self.arm();
        let mut left = MAX_DRAIN;
        let drained = poll_fn(|cx| {
            let mut w = h1incoming::lock(&self.wire);
            if w.expect != Continue::No {
                // The client was never invited to send it: it may not.
                return Poll::Ready(w.body.is_done());
            }
            if let Framing::Length(n) = w.body {
                if n > left.saturating_add(w.buf.len() as u64) {
                    return Poll::Ready(false);
                }
            }
            loop {
                match w.poll_body(cx) {
                    Poll::Ready(Ok(Some(frame))) => {
                        let n = frame.data_ref().map_or(0, |d| d.len() as u64);
                        left = left.saturating_sub(n);
                        if left == 0 {
                            return Poll::Ready(false);
                        }
                    }
                    Poll::Ready(Ok(None)) => return Poll::Ready(true),
                    Poll::Ready(Err(_)) => return Poll::Ready(false),
                    Poll::Pending => {
                        ready!(self.deadline.poll(cx));
                        return Poll::Ready(false);
                    }
                }
            }
        })
        .await;
        let mut w = h1incoming::lock(&self.wire);
        w.body = Framing::Done;
        w.expect = Continue::No;
        drained
    }
}

/// Serves HTTP/1.1 on `io` until the connection ends; hands it back if it
/// speaks HTTP/2. `reading` counts the connection as reading its first
/// request until that request's head is in.
pub async fn serve<I>(
    io: I,
    info: Arc<ConnInfo>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    mut reading: Option<GaugeGuard<'_>>,
) -> Ended<I>
where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut conn = Conn {
        wire: Arc::new(Mutex::new(Wire::new(io))),
        out: Vec::new(),
        spans: Vec::new(),
        max_head: shared.settings.max_header_bytes.max(8192),
        deadline: Deadline::default(),
        timeout: shared.settings.header_read_timeout,
        first: true,
        seq: 0,
        parsed: None,
        stop: stop.clone(),
        watching: false,
    };
    let mut stopping = pin!(stopped(stop));
    loop {
        conn.arm();
        let next = poll_fn(|cx| conn.poll_head(cx, stopping.as_mut())).await;
        reading.take();
        let head = match next {
            Next::Head => match conn.parsed.take() {
                Some(head) => head,
                None => return Ended::Closed,
            },
            Next::Closed => return Ended::Closed,
            Next::Http2 => return conn.into_http2(),
            Next::TimedOut(partial) => {
                if partial || info.requests.load(Ordering::Relaxed) == 0 {
                    conn.refuse(StatusCode::REQUEST_TIMEOUT, "Request timeout")
                        .await;
                }
                return Ended::Closed;
            }
            Next::Refused(Refused::Bad) => {
                conn.refuse(StatusCode::BAD_REQUEST, errors::BAD_REQUEST)
                    .await;
                return Ended::Closed;
            }
            Next::Refused(Refused::TooLarge) => {
                conn.refuse(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "Request header fields too large",
                )
                .await;
                return Ended::Closed;
            }
        };
        info.requests.fetch_add(1, Ordering::Relaxed);
        let Head {
            req,
            body: framing,
            keep,
            expect,
            conflict,
            upgrade,
        } = head;
        let asked = Asked {
            head: req.method() == Method::HEAD,
            http10: req.version() == Version::HTTP_10,
            keep: keep && !conflict,
        };
        let (tx, rx) = match upgrade {
            true => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
            false => (None, None),
        };
        let answer = if conflict {
            pipeline::refuse(&shared, StatusCode::BAD_REQUEST, errors::BAD_REQUEST).into()
        } else {
            conn.seq += 1;
            let body: Body = if framing.is_done() {
                crate::plugins::empty_body()
            } else {
                conn.expect_body(framing, expect);
                Incoming::new(conn.wire.clone(), conn.seq).boxed()
            };
            let req = req.map(|()| body);
            pipeline::handle(&shared, &info, req, rx).await
        };
        let mut asked = asked;
        asked.keep &= !*conn.stop.borrow();
        let keep = match conn.respond(answer, &asked, tx).await {
            Answered::Keep => true,
            Answered::Close => false,
            Answered::Upgrade(tx) => {
                conn.hand_over(tx);
                return Ended::Closed;
            }
        };
        if !keep || !conn.drain().await {
            conn.shutdown().await;
            return Ended::Closed;
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Send + Unpin + 'static> Conn<I> {
    fn into_http2(self) -> Ended<I> {
        let Ok(wire) = Arc::try_unwrap(self.wire) else {
            return Ended::Closed;
        };
        let wire = wire.into_inner().unwrap_or_else(|e| e.into_inner());
        Ended::Http2(Rewound::new(wire.buf.freeze(), wire.io))
    }
}

fn answered(keep: bool) -> Answered {
    if keep {
        Answered::Keep
    } else {
        Answered::Close
    }
}

/// Resolves once shutdown was asked for (at once if it already was).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::Response;
    use http_body::Frame;

    fn parse(bytes: &[u8]) -> Result<Option<Head>, Refused> {
        parse_head(&mut BytesMut::from(bytes), &mut Vec::new(), 8192)
    }

    #[test]
    fn heads_parse_with_their_framing_and_persistence() {
        let mut buf = BytesMut::from(
            &b"POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhelloGET"[..],
        );
        let head = parse_head(&mut buf, &mut Vec::new(), 8192)
            .unwrap()
            .unwrap();
        assert_eq!(head.req.method(), Method::POST);
        assert_eq!(head.req.uri(), "/a?b=1");
        assert_eq!(head.req.headers().get_all("x-a").iter().count(), 2);
        assert_eq!(head.body, Framing::Length(5));
        assert!(head.keep && !head.expect && !head.conflict && !head.upgrade);
        assert_eq!(&buf[..], b"helloGET");

        let head = parse(b"GET / HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(head.keep);
        assert_eq!(head.req.version(), Version::HTTP_10);
        assert!(!parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().keep);
        assert!(
            !parse(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n")
                .unwrap()
                .unwrap()
                .keep
        );
        let head = parse(
            b"POST / HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\nexpect: 100-continue\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.body, Framing::Chunked(Chunk::Size));
        assert!(head.expect);
        let head =
            parse(b"POST / HTTP/1.1\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n")
                .unwrap()
                .unwrap();
        assert!(head.conflict);
        let head = parse(b"GET /ws HTTP/1.1\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(head.upgrade);
        assert!(parse(b"GET / HTTP/1.1\r\nhost: x\r\n").unwrap().is_none());
    }

    #[test]
    fn bad_and_large_heads_are_refused() {
        for bad in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET / HTTP/9.9\r\n\r\n",
            b"GET / HTTP/1.1\r\nbad\x01header: v\r\n\r\n",
            b"POST / HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\ncontent-length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(
                parse(bad).err(),
                Some(Refused::Bad),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let big = format!("GET / HTTP/1.1\r\nx: {}\r\n", "a".repeat(9000));
        assert_eq!(parse(big.as_bytes()).err(), Some(Refused::TooLarge));
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("x{i}: 1\r\n"))
            .collect();
        let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse(many.as_bytes()).err(), Some(Refused::TooLarge));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_parser() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet = b"GET POST / HTTP/1.0 1.1\r\n:;,0123456789abcdef \t\x00\xffcontent-length transfer-encoding chunked";
        let valid = b"POST /p HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n";
        for _ in 0..20_000 {
            let len = (next() % 120) as usize;
            let mut input: Vec<u8> = if next() % 2 == 0 {
                b"GET / HTTP/1.1\r\n".to_vec()
            } else {
                Vec::new()
            };
            input.extend((0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]));
            let _ = parse(&input);
            // Truncated and mutated valid heads too.
            let cut = (next() as usize) % valid.len();
            let _ = parse(&valid[..cut]);
            let mut mutated = valid.to_vec();
            let at = (next() as usize) % mutated.len();
            mutated[at] = alphabet[(next() % alphabet.len() as u64) as usize];
            let _ = parse(&mutated);
        }
    }

    #[test]
    fn response_heads_are_framed_as_hyper_framed_them() {
        let asked = Asked {
            head: false,
            http10: false,
            keep: true,
        };
        let empty = crate::plugins::empty_body;
        let unknown = || -> Body {
            http_body_util::StreamBody::new(futures::stream::pending::<
                Result<Frame<Bytes>, crate::plugins::BoxError>,
            >())
            .boxed()
        };
        let encode = |status: u16, headers: &[(&str, &str)], body: Body, asked: &Asked| {
            let mut resp = Response::new(body);
            *resp.status_mut() = StatusCode::from_u16(status).unwrap();
            for (k, v) in headers {
                resp.headers_mut().append(
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            let (parts, body) = resp.into_parts();
            let mut out = Vec::new();
            let (enc, keep, _) = encode_head(&parts, None, &body, asked, &mut out);
            let text = String::from_utf8(out).unwrap();
            (enc, keep, text)
        };
        let (enc, keep, text) = encode(200, &[("x-a", "1")], empty(), &asked);
        assert_eq!(enc, Encoder::Length(0));
        assert!(keep);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 0\r\ndate: "));
        assert!(text.ends_with(" GMT\r\n\r\n"));
        let (enc, _, text) = encode(404, &[("content-length", "7")], unknown(), &asked);
        assert_eq!(enc, Encoder::Length(7));
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\ncontent-length: 7\r\n"));
        let (enc, _, text) = encode(200, &[], unknown(), &asked);
        assert_eq!(enc, Encoder::Chunked);
        assert!(text.contains("transfer-encoding: chunked\r\n"));
        let (enc, _, text) = encode(204, &[("content-length", "0")], empty(), &asked);
        assert_eq!(enc, Encoder::None);
        assert!(!text.contains("content-length"));
        let old = Asked {
            head: false,
            http10: true,
            keep: true,
        };
        let (enc, keep, text) = encode(200, &[], unknown(), &old);
        assert_eq!(enc, Encoder::Close);
        assert!(!keep);
        assert!(text.starts_with("HTTP/1.0 200 OK\r\n") && !text.contains("connection"));
        let (_, keep, text) = encode(200, &[], empty(), &old);
        assert!(keep && text.contains("connection: keep-alive\r\n"));
        let closing = Asked {
            head: true,
            http10: false,
            keep: false,
        };
        let (enc, keep, text) = encode(200, &[("content-length", "9")], empty(), &closing);
        assert_eq!(enc, Encoder::None);
        assert!(
            !keep
                && text.contains("content-length: 9\r\n")
                && text.contains("connection: close\r\n")
        );
    }

    #[test]
    fn dates_are_imf_fixdates() {
        assert_eq!(&date::format(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&date::format(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            &date::format(1_709_210_096),
            b"Thu, 29 Feb 2024 12:34:56 GMT"
        );
        let mut hex = Vec::new();
        write_hex(&mut hex, 0x1f40);
        write_decimal(&mut hex, 1234);
        assert_eq!(hex, b"1f401234");
    }
}
