//! `raftgate revoke`: revokes JWTs cluster-wide through any node's Admin
//! API (`POST /jwt-revocations`): one token by its `jti` or whole (sent so
//! the node stores only its SHA-256), every token of a consumer issued
//! before an instant, or every token of a credential. With `--wait-all`
//! the answer comes once every live node enforces the revocation.

use anyhow::bail;
use clap::{ArgGroup, Args};
use serde_json::{json, Map, Value};

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("what").required(true).args(["jti", "jwt", "consumer", "credential"])))]
pub struct RevokeArgs {
    #[command(flatten)]
    pub target: crate::cli_admin::AdminTarget,
    /// Revoke the token whose `jti` claim is this.
    #[arg(long)]
    pub jti: Option<String>,
    /// Revoke this very token (only its SHA-256 is stored).
    #[arg(long)]
    pub jwt: Option<String>,
    /// Revoke every token of this consumer (id or username) issued before
    /// `--issued-before` (default: now).
    #[arg(long)]
    pub consumer: Option<String>,
    /// Revoke every token of this jwt credential (id or key).
    #[arg(long)]
    pub credential: Option<String>,
    /// Unix seconds: with --consumer or --credential, only tokens whose
    /// `iat` is earlier.
    #[arg(long)]
    pub issued_before: Option<i64>,
    /// Unix seconds after which the entry may be purged.
    #[arg(long)]
    pub expires_at: Option<i64>,
    /// Answer only once every live node enforces it.
    #[arg(long)]
    pub wait_all: bool,
}

/// The `/jwt-revocations` body for these arguments.
pub fn body(args: &RevokeArgs) -> anyhow::Result<Value> {
    let mut body = Map::new();
    let pairs = [
        ("jti", &args.jti),
        ("token", &args.jwt),
        ("consumer", &args.consumer),
        ("credential", &args.credential),
    ];
    for (field, value) in pairs {
        if let Some(v) = value {
            body.insert(field.into(), json!(v));
        }
    }
    if let Some(t) = args.issued_before {
        if args.consumer.is_none() && args.credential.is_none() {
            bail!("--issued-before goes with --consumer or --credential");
        }
        body.insert("issued_before".into(), json!(t));
    }
    if let Some(t) = args.expires_at {
        body.insert("expires_at".into(), json!(t));
    }
    Ok(Value::Object(body))
}

pub async fn run(args: RevokeArgs) -> anyhow::Result<()> {
    let client = args.target.client();
    let path = if args.wait_all {
        "/jwt-revocations?wait=all"
    } else {
        "/jwt-revocations"
    };
    let (status, answer) = client
        .send(reqwest::Method::POST, path, Some(body(&args)?))
        .await?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    if status >= 400 {
        bail!("the node answered {status}");
    }
    Ok(())
}
