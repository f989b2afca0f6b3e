//! What both sides of our HTTP/1.1 (the upstream client `h1`, the client
//! server `h1server`) share to read a message head: the deadline it must
//! come by, reading more into a growing buffer, locating httparse's fields
//! in the head's bytes, and turning them into a header map that shares
//! those bytes (no copy per value), or leaving them unbuilt (`RawFields`,
//! for a response passed on as it came), while noting what framing and
//! persistence depend on, so that nothing is looked up afterwards. Also
//! the decimal digits both sides write.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::io::AsyncRead;
use tokio::time::{Instant, Sleep};

/// When the next head must have come, and the one timer per connection
/// that enforces it: set at or before the deadline and moved only when it
/// fired early, so that a request costs a comparison rather than a timer
/// of its own.
pub(crate) struct Deadline {
    at: Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Default for Deadline {
    fn default() -> Deadline {
        Deadline {
            at: Instant::now(),
            timer: None,
        }
    }
}

impl Deadline {
    /// The next head must come by `at`.
    pub(crate) fn set(&mut self, at: Instant) {
        self.at = at;
        match &mut self.timer {
            None => self.timer = Some(Box::pin(tokio::time::sleep_until(at))),
            // An earlier deadline must be seen in time; a later one is
            // caught up with when the timer fires.
            Some(t) if t.deadline() > at => t.as_mut().reset(at),
            Some(_) => {}
        }
    }

    /// Ready once the deadline passed (never before one was set).
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(timer) = self.timer.as_mut() else {
            return Poll::Pending;
        };
        loop {
            ready!(timer.as_mut().poll(cx));
            if timer.deadline() >= self.at {
                return Poll::Ready(());
            }
            timer.as_mut().reset(self.at);
        }
    }
}

/// First read size; doubled while reads fill it, up to a maximum.
pub(crate) const MIN_READ: usize = 8 * 1024;

/// Reads more from `io` into `buf`; `Ok(0)` at the end of the stream.
/// `read_size` grows while reads fill the room given, up to `max`.
pub(crate) fn poll_fill<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
    read_size: &mut usize,
    max: usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(*read_size);
    }
    let spare = buf.capacity() - buf.len();
    let n = ready!(tokio_util::io::poll_read_buf(Pin::new(io), cx, buf))?;
    if n == spare && *read_size < max {
        *read_size *= 2;
    }
    Poll::Ready(Ok(n))
}

/// Where `part` lies in `whole`, as a range (an empty part anywhere).
pub(crate) fn span(whole: &[u8], part: &[u8]) -> Option<(usize, usize)> {
    if part.is_empty() {
        return Some((0, 0));
    }
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= whole.len()).then_some((start, end))
}

/// The offsets of parsed fields' names and values in `head` (into
/// `spans`, cleared first); false if one lies outside it.
pub(crate) fn field_spans(
    head: &[u8],
    fields: &[httparse::Header<'_>],
    spans: &mut Vec<[usize; 4]>,
) -> bool {
    spans.clear();
    spans.reserve(fields.len());
    for f in fields {
        let (Some(name), Some(value)) = (span(head, f.name.as_bytes()), span(head, f.value)) else {
            return false;
        };
        spans.push([name.0, name.1, value.0, value.1]);
    }
    true
}

/// What the framing and connection headers of a head said.
#[derive(Default)]
pub(crate) struct Facts {
    /// Content-Length: absent, one number, or bad/conflicting values.
    pub length: Option<Result<u64, ()>>,
    /// Transfer-Encoding present; whether its last coding is chunked.
    pub chunked: Option<bool>,
    /// `Connection` lists `close`, `keep-alive`, `upgrade`.
    pub close: bool,
    pub keep_alive: bool,
    pub conn_upgrade: bool,
    /// An `Upgrade` header.
    pub upgrade: bool,
    /// `Expect: 100-continue`.
    pub expect: bool,
}

/// Which hop-by-hop fields `header_map` leaves out of the map.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hops {
    /// All kept (a client's request: plugins and logs see it as sent).
    Keep,
    /// `Keep-Alive`, and a `Connection` that only says `close` or
    /// `keep-alive`, are left out once noted in the facts (an upstream's
    /// response: they concern only the gateway's connection, and removing
    /// them from a built map costs more than the rest of its hop-by-hop
    /// handling). Any other `Connection` is kept for the hop-by-hop pass,
    /// which also removes the fields it names.
    DropPersistence,
}

