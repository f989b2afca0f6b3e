//! The answers the gateway gives on its own behalf, with Kong's statuses
//! and bodies, and the conversion of a `Reply` into a response.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::plugins::{Body, Reply};

pub const NO_ROUTE: &str = "no Route matched with those values";
pub const NO_SERVICE: &str = "no Service found with those values";
pub const USE_HTTPS: &str = "Please use HTTPS protocol";
pub const BAD_GATEWAY: &str = "An invalid response was received from the upstream server";
pub const GATEWAY_TIMEOUT: &str = "The upstream server is timing out";
pub const NO_PEER: &str = "failure to get a peer from the ring-balancer";
pub const BAD_REQUEST: &str = "Bad request";
pub const TOO_MANY_CONNECTIONS: &str = "Too many connections";

/// `{"message": …}` with `status`.
pub fn message(status: StatusCode, message: &str) -> Response<Body> {
    from_reply(Reply::message(status, message))
}

pub fn from_reply(reply: Reply) -> Response<Body> {
    let mut resp = Response::new(full(reply.body));
    *resp.status_mut() = reply.status;
    *resp.headers_mut() = reply.headers;
    resp.headers_mut().insert(
        http::header::SERVER,
        HeaderValue::from_static(concat!("raftgate/", env!("CARGO_PKG_VERSION"))),
    );
    resp
}

pub fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// A complete HTTP/1.1 answer written on a raw socket, for when the
/// connection is refused before hyper serves it (too many connections,
/// header timeout).
pub fn raw_http1(status: StatusCode, message: &str) -> Vec<u8> {
    let body = serde_json::json!({ "message": message }).to_string();
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
        body
    )
    .into_bytes()
}
