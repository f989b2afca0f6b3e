//! The client's address, as Kong resolves it with nginx's realip module
//! configured by `trusted_ips` (`real_ip_header X-Forwarded-For;
//! real_ip_recursive on`): the connection's address, unless that peer is
//! trusted; then `X-Forwarded-For` (all its headers, in order) is walked
//! from the right, skipping trusted hops, and the first untrusted address
//! is the client. A hop that is not an address stops the walk at the last
//! good one (the connection's, when the rightmost hop is already bad);
//! when every hop is trusted, the leftmost is the client. An untrusted
//! peer's `X-Forwarded-For` is never read, so it cannot choose its address.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;

use crate::plugins::ip_restriction::Cidr;

/// The `trusted_ips` node setting: proxies whose `X-Forwarded-For` counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrustedIps(Vec<Cidr>);

impl TrustedIps {
    /// Kong's comma-separated list of IPs and CIDR ranges (IPv4, IPv6);
    /// empty entries are ignored, so "" trusts nobody.
    pub fn parse(list: &str) -> Result<TrustedIps, String> {
        list.split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| Cidr::parse(e).ok_or_else(|| format!("'{e}' is not an IP or CIDR range")))
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedIps)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }
}

/// One `X-Forwarded-For` hop: an address, possibly with a port (`a:p`,
/// `[v6]:p`), as nginx accepts.
fn hop(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// The client's address for a request that came from `peer`.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedIps) -> IpAddr {
    if !trusted.contains(peer) {
        return peer;
    }
    let mut client = peer;
    // Later headers hold later hops: walk them last first.
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(text) = value.to_str() else {
            return client;
        };
        for entry in text.rsplit(',').filter(|e| !e.trim().is_empty()) {
            let Some(ip) = hop(entry) else {
                return client;
            };
            client = ip;
            if !trusted.contains(ip) {
                return client;
            }
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(peer: &str, xff: &[&str], trusted: &str) -> String {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        let trusted = TrustedIps::parse(trusted).unwrap();
        client_ip(peer.parse().unwrap(), &h, &trusted).to_string()
    }

    #[test]
    fn untrusted_peers_keep_their_own_address() {
        assert_eq!(resolve("10.0.0.9", &["1.2.3.4"], ""), "10.0.0.9");
        assert_eq!(resolve("10.0.0.9", &["1.2.3.4"], "10.0.1.0/24"), "10.0.0.9");
        assert_eq!(resolve("10.0.0.9", &[], "10.0.0.0/8"), "10.0.0.9");
    }

    #[test]
    fn trusted_hops_are_skipped_from_the_right() {
        let trusted = "10.0.0.0/8, 192.168.1.1";
        assert_eq!(resolve("10.0.0.9", &["1.2.3.4"], trusted), "1.2.3.4");
        // The client may have put anything on the left: it is never reached.
        assert_eq!(
            resolve("10.0.0.9", &["6.6.6.6, 1.2.3.4, 192.168.1.1"], trusted),
            "1.2.3.4"
        );
        // Several headers are one list, in order.
        assert_eq!(
            resolve("10.0.0.9", &["6.6.6.6", "1.2.3.4", "10.1.1.1"], trusted),
            "1.2.3.4"
        );
        // Every hop trusted: the leftmost.
        assert_eq!(
            resolve("10.0.0.9", &["10.2.2.2, 10.3.3.3"], trusted),
            "10.2.2.2"
        );
        // Ports and IPv6, and IPv4-mapped peers.
        assert_eq!(
            resolve("10.0.0.9", &["[2001:db8::1]:443"], trusted),
            "2001:db8::1"
        );
        assert_eq!(resolve("10.0.0.9", &["1.2.3.4:5678"], trusted), "1.2.3.4");
        assert_eq!(resolve("::ffff:10.0.0.9", &["1.2.3.4"], trusted), "1.2.3.4");
    }

    #[test]
    fn a_bad_hop_stops_the_walk_at_the_last_good_address() {
        let trusted = "10.0.0.0/8";
        assert_eq!(
            resolve("10.0.0.9", &["1.2.3.4, nonsense"], trusted),
            "10.0.0.9"
        );
        assert_eq!(
            resolve("10.0.0.9", &["nonsense, 10.1.1.1"], trusted),
            "10.1.1.1"
        );
        assert_eq!(resolve("10.0.0.9", &[" , ,"], trusted), "10.0.0.9");
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(b"1.2.3.4\xff").unwrap(),
        );
        let t = TrustedIps::parse(trusted).unwrap();
        assert_eq!(
            client_ip("10.0.0.9".parse().unwrap(), &h, &t).to_string(),
            "10.0.0.9"
        );
    }

    #[test]
    fn the_setting_parses_kongs_list() {
        assert!(TrustedIps::parse("").unwrap().is_empty());
        let t = TrustedIps::parse("0.0.0.0/0, ::/0").unwrap();
        assert!(t.contains("8.8.8.8".parse().unwrap()));
        assert!(t.contains("2001:db8::1".parse().unwrap()));
        assert_eq!(
            TrustedIps::parse("10.0.0.0/8,nope").unwrap_err(),
            "'nope' is not an IP or CIDR range"
        );
    }
}
