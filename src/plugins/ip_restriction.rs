//! Kong's ip-restriction plugin (priority 990): `allow` and `deny` lists of
//! IPs and CIDR ranges, IPv4 and IPv6 (an IPv4-mapped IPv6 client matches
//! IPv4 entries). As in Kong, `deny` is checked first and a non-empty
//! `allow` list then decides alone. Blocked: `status` (403) with `message`
//! (default "IP address not allowed: <ip>"). The client address is
//! `RequestCtx::client_ip`: the connection's, or, when the connecting peer
//! is one of the node's `trusted_ips`, the first untrusted
//! `X-Forwarded-For` hop from the right (`proxy::realip`).

use std::net::IpAddr;
use std::sync::Arc;

use http::StatusCode;

use super::{Plugin, Reply, RequestCtx};
use crate::model::State;

/// One network: an address and a prefix length, compared as 128-bit
/// integers (IPv4 in the low 32 bits, kept apart from IPv6 by `v4`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cidr {
    v4: bool,
    bits: u128,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
            None => (text.trim(), None),
        };
        let ip: IpAddr = addr.parse().ok()?;
        let (v4, bits, max) = match ip {
            IpAddr::V4(a) => (true, u32::from(a) as u128, 32u8),
            IpAddr::V6(a) => (false, u128::from(a), 128u8),
        };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return None;
        }
        Some(Cidr {
            v4,
            bits: bits & mask(prefix, max),
            prefix,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (v4, bits, max) = match ip {
            IpAddr::V4(a) => (true, u32::from(a) as u128, 32u8),
            IpAddr::V6(a) => (false, u128::from(a), 128u8),
        };
        v4 == self.v4 && bits & mask(self.prefix, max) == self.bits
    }
}

fn mask(prefix: u8, max: u8) -> u128 {
    if prefix == 0 {
        return 0;
    }
    let all: u128 = if max == 32 {
        u32::MAX as u128
    } else {
        u128::MAX
    };
    all & !all.checked_shr(u32::from(prefix)).unwrap_or(0)
}

pub struct IpRestriction {
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
    status: StatusCode,
    message: Option<String>,
}

fn list(config: &serde_json::Value, field: &str) -> Result<Vec<Cidr>, String> {
    let Some(items) = config.get(field).and_then(|v| v.as_array()) else {
        return Ok(Vec::new());
    };
    items
        .iter()
        .map(|v| {
            v.as_str()
                .and_then(Cidr::parse)
                .ok_or_else(|| format!("invalid ip or cidr range: {v}"))
        })
        .collect()
}

pub fn build(config: &serde_json::Value, _state: &State) -> Result<Arc<dyn Plugin>, String> {
    let allow = list(config, "allow")?;
    let deny = list(config, "deny")?;
    if allow.is_empty() && deny.is_empty() {
        return Err("at least one of allow, deny must be non-empty".into());
    }
    let status = match config.get("status").and_then(|v| v.as_u64()) {
        None => StatusCode::FORBIDDEN,
        Some(n) => u16::try_from(n)
            .ok()
            .and_then(|n| StatusCode::from_u16(n).ok())
            .ok_or_else(|| format!("invalid status {n}"))?,
    };
    let message = config
        .get("message")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    Ok(Arc::new(IpRestriction {
        allow,
        deny,
        status,
        message,
    }))
}

impl IpRestriction {
    fn blocked(&self, ip: IpAddr) -> bool {
        let mut blocked = self.deny.iter().any(|c| c.contains(ip));
        if !self.allow.is_empty() {
            blocked = !self.allow.iter().any(|c| c.contains(ip));
        }
        blocked
    }
}

impl Plugin for IpRestriction {
    fn access(&self, ctx: &mut RequestCtx, _req: &mut http::request::Parts) -> Option<Reply> {
        let reject = |shown: &str| {
            let message = self
                .message
                .clone()
                .unwrap_or_else(|| format!("IP address not allowed: {shown}"));
            Some(Reply::message(self.status, &message))
        };
        match ctx.client_ip {
            // Without an address nothing can be allowed.
            None => reject("unknown"),
            Some(ip) if self.blocked(ip) => reject(&ip.to_string()),
            Some(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(config: serde_json::Value, ip: &str) -> Option<Reply> {
        let p = build(&config, &State::default()).unwrap();
        let mut ctx = RequestCtx {
            client_ip: Some(ip.parse().unwrap()),
            ..RequestCtx::default()
        };
        let mut parts = http::Request::new(()).into_parts().0;
        p.access(&mut ctx, &mut parts)
    }

    #[test]
    fn cidrs_match_v4_v6_and_mapped() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
        let c = Cidr::parse("2001:db8::/32").unwrap();
        assert!(c.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!c.contains("2001:db9::1".parse().unwrap()));
        assert!(!c.contains("10.1.0.1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("1.2.3.4/33").is_none());
        assert!(Cidr::parse("nope").is_none());
        assert_eq!(
            Cidr::parse("1.2.3.4"),
            Cidr::parse("1.2.3.4/32"),
            "a bare IP is a /32"
        );
    }

    #[test]
    fn deny_then_allow_with_kongs_message() {
        let r = check(json!({"deny": ["127.0.0.0/8"]}), "127.0.0.1").unwrap();
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(
            &r.body[..],
            br#"{"message":"IP address not allowed: 127.0.0.1"}"#
        );
        assert!(check(json!({"deny": ["127.0.0.0/8"]}), "10.0.0.1").is_none());
        assert!(check(json!({"allow": ["::1"]}), "::1").is_none());
        assert!(check(json!({"allow": ["::1"]}), "127.0.0.1").is_some());
        let r = check(
            json!({"allow": ["10.0.0.0/8"], "status": 401, "message": "go away"}),
            "11.0.0.1",
        )
        .unwrap();
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(&r.body[..], br#"{"message":"go away"}"#);
    }
}
