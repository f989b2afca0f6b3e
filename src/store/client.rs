//! The HTTP client every node uses to call its peers' cluster ports: one
//! pooled keep-alive client, every request signed with the cluster secret.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::auth::{ClusterSecret, AUTH_HEADER};
use super::codec::{decode, encode};

/// Why a call to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The peer could not be connected to (down, or not listening).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The call was sent but its outcome is unknown (timeout, reset).
    #[error("network: {0}")]
    Network(String),
    /// The peer answered with an error status.
    #[error("peer answered {0}: {1}")]
    Status(u16, String),
}

#[derive(Clone)]
pub struct ClusterClient {
    http: Client<HttpConnector, Full<Bytes>>,
    secret: ClusterSecret,
}

impl ClusterClient {
    /// `source_ip`: local address outgoing connections bind to.
    pub fn new(secret: ClusterSecret, source_ip: Option<std::net::IpAddr>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_local_address(source_ip);
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_millis(500)));
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self { http, secret }
    }

    /// POSTs a signed body to `http://{addr}{path}`; answers the body of a
    /// 2xx answer, any other status as `CallError::Status`.
    pub async fn post(
        &self,
        addr: &str,
        path: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        let signature = self.secret.sign("POST", path, &body);
        let request = hyper::Request::post(format!("http://{addr}{path}"))
            .header(AUTH_HEADER, signature)
            .header("content-type", "application/x-raftgate")
            .body(Full::new(body))
            .map_err(|e| CallError::Network(e.to_string()))?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| {
                if e.is_connect() {
                    CallError::Unreachable(e.to_string())
                } else {
                    CallError::Network(e.to_string())
                }
            })?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| CallError::Network(e.to_string()))?
                .to_bytes();
            if !status.is_success() {
                return Err(CallError::Status(
                    status.as_u16(),
                    String::from_utf8_lossy(&bytes).into_owned(),
                ));
            }
            Ok(bytes)
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| CallError::Network(format!("timed out after {timeout:?}")))?
    }

    /// POSTs `req` to `http://{addr}{path}` and decodes the answer.
    pub async fn call<Req, Resp>(
        &self,
        addr: &str,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let body = encode(req).map_err(|e| CallError::Network(e.to_string()))?;
        let timeout = timeout + size_allowance(body.len());
        let bytes = self.post(addr, path, Bytes::from(body), timeout).await?;
        decode(&bytes).map_err(|e| CallError::Network(e.to_string()))
    }
}

/// Extra time for an RPC carrying `bytes`: openraft gives every append the
/// heartbeat interval (40 ms) as its deadline, enough for small entries but
/// not for a multi-megabyte declarative config that the follower must
/// receive, decode and fsync; without this allowance such an entry would
/// time out and be resent forever (and a loaded machine may decode
/// slowly: the allowance is generous). Small bodies get none, so a dead peer is
/// still noticed at once.
fn size_allowance(bytes: usize) -> Duration {
    const SMALL: usize = 64 * 1024;
    if bytes <= SMALL {
        return Duration::ZERO;
    }
    Duration::from_secs(2) + Duration::from_millis((bytes / (1024 * 1024)) as u64 * 500)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_bodies_get_time_to_travel() {
        assert_eq!(size_allowance(1024), Duration::ZERO);
        assert_eq!(size_allowance(64 * 1024), Duration::ZERO);
        assert_eq!(size_allowance(100 * 1024), Duration::from_secs(2));
        assert_eq!(size_allowance(20 * 1024 * 1024), Duration::from_secs(12));
    }
}
