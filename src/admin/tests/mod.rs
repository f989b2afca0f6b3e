//! In-process tests of the Admin API against a fake backend: a plain
//! `State` behind a mutex, applying commands with `State::apply`.

mod auth_info;
mod bodies;
mod credentials;
mod crud;
mod listener;
mod openapi_walk;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;
use uuid::Uuid;

use super::{router, AdminSettings, Backend, WriteError};
use crate::model::{Command, CommandOutput, Proposal, State};

/// A throwaway self-signed certificate and its key, for tests only.
pub const TEST_CERT: &str = include_str!("testdata/cert.pem");
pub const TEST_KEY: &str = include_str!("testdata/key.pem");

/// Test-only backend: applies every command at once to a local `State`.
#[derive(Clone, Default)]
pub struct Fake {
    state: Arc<Mutex<State>>,
    /// Commands proposed (whatever their outcome).
    pub writes: Arc<AtomicUsize>,
    pub barriers: Arc<AtomicUsize>,
    /// When set, every write and barrier fails as if no leader answered.
    pub down: Arc<std::sync::atomic::AtomicBool>,
    /// When set, `state()` shows this older state until the next barrier,
    /// as a node that has not yet applied the latest writes would.
    pub stale: Arc<Mutex<Option<State>>>,
}

impl Fake {
    /// From now until the next barrier, reads show the state as it is now.
    pub fn freeze_reads(&self) {
        let now = self.state.lock().map(|s| s.clone()).unwrap_or_default();
        *self.stale.lock().unwrap() = Some(now);
    }

    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }
}

impl Backend for Fake {
    fn write(
        &self,
        command: Command,
    ) -> impl Future<Output = Result<CommandOutput, WriteError>> + Send {
        self.writes.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return std::future::ready(Err(WriteError::Unavailable("no leader".into())));
        }
        let proposal = Proposal {
            request_id: Uuid::new_v4(),
            command,
        };
        // The skeleton `State` (imbl OrdMap of large `Entity` values)
        // overflows a 2 MiB debug-build stack on remove; the model branch's
        // `State` does not. Until it is merged, apply on a roomier thread.
        let state = self.state.clone();
        let outcome = std::thread::scope(|scope| {
            std::thread::Builder::new()
                .stack_size(64 << 20)
                .spawn_scoped(scope, || match state.lock() {
                    Ok(mut state) => state.apply(&proposal).map_err(WriteError::Rejected),
                    Err(_) => Err(WriteError::Unavailable("poisoned".into())),
                })
                .expect("spawn")
                .join()
                .unwrap_or_else(|_| Err(WriteError::Unavailable("apply panicked".into())))
        });
        std::future::ready(outcome)
    }

    fn state(&self) -> Arc<State> {
        if let Some(stale) = self.stale.lock().unwrap().as_ref() {
            return Arc::new(stale.clone());
        }
        Arc::new(self.state.lock().map(|s| s.clone()).unwrap_or_default())
    }

    fn linearizable_barrier(&self) -> impl Future<Output = Result<(), WriteError>> + Send {
        self.barriers.fetch_add(1, Ordering::SeqCst);
        let down = self.down.load(Ordering::SeqCst);
        if !down {
            *self.stale.lock().unwrap() = None;
        }
        async move {
            if down {
                Err(WriteError::Unavailable("no leader".into()))
            } else {
                Ok(())
            }
        }
    }

    fn cluster_info(&self) -> Value {
        json!({"node_id": 1, "role": "leader", "leader": 1, "members": [1]})
    }

    async fn add_node(
        &self,
        node_id: u64,
        cluster_addr: String,
        learner: bool,
    ) -> Result<Value, WriteError> {
        Ok(json!({"added": node_id, "address": cluster_addr, "learner": learner}))
    }

    async fn remove_node(&self, node_id: u64) -> Result<Value, WriteError> {
        Ok(json!({"removed": node_id}))
    }

    async fn wait_all_applied(
        &self,
        _timeout: std::time::Duration,
    ) -> Result<Vec<u64>, WriteError> {
        // One node: it applied the write before answering. When "down",
        // pretend two peers lag.
        if self.down.load(Ordering::SeqCst) {
            Ok(vec![2, 3])
        } else {
            Ok(Vec::new())
        }
    }
}

/// A router over a fresh fake backend.
pub fn app() -> (Router, Fake) {
    let fake = Fake::default();
    (router(fake.clone(), AdminSettings::new(1)), fake)
}

/// Sends one request; answers the status and the JSON body (Null if none).
pub async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    content_type: Option<&str>,
    body: impl Into<Body>,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        builder = builder.header("content-type", ct);
    }
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let request = builder.body(body.into()).expect("request");
    // Boxed so that a test making many calls keeps a small future.
    let response = Box::pin(app.clone().oneshot(request))
        .await
        .expect("infallible");
    let status = response.status();
    let bytes = Box::pin(axum::body::to_bytes(response.into_body(), usize::MAX))
        .await
        .expect("body");
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)))
    };
    (status, value)
}

pub async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
    send(app, "GET", uri, None, Body::empty(), &[]).await
}

pub async fn delete(app: &Router, uri: &str) -> (StatusCode, Value) {
    send(app, "DELETE", uri, None, Body::empty(), &[]).await
}

/// A JSON request.
pub async fn json_req(app: &Router, method: &str, uri: &str, body: Value) -> (StatusCode, Value) {
    send(
        app,
        method,
        uri,
        Some("application/json"),
        body.to_string(),
        &[],
    )
    .await
}

/// A form-urlencoded request.
pub async fn form_req(app: &Router, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
    send(
        app,
        method,
        uri,
        Some("application/x-www-form-urlencoded"),
        body.to_string(),
        &[],
    )
    .await
}

/// POSTs JSON and insists on 201; answers the entity.
pub async fn create(app: &Router, uri: &str, body: Value) -> Value {
    let (status, value) = json_req(app, "POST", uri, body).await;
    assert_eq!(status, StatusCode::CREATED, "POST {uri}: {value}");
    value
}
