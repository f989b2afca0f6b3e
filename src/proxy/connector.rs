//! The upstream connector: plain TCP for `http` and `grpc` services, TLS
//! (rustls) on top for `https` and `grpcs` ones (ALPN `h2` for the latter),
//! with the service's write timeout. Like Kong (whose default is `proxy_ssl_verify
//! off`), the upstream certificate is checked only when the service sets
//! `tls_verify: true`, against the system's trusted roots.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::plugins::BoxError;

/// Connects to `http://` and `https://` upstream URIs.
#[derive(Clone)]
pub struct Connector {
    http: HttpConnector,
    tls: TlsConnector,
    write_timeout: Duration,
}

impl Connector {
    /// `http2`: offer `h2` by ALPN instead of `http/1.1`.
    pub fn new(
        mut http: HttpConnector,
        verify: bool,
        write_timeout: Duration,
        http2: bool,
    ) -> Connector {
        http.enforce_http(false);
        Connector {
            http,
            tls: TlsConnector::from(client_config(verify, http2)),
            write_timeout,
        }
    }
}

fn client_config(verify: bool, http2: bool) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let mut config = if verify {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "a system root certificate could not be loaded");
        }
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            tracing::warn!("no trusted root certificates: tls_verify services will fail");
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    };
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Arc::new(config)
}

impl tower::Service<Uri> for Connector {
    /// hyper's HTTP/2 client wants its traits; `h1` unwraps the stream.
    type Response = TokioIo<Stream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<TokioIo<Stream>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let https = uri.scheme_str() == Some("https");
        let host = uri
            .host()
            .unwrap_or("")
            .trim_matches(['[', ']'])
            .to_string();
        let connecting = self.http.call(uri);
        let tls = self.tls.clone();
        let write_timeout = self.write_timeout;
        Box::pin(async move {
            let tcp = connecting.await?.into_inner();
            let io = if https {
                let name = ServerName::try_from(host)?;
                Io::Tls(Box::new(tls.connect(name, tcp).await?))
            } else {
                Io::Plain(tcp)
            };
            Ok(TokioIo::new(Stream {
                io,
                write_timeout,
                blocked: None,
            }))
        })
    }
}

/// A connection to an upstream, plain or TLS, that fails a write blocked
/// for longer than the service's write timeout (Kong's `write_timeout`:
/// between two successive writes). The timer is armed only while blocked.
pub struct Stream {
    io: Io,
    write_timeout: Duration,
    blocked: Option<Pin<Box<tokio::time::Sleep>>>,
}

enum Io {
    Plain(TcpStream),
    // Boxed: a TLS session is far larger than a socket.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// Maps a write's outcome: progress disarms the timer, a block arms it.
    fn on_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.blocked = None;
            return polled;
        }
        let timeout = self.write_timeout;
        let timer = self
            .blocked
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "upstream write timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        match &self.io {
            Io::Plain(s) => s.connected(),
            Io::Tls(s) => s.get_ref().0.connected(),
        }
    }
}

impl Stream {
    /// Whether an idle connection is still fit for a request: not closed
    /// by the upstream, and with nothing unasked for to read. Costs no
    /// system call while the reactor saw nothing arrive on the socket.
    pub fn idle_ok(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let tcp = match &self.io {
            Io::Plain(s) => s,
            Io::Tls(s) => s.get_ref().0,
        };
        if tcp.poll_read_ready(&mut cx).is_pending() {
            return true;
        }
        // Something arrived: a close, stray bytes, or (TLS) a record that
        // carries no data, such as a session ticket.
        let mut byte = [0u8; 1];
        let mut buf = tokio::io::ReadBuf::new(&mut byte);
        matches!(
            tokio::io::AsyncRead::poll_read(Pin::new(self), &mut cx, &mut buf),
            Poll::Pending
        )
    }
}

impl tokio::io::AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        };
        this.on_write(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        };
        this.on_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        };
        this.on_write(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// Accepts any upstream certificate (Kong's default, `tls_verify` unset),
/// while still checking the handshake signatures.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
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
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
