//! The framing of an HTTP/1.1 message body (RFC 9112 §6.3), as a decoder
//! over the bytes read so far: a known length, chunked (with chunk
//! extensions ignored and trailers passed on as a trailers frame), read
//! until the peer closes, or no body at all (a response to HEAD, 1xx, 204,
//! 304; a request without either length header). It never reads itself:
//! `h1::exchange` feeds it from the upstream socket (response bodies),
//! `h1incoming` from the client's (request bodies).
//!
//! Malformed framing (a bad chunk size, a chunk not followed by CRLF,
//! oversized chunk lines or trailers) is an error, never a panic.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Longest chunk-size line (size, extensions, CRLF) accepted.
const MAX_CHUNK_LINE: usize = 4096;
/// Largest trailer section accepted.
const MAX_TRAILERS: usize = 64 * 1024;
/// Most trailer fields parsed.
const MAX_TRAILER_FIELDS: usize = 64;

/// How the body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 1xx, 204, 304) or a body already read.
    Done,
    /// This many bytes remain.
    Length(u64),
    Chunked(Chunk),
    /// Until the upstream closes the connection.
    Close,
}

/// Where a chunked decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk: this many data bytes remain.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last chunk: trailers, then the final CRLF.
    Trailers,
}

/// What the next bytes of the body decode to.
#[derive(Debug)]
pub enum Step {
    Data(Bytes),
    Trailers(HeaderMap),
    /// The body is over.
    End,
    /// More bytes must be read first.
    More,
}

/// What was wrong with a message (head or body framing), or how it ended
/// too early.
#[derive(Debug)]
pub struct Malformed(pub &'static str);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed HTTP/1.1 message: {}", self.0)
    }
}

impl std::error::Error for Malformed {}

impl Framing {
    /// Decodes what `buf` holds; consumes what it returns.
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, Malformed> {
        loop {
            match self {
                Framing::Done => return Ok(Step::End),
                Framing::Length(0) => {
                    *self = Framing::Done;
                    return Ok(Step::End);
                }
                Framing::Length(rest) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let n = (*rest).min(buf.len() as u64);
                    *rest -= n;
                    let data = buf.split_to(n as usize).freeze();
                    if *rest == 0 {
                        *self = Framing::Done;
                    }
                    return Ok(Step::Data(data));
                }
                Framing::Close => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    return Ok(Step::Data(buf.split().freeze()));
                }
                Framing::Chunked(chunk) => match chunk {
                    Chunk::Size => {
                        let Some(eol) = memchr::memchr(b'\n', buf) else {
                            if buf.len() > MAX_CHUNK_LINE {
                                return Err(Malformed("chunk size line too long"));
                            }
                            return Ok(Step::More);
                        };
                        if eol > MAX_CHUNK_LINE {
                            return Err(Malformed("chunk size line too long"));
                        }
                        let size = chunk_size(&buf[..eol])?;
                        buf.advance(eol + 1);
                        *chunk = if size == 0 {
                            Chunk::Trailers
                        } else {
                            Chunk::Data(size)
                        };
                    }
                    Chunk::Data(rest) => {
                        if buf.is_empty() {
                            return Ok(Step::More);
                        }
                        let n = (*rest).min(buf.len() as u64);
                        *rest -= n;
                        if *rest == 0 {
                            *chunk = Chunk::DataEnd;
                        }
                        return Ok(Step::Data(buf.split_to(n as usize).freeze()));
                    }
                    Chunk::DataEnd => {
                        if buf.len() < 2 {
                            return Ok(Step::More);
                        }
                        if &buf[..2] != b"\r\n" {
                            return Err(Malformed("chunk data not followed by CRLF"));
                        }
                        buf.advance(2);
                        *chunk = Chunk::Size;
                    }
                    Chunk::Trailers => {
                        if buf.len() >= 2 && &buf[..2] == b"\r\n" {
                            buf.advance(2);
                            *self = Framing::Done;
                            return Ok(Step::End);
                        }
                        let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
                            if buf.len() > MAX_TRAILERS {
                                return Err(Malformed("trailers too large"));
                            }
                            return Ok(Step::More);
                        };
                        let section = buf.split_to(end + 4).freeze();
                        *self = Framing::Done;
                        return Ok(Step::Trailers(trailers(&section)?));
                    }
                },
            }
        }
    }

    /// Whether nothing more will come.
    pub fn is_done(&self) -> bool {
        matches!(self, Framing::Done | Framing::Length(0))
    }
}

