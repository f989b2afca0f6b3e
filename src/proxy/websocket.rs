//! WebSocket (and any HTTP/1.1 `Upgrade`) pass-through: once the upstream
//! answers 101, both upgraded connections are spliced byte for byte. The
//! HTTP/1.1 server (`h1server`) offers the client's side of a request that
//! asks to switch; HTTP/2 requests never do.

use http::Response;

use super::forward::Upstream;
use super::h1server::Upgrade;

/// Splices the client's and the upstream's upgraded connections once both
/// are ready (after the 101 has reached the client).
pub fn tunnel(client: Upgrade, upstream: &mut Response<Upstream>) {
    let Some(mut upstream) = upstream.body_mut().take_upgrade() else {
        tracing::debug!("upgrade answered by an upstream that cannot switch");
        return;
    };
    tokio::spawn(async move {
        let Ok(mut client) = client.await else {
            tracing::debug!("upgrade failed: the client connection was not handed over");
            return;
        };
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(error = %e, "upgraded connection ended");
        }
    });
}
