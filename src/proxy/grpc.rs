//! gRPC through the gateway, decided in one place: which requests are gRPC
//! calls, Kong's checks once a `grpc`/`grpcs` route matched, and the shape
//! of the gateway's own answers to a call.
//!
//! A request is a gRPC call when it comes over HTTP/2 with a `content-type`
//! starting with `application/grpc` (Kong's test). The gateway answers a
//! call it rejects itself (no route, auth, ACL, rate limit, upstream
//! unavailable…) in gRPC's trailers-only form: HTTP 200, `content-type:
//! application/grpc`, `grpc-status` and `grpc-message` (Kong's message,
//! percent-encoded as gRPC wants), an empty body and the reply's other
//! headers kept. Unlike Kong, which keeps the HTTP status (401…) beside
//! `grpc-status`, the status line says 200, as the gRPC protocol asks; the
//! access log and the plugins' log phase still see the gateway's status.
//!
//! Codes follow Kong's table (`kong/pdk/response.lua`), except two that
//! follow gRPC's own HTTP mapping instead: 404 (no route) is UNIMPLEMENTED,
//! what a gRPC server says of an unknown method, not NOT_FOUND; and 502 is
//! UNAVAILABLE, like 503, not INTERNAL.
//!
//! Forwarding needs nothing special here: the bodies stream frame by frame
//! both ways and trailers pass untouched; `forward` speaks HTTP/2 to
//! `grpc` (h2c) and `grpcs` (h2 over TLS) services.
//!
//! The client's `grpc-timeout` caps a call on a `grpc`/`grpcs` route: when
//! it passes before the upstream answered, the gateway answers
//! DEADLINE_EXCEEDED (trailers-only, logged as 504); when it passes while
//! the upstream's response streams, the rest of that response is dropped
//! and the client gets trailers with DEADLINE_EXCEEDED (`Deadline`). The
//! upstream is given what is left of that time as its own `grpc-timeout`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Version};
use http_body::Frame;

use crate::model::Route;
use crate::plugins::{Body, BoxError, Reply};

pub const NOT_GRPC: &str = "Non-gRPC request matched gRPC route";
pub const USE_HTTP2: &str = "Please use HTTP2 protocol";
pub const GRPCS_ONLY: &str = "gRPC request matched gRPCs route";

pub const DEADLINE_EXCEEDED: &str = "Deadline Exceeded";

const TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
const STATUS: HeaderName = HeaderName::from_static("grpc-status");
const MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
const CONTENT_TYPE: HeaderValue = HeaderValue::from_static("application/grpc");

/// gRPC status codes the gateway uses, by name.
pub mod code {
    pub const OK: u8 = 0;
    pub const CANCELLED: u8 = 1;
    pub const UNKNOWN: u8 = 2;
    pub const INVALID_ARGUMENT: u8 = 3;
    pub const DEADLINE_EXCEEDED: u8 = 4;
    pub const ALREADY_EXISTS: u8 = 6;
    pub const PERMISSION_DENIED: u8 = 7;
    pub const RESOURCE_EXHAUSTED: u8 = 8;
    pub const UNIMPLEMENTED: u8 = 12;
    pub const INTERNAL: u8 = 13;
    pub const UNAVAILABLE: u8 = 14;
    pub const UNAUTHENTICATED: u8 = 16;
}

/// Kong's `grpc-message` when an answer carries no message of its own.
const NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

fn is_grpc_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Whether the request is a gRPC call (HTTP/2 and a gRPC content type).
pub fn is_call(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_2 && is_grpc_content_type(headers)
}

/// Whether a service is reached over HTTP/2 (`grpc`: h2c, `grpcs`: TLS).
pub fn is_h2_service(protocol: &str) -> bool {
    matches!(protocol, "grpc" | "grpcs")
}

