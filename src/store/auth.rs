//! Authentication of the cluster port: every request carries an HMAC-SHA256
//! over its method, path, a timestamp and the SHA-256 of its body, keyed
//! with the cluster secret. A shared secret needs no certificate authority
//! and works with plain IP literals; a node without the secret (or from
//! another cluster) cannot make a valid request, so it can neither join nor
//! speak Raft. Requests older than `MAX_SKEW_MS` are refused, which bounds
//! replays. The traffic itself is not encrypted: keep the cluster port on
//! a private network.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Header carrying `<unix millis>.<hex hmac>`.
pub const AUTH_HEADER: &str = "x-raftgate-auth";
/// How far a request's timestamp may be from the receiver's clock.
pub const MAX_SKEW_MS: i64 = 60_000;

#[derive(Clone)]
pub struct ClusterSecret {
    key: Vec<u8>,
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl ClusterSecret {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: secret.to_vec(),
        }
    }

    fn mac(&self, method: &str, path: &str, ts: i64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("hmac takes any key size");
        mac.update(method.as_bytes());
        mac.update(b"\n");
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(ts.to_string().as_bytes());
        mac.update(b"\n");
        mac.update(&Sha256::digest(body));
        mac
    }

    /// The header value authenticating a request.
    pub fn sign(&self, method: &str, path: &str, body: &[u8]) -> String {
        let ts = now_ms();
        let tag = self.mac(method, path, ts, body).finalize().into_bytes();
        format!("{ts}.{}", hex::encode(tag))
    }

    /// Checks a request's header value; `Err` says why it is refused.
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        header: Option<&str>,
    ) -> Result<(), &'static str> {
        let header = header.ok_or("missing cluster credentials")?;
        let (ts, tag) = header
            .split_once('.')
            .ok_or("malformed cluster credentials")?;
        let ts: i64 = ts.parse().map_err(|_| "malformed cluster credentials")?;
        if (now_ms() - ts).abs() > MAX_SKEW_MS {
            return Err("stale cluster credentials");
        }
        let tag = hex::decode(tag).map_err(|_| "malformed cluster credentials")?;
        self.mac(method, path, ts, body)
            .verify_slice(&tag)
            .map_err(|_| "invalid cluster credentials")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_own_signature_and_refuses_others() {
        let secret = ClusterSecret::new(b"s3cret");
        let header = secret.sign("POST", "/raft/vote", b"{}");
        assert!(secret
            .verify("POST", "/raft/vote", b"{}", Some(&header))
            .is_ok());
        // Another body, path or secret fails.
        assert!(secret
            .verify("POST", "/raft/vote", b"{ }", Some(&header))
            .is_err());
        assert!(secret
            .verify("POST", "/raft/append", b"{}", Some(&header))
            .is_err());
        let other = ClusterSecret::new(b"other");
        assert!(other
            .verify("POST", "/raft/vote", b"{}", Some(&header))
            .is_err());
        assert!(secret.verify("POST", "/raft/vote", b"{}", None).is_err());
        assert!(secret
            .verify("POST", "/raft/vote", b"{}", Some("1.zz"))
            .is_err());
        let stale = format!("{}.{}", now_ms() - 2 * MAX_SKEW_MS, "00");
        assert_eq!(
            secret.verify("POST", "/raft/vote", b"{}", Some(&stale)),
            Err("stale cluster credentials")
        );
    }
}
