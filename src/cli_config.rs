//! `raftgate config validate|apply|sync|diff|dump`: decK's verbs for
//! declarative files, acting through any node's Admin API.
//!
//! - `validate FILE` parses and checks the file locally.
//! - `apply FILE` upserts every entity of the file and deletes nothing.
//! - `sync FILE` also deletes what the file lacks (only among entities that
//!   carry every `--select-tag`, when given).
//! - `diff FILE` prints what `sync` would change and exits 2 if anything.
//! - `dump [FILE]` writes the cluster's config; applying it back changes
//!   nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::Value;
use uuid::Uuid;

use crate::cli_admin::AdminClient;
use crate::model::{declarative, relations, Entity, EntityKind};

#[derive(Subcommand, Debug)]
pub enum ConfigAction {
    /// Check a declarative file without touching the cluster.
    Validate { file: PathBuf },
    /// Upsert the file's entities; delete nothing.
    Apply { file: PathBuf },
    /// Make the cluster's config equal to the file (within --select-tag).
    Sync {
        file: PathBuf,
        #[arg(long = "select-tag")]
        select_tag: Vec<String>,
    },
    /// Show what `sync` would change; exit 2 when there are changes.
    Diff {
        file: PathBuf,
        #[arg(long = "select-tag")]
        select_tag: Vec<String>,
    },
    /// Write the cluster's config as a declarative file (stdout or FILE).
    Dump { file: Option<PathBuf> },
}

/// Runs a config command; returns the process exit code.
pub async fn run(
    target: &crate::cli_admin::AdminTarget,
    action: ConfigAction,
) -> anyhow::Result<i32> {
    let client = target.client();
    match action {
        ConfigAction::Validate { file } => {
            let text = read(&file)?;
            let config = parse(&text)?;
            println!(
                "{}: valid, {} entities",
                file.display(),
                config.entities.len()
            );
            Ok(0)
        }
        ConfigAction::Apply { file } => {
            let text = read(&file)?;
            parse(&text)?;
            post_config(&client, &text, "apply", &[]).await?;
            println!("applied {}", file.display());
            Ok(0)
        }
        ConfigAction::Sync { file, select_tag } => {
            let text = read(&file)?;
            parse(&text)?;
            post_config(&client, &text, "sync", &select_tag).await?;
            println!("synced {}", file.display());
            Ok(0)
        }
        ConfigAction::Diff { file, select_tag } => {
            let text = read(&file)?;
            let wanted = parse(&text)?;
            let tags = if select_tag.is_empty() {
                wanted.select_tags.clone()
            } else {
                select_tag
            };
            let current = fetch(&client).await?;
            let changes = diff(&current, &wanted.entities, &tags);
            for line in &changes {
                println!("{line}");
            }
            println!("{} change(s)", changes.len());
            Ok(if changes.is_empty() { 0 } else { 2 })
        }
        ConfigAction::Dump { file } => {
            let (status, body) = client.send(reqwest::Method::GET, "/config", None).await?;
            if status != 200 {
                bail!("the node answered {status}: {body}");
            }
            let yaml = serde_yaml_ng::to_string(&body["config"])?;
            match file {
                Some(path) => std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => print!("{yaml}"),
            }
            Ok(0)
        }
    }
}

fn read(file: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
}

fn parse(text: &str) -> anyhow::Result<declarative::DeclarativeConfig> {
    declarative::parse(text).map_err(|e| anyhow::anyhow!("{}", e.to_json()))
}

async fn post_config(
    client: &AdminClient,
    text: &str,
    mode: &str,
    select_tags: &[String],
) -> anyhow::Result<()> {
    let mut path = format!("/config?mode={mode}");
    if !select_tags.is_empty() {
        path.push_str(&format!("&select_tags={}", select_tags.join(",")));
    }
    let body = serde_json::json!({ "config": text });
    let (status, answer) = client
        .send(reqwest::Method::POST, &path, Some(body))
        .await?;
    if status >= 300 {
        bail!("the node answered {status}: {answer}");
    }
    Ok(())
}

async fn fetch(client: &AdminClient) -> anyhow::Result<Vec<Entity>> {
    let (status, body) = client.send(reqwest::Method::GET, "/config", None).await?;
    if status != 200 {
        bail!("the node answered {status}: {body}");
    }
    let config = declarative::parse_value(body["config"].clone())
        .map_err(|e| anyhow::anyhow!("the node's config does not parse: {}", e.to_json()))?;
    Ok(config.entities)
}

/// Comparable form: the entity's JSON without its timestamps.
fn comparable(entity: &Entity) -> Value {
    let mut v = entity.to_json();
    if let Some(map) = v.as_object_mut() {
        map.remove("created_at");
        map.remove("updated_at");
    }
    v
}

fn label(entity: &Entity) -> String {
    let v = entity.to_json();
    let name = [
        "name",
        "username",
        "custom_id",
        "key",
        "group",
        "target",
        "instance_name",
    ]
    .iter()
    .find_map(|f| v[*f].as_str().map(str::to_string))
    .unwrap_or_else(|| entity.id().to_string());
    format!("{} {}", entity.kind().collection(), name)
}

/// What `sync` would change to go from `current` to `wanted`.
pub fn diff(current: &[Entity], wanted: &[Entity], select_tags: &[String]) -> Vec<String> {
    let now: BTreeMap<(EntityKind, Uuid), &Entity> =
        current.iter().map(|e| ((e.kind(), e.id()), e)).collect();
    let next: BTreeMap<(EntityKind, Uuid), &Entity> =
        wanted.iter().map(|e| ((e.kind(), e.id()), e)).collect();
    let mut changes = Vec::new();
    for (key, entity) in &next {
        match now.get(key) {
            None => changes.push(format!("+ create {}", label(entity))),
            Some(old) if comparable(old) != comparable(entity) => {
                changes.push(format!("~ update {}", label(entity)))
            }
            Some(_) => {}
        }
    }
    for (key, entity) in &now {
        let in_scope = relations::is_config_kind(key.0)
            && select_tags
                .iter()
                .all(|t| relations::tags(entity).contains(t));
        if in_scope && !next.contains_key(key) {
            changes.push(format!("- delete {}", label(entity)));
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
_format_version: "3.0"
services:
  - name: user-service
    url: http://user-service:8080
    routes:
      - name: user-routes
        paths: [/api/users]
"#;

    #[test]
    fn diff_sees_creates_updates_and_deletes() {
        let wanted = declarative::parse(FILE).unwrap().entities;
        assert_eq!(diff(&wanted, &wanted, &[]), Vec::<String>::new());
        let created = diff(&[], &wanted, &[]);
        assert_eq!(created.len(), 2, "{created:?}");
        assert!(created.iter().all(|l| l.starts_with("+ create")));

        let changed = declarative::parse(&FILE.replace("8080", "9090"))
            .unwrap()
            .entities;
        let updates = diff(&wanted, &changed, &[]);
        assert_eq!(updates, vec!["~ update services user-service".to_string()]);

        let deletes = diff(&wanted, &[], &[]);
        assert_eq!(deletes.len(), 2);
        // Outside the selected tags nothing is deleted.
        assert!(diff(&wanted, &[], &["team-a".to_string()]).is_empty());
    }
}
