//! Our own HTTP/1.1 upstream client, run inline: a request is written to
//! a pooled upstream connection and its response read back from inside
//! the task that serves the client's connection. There is no driver task
//! per upstream connection, no channel and no hand-off between tasks: the
//! response body is a decoder over the upstream socket, polled by the
//! client connection's own writer.
//!
//! One exchange on one connection (`exchange`):
//! - the request head is written in one buffer (the connection's own,
//!   reused), framed as hyper's client frames it: no body when the body is
//!   known empty, the request's own `Content-Length` when it has one, a
//!   `Content-Length` from an exact size hint, `Transfer-Encoding:
//!   chunked` otherwise (a GET, HEAD or CONNECT of unknown size sends none);
//! - the request body is pumped into the socket while the response is
//!   awaited, and keeps being pumped while the response body is read, so
//!   an upstream that answers before it read the whole upload, or that
//!   streams its answer while it reads, is served both ways;
//! - the response head is parsed with `httparse`; 1xx answers other than
//!   101 are skipped; the body's framing follows RFC 9112 §6.3
//!   (`h1body`); a 101 hands the connection to the upgrade (`Upgraded`).
//!
//! What the connection is fit for afterwards: it goes back to the pool
//! (`pool::Back`) only when the response body ended cleanly, the request
//! body was sent whole, the upstream did not say `Connection: close` nor
//! answer in HTTP/1.0, the body was not delimited by the close, and no
//! stray byte followed the response. Anything else closes it.
//!
//! Retrying is the pool's business; `exchange` gives the request back
//! whole (`Failed::unsent`) only when no byte of it reached the socket.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::connector::Stream;
use super::forward::Forwarded;
use super::h1body::{Chunk, Framing, Malformed, Step};
use super::h1parse::{
    add_length, field_spans, header_map, poll_fill, raw_fields, Deadline, Facts, Hops, RawFields,
    MIN_READ,
};
use super::passthrough;
use super::pool::Back;
use crate::plugins::{Body, BoxError};

/// Largest response head accepted (hyper's default buffer limit).
const MAX_HEAD: usize = 8192 + 4096 * 100;
/// Most response header fields parsed (hyper's default).
const MAX_HEADERS: usize = 100;
/// Largest read size.
const MAX_READ: usize = 256 * 1024;

/// An upstream connection with what was read from it and not yet used.
pub struct Conn {
    io: Stream,
    buf: BytesMut,
    /// The request head being written; kept to reuse its allocation.
    head: Vec<u8>,
    /// Where the response head's fields are (scratch, reused).
    spans: Vec<[usize; 4]>,
    read_size: usize,
    /// When the response head must have come (the service's read
    /// timeout).
    deadline: Deadline,
}

/// Why an exchange failed. `unsent`: the request, whole, when none of its
/// bytes reached the upstream (a retry on another connection is safe).
pub struct Failed {
    pub error: BoxError,
    pub unsent: Option<Request<Body>>,
}

impl Conn {
    /// Boxed: a connection moves with every response that reads from
    /// it, and between the pool and its exchanges.
    pub fn new(io: Stream) -> Box<Conn> {
        Box::new(Conn {
            io,
            buf: BytesMut::new(),
            head: Vec::new(),
            spans: Vec::new(),
            read_size: MIN_READ,
            deadline: Deadline::default(),
        })
    }

    /// Whether an idle connection may carry a request: still open, and
    /// nothing unasked for arrived on it.
    pub fn idle_ok(&mut self) -> bool {
        self.buf.is_empty() && self.io.idle_ok()
    }

    /// Reads more into `buf`; `Ok(0)` at the upstream's end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        poll_fill(
            &mut self.io,
            &mut self.buf,
            &mut self.read_size,
            MAX_READ,
            cx,
        )
    }
}

/// How the request body is framed on the wire.
#[derive(Clone, Copy)]
enum Encoding {
    /// Exactly this many bytes remain to send.
    Length(u64),
    Chunked,
}

