//! The router behind a real socket (port 0), driven by an HTTP client as
//! curl would: the seed's flow, a token check and a 405.

use serde_json::Value;

use super::*;
use crate::admin::Role;

async fn serve(settings: AdminSettings) -> String {
    let app = router(Fake::default(), settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn seed_flow_over_http() {
    let base = serve(AdminSettings::new(1)).await;
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{base}/consumers"))
        .form(&[("username", "mobile-app")])
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 201);
    let response = client
        .post(format!("{base}/consumers/mobile-app/jwt"))
        .form(&[("algorithm", "HS256"), ("secret", "my-secret-key")])
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 201);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let jwt: Value = response.json().await.expect("json");
    assert_eq!(jwt["secret"], "my-secret-key");
    assert_eq!(jwt["algorithm"], "HS256");
    assert!(jwt["key"].as_str().is_some_and(|k| k.len() == 32));

    let response = client
        .delete(format!("{base}/consumers"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 405);
}

#[tokio::test]
async fn tokens_over_http() {
    let mut settings = AdminSettings::new(1).with_token_hash(
        &crate::admin::credentials::sha256_hex("s3cret"),
        Role::Admin,
    );
    settings.require_tokens = true;
    let base = serve(settings).await;
    let client = reqwest::Client::new();
    let status = |r: reqwest::Response| r.status().as_u16();
    let anonymous = client.get(format!("{base}/")).send().await.expect("send");
    assert_eq!(status(anonymous), 401);
    let admitted = client
        .get(format!("{base}/"))
        .header("Kong-Admin-Token", "s3cret")
        .send()
        .await
        .expect("send");
    assert_eq!(status(admitted), 200);
}
