//! A watch on the framing of what an HTTP/1.1 client sends: it follows the
//! message boundaries of the bytes as they are read (request heads,
//! Content-Length and chunked bodies) to notice a request head that carries
//! both Content-Length and Transfer-Encoding. hyper accepts such a request
//! (chunked wins, RFC 9112 §6.3, and the connection closes after it) and
//! drops the length before we could see it; the gateway answers it 400
//! instead, as §6.1 allows a proxy to: it is the shape of request smuggling.
//!
//! The watch only reads along. It stops following a connection once the
//! bytes stop being HTTP/1.1 requests it can frame (HTTP/2's preface,
//! CONNECT, an upgrade, anything malformed, which hyper answers itself).

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The first bytes of a line are all the watch needs.
const LINE: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    RequestLine,
    Headers,
    Fixed(u64),
    ChunkSize,
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    Trailers,
    Off,
}

/// Follows the request stream of one connection.
#[derive(Debug)]
pub struct Scanner {
    state: State,
    line: [u8; LINE],
    len: usize,
    /// The line was longer than `LINE`.
    long: bool,
    /// Request heads seen so far.
    heads: usize,
    content_length: Option<u64>,
    te: bool,
    chunked: bool,
    upgrade: bool,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            state: State::RequestLine,
            line: [0; LINE],
            len: 0,
            long: false,
            heads: 0,
            content_length: None,
            te: false,
            chunked: false,
            upgrade: false,
        }
    }
}

impl Scanner {
    /// Reads `buf` along; the number (counted from 1) of a request head
    /// that carried both Content-Length and Transfer-Encoding, if one ended
    /// in it. The watch stops there: hyper closes the connection after it.
    pub fn feed(&mut self, mut buf: &[u8]) -> Option<usize> {
        while !buf.is_empty() {
            match self.state {
                State::Off => return None,
                State::Fixed(n) | State::ChunkData(n) => {
                    let k = (buf.len() as u64).min(n);
                    buf = &buf[k as usize..];
                    let left = n - k;
                    self.state = match (self.state, left) {
                        (State::Fixed(_), 0) => State::RequestLine,
                        (State::Fixed(_), _) => State::Fixed(left),
                        (_, 0) => State::ChunkEnd,
                        _ => State::ChunkData(left),
                    };
                }
                _ => match memchr::memchr(b'\n', buf) {
                    None => {
                        self.keep(buf);
                        return None;
                    }
                    Some(i) => {
                        self.keep(&buf[..i]);
                        buf = &buf[i + 1..];
                        let found = self.end_of_line();
                        self.len = 0;
                        self.long = false;
                        if found.is_some() {
                            return found;
                        }
                    }
                },
            }
        }
        None
    }