/// Writes the head of `req`, with the `forwarded` headers in place of the
/// client's of the same names, into `out`, and says how its body goes
/// (`None`: no body is sent).
fn encode_head(
    req: &Request<Body>,
    forwarded: Option<&Forwarded<'_>>,
    out: &mut Vec<u8>,
) -> Option<Encoding> {
    let headers = req.headers();
    let method = req.method();
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let body = req.body();
    let declared = if body.is_end_stream() {
        None
    } else {
        content_length(headers)
    };
    let encoding = if body.is_end_stream() {
        None
    } else if let Some(Ok(n)) = declared {
        Some(Encoding::Length(n))
    } else if let Some(n) = body.size_hint().exact() {
        Some(Encoding::Length(n))
    } else if matches!(*method, Method::GET | Method::HEAD | Method::CONNECT) {
        None
    } else {
        Some(Encoding::Chunked)
    };
    let replaced = forwarded.map_or(0, Forwarded::replaced);
    for (name, value) in headers {
        // Our framing replaces whatever the head said of it.
        if name == header::TRANSFER_ENCODING
            || (name == header::CONTENT_LENGTH && matches!(encoding, Some(Encoding::Chunked)))
            || (replaced != 0 && Forwarded::replaces(replaced, name))
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(f) = forwarded {
        f.write_to(out);
    }
    match encoding {
        Some(Encoding::Chunked) => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Some(Encoding::Length(n)) if declared.is_none() => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        _ => {}
    }
    out.extend_from_slice(b"\r\n");
    encoding
}

/// The Content-Length of a head: `None` when absent, an error when its
/// values are not one same number.
fn content_length(headers: &HeaderMap) -> Option<Result<u64, ()>> {
    let mut found = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        found = Some(add_length(found, value.as_bytes()));
    }
    found
}

/// The request body on its way to the upstream.
struct Sending {
    body: Body,
    encoding: Encoding,
    /// Bytes framed and not yet written.
    out: VecDeque<Bytes>,
    /// The body (and its framing's end) is all in `out`.
    last: bool,
}

impl Sending {
    /// Writes the body on; ready once all of it was written and flushed.
    fn poll_pump(&mut self, io: &mut Stream, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        loop {
            while !self.out.is_empty() {
                let mut slices = [IoSlice::new(&[]); 4];
                let n = self.out.len().min(slices.len());
                for (slice, bytes) in slices.iter_mut().zip(self.out.iter()) {
                    *slice = IoSlice::new(bytes);
                }
                let mut written = ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n]))?;
                if written == 0 {
                    return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero).into()));
                }
                while written > 0 {
                    let Some(front) = self.out.front_mut() else {
                        break;
                    };
                    let k = written.min(front.len());
                    front.advance(k);
                    written -= k;
                    if front.is_empty() {
                        self.out.pop_front();
                    }
                }
            }
            if self.last {
                ready!(Pin::new(&mut *io).poll_flush(cx))?;
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                None => self.end(None)?,
                Some(Err(e)) => return Poll::Ready(Err(e)),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        self.data(data)?;
                        if self.body.is_end_stream() {
                            self.end(None)?;
                        }
                    }
                    Err(frame) => self.end(frame.into_trailers().ok())?,
                },
            }
        }
    }

    fn data(&mut self, data: Bytes) -> Result<(), BoxError> {
        if data.is_empty() {
            return Ok(());
        }
        match &mut self.encoding {
            Encoding::Length(rest) => {
                if data.len() as u64 > *rest {
                    return Err("request body longer than its content-length".into());
                }
                *rest -= data.len() as u64;
                self.out.push_back(data);
            }
            Encoding::Chunked => {
                self.out
                    .push_back(Bytes::from(format!("{:x}\r\n", data.len())));
                self.out.push_back(data);
                self.out.push_back(Bytes::from_static(b"\r\n"));
            }
        }
        Ok(())
    }

    fn end(&mut self, trailers: Option<HeaderMap>) -> Result<(), BoxError> {
        match self.encoding {
            Encoding::Length(0) => {}
            Encoding::Length(_) => {
                return Err("request body shorter than its content-length".into());
            }
            Encoding::Chunked => match trailers {
                Some(t) if !t.is_empty() => {
                    let mut end = b"0\r\n".to_vec();
                    for (name, value) in &t {
                        end.extend_from_slice(name.as_str().as_bytes());
                        end.extend_from_slice(b": ");
                        end.extend_from_slice(value.as_bytes());
                        end.extend_from_slice(b"\r\n");
                    }
                    end.extend_from_slice(b"\r\n");
                    self.out.push_back(Bytes::from(end));
                }
                _ => self.out.push_back(Bytes::from_static(b"0\r\n\r\n")),
            },
        }
        self.last = true;
        Ok(())
    }
}

