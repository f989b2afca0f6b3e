//! The named fields of a request body, as Kong's `kong.request.get_body()`
//! sees them: `application/x-www-form-urlencoded` pairs, the members of a
//! JSON object (`application/json`), or the parts of a
//! `multipart/form-data` body. Any other type, or a body that does not
//! parse, has no fields (Kong logs the error and uses an empty table).
//!
//! `without` gives the body minus one field, for `hide_credentials`: form
//! pairs and multipart parts are cut out of the original bytes (the rest
//! is kept byte for byte); a JSON object is re-serialized without the
//! member, as Kong re-encodes it.

use std::ops::Range;

use bytes::Bytes;
use serde_json::{Map, Value};

/// What a body holds under one name.
#[derive(Debug, PartialEq, Eq)]
pub enum Field {
    /// No such field.
    Missing,
    /// One text value.
    One(String),
    /// Several values, or a JSON array or object (Kong sees a table).
    Many,
    /// A single value that is not text (a JSON number, boolean or null;
    /// a multipart part that is not UTF-8).
    Other,
}

/// One multipart part: its name, its value when it is UTF-8 text, and the
/// byte range of the whole part, from its delimiter to the next one.
type Part = (String, Option<String>, Range<usize>);

/// A parsed body.
#[derive(Debug)]
pub enum BodyFields {
    None,
    Form(Vec<(String, String)>),
    Json(Map<String, Value>),
    Multipart(Vec<Part>),
}

/// The media type of a Content-Type value, lowercased, without parameters.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The `boundary` parameter of a multipart Content-Type.
fn boundary(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|param| {
        let (k, v) = param.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        (!v.is_empty() && v.len() <= 70).then_some(v)
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// The `name` parameter of a part's `Content-Disposition: form-data` header.
fn part_name(headers: &str) -> Option<String> {
    let line = headers.lines().find(|l| {
        l.split_once(':')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("content-disposition"))
    })?;
    let (_, value) = line.split_once(':')?;
    let mut rest = value;
    while let Some(i) = rest.find(';') {
        rest = rest[i + 1..].trim_start();
        let Some(after) = rest.strip_prefix("name=") else {
            continue;
        };
        if let Some(quoted) = after.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.extend(chars.next()),
                    '"' => return Some(out),
                    c => out.push(c),
                }
            }
            return None;
        }
        let end = after.find(';').unwrap_or(after.len());
        return Some(after[..end].trim().to_string());
    }
    None
}

/// The parts of a multipart body; `None` when it is not well formed.
fn multipart(body: &[u8], boundary: &str) -> Option<Vec<Part>> {
    let delimiter = format!("--{boundary}");
    let next_delimiter = format!("\r\n--{boundary}");
    let mut at = if body.starts_with(delimiter.as_bytes()) {
        0
    } else {
        find(body, next_delimiter.as_bytes(), 0)? + 2
    };
    let mut parts = Vec::new();
    loop {
        let after = at + delimiter.len();
        if body[after..].starts_with(b"--") {
            return Some(parts);
        }
        let line_end = find(body, b"\r\n", after)?;
        if !body[after..line_end]
            .iter()
            .all(|b| *b == b' ' || *b == b'\t')
        {
            return None;
        }
        let head_end = find(body, b"\r\n\r\n", line_end)?;
        let headers = std::str::from_utf8(&body[line_end + 2..head_end]).ok()?;
        let content_start = head_end + 4;
        let content_end = find(body, next_delimiter.as_bytes(), content_start)?;
        let next = content_end + 2;
        let value = std::str::from_utf8(&body[content_start..content_end])
            .ok()
            .map(str::to_string);
        if let Some(name) = part_name(headers) {
            parts.push((name, value, at..next));
        }
        at = next;
    }
}

impl BodyFields {
    /// Parses `body` by its Content-Type.
    pub fn parse(content_type: Option<&str>, body: &[u8]) -> BodyFields {
        let Some(content_type) = content_type else {
            return BodyFields::None;
        };
        let media = media_type(content_type);
        if media == "application/x-www-form-urlencoded" {
            return BodyFields::Form(form_urlencoded::parse(body).into_owned().collect());
        }
        if media.starts_with("application/json") {
            return match serde_json::from_slice(body) {
                Ok(Value::Object(map)) => BodyFields::Json(map),
                _ => BodyFields::None,
            };
        }
        if media == "multipart/form-data" {
            return boundary(content_type)
                .and_then(|b| multipart(body, b))
                .map_or(BodyFields::None, BodyFields::Multipart);
        }
        BodyFields::None
    }

    /// What the body holds under `name`.
    pub fn get(&self, name: &str) -> Field {
        let many = |mut values: Vec<Option<&str>>| match values.len() {
            0 => Field::Missing,
            1 => match values.pop().flatten() {
                Some(v) => Field::One(v.to_string()),
                None => Field::Other,
            },
            _ => Field::Many,
        };
        match self {
            BodyFields::None => Field::Missing,
            BodyFields::Form(pairs) => many(
                pairs
                    .iter()
                    .filter(|(k, _)| k == name)
                    .map(|(_, v)| Some(v.as_str()))
                    .collect(),
            ),
            BodyFields::Json(map) => match map.get(name) {
                None => Field::Missing,
                Some(Value::String(s)) => Field::One(s.clone()),
                Some(Value::Array(_) | Value::Object(_)) => Field::Many,
                Some(_) => Field::Other,
            },
            BodyFields::Multipart(parts) => many(
                parts
                    .iter()
                    .filter(|(k, _, _)| k == name)
                    .map(|(_, v, _)| v.as_deref())
                    .collect(),
            ),
        }
    }

