//! CRUD per collection, addressing by name, nested collections, PUT
//! upsert, PATCH, pagination and tags.

use axum::http::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use super::*;

#[tokio::test]
async fn service_lifecycle() {
    let (app, _) = app();
    let svc = create(
        &app,
        "/services",
        json!({"name": "users", "host": "users.internal"}),
    )
    .await;
    let id = svc["id"].as_str().unwrap().to_string();
    assert!(Uuid::parse_str(&id).is_ok());
    assert_eq!(svc["port"], 80);
    assert_eq!(svc["protocol"], "http");
    assert_eq!(svc["retries"], 5);
    assert!(svc["created_at"].as_i64().unwrap() > 1_600_000_000);
    assert_eq!(svc["created_at"], svc["updated_at"]);

    // By id and by name.
    assert_eq!(
        get(&app, &format!("/services/{id}")).await,
        (StatusCode::OK, svc.clone())
    );
    assert_eq!(
        get(&app, "/services/users").await,
        (StatusCode::OK, svc.clone())
    );

    // PATCH merges.
    let (status, patched) = json_req(&app, "PATCH", "/services/users", json!({"port": 8080})).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["port"], 8080);
    assert_eq!(patched["host"], "users.internal");
    assert_eq!(patched["id"], svc["id"]);
    assert_eq!(patched["created_at"], svc["created_at"]);

    // PATCH with null resets to the default.
    let (_, reset) = json_req(&app, "PATCH", "/services/users", json!({"port": null})).await;
    assert_eq!(reset["port"], 80);

    // PUT replaces, keeping id and created_at.
    let (status, put) = json_req(
        &app,
        "PUT",
        &format!("/services/{id}"),
        json!({"host": "other"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{put}");
    assert_eq!(put["id"], svc["id"]);
    assert_eq!(put["host"], "other");
    assert_eq!(put["name"], Value::Null, "PUT replaces the whole entity");

    // DELETE, then 404; DELETE again is still 204.
    assert_eq!(
        delete(&app, &format!("/services/{id}")).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        get(&app, &format!("/services/{id}")).await,
        (StatusCode::NOT_FOUND, json!({"message": "Not found"}))
    );
    assert_eq!(
        delete(&app, &format!("/services/{id}")).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(get(&app, "/services/nope").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn put_by_name_creates_then_updates() {
    let (app, _) = app();
    let (status, created) = json_req(&app, "PUT", "/services/billing", json!({"host": "b"})).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["name"], "billing");
    let (status, updated) = json_req(&app, "PUT", "/services/billing", json!({"host": "c"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(updated["id"], created["id"]);
    assert_eq!(updated["name"], "billing");
    assert_eq!(updated["host"], "c");
    // PUT with a UUID path creates with that id.
    let id = Uuid::new_v4();
    let (status, by_id) = json_req(
        &app,
        "PUT",
        &format!("/consumers/{id}"),
        json!({"username": "u"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_id["id"], json!(id));
}

#[tokio::test]
async fn url_shorthand_on_services() {
    let (app, _) = app();
    let svc = create(
        &app,
        "/services",
        json!({"name": "s", "url": "https://api.example.com/v1"}),
    )
    .await;
    assert_eq!(
        (&svc["protocol"], &svc["host"], &svc["port"], &svc["path"]),
        (
            &json!("https"),
            &json!("api.example.com"),
            &json!(443),
            &json!("/v1")
        )
    );
}

#[tokio::test]
async fn nested_routes_and_plugins() {
    let (app, _) = app();
    let svc = create(&app, "/services", json!({"name": "users", "host": "u"})).await;
    let route = create(
        &app,
        "/services/users/routes",
        json!({"name": "r1", "paths": ["/users"]}),
    )
    .await;
    assert_eq!(route["service"]["id"], svc["id"]);
    assert_eq!(route["protocols"], json!(["http", "https"]));
    assert_eq!(route["strip_path"], true);

    // Another service's route is not listed under this one.
    create(&app, "/services", json!({"name": "other", "host": "o"})).await;
    create(
        &app,
        "/services/other/routes",
        json!({"name": "r2", "paths": ["/o"]}),
    )
    .await;
    let (_, page) = get(&app, "/services/users/routes").await;
    let names: Vec<&Value> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["name"])
        .collect();
    assert_eq!(names, vec![&json!("r1")]);
    assert_eq!(
        get(&app, "/routes").await.1["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        get(&app, "/services/users/routes/r1").await.0,
        StatusCode::OK
    );
    assert_eq!(
        get(&app, "/services/users/routes/r2").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, "/services/missing/routes").await.0,
        StatusCode::NOT_FOUND
    );

    // Plugins scoped by the path.
    let p = create(
        &app,
        "/services/users/plugins",
        json!({"name": "correlation-id"}),
    )
    .await;
    assert_eq!(p["service"]["id"], svc["id"]);
    let p = create(&app, "/routes/r1/plugins", json!({"name": "cors"})).await;
    assert_eq!(p["route"]["id"], route["id"]);
    let c = create(&app, "/consumers", json!({"username": "alice"})).await;
    let p = create(
        &app,
        "/consumers/alice/plugins",
        json!({"name": "rate-limiting", "config": {"minute": 10}}),
    )
    .await;
    assert_eq!(p["consumer"]["id"], c["id"]);
    let g = create(&app, "/consumer_groups", json!({"name": "premium"})).await;
    let p = create(
        &app,
        "/consumer_groups/premium/plugins",
        json!({"name": "rate-limiting", "config": {"minute": 100}}),
    )
    .await;
    assert_eq!(p["consumer_group"]["id"], g["id"]);
    let global = create(
        &app,
        "/plugins",
        json!({"name": "prometheus", "instance_name": "prom"}),
    )
    .await;
    assert_eq!(global["enabled"], true);
    assert_eq!(get(&app, "/plugins/prom").await.1["id"], global["id"]);
    assert_eq!(
        get(&app, "/plugins").await.1["data"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    assert_eq!(
        get(&app, "/services/users/plugins").await.1["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn foreign_key_by_name_and_dangling_name() {
    let (app, fake) = app();
    let svc = create(&app, "/services", json!({"name": "users", "host": "u"})).await;
    let r = create(
        &app,
        "/routes",
        json!({"paths": ["/a"], "service": {"name": "users"}}),
    )
    .await;
    assert_eq!(r["service"]["id"], svc["id"]);
    let before = fake.writes();
    let (status, err) = json_req(
        &app,
        "POST",
        "/routes",
        json!({"paths": ["/b"], "service": {"name": "nope"}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["code"], 4);
    assert_eq!(err["name"], "foreign key violation");
    assert_eq!(fake.writes(), before, "nothing proposed");
}

#[tokio::test]
async fn upstreams_and_targets() {
    let (app, _) = app();
    let up = create(&app, "/upstreams", json!({"name": "backend"})).await;
    assert_eq!(up["algorithm"], "round-robin");
    assert_eq!(up["slots"], 10000);
    let t = create(
        &app,
        "/upstreams/backend/targets",
        json!({"target": "10.0.0.1:8080"}),
    )
    .await;
    assert_eq!(t["upstream"]["id"], up["id"]);
    assert_eq!(t["weight"], 100);
    let (status, by_target) = get(&app, "/upstreams/backend/targets/10.0.0.1:8080").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_target["id"], t["id"]);
    let (status, patched) = json_req(
        &app,
        "PATCH",
        &format!("/upstreams/backend/targets/{}", t["id"].as_str().unwrap()),
        json!({"weight": 5}),
    )
    .await;
    assert_eq!((status, &patched["weight"]), (StatusCode::OK, &json!(5)));
    // Targets are reachable only under their upstream.
    assert_eq!(get(&app, "/targets").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        delete(&app, "/upstreams/backend/targets/10.0.0.1:8080")
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        get(&app, "/upstreams/backend/targets").await.1["data"],
        json!([])
    );
}

#[tokio::test]
async fn certificates_with_snis() {
    let (app, _) = app();
    let cert = create(
        &app,
        "/certificates",
        json!({"cert": TEST_CERT, "key": TEST_KEY,
               "snis": ["a.example.com", "b.example.com"]}),
    )
    .await;
    assert_eq!(cert["snis"], json!(["a.example.com", "b.example.com"]));
    let (status, by_sni) = get(&app, "/certificates/a.example.com").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_sni["id"], cert["id"]);
    let (_, snis) = get(&app, "/snis").await;
    assert_eq!(snis["data"].as_array().unwrap().len(), 2);
    let (_, sni) = get(&app, "/snis/b.example.com").await;
    assert_eq!(sni["certificate"]["id"], cert["id"]);
    // PATCH with snis replaces the set.
    let (status, patched) = json_req(
        &app,
        "PATCH",
        "/certificates/a.example.com",
        json!({"snis": ["c.example.com"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["snis"], json!(["c.example.com"]));
    assert_eq!(
        get(&app, "/snis").await.1["data"].as_array().unwrap().len(),
        1
    );
    // Nested SNIs.
    let id = cert["id"].as_str().unwrap();
    let sni = create(
        &app,
        &format!("/certificates/{id}/snis"),
        json!({"name": "d.example.com"}),
    )
    .await;
    assert_eq!(sni["certificate"]["id"], cert["id"]);
    assert_eq!(
        delete(&app, "/certificates/c.example.com").await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        get(&app, &format!("/certificates/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn consumer_group_membership() {
    let (app, _) = app();
    let g = create(&app, "/consumer_groups", json!({"name": "free"})).await;
    let alice = create(&app, "/consumers", json!({"username": "alice"})).await;
    create(
        &app,
        "/consumers",
        json!({"username": "bob", "custom_id": "b-1"}),
    )
    .await;
    let (status, added) = json_req(
        &app,
        "POST",
        "/consumer_groups/free/consumers",
        json!({"consumer": "alice"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(added["consumer_group"]["id"], g["id"]);
    assert_eq!(added["consumers"][0]["id"], alice["id"]);
    // By custom_id, form-encoded.
    let (status, _) = form_req(
        &app,
        "POST",
        "/consumer_groups/free/consumers",
        "consumer=b-1",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = json_req(
        &app,
        "POST",
        "/consumer_groups/free/consumers",
        json!({"consumer": "alice"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = json_req(
        &app,
        "POST",
        "/consumer_groups/free/consumers",
        json!({"consumer": "zed"}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, err) = json_req(&app, "POST", "/consumer_groups/free/consumers", json!({})).await;
    assert_eq!(
        (status, err),
        (
            StatusCode::BAD_REQUEST,
            json!({"message": "must provide consumer"})
        )
    );
    let (_, members) = get(&app, "/consumer_groups/free/consumers").await;
    assert_eq!(members["consumers"].as_array().unwrap().len(), 2);
    let (_, detail) = get(&app, "/consumer_groups/free").await;
    assert_eq!(detail["consumer_group"]["id"], g["id"]);
    assert_eq!(detail["consumers"].as_array().unwrap().len(), 2);
    assert_eq!(detail["plugins"], json!([]));
    let (_, groups) = get(&app, "/consumers/alice/consumer_groups").await;
    assert_eq!(groups["consumer_groups"][0]["name"], "free");
    let (status, one) = get(&app, "/consumer_groups/free/consumers/alice").await;
    assert_eq!(
        (status, &one["consumer"]["id"]),
        (StatusCode::OK, &alice["id"])
    );
    let (status, one) = get(&app, "/consumers/alice/consumer_groups/free").await;
    assert_eq!(
        (status, &one["consumer_group"]["id"]),
        (StatusCode::OK, &g["id"])
    );

    // Joining from the consumer's side.
    create(&app, "/consumer_groups", json!({"name": "premium"})).await;
    let (status, joined) = form_req(
        &app,
        "POST",
        "/consumers/alice/consumer_groups",
        "group=premium",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{joined}");
    assert_eq!(joined["consumer"]["id"], alice["id"]);
    assert_eq!(joined["consumer_groups"][0]["name"], "premium");

    assert_eq!(
        delete(&app, "/consumer_groups/free/consumers/alice")
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let (status, err) = delete(&app, "/consumer_groups/free/consumers/alice").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(err["message"]
        .as_str()
        .unwrap()
        .contains("not found in Group"));
    assert_eq!(
        get(&app, "/consumer_groups/free/consumers/alice").await.0,
        StatusCode::NOT_FOUND
    );
    let (_, members) = get(&app, "/consumer_groups/free/consumers").await;
    assert_eq!(members["consumers"].as_array().unwrap().len(), 1);
    assert_eq!(members["consumers"][0]["username"], "bob");

    // Emptying: a group, and a consumer's memberships.
    assert_eq!(
        delete(&app, "/consumer_groups/free/consumers").await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        get(&app, "/consumer_groups/free/consumers").await.1["consumers"],
        json!([])
    );
    assert_eq!(
        delete(&app, "/consumers/alice/consumer_groups").await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        get(&app, "/consumers/alice/consumer_groups").await.1["consumer_groups"],
        json!([])
    );
    assert_eq!(
        get(&app, "/consumer_groups/nope/consumers").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn consumers_by_username_then_custom_id() {
    let (app, _) = app();
    let c = create(&app, "/consumers", json!({"custom_id": "ext-1"})).await;
    assert_eq!(get(&app, "/consumers/ext-1").await.1["id"], c["id"]);
    let (_, filtered) = get(&app, "/consumers?custom_id=ext-1").await;
    assert_eq!(filtered["data"].as_array().unwrap().len(), 1);
    let (_, filtered) = get(&app, "/consumers?custom_id=zzz").await;
    assert_eq!(filtered["data"], json!([]));
}

#[tokio::test]
async fn pagination_walks_every_entity_once() {
    let (app, _) = app();
    for i in 0..7 {
        create(&app, "/consumers", json!({"username": format!("user{i}")})).await;
    }
    let mut seen = Vec::new();
    let mut uri = "/consumers?size=3".to_string();
    let mut pages = 0;
    loop {
        let (status, page) = get(&app, &uri).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        for item in page["data"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(next) => {
                assert!(next.starts_with("/consumers?offset="), "{next}");
                assert!(page["offset"].is_string());
                uri = next.to_string();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "ids come once each, in order");
    assert_eq!(seen.len(), 7);

    let (status, err) = get(&app, "/consumers?size=1001").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        err,
        json!({"code": 9, "name": "invalid size", "message": "size must be an integer between 1 and 1000", "fields": {}})
    );
    assert_eq!(
        get(&app, "/consumers?size=0").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        get(&app, "/consumers?offset=%%%").await.0,
        StatusCode::BAD_REQUEST
    );
    let (_, all) = get(&app, "/consumers").await;
    assert_eq!(all["next"], Value::Null);
}

#[tokio::test]
async fn tag_filters() {
    let (app, _) = app();
    create(
        &app,
        "/services",
        json!({"name": "a", "host": "h", "tags": ["prod", "eu"]}),
    )
    .await;
    create(
        &app,
        "/services",
        json!({"name": "b", "host": "h", "tags": ["prod", "us"]}),
    )
    .await;
    create(
        &app,
        "/services",
        json!({"name": "c", "host": "h", "tags": ["dev"]}),
    )
    .await;
    create(
        &app,
        "/consumers",
        json!({"username": "x", "tags": ["prod"]}),
    )
    .await;
    let names = |page: &Value| {
        let mut n: Vec<String> = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };
    assert_eq!(
        names(&get(&app, "/services?tags=prod,eu").await.1),
        vec!["a"]
    );
    assert_eq!(
        names(&get(&app, "/services?tags=eu/dev").await.1),
        vec!["a", "c"]
    );
    assert_eq!(
        names(&get(&app, "/services?tags=prod").await.1),
        vec!["a", "b"]
    );
    let (status, err) = get(&app, "/services?tags=a,b,c,d,e,f").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(err["message"]
        .as_str()
        .unwrap()
        .contains("cannot query more than 5 tags"));
    let (status, tagged) = get(&app, "/tags/prod").await;
    assert_eq!(status, StatusCode::OK);
    let rows = tagged["data"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r["tag"] == "prod"));
    assert!(rows.iter().any(|r| r["entity_name"] == "consumers"));
    assert_eq!(
        get(&app, "/tags").await.1["data"].as_array().unwrap().len(),
        6
    );
}

#[tokio::test]
async fn wrong_method_and_unknown_path() {
    let (app, _) = app();
    assert_eq!(
        delete(&app, "/services").await,
        (
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"message": "Method not allowed"})
        )
    );
    assert_eq!(
        get(&app, "/nothing/here").await,
        (StatusCode::NOT_FOUND, json!({"message": "Not found"}))
    );
    assert_eq!(
        json_req(&app, "PUT", "/jwt-revocations/x", json!({}))
            .await
            .0,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn linearizable_reads_wait_for_the_barrier() {
    let (app, fake) = app();
    get(&app, "/services").await;
    assert_eq!(fake.barriers.load(std::sync::atomic::Ordering::SeqCst), 0);
    let (status, _) = get(&app, "/services?consistency=linearizable").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fake.barriers.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// Needs the model's unique rules inside `State::apply` (wt-model branch).
#[tokio::test]
async fn duplicate_name_is_409_and_stores_nothing() {
    let (app, _) = app();
    create(&app, "/services", json!({"name": "dup", "host": "h"})).await;
    let (status, err) = json_req(
        &app,
        "POST",
        "/services",
        json!({"name": "dup", "host": "h2"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_eq!(err["code"], 5);
    assert_eq!(err["name"], "unique constraint violation");
    assert_eq!(
        get(&app, "/services").await.1["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// Needs the model's foreign-key rules inside `State::apply` (wt-model branch).
#[tokio::test]
async fn dangling_foreign_key_id_is_400_and_stores_nothing() {
    let (app, _) = app();
    let (status, err) = json_req(
        &app,
        "POST",
        "/routes",
        json!({"paths": ["/a"], "service": {"id": Uuid::new_v4()}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["code"], 4);
    assert_eq!(get(&app, "/routes").await.1["data"], json!([]));
}

#[tokio::test]
async fn trailing_slash_is_tolerated() {
    let (app, _) = app();
    let (status, _) = json_req(
        &app,
        "POST",
        "/services/",
        json!({"name": "s", "host": "h"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(get(&app, "/services/s/").await.1["name"], "s");
    assert_eq!(
        get(&app, "/services/?size=1").await.1["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn unavailable_cluster_is_503() {
    let (app, fake) = app();
    fake.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let (status, err) = json_req(&app, "POST", "/consumers", json!({"username": "u"})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(err["message"].as_str().unwrap().contains("no leader"));
    let (status, _) = get(&app, "/consumers?consistency=linearizable").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // Local reads keep working without a leader.
    assert_eq!(get(&app, "/consumers").await.0, StatusCode::OK);
}

#[tokio::test]
async fn writes_on_a_lagging_node_catch_up_before_missing() {
    let (app, fake) = app();
    let barriers = || fake.barriers.load(std::sync::atomic::Ordering::SeqCst);
    // The service is written, but this node's reads do not show it yet.
    fake.freeze_reads();
    create(&app, "/services", json!({"name": "late", "host": "h"})).await;
    assert_eq!(get(&app, "/services/late").await.0, StatusCode::NOT_FOUND);
    let (status, route) = json_req(
        &app,
        "POST",
        "/services/late/routes",
        json!({"name": "r", "paths": ["/late"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{route}");
    assert_eq!(barriers(), 1);

    // A delete that misses locally asks the leader before answering 204.
    create(&app, "/consumers", json!({"username": "gone"})).await;
    fake.freeze_reads();
    create(&app, "/consumers", json!({"username": "fresh"})).await;
    let (status, _) = json_req(&app, "DELETE", "/consumers/fresh", json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(barriers(), 2);
    assert_eq!(get(&app, "/consumers/fresh").await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&app, "/consumers/gone").await.0, StatusCode::OK);

    // A write that really misses still answers 404, after one barrier.
    let (status, _) = json_req(&app, "PATCH", "/services/absent", json!({"host": "x"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(barriers(), 3);
}