/// A parsed response head: its fields in a map, or left as they came
/// (`raw`, the map empty).
struct Head {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    raw: Option<RawFields>,
    framing: Facts,
}

/// Parses a response head off the front of `buf` (`None`: incomplete).
/// `spans` is scratch space, kept by the connection to reuse. With
/// `pass_fields`, the fields are left unbuilt where they can be (not in
/// a 101, nor when `Connection` names fields to remove).
fn parse_head(
    buf: &mut BytesMut,
    spans: &mut Vec<[usize; 4]>,
    pass_fields: bool,
) -> Result<Option<Head>, Malformed> {
    // Offsets of names and values, so that the head's bytes can be frozen
    // once and shared by the header values.
    let (len, code, minor) = {
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut resp,
            buf,
            &mut fields,
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => {
                if buf.len() > MAX_HEAD {
                    return Err(Malformed("head too large"));
                }
                return Ok(None);
            }
            Err(httparse::Error::TooManyHeaders) => return Err(Malformed("too many headers")),
            Err(_) => return Err(Malformed("malformed head")),
        };
        if !field_spans(&buf[..len], resp.headers, spans) {
            return Err(Malformed("malformed head"));
        }
        (len, resp.code.unwrap_or(0), resp.version.unwrap_or(0))
    };
    let head = buf.split_to(len).freeze();
    let status = StatusCode::from_u16(code).map_err(|_| Malformed("bad status"))?;
    let raw = if pass_fields && status != StatusCode::SWITCHING_PROTOCOLS {
        raw_fields(&head, spans, passthrough::left_out)
    } else {
        None
    };
    let (headers, raw, facts) = match raw {
        Some((raw, facts)) => (HeaderMap::new(), Some(raw), facts),
        None => {
            // Room for what the pipeline adds (Via, the latency headers, a
            // plugin's few) without growing the map.
            let (headers, facts) =
                header_map(&head, spans, 6, Hops::DropPersistence).map_err(Malformed)?;
            (headers, None, facts)
        }
    };
    let version = if minor == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    Ok(Some(Head {
        status,
        version,
        headers,
        raw,
        framing: facts,
    }))
}

/// The body's framing and whether the connection may be kept after it.
fn framing(head: &Head, method: &Method) -> Result<(Framing, bool), Malformed> {
    let facts = &head.framing;
    let mut keep = head.version == Version::HTTP_11 && !facts.close;
    let status = head.status;
    if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((Framing::Done, keep));
    }
    if let Some(chunked) = facts.chunked {
        if facts.length.is_some() {
            // Both: chunked wins, and the connection is not trusted after.
            keep = false;
        }
        return Ok(if chunked {
            (Framing::Chunked(Chunk::Size), keep)
        } else {
            (Framing::Close, false)
        });
    }
    match facts.length {
        Some(Ok(n)) => Ok((Framing::Length(n), keep)),
        Some(Err(())) => Err(Malformed("bad content-length")),
        None => Ok((Framing::Close, false)),
    }
}

