//! Which peers are trusted proxies (`trusted_proxies`): only their
//! `Forwarded` / `X-Forwarded-*` headers say anything about the request URL.
//! Anyone else could set those headers to whatever an access token names.

use std::net::IpAddr;

/// An IP address or a CIDR block (`10.0.0.0/8`, `fd00::/8`, `127.0.0.1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpBlock {
    network: IpAddr,
    prefix: u8,
}

impl IpBlock {
    /// Parses an address (a block of one) or `address/prefix`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR block"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?} has an invalid prefix length"))?,
        };
        Ok(Self { network, prefix })
    }

    /// Whether `ip` is in the block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (network, ip, bits) = match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => (u128::from(u32::from(n)), u128::from(u32::from(a)), 32),
            (IpAddr::V6(n), IpAddr::V6(a)) => (u128::from(n), u128::from(a), 128),
            _ => return false,
        };
        let host_bits = bits - u32::from(self.prefix);
        // A shift by 128 overflows: a /0 block contains every address.
        let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
        network & mask == ip & mask
    }
}

/// Whether `peer` is one of the configured trusted proxies (blocks that do
/// not parse were refused at start-up, so skipping them changes nothing).
pub fn is_trusted(trusted: &[String], peer: Option<IpAddr>) -> bool {
    let Some(peer) = peer else { return false };
    trusted
        .iter()
        .filter_map(|block| IpBlock::parse(block).ok())
        .any(|block| block.contains(peer))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn blocks_contain_their_addresses_only() {
        let block = IpBlock::parse("10.1.0.0/16").unwrap();
        assert!(block.contains(ip("10.1.200.3")));
        assert!(!block.contains(ip("10.2.0.1")));
        assert!(block.contains(ip("::ffff:10.1.0.9")), "IPv4-mapped");
        let one = IpBlock::parse("127.0.0.1").unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        assert!(IpBlock::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(IpBlock::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
        assert!(!IpBlock::parse("fd00::/8").unwrap().contains(ip("10.0.0.1")));
        assert!(IpBlock::parse("10.0.0.0/33").is_err());
        assert!(IpBlock::parse("proxy.local").is_err());
        assert!(is_trusted(&["10.0.0.0/8".into()], Some(ip("10.9.9.9"))));
        assert!(!is_trusted(&[], Some(ip("10.9.9.9"))));
        assert!(!is_trusted(&["10.0.0.0/8".into()], None));
    }
}