/// Kong's checks once a route with gRPC protocols matched: a request that
/// is not gRPC gets 415, a gRPC request not over HTTP/2 gets 426, and a
/// plain-text call to a `grpcs`-only route gets grpc-status 1. `None`: go on.
pub fn check_route(
    route: &Route,
    version: Version,
    headers: &HeaderMap,
    tls: bool,
) -> Option<Reply> {
    let has = |p: &str| route.protocols.iter().any(|x| x == p);
    let (grpc, grpcs) = (has("grpc"), has("grpcs"));
    if !grpc && !grpcs {
        return None;
    }
    if !is_grpc_content_type(headers) {
        return Some(Reply::message(StatusCode::UNSUPPORTED_MEDIA_TYPE, NOT_GRPC));
    }
    if version != Version::HTTP_2 {
        let mut reply = Reply::message(StatusCode::UPGRADE_REQUIRED, USE_HTTP2);
        reply
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        reply
            .headers
            .insert(header::UPGRADE, HeaderValue::from_static("HTTP/2"));
        return Some(reply);
    }
    if !grpc && !tls {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, CONTENT_TYPE);
        headers.insert(STATUS, HeaderValue::from(u16::from(code::CANCELLED)));
        headers.insert(MESSAGE, HeaderValue::from_static(GRPCS_ONLY));
        return Some(Reply {
            status: StatusCode::OK,
            headers,
            body: Bytes::new(),
        });
    }
    None
}

/// The client's `grpc-timeout`: at most 8 digits, then the unit (`H`ours,
/// `M`inutes, `S`econds, `m`illi-, `u` micro-, `n` nanoseconds). `None`
/// when absent or malformed (the call then has no deadline here).
pub fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(TIMEOUT)?.as_bytes();
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// `grpc-timeout` for what is left of a call's time at `now`, so that the
/// upstream sees the client's deadline less the time spent in the gateway.
/// In milliseconds, rounded down (never later than the client's deadline),
/// or in whole seconds past 8 digits of milliseconds; `None` once the
/// deadline has passed.
pub fn remaining_timeout(deadline: Instant, now: Instant) -> Option<HeaderValue> {
    let left = deadline.checked_duration_since(now)?.as_millis();
    if left == 0 {
        return None;
    }
    let text = if left <= 99_999_999 {
        format!("{left}m")
    } else {
        format!("{}S", (left / 1000).min(99_999_999))
    };
    HeaderValue::from_str(&text).ok()
}

/// Sets the upstream request's `grpc-timeout` to what is left of the
/// call's time; `false` when nothing is left.
pub fn pass_remaining_timeout(headers: &mut HeaderMap, deadline: Instant) -> bool {
    match remaining_timeout(deadline, Instant::now()) {
        Some(v) => {
            headers.insert(TIMEOUT, v);
            true
        }
        None => false,
    }
}

/// The answer to a call whose deadline passed before the upstream
/// answered: 504, which becomes DEADLINE_EXCEEDED in trailers-only form.
pub fn deadline_exceeded() -> Reply {
    Reply::message(StatusCode::GATEWAY_TIMEOUT, DEADLINE_EXCEEDED)
}

/// An upstream's response body cut at the client's deadline: if it has
/// not ended by then, the upstream stream is dropped (which resets it) and
/// the client gets trailers with DEADLINE_EXCEEDED instead of the rest.
pub struct Deadline {
    inner: Option<Body>,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Deadline {
    pub fn wrap(inner: Body, at: Instant) -> Body {
        http_body_util::BodyExt::boxed(Deadline {
            inner: Some(inner),
            timer: Box::pin(tokio::time::sleep_until(at.into())),
        })
    }
}

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(polled) = Pin::new(inner).poll_frame(cx) {
            // After the upstream's trailers nothing may follow.
            if !matches!(&polled, Some(Ok(f)) if f.is_data()) {
                this.inner = None;
            }
            return Poll::Ready(polled);
        }
        match this.timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.inner = None;
                let mut trailers = HeaderMap::new();
                trailers.insert(
                    STATUS,
                    HeaderValue::from(u16::from(code::DEADLINE_EXCEEDED)),
                );
                trailers.insert(MESSAGE, HeaderValue::from_static(DEADLINE_EXCEEDED));
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }
}

/// The gRPC code for one of the gateway's HTTP answers.
pub fn code_for(status: StatusCode) -> u8 {
    match status.as_u16() {
        400 => code::INVALID_ARGUMENT,
        401 => code::UNAUTHENTICATED,
        403 => code::PERMISSION_DENIED,
        404 => code::UNIMPLEMENTED,
        409 => code::ALREADY_EXISTS,
        429 => code::RESOURCE_EXHAUSTED,
        499 => code::CANCELLED,
        500 => code::INTERNAL,
        501 => code::UNIMPLEMENTED,
        502 | 503 => code::UNAVAILABLE,
        504 => code::DEADLINE_EXCEEDED,
        // Kong's fallbacks by class.
        other => match other / 100 {
            2 => code::OK,
            4 => code::INVALID_ARGUMENT,
            5 => code::INTERNAL,
            _ => code::UNKNOWN,
        },
    }
}

