//! The TLS listener: certificates chosen by SNI from the config and
//! swapped without a restart, the self-signed default certificate, h2 by
//! ALPN, and https-only routes served over TLS.

mod proxy_support;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use proxy_support::*;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Accepts any certificate: the tests look at which one was presented.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn connect(addr: std::net::SocketAddr, sni: &str, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(sni.to_string()).unwrap(), tcp)
        .await
        .expect("handshake")
}

fn peer_cert(s: &TlsStream<TcpStream>) -> Vec<u8> {
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn cert_for(name: &str) -> (String, String, Vec<u8>) {
    let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    (
        c.cert.pem(),
        c.key_pair.serialize_pem(),
        c.cert.der().to_vec(),
    )
}

async fn h2_get(s: TlsStream<TcpStream>, path: &str, host: &str) -> (u16, Bytes) {
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get(format!("https://{host}{path}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let r = send.send_request(req).await.unwrap();
    let status = r.status().as_u16();
    (status, r.into_body().collect().await.unwrap().to_bytes())
}

async fn h1_get(s: TlsStream<TcpStream>, path: &str, host: &str) -> (u16, Bytes) {
    h1_get_with(s, path, host, &[]).await
}

async fn h1_get_with(
    s: TlsStream<TcpStream>,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> (u16, Bytes) {
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::get(path).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Empty::<Bytes>::new()).unwrap();
    let r = send.send_request(req).await.unwrap();
    let status = r.status().as_u16();
    (status, r.into_body().collect().await.unwrap().to_bytes())
}

#[tokio::test]
async fn sni_certificates_h2_by_alpn_and_live_swap() {
    let u = upstream("u").await;
    let (cert, key, der) = cert_for("secure.test");
    let mut e = service_and_route(
        1,
        11,
        &u.addr.to_string(),
        json!({"paths": ["/"], "protocols": ["https"], "snis": ["secure.test"]}),
    );
    e.push((
        "certificates",
        json!({"id": id(80), "cert": cert, "key": key}),
    ));
    e.push((
        "snis",
        json!({"id": id(81), "name": "secure.test", "certificate": {"id": id(80)}}),
    ));
    let mut s = state(&e);
    let p = start(s.clone()).await;
    let tls = p.tls.unwrap();

    let conn = connect(tls, "secure.test", &[b"h2", b"http/1.1"]).await;
    assert_eq!(peer_cert(&conn), der, "the SNI's certificate");
    assert_eq!(conn.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (status, body) = h2_get(conn, "/hello", "secure.test").await;
    assert_eq!(status, 200);
    let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(j["headers"]["x-forwarded-proto"], "https");
    assert_eq!(j["uri"], "/hello");

    // HTTP/1.1 over TLS too.
    let conn = connect(tls, "secure.test", &[b"http/1.1"]).await;
    assert_eq!(h1_get(conn, "/one", "secure.test").await.0, 200);

    // Another name: the default certificate, and the route's SNI does not match.
    let conn = connect(tls, "other.test", &[b"http/1.1"]).await;
    assert_ne!(peer_cert(&conn), der);
    assert_eq!(h1_get(conn, "/", "other.test").await.0, 404);

    // A new certificate for the same SNI is served without a restart.
    let (cert2, key2, der2) = cert_for("secure.test");
    apply(
        &mut s,
        &[(
            "certificates",
            json!({"id": id(80), "cert": cert2, "key": key2}),
        )],
    );
    p.publish(s);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let conn = connect(tls, "secure.test", &[b"http/1.1"]).await;
        if peer_cert(&conn) == der2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "certificate never swapped"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A plugin's `protocols` decide per request: key-auth limited to https
/// on one route and to http on another, with both routes open to both.
#[tokio::test]
async fn plugins_run_only_for_their_protocols() {
    let u = upstream("u").await;
    let mut e = service_and_route(1, 11, &u.addr.to_string(), json!({"paths": ["/s"]}));
    e.push((
        "routes",
        json!({"id": id(12), "service": {"id": id(1)}, "paths": ["/h"]}),
    ));
    e.push(("consumers", json!({"id": id(50), "username": "alice"})));
    e.push((
        "keyauth_credentials",
        json!({"id": id(51), "consumer": {"id": id(50)}, "key": "k-1"}),
    ));
    for (plugin, route, protocols) in [(21, 11, ["https"]), (22, 12, ["http"])] {
        e.push((
            "plugins",
            json!({"id": id(plugin), "name": "key-auth", "route": {"id": id(route)},
                   "protocols": protocols}),
        ));
    }
    let p = start(state(&e)).await;
    let tls = p.tls.unwrap();
    let c = client();
    let over_tls = |path: &'static str, headers: &'static [(&'static str, &'static str)]| async move {
        let conn = connect(tls, "localhost", &[b"http/1.1"]).await;
        h1_get_with(conn, path, "localhost", headers).await
    };

    // /s: key-auth for https only.
    let plain = get(&c, p.http, "/s", &[]).await;
    assert_eq!(
        plain.status, 200,
        "not challenged over http: {:?}",
        plain.body
    );
    assert_eq!(plain.header("x-upstream"), Some("u"));
    let (status, body) = over_tls("/s", &[]).await;
    assert_eq!(status, 401, "challenged over https");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        json!({"message": "No API key found in request"})
    );
    assert_eq!(over_tls("/s", &[("apikey", "k-1")]).await.0, 200);

    // /h: key-auth for http only.
    assert_eq!(get(&c, p.http, "/h", &[]).await.status, 401);
    assert_eq!(
        get(&c, p.http, "/h", &[("apikey", "k-1")]).await.status,
        200
    );
    assert_eq!(
        over_tls("/h", &[]).await.0,
        200,
        "not challenged over https"
    );
}

#[tokio::test]
async fn https_services_are_reached_over_tls() {
    let (cert, key, _) = cert_for("localhost");
    let ck = raftgate::proxy::tls::certified_key(&cert, &key).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(One(Arc::new(ck))));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let svc =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(format!(
                            "secure {}",
                            req.uri().path()
                        )))
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    let mut e = service_and_route(1, 11, &up.to_string(), json!({"paths": ["/"]}));
    e[0].1["protocol"] = json!("https");
    let p = start(state(&e)).await;
    let r = get(&client(), p.http, "/x", &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(&r.body[..], b"secure /x");
}

#[derive(Debug)]
struct One(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for One {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}