    /// `body` without the field `name`; `None` when it has no such field.
    pub fn without(&self, body: &[u8], name: &str) -> Option<Bytes> {
        match self {
            BodyFields::None => None,
            BodyFields::Form(pairs) => {
                if !pairs.iter().any(|(k, _)| k == name) {
                    return None;
                }
                let kept: Vec<&[u8]> = body
                    .split(|b| *b == b'&')
                    .filter(|pair| {
                        !pair.is_empty()
                            && form_urlencoded::parse(pair)
                                .next()
                                .is_none_or(|(k, _)| k != name)
                    })
                    .collect();
                Some(Bytes::from(kept.join(&b'&')))
            }
            BodyFields::Json(map) => {
                let mut map = map.clone();
                map.remove(name)?;
                serde_json::to_vec(&map).ok().map(Bytes::from)
            }
            BodyFields::Multipart(parts) => {
                let mut cut: Vec<&Range<usize>> = parts
                    .iter()
                    .filter(|(k, _, _)| k == name)
                    .map(|(_, _, r)| r)
                    .collect();
                if cut.is_empty() {
                    return None;
                }
                cut.sort_by_key(|r| r.start);
                let mut out = Vec::with_capacity(body.len());
                let mut from = 0;
                for r in cut {
                    out.extend_from_slice(&body[from..r.start]);
                    from = r.end;
                }
                out.extend_from_slice(&body[from..]);
                Some(Bytes::from(out))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM: &str = "application/x-www-form-urlencoded";

    #[test]
    fn form_fields_and_removal_keep_the_other_bytes() {
        let body = b"a=1&apikey=k%2B1&b=%20x";
        let f = BodyFields::parse(Some(FORM), body);
        assert_eq!(f.get("apikey"), Field::One("k+1".into()));
        assert_eq!(f.get("nope"), Field::Missing);
        assert_eq!(
            f.without(body, "apikey").as_deref(),
            Some(&b"a=1&b=%20x"[..])
        );
        assert_eq!(f.without(body, "nope"), None);
        let dup = b"apikey=a&apikey=b";
        assert_eq!(
            BodyFields::parse(Some(FORM), dup).get("apikey"),
            Field::Many
        );
    }

    #[test]
    fn json_members_by_type() {
        let body = br#"{"apikey":"k","n":1,"list":["a"],"obj":{},"nil":null}"#;
        let f = BodyFields::parse(Some("application/json; charset=utf-8"), body);
        assert_eq!(f.get("apikey"), Field::One("k".into()));
        assert_eq!(f.get("n"), Field::Other);
        assert_eq!(f.get("nil"), Field::Other);
        assert_eq!(f.get("list"), Field::Many);
        assert_eq!(f.get("obj"), Field::Many);
        let rest: Value = serde_json::from_slice(&f.without(body, "apikey").unwrap()).unwrap();
        assert_eq!(
            rest,
            serde_json::json!({"n":1,"list":["a"],"obj":{},"nil":null})
        );
        let array = BodyFields::parse(Some("application/json"), br#"["apikey"]"#);
        assert_eq!(array.get("apikey"), Field::Missing);
        let broken = BodyFields::parse(Some("application/json"), br#"{"apikey":"#);
        assert_eq!(broken.get("apikey"), Field::Missing);
    }

    #[test]
    fn other_types_have_no_fields() {
        for ct in [None, Some("text/plain"), Some("application/xml")] {
            assert_eq!(
                BodyFields::parse(ct, b"apikey=k").get("apikey"),
                Field::Missing
            );
        }
    }

    #[test]
    fn multipart_parts_and_removal() {
        let ct = "multipart/form-data; boundary=\"XyZ\"";
        let body = "preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\none\r\n\
                    --XyZ\r\ncontent-disposition: form-data; name=\"apikey\"\r\n\r\nsecret\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.bin\"\r\n\
                    Content-Type: application/octet-stream\r\n\r\nbin\r\nary\r\n--XyZ--\r\n";
        let f = BodyFields::parse(Some(ct), body.as_bytes());
        assert_eq!(f.get("apikey"), Field::One("secret".into()));
        assert_eq!(f.get("a"), Field::One("one".into()));
        assert_eq!(f.get("f"), Field::One("bin\r\nary".into()));
        let cut = f.without(body.as_bytes(), "apikey").unwrap();
        let expected =
            "preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\none\r\n\
                        --XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.bin\"\r\n\
                        Content-Type: application/octet-stream\r\n\r\nbin\r\nary\r\n--XyZ--\r\n";
        assert_eq!(std::str::from_utf8(&cut).unwrap(), expected);
        let again = BodyFields::parse(Some(ct), &cut);
        assert_eq!(again.get("apikey"), Field::Missing);
        assert_eq!(again.get("f"), Field::One("bin\r\nary".into()));
        // Truncated: no closing delimiter, so no fields.
        let truncated = &body.as_bytes()[..60];
        assert_eq!(
            BodyFields::parse(Some(ct), truncated).get("a"),
            Field::Missing
        );
        assert_eq!(
            BodyFields::parse(Some("multipart/form-data"), body.as_bytes()).get("a"),
            Field::Missing,
            "no boundary"
        );
    }
}
