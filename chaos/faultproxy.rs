//! A fault-injecting TCP proxy for the links between nodes (the kernel
//! here has no netem). Each node's cluster address, as its peers know it,
//! is a proxy in front of its real port, and the proxy tells which node a
//! connection comes from by its source address, so it knows which link
//! (from → to) a connection belongs to and can cut it, delay it, or make
//! it lossy.
//!
//! Two users: the local backend runs the proxies in the chaos harness
//! itself (nodes send from their own loopback address 127.0.0.(10+id));
//! the Docker backend runs them in a container of their own on the compose
//! network (examples/faultproxy.rs), steered through [`control`].
//!
//! Delay is latency, not a bandwidth cap: every chunk read is due `delay`
//! after it arrived and chunks follow each other without waiting on one
//! another. Loss is modelled at the TCP level: a chunk "lost" with
//! probability p is due a retransmission delay (200 ms) later, and holds
//! up the chunks behind it, as a dropped segment would.
// Shared by the chaos harness and examples/faultproxy.rs; each uses a part.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

const RETRANSMIT: Duration = Duration::from_millis(200);
/// Chunks in flight per direction of a connection; a full queue stops
/// reading, so the sender feels TCP back-pressure.
const QUEUE: usize = 64;
const CHUNK: usize = 16 * 1024;
/// A peer that takes longer than this to accept a chunk (gone, or
/// partitioned away) ends the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// The nodes give up on a peer they cannot connect to after 500 ms.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How soon a cut closes a connection that carries nothing.
const CUT_POLL: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Default, Debug, PartialEq)]
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
    /// The same fault on every link between two of `ids`, both ways.
    pub fn set_all(&self, ids: &[u64], fault: LinkFault) {
        for from in ids {
            for to in ids {
                if from != to {
                    self.set(*from, *to, fault);
                }
            }
        }
    }
    fn describe(&self) -> String {
        let faults = self.faults.read().unwrap();
        let mut links: Vec<_> = faults.iter().collect();
        links.sort_by_key(|(link, _)| **link);
        links
            .iter()
            .map(|((from, to), f)| {
                format!(
                    "{from}>{to} cut={} delay_ms={} loss={}",
                    u8::from(f.cut),
                    f.delay.as_millis(),
                    f.loss
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Which node a connection comes from, by its source address.
pub type Identify = Arc<dyn Fn(IpAddr) -> Option<u64> + Send + Sync>;

/// The loopback address node `id` sends its cluster traffic from (local
/// backend).
pub fn source_ip(id: u64) -> IpAddr {
    IpAddr::from([127, 0, 0, 10 + id as u8])
}

fn loopback_node(ip: IpAddr) -> Option<u64> {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            ((a, b, c) == (127, 0, 0) && d > 10).then(|| u64::from(d - 10))
        }
        IpAddr::V6(_) => None,
    }
}

/// Starts a proxy on loopback for the links into node `to` (real port
/// `target`), for nodes sending from [`source_ip`]. Returns the port peers
/// should use.
pub async fn start(links: Links, to: u64, target: SocketAddr) -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(serve(listener, links, to, target, Arc::new(loopback_node)));
    Ok(port)
}

/// Proxies every connection `listener` accepts to `target` (node `to`).
/// Connections from an address `identify` does not know are refused.
pub async fn serve(
    listener: TcpListener,
    links: Links,
    to: u64,
    target: SocketAddr,
    identify: Identify,
) {
    loop {
        let Some((inbound, peer)) = accept(&listener).await else {
            continue;
        };
        let Some(from) = identify(peer.ip()) else {
            continue;
        };
        if links.get(from, to).cut {
            continue; // dropped: the connection closes at once
        }
        let links = links.clone();
        tokio::spawn(async move {
            let outbound =
                match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
                    Ok(Ok(stream)) => stream,
                    _ => return,
                };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (ri, wi) = inbound.into_split();
            let (ro, wo) = outbound.into_split();
            // The connection ends with the first direction that ends
            // (after delivering what it had read).
            tokio::select! {
                _ = pipe(ri, wo, links.clone(), from, to) => {}
                _ = pipe(ro, wi, links, to, from) => {}
            }
        });
    }
}

