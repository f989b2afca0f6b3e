//! The cluster port: Raft RPCs from peers, writes and reads forwarded to
//! the leader, and join/remove requests. Every request must carry a valid
//! HMAC of the cluster secret (`auth.rs`); others are refused and logged.

use std::convert::Infallible;
use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use openraft::errors::{Fatal, RaftError};
use openraft::raft::{SnapshotResponse, TransferLeaderResponse};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpListener;

use super::auth::AUTH_HEADER;
use super::codec::{decode, encode};
use super::network::SnapshotRequest;
use super::node::{JoinRequest, Store};
use super::types::{Snapshot, TypeConfig};

/// Largest request body accepted (a snapshot of a large config).
const MAX_BODY: usize = 512 * 1024 * 1024;

/// A handler for other node-to-node traffic on the cluster port (the
/// rate-limit gossip), given the path and the authenticated body; `None`
/// when the path is not its own. Kept abstract so the store knows nothing
/// of what else travels between nodes.
pub type Extension = Arc<dyn Fn(&str, &Bytes) -> Option<Result<(), String>> + Send + Sync>;

/// Serves the cluster port until the listener fails.
pub async fn serve(store: Store, listener: TcpListener, extension: Option<Extension>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "cluster port accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let store = store.clone();
        let extension = extension.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let store = store.clone();
                let extension = extension.clone();
                async move { Ok::<_, Infallible>(handle(store, extension, peer, req).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn plain(status: StatusCode, msg: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(msg.to_string())));
    *resp.status_mut() = status;
    resp
}

fn encoded<T: Serialize>(value: &T) -> Response<Full<Bytes>> {
    match encode(value) {
        Ok(bytes) => Response::new(Full::new(Bytes::from(bytes))),
        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn handle(
    store: Store,
    extension: Option<Extension>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let method = req.method().as_str().to_string();
    let auth = req
        .headers()
        .get(AUTH_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return plain(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
    };
    if let Err(why) = store
        .secret()
        .verify(&method, &path, &body, auth.as_deref())
    {
        tracing::warn!(%peer, %path, reason = why, "refused cluster request");
        return plain(StatusCode::UNAUTHORIZED, why);
    }
    if let Some(answer) = extension.as_ref().and_then(|ext| ext(&path, &body)) {
        return match answer {
            Ok(()) => plain(StatusCode::NO_CONTENT, ""),
            Err(e) => plain(StatusCode::BAD_REQUEST, &e),
        };
    }
    match dispatch(&store, &path, &body).await {
        Ok(resp) => resp,
        Err(e) => plain(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> std::io::Result<T> {
    decode(body)
}

async fn dispatch(
    store: &Store,
    path: &str,
    body: &[u8],
) -> std::io::Result<Response<Full<Bytes>>> {
    let raft = store.raft();
    Ok(match path {
        "/raft/append" => {
            let resp = raft.append_entries(parse(body)?).await;
            if matches!(&resp, Ok(r) if !matches!(r, openraft::raft::AppendEntriesResponse::HigherVote(_)))
            {
                store.note_leader_contact();
            }
            encoded(&resp)
        }
        "/raft/vote" => encoded(&raft.vote(parse(body)?).await),
        "/raft/pre-vote" => encoded(&raft.pre_vote(parse(body)?).await),
        "/raft/snapshot" => {
            let (vote, meta, data): SnapshotRequest = parse(body)?;
            let snapshot = Snapshot {
                meta,
                snapshot: Cursor::new(data),
            };
            let res: Result<SnapshotResponse<TypeConfig>, RaftError<TypeConfig>> = raft
                .install_full_snapshot(vote, snapshot)
                .await
                .map_err(RaftError::Fatal);
            encoded(&res)
        }
        "/raft/transfer-leader" => {
            let res: Result<TransferLeaderResponse<TypeConfig>, Fatal<TypeConfig>> =
                raft.handle_transfer_leader(parse(body)?).await;
            encoded(&res.map_err(RaftError::<TypeConfig>::Fatal))
        }
        "/cluster/write" => encoded(&store.propose_as_leader(parse(body)?).await),
        "/cluster/read-index" => encoded(&store.read_index_as_leader().await),
        "/cluster/join" => {
            let req: JoinRequest = parse(body)?;
            let res = crate::admin::Backend::add_node(store, req.node_id, req.addr, req.learner)
                .await
                .map_err(|e| e.to_string());
            encoded(&res)
        }
        "/cluster/remove" => {
            let id: u64 = parse(body)?;
            let res = crate::admin::Backend::remove_node(store, id)
                .await
                .map_err(|e| e.to_string());
            encoded(&res)
        }
        "/cluster/applied" => encoded(
            &store
                .applied()
                .borrow()
                .last_applied
                .as_ref()
                .map(|l| l.index),
        ),
        "/cluster/enforced" => encoded(&store.enforced_version()),
        _ => plain(StatusCode::NOT_FOUND, "no such cluster endpoint"),
    })
}