/// The fields framing and persistence depend on (and the two more a
/// response's writer looks at), known by name in any case (a map's names
/// are lowercase, a raw head's are as sent).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Field {
    ContentLength,
    TransferEncoding,
    Connection,
    KeepAlive,
    Upgrade,
    Expect,
    Date,
    Trailer,
    Other,
}

impl Field {
    pub(crate) fn of(name: &[u8]) -> Field {
        let is = |known: &str| name.eq_ignore_ascii_case(known.as_bytes());
        match name.len() {
            14 if is("content-length") => Field::ContentLength,
            17 if is("transfer-encoding") => Field::TransferEncoding,
            10 if is("connection") => Field::Connection,
            10 if is("keep-alive") => Field::KeepAlive,
            7 if is("upgrade") => Field::Upgrade,
            6 if is("expect") => Field::Expect,
            4 if is("date") => Field::Date,
            7 if is("trailer") => Field::Trailer,
            _ => Field::Other,
        }
    }
}

impl Facts {
    /// Notes one field; whether it concerns only the persistence of the
    /// connection it came on (`Keep-Alive`, a `Connection` saying only
    /// `close` or `keep-alive`).
    fn note(&mut self, field: Field, value: &[u8]) -> bool {
        match field {
            Field::ContentLength => self.length = Some(add_length(self.length, value)),
            Field::TransferEncoding => {
                let last = value.rsplit(|&b| b == b',').next().unwrap_or(b"");
                self.chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
            Field::Connection => {
                // One pass over the tokens: a response's usual field.
                let mut persistence_only = true;
                for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    if token.eq_ignore_ascii_case(b"close") {
                        self.close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        self.keep_alive = true;
                    } else {
                        self.conn_upgrade |= token.eq_ignore_ascii_case(b"upgrade");
                        persistence_only = false;
                    }
                }
                return persistence_only;
            }
            Field::KeepAlive => return true,
            Field::Upgrade => self.upgrade = true,
            Field::Expect => self.expect = value.eq_ignore_ascii_case(b"100-continue"),
            Field::Date | Field::Trailer | Field::Other => {}
        }
        false
    }
}

/// The header map of a frozen head from its field spans, with `room` for
/// fields added later; the facts noted on the way.
pub(crate) fn header_map(
    head: &Bytes,
    spans: &[[usize; 4]],
    room: usize,
    hops: Hops,
) -> Result<(HeaderMap, Facts), &'static str> {
    let mut headers = HeaderMap::with_capacity(spans.len() + room);
    let mut facts = Facts::default();
    for &[n0, n1, v0, v1] in spans {
        let name = HeaderName::from_bytes(&head[n0..n1]).map_err(|_| "bad header name")?;
        let value =
            HeaderValue::from_maybe_shared(head.slice(v0..v1)).map_err(|_| "bad header value")?;
        let persistence = facts.note(Field::of(name.as_str().as_bytes()), value.as_bytes());
        if persistence && hops == Hops::DropPersistence {
            continue;
        }
        headers.append(name, value);
    }
    Ok((headers, facts))
}

/// A head's fields as they came, for a response passed on without a
/// header map: the frozen head and where each name and value lie in it.
/// httparse checked them as `HeaderName` and `HeaderValue` would: names
/// are tokens, values hold no control character but tab.
pub struct RawFields {
    head: Bytes,
    /// The fields passed on, in order (those left out are gone).
    spans: Vec<[usize; 4]>,
    /// The one `Content-Length` among them: its index and value.
    length: Option<(usize, u64)>,
    /// A `Date` among them.
    dated: bool,
}

