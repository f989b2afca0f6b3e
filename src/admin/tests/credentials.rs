//! Credentials and revocations: the seed's curl flow, generated keys and
//! secrets, addressing by key, and revocations that never store a token.

use axum::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use super::*;
use crate::admin::credentials::sha256_hex;

fn token(claims: Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.c2lnbmF0dXJl")
}

#[tokio::test]
async fn seed_curl_flow() {
    let (app, _) = app();
    // curl -X POST http://localhost:8001/consumers --data "username=mobile-app"
    let (status, consumer) = form_req(&app, "POST", "/consumers", "username=mobile-app").await;
    assert_eq!(status, StatusCode::CREATED, "{consumer}");
    assert_eq!(consumer["username"], "mobile-app");
    // curl -X POST .../consumers/mobile-app/jwt --data "algorithm=HS256" --data "secret=my-secret-key"
    let (status, jwt) = form_req(
        &app,
        "POST",
        "/consumers/mobile-app/jwt",
        "algorithm=HS256&secret=my-secret-key",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{jwt}");
    assert_eq!(jwt["algorithm"], "HS256");
    assert_eq!(jwt["secret"], "my-secret-key");
    assert_eq!(jwt["consumer"]["id"], consumer["id"]);
    let key = jwt["key"].as_str().unwrap();
    assert_eq!(key.len(), 32);
    // Addressable by key, top level and nested.
    assert_eq!(get(&app, &format!("/jwts/{key}")).await.1["id"], jwt["id"]);
    assert_eq!(
        get(&app, &format!("/consumers/mobile-app/jwt/{key}"))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        get(&app, "/consumers/mobile-app/jwt").await.1["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn generated_credentials() {
    let (app, _) = app();
    create(&app, "/consumers", json!({"username": "c"})).await;
    // No body at all, as `curl -X POST` sends it.
    let (status, jwt) = send(&app, "POST", "/consumers/c/jwt", None, "", &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{jwt}");
    let secret = jwt["secret"].as_str().unwrap();
    assert_eq!(secret.len(), 32);
    assert!(secret.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(jwt["algorithm"], "HS256");

    let (status, ka) = send(&app, "POST", "/consumers/c/key-auth", None, "", &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{ka}");
    let key = ka["key"].as_str().unwrap();
    assert_eq!(key.len(), 32);
    assert!(key.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(
        get(&app, &format!("/key-auths/{key}")).await.1["id"],
        ka["id"]
    );

    // PATCH keeps the generated key.
    let (status, patched) = json_req(
        &app,
        "PATCH",
        &format!("/key-auths/{key}"),
        json!({"tags": ["t"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["key"], ka["key"]);

    // PUT by key creates a credential with that key under the consumer.
    let (status, put) = json_req(&app, "PUT", "/consumers/c/key-auth/my-own-key", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{put}");
    assert_eq!(put["key"], "my-own-key");

    let acl = create(&app, "/consumers/c/acls", json!({"group": "admins"})).await;
    assert_eq!(
        get(&app, "/consumers/c/acls/admins").await.1["id"],
        acl["id"]
    );
    assert_eq!(
        get(&app, "/acls").await.1["data"].as_array().unwrap().len(),
        1
    );

    // Credentials need an existing consumer.
    assert_eq!(
        send(&app, "POST", "/consumers/nobody/jwt", None, "", &[])
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn revocation_by_token_stores_only_its_hash() {
    let (app, fake) = app();
    let jwt = token(json!({"iss": "k", "exp": 4_000_000_000i64, "jti": "abc"}));
    let (status, rev) = json_req(&app, "POST", "/jwt-revocations", json!({"token": jwt})).await;
    assert_eq!(status, StatusCode::CREATED, "{rev}");
    assert_eq!(rev["token_sha256"], sha256_hex(&jwt));
    assert_eq!(rev["expires_at"], 4_000_000_000i64);
    assert!(rev.get("token").is_none());
    // Neither the answer nor anything stored holds the token.
    assert!(!rev.to_string().contains(&jwt));
    let listed = get(&app, "/jwt-revocations").await.1.to_string();
    assert!(!listed.contains(&jwt) && listed.contains(&sha256_hex(&jwt)));
    let records = fake.state().records();
    assert!(records
        .iter()
        .all(|(_, v)| !String::from_utf8_lossy(v).contains(&jwt)));

    let id = rev["id"].as_str().unwrap();
    assert_eq!(get(&app, &format!("/jwt-revocations/{id}")).await.1, rev);
    let (status, bad) = json_req(
        &app,
        "POST",
        "/jwt-revocations",
        json!({"token": "garbage"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert_eq!(
        delete(&app, &format!("/jwt-revocations/{id}")).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        get(&app, &format!("/jwt-revocations/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn revocation_by_jti_consumer_and_credential() {
    let (app, _) = app();
    let consumer = create(&app, "/consumers", json!({"username": "mobile-app"})).await;
    let cred = create(&app, "/consumers/mobile-app/jwt", json!({"key": "iss-1"})).await;

    let rev = create(
        &app,
        "/jwt-revocations",
        json!({"jti": "t-1", "expires_at": 5}),
    )
    .await;
    assert_eq!(rev["jti"], "t-1");
    assert_eq!(rev["expires_at"], 5);

    let (status, rev) = form_req(
        &app,
        "POST",
        "/jwt-revocations",
        "consumer=mobile-app&issued_before=1700000000",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{rev}");
    assert_eq!(rev["consumer"]["id"], consumer["id"]);
    assert_eq!(rev["issued_before"], 1_700_000_000);

    // Without issued_before: every token issued so far.
    let rev = create(
        &app,
        "/jwt-revocations",
        json!({"consumer": {"id": consumer["id"]}}),
    )
    .await;
    assert!(rev["issued_before"].as_i64().unwrap() > 1_600_000_000);

    let rev = create(&app, "/jwt-revocations", json!({"credential": "iss-1"})).await;
    assert_eq!(rev["credential"]["id"], cred["id"]);

    // Exactly one matcher.
    for body in [json!({}), json!({"jti": "a", "credential": "iss-1"})] {
        let (status, err) = json_req(&app, "POST", "/jwt-revocations", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(err["fields"]["@entity"].is_array(), "{err}");
    }
    let (status, _) = json_req(
        &app,
        "POST",
        "/jwt-revocations",
        json!({"consumer": "ghost"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (_, page) = get(&app, "/jwt-revocations?size=2").await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    let (_, rest) = get(&app, page["next"].as_str().unwrap()).await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 2);
    assert_eq!(rest["next"], Value::Null);
}

#[tokio::test]
async fn revocations_in_one_batch_all_or_none() {
    let (app, fake) = app();
    create(&app, "/consumers", json!({"username": "mobile-app"})).await;
    let jwt = token(json!({"iss": "k", "exp": 4_000_000_000i64}));
    let before = fake.writes();
    let (status, answer) = json_req(
        &app,
        "POST",
        "/jwt-revocations",
        json!([{"jti": "b-1"}, {"token": jwt}, {"consumer": "mobile-app", "issued_before": 7}]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(fake.writes(), before + 1, "one command for the batch");
    let data = answer["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    assert_eq!(data[0]["jti"], "b-1");
    assert_eq!(data[1]["token_sha256"], sha256_hex(&jwt));
    assert!(!answer.to_string().contains(&jwt), "token stored in clear");
    assert_eq!(data[2]["issued_before"], 7);
    let (_, page) = get(&app, "/jwt-revocations").await;
    assert_eq!(page["data"].as_array().unwrap().len(), 3);

    // One bad element: nothing is written, and the error names its index.
    let writes = fake.writes();
    let (status, err) = json_req(
        &app,
        "POST",
        "/jwt-revocations",
        json!([{"jti": "b-2"}, {"jti": "b-3", "credential": "nope"}]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert!(err["fields"]["1"].is_object(), "{err}");
    assert_eq!(fake.writes(), writes);
    // An id already in use, or twice in the batch: Kong's primary key error.
    let id = data[0]["id"].as_str().unwrap();
    for body in [
        json!([{"id": id, "jti": "again"}]),
        json!([{"id": "8f4d3a1e-0000-4000-8000-000000000001", "jti": "x"},
               {"id": "8f4d3a1e-0000-4000-8000-000000000001", "jti": "y"}]),
    ] {
        let (status, err) = json_req(&app, "POST", "/jwt-revocations", body).await;
        assert_eq!(status, StatusCode::CONFLICT, "as a single POST: {err}");
        assert_eq!(err["name"], "primary key violation", "{err}");
    }
    let (status, _) = json_req(&app, "POST", "/jwt-revocations", json!([])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let too_many: Vec<Value> = (0..=crate::admin::revocations::MAX_BATCH)
        .map(|i| json!({"jti": format!("j{i}")}))
        .collect();
    let (status, _) = json_req(&app, "POST", "/jwt-revocations", Value::Array(too_many)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(fake.writes(), writes);
}

#[tokio::test]
async fn revocation_wait_all() {
    let (app, fake) = app();
    let (status, rev) = json_req(
        &app,
        "POST",
        "/jwt-revocations?wait=all",
        json!({"jti": "a"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{rev}");
    assert_eq!(rev["wait"], json!({"all_applied": true, "lagging": []}));
    let (status, _) = json_req(
        &app,
        "POST",
        "/jwt-revocations?wait=all&timeout_ms=0",
        json!({"jti": "b"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let writes = fake.writes();
    assert_eq!(
        get(&app, "/jwt-revocations").await.1["data"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "a bad wait parameter stores nothing"
    );
    // Without ?wait the answer is the plain entity.
    let rev = create(&app, "/jwt-revocations", json!({"jti": "c"})).await;
    assert!(rev.get("wait").is_none());
    assert_eq!(fake.writes(), writes + 1);
}
