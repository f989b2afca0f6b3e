//! Black-box tests of the jwt, key-auth and acl plugins and of cluster-wide
//! JWT revocation, on a real three-node cluster with a real upstream.
//! Tokens are signed by PyJWT + cryptography (tests/support/jwt_tool.py),
//! an implementation independent of the gateway's; scripts/test.sh
//! installs them.

mod common;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::Cluster;
use serde_json::{json, Value};

struct Upstream(Child);

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Runs the Python signer on `spec` (see the script for its shape).
fn sign(spec: &Value) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/jwt_tool.py");
    let mut child = Command::new("python3")
        .arg("-W")
        .arg("ignore")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(spec.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "jwt_tool.py failed (pip install pyjwt cryptography): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// An unsigned compact JWT with the given header and claims (for malformed
/// cases no signer would produce).
fn raw_token(header: Value, claims: Value, sig: &str) -> String {
    format!(
        "{}.{}.{sig}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// A header the upstream received (from the echo's JSON).
    fn upstream(&self, name: &str) -> Option<&str> {
        self.body["headers"][name].as_str()
    }
}

fn call(c: &Cluster, method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut req = c
        .http
        .request(method.parse().unwrap(), url)
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Resp {
        status,
        headers,
        body,
    }
}

fn get(c: &Cluster, node: u64, path: &str, headers: &[(&str, &str)]) -> Resp {
    call(c, "GET", &c.node(node).proxy_url(path), headers, "")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn admin(c: &Cluster, node: u64, path: &str, body: Value) -> Value {
    let (status, answer) = c.post(&c.node(node).admin_url(path), &body);
    assert!(
        status == 201 || status == 200,
        "POST {path} {body}: {status} {answer}"
    );
    answer
}

/// Waits until node `id`'s proxy accepts connections. (`/status/ready`
/// can answer 200 a moment before the proxy listener is bound.)
fn wait_proxy(c: &Cluster, id: u64) {
    let addr = format!("127.0.0.1:{}", c.node(id).proxy);
    eventually("proxy listening", Duration::from_secs(10), || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
}

/// Waits until `check` holds, or fails with `what`.
fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_message(r: &Resp, status: u16, message: &str, www: Option<&str>) {
    assert_eq!(r.status, status, "{:?}", r.body);
    assert_eq!(r.body, json!({ "message": message }));
    assert_eq!(r.header("www-authenticate"), www, "{message}");
}

const INVALID: Option<&str> = Some("Bearer error=\"invalid_token\"");

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

const FORM: &str = "application/x-www-form-urlencoded";
const KEY_REALM: Option<&str> = Some("Key realm=\"kong\"");

/// POSTs `body` as `content_type` to node 1's `path`, with extra headers.
fn post_body(
    c: &Cluster,
    path: &str,
    content_type: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> Resp {
    let mut headers = vec![("content-type", content_type)];
    headers.extend_from_slice(extra);
    call(c, "POST", &c.node(1).proxy_url(path), &headers, body)
}

/// Asserts the upstream received exactly `body`.
fn assert_upstream_body(r: &Resp, body: &str) {
    assert_eq!(r.body["body_bytes"], body.len(), "{:?}", r.body);
    assert_eq!(r.body["body_sha256"], sha256_hex(body.as_bytes()), "{body}");
}

/// A multipart/form-data body with boundary `b` and these text fields.
fn multipart(b: &str, fields: &[(&str, &str)]) -> String {
    let mut out = String::from("preamble\r\n");
    for (name, value) in fields {
        out.push_str(&format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    out.push_str(&format!("--{b}--\r\n"));
    out
}

/// key-auth's `key_in_body` (routes /key-body and /key-body-hide): the key
/// from a form, JSON or multipart field, Kong's messages, and the body
/// reaching the upstream intact (or without the key with hide_credentials).
fn key_in_body(c: &Cluster) {
    let mp_type = "multipart/form-data; boundary=b0undary";
    // Found in each encoding; the upstream gets the body byte for byte.
    let form = "a=1&apikey=bob-key&b=%20two";
    let json_body = r#"{"n": 1, "apikey": "bob-key", "s": "x"}"#;
    let mp = multipart(
        "b0undary",
        &[("a", "1"), ("apikey", "bob-key"), ("z", "last")],
    );
    for (content_type, body) in [
        (FORM, form),
        ("application/json", json_body),
        (mp_type, mp.as_str()),
    ] {
        let r = post_body(c, "/key-body", content_type, body, &[]);
        assert_eq!(r.status, 200, "{content_type}: {:?}", r.body);
        assert_eq!(r.upstream("x-consumer-username"), Some("bob"));
        assert_upstream_body(&r, body);
    }
    // A header comes before the body; both reach the upstream unchanged.
    let r = post_body(
        c,
        "/key-body",
        FORM,
        "apikey=wrong",
        &[("apikey", "bob-key")],
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.upstream("apikey"), Some("bob-key"));
    assert_upstream_body(&r, "apikey=wrong");
    // Kong's messages.
    let r = post_body(c, "/key-body", FORM, "apikey=bob-key&apikey=x", &[]);
    assert_message(&r, 401, "Duplicate API key found", KEY_REALM);
    let r = post_body(
        c,
        "/key-body",
        "application/json",
        r#"{"apikey": ["bob-key"]}"#,
        &[],
    );
    assert_message(&r, 401, "Duplicate API key found", KEY_REALM);
    let r = post_body(c, "/key-body", FORM, "apikey=wrong", &[]);
    assert_message(&r, 401, "Unauthorized", KEY_REALM);
    for (content_type, body) in [
        ("text/plain", "apikey=bob-key"),
        ("application/json", r#"{"apikey": 5}"#),
        ("application/json", r#"{"apikey": "bob-key""#),
        (FORM, "a=1"),
        (FORM, ""),
    ] {
        let r = post_body(c, "/key-body", content_type, body, &[]);
        assert_message(&r, 401, "No API key found in request", KEY_REALM);
    }
    let r = get(c, 1, "/key-body", &[]);
    assert_message(&r, 401, "No API key found in request", KEY_REALM);
    // key_in_body is off by default: the body is not searched.
    let r = post_body(c, "/key", FORM, "apikey=bob-key", &[]);
    assert_message(&r, 401, "No API key found in request", KEY_REALM);

    // hide_credentials: the field leaves the body, the rest is untouched.
    let r = post_body(c, "/key-body-hide", FORM, form, &[]);
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_upstream_body(&r, "a=1&b=%20two");
    assert_eq!(r.upstream("content-length"), Some("12"));
    let r = post_body(c, "/key-body-hide", mp_type, &mp, &[]);
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_upstream_body(&r, &multipart("b0undary", &[("a", "1"), ("z", "last")]));
    let r = post_body(c, "/key-body-hide", "application/json", json_body, &[]);
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_upstream_body(&r, r#"{"n":1,"s":"x"}"#);
    // Found in a header, the name still leaves the body (as in Kong).
    let r = post_body(
        c,
        "/key-body-hide",
        FORM,
        "apikey=other&z=1",
        &[("apikey", "bob-key")],
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.upstream("x-consumer-username"), Some("bob"));
    assert_eq!(r.upstream("apikey"), None);
    assert_upstream_body(&r, "z=1");
    // A body without the field goes on as it came.
    let r = post_body(
        c,
        "/key-body-hide",
        FORM,
        "z=1&y=2",
        &[("apikey", "bob-key")],
    );
    assert_upstream_body(&r, "z=1&y=2");
}

#[test]
fn auth_plugins_and_cluster_wide_revocation() {
    // An independent signer must be present: fail loudly, not skip.
    let spec = sign(&json!({"keys": {
        "rsa": "rsa", "ec256": "ec256", "ec384": "ec384", "ec521": "ec521",
        "ec521b": "ec521", "ed": "ed25519"
    }}));
    let public = &spec["public"];

    let mut c = Cluster::start(3, &[]);
    let port = common::free_port();
    let _upstream = Upstream(
        Command::new(common::binary())
            .args(["demo-upstream", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--name", "echo"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("demo upstream"),
    );

    // --- configuration, all through node 1 -------------------------------
    admin(
        &c,
        1,
        "/services",
        json!({"name": "echo", "url": format!("http://127.0.0.1:{port}")}),
    );
    let routes: &[(&str, Vec<Value>)] = &[
        (
            "jwt",
            vec![json!({"name": "jwt", "config": {"cookie_names": ["tok"]}})],
        ),
        (
            "jwt-claims",
            vec![json!({"name": "jwt", "config": {
                "claims_to_verify": ["exp", "nbf"], "maximum_expiration": 3600, "realm": "gw"}})],
        ),
        (
            "jwt-kid",
            vec![json!({"name": "jwt", "config": {"key_claim_name": "kid"}})],
        ),
        (
            "jwt-b64",
            vec![json!({"name": "jwt", "config": {"secret_is_base64": true}})],
        ),
        (
            "jwt-anon",
            vec![json!({"name": "jwt", "config": {"anonymous": "guest"}})],
        ),
        (
            "jwt-ghost",
            vec![json!({"name": "jwt", "config": {"anonymous": "nobody"}})],
        ),
        (
            "jwt-preflight",
            vec![json!({"name": "jwt", "config": {"run_on_preflight": false}})],
        ),
        (
            "key",
            vec![json!({"name": "key-auth", "config": {"hide_credentials": true}})],
        ),
        (
            "key-body",
            vec![json!({"name": "key-auth", "config": {"key_in_body": true}})],
        ),
        (
            "key-body-hide",
            vec![json!({"name": "key-auth", "config": {
                "key_in_body": true, "hide_credentials": true}})],
        ),
        (
            "acl",
            vec![
                json!({"name": "key-auth"}),
                json!({"name": "acl", "config": {"allow": ["gold"]}}),
            ],
        ),
        (
            "acl-deny",
            vec![
                json!({"name": "key-auth"}),
                json!({"name": "acl", "config": {"deny": ["gold"], "hide_groups_header": true}}),
            ],
        ),
        (
            "both-and",
            vec![json!({"name": "jwt"}), json!({"name": "key-auth"})],
        ),
        (
            "both-or",
            vec![
                json!({"name": "jwt", "config": {"anonymous": "guest"}}),
                json!({"name": "key-auth", "config": {"anonymous": "guest"}}),
            ],
        ),
    ];
    for (name, plugins) in routes {
        admin(
            &c,
            1,
            "/services/echo/routes",
            json!({"name": name, "paths": [format!("/{name}")]}),
        );
        for p in plugins {
            admin(&c, 1, &format!("/routes/{name}/plugins"), p.clone());
        }
    }
    for username in ["mobile-app", "alice", "bob", "guest"] {
        admin(&c, 1, "/consumers", json!({ "username": username }));
    }
    // The seed flow: an auto-generated key, a chosen secret.
    let seed = admin(
        &c,
        1,
        "/consumers/mobile-app/jwt",
        json!({"algorithm": "HS256", "secret": "my-secret-key"}),
    );
    let seed_key = seed["key"].as_str().expect("auto key").to_string();
    let creds = [
        json!({"key": "a-hs256", "algorithm": "HS256", "secret": "s256"}),
        json!({"key": "a-hs384", "algorithm": "HS384", "secret": "s384"}),
        json!({"key": "a-hs512", "algorithm": "HS512", "secret": "s512"}),
        json!({"key": "a-rs256", "algorithm": "RS256", "rsa_public_key": public["rsa"]}),
        json!({"key": "a-rs512", "algorithm": "RS512", "rsa_public_key": public["rsa"]}),
        json!({"key": "a-ps256", "algorithm": "PS256", "rsa_public_key": public["rsa"]}),
        json!({"key": "a-ps384", "algorithm": "PS384", "rsa_public_key": public["rsa"]}),
        json!({"key": "a-es256", "algorithm": "ES256", "rsa_public_key": public["ec256"]}),
        json!({"key": "a-es384", "algorithm": "ES384", "rsa_public_key": public["ec384"]}),
        json!({"key": "a-es512", "algorithm": "ES512", "rsa_public_key": public["ec521"]}),
        json!({"key": "a-ed", "algorithm": "EdDSA", "rsa_public_key": public["ed"]}),
        // base64 secret of the bytes "raw secret bytes!"; and one that
        // is not base64 at all.
        json!({"key": "a-b64", "algorithm": "HS256", "secret": "cmF3IHNlY3JldCBieXRlcyE="}),
        json!({"key": "a-notb64", "algorithm": "HS256", "secret": "not*base64*at*all"}),
    ];
    for cred in &creds {
        admin(&c, 1, "/consumers/alice/jwt", cred.clone());
    }
    admin(
        &c,
        1,
        "/consumers/alice/key-auth",
        json!({"key": "alice-key"}),
    );
    admin(&c, 1, "/consumers/bob/key-auth", json!({"key": "bob-key"}));
    admin(&c, 1, "/consumers/alice/acls", json!({"group": "gold"}));
    admin(&c, 1, "/consumers/bob/acls", json!({"group": "silver"}));
    // A consumer group whose plugin limits its members' bodies to 1 byte.
    admin(&c, 1, "/consumer_groups", json!({"name": "premium"}));
    admin(
        &c,
        1,
        "/consumer_groups/premium/consumers",
        json!({"consumer": "alice"}),
    );
    admin(
        &c,
        1,
        "/consumer_groups/premium/plugins",
        json!({"name": "request-size-limiting",
               "config": {"allowed_payload_size": 1, "size_unit": "bytes"}}),
    );

    // --- tokens, signed by PyJWT --------------------------------------------
    let t = now();
    let mut tokens = serde_json::Map::new();
    let mut tok = |name: &str, alg: &str, key: Value, claims: Value| {
        let mut s = json!({"alg": alg, "claims": claims});
        match key {
            Value::String(secret) => s["secret"] = json!(secret),
            Value::Object(o) => s["key"] = o["key"].clone(),
            _ => {}
        }
        tokens.insert(name.into(), s);
    };
    let k = |name: &str| json!({ "key": name });
    let sec = |s: &str| json!(s);
    for (alg, key, signer) in [
        ("HS256", "a-hs256", sec("s256")),
        ("HS384", "a-hs384", sec("s384")),
        ("HS512", "a-hs512", sec("s512")),
        ("RS256", "a-rs256", k("rsa")),
        ("RS512", "a-rs512", k("rsa")),
        ("PS256", "a-ps256", k("rsa")),
        ("PS384", "a-ps384", k("rsa")),
        ("ES256", "a-es256", k("ec256")),
        ("ES384", "a-es384", k("ec384")),
        ("ES512", "a-es512", k("ec521")),
        ("EdDSA", "a-ed", k("ed")),
    ] {
        tok(alg, alg, signer, json!({"iss": key}));
    }
    tok(
        "wrong-secret",
        "HS256",
        sec("nope"),
        json!({"iss": "a-hs256"}),
    );
    tok("no-iss", "HS256", sec("s256"), json!({"sub": "x"}));
    tok("num-iss", "HS256", sec("s256"), json!({"iss": 42}));
    tok("ghost-iss", "HS256", sec("s256"), json!({"iss": "ghost"}));
    tok("rs-as-hs", "HS256", sec("s256"), json!({"iss": "a-rs256"}));
    tok("ps-as-rs", "RS256", k("rsa"), json!({"iss": "a-ps256"}));
    tok(
        "es512-as-es256",
        "ES512",
        k("ec521"),
        json!({"iss": "a-es256"}),
    );
    tok(
        "es512-other-key",
        "ES512",
        k("ec521b"),
        json!({"iss": "a-es512"}),
    );
    tok(
        "expired",
        "HS256",
        sec("s256"),
        json!({"iss": "a-hs256", "exp": t - 10, "nbf": t - 20}),
    );
    tok(
        "early",
        "HS256",
        sec("s256"),
        json!({"iss": "a-hs256", "nbf": t + 600, "exp": t + 60}),
    );
    tok(
        "exp-str",
        "HS256",
        sec("s256"),
        json!({"iss": "a-hs256", "exp": "soon"}),
    );
    tok(
        "too-long",
        "HS256",
        sec("s256"),
        json!({"iss": "a-hs256", "exp": t + 7200, "nbf": t - 5}),
    );
    tok(
        "fresh",
        "HS256",
        sec("s256"),
        json!({"iss": "a-hs256", "exp": t + 600, "nbf": t - 5}),
    );
    tok(
        "alt",
        "HS256",
        sec("s256"),
        json!({"iss": "a-hs256", "jti": "alt"}),
    );
    tok(
        "b64",
        "HS256",
        sec("raw secret bytes!"),
        json!({"iss": "a-b64"}),
    );
    tok(
        "notb64",
        "HS256",
        sec("not*base64*at*all"),
        json!({"iss": "a-notb64"}),
    );
    for i in 0..30 {
        let name = format!("w{i}");
        tok(
            &name,
            "HS256",
            sec("my-secret-key"),
            json!({"iss": seed_key, "jti": name, "iat": t}),
        );
    }
    for (name, jti, iat) in [
        ("m1", "m1", t),
        ("m2", "m2", t),
        ("m3", "m3", t),
        ("m4", "m4", t),
        ("m5", "m5", t),
        ("old", "old", t - 100),
    ] {
        tok(
            name,
            "HS256",
            sec("my-secret-key"),
            json!({"iss": seed_key, "jti": jti, "iat": iat}),
        );
    }
    // The key claim in the JWT header (PyJWT adds extra header fields).
    tokens.insert(
        "kid".into(),
        json!({"alg": "HS256", "secret": "s256", "claims": {"sub": "x"}, "headers": {"kid": "a-hs256"}}),
    );
    let signed = sign(&json!({"private": spec["private"], "tokens": Value::Object(tokens)}))
        ["tokens"]
        .clone();
    let tk = |name: &str| signed[name].as_str().unwrap().to_string();

    c.wait_converged(Duration::from_secs(10));

    // --- jwt: every algorithm family, upstream headers ----------------------
    for alg in [
        "HS256", "HS384", "HS512", "RS256", "RS512", "PS256", "PS384", "ES256", "ES384", "ES512",
        "EdDSA",
    ] {
        let r = get(&c, 1, "/jwt", &[("authorization", &bearer(&tk(alg)))]);
        assert_eq!(r.status, 200, "{alg}: {:?}", r.body);
        assert_eq!(r.upstream("x-consumer-username"), Some("alice"), "{alg}");
        assert!(r.upstream("x-consumer-id").is_some());
        assert_eq!(r.upstream("x-anonymous-consumer"), None);
    }
    let r = get(&c, 1, "/jwt", &[("authorization", &bearer(&tk("HS512")))]);
    assert_eq!(r.upstream("x-credential-identifier"), Some("a-hs512"));
    // Query parameter, cookie, and the same token twice.
    let hs = tk("HS256");
    assert_eq!(get(&c, 1, &format!("/jwt?jwt={hs}"), &[]).status, 200);
    assert_eq!(
        get(&c, 1, "/jwt", &[("cookie", &format!("a=b; tok={hs}"))]).status,
        200
    );
    let r = get(
        &c,
        1,
        &format!("/jwt?jwt={hs}"),
        &[("authorization", &bearer(&hs))],
    );
    assert_eq!(r.status, 200, "duplicates are one token");
    // Spoofed consumer headers never reach the upstream.
    let r = get(
        &c,
        1,
        "/jwt",
        &[
            ("authorization", &bearer(&hs)),
            ("x-consumer-username", "root"),
        ],
    );
    assert_eq!(r.upstream("x-consumer-username"), Some("alice"));

    // --- jwt: Kong's messages and headers -----------------------------------
    assert_message(
        &get(&c, 1, "/jwt", &[]),
        401,
        "Unauthorized",
        Some("Bearer"),
    );
    let r = get(
        &c,
        1,
        &format!("/jwt?jwt={}", tk("HS384")),
        &[("authorization", &bearer(&hs))],
    );
    assert_message(&r, 401, "Multiple tokens provided", INVALID);
    let cases = [
        ("abc".to_string(), "Bad token; invalid JSON"),
        (
            raw_token(json!({"alg": "none"}), json!({"iss": "a-hs256"}), ""),
            "Bad token; invalid alg",
        ),
        (tk("no-iss"), "No mandatory 'iss' in claims"),
        (tk("num-iss"), "Invalid 'iss' in claims"),
        (tk("ghost-iss"), "No credentials found for given 'iss'"),
        (tk("rs-as-hs"), "Invalid algorithm"),
        (tk("ps-as-rs"), "Invalid algorithm"),
        (tk("es512-as-es256"), "Invalid algorithm"),
        (tk("wrong-secret"), "Invalid signature"),
        (tk("es512-other-key"), "Invalid signature"),
    ];
    for (token, message) in &cases {
        let r = get(&c, 1, "/jwt", &[("authorization", &bearer(token))]);
        assert_message(&r, 401, message, INVALID);
    }
    // An HS256 token whose secret is the RSA credential's public key.
    let forged = {
        use hmac::{Hmac, Mac};
        let signing = raw_token(
            json!({"alg": "HS256", "typ": "JWT"}),
            json!({"iss": "a-rs256"}),
            "",
        );
        let signing = signing.trim_end_matches('.');
        let mut mac =
            Hmac::<sha2::Sha256>::new_from_slice(public["rsa"].as_str().unwrap().as_bytes())
                .unwrap();
        mac.update(signing.as_bytes());
        format!(
            "{signing}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    };
    let r = get(&c, 1, "/jwt", &[("authorization", &bearer(&forged))]);
    assert_message(&r, 401, "Invalid algorithm", INVALID);
    // key_claim_name read from the JWT header.
    assert_eq!(
        get(&c, 1, "/jwt-kid", &[("authorization", &bearer(&tk("kid")))]).status,
        200
    );
    // secret_is_base64.
    assert_eq!(
        get(&c, 1, "/jwt-b64", &[("authorization", &bearer(&tk("b64")))]).status,
        200
    );
    let r = get(
        &c,
        1,
        "/jwt-b64",
        &[("authorization", &bearer(&tk("notb64")))],
    );
    assert_message(&r, 401, "Invalid key/secret", INVALID);
    // claims_to_verify and maximum_expiration: bare maps; the realm.
    let realm_error = Some("Bearer realm=\"gw\", error=\"invalid_token\"");
    assert_message(
        &get(&c, 1, "/jwt-claims", &[]),
        401,
        "Unauthorized",
        Some("Bearer realm=\"gw\""),
    );
    for (name, body) in [
        ("expired", json!({"exp": "token expired"})),
        ("early", json!({"nbf": "token not valid yet"})),
        (
            "exp-str",
            json!({"exp": "must be a number", "nbf": "must be a number"}),
        ),
        (
            "too-long",
            json!({"exp": "exceeds maximum allowed expiration"}),
        ),
        (
            "HS256",
            json!({"exp": "must be a number", "nbf": "must be a number"}),
        ),
    ] {
        let r = get(
            &c,
            1,
            "/jwt-claims",
            &[("authorization", &bearer(&tk(name)))],
        );
        assert_eq!((r.status, &r.body), (401, &body), "{name}");
        assert_eq!(r.header("www-authenticate"), realm_error, "{name}");
    }
    let r = get(
        &c,
        1,
        "/jwt-claims",
        &[("authorization", &bearer(&tk("fresh")))],
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    // anonymous, a missing anonymous consumer, run_on_preflight.
    let r = get(&c, 1, "/jwt-anon", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream("x-anonymous-consumer"), Some("true"));
    assert_eq!(r.upstream("x-consumer-username"), Some("guest"));
    assert_eq!(r.upstream("x-credential-identifier"), None);
    let r = get(&c, 1, "/jwt-anon", &[("authorization", &bearer(&hs))]);
    assert_eq!(r.upstream("x-consumer-username"), Some("alice"));
    assert_message(
        &get(&c, 1, "/jwt-ghost", &[]),
        500,
        "anonymous consumer nobody is configured but doesn't exist",
        None,
    );
    let url = c.node(1).proxy_url("/jwt-preflight");
    assert_eq!(call(&c, "OPTIONS", &url, &[], "").status, 200);
    assert_eq!(call(&c, "GET", &url, &[], "").status, 401);

    // --- key-auth, acl, combinations, consumer groups -------------------------
    let r = get(&c, 1, "/key", &[]);
    assert_message(
        &r,
        401,
        "No API key found in request",
        Some("Key realm=\"kong\""),
    );
    let r = get(&c, 1, "/key", &[("apikey", "wrong")]);
    assert_message(&r, 401, "Unauthorized", Some("Key realm=\"kong\""));
    let r = get(&c, 1, "/key", &[("apikey", "bob-key")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream("x-consumer-username"), Some("bob"));
    assert_eq!(r.upstream("apikey"), None, "hide_credentials");
    let r = get(&c, 1, "/key?apikey=bob-key&x=1", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["query"], "x=1",
        "hide_credentials strips the query key"
    );
    key_in_body(&c);
    let r = get(&c, 1, "/acl", &[("apikey", "alice-key")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream("x-consumer-groups"), Some("gold"));
    let r = get(&c, 1, "/acl", &[("apikey", "bob-key")]);
    assert_message(&r, 403, "You cannot consume this service", None);
    assert_eq!(
        get(&c, 1, "/acl-deny", &[("apikey", "alice-key")]).status,
        403
    );
    let r = get(&c, 1, "/acl-deny", &[("apikey", "bob-key")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream("x-consumer-groups"), None, "hide_groups_header");
    // AND without anonymous, OR with it.
    let jwt_h = bearer(&hs);
    let r = get(&c, 1, "/both-and", &[("authorization", &jwt_h)]);
    assert_message(
        &r,
        401,
        "No API key found in request",
        Some("Key realm=\"kong\""),
    );
    let r = get(
        &c,
        1,
        "/both-and",
        &[("authorization", &jwt_h), ("apikey", "bob-key")],
    );
    assert_eq!(r.status, 200);
    let r = get(&c, 1, "/both-or", &[("authorization", &jwt_h)]);
    assert_eq!(
        (r.status, r.upstream("x-consumer-username")),
        (200, Some("alice"))
    );
    assert_eq!(r.upstream("x-anonymous-consumer"), None);
    let r = get(&c, 1, "/both-or", &[("apikey", "bob-key")]);
    assert_eq!(
        (r.status, r.upstream("x-consumer-username")),
        (200, Some("bob"))
    );
    let r = get(&c, 1, "/both-or", &[]);
    assert_eq!(
        (r.status, r.upstream("x-anonymous-consumer")),
        (200, Some("true"))
    );
    // A plugin scoped to consumer group premium applies to alice only.
    let url = c.node(1).proxy_url("/jwt");
    let r = call(&c, "POST", &url, &[("authorization", &jwt_h)], "0123456789");
    assert_eq!(r.status, 413, "premium member: {:?}", r.body);
    let m5 = bearer(&tk("m5"));
    let r = call(&c, "POST", &url, &[("authorization", &m5)], "0123456789");
    assert_eq!(r.status, 200, "not a member");

    // --- the seed flow through every node -----------------------------------
    for node in 1..=3 {
        let r = get(&c, node, "/jwt", &[("authorization", &bearer(&tk("m1")))]);
        assert_eq!(r.status, 200, "node {node}: {:?}", r.body);
        assert_eq!(r.upstream("x-consumer-username"), Some("mobile-app"));
    }

    // --- revocation ----------------------------------------------------------
    let revoked = |c: &Cluster, node: u64, name: &str| {
        let r = get(c, node, "/jwt", &[("authorization", &bearer(&tk(name)))]);
        match r.status {
            200 => false,
            401 => {
                assert_eq!(r.body, json!({"message": "Token revoked"}));
                assert_eq!(r.header("www-authenticate"), INVALID);
                true
            }
            s => panic!("unexpected {s} {:?}", r.body),
        }
    };
    // By jti through node 3, waiting for every node: rejected at once.
    let (status, answer) = c.post(
        &c.node(3).admin_url("/jwt-revocations?wait=all"),
        &json!({"jti": "m1"}),
    );
    assert_eq!(status, 201, "{answer}");
    for node in 1..=3 {
        assert!(revoked(&c, node, "m1"), "node {node} still accepts m1");
        assert!(
            !revoked(&c, node, "m2"),
            "node {node}: other token of the consumer"
        );
    }
    // ?wait=all means enforced by every proxy at the answer, every time
    // (applied is not enough: a proxy serves a state once compiled).
    for i in 0..30u64 {
        let name = format!("w{i}");
        let url = c.node(1 + i % 3).admin_url("/jwt-revocations?wait=all");
        let (status, answer) = c.post(&url, &json!({ "jti": name }));
        assert_eq!(status, 201, "{answer}");
        assert_eq!(answer["wait"]["all_applied"], true, "{answer}");
        for node in 1..=3 {
            assert!(revoked(&c, node, &name), "node {node} accepts {name}");
        }
    }
    // By whole token through node 3 (stored as a hash only).
    let (status, answer) = c.post(
        &c.node(3).admin_url("/jwt-revocations"),
        &json!({"token": tk("m2")}),
    );
    assert_eq!(status, 201, "{answer}");
    assert!(
        !answer.to_string().contains(&tk("m2")),
        "token stored in clear"
    );
    for node in 1..=3 {
        eventually("m2 revoked everywhere", Duration::from_secs(5), || {
            revoked(&c, node, "m2")
        });
    }
    // By consumer, issued before an instant: the old token only.
    admin(
        &c,
        3,
        "/jwt-revocations",
        json!({"consumer": "mobile-app", "issued_before": t - 50}),
    );
    for node in 1..=3 {
        eventually("old revoked", Duration::from_secs(5), || {
            revoked(&c, node, "old")
        });
        assert!(!revoked(&c, node, "m3"));
    }
    // Through the CLI, by jti.
    let out = Command::new(common::binary())
        .args([
            "revoke",
            "--admin",
            &c.node(1).admin_url(""),
            "--jti",
            "m3",
            "--wait-all",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for node in 1..=3 {
        assert!(revoked(&c, node, "m3"), "cli revocation on node {node}");
    }
    // A node down during the revocation rejects the token once ready.
    c.node_mut(2).stop();
    eventually(
        "revocation written with node 2 down",
        Duration::from_secs(15),
        || {
            let url = c.node(3).admin_url("/jwt-revocations");
            c.post(&url, &json!({"jti": "m4"})).0 == 201
        },
    );
    for node in [1, 3] {
        eventually("m4 revoked", Duration::from_secs(5), || {
            revoked(&c, node, "m4")
        });
    }
    c.restart(2);
    c.wait_ready_all(Duration::from_secs(30));
    wait_proxy(&c, 2);
    assert!(revoked(&c, 2, "m4"), "node 2 serves m4 once ready again");
    assert!(!revoked(&c, 2, "m5"));

    // Revocations survive a full cluster restart.
    for id in 1..=3 {
        c.node_mut(id).stop();
    }
    for id in 1..=3 {
        c.restart(id);
    }
    c.wait_ready_all(Duration::from_secs(30));
    for node in 1..=3 {
        wait_proxy(&c, node);
        for name in ["m1", "m2", "m3", "m4", "old"] {
            assert!(
                revoked(&c, node, name),
                "{name} on node {node} after restart"
            );
        }
        assert!(!revoked(&c, node, "m5"), "m5 on node {node} after restart");
    }

    // Deleting the credential rejects its tokens on every node.
    let url = c
        .node(2)
        .admin_url(&format!("/consumers/mobile-app/jwt/{seed_key}"));
    let (status, _) = c.http_delete(&url);
    assert_eq!(status, 204);
    for node in 1..=3 {
        eventually("credential gone", Duration::from_secs(5), || {
            let r = get(&c, node, "/jwt", &[("authorization", &m5)]);
            r.status == 401 && r.body == json!({"message": "No credentials found for given 'iss'"})
        });
    }
}