impl RawFields {
    /// Each field as `(name, value)`, in order, the name in its case.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans
            .iter()
            .map(|&[n0, n1, v0, v1]| (&self.head[n0..n1], &self.head[v0..v1]))
    }

    /// The `Content-Length` among the fields, and whether a `Date` is.
    pub fn length_and_date(&self) -> (Option<u64>, bool) {
        (self.length.map(|(_, n)| n), self.dated)
    }

    /// Writes the fields into a head, lines that came as `name: value`
    /// and CRLF copied as they came, runs of them in one copy; without
    /// `Content-Length` unless `with_length`.
    pub fn write(&self, out: &mut Vec<u8>, with_length: bool) {
        let head = &self.head[..];
        let skip = self.length.filter(|_| !with_length).map(|(at, _)| at);
        // Bytes of whole lines, not yet copied.
        let mut run = 0..0;
        for (at, &[n0, n1, v0, v1]) in self.spans.iter().enumerate() {
            let whole = head.get(v1..v1 + 2) == Some(b"\r\n");
            if whole && Some(at) != skip {
                if run.end != n0 {
                    out.extend_from_slice(&head[run]);
                    run = n0..n0;
                }
                run.end = v1 + 2;
                continue;
            }
            out.extend_from_slice(&head[run]);
            run = 0..0;
            if Some(at) != skip {
                out.extend_from_slice(&head[n0..n1]);
                out.extend_from_slice(b": ");
                out.extend_from_slice(&head[v0..v1]);
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(&head[run]);
    }
}

/// The facts of a frozen head's fields, and the fields passed on left
/// unbuilt (`spans` is taken): all but the hop-by-hop ones and those
/// `left_out` names. `None` when the map path must take the head: a
/// `Connection` field naming other fields (removing those takes the
/// hop-by-hop pass), or `Content-Length` other than once as one number
/// (the map path settles those).
pub(crate) fn raw_fields(
    head: &Bytes,
    spans: &mut Vec<[usize; 4]>,
    left_out: impl Fn(&[u8]) -> bool,
) -> Option<(RawFields, Facts)> {
    let mut facts = Facts::default();
    let mut length = None;
    let mut dated = false;
    let mut kept = 0;
    for at in 0..spans.len() {
        let [n0, n1, v0, v1] = spans[at];
        let (name, value) = (&head[n0..n1], &head[v0..v1]);
        let field = Field::of(name);
        let persistence = facts.note(field, value);
        let keep = match field {
            Field::Connection if !persistence => return None,
            Field::ContentLength => {
                if length.is_some() || !value.iter().all(u8::is_ascii_digit) {
                    return None;
                }
                length = Some((kept, facts.length?.ok()?));
                true
            }
            Field::Date => {
                dated = true;
                true
            }
            Field::Expect | Field::Other => !left_out(name),
            // Hop-by-hop.
            Field::Connection
            | Field::KeepAlive
            | Field::TransferEncoding
            | Field::Upgrade
            | Field::Trailer => false,
        };
        if keep {
            spans[kept] = spans[at];
            kept += 1;
        }
    }
    spans.truncate(kept);
    let spans = std::mem::take(spans);
    let head = head.clone();
    let raw = RawFields {
        head,
        spans,
        length,
        dated,
    };
    Some((raw, facts))
}

/// One more Content-Length value (a list, maybe) after those seen so far:
/// all must be the same decimal number.
pub(crate) fn add_length(seen: Option<Result<u64, ()>>, value: &[u8]) -> Result<u64, ()> {
    let mut found = match seen {
        Some(Err(())) => return Err(()),
        Some(Ok(n)) => Some(n),
        None => None,
    };
    for part in value.split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || part.len() > 19 {
            return Err(());
        }
        let mut n: u64 = 0;
        for &b in part {
            if !b.is_ascii_digit() {
                return Err(());
            }
            n = n * 10 + u64::from(b - b'0');
        }
        if found.is_some_and(|f| f != n) {
            return Err(());
        }
        found = Some(n);
    }
    found.ok_or(())
}

