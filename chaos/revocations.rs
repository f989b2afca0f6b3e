//! The revocation part of the chaos workload: a consumer with an HS256
//! credential behind a jwt-protected route, a stream of tokens revoked by
//! `jti` through every node in turn, and the rule the checker enforces: a
//! token whose revocation was acknowledged is never accepted again by a
//! node connected to the majority once `GRACE` has passed, and by no node
//! at all after the scenario heals. A node coming back (from a partition,
//! a pause or a restart) is judged `GRACE` after its return: while it was
//! out it could not learn of the revocation. A resumed process in
//! particular serves what it had applied before its pause until the
//! leader's next append reaches it (a few hundred ms on a busy machine).
//!
//! Tokens are signed here by hand (HMAC-SHA256 over base64url segments),
//! independently of the gateway's verifier.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::common::Cluster;
use crate::workload::{Down, Status};

/// Path of the jwt-protected route the harness creates.
pub const JWT_PATH: &str = "/chaos-jwt";
const KEY: &str = "chaos-key";
const SECRET: &str = "chaos-secret-0123456789abcdef0123";
/// How long after its acknowledgement a revocation may still be missing
/// on a connected node (apply lag under the scenario's faults).
pub const GRACE: Duration = Duration::from_secs(2);
const PAUSE: Duration = Duration::from_millis(100);

/// Creates the consumer, its credential, the route and its jwt plugin.
pub fn setup(cluster: &Cluster, service: &str) {
    let admin = |path: &str| cluster.node(1).admin_url(path);
    let steps = [
        (admin("/consumers"), json!({"username": "chaos-user"})),
        (
            admin("/consumers/chaos-user/jwt"),
            json!({"key": KEY, "secret": SECRET, "algorithm": "HS256"}),
        ),
        (
            admin(&format!("/services/{service}/routes")),
            json!({"name": "chaos-jwt", "paths": [JWT_PATH]}),
        ),
        (admin("/routes/chaos-jwt/plugins"), json!({"name": "jwt"})),
    ];
    for (url, body) in steps {
        let (status, answer) = cluster.post(&url, &body);
        assert_eq!(status, 201, "{url}: {answer}");
    }
}