/// Sends `req` on `conn` and reads the response head, which must come by
/// `deadline` (else an error of kind `TimedOut`); the response body reads
/// on from the same connection, which `back` takes back if it is fit for
/// another request once the body is over. With `pass_fields`, the
/// response's fields are left unbuilt where they can be: the map is
/// empty and the body hands them over (`UpstreamBody::take_fields`).
pub async fn exchange(
    mut conn: Box<Conn>,
    req: Request<Body>,
    forwarded: Option<&Forwarded<'_>>,
    back: Back,
    deadline: Instant,
    pass_fields: bool,
) -> Result<Response<UpstreamBody>, Failed> {
    conn.deadline.set(deadline);
    let mut head = std::mem::take(&mut conn.head);
    let encoding = encode_head(&req, forwarded, &mut head);
    // The first write decides whether anything reached the upstream.
    let mut written = 0;
    while written < head.len() {
        let polled = poll_fn(|cx| Pin::new(&mut conn.io).poll_write(cx, &head[written..])).await;
        match polled {
            Ok(n) if n > 0 => written += n,
            other => {
                let e = other
                    .err()
                    .unwrap_or_else(|| io::ErrorKind::WriteZero.into());
                if written == 0 {
                    return Err(Failed {
                        error: Box::new(e),
                        unsent: Some(req),
                    });
                }
                return Err(sent_failure(e));
            }
        }
    }
    conn.head = head;
    let method = req.method().clone();
    let mut sending = encoding.map(|encoding| Sending {
        body: req.into_body(),
        encoding,
        out: VecDeque::new(),
        last: false,
    });
    if sending.is_none() {
        if let Err(e) = poll_fn(|cx| Pin::new(&mut conn.io).poll_flush(cx)).await {
            return Err(sent_failure(e));
        }
    }
    let head = poll_fn(|cx| poll_head(&mut conn, &mut sending, pass_fields, cx))
        .await
        .map_err(|error| Failed {
            error,
            unsent: None,
        })?;
    let switching = head.status == StatusCode::SWITCHING_PROTOCOLS;
    let (framing, keep) = if switching {
        (Framing::Done, false)
    } else {
        framing(&head, &method).map_err(|e| Failed {
            error: Box::new(e),
            unsent: None,
        })?
    };
    let mut resp = Response::new(UpstreamBody {
        conn: Some(conn),
        sending,
        framing,
        keep,
        back: Some(back),
        upgrade: switching,
        fields: head.raw,
    });
    *resp.status_mut() = head.status;
    *resp.version_mut() = head.version;
    *resp.headers_mut() = head.headers;
    if !switching && resp.body().framing.is_done() {
        resp.body_mut().finish();
    }
    Ok(resp)
}

fn sent_failure(e: io::Error) -> Failed {
    Failed {
        error: Box::new(e),
        unsent: None,
    }
}

/// Pumps the request body while waiting for the final response head.
fn poll_head(
    conn: &mut Conn,
    sending: &mut Option<Sending>,
    pass_fields: bool,
    cx: &mut Context<'_>,
) -> Poll<Result<Head, BoxError>> {
    let mut fresh = !conn.buf.is_empty();
    loop {
        if let Some(s) = sending {
            if let Poll::Ready(done) = s.poll_pump(&mut conn.io, cx) {
                done?;
                *sending = None;
            }
        }
        if fresh {
            if let Some(head) = parse_head(&mut conn.buf, &mut conn.spans, pass_fields)? {
                // 100 Continue, 102, 103: not the answer; 101 is.
                if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS
                {
                    continue;
                }
                return Poll::Ready(Ok(head));
            }
        }
        let filled = match conn.poll_fill(cx) {
            Poll::Ready(filled) => filled,
            Poll::Pending => {
                ready!(conn.deadline.poll(cx));
                return Poll::Ready(Err(Box::new(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "upstream read timeout",
                ))));
            }
        };
        match filled {
            Ok(0) => return Poll::Ready(Err(Box::new(Malformed("closed before answering")))),
            Ok(_) => fresh = true,
            Err(e) => return Poll::Ready(Err(Box::new(e))),
        }
    }
}

/// The upstream's response body, read from its connection as the client
/// side polls it.
pub struct UpstreamBody {
    /// `None` once the body is over (the connection went back or closed).
    conn: Option<Box<Conn>>,
    /// The request body, while it is still being sent.
    sending: Option<Sending>,
    framing: Framing,
    /// The upstream allows another request on the connection.
    keep: bool,
    back: Option<Back>,
    /// A 101: the connection belongs to the upgrade.
    upgrade: bool,
    /// The response head's fields, when left unbuilt.
    fields: Option<RawFields>,
}

impl UpstreamBody {
    /// The body is over: the connection goes back to the pool if it is
    /// fit for another request, else it closes.
    fn finish(&mut self) {
        self.framing = Framing::Done;
        let Some(conn) = self.conn.take() else {
            return;
        };
        if self.keep && self.sending.is_none() && conn.buf.is_empty() {
            if let Some(back) = self.back.take() {
                back.put(conn);
            }
        }
    }

