//! The replicated store, end to end: real nodes on loopback forming a
//! cluster, losing and regaining members, and keeping every acknowledged
//! write.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Cluster, SECRET};
use serde_json::{json, Value};

fn service_on(cluster: &Cluster, node: u64, id: &str) -> (u16, Value) {
    cluster.get(&cluster.node(node).admin_url(&format!("/services/{id}")))
}

/// Polls until `node` has the service, or fails after a few seconds.
fn assert_has_service(cluster: &Cluster, node: u64, id: &str, name: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = service_on(cluster, node, id);
        if status == 200 {
            assert_eq!(body["name"], name, "node {node} has another body");
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node {node} lacks service {name} ({status})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn write_through_a_follower_is_readable_on_every_node() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader(Duration::from_secs(10));
    let follower = (1..=3).find(|id| *id != leader).unwrap();

    let (status, body) = cluster.create_service(follower, "via-follower");
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    // Read-your-writes on the node that took the write: no polling.
    assert_eq!(service_on(&cluster, follower, &id).0, 200);
    for node in 1..=3 {
        assert_has_service(&cluster, node, &id, "via-follower");
    }
    let view = cluster.cluster_view(follower);
    assert_eq!(view["nodes"].as_array().unwrap().len(), 3);
    assert_eq!(view["leader"].as_u64(), Some(leader));
}

#[test]
fn leader_killed_new_leader_elected_and_old_leader_catches_up() {
    let mut cluster = Cluster::start(3, &[]);
    let old_leader = cluster.leader(Duration::from_secs(10));
    let (status, before) = cluster.create_service(old_leader, "before-kill");
    assert_eq!(status, 201);

    cluster.node_mut(old_leader).kill();
    let survivors: Vec<u64> = (1..=3).filter(|id| *id != old_leader).collect();
    let new_leader = cluster.leader(Duration::from_secs(10));
    assert_ne!(new_leader, old_leader);

    // Writes through every surviving node succeed.
    let mut written = Vec::new();
    for node in &survivors {
        let (status, body) = cluster.create_service(*node, &format!("after-kill-{node}"));
        assert_eq!(status, 201, "write through node {node}: {body}");
        written.push((
            body["id"].as_str().unwrap().to_string(),
            format!("after-kill-{node}"),
        ));
    }

    cluster.restart(old_leader);
    cluster.wait_ready_all(Duration::from_secs(20));
    assert_has_service(
        &cluster,
        old_leader,
        before["id"].as_str().unwrap(),
        "before-kill",
    );
    for (id, name) in &written {
        assert_has_service(&cluster, old_leader, id, name);
    }
}

#[test]
fn a_fourth_node_joins_through_a_snapshot() {
    // Snapshot every 10 entries so that the log the newcomer needs is gone.
    let mut cluster = Cluster::start(3, &["--snapshot-every", "10"]);
    let mut ids = Vec::new();
    for i in 0..40 {
        let (status, body) = cluster.create_service(1 + (i % 3), &format!("svc-{i}"));
        assert_eq!(status, 201);
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    let view = cluster.cluster_view(1);
    assert!(
        view["snapshot_index"].as_u64().unwrap_or(0) > 0,
        "no snapshot: {view}"
    );

    let join_via = cluster.node(2).cluster_addr();
    let mut newcomer = cluster.new_node(4, vec!["--join".into(), join_via]);
    newcomer.start(&cluster.secret_file);
    cluster.nodes.push(newcomer);
    cluster.wait_ready_all(Duration::from_secs(30));
    for (i, id) in ids.iter().enumerate() {
        assert_has_service(&cluster, 4, id, &format!("svc-{i}"));
    }
    let view = cluster.cluster_view(4);
    let roles: Vec<(u64, String)> = view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["id"].as_u64().unwrap(),
                n["role"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(roles.contains(&(4, "voter".to_string())), "{roles:?}");
    // The newcomer takes writes too.
    assert_eq!(cluster.create_service(4, "from-newcomer").0, 201);
}

#[test]
fn full_cluster_stop_and_start_keeps_state() {
    let mut cluster = Cluster::start(3, &[]);
    let mut ids = Vec::new();
    for i in 0..10 {
        let (status, body) = cluster.create_service(1 + (i % 3), &format!("keep-{i}"));
        assert_eq!(status, 201);
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    for id in 1..=3 {
        cluster.node_mut(id).stop();
    }
    for id in 1..=3 {
        cluster.restart(id);
    }
    cluster.wait_ready_all(Duration::from_secs(30));
    for node in 1..=3 {
        for (i, id) in ids.iter().enumerate() {
            assert_has_service(&cluster, node, id, &format!("keep-{i}"));
        }
    }
    assert_eq!(cluster.create_service(2, "after-restart").0, 201);
}

#[test]
fn no_acknowledged_write_is_lost_when_the_leader_dies_mid_stream() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.leader(Duration::from_secs(10));
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let ports: Vec<(u64, u16)> = cluster.nodes.iter().map(|n| (n.id, n.admin)).collect();

    let writers: Vec<_> = (0..8)
        .map(|w| {
            let acked = acked.clone();
            let ports = ports.clone();
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(15))
                    .build()
                    .unwrap();
                for i in 0..25 {
                    let (_, port) = ports[(w + i) % ports.len()];
                    let name = format!("w{w}-{i}");
                    let resp = http
                        .post(format!("http://127.0.0.1:{port}/services"))
                        .json(&json!({"name": name, "host": "example.com"}))
                        .send();
                    if let Ok(resp) = resp {
                        if resp.status().as_u16() == 201 {
                            let body: Value = resp.json().unwrap();
                            acked
                                .lock()
                                .unwrap()
                                .push((body["id"].as_str().unwrap().to_string(), name));
                        }
                    }
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(300));
    cluster.node_mut(leader).kill();
    for w in writers {
        w.join().unwrap();
    }
    cluster.restart(leader);
    cluster.wait_ready_all(Duration::from_secs(30));
    cluster.wait_converged(Duration::from_secs(20));

    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 100,
        "too few writes acknowledged: {}",
        acked.len()
    );
    for node in 1..=3 {
        for (id, name) in &acked {
            let (status, body) = service_on(&cluster, node, id);
            assert_eq!(status, 200, "node {node} lost acknowledged write {name}");
            assert_eq!(body["name"], name.as_str());
        }
    }
}

#[test]
fn cluster_port_refuses_requests_without_the_secret() {
    let mut cluster = Cluster::start(3, &[]);
    let http = reqwest::blocking::Client::new();
    let url = format!("http://{}/raft/vote", cluster.node(1).cluster_addr());
    // No credentials.
    let resp = http.post(&url).body(vec![1u8, b'{', b'}']).send().unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // Forged credentials.
    let resp = http
        .post(&url)
        .header("x-raftgate-auth", "1700000000000.deadbeef")
        .body(vec![1u8])
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(cluster
        .node(1)
        .log_text()
        .contains("refused cluster request"));

    // A node with another cluster's secret cannot join.
    let other_secret = cluster.dir.path().join("other-secret");
    std::fs::write(&other_secret, format!("{SECRET}-but-another-cluster")).unwrap();
    let mut stranger = cluster.new_node(9, vec!["--join".into(), cluster.node(1).cluster_addr()]);
    stranger.start(&other_secret);
    std::thread::sleep(Duration::from_secs(3));
    let members: BTreeSet<u64> = cluster.cluster_view(1)["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_u64().unwrap())
        .collect();
    assert_eq!(members, BTreeSet::from([1, 2, 3]));
    assert!(stranger.log_text().contains("join"));
    stranger.kill();
    cluster.nodes.push(stranger);
    let _ = cluster.node_mut(9);
}

#[test]
fn a_declarative_config_of_megabytes_replicates_to_every_node() {
    // One Raft entry of several megabytes: more than a follower can take
    // within openraft's per-append deadline (the heartbeat interval), so
    // the cluster client must give large bodies time to travel.
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader(Duration::from_secs(10));
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let consumers: Vec<Value> = (0..3000)
        .map(|i| {
            json!({
                "username": format!("user-{i}"),
                "jwt_secrets": [{"key": format!("key-{i}"), "secret": format!("secret-{i:032}")}],
            })
        })
        .collect();
    let doc = json!({"_format_version": "3.0", "consumers": consumers});
    // Not a latency test: a loaded debug build may take a while to apply it.
    let http = common::client_with_token(None, Duration::from_secs(120));
    let (status, body) = match http
        .post(cluster.node(follower).admin_url("/config"))
        .json(&json!({"config": doc.to_string()}))
        .send()
    {
        Ok(r) => (r.status().as_u16(), r.json().unwrap_or(Value::Null)),
        Err(e) => (0, Value::String(e.to_string())),
    };
    if status != 201 {
        for node in &cluster.nodes {
            let log = node.log_text();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            eprintln!(
                "--- node {} log, newest first:\n{}",
                node.id,
                tail.join("\n")
            );
        }
    }
    assert_eq!(
        status,
        201,
        "{}",
        body.to_string().chars().take(300).collect::<String>()
    );
    cluster.wait_converged(Duration::from_secs(30));
    for node in 1..=3 {
        let (status, consumer) = cluster.get(&cluster.node(node).admin_url("/consumers/user-2999"));
        assert_eq!(status, 200, "node {node}");
        assert_eq!(consumer["username"], "user-2999");
        let (_, jwts) = cluster.get(&cluster.node(node).admin_url("/consumers/user-2999/jwt"));
        assert_eq!(jwts["data"][0]["key"], "key-2999", "node {node}");
    }
}