/// An HS256 token for the chaos consumer with this `jti`.
pub fn token(jti: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({"iss": KEY, "jti": jti, "exp": now + 3600});
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// One revocation as the workload saw it.
#[derive(Clone, Debug)]
pub struct Revocation {
    pub jti: String,
    pub status: Status,
}

#[derive(Default, Clone)]
pub struct RevocationHistory {
    pub issued: Vec<Revocation>,
    /// "jti accepted by node N, T ms after its acknowledgement".
    pub accepted_after_ack: Vec<String>,
}

impl RevocationHistory {
    pub fn acknowledged(&self) -> impl Iterator<Item = &Revocation> {
        self.issued.iter().filter(|r| r.status == Status::Ok)
    }
}

/// Whether `node`'s proxy accepts `token` (a 200 from the upstream).
fn accepted(http: &reqwest::blocking::Client, proxy_port: u16, token: &str) -> bool {
    http.get(format!("http://127.0.0.1:{proxy_port}{JWT_PATH}"))
        .bearer_auth(token)
        .send()
        .is_ok_and(|r| r.status().as_u16() == 200)
}

/// Revokes a new token every `PAUSE` through the nodes in turn, and probes
/// the recent acknowledged ones on every connected node.
pub fn spawn(
    cluster: &Cluster,
    scenario: &str,
    down: Down,
    cut_off: Down,
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<RevocationHistory>>,
) -> JoinHandle<()> {
    let nodes: Vec<(u64, u16, u16)> = cluster
        .nodes
        .iter()
        .map(|n| (n.id, n.admin, n.proxy))
        .collect();
    let token_header = cluster.admin_token.clone();
    let scenario = scenario.to_string();
    std::thread::spawn(move || {
        let admin =
            crate::common::client_with_token(token_header.as_deref(), Duration::from_secs(5));
        let proxy = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        // When each node was last seen down or cut off: a node rejoining
        // the majority is judged only once it has had GRACE to catch up.
        let mut last_out: HashMap<u64, Instant> = HashMap::new();
        let connected = || -> Vec<(u64, u16, u16)> {
            let out: BTreeSet<u64> = [&down, &cut_off]
                .iter()
                .flat_map(|d| d.lock().unwrap().clone())
                .collect();
            nodes
                .iter()
                .filter(|(id, _, _)| !out.contains(id))
                .copied()
                .collect()
        };
        let mut acked: Vec<(String, Instant)> = Vec::new();
        let mut i = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let targets = connected();
            if let Some((_, admin_port, _)) = targets.get(i % targets.len().max(1)) {
                let jti = format!("chaos-{scenario}-{i}");
                let status = match admin
                    .post(format!("http://127.0.0.1:{admin_port}/jwt-revocations"))
                    .json(&json!({"jti": jti}))
                    .send()
                {
                    Ok(r) if r.status().as_u16() == 201 => Status::Ok,
                    Ok(r) if r.status().is_client_error() => Status::Failed,
                    Err(e) if e.is_connect() => Status::Failed,
                    _ => Status::Unknown,
                };
                if status == Status::Ok {
                    acked.push((jti.clone(), Instant::now()));
                }
                history
                    .lock()
                    .unwrap()
                    .issued
                    .push(Revocation { jti, status });
            }
            i += 1;
            for d in [&down, &cut_off] {
                for id in d.lock().unwrap().iter() {
                    last_out.insert(*id, Instant::now());
                }
            }
            // The three latest revocations past their grace period.
            let due: Vec<&(String, Instant)> = acked
                .iter()
                .rev()
                .filter(|(_, at)| at.elapsed() >= GRACE)
                .take(3)
                .collect();
            for (jti, at) in due {
                let token = token(jti);
                let judged = connected()
                    .into_iter()
                    .filter(|(id, _, _)| last_out.get(id).is_none_or(|t| t.elapsed() >= GRACE));
                for (id, _, proxy_port) in judged {
                    let taken = accepted(&proxy, proxy_port, &token);
                    // Cut off while the request was in flight: not judged.
                    if taken && connected().iter().any(|(n, _, _)| *n == id) {
                        history.lock().unwrap().accepted_after_ack.push(format!(
                            "{jti} accepted by node {id} {} ms after its acknowledgement",
                            at.elapsed().as_millis()
                        ));
                    }
                }
            }
            std::thread::sleep(PAUSE);
        }
    })
}

/// After the scenario healed: every acknowledged revocation is enforced by
/// every running node, and a token never revoked still passes (so the
/// probe route really checks tokens).
pub fn check(cluster: &Cluster, history: &RevocationHistory) -> Vec<String> {
    let mut errors: Vec<String> = history.accepted_after_ack.iter().take(5).cloned().collect();
    if history.accepted_after_ack.len() > 5 {
        errors.push(format!(
            "… {} revoked tokens accepted in all",
            history.accepted_after_ack.len()
        ));
    }
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let fresh = token("chaos-never-revoked");
    for node in cluster.nodes.iter().filter(|n| n.is_running()) {
        if !accepted(&http, node.proxy, &fresh) {
            errors.push(format!("node {}: a valid token is refused", node.id));
        }
        let taken: Vec<&str> = history
            .acknowledged()
            .filter(|r| accepted(&http, node.proxy, &token(&r.jti)))
            .map(|r| r.jti.as_str())
            .collect();
        if !taken.is_empty() {
            errors.push(format!(
                "node {}: {} revoked tokens accepted after healing, e.g. {}",
                node.id,
                taken.len(),
                taken[0]
            ));
        }
    }
    errors
}