/// `n` in decimal, in the end of `buf`.
pub(crate) fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// Whether a comma-separated header value lists `token`.
pub(crate) fn lists(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        let mut buf = [0; 20];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(1234567, &mut buf), b"1234567");
        assert_eq!(decimal(u64::MAX, &mut buf), u64::MAX.to_string().as_bytes());
    }

    /// A response head parsed as the upstream client parses it, its
    /// fields left raw (`None`: the map path's).
    fn raw(head: &'static [u8]) -> Option<(RawFields, Facts)> {
        let mut fields = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut fields);
        let Ok(httparse::Status::Complete(len)) = resp.parse(head) else {
            panic!("not a complete head");
        };
        let mut spans = Vec::new();
        assert!(field_spans(&head[..len], resp.headers, &mut spans));
        let head = Bytes::from_static(&head[..len]);
        raw_fields(&head, &mut spans, |name| {
            name.eq_ignore_ascii_case(b"x-drop")
        })
    }

    fn written(fields: &RawFields, with_length: bool) -> String {
        let mut out = Vec::new();
        fields.write(&mut out, with_length);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn raw_fields_are_written_as_they_came_less_those_left_out() {
        let (fields, facts) = raw(
            b"HTTP/1.1 200 OK\r\nA: 1\r\nB:2\r\nConnection: keep-alive\r\n\
              X-Drop: x\r\nC:  3 \t\r\nContent-Length: 12\r\nD: 4\nE:\r\nF: 6\r\n\r\n",
        )
        .unwrap();
        assert_eq!(facts.length, Some(Ok(12)));
        assert_eq!(fields.length_and_date(), (Some(12), false));
        // Lines that came as `name: value` CRLF are copied whole; a bare
        // LF, trailing blanks and an empty value are written anew.
        assert_eq!(
            written(&fields, true),
            "A: 1\r\nB:2\r\nC: 3\r\nContent-Length: 12\r\nD: 4\r\nE: \r\nF: 6\r\n"
        );
        assert_eq!(
            written(&fields, false),
            "A: 1\r\nB:2\r\nC: 3\r\nD: 4\r\nE: \r\nF: 6\r\n"
        );
        let names: Vec<_> = fields.iter().map(|(n, _)| n.to_vec()).collect();
        assert_eq!(
            names,
            [&b"A"[..], b"B", b"C", b"Content-Length", b"D", b"E", b"F"]
        );
        let (dated, _) =
            raw(b"HTTP/1.1 200 OK\r\ndate: Sun, 06 Dec 2026 10:00:00 GMT\r\n\r\n").unwrap();
        assert_eq!(dated.length_and_date(), (None, true));
    }

    #[test]
    fn lengths_other_than_one_number_once_keep_the_map() {
        for head in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        ] {
            let head: &'static [u8] = head;
            assert!(raw(head).is_none(), "{}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn content_lengths_must_agree() {
        assert_eq!(add_length(None, b"42"), Ok(42));
        assert_eq!(add_length(None, b"42, 42"), Ok(42));
        assert_eq!(add_length(Some(Ok(42)), b"42"), Ok(42));
        for bad in [
            &b""[..],
            b"4 2",
            b"-1",
            b"+1",
            b"42, 43",
            b"0x10",
            b"99999999999999999999",
        ] {
            assert_eq!(
                add_length(None, bad),
                Err(()),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(add_length(Some(Ok(1)), b"2"), Err(()));
        assert!(lists(b"keep-alive, Close", "close"));
        assert!(!lists(b"closed", "close"));
    }

    /// The map of a head given as `name: value` lines.
    fn map_of(fields: &[(&str, &str)], hops: Hops) -> (HeaderMap, Facts) {
        let mut text = String::new();
        let mut spans = Vec::new();
        for (name, value) in fields {
            let n0 = text.len();
            text.push_str(name);
            let n1 = text.len();
            text.push_str(": ");
            let v0 = text.len();
            text.push_str(value);
            spans.push([n0, n1, v0, text.len()]);
            text.push_str("\r\n");
        }
        header_map(&Bytes::from(text), &spans, 0, hops).unwrap()
    }

    #[test]
    fn persistence_fields_are_noted_and_left_out_of_an_upstream_map_only() {
        let fields = [
            ("Connection", "Keep-Alive"),
            ("Keep-Alive", "timeout=5"),
            ("X-A", "1"),
        ];
        let (map, facts) = map_of(&fields, Hops::DropPersistence);
        assert!(facts.keep_alive && !facts.close);
        assert_eq!(map.len(), 1);
        assert_eq!(map["x-a"], "1");
        // A client's request keeps them all.
        let (map, facts) = map_of(&fields, Hops::Keep);
        assert!(facts.keep_alive);
        assert_eq!(map.len(), 3);
        // A Connection naming other fields stays for the hop-by-hop pass.
        let (map, facts) = map_of(
            &[("Connection", "close, X-Secret"), ("X-Secret", "s")],
            Hops::DropPersistence,
        );
        assert!(facts.close);
        assert_eq!(map["connection"], "close, X-Secret");
        let (map, facts) = map_of(&[("Connection", "Upgrade")], Hops::DropPersistence);
        assert!(facts.conn_upgrade);
        assert_eq!(map["connection"], "Upgrade");
    }
}
