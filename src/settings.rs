//! Node settings, resolved from (highest first) command-line flags,
//! `RAFTGATE_<FLAG>` environment variables, a TOML file (`--config`), and
//! Kong's defaults.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use serde::Deserialize;

/// `raftgate serve` flags. Every one may also come from the environment
/// or the config file, so none has a clap default.
#[derive(Args, Debug, Default, Clone)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (flag names, `_` for `-`).
    #[arg(long, env = "RAFTGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// This node's id, unique in the cluster [default: 1].
    #[arg(long, env = "RAFTGATE_NODE_ID")]
    pub node_id: Option<u64>,
    /// Where the Raft log, state and cluster secret live [default: ./raftgate-data].
    #[arg(long, env = "RAFTGATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Client traffic [default: 0.0.0.0:8000].
    #[arg(long, env = "RAFTGATE_PROXY_LISTEN")]
    pub proxy_listen: Option<SocketAddr>,
    /// Client traffic over TLS; "off" disables it [default: 0.0.0.0:8443].
    #[arg(long, env = "RAFTGATE_PROXY_TLS_LISTEN")]
    pub proxy_tls_listen: Option<String>,
    /// Admin API [default: 127.0.0.1:8001].
    #[arg(long, env = "RAFTGATE_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// /status, /status/ready, /metrics [default: 0.0.0.0:8100].
    #[arg(long, env = "RAFTGATE_STATUS_LISTEN")]
    pub status_listen: Option<SocketAddr>,
    /// Node-to-node traffic (Raft, gossip) [default: 0.0.0.0:8005].
    #[arg(long, env = "RAFTGATE_CLUSTER_LISTEN")]
    pub cluster_listen: Option<SocketAddr>,
    /// Address peers reach this node's cluster port at [default: this
    /// node's entry in --initial-cluster, else --cluster-listen].
    #[arg(long, env = "RAFTGATE_CLUSTER_ADVERTISE")]
    pub cluster_advertise: Option<String>,
    /// Local IP that outgoing cluster connections bind to (for hosts with
    /// several addresses) [default: chosen by the OS].
    #[arg(long, env = "RAFTGATE_CLUSTER_SOURCE_IP")]
    pub cluster_source_ip: Option<std::net::IpAddr>,
    /// File holding the cluster secret [default: DATA_DIR/cluster-secret,
    /// generated on first start].
    #[arg(long, env = "RAFTGATE_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Founding members, the same on each: `1=host:port,2=host:port,…`.
    #[arg(long, env = "RAFTGATE_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// Cluster address of any member to join through.
    #[arg(long, env = "RAFTGATE_JOIN")]
    pub join: Option<String>,
    /// Stay a non-voting member that serves traffic.
    #[arg(long, env = "RAFTGATE_LEARNER")]
    pub learner: Option<bool>,
    /// Take a snapshot (and purge the log behind it) every N applied entries
    /// [default: 5000].
    #[arg(long, env = "RAFTGATE_SNAPSHOT_EVERY")]
    pub snapshot_every: Option<u64>,
    /// File of admin tokens, one `role:token` per line (role `admin` or
    /// `read-only`); required when the admin listener is not loopback.
    #[arg(long, env = "RAFTGATE_ADMIN_TOKENS_FILE")]
    pub admin_tokens_file: Option<PathBuf>,
    /// Access log, one JSON line per proxied request: `stdout`, `off`, or
    /// a file path to append to [default: stdout].
    #[arg(long, env = "RAFTGATE_ACCESS_LOG")]
    pub access_log: Option<String>,
    /// Names of the prometheus plugin's series: `kong` (Kong's own, for
    /// dashboards written for Kong) or `prometheus` (base units and
    /// `_total`, clean under `promtool check metrics`) [default: kong].
    #[arg(long, env = "RAFTGATE_METRIC_NAMES")]
    pub metric_names: Option<String>,
    /// Kong's `trusted_ips`: comma-separated IPs and CIDR ranges of proxies
    /// whose X-Forwarded-For names the client (walked from the right,
    /// skipping trusted hops); "0.0.0.0/0,::/0" trusts every peer
    /// [default: none].
    #[arg(long, env = "RAFTGATE_TRUSTED_IPS")]
    pub trusted_ips: Option<String>,
    /// Threads that serve proxy connections, each with its own event loop
    /// (nginx's `worker_processes`) [default: one per core].
    #[arg(long, env = "RAFTGATE_PROXY_WORKERS")]
    pub proxy_workers: Option<usize>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    node_id: Option<u64>,
    data_dir: Option<PathBuf>,
    proxy_listen: Option<SocketAddr>,
    proxy_tls_listen: Option<String>,
    admin_listen: Option<SocketAddr>,
    status_listen: Option<SocketAddr>,
    cluster_listen: Option<SocketAddr>,
    cluster_advertise: Option<String>,
    cluster_source_ip: Option<std::net::IpAddr>,
    cluster_secret_file: Option<PathBuf>,
    initial_cluster: Option<String>,
    join: Option<String>,
    learner: Option<bool>,
    snapshot_every: Option<u64>,
    admin_tokens_file: Option<PathBuf>,
    access_log: Option<String>,
    metric_names: Option<String>,
    trusted_ips: Option<IpList>,
    proxy_workers: Option<usize>,
}

