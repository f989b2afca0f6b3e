//! A response head passed on without a header map. When nothing looks at
//! an HTTP/1.1 upstream's response head (no plugin ran, not a gRPC call)
//! and the client speaks HTTP/1, the upstream's fields go from its bytes
//! into the client's head as they came, in their order and case, less the
//! hop-by-hop ones and those the gateway sets itself; then come the
//! gateway's own, `Via` and the X-Kong latencies. Building, editing and
//! dropping a map for the response cost about a sixth of a proxied
//! request's instructions.
//!
//! What the map path does to the same head, this does too: hop-by-hop
//! fields go (a `Connection` naming other fields keeps the map path,
//! which removes those), the upstream's `Via` stays beside ours, its
//! `X-Kong-Upstream-Latency` and `X-Kong-Proxy-Latency` are replaced.

use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::Response;

use super::forward::is_hop_by_hop;
use super::h1parse::{decimal, RawFields};
use super::pipeline::{VIA, X_KONG_PROXY_LATENCY, X_KONG_UPSTREAM_LATENCY};
use crate::plugins::Body;

/// The fields of a passed-on response head.
pub struct Passed {
    fields: RawFields,
    upstream_latency: Duration,
    proxy_latency: Duration,
}

/// Whether an upstream's field is left out: hop-by-hop, or one the
/// gateway sets in its place (`h1parse::raw_fields` leaves them out).
pub(crate) fn left_out(name: &[u8]) -> bool {
    is_hop_by_hop(name)
        || name.eq_ignore_ascii_case(X_KONG_UPSTREAM_LATENCY.as_str().as_bytes())
        || name.eq_ignore_ascii_case(X_KONG_PROXY_LATENCY.as_str().as_bytes())
}

impl Passed {
    pub fn new(fields: RawFields, upstream_latency: Duration, proxy_latency: Duration) -> Passed {
        Passed {
            fields,
            upstream_latency,
            proxy_latency,
        }
    }

    /// Each field the client gets, as `(name, value)`, in order.
    pub fn each(&self, mut f: impl FnMut(&[u8], &[u8])) {
        for (name, value) in self.fields.iter() {
            f(name, value);
        }
        self.own(f);
    }

    /// The gateway's own fields, which follow the upstream's.
    fn own(&self, mut f: impl FnMut(&[u8], &[u8])) {
        f(VIA_NAME, VIA.as_bytes());
        let mut buf = [0; 20];
        let ms = decimal(millis(self.upstream_latency), &mut buf);
        f(X_KONG_UPSTREAM_LATENCY.as_str().as_bytes(), ms);
        let ms = decimal(millis(self.proxy_latency), &mut buf);
        f(X_KONG_PROXY_LATENCY.as_str().as_bytes(), ms);
    }

    /// Writes the same fields as `each` into an HTTP/1 head, the
    /// upstream's `Content-Length` only if `with_length`; the length
    /// written, and whether the upstream sent a `Date`.
    pub fn write(&self, out: &mut Vec<u8>, with_length: bool) -> (Option<u64>, bool) {
        self.fields.write(out, with_length);
        // `own`'s fields, each line's fixed part in one copy: through
        // `own` with a line writer, 156 more instructions per request.
        let mut buf = [0; 20];
        out.extend_from_slice(b"via: ");
        out.extend_from_slice(VIA.as_bytes());
        out.extend_from_slice(b"\r\nx-kong-upstream-latency: ");
        out.extend_from_slice(decimal(millis(self.upstream_latency), &mut buf));
        out.extend_from_slice(b"\r\nx-kong-proxy-latency: ");
        out.extend_from_slice(decimal(millis(self.proxy_latency), &mut buf));
        out.extend_from_slice(b"\r\n");
        let (length, dated) = self.fields.length_and_date();
        (length.filter(|_| with_length), dated)
    }

    /// The same fields appended to `headers`, for a server that writes a
    /// map (HTTP/2).
    fn append_to(&self, headers: &mut HeaderMap) {
        self.each(|name, value| {
            if let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
            {
                headers.append(name, value);
            }
        });
    }
}

const VIA_NAME: &[u8] = b"via";

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What the pipeline answers: the response, and when its head is passed
/// on without a map, the fields that go in the head before the map's.
pub struct Answer {
    pub response: Response<Body>,
    pub passed: Option<Passed>,
}

impl Answer {
    /// The response with every field in its map.
    pub fn into_response(self) -> Response<Body> {
        let mut response = self.response;
        if let Some(passed) = self.passed {
            passed.append_to(response.headers_mut());
        }
        response
    }
}

impl From<Response<Body>> for Answer {
    fn from(response: Response<Body>) -> Answer {
        Answer {
            response,
            passed: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn fields(head: &'static str) -> RawFields {
        let mut spans = Vec::new();
        let mut at = 0;
        for line in head.split_inclusive("\r\n") {
            let (name, rest) = line.split_once(':').unwrap();
            let value = rest.trim();
            let v0 = at + line.find(value).unwrap();
            spans.push([at, at + name.len(), v0, v0 + value.len()]);
            at += line.len();
        }
        let (raw, _) =
            super::super::h1parse::raw_fields(&Bytes::from(head), &mut spans, left_out).unwrap();
        raw
    }

    #[test]
    fn hop_by_hop_and_the_gateways_own_fields_are_left_out() {
        let passed = Passed::new(
            fields(
                "Content-Type: text/plain\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\
                 Transfer-Encoding: chunked\r\nVia: 1.1 upstream-cache\r\n\
                 X-Kong-Upstream-Latency: 999\r\nx-kong-proxy-latency: 999\r\nSet-Cookie: a=1\r\n",
            ),
            Duration::from_millis(12),
            Duration::from_micros(300),
        );
        let mut seen = Vec::new();
        passed.each(|n, v| {
            seen.push(format!(
                "{}: {}",
                String::from_utf8_lossy(n),
                String::from_utf8_lossy(v)
            ))
        });
        assert_eq!(
            seen,
            [
                "Content-Type: text/plain",
                "Via: 1.1 upstream-cache",
                "Set-Cookie: a=1",
                "via: 1.1 raftgate",
                "x-kong-upstream-latency: 12",
                "x-kong-proxy-latency: 0",
            ]
        );
        // The map a server of maps gets says the same.
        let mut map = HeaderMap::new();
        passed.append_to(&mut map);
        assert_eq!(map.len(), 6);
        let vias: Vec<_> = map.get_all("via").iter().collect();
        assert_eq!(vias, ["1.1 upstream-cache", "1.1 raftgate"]);
        assert_eq!(map["x-kong-upstream-latency"], "12");
    }

    #[test]
    fn a_connection_naming_other_fields_keeps_the_map() {
        let mut spans = vec![[0, 10, 12, 24]];
        let head = Bytes::from_static(b"Connection: close, X-Tmp\r\n");
        assert!(super::super::h1parse::raw_fields(&head, &mut spans, left_out).is_none());
    }
}
