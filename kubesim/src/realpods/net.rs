//! Pod networks: one network namespace per pod, joined to the host bridge `kubesim0` by a veth pair, with the
//! pod's address from the pod CIDR (a /16; the bridge holds its first address, which is also the pods' gateway
//! and DNS server). The host reaches every pod IP directly; pods reach each other over the bridge.
//!
//! Names: the namespace is `ks-<12 hex of the pod uid>` (under `/run/netns`), the host end of the veth is
//! `ks<12 hex>`, the pod end `eth0`. Everything named `ks-*`/`ks*` is kubesim's and is removed at start (what a
//! crashed kubesim left) and at shutdown.

use std::net::Ipv4Addr;
use std::path::PathBuf;

/// The bridge every pod's veth is a port of.
pub(crate) const BRIDGE: &str = "kubesim0";
const NETNS_PREFIX: &str = "ks-";

/// The pod CIDR: `A.B.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodCidr {
    pub prefix: [u8; 2],
}

impl Default for PodCidr {
    fn default() -> Self {
        PodCidr { prefix: [10, 244] }
    }
}

impl std::str::FromStr for PodCidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let err = || format!("invalid pod CIDR {s:?}: kubesim takes a /16 such as 10.244.0.0/16");
        let (addr, bits) = s.split_once('/').ok_or_else(err)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| err())?;
        let o = addr.octets();
        if bits != "16" || o[2] != 0 || o[3] != 0 {
            return Err(err());
        }
        Ok(PodCidr {
            prefix: [o[0], o[1]],
        })
    }
}

impl std::fmt::Display for PodCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.0.0/16", self.prefix[0], self.prefix[1])
    }
}

impl PodCidr {
    /// The `n`th pod address (n ≥ 1; 0 is the gateway): `A.B.(n / 254).(n % 254 + 1)`, wrapping in the /16.
    pub fn ip(&self, n: u32) -> String {
        format!(
            "{}.{}.{}.{}",
            self.prefix[0],
            self.prefix[1],
            (n / 254) % 256,
            n % 254 + 1
        )
    }

    /// The inverse of [`PodCidr::ip`], for addresses of this CIDR.
    pub fn number(&self, ip: &str) -> Option<u32> {
        let rest = ip.strip_prefix(&format!("{}.{}.", self.prefix[0], self.prefix[1]))?;
        let (a, b) = rest.split_once('.')?;
        let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
        (b >= 1).then(|| a * 254 + b - 1)
    }

    /// The bridge's address: the pods' gateway and name server.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.prefix[0], self.prefix[1], 0, 1)
    }
}

async fn ip(args: &[&str]) -> Result<String, String> {
    crate::oci::command("ip", args).await
}

/// The 12 hex digits of a pod uid that name its namespace and veth.
pub(crate) fn short(uid: &str) -> String {
    let hex: String = uid.chars().filter(char::is_ascii_hexdigit).collect();
    format!("{hex:0<12}")[..12].to_string()
}

/// Makes the bridge (if missing) with the gateway address, up.
pub(crate) async fn ensure_bridge(cidr: &PodCidr) -> Result<(), String> {
    if ip(&["link", "show", BRIDGE]).await.is_err() {
        ip(&["link", "add", BRIDGE, "type", "bridge"]).await?;
    }
    let gw = format!("{}/16", cidr.gateway());
    let addrs = ip(&["-o", "addr", "show", "dev", BRIDGE]).await?;
    if !addrs.contains(&format!(" {gw} ")) {
        ip(&["addr", "add", &gw, "dev", BRIDGE]).await?;
    }
    ip(&["link", "set", BRIDGE, "up"]).await?;
    Ok(())
}

/// Makes a pod's network namespace with `addr` on its `eth0`; returns the namespace's path.
pub(crate) async fn create(uid: &str, addr: &str, cidr: &PodCidr) -> Result<PathBuf, String> {
    let id = short(uid);
    let ns = format!("{NETNS_PREFIX}{id}");
    let veth = format!("ks{id}");
    // Whatever an earlier attempt left goes first.
    remove(uid).await;
    ip(&["netns", "add", &ns]).await?;
    let made = async {
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ])
        .await?;
        ip(&["link", "set", &veth, "master", BRIDGE, "up"]).await?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/16"),
            "dev",
            "eth0",
        ])
        .await?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"]).await?;
        ip(&["-n", &ns, "link", "set", "lo", "up"]).await?;
        ip(&[
            "-n",
            &ns,
            "route",
            "add",
            "default",
            "via",
            &cidr.gateway().to_string(),
        ])
        .await?;
        Ok::<(), String>(())
    }
    .await;
    if let Err(e) = made {
        remove(uid).await;
        return Err(e);
    }
    Ok(PathBuf::from("/run/netns").join(ns))
}

/// Removes a pod's namespace and veth (either may already be gone).
pub(crate) async fn remove(uid: &str) {
    let id = short(uid);
    let _ = ip(&["netns", "del", &format!("{NETNS_PREFIX}{id}")]).await;
    let _ = ip(&["link", "del", &format!("ks{id}")]).await;
}

/// Removes every pod namespace and veth kubesim made (at start: a crashed run's; at shutdown: all).
pub(crate) async fn remove_all() {
    if let Ok(list) = ip(&["netns", "list"]).await {
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if name.starts_with(NETNS_PREFIX) {
                let _ = ip(&["netns", "del", name]).await;
            }
        }
    }
    if let Ok(links) = ip(&["-o", "link", "show", "type", "veth"]).await {
        for l in links.lines() {
            // "12: ks0123456789ab@if2: <…>"
            let name = l
                .split(": ")
                .nth(1)
                .and_then(|n| n.split('@').next())
                .unwrap_or("");
            if name.starts_with("ks") && name.len() == 14 {
                let _ = ip(&["link", "del", name]).await;
            }
        }
    }
}

/// Removes the bridge (at shutdown).
pub(crate) async fn remove_bridge() {
    let _ = ip(&["link", "del", BRIDGE]).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_addresses_round_trip_in_the_cidr() {
        let c: PodCidr = "10.88.0.0/16".parse().unwrap();
        assert_eq!(c.ip(1), "10.88.0.2");
        assert_eq!(c.gateway().to_string(), "10.88.0.1");
        for n in [1, 253, 254, 255, 65_000] {
            assert_eq!(c.number(&c.ip(n)), Some(n));
        }
        assert_eq!(c.number("10.244.0.2"), None);
        assert!("10.88.0.0/24".parse::<PodCidr>().is_err());
        assert!("10.88.1.0/16".parse::<PodCidr>().is_err());
        assert_eq!(c.to_string(), "10.88.0.0/16");
    }

    #[test]
    fn names_fit_the_kernel_s_fifteen_characters() {
        let id = short("0b9c2f1e-1234-4abc-9def-0123456789ab");
        assert_eq!(id, "0b9c2f1e1234");
        assert!(format!("ks{id}").len() <= 15);
    }
}
