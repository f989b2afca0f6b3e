//! The `raftgate` command line against a real node: decK's verbs
//! (`config validate|apply|diff|sync|dump`), `revoke` and `cluster status`,
//! with their exit codes.

mod common;

use std::path::Path;
use std::process::Output;

use common::Cluster;
use serde_json::Value;

fn raftgate(cluster: &Cluster, args: &[&str]) -> Output {
    std::process::Command::new(common::binary())
        .args(args)
        .args([
            "--admin",
            &format!("http://127.0.0.1:{}", cluster.node(1).admin),
        ])
        .env_remove("RAFTGATE_ADMIN_TOKEN")
        .output()
        .expect("run raftgate")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path.to_string_lossy().into_owned()
}

const TWO_SERVICES: &str = r#"
_format_version: "3.0"
services:
  - name: alpha
    url: http://127.0.0.1:9
    tags: [cli]
    routes:
      - name: alpha-route
        paths: [/alpha]
  - name: beta
    url: http://127.0.0.1:9
    tags: [cli]
"#;

const ONE_SERVICE: &str = r#"
_format_version: "3.0"
services:
  - name: alpha
    url: http://127.0.0.1:9
    tags: [cli]
    routes:
      - name: alpha-route
        paths: [/alpha]
"#;

#[test]
fn config_verbs_revoke_and_cluster_status() {
    let cluster = Cluster::start(1, &[]);
    let dir = tempfile::tempdir().unwrap();
    let two = write(dir.path(), "two.yaml", TWO_SERVICES);
    let one = write(dir.path(), "one.yaml", ONE_SERVICE);
    let bad = write(
        dir.path(),
        "bad.yaml",
        "_format_version: \"3.0\"\nservices:\n  - name: x\n    port: seventy\n",
    );

    let service_status = |name: &str| {
        cluster
            .get(&cluster.node(1).admin_url(&format!("/services/{name}")))
            .0
    };

    // validate: local only, names the bad field, non-zero exit.
    let out = raftgate(&cluster, &["config", "validate", &two]);
    assert!(out.status.success(), "{}", text(&out));
    let out = raftgate(&cluster, &["config", "validate", &bad]);
    assert!(!out.status.success());
    assert!(text(&out).contains("port"), "{}", text(&out));

    // apply, then diff says nothing to do (exit 0).
    let out = raftgate(&cluster, &["config", "apply", &two]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(service_status("beta"), 200);
    let out = raftgate(&cluster, &["config", "diff", &two]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // diff against a file lacking beta: exit 2 and names it; apply keeps
    // beta, sync deletes it.
    let out = raftgate(&cluster, &["config", "diff", &one]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("beta"), "{}", text(&out));
    let out = raftgate(&cluster, &["config", "apply", &one]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(service_status("beta"), 200);
    let out = raftgate(&cluster, &["config", "sync", &one]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(service_status("beta"), 404);
    assert_eq!(service_status("alpha"), 200);

    // dump, and the dump applied back changes nothing.
    let dumped = dir.path().join("dump.yaml");
    let out = raftgate(&cluster, &["config", "dump", dumped.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = raftgate(&cluster, &["config", "diff", dumped.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // revoke by jti is stored as a revocation.
    let out = raftgate(&cluster, &["revoke", "--jti", "cli-jti-1"]);
    assert!(out.status.success(), "{}", text(&out));
    let (_, list) = cluster.get(&cluster.node(1).admin_url("/jwt-revocations"));
    let jtis: Vec<&Value> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["jti"])
        .collect();
    assert!(jtis.contains(&&Value::from("cli-jti-1")), "{list}");

    // cluster status prints the cluster's view as JSON.
    let out = raftgate(&cluster, &["cluster", "status"]);
    assert!(out.status.success(), "{}", text(&out));
    let view: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(view["leader"], 1);

    // An unreachable node is an error, not a silent success.
    let out = std::process::Command::new(common::binary())
        .args(["cluster", "status", "--admin", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
