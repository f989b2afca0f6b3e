//! Admin tokens (401/403), `GET /`, `GET /status`, the cluster endpoints
//! and `/config`.

use axum::body::Body;
use axum::http::StatusCode;
use serde_json::json;

use super::*;
use crate::admin::Role;

fn guarded() -> Router {
    let mut settings = AdminSettings::new(7)
        .with_token("admin-secret", Role::Admin)
        .with_token("viewer-secret", Role::ReadOnly);
    settings.require_tokens = true;
    router(Fake::default(), settings)
}

#[tokio::test]
async fn tokens_and_roles() {
    let app = guarded();
    let body = || json!({"username": "u"}).to_string();
    let ct = Some("application/json");

    let (status, err) = send(&app, "GET", "/services", None, Body::empty(), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(err, json!({"message": "Unauthorized"}));
    let wrong = [("kong-admin-token", "nope")];
    assert_eq!(
        send(&app, "GET", "/services", None, Body::empty(), &wrong)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&app, "POST", "/consumers", ct, body(), &wrong).await.0,
        StatusCode::UNAUTHORIZED
    );

    let viewer = [("kong-admin-token", "viewer-secret")];
    assert_eq!(
        send(&app, "GET", "/services", None, Body::empty(), &viewer)
            .await
            .0,
        StatusCode::OK
    );
    let (status, err) = send(&app, "POST", "/consumers", ct, body(), &viewer).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(err["message"].as_str().unwrap().starts_with("Forbidden"));

    let admin = [("authorization", "Bearer admin-secret")];
    assert_eq!(
        send(&app, "POST", "/consumers", ct, body(), &admin).await.0,
        StatusCode::CREATED
    );
    let admin = [("kong-admin-token", "admin-secret")];
    assert_eq!(
        send(&app, "DELETE", "/consumers/u", None, Body::empty(), &admin)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    // Unknown paths are not revealed without a token either.
    assert_eq!(
        send(&app, "GET", "/nothing", None, Body::empty(), &[])
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn tokens_not_required_on_loopback_settings() {
    let (app, _) = app();
    assert_eq!(get(&app, "/services").await.0, StatusCode::OK);
}

#[tokio::test]
async fn root_and_status() {
    let (app, _) = app();
    create(&app, "/plugins", json!({"name": "prometheus"})).await;
    let (status, root) = get(&app, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(root["tagline"], "Welcome to raftgate");
    assert_eq!(root["edition"], "community");
    assert_eq!(root["node_id"], 1);
    assert!(root["version"].is_string() && root["hostname"].is_string());
    assert_eq!(root["plugins"]["enabled_in_cluster"], json!(["prometheus"]));
    assert_eq!(
        root["plugins"]["available_on_server"]["jwt"]["priority"],
        1450
    );
    assert_eq!(root["cluster"]["role"], "leader");

    let (status, st) = get(&app, "/status").await;
    assert_eq!(status, StatusCode::OK);
    // Three requests so far: the POST, `GET /` and this one.
    assert_eq!(st["server"]["total_requests"], 3);
    assert!(st["server"]["connections_active"].is_u64());
    assert!(st["memory"].is_object());
    let hash = st["configuration_hash"].as_str().unwrap().to_string();
    assert_eq!(hash.len(), 32);
    create(&app, "/consumers", json!({"username": "x"})).await;
    assert_ne!(get(&app, "/status").await.1["configuration_hash"], hash);
    assert_eq!(st["cluster"]["leader"], 1);
}

#[tokio::test]
async fn cluster_membership() {
    let (app, _) = app();
    assert_eq!(get(&app, "/cluster").await.1["members"], json!([1]));
    let (status, added) = json_req(
        &app,
        "POST",
        "/cluster/nodes",
        json!({"node_id": 4, "address": "10.0.0.4:8005", "learner": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{added}");
    assert_eq!(
        added,
        json!({"added": 4, "address": "10.0.0.4:8005", "learner": true})
    );
    let (status, _) = form_req(&app, "POST", "/cluster/nodes", "node_id=5&address=h:1").await;
    assert_eq!(status, StatusCode::OK);
    let (status, err) = json_req(
        &app,
        "POST",
        "/cluster/nodes",
        json!({"node_id": "x", "address": "a"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["fields"], json!({"node_id": "expected an integer"}));
    assert_eq!(
        delete(&app, "/cluster/nodes/4").await,
        (StatusCode::OK, json!({"removed": 4}))
    );
    assert_eq!(
        delete(&app, "/cluster/nodes/x").await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn config_dump() {
    let (app, _) = app();
    create(&app, "/services", json!({"name": "s", "host": "h"})).await;
    let (status, dump) = get(&app, "/config").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(dump["config"]["_format_version"], "3.0");
    assert_eq!(dump["config"]["services"][0]["name"], "s");
    // Unparsable and empty bodies are refused before the parser runs.
    let (status, _) = send(&app, "POST", "/config", Some("application/json"), "{", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = send(&app, "POST", "/config", Some("text/yaml"), " ", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

const CONFIG_YAML: &str = r#"
_format_version: "3.0"
services:
- name: users
  url: http://users.internal:8080
  routes:
  - name: users-route
    paths: [/users]
consumers:
- username: mobile-app
  jwt_secrets:
  - key: mobile-key
    secret: my-secret-key
"#;

#[tokio::test]
async fn post_config_replaces_the_configuration() {
    let (app, _) = app();
    create(&app, "/services", json!({"name": "old", "host": "h"})).await;
    let (status, body) = send(&app, "POST", "/config", Some("text/yaml"), CONFIG_YAML, &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(get(&app, "/services/old").await.0, StatusCode::NOT_FOUND);
    let (_, svc) = get(&app, "/services/users").await;
    assert_eq!(
        (&svc["host"], &svc["port"]),
        (&json!("users.internal"), &json!(8080))
    );
    assert_eq!(
        get(&app, "/routes/users-route").await.1["service"]["id"],
        svc["id"]
    );
    assert_eq!(
        get(&app, "/jwts/mobile-key").await.1["secret"],
        "my-secret-key"
    );

    // The same file as JSON under `config`: same ids, nothing else changes.
    let doc: serde_json::Value = serde_yaml_ng::from_str(CONFIG_YAML).unwrap();
    let (status, _) = json_req(&app, "POST", "/config", json!({ "config": doc })).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(get(&app, "/services/users").await.1["id"], svc["id"]);
    let (_, dump) = get(&app, "/config").await;
    assert_eq!(dump["config"]["services"].as_array().unwrap().len(), 1);

    // A bad document is a 400 and changes nothing.
    let (status, err) =
        json_req(&app, "POST", "/config", json!({"config": {"services": []}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(get(&app, "/services/users").await.0, StatusCode::OK);
}

#[test]
fn settings_debug_hides_token_hashes() {
    let settings = AdminSettings::new(1).with_token("t0ken", Role::Admin);
    let shown = format!("{settings:?}");
    let hash = crate::admin::credentials::sha256_hex("t0ken");
    assert!(
        !shown.contains(&hash) && !shown.contains("t0ken"),
        "{shown}"
    );
    assert!(shown.contains("1 redacted"));
}
