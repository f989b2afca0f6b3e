//! The chaos suite's fault proxy as a program of its own, for the Docker
//! backend: it runs in a container on the compose network (image built
//! FROM scratch, see docker-compose.chaos.yml), every node's peers reach
//! the node through it, and the harness sets delay, loss and cuts through
//! its control port (published on 127.0.0.1 only).
//!
//! ```text
//! faultproxy --control 0.0.0.0:8200 \
//!   --node 1=0.0.0.0:9001=172.28.0.11:8005 --node 2=… --node 3=…
//! ```
//!
//! `--node ID=LISTEN=TARGET`: connections to LISTEN go to node ID at
//! TARGET. A connection counts as coming from the node whose TARGET has
//! its source address; others are refused.

#[path = "../chaos/faultproxy.rs"]
mod faultproxy;

use std::net::SocketAddr;
use std::sync::Arc;

use faultproxy::Links;
use tokio::net::TcpListener;

struct Node {
    id: u64,
    listen: SocketAddr,
    target: SocketAddr,
}

fn parse_node(text: &str) -> Result<Node, String> {
    let bad = || format!("--node wants ID=LISTEN=TARGET, got {text:?}");
    let mut parts = text.split('=');
    let (Some(id), Some(listen), Some(target), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    Ok(Node {
        id: id.parse().map_err(|_| bad())?,
        listen: listen.parse().map_err(|_| bad())?,
        target: target.parse().map_err(|_| bad())?,
    })
}

fn parse_args() -> Result<(SocketAddr, Vec<Node>), String> {
    let mut control = None;
    let mut nodes = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or_else(|| format!("{arg} wants a value"))?;
        match arg.as_str() {
            "--control" => control = Some(value.parse().map_err(|_| format!("bad {value}"))?),
            "--node" => nodes.push(parse_node(&value)?),
            _ => return Err(format!("unknown argument {arg}")),
        }
    }
    let control = control.ok_or("--control is required")?;
    if nodes.is_empty() {
        return Err("no --node given".into());
    }
    Ok((control, nodes))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (control, nodes) = parse_args().unwrap_or_else(|e| {
        eprintln!("faultproxy: {e}");
        std::process::exit(2);
    });
    let links = Links::default();
    let sources: Vec<_> = nodes.iter().map(|n| (n.target.ip(), n.id)).collect();
    let identify: faultproxy::Identify = Arc::new(move |ip| {
        sources
            .iter()
            .find(|(source, _)| *source == ip)
            .map(|(_, id)| *id)
    });
    for node in &nodes {
        let listener = TcpListener::bind(node.listen)
            .await
            .unwrap_or_else(|e| panic!("bind {}: {e}", node.listen));
        eprintln!(
            "faultproxy: {} -> node {} at {}",
            node.listen, node.id, node.target
        );
        tokio::spawn(faultproxy::serve(
            listener,
            links.clone(),
            node.id,
            node.target,
            identify.clone(),
        ));
    }
    let listener = TcpListener::bind(control)
        .await
        .unwrap_or_else(|e| panic!("bind {control}: {e}"));
    eprintln!("faultproxy: control on {control}");
    faultproxy::control(listener, links).await;
}
