//! TLS for the proxy listener: a rustls certificate resolver that reads the
//! certificates and SNIs of the current config (swapped atomically, no
//! restart), with a self-signed default certificate generated at startup
//! for clients whose SNI matches nothing. ALPN offers h2 and http/1.1.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use uuid::Uuid;

use crate::model::{Entity, EntityKind, State};

/// The certificates of one config, by server name.
#[derive(Debug, Default)]
pub struct CertIndex {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` kept as `.example.com`.
    wildcard: Vec<(String, Arc<CertifiedKey>)>,
}

impl CertIndex {
    /// Parses every certificate that an SNI names. A certificate that does
    /// not parse is left out (and logged), its SNIs fall back to the default.
    pub fn compile(state: &State) -> CertIndex {
        let mut parsed: HashMap<Uuid, Arc<CertifiedKey>> = HashMap::new();
        let mut index = CertIndex::default();
        for entity in state.iter(EntityKind::Sni) {
            let Entity::Sni(sni) = entity else { continue };
            let id = sni.certificate.id;
            let key = match parsed.get(&id) {
                Some(k) => k.clone(),
                None => {
                    let Some(Entity::Certificate(cert)) = state.get(EntityKind::Certificate, id)
                    else {
                        continue;
                    };
                    match certified_key(&cert.cert, &cert.key) {
                        Ok(k) => {
                            let k = Arc::new(k);
                            parsed.insert(id, k.clone());
                            k
                        }
                        Err(e) => {
                            tracing::warn!(certificate = %id, error = %e, "certificate unusable");
                            continue;
                        }
                    }
                }
            };
            let name = sni.name.to_ascii_lowercase();
            match name.strip_prefix('*') {
                Some(suffix) => index.wildcard.push((suffix.to_string(), key)),
                None => {
                    index.exact.insert(name, key);
                }
            }
        }
        // Longest suffix first, so the most specific wildcard wins.
        index.wildcard.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        index
    }

    fn find(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = name.to_ascii_lowercase();
        if let Some(k) = self.exact.get(&name) {
            return Some(k.clone());
        }
        self.wildcard
            .iter()
            .find(|(suffix, _)| name.len() > suffix.len() && name.ends_with(suffix.as_str()))
            .map(|(_, k)| k.clone())
    }
}

/// A PEM chain and key → rustls' signing key.
pub fn certified_key(cert_pem: &str, key_pem: &str) -> Result<CertifiedKey, String> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad certificate PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in PEM".into());
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| format!("bad key PEM: {e}"))?
        .ok_or("no private key in PEM")?;
    let signing = any_supported_type(&key).map_err(|e| format!("unsupported key: {e}"))?;
    Ok(CertifiedKey::new(certs, signing))
}

/// Picks the certificate for a handshake from the current index.
#[derive(Debug)]
pub struct Resolver {
    pub index: ArcSwap<CertIndex>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|name| self.index.load().find(name))
            .or_else(|| Some(self.default.clone()))
    }
}

/// A resolver with a freshly generated self-signed default certificate.
pub fn resolver() -> Result<Arc<Resolver>, String> {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .map_err(|e| format!("cannot generate the default certificate: {e}"))?;
    let cert = generated.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(generated.key_pair.serialize_der()));
    let signing = any_supported_type(&key).map_err(|e| e.to_string())?;
    Ok(Arc::new(Resolver {
        index: ArcSwap::from_pointee(CertIndex::default()),
        default: Arc::new(CertifiedKey::new(vec![cert], signing)),
    }))
}

/// The rustls server configuration of the proxy's TLS listener.
pub fn server_config(resolver: Arc<Resolver>) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}