    /// The response head's fields, when `exchange` was asked to leave
    /// them out of the map and could.
    pub fn take_fields(&mut self) -> Option<RawFields> {
        self.fields.take()
    }

    /// After a 101: the upstream connection, for the tunnel.
    pub fn take_upgrade(&mut self) -> Option<Upgraded> {
        if !self.upgrade {
            return None;
        }
        self.upgrade = false;
        self.conn.take().map(|conn| Upgraded { conn })
    }

    fn fail(&mut self, e: BoxError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        self.sending = None;
        self.framing = Framing::Done;
        Poll::Ready(Some(Err(e)))
    }
}

impl HttpBody for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.upgrade || this.conn.is_none() {
            return Poll::Ready(None);
        }
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            if let Some(s) = &mut this.sending {
                if let Poll::Ready(done) = s.poll_pump(&mut conn.io, cx) {
                    if let Err(e) = done {
                        return this.fail(e);
                    }
                    this.sending = None;
                }
            }
            match this.framing.step(&mut conn.buf) {
                Err(e) => return this.fail(Box::new(e)),
                Ok(Step::Data(data)) => {
                    if this.framing.is_done() {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Step::Trailers(t)) => {
                    this.finish();
                    return Poll::Ready(Some(Ok(Frame::trailers(t))));
                }
                Ok(Step::End) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Step::More) => match ready!(conn.poll_fill(cx)) {
                    Ok(0) if this.framing == Framing::Close => {
                        this.keep = false;
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(0) => {
                        return this.fail(Box::new(Malformed("closed in the middle of the body")))
                    }
                    Ok(_) => {}
                    Err(e) => return this.fail(Box::new(e)),
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || self.upgrade || self.framing.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            Framing::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// An upstream connection switched to another protocol: the bytes that
/// came after the 101 first, then the socket.
pub struct Upgraded {
    conn: Box<Conn>,
}

impl AsyncRead for Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let conn = &mut self.get_mut().conn;
        if !conn.buf.is_empty() {
            let n = conn.buf.len().min(buf.remaining());
            buf.put_slice(&conn.buf[..n]);
            conn.buf.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut conn.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().conn.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().conn.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().conn.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderName, HeaderValue};
    use http_body_util::BodyExt;

    fn request(method: Method, headers: &[(&str, &str)], body: Body) -> Request<Body> {
        let mut req = Request::new(body);
        *req.method_mut() = method;
        *req.uri_mut() = "/p?q=1".parse().unwrap();
        for (k, v) in headers {
            req.headers_mut().append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        req
    }

    fn full(b: &'static str) -> Body {
        http_body_util::Full::new(Bytes::from_static(b.as_bytes()))
            .map_err(|n| match n {})
            .boxed()
    }

    #[test]
    fn request_heads_are_framed_as_hyper_frames_them() {
        let mut out = Vec::new();
        let e = encode_head(
            &request(Method::GET, &[("host", "u")], crate::plugins::empty_body()),
            None,
            &mut out,
        );
        assert!(e.is_none());
        assert_eq!(out, b"GET /p?q=1 HTTP/1.1\r\nhost: u\r\n\r\n");
        let e = encode_head(
            &request(Method::POST, &[("host", "u")], full("abc")),
            None,
            &mut out,
        );
        assert!(matches!(e, Some(Encoding::Length(3))));
        assert_eq!(
            out,
            b"POST /p?q=1 HTTP/1.1\r\nhost: u\r\ncontent-length: 3\r\n\r\n"
        );
        let e = encode_head(
            &request(Method::POST, &[("content-length", "3")], full("abc")),
            None,
            &mut out,
        );
        assert!(matches!(e, Some(Encoding::Length(3))));
        assert_eq!(out, b"POST /p?q=1 HTTP/1.1\r\ncontent-length: 3\r\n\r\n");
    }

    #[test]
    fn response_heads_parse_and_frame() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello"[..],
        );
        let head = parse_head(&mut buf, &mut Vec::new(), false)
            .unwrap()
            .unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.headers.get_all("x-a").iter().count(), 2);
        assert_eq!(&buf[..], b"hello");
        assert_eq!(
            framing(&head, &Method::GET).unwrap(),
            (Framing::Length(5), true)
        );
        assert_eq!(
            framing(&head, &Method::HEAD).unwrap(),
            (Framing::Done, true)
        );

        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"[..],
        );
        let head = parse_head(&mut buf, &mut Vec::new(), false)
            .unwrap()
            .unwrap();
        assert!(framing(&head, &Method::GET).is_err());

        let mut buf = BytesMut::from(&b"HTTP/1.0 200 OK\r\n\r\n"[..]);
        let head = parse_head(&mut buf, &mut Vec::new(), false)
            .unwrap()
            .unwrap();
        assert_eq!(
            framing(&head, &Method::GET).unwrap(),
            (Framing::Close, false)
        );

        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"[..],
        );
        let head = parse_head(&mut buf, &mut Vec::new(), false)
            .unwrap()
            .unwrap();
        assert_eq!(
            framing(&head, &Method::GET).unwrap(),
            (Framing::Chunked(Chunk::Size), false)
        );

        let mut buf = BytesMut::from(&b"HTTP/1.1 204 No Content\r\nx-empty:\r\nx-b: 1\r\n\r\n"[..]);
        let head = parse_head(&mut buf, &mut Vec::new(), false)
            .unwrap()
            .unwrap();
        assert_eq!(head.headers["x-empty"], "");
        assert_eq!(head.headers["x-b"], "1");

        let mut partial = BytesMut::from(&b"HTTP/1.1 200 OK\r\nx: y\r\n"[..]);
        assert!(parse_head(&mut partial, &mut Vec::new(), false)
            .unwrap()
            .is_none());
        for bad in [
            &b"HTTP/1.1 20 OK\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nx y\r\n\r\n",
            b"garbage\r\n\r\n",
        ] {
            assert!(parse_head(&mut BytesMut::from(bad), &mut Vec::new(), false).is_err());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_parsers() {
        // A small xorshift; inputs made of the bytes that matter most.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet = b"HTTP/1.1 200 OK\r\n:;,0123456789abcdefxyz \t\x00\xff";
        for _ in 0..20_000 {
            let len = (next() % 80) as usize;
            let mut input: Vec<u8> = b"HTTP/1.1 200 OK\r\n".to_vec();
            input.extend((0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]));
            let mut buf = BytesMut::from(&input[..]);
            if let Ok(Some(head)) = parse_head(&mut buf, &mut Vec::new(), false) {
                let _ = framing(&head, &Method::GET);
            }
            let mut buf = BytesMut::from(&input[17..]);
            for start in [
                Framing::Chunked(Chunk::Size),
                Framing::Length(7),
                Framing::Close,
            ] {
                let mut f = start;
                let mut b = buf.clone();
                for _ in 0..100 {
                    match f.step(&mut b) {
                        Ok(Step::Data(_)) | Ok(Step::Trailers(_)) => {}
                        _ => break,
                    }
                }
            }
            buf.clear();
        }
    }

    #[tokio::test]
    async fn chunked_request_bodies_carry_their_trailers() {
        let (tx, rx) = futures::channel::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
        let body: Body = http_body_util::StreamBody::new(rx).boxed();
        let mut s = Sending {
            body,
            encoding: Encoding::Chunked,
            out: VecDeque::new(),
            last: false,
        };
        let mut tx = tx;
        use futures::SinkExt;
        tx.send(Ok(Frame::data(Bytes::from_static(b"hello"))))
            .await
            .unwrap();
        let mut t = HeaderMap::new();
        t.insert("x-sum", HeaderValue::from_static("7"));
        tx.send(Ok(Frame::trailers(t))).await.unwrap();
        drop(tx);
        // Drain the frames without a socket.
        while !s.last {
            match poll_fn(|cx| Pin::new(&mut s.body).poll_frame(cx)).await {
                None => s.end(None).unwrap(),
                Some(Ok(f)) => match f.into_data() {
                    Ok(d) => s.data(d).unwrap(),
                    Err(f) => s.end(f.into_trailers().ok()).unwrap(),
                },
                Some(Err(e)) => panic!("{e}"),
            }
        }
        let wire: Vec<u8> = s.out.iter().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(wire, b"5\r\nhello\r\n0\r\nx-sum: 7\r\n\r\n");
    }
}
