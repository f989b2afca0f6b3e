//! Demo upstreams standing in for the seed's `user-service` and
//! `account-service`: a small HTTP server that answers every request with a
//! JSON description of it (service name, method, path, query, headers,
//! and the body's length and SHA-256, so tests can tell it arrived intact).
//! Used by the local and Docker clusters and handy in tests.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// Serves the echo upstream named `name` on `addr` until the process ends.
pub async fn serve_echo(addr: SocketAddr, name: String) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, %name, "demo upstream listening");
    loop {
        let (stream, peer) = listener.accept().await?;
        let name = name.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let name = name.clone();
                async move { Ok::<_, Infallible>(echo(&name, peer, req).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn echo(name: &str, peer: SocketAddr, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect();
    let body = match req.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let body_sha256 = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&body))
    };
    let answer = serde_json::json!({
        "service": name,
        "method": method,
        "path": path,
        "query": query,
        "headers": headers,
        "body_bytes": body.len(),
        "body_sha256": body_sha256,
        "client": peer.to_string(),
    });
    let mut resp = Response::new(Full::new(Bytes::from(answer.to_string())));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}
