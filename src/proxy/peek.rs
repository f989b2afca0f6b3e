//! Reading a request body ahead of the access phase, for the plugins that
//! look into it (`Plugin::wants_body`, e.g. key-auth's `key_in_body`), and
//! putting what was read back in front of the rest, so the upstream gets
//! the body whole (or as a plugin replaced it).
//!
//! At most `PEEK_LIMIT` bytes are held per request; a longer body is
//! marked incomplete and its remainder streams on after those bytes.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;

use super::errors;
use crate::plugins::{Body, BoxError, PeekedBody, Reply};

/// Most bytes of one request body read ahead (the transformers' bound).
pub const PEEK_LIMIT: usize = crate::plugins::request_transformer::BODY_LIMIT;

/// Longest wait for the client's next piece of body (nginx's
/// `client_body_timeout`).
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Reads `body` until it ends or `limit` bytes were read. Returns what was
/// read and the body still to come (trailers included). A client that
/// stalls gets Kong's 408, a broken body 400.
pub async fn peek(mut body: Body, limit: usize) -> Result<(PeekedBody, Body), Reply> {
    let mut buf = BytesMut::new();
    loop {
        if buf.len() >= limit {
            let peeked = PeekedBody {
                bytes: buf.freeze(),
                complete: false,
                modified: false,
            };
            return Ok((peeked, body));
        }
        let frame = match tokio::time::timeout(READ_TIMEOUT, body.frame()).await {
            Err(_) => {
                return Err(Reply::message(
                    StatusCode::REQUEST_TIMEOUT,
                    "Request timeout",
                ))
            }
            Ok(Some(Err(_))) => {
                return Err(Reply::message(StatusCode::BAD_REQUEST, errors::BAD_REQUEST))
            }
            Ok(None) => break,
            Ok(Some(Ok(frame))) => frame,
        };
        match frame.into_data() {
            Ok(data) => buf.extend_from_slice(&data),
            // Trailers end the body: keep them for the upstream.
            Err(frame) => {
                let peeked = PeekedBody {
                    bytes: buf.freeze(),
                    complete: true,
                    modified: false,
                };
                let trailers = Prefixed {
                    head: None,
                    trailers: frame.into_trailers().ok(),
                    rest: None,
                };
                return Ok((peeked, trailers.boxed()));
            }
        }
    }
    let peeked = PeekedBody {
        bytes: buf.freeze(),
        complete: true,
        modified: false,
    };
    Ok((peeked, errors::full(Bytes::new())))
}

/// The body to send upstream: the bytes read ahead (or their
/// replacement), then the rest. A replaced body's length goes in
/// `Content-Length` when the client had sent one.
pub fn resume(peeked: PeekedBody, rest: Body, headers: &mut HeaderMap) -> Body {
    if peeked.modified && headers.contains_key(header::CONTENT_LENGTH) {
        headers.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(peeked.bytes.len()),
        );
    }
    Prefixed {
        head: (!peeked.bytes.is_empty()).then_some(peeked.bytes),
        trailers: None,
        rest: Some(rest),
    }
    .boxed()
}

/// `head`, then `rest`'s frames (or `trailers`).
struct Prefixed {
    head: Option<Bytes>,
    trailers: Option<HeaderMap>,
    rest: Option<Body>,
}

impl HttpBody for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(head) = self.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        if let Some(trailers) = self.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none()
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let head = self.head.as_ref().map_or(0, |h| h.len() as u64);
        let rest = self
            .rest
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |r| r.size_hint());
        // Upper first: `set_lower` asserts lower <= upper.
        let mut hint = SizeHint::new();
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(head));
        }
        hint.set_lower(rest.lower().saturating_add(head));
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    fn chunks(parts: &[&'static [u8]]) -> Body {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p))))
            .collect();
        StreamBody::new(futures::stream::iter(frames)).boxed()
    }

    async fn all(body: Body) -> Bytes {
        body.collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn a_short_body_is_read_whole_and_sent_on_unchanged() {
        let (peeked, rest) = peek(chunks(&[b"ab", b"cd"]), 100).await.unwrap();
        assert!(peeked.complete);
        assert_eq!(&peeked.bytes[..], b"abcd");
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(4));
        let body = resume(peeked, rest, &mut headers);
        assert_eq!(body.size_hint().exact(), Some(4));
        assert_eq!(&all(body).await[..], b"abcd");
        assert_eq!(headers[header::CONTENT_LENGTH], "4");
    }

    #[tokio::test]
    async fn a_long_body_streams_on_after_the_bytes_read() {
        let (peeked, rest) = peek(chunks(&[b"0123", b"4567", b"89"]), 5).await.unwrap();
        assert!(!peeked.complete);
        assert_eq!(&peeked.bytes[..], b"01234567");
        let mut headers = HeaderMap::new();
        let mut replaced = peeked.clone();
        replaced.replace(Bytes::from_static(b"x"));
        assert!(!replaced.modified, "an incomplete body is never replaced");
        let body = resume(peeked, rest, &mut headers);
        assert_eq!(&all(body).await[..], b"0123456789");
    }

    #[tokio::test]
    async fn a_replaced_body_gets_its_length() {
        let full: Body = Full::new(Bytes::from_static(b"apikey=k&a=1"))
            .map_err(|n| match n {})
            .boxed();
        let (mut peeked, rest) = peek(full, 100).await.unwrap();
        peeked.replace(Bytes::from_static(b"a=1"));
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(12));
        let body = resume(peeked, rest, &mut headers);
        assert_eq!(headers[header::CONTENT_LENGTH], "3");
        assert_eq!(&all(body).await[..], b"a=1");
    }

    #[tokio::test]
    async fn trailers_reach_the_upstream() {
        let mut t = HeaderMap::new();
        t.insert("x-sum", HeaderValue::from_static("1"));
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::from_static(b"ab"))),
            Ok(Frame::trailers(t)),
        ];
        let body = StreamBody::new(futures::stream::iter(frames)).boxed();
        let (peeked, rest) = peek(body, 100).await.unwrap();
        assert!(peeked.complete);
        let collected = resume(peeked, rest, &mut HeaderMap::new())
            .collect()
            .await
            .unwrap();
        assert_eq!(
            collected.trailers().map(|t| t["x-sum"].clone()),
            Some(HeaderValue::from_static("1"))
        );
        assert_eq!(&collected.to_bytes()[..], b"ab");
    }

    #[tokio::test]
    async fn an_empty_body_costs_nothing() {
        let (peeked, rest) = peek(errors::full(Bytes::new()), 100).await.unwrap();
        assert!(peeked.complete && peeked.bytes.is_empty());
        let body = resume(peeked, rest, &mut HeaderMap::new());
        assert!(body.is_end_stream());
    }
}