/// The message of a gateway answer: the `message` of Kong's JSON body, or
/// the body itself when it is plain text; `None` when there is neither.
fn message_of(body: &Bytes) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => v
            .get("message")
            .and_then(|m| m.as_str())
            .map(str::to_string),
        Err(_) => std::str::from_utf8(body).ok().map(str::to_string),
    }
}

/// gRPC's percent-encoding of `grpc-message`: every byte outside printable
/// ASCII, and `%` itself, as `%XX`.
pub fn encode_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The status the gateway decided on, kept on a response whose status
/// line was rewritten to 200 for gRPC, for the log phase and metrics.
#[derive(Clone, Copy, Debug)]
pub struct GatewayStatus(pub StatusCode);

/// `reply` in gRPC's trailers-only form (see the module doc). A reply that
/// already carries a `grpc-status` keeps it.
pub fn trailers_only(reply: Reply) -> Reply {
    let Reply {
        status,
        mut headers,
        body,
    } = reply;
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(header::CONTENT_TYPE, CONTENT_TYPE);
    if !headers.contains_key(STATUS) {
        let code = code_for(status);
        let message = message_of(&body).unwrap_or_else(|| NAMES[usize::from(code)].to_string());
        headers.insert(STATUS, HeaderValue::from(u16::from(code)));
        if let Ok(v) = HeaderValue::from_str(&encode_message(&message)) {
            headers.insert(MESSAGE, v);
        }
    }
    Reply {
        status: StatusCode::OK,
        headers,
        body: Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, content_type.parse().unwrap());
        h
    }

    fn route(protocols: &[&str]) -> Route {
        let value = serde_json::json!({
            "id": uuid::Uuid::nil(),
            "protocols": protocols,
            "paths": ["/"],
        });
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_call_is_http2_with_a_grpc_content_type() {
        assert!(is_call(Version::HTTP_2, &headers("application/grpc")));
        assert!(is_call(Version::HTTP_2, &headers("application/grpc+proto")));
        assert!(!is_call(Version::HTTP_11, &headers("application/grpc")));
        assert!(!is_call(Version::HTTP_2, &headers("application/json")));
        assert!(!is_call(Version::HTTP_2, &HeaderMap::new()));
    }

    #[test]
    fn kong_codes_with_grpc_mapping_for_404_and_502() {
        let cases = [
            (200, code::OK),
            (400, code::INVALID_ARGUMENT),
            (401, code::UNAUTHENTICATED),
            (403, code::PERMISSION_DENIED),
            (404, code::UNIMPLEMENTED),
            (413, code::INVALID_ARGUMENT),
            (429, code::RESOURCE_EXHAUSTED),
            (500, code::INTERNAL),
            (502, code::UNAVAILABLE),
            (503, code::UNAVAILABLE),
            (504, code::DEADLINE_EXCEEDED),
            (507, code::INTERNAL),
            (301, code::UNKNOWN),
        ];
        for (status, code) in cases {
            assert_eq!(
                code_for(StatusCode::from_u16(status).unwrap()),
                code,
                "{status}"
            );
        }
    }

    #[test]
    fn rejection_becomes_trailers_only_with_kongs_message() {
        let mut reply = Reply::message(StatusCode::UNAUTHORIZED, "No API key found in request");
        reply
            .headers
            .insert("www-authenticate", "Key realm=\"kong\"".parse().unwrap());
        let r = trailers_only(reply);
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.body.is_empty());
        assert_eq!(r.headers["content-type"], "application/grpc");
        assert_eq!(r.headers["grpc-status"], "16");
        assert_eq!(r.headers["grpc-message"], "No API key found in request");
        assert_eq!(r.headers["www-authenticate"], "Key realm=\"kong\"");
    }

    #[test]
    fn message_falls_back_to_the_code_name_and_is_percent_encoded() {
        let empty = Reply {
            status: StatusCode::TOO_MANY_REQUESTS,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        };
        assert_eq!(
            trailers_only(empty).headers["grpc-message"],
            "ResourceExhausted"
        );
        assert_eq!(encode_message("50% off\nnaïve"), "50%25 off%0Ana%C3%AFve");
        let r = trailers_only(Reply::message(StatusCode::FORBIDDEN, "déjà vu"));
        assert_eq!(r.headers["grpc-message"], "d%C3%A9j%C3%A0 vu");
    }

    #[test]
    fn grpc_timeout_units_and_malformed_values() {
        let t = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("grpc-timeout", v.parse().unwrap());
            timeout(&h)
        };
        assert_eq!(t("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(t("3M"), Some(Duration::from_secs(180)));
        assert_eq!(t("5S"), Some(Duration::from_secs(5)));
        assert_eq!(t("250m"), Some(Duration::from_millis(250)));
        assert_eq!(t("7u"), Some(Duration::from_micros(7)));
        assert_eq!(t("99999999n"), Some(Duration::from_nanos(99_999_999)));
        assert_eq!(t("99999999H"), Some(Duration::from_secs(99_999_999 * 3600)));
        for bad in ["", "S", "100", "123456789S", "1s", "-1S", "1.5S", "1 S"] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
        assert_eq!(timeout(&HeaderMap::new()), None);
    }

    #[test]
    fn the_upstream_gets_what_is_left_of_the_deadline() {
        let now = Instant::now();
        let left = |d: Duration| remaining_timeout(now + d, now);
        assert_eq!(left(Duration::from_millis(1500)).unwrap(), "1500m");
        assert_eq!(left(Duration::from_micros(2_999)).unwrap(), "2m");
        assert_eq!(left(Duration::from_secs(100_000)).unwrap(), "100000S");
        assert_eq!(
            left(Duration::from_secs(3_600 * 99_999)).unwrap(),
            "99999999S"
        );
        assert_eq!(left(Duration::from_micros(999)), None, "under 1 ms");
        assert_eq!(remaining_timeout(now, now + Duration::from_secs(1)), None);
        // What it writes reads back as at most the time left.
        let mut h = HeaderMap::new();
        h.insert(TIMEOUT, left(Duration::from_millis(250)).unwrap());
        assert_eq!(timeout(&h), Some(Duration::from_millis(250)));
    }

    #[tokio::test]
    async fn a_body_past_its_deadline_ends_with_deadline_exceeded() {
        use http_body_util::BodyExt;
        // An upstream body that sends one message and then stalls.
        let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        tx.try_send(Ok(Frame::data(Bytes::from_static(b"msg"))))
            .unwrap();
        let stalled: Body = http_body_util::StreamBody::new(rx).boxed();
        let at = Instant::now() + Duration::from_millis(50);
        let mut body = Deadline::wrap(stalled, at);
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "msg");
        let last = body.frame().await.unwrap().unwrap();
        assert!(Instant::now() >= at);
        let trailers = last.into_trailers().unwrap();
        assert_eq!(trailers["grpc-status"], "4");
        assert_eq!(trailers["grpc-message"], DEADLINE_EXCEEDED);
        assert!(body.frame().await.is_none());
        drop(tx);

        // One that ends with its own trailers in time is left alone.
        let mut own = HeaderMap::new();
        own.insert("grpc-status", HeaderValue::from_static("0"));
        let done: Body =
            http_body_util::StreamBody::new(futures::stream::iter([Ok::<_, BoxError>(
                Frame::trailers(own),
            )]))
            .boxed();
        let mut body = Deadline::wrap(done, Instant::now() + Duration::from_millis(20));
        let t = body
            .frame()
            .await
            .unwrap()
            .unwrap()
            .into_trailers()
            .unwrap();
        assert_eq!(t["grpc-status"], "0");
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(body.frame().await.is_none(), "nothing after the trailers");
    }

    #[test]
    fn kongs_route_checks() {
        let h2 = Version::HTTP_2;
        let grpc = headers("application/grpc");
        assert!(check_route(&route(&["http"]), h2, &grpc, false).is_none());
        assert!(check_route(&route(&["grpc", "grpcs"]), h2, &grpc, false).is_none());
        assert!(check_route(&route(&["grpcs"]), h2, &grpc, true).is_none());

        let r = check_route(&route(&["grpc"]), h2, &headers("text/plain"), false).unwrap();
        assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(message_of(&r.body).as_deref(), Some(NOT_GRPC));

        let r = check_route(&route(&["grpc"]), Version::HTTP_11, &grpc, false).unwrap();
        assert_eq!(r.status, StatusCode::UPGRADE_REQUIRED);
        assert_eq!(message_of(&r.body).as_deref(), Some(USE_HTTP2));
        assert_eq!(r.headers["upgrade"], "HTTP/2");

        let r = trailers_only(check_route(&route(&["grpcs"]), h2, &grpc, false).unwrap());
        assert_eq!(r.headers["grpc-status"], "1");
        assert_eq!(r.headers["grpc-message"], GRPCS_ONLY);
    }
}