/// A chunk-size line without its LF: hex digits, then optional
/// whitespace and `;extensions`, then CR.
fn chunk_size(line: &[u8]) -> Result<u64, Malformed> {
    let line = line
        .strip_suffix(b"\r")
        .ok_or(Malformed("chunk size line without CRLF"))?;
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(Malformed("chunk size is not hexadecimal"));
    }
    let rest = &line[digits..];
    let rest_ok = rest
        .iter()
        .position(|&b| b == b';')
        .map_or(rest, |i| &rest[..i])
        .iter()
        .all(|&b| b == b' ' || b == b'\t');
    if !rest_ok {
        return Err(Malformed("chunk size is not hexadecimal"));
    }
    let mut size: u64 = 0;
    for &b in &line[..digits] {
        let d = (b as char).to_digit(16).unwrap_or(0) as u64;
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(d))
            .ok_or(Malformed("chunk size overflows"))?;
    }
    Ok(size)
}

/// A trailer section (fields, then the empty line) into a header map.
fn trailers(section: &Bytes) -> Result<HeaderMap, Malformed> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILER_FIELDS];
    let parsed = httparse::parse_headers(section, &mut fields)
        .map_err(|_| Malformed("malformed trailers"))?;
    let httparse::Status::Complete((_, fields)) = parsed else {
        return Err(Malformed("malformed trailers"));
    };
    let mut map = HeaderMap::with_capacity(fields.len());
    for f in fields.iter() {
        let name = HeaderName::from_bytes(f.name.as_bytes())
            .map_err(|_| Malformed("malformed trailer name"))?;
        let value = HeaderValue::from_maybe_shared(section.slice_ref(f.value))
            .map_err(|_| Malformed("malformed trailer value"))?;
        map.append(name, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `piece` bytes; data and trailers.
    fn decode(mut framing: Framing, input: &[u8], piece: usize) -> (Vec<u8>, Option<HeaderMap>) {
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut trailers = None;
        let mut fed = 0;
        loop {
            match framing.step(&mut buf).unwrap() {
                Step::Data(d) => data.extend_from_slice(&d),
                Step::Trailers(t) => trailers = Some(t),
                Step::End => return (data, trailers),
                Step::More => {
                    assert!(fed < input.len(), "ran out of input");
                    let n = piece.min(input.len() - fed);
                    buf.extend_from_slice(&input[fed..fed + n]);
                    fed += n;
                }
            }
        }
    }

    #[test]
    fn chunked_with_extensions_and_trailers_in_any_pieces() {
        let input = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\ngrpc-status: 0\r\nx-t: a\r\n\r\n";
        for piece in [1, 2, 3, 7, 100] {
            let (data, trailers) = decode(Framing::Chunked(Chunk::Size), input, piece);
            assert_eq!(data, b"hello world");
            let t = trailers.expect("trailers");
            assert_eq!(t["grpc-status"], "0");
            assert_eq!(t["x-t"], "a");
        }
        let (data, trailers) = decode(
            Framing::Chunked(Chunk::Size),
            b"A\r\n0123456789\r\n0\r\n\r\n",
            4,
        );
        assert_eq!(data, b"0123456789");
        assert!(trailers.is_none());
    }

    #[test]
    fn length_stops_at_its_end() {
        let mut buf = BytesMut::from(&b"abcdefXYZ"[..]);
        let mut f = Framing::Length(6);
        assert!(matches!(f.step(&mut buf).unwrap(), Step::Data(d) if d == "abcdef"));
        assert!(f.is_done());
        assert!(matches!(f.step(&mut buf).unwrap(), Step::End));
        assert_eq!(&buf[..], b"XYZ");
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for bad in [
            &b"zz\r\nab\r\n"[..],
            b"2\r\nabXX0\r\n\r\n",
            b"2 x\r\nab\r\n",
            b"\r\n",
            b"ffffffffffffffffff\r\n",
            b"2\nab\r\n",
        ] {
            let mut buf = BytesMut::from(bad);
            let mut f = Framing::Chunked(Chunk::Size);
            let mut failed = false;
            for _ in 0..10 {
                match f.step(&mut buf) {
                    Err(_) => {
                        failed = true;
                        break;
                    }
                    Ok(Step::More) | Ok(Step::End) => break,
                    Ok(_) => {}
                }
            }
            assert!(failed, "{:?}", String::from_utf8_lossy(bad));
        }
        let mut long = BytesMut::from(&vec![b'1'; MAX_CHUNK_LINE + 10][..]);
        assert!(Framing::Chunked(Chunk::Size).step(&mut long).is_err());
    }
}