/// `trusted_ips` in the file: Kong's comma-separated string, or a list.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
enum IpList {
    Text(String),
    List(Vec<String>),
}

impl IpList {
    fn joined(self) -> String {
        match self {
            IpList::Text(t) => t,
            IpList::List(l) => l.join(","),
        }
    }
}

/// Resolved settings of one node.
#[derive(Debug, Clone)]
pub struct Settings {
    pub node_id: u64,
    pub data_dir: PathBuf,
    pub proxy_listen: SocketAddr,
    pub proxy_tls_listen: Option<SocketAddr>,
    pub admin_listen: SocketAddr,
    pub status_listen: SocketAddr,
    pub cluster_listen: SocketAddr,
    pub cluster_advertise: String,
    pub cluster_source_ip: Option<std::net::IpAddr>,
    pub cluster_secret_file: PathBuf,
    pub initial_cluster: BTreeMap<u64, String>,
    pub join: Option<String>,
    pub learner: bool,
    pub snapshot_every: u64,
    pub admin_tokens_file: Option<PathBuf>,
    pub access_log: crate::observe::access_log::Target,
    pub metric_names: crate::observe::metrics::Naming,
    pub trusted_ips: crate::proxy::realip::TrustedIps,
    pub proxy_workers: usize,
}

/// Parses `1=host:port,2=host:port`.
pub fn parse_initial_cluster(text: &str) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut members = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .with_context(|| format!("'{part}' is not id=host:port"))?;
        let id: u64 = id
            .trim()
            .parse()
            .with_context(|| format!("'{id}' is not a node id"))?;
        if !addr.contains(':') {
            bail!("'{addr}' has no port");
        }
        if members.insert(id, addr.trim().to_string()).is_some() {
            bail!("node {id} appears twice in --initial-cluster");
        }
    }
    Ok(members)
}

fn parse_addr(value: &str, what: &str) -> anyhow::Result<SocketAddr> {
    value
        .parse()
        .with_context(|| format!("{what}: '{value}' is not host:port"))
}

