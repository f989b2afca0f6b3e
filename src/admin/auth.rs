//! Admin tokens: `Kong-Admin-Token: <t>` or `Authorization: Bearer <t>`,
//! checked against SHA-256 hashes configured per node, each with a role.
//! Token values are never logged or kept in clear.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::credentials::sha256_hex;
use super::errors::AdminError;
use super::AdminSettings;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Read and write.
    Admin,
    /// GET, HEAD and OPTIONS only.
    ReadOnly,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "read-only" | "readonly" | "read_only" => Ok(Role::ReadOnly),
            other => Err(format!("unknown admin role '{other}' (admin or read-only)")),
        }
    }
}

fn presented_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(t) = headers
        .get("kong-admin-token")
        .and_then(|v| v.to_str().ok())
    {
        return Some(t.trim());
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Equal-length comparison whose time does not depend on where the inputs
/// differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// The role of the token in `headers`, if it is a known one.
pub fn role_of(settings: &AdminSettings, headers: &HeaderMap) -> Option<Role> {
    let token = presented_token(headers)?;
    let hash = sha256_hex(token);
    let mut found = None;
    // Every configured hash is compared, so timing says nothing about which.
    for (known, role) in &settings.tokens {
        if same(&hash, &known.to_ascii_lowercase()) && found.is_none() {
            found = Some(*role);
        }
    }
    found
}

fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Middleware: 401 without a known token, 403 for a read-only token on a
/// write, when the node requires tokens.
pub async fn require_token(
    State(settings): State<Arc<AdminSettings>>,
    request: Request,
    next: Next,
) -> Response {
    if !settings.require_tokens {
        return next.run(request).await;
    }
    match role_of(&settings, request.headers()) {
        None => AdminError::message(StatusCode::UNAUTHORIZED, "Unauthorized").into_response(),
        Some(Role::ReadOnly) if !is_read(request.method()) => AdminError::message(
            StatusCode::FORBIDDEN,
            "Forbidden: this admin token is read-only",
        )
        .into_response(),
        Some(_) => next.run(request).await,
    }
}
