//! correlation-id: gives every request an id in a header (`header_name`,
//! Kong's `Kong-Request-ID` by default), keeping one the client sent, and
//! optionally echoes it on the response (`echo_downstream`).
//!
//! Generators, as Kong's: `uuid` (a random UUID per request),
//! `uuid#counter` (a UUID chosen once per process, then `#` and a
//! counter: unique and cheap), and `tracker` (where the request came from
//! and when: client address, process id, a counter and the time).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use http::{HeaderName, HeaderValue};
use uuid::Uuid;

use super::{Plugin, Reply, RequestCtx};
use crate::model::State;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Generator {
    Uuid,
    UuidCounter,
    Tracker,
}

struct CorrelationId {
    header: HeaderName,
    generator: Generator,
    echo: bool,
}

/// The id the request carries, for the response phase and the access log.
#[derive(Clone, Debug)]
pub struct CorrelationIdValue(pub HeaderValue);

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn process_uuid() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| Uuid::new_v4().to_string())
}

fn generate(g: Generator, ctx: &RequestCtx) -> String {
    match g {
        Generator::Uuid => Uuid::new_v4().to_string(),
        Generator::UuidCounter => {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
            format!("{}#{n}", process_uuid())
        }
        Generator::Tracker => {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let ip = ctx
                .client_ip
                .map_or_else(|| "-".to_string(), |ip| ip.to_string());
            format!(
                "{ip}-{}-{n}-{}.{:03}",
                std::process::id(),
                now.as_secs(),
                now.subsec_millis()
            )
        }
    }
}

impl Plugin for CorrelationId {
    fn access(&self, ctx: &mut RequestCtx, req: &mut http::request::Parts) -> Option<Reply> {
        let value = match req.headers.get(&self.header) {
            Some(v) if !v.is_empty() => v.clone(),
            _ => {
                let id = generate(self.generator, ctx);
                // Generated ids are ASCII; the fallback is never expected.
                let v = HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("invalid"));
                req.headers.insert(self.header.clone(), v.clone());
                v
            }
        };
        ctx.extensions.insert(CorrelationIdValue(value));
        None
    }

    fn header_filter(&self, ctx: &mut RequestCtx, resp: &mut http::response::Parts) {
        if !self.echo {
            return;
        }
        if let Some(CorrelationIdValue(v)) = ctx.extensions.get::<CorrelationIdValue>() {
            resp.headers.insert(self.header.clone(), v.clone());
        }
    }
}

pub fn build(config: &serde_json::Value, _state: &State) -> Result<Arc<dyn Plugin>, String> {
    let name = config["header_name"].as_str().unwrap_or("Kong-Request-ID");
    let header = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("invalid header_name '{name}'"))?;
    let generator = match config["generator"].as_str().unwrap_or("uuid#counter") {
        "uuid" => Generator::Uuid,
        "uuid#counter" => Generator::UuidCounter,
        "tracker" => Generator::Tracker,
        other => return Err(format!("unknown generator '{other}'")),
    };
    Ok(Arc::new(CorrelationId {
        header,
        generator,
        echo: config["echo_downstream"].as_bool().unwrap_or(false),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(config: serde_json::Value, incoming: Option<&str>) -> (Option<String>, Option<String>) {
        let p = build(&config, &State::default()).unwrap();
        let mut b = http::Request::builder();
        if let Some(v) = incoming {
            b = b.header("kong-request-id", v);
        }
        let (mut parts, _) = b.body(()).unwrap().into_parts();
        let mut ctx = RequestCtx::default();
        assert!(p.access(&mut ctx, &mut parts).is_none());
        let (mut rparts, _) = http::Response::new(()).into_parts();
        p.header_filter(&mut ctx, &mut rparts);
        let get = |h: &http::HeaderMap| {
            h.get("kong-request-id")
                .map(|v| v.to_str().unwrap().to_string())
        };
        (get(&parts.headers), get(&rparts.headers))
    }

    #[test]
    fn generates_keeps_and_echoes() {
        let (up, down) = run(json!({"generator": "uuid#counter"}), None);
        let up = up.unwrap();
        assert!(up.contains('#'), "{up}");
        assert_eq!(down, None, "not echoed by default");
        let (up2, _) = run(json!({"generator": "uuid#counter"}), None);
        assert_ne!(Some(up), up2);

        let (up, down) = run(
            json!({"generator": "uuid", "echo_downstream": true}),
            Some("abc"),
        );
        assert_eq!(up.as_deref(), Some("abc"));
        assert_eq!(down.as_deref(), Some("abc"));

        let (up, _) = run(json!({"generator": "uuid"}), None);
        assert!(Uuid::parse_str(&up.unwrap()).is_ok());
        let (up, _) = run(json!({"generator": "tracker"}), None);
        assert!(up.unwrap().contains('-'));
    }

    #[test]
    fn custom_header_and_bad_config() {
        let p = build(&json!({"header_name": "X-Req"}), &State::default()).unwrap();
        let (mut parts, _) = http::Request::new(()).into_parts();
        let mut ctx = RequestCtx::default();
        p.access(&mut ctx, &mut parts);
        assert!(parts.headers.contains_key("x-req"));
        assert!(build(&json!({"header_name": "bad header"}), &State::default()).is_err());
        assert!(build(&json!({"generator": "nope"}), &State::default()).is_err());
    }
}