/// The next connection; `None` after a failed accept (out of file
/// descriptors, say), once a short pause has passed, so that a passing
/// error does not end a listener for good.
async fn accept(listener: &TcpListener) -> Option<(TcpStream, SocketAddr)> {
    match listener.accept().await {
        Ok(accepted) => Some(accepted),
        Err(_) => {
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

/// One direction of a connection: a reader that stamps every chunk with
/// the time it is due, and a writer that delivers chunks in order when
/// due. Ends when the writer ends: the reader saw the end and everything
/// read was delivered, a write failed or stalled, or the link was cut.
async fn pipe(
    mut reader: OwnedReadHalf,
    mut writer: OwnedWriteHalf,
    links: Links,
    from: u64,
    to: u64,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUE);
    let read_links = links.clone();
    let read = async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let fault = read_links.get(from, to);
            if fault.cut {
                return;
            }
            let mut due = Instant::now() + fault.delay;
            if fault.loss > 0.0 && rand::random::<f64>() < fault.loss {
                due += RETRANSMIT;
            }
            if tx.send((due, buf[..n].to_vec())).await.is_err() {
                return;
            }
        }
        // `tx` goes with this future: the writer drains the queue and ends.
    };
    let write = async move {
        loop {
            let (due, bytes) = tokio::select! {
                item = rx.recv() => match item {
                    Some(item) => item,
                    None => return,
                },
                _ = tokio::time::sleep(CUT_POLL) => {
                    if links.get(from, to).cut {
                        return;
                    }
                    continue;
                }
            };
            tokio::time::sleep_until(due).await;
            if links.get(from, to).cut {
                return;
            }
            match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&bytes)).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
    };
    let read_then_wait = async move {
        read.await;
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = write => {}
        _ = read_then_wait => {}
    }
}

/// Serves the control protocol on `listener`, one command a line, one
/// answer a line (`ok …` or `error …`):
///
/// ```text
/// set FROM TO [cut=0|1] [delay_ms=N] [loss=P]   the fault on link FROM → TO
/// all ID,ID,… [cut=0|1] [delay_ms=N] [loss=P]   the same on every link among them
/// heal                                          no fault anywhere
/// show                                          the faults set
/// ```
pub async fn control(listener: TcpListener, links: Links) {
    loop {
        let Some((stream, _)) = accept(&listener).await else {
            continue;
        };
        let links = links.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let answer = match command(&links, &line) {
                    Ok(text) => format!("ok {text}\n"),
                    Err(e) => format!("error {e}\n"),
                };
                if write.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

fn command(links: &Links, line: &str) -> Result<String, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["heal"] => {
            links.heal();
            Ok(String::new())
        }
        ["show"] => Ok(links.describe()),
        ["set", from, to, rest @ ..] => {
            let fault = parse_fault(rest)?;
            links.set(parse_id(from)?, parse_id(to)?, fault);
            Ok(links.describe())
        }
        ["all", ids, rest @ ..] => {
            let ids = ids
                .split(',')
                .map(parse_id)
                .collect::<Result<Vec<_>, _>>()?;
            links.set_all(&ids, parse_fault(rest)?);
            Ok(links.describe())
        }
        _ => Err(format!("unknown command {line:?}")),
    }
}

fn parse_id(word: &str) -> Result<u64, String> {
    word.parse().map_err(|_| format!("bad node id {word:?}"))
}

fn parse_fault(words: &[&str]) -> Result<LinkFault, String> {
    let mut fault = LinkFault::default();
    for word in words {
        let bad = || format!("bad setting {word:?}");
        match word.split_once('=').ok_or_else(bad)? {
            ("cut", v) => fault.cut = v == "1",
            ("delay_ms", v) => fault.delay = Duration::from_millis(v.parse().map_err(|_| bad())?),
            ("loss", v) => fault.loss = v.parse().map_err(|_| bad())?,
            _ => return Err(bad()),
        }
    }
    Ok(fault)
}

/// The `all` command that puts `fault` on every link among `ids`.
pub fn all_command(ids: &[u64], fault: LinkFault) -> String {
    let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
    format!(
        "all {} cut={} delay_ms={} loss={}",
        ids.join(","),
        u8::from(fault.cut),
        fault.delay.as_millis(),
        fault.loss
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        let links = Links::default();
        let fault = LinkFault {
            cut: false,
            delay: Duration::from_millis(100),
            loss: 0.1,
        };
        command(&links, &all_command(&[1, 2, 3], fault)).unwrap();
        assert_eq!(links.get(1, 3), fault);
        assert_eq!(links.get(3, 2), fault);
        assert_eq!(links.get(1, 1), LinkFault::default());
        command(&links, "set 2 1 cut=1").unwrap();
        assert!(links.get(2, 1).cut);
        command(&links, "heal").unwrap();
        assert_eq!(links.get(1, 3), LinkFault::default());
        assert!(command(&links, "set 1 x").is_err());
        assert!(command(&links, "set 1 2 delay=3").is_err());
    }
}