    fn keep(&mut self, bytes: &[u8]) {
        let room = LINE - self.len;
        let n = bytes.len().min(room);
        self.line[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
        self.long |= bytes.len() > room;
    }

    fn end_of_line(&mut self) -> Option<usize> {
        let held = self.line;
        let mut line = &held[..self.len];
        if let [rest @ .., b'\r'] = line {
            if !self.long {
                line = rest;
            }
        }
        let empty = line.is_empty() && !self.long;
        match self.state {
            // Empty lines before a request line are allowed (RFC 9112 §2.2).
            State::RequestLine if empty => {}
            State::RequestLine => {
                if line.starts_with(b"PRI ") || line.starts_with(b"CONNECT ") {
                    self.state = State::Off;
                } else {
                    self.heads += 1;
                    self.content_length = None;
                    self.te = false;
                    self.chunked = false;
                    self.upgrade = false;
                    self.state = State::Headers;
                }
            }
            State::Headers if empty => return self.end_of_head(),
            State::Headers => self.header(line),
            State::ChunkSize => {
                let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
                let size = std::str::from_utf8(&line[..digits])
                    .ok()
                    .and_then(|h| u64::from_str_radix(h, 16).ok());
                self.state = match size {
                    Some(0) => State::Trailers,
                    Some(n) => State::ChunkData(n),
                    None => State::Off,
                };
            }
            State::ChunkEnd if empty => self.state = State::ChunkSize,
            State::ChunkEnd => self.state = State::Off,
            State::Trailers if empty => self.state = State::RequestLine,
            State::Trailers => {}
            State::Fixed(_) | State::ChunkData(_) | State::Off => {}
        }
        None
    }

    fn header(&mut self, line: &[u8]) {
        let Some(colon) = memchr::memchr(b':', line) else {
            // A line folded onto the previous one, or one too long to hold
            // its name: neither is one of ours unless it is.
            if self.long && !line.starts_with(b" ") && !line.starts_with(b"\t") {
                return;
            }
            self.state = State::Off;
            return;
        };
        let name = &line[..colon];
        let value = line[colon + 1..].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") {
            let parsed = (!self.long)
                .then(|| std::str::from_utf8(value).ok()?.parse::<u64>().ok())
                .flatten();
            match (parsed, self.content_length) {
                (Some(n), None) => self.content_length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                // hyper refuses the request: nothing more to follow.
                _ => self.state = State::Off,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if self.long {
                self.state = State::Off;
                return;
            }
            self.te = true;
            self.chunked = value
                .rsplit(|b| *b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            self.upgrade = true;
        }
    }

    fn end_of_head(&mut self) -> Option<usize> {
        if self.te && self.content_length.is_some() {
            self.state = State::Off;
            return Some(self.heads);
        }
        self.state = if self.upgrade {
            // What follows may be another protocol.
            State::Off
        } else if self.te {
            if self.chunked {
                State::ChunkSize
            } else {
                State::Off
            }
        } else {
            match self.content_length {
                Some(n) if n > 0 => State::Fixed(n),
                _ => State::RequestLine,
            }
        };
        None
    }
}

/// A client connection read through a `Scanner`; the number of the head
/// with conflicting framing lands in `conflict`.
pub struct Watched<I> {
    io: I,
    scanner: Scanner,
    conflict: Arc<AtomicUsize>,
}

impl<I> Watched<I> {
    pub fn new(io: I, conflict: Arc<AtomicUsize>) -> Watched<I> {
        Watched {
            io,
            scanner: Scanner::default(),
            conflict,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            if this.scanner.state != State::Off {
                if let Some(n) = this.scanner.feed(&buf.filled()[before..]) {
                    this.conflict.store(n, Ordering::Relaxed);
                }
            }
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of every size; the conflicts found.
    fn conflicts(input: &[u8]) -> Vec<Option<usize>> {
        (1..=input.len().min(70))
            .map(|step| {
                let mut s = Scanner::default();
                input.chunks(step).find_map(|c| s.feed(c))
            })
            .collect()
    }

    #[test]
    fn both_lengths_on_one_head_are_found() {
        let req = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n";
        assert!(conflicts(req).iter().all(|c| *c == Some(1)));
        let req = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n";
        assert!(conflicts(req).iter().all(|c| *c == Some(1)));
    }

    #[test]
    fn bodies_are_skipped_by_their_framing() {
        // Bodies that look like heads are not read as heads.
        let body = b"GET / HTTP/1.1\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n";
        let mut input =
            format!("POST / HTTP/1.1\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
        input.extend_from_slice(body);
        input.extend_from_slice(b"POST /c HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n");
        input.extend_from_slice(format!("{:x};ext=1\r\n", body.len()).as_bytes());
        input.extend_from_slice(body);
        input.extend_from_slice(b"\r\n0\r\nx-trailer: 1\r\n\r\n");
        input.extend_from_slice(b"GET /last HTTP/1.1\r\nhost: x\r\n\r\n");
        assert!(conflicts(&input).iter().all(|c| c.is_none()));
        // The third request is the one with both.
        input.extend_from_slice(
            b"POST / HTTP/1.1\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
        );
        assert!(conflicts(&input).iter().all(|c| *c == Some(4)));
    }

    #[test]
    fn other_protocols_and_long_lines_stop_or_pass() {
        assert!(conflicts(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n")
            .iter()
            .all(|c| c.is_none()));
        let long = format!(
            "GET / HTTP/1.1\r\nx-long: {}\r\ncookie: {}\r\n\r\n",
            "a".repeat(300),
            "b".repeat(100)
        );
        let mut s = Scanner::default();
        assert_eq!(s.feed(long.as_bytes()), None);
        assert_eq!(s.state, State::RequestLine);
        assert_eq!(s.heads, 1);
    }
}