impl Settings {
    pub fn resolve(args: &ServeArgs) -> anyhow::Result<Settings> {
        let file: FileSettings = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => FileSettings::default(),
        };
        macro_rules! pick {
            ($field:ident) => {
                args.$field.clone().or(file.$field.clone())
            };
        }
        let node_id = pick!(node_id).unwrap_or(1);
        let data_dir = pick!(data_dir).unwrap_or_else(|| PathBuf::from("raftgate-data"));
        let cluster_listen = pick!(cluster_listen).unwrap_or(parse_addr("0.0.0.0:8005", "")?);
        let initial_cluster = match pick!(initial_cluster) {
            Some(text) => parse_initial_cluster(&text)?,
            None => BTreeMap::new(),
        };
        if !initial_cluster.is_empty() && !initial_cluster.contains_key(&node_id) {
            bail!("--initial-cluster does not list this node's id {node_id}");
        }
        let join = pick!(join);
        if join.is_some() && !initial_cluster.is_empty() {
            bail!("--join and --initial-cluster exclude each other");
        }
        let cluster_advertise = match pick!(cluster_advertise) {
            Some(addr) => addr,
            None => match initial_cluster.get(&node_id) {
                Some(addr) => addr.clone(),
                None if cluster_listen.ip().is_unspecified() => {
                    format!("127.0.0.1:{}", cluster_listen.port())
                }
                None => cluster_listen.to_string(),
            },
        };
        let trusted_ips = args
            .trusted_ips
            .clone()
            .or_else(|| file.trusted_ips.clone().map(IpList::joined))
            .unwrap_or_default();
        let trusted_ips = crate::proxy::realip::TrustedIps::parse(&trusted_ips)
            .map_err(|e| anyhow::anyhow!("--trusted-ips: {e}"))?;
        let proxy_tls_listen = match pick!(proxy_tls_listen).as_deref() {
            Some("off") => None,
            Some(addr) => Some(parse_addr(addr, "--proxy-tls-listen")?),
            None => Some(parse_addr("0.0.0.0:8443", "")?),
        };
        Ok(Settings {
            node_id,
            cluster_secret_file: pick!(cluster_secret_file)
                .unwrap_or_else(|| data_dir.join("cluster-secret")),
            data_dir,
            proxy_listen: pick!(proxy_listen).unwrap_or(parse_addr("0.0.0.0:8000", "")?),
            proxy_tls_listen,
            admin_listen: pick!(admin_listen).unwrap_or(parse_addr("127.0.0.1:8001", "")?),
            status_listen: pick!(status_listen).unwrap_or(parse_addr("0.0.0.0:8100", "")?),
            cluster_listen,
            cluster_advertise,
            cluster_source_ip: pick!(cluster_source_ip),
            initial_cluster,
            join,
            learner: pick!(learner).unwrap_or(false),
            snapshot_every: pick!(snapshot_every).unwrap_or(5_000).max(1),
            admin_tokens_file: pick!(admin_tokens_file),
            access_log: match pick!(access_log) {
                Some(text) => text
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!("--access-log: {e}"))?,
                None => Default::default(),
            },
            metric_names: match pick!(metric_names) {
                Some(text) => text
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!("--metric-names: {e}"))?,
                None => Default::default(),
            },
            trusted_ips,
            proxy_workers: match pick!(proxy_workers) {
                Some(0) => bail!("--proxy-workers must be at least 1"),
                Some(n) => n,
                None => crate::proxy::workers::default_count(),
            },
        })
    }
}

