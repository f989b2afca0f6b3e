//! CLI commands that act through a node's Admin API.

use anyhow::{bail, Context};
use serde_json::Value;

use crate::cli::ClusterAction;

/// Which node's Admin API a CLI command talks to, and with what token.
#[derive(clap::Args, Debug, Clone)]
pub struct AdminTarget {
    /// Admin API of any node.
    #[arg(
        long,
        env = "RAFTGATE_ADMIN_URL",
        default_value = "http://127.0.0.1:8001",
        global = true
    )]
    pub admin: String,
    /// Admin token, when the node requires one.
    #[arg(long, env = "RAFTGATE_ADMIN_TOKEN", global = true)]
    pub token: Option<String>,
}

impl AdminTarget {
    pub fn client(&self) -> AdminClient {
        AdminClient::new(&self.admin, self.token.as_deref())
    }
}

/// A small Admin API client.
pub struct AdminClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl AdminClient {
    pub fn new(base: &str, token: Option<&str>) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            token: token.map(str::to_string),
            http: reqwest::Client::new(),
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(token) = &self.token {
            req = req.header("Kong-Admin-Token", token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("calling {}", self.base))?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, value))
    }
}

fn print_or_fail((status, body): (u16, Value)) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&body)?);
    if status >= 400 {
        bail!("the node answered {status}");
    }
    Ok(())
}

pub async fn cluster(target: &AdminTarget, action: ClusterAction) -> anyhow::Result<()> {
    let client = target.client();
    let answer = match action {
        ClusterAction::Status => client.send(reqwest::Method::GET, "/cluster", None).await?,
        ClusterAction::Join {
            node_id,
            address,
            learner,
        } => {
            let body =
                serde_json::json!({"node_id": node_id, "address": address, "learner": learner});
            client
                .send(reqwest::Method::POST, "/cluster/nodes", Some(body))
                .await?
        }
        ClusterAction::Remove { node_id } => {
            client
                .send(
                    reqwest::Method::DELETE,
                    &format!("/cluster/nodes/{node_id}"),
                    None,
                )
                .await?
        }
    };
    print_or_fail(answer)
}
