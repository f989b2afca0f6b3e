//! Kong's list pages: `size` (1–1000, default 100), an opaque `offset`
//! (the last key of the previous page, base64url), `next` as a relative
//! URL or null; and the `tags` filter (`a,b` all of, `a/b` any of, at most
//! five).

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use super::errors::AdminError;

pub const DEFAULT_SIZE: usize = 100;
pub const MAX_SIZE: usize = 1000;

/// A `tags` query: every tag, or any of them.
#[derive(Debug, Clone, PartialEq)]
pub enum TagFilter {
    All(Vec<String>),
    Any(Vec<String>),
}

impl TagFilter {
    pub fn parse(raw: &str) -> Result<TagFilter, AdminError> {
        let invalid = |m: &str| AdminError::invalid_option("tags", m);
        let (and, or) = (raw.contains(','), raw.contains('/'));
        if and && or {
            return Err(invalid("invalid filter syntax"));
        }
        let sep = if or { '/' } else { ',' };
        let tags: Vec<String> = raw.split(sep).map(str::to_string).collect();
        if tags.iter().any(String::is_empty) {
            return Err(invalid("invalid filter syntax"));
        }
        if tags.len() > 5 {
            return Err(invalid("cannot query more than 5 tags"));
        }
        Ok(if or {
            TagFilter::Any(tags)
        } else {
            TagFilter::All(tags)
        })
    }

    pub fn matches(&self, tags: &[String]) -> bool {
        match self {
            TagFilter::All(want) => want.iter().all(|t| tags.contains(t)),
            TagFilter::Any(want) => want.iter().any(|t| tags.contains(t)),
        }
    }
}

/// Page parameters read from the query string.
#[derive(Debug, Clone)]
pub struct PageQuery {
    pub size: usize,
    /// The last key of the previous page.
    pub after: Option<String>,
    pub tags: Option<TagFilter>,
    /// Extra query parameters carried into `next` (size, tags as given).
    carry: Vec<(String, String)>,
}

impl PageQuery {
    pub fn parse(query: &HashMap<String, String>) -> Result<PageQuery, AdminError> {
        let mut carry = Vec::new();
        let size = match query.get("size") {
            None => DEFAULT_SIZE,
            Some(raw) => {
                let n = raw
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_SIZE).contains(n))
                    .ok_or_else(AdminError::invalid_size)?;
                carry.push(("size".to_string(), n.to_string()));
                n
            }
        };
        let after = match query.get("offset").filter(|o| !o.is_empty()) {
            None => None,
            Some(raw) => Some(
                URL_SAFE_NO_PAD
                    .decode(raw)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| AdminError::invalid_offset(raw))?,
            ),
        };
        let tags = match query.get("tags") {
            None => None,
            Some(raw) => {
                carry.push(("tags".to_string(), raw.clone()));
                Some(TagFilter::parse(raw)?)
            }
        };
        Ok(PageQuery {
            size,
            after,
            tags,
            carry,
        })
    }

    /// One page of `items` (already filtered and sorted by `key`), as
    /// Kong's `{"data", "offset", "next"}` object. `path` is the request
    /// path `next` points back to.
    pub fn page<T>(
        &self,
        items: impl Iterator<Item = T>,
        key: impl Fn(&T) -> String,
        render: impl Fn(&T) -> Value,
        path: &str,
    ) -> Value {
        let mut data = Vec::with_capacity(self.size.min(64));
        let mut last_key = None;
        let mut more = false;
        let after = self.after.as_deref();
        for item in items {
            let k = key(&item);
            if after.is_some_and(|a| k.as_str() <= a) {
                continue;
            }
            if data.len() == self.size {
                more = true;
                break;
            }
            data.push(render(&item));
            last_key = Some(k);
        }
        match last_key.filter(|_| more) {
            Some(k) => {
                let offset = URL_SAFE_NO_PAD.encode(k.as_bytes());
                let mut next = form_urlencoded::Serializer::new(String::new());
                next.append_pair("offset", &offset);
                for (k, v) in &self.carry {
                    next.append_pair(k, v);
                }
                json!({"data": data, "offset": offset, "next": format!("{path}?{}", next.finish())})
            }
            None => json!({"data": data, "next": null}),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Result<PageQuery, AdminError> {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        PageQuery::parse(&map)
    }

    #[test]
    fn sizes_and_tags() {
        assert_eq!(q(&[]).unwrap().size, 100);
        for bad in ["0", "1001", "x", "-1"] {
            assert_eq!(q(&[("size", bad)]).unwrap_err().status(), 400);
        }
        assert!(q(&[("tags", "a,b,c,d,e,f")]).is_err());
        assert!(q(&[("tags", "a,b/c")]).is_err());
        let t = TagFilter::parse("a,b").unwrap();
        assert!(t.matches(&["a".into(), "b".into()]) && !t.matches(&["a".into()]));
        let t = TagFilter::parse("a/b").unwrap();
        assert!(t.matches(&["b".into()]) && !t.matches(&["c".into()]));
    }

    #[test]
    fn pages_with_next() {
        let q1 = q(&[("size", "2")]).unwrap();
        let items = ["a", "b", "c"];
        let p = q1.page(items.iter(), |s| s.to_string(), |s| json!(s), "/x");
        assert_eq!(p["data"], json!(["a", "b"]));
        let next = p["next"].as_str().unwrap();
        assert!(next.starts_with("/x?offset="));
        let off = p["offset"].as_str().unwrap();
        let q2 = q(&[("size", "2"), ("offset", off)]).unwrap();
        let p = q2.page(items.iter(), |s| s.to_string(), |s| json!(s), "/x");
        assert_eq!(p["data"], json!(["c"]));
        assert!(p["next"].is_null());
    }
}
