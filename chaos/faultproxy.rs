//! A fault-injecting TCP proxy for the links between local nodes (the
//! kernel here has no netem). Each node's cluster address, as its peers
//! know it, is a proxy in front of its real port; every node's outgoing
//! cluster connections come from its own loopback address 127.0.0.(10+id),
//! so the proxy knows which link (from → to) a connection belongs to and
//! can cut it, delay it, or make it lossy.
//!
//! Loss is modelled at the TCP level: a chunk "lost" with probability p
//! costs a retransmission delay (200 ms), as a dropped segment would.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const RETRANSMIT: Duration = Duration::from_millis(200);

#[derive(Clone, Copy, Default, Debug)]
pub struct LinkFault {
    pub cut: bool,
    pub delay: Duration,
    pub loss: f64,
}

/// Faults by directed link (from node, to node).
#[derive(Clone, Default)]
pub struct Links {
    faults: Arc<RwLock<HashMap<(u64, u64), LinkFault>>>,
}

impl Links {
    pub fn set(&self, from: u64, to: u64, fault: LinkFault) {
        self.faults.write().unwrap().insert((from, to), fault);
    }
    pub fn get(&self, from: u64, to: u64) -> LinkFault {
        self.faults
            .read()
            .unwrap()
            .get(&(from, to))
            .copied()
            .unwrap_or_default()
    }
    pub fn heal(&self) {
        self.faults.write().unwrap().clear();
    }
    /// Cuts every link between the two groups, both ways.
    pub fn partition(&self, a: &[u64], b: &[u64]) {
        for x in a {
            for y in b {
                let cut = LinkFault {
                    cut: true,
                    ..Default::default()
                };
                self.set(*x, *y, cut);
                self.set(*y, *x, cut);
            }
        }
    }
}

/// The loopback address node `id` sends its cluster traffic from.
pub fn source_ip(id: u64) -> IpAddr {
    IpAddr::from([127, 0, 0, 10 + id as u8])
}

fn node_of(ip: IpAddr) -> Option<u64> {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            ((a, b, c) == (127, 0, 0) && d > 10).then(|| u64::from(d - 10))
        }
        IpAddr::V6(_) => None,
    }
}

/// Starts a proxy for the links into node `to` (real port `target`).
/// Returns the port peers should use.
pub async fn start(links: Links, to: u64, target: SocketAddr) -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((inbound, peer)) = listener.accept().await {
            let Some(from) = node_of(peer.ip()) else {
                continue;
            };
            if links.get(from, to).cut {
                continue; // dropped: the connection closes at once
            }
            let links = links.clone();
            tokio::spawn(async move {
                let Ok(outbound) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                let up = pump(ri, wo, links.clone(), from, to);
                let down = pump(ro, wi, links, to, from);
                tokio::select! { _ = up => {}, _ = down => {} }
            });
        }
    });
    Ok(port)
}

async fn pump(
    mut reader: tokio::net::tcp::OwnedReadHalf,
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    links: Links,
    from: u64,
    to: u64,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let fault = links.get(from, to);
        if fault.cut {
            return;
        }
        let mut wait = fault.delay;
        if fault.loss > 0.0 && rand::random::<f64>() < fault.loss {
            wait += RETRANSMIT;
        }
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        if writer.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