/// Reads the cluster secret, generating it (readable by the owner only)
/// when the file does not exist yet.
pub fn load_or_create_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let secret = text.trim();
            if secret.len() < 16 {
                bail!(
                    "cluster secret in {} is shorter than 16 characters",
                    path.display()
                );
            }
            Ok(secret.as_bytes().to_vec())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use rand::RngCore;
            let mut bytes = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut bytes);
            let secret = hex::encode(bytes);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            write_private(path, &secret)?;
            tracing::info!(file = %path.display(), "generated a new cluster secret");
            Ok(secret.into_bytes())
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_kong() {
        let s = Settings::resolve(&ServeArgs::default()).unwrap();
        assert_eq!(s.proxy_listen.to_string(), "0.0.0.0:8000");
        assert_eq!(s.admin_listen.to_string(), "127.0.0.1:8001");
        assert_eq!(s.status_listen.to_string(), "0.0.0.0:8100");
        assert_eq!(s.cluster_listen.to_string(), "0.0.0.0:8005");
        assert_eq!(s.cluster_advertise, "127.0.0.1:8005");
        assert_eq!(s.node_id, 1);
        assert_eq!(s.data_dir, PathBuf::from("raftgate-data"));
        assert_eq!(s.proxy_workers, crate::proxy::workers::default_count());
    }

    #[test]
    fn proxy_workers_are_at_least_one() {
        let args = |n| ServeArgs {
            proxy_workers: Some(n),
            ..Default::default()
        };
        assert_eq!(Settings::resolve(&args(3)).unwrap().proxy_workers, 3);
        let e = Settings::resolve(&args(0)).unwrap_err().to_string();
        assert!(e.contains("--proxy-workers"), "{e}");
    }

    #[test]
    fn flags_beat_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        std::fs::write(&file, "node_id = 7\nadmin_listen = \"127.0.0.1:9001\"\n").unwrap();
        let args = ServeArgs {
            config: Some(file),
            node_id: Some(3),
            ..Default::default()
        };
        let s = Settings::resolve(&args).unwrap();
        assert_eq!(s.node_id, 3);
        assert_eq!(s.admin_listen.to_string(), "127.0.0.1:9001");
    }

    #[test]
    fn trusted_ips_from_flag_or_file() {
        assert!(Settings::resolve(&ServeArgs::default())
            .unwrap()
            .trusted_ips
            .is_empty());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        std::fs::write(&file, "trusted_ips = [\"10.0.0.0/8\", \"::1\"]\n").unwrap();
        let mut args = ServeArgs {
            config: Some(file.clone()),
            ..Default::default()
        };
        let s = Settings::resolve(&args).unwrap();
        assert!(s.trusted_ips.contains("10.9.9.9".parse().unwrap()));
        assert!(s.trusted_ips.contains("::1".parse().unwrap()));
        std::fs::write(&file, "trusted_ips = \"192.168.0.0/16\"\n").unwrap();
        assert!(Settings::resolve(&args)
            .unwrap()
            .trusted_ips
            .contains("192.168.3.4".parse().unwrap()));
        args.trusted_ips = Some("127.0.0.1, 172.16.0.0/12".into());
        let s = Settings::resolve(&args).unwrap();
        assert!(s.trusted_ips.contains("172.20.0.1".parse().unwrap()));
        assert!(
            !s.trusted_ips.contains("192.168.3.4".parse().unwrap()),
            "flag wins"
        );
        args.trusted_ips = Some("127.0.0.1,bogus".into());
        let e = Settings::resolve(&args).unwrap_err().to_string();
        assert_eq!(e, "--trusted-ips: 'bogus' is not an IP or CIDR range");
    }

    #[test]
    fn trusted_ips_from_the_environment() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        // No other test parses the command line, so none sees this variable.
        std::env::set_var("RAFTGATE_TRUSTED_IPS", "10.0.0.0/8,::1");
        let parsed = Cli::try_parse_from(["raftgate"]);
        std::env::remove_var("RAFTGATE_TRUSTED_IPS");
        let s = Settings::resolve(&parsed.unwrap().serve).unwrap();
        assert!(s.trusted_ips.contains("10.1.2.3".parse().unwrap()));
        assert!(s.trusted_ips.contains("::1".parse().unwrap()));
        assert!(!s.trusted_ips.contains("11.0.0.1".parse().unwrap()));
    }

    #[test]
    fn initial_cluster_is_checked() {
        let m = parse_initial_cluster("1=a:1, 2=b:2").unwrap();
        assert_eq!(m.get(&2).unwrap(), "b:2");
        assert!(parse_initial_cluster("1=a:1,1=b:2").is_err());
        assert!(parse_initial_cluster("x=a:1").is_err());
        assert!(parse_initial_cluster("1=nohost").is_err());
        let args = ServeArgs {
            node_id: Some(4),
            initial_cluster: Some("1=a:1,2=b:2".into()),
            ..Default::default()
        };
        assert!(Settings::resolve(&args).is_err());
    }

    #[test]
    fn secret_is_generated_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let first = load_or_create_secret(&path).unwrap();
        let second = load_or_create_secret(&path).unwrap();
        assert_eq!(first, second);
        assert_eq!(first.len(), 64);
    }
}
