//! Network address helpers shared by the configuration, the listener and the faces.

use std::net::IpAddr;

/// An address block: an IP and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let shift = 32 - u32::from(self.prefix.min(32));
                shift == 32 || (u32::from(net) >> shift) == (u32::from(ip) >> shift)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let shift = 128 - u32::from(self.prefix.min(128));
                shift == 128 || (u128::from(net) >> shift) == (u128::from(ip) >> shift)
            }
            (IpAddr::V6(net), IpAddr::V4(ip)) => net
                .to_ipv4_mapped()
                .is_some_and(|n| n == ip && self.prefix >= 96),
            (IpAddr::V4(_), IpAddr::V6(ip)) => ip.to_ipv4_mapped().is_some_and(|v4| {
                Cidr {
                    addr: self.addr,
                    prefix: self.prefix,
                }
                .contains(IpAddr::V4(v4))
            }),
        }
    }
}

/// `10.0.0.0/8`, `::1`, `192.168.1.7`.
pub fn parse_cidr(s: &str) -> Option<Cidr> {
    let s = s.trim();
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?),
        None => {
            let a = s.parse::<IpAddr>().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some(Cidr { addr, prefix })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn cidr_matching() {
        let net = parse_cidr("10.1.0.0/16");
        assert!(net.is_some_and(|n| n.contains(ip("10.1.200.3"))));
        assert!(net.is_some_and(|n| !n.contains(ip("10.2.0.1"))));
        assert!(parse_cidr("::1").is_some_and(|n| n.contains(ip("::1"))));
        assert!(parse_cidr("0.0.0.0/0").is_some_and(|n| n.contains(ip("8.8.8.8"))));
        assert!(parse_cidr("10.0.0.0/33").is_none());
        assert!(parse_cidr("nonsense").is_none());
        assert!(parse_cidr("127.0.0.1").is_some_and(|n| n.contains(ip("::ffff:127.0.0.1"))));
    }
}
