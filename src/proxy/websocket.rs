//! WebSocket (and any HTTP/1.1 `Upgrade`) pass-through: once the upstream
//! answers 101, both upgraded connections are spliced byte for byte.

use http::{header, HeaderMap, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::forward::Upstream;

/// Whether the request asks to switch protocols.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Splices the client's and the upstream's upgraded connections once both
/// are ready (after the 101 has reached the client).
pub fn tunnel(client: OnUpgrade, upstream: &mut Response<Upstream>) {
    let Some(mut upstream) = upstream.body_mut().take_upgrade() else {
        tracing::debug!("upgrade answered by an upstream that cannot switch");
        return;
    };
    tokio::spawn(async move {
        let client = match client.await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(error = %e, "upgraded connection ended");
        }
    });
}
