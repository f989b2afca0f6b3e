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

/// Reads an admin tokens file: one `role:token` per line (`admin` or
/// `read-only`), blank lines and `#` comments ignored. Tokens are hashed
/// at once; errors name the line, never the token.
pub fn parse_tokens(text: &str) -> Result<Vec<(String, Role)>, String> {
    let mut tokens = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (role, token) = line
            .split_once(':')
            .ok_or_else(|| format!("admin tokens line {}: expected role:token", index + 1))?;
        let role: Role = role
            .trim()
            .parse()
            .map_err(|e| format!("admin tokens line {}: {e}", index + 1))?;
        let token = token.trim();
        if token.is_empty() {
            return Err(format!("admin tokens line {}: empty token", index + 1));
        }
        tokens.push((sha256_hex(token), role));
    }
    Ok(tokens)
}

/// Whether an admin listener on `addr` must require tokens (anything but
/// loopback, as the design says).
pub fn tokens_required_for(addr: &std::net::SocketAddr) -> bool {
    !addr.ip().is_loopback()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_file() {
        let text = "# comment\nadmin: s3cret\n\nread-only:viewer\n";
        let tokens = parse_tokens(text).unwrap();
        assert_eq!(
            tokens,
            vec![
                (sha256_hex("s3cret"), Role::Admin),
                (sha256_hex("viewer"), Role::ReadOnly)
            ]
        );
        let err = parse_tokens("root:hunter2").unwrap_err();
        assert!(err.contains("line 1") && !err.contains("hunter2"), "{err}");
        assert!(parse_tokens("no-colon").is_err());
        assert!(parse_tokens("admin:").is_err());
        assert!(tokens_required_for(&"0.0.0.0:8001".parse().unwrap()));
        assert!(!tokens_required_for(&"127.0.0.1:8001".parse().unwrap()));
        assert!(!tokens_required_for(&"[::1]:8001".parse().unwrap()));
    }
}
