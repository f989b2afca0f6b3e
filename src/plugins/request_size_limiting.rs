//! Kong's request-size-limiting plugin (priority 951): 413 "Request size
//! limit exceeded" when the declared or streamed body is larger than
//! `allowed_payload_size` × `size_unit`; 411 when `require_content_length`
//! is set and the request declares no length. Streaming bodies are counted
//! as they pass, never buffered.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::StatusCode;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;

use super::{Body, BodyRejected, BoxError, Plugin, Reply, RequestCtx};
use crate::model::State;

const TOO_LARGE: &str = "Request size limit exceeded";
const LENGTH_REQUIRED: &str = "A valid Content-Length header is required";

pub struct RequestSizeLimiting {
    limit: u64,
    require_content_length: bool,
}

pub fn build(config: &serde_json::Value, _state: &State) -> Result<Arc<dyn Plugin>, String> {
    let size = match config.get("allowed_payload_size") {
        None | Some(serde_json::Value::Null) => 128,
        Some(v) => v
            .as_u64()
            .ok_or("allowed_payload_size must be a non-negative integer")?,
    };
    let unit = match config.get("size_unit").and_then(|v| v.as_str()) {
        None | Some("megabytes") => 1024 * 1024,
        Some("kilobytes") => 1024,
        Some("bytes") => 1,
        Some(other) => return Err(format!("unknown size_unit {other:?}")),
    };
    let require_content_length = config
        .get("require_content_length")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    Ok(Arc::new(RequestSizeLimiting {
        limit: size.saturating_mul(unit),
        require_content_length,
    }))
}

impl Plugin for RequestSizeLimiting {
    fn access(&self, _ctx: &mut RequestCtx, req: &mut http::request::Parts) -> Option<Reply> {
        let declared = req
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        match declared {
            Some(n) if n > self.limit => {
                Some(Reply::message(StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE))
            }
            None if self.require_content_length => {
                Some(Reply::message(StatusCode::LENGTH_REQUIRED, LENGTH_REQUIRED))
            }
            _ => None,
        }
    }

    fn request_body(&self, _ctx: &RequestCtx, body: Body) -> Body {
        Limited {
            inner: body,
            left: self.limit,
        }
        .boxed()
    }
}

/// Counts the bytes that pass and fails the stream past the limit.
struct Limited {
    inner: Body,
    left: u64,
}

impl HttpBody for Limited {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                let n = data.len() as u64;
                if n > self.left {
                    self.left = 0;
                    let reply = Reply::message(StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE);
                    return Poll::Ready(Some(Err(Box::new(BodyRejected(reply)))));
                }
                self.left -= n;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use serde_json::json;

    fn parts(len: Option<&str>) -> http::request::Parts {
        let mut b = http::Request::builder();
        if let Some(l) = len {
            b = b.header("content-length", l);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn declared_length_over_limit_is_413() {
        let p = build(
            &json!({"allowed_payload_size": 10, "size_unit": "bytes"}),
            &State::default(),
        )
        .unwrap();
        let r = p
            .access(&mut RequestCtx::default(), &mut parts(Some("11")))
            .unwrap();
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(&r.body[..], br#"{"message":"Request size limit exceeded"}"#);
        assert!(p
            .access(&mut RequestCtx::default(), &mut parts(Some("10")))
            .is_none());
    }

    #[test]
    fn missing_length_is_411_only_when_required() {
        let cfg = json!({"require_content_length": true});
        let p = build(&cfg, &State::default()).unwrap();
        let r = p
            .access(&mut RequestCtx::default(), &mut parts(None))
            .unwrap();
        assert_eq!(r.status, StatusCode::LENGTH_REQUIRED);
        let p = build(&json!({}), &State::default()).unwrap();
        assert!(p
            .access(&mut RequestCtx::default(), &mut parts(None))
            .is_none());
    }

    #[tokio::test]
    async fn streamed_body_is_counted() {
        let p = build(
            &json!({"allowed_payload_size": 4, "size_unit": "bytes"}),
            &State::default(),
        )
        .unwrap();
        let body: Body = Full::new(Bytes::from_static(b"12345"))
            .map_err(|never| match never {})
            .boxed();
        let err = p
            .request_body(&RequestCtx::default(), body)
            .collect()
            .await
            .unwrap_err();
        assert!(err.downcast_ref::<BodyRejected>().is_some());
        let ok: Body = Full::new(Bytes::from_static(b"1234"))
            .map_err(|never| match never {})
            .boxed();
        assert!(p
            .request_body(&RequestCtx::default(), ok)
            .collect()
            .await
            .is_ok());
    }

    #[test]
    fn bad_config_is_refused() {
        assert!(build(&json!({"size_unit": "parsecs"}), &State::default()).is_err());
    }
}
