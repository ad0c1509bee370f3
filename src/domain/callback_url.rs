//! Where callbacks may go: a host allowlist, and the refusal of addresses a callback must never reach — cloud
//! metadata services, link-local and unspecified addresses, loopback (unless allowed), and the broker's own
//! endpoints and its Kubernetes API server. Pure: checked when a request is accepted, and on every resolved
//! address at every delivery.
//!
//! The host is read the way the HTTP client will read it (the WHATWG URL rules of the `url` crate, so
//! `2852039166`, `0xa9fea9fe`, `0251.0376.0251.0376` and `169.254.169.254.` are all 169.254.169.254), and every
//! IPv6 form that carries an IPv4 address (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64
//! `64:ff9b::/96`) is judged by that IPv4 address. Private ranges stay allowed: an in-cluster manager lives there.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::formats::HttpUrl;

/// The callback URL policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallbackUrlPolicy {
    /// Host patterns callbacks may go to (`*` wildcards); empty allows any host.
    pub allowed_hosts: Vec<String>,
    /// Whether link-local addresses (169.254.0.0/16, fe80::/10) and the cloud metadata addresses are allowed.
    pub allow_link_local: bool,
    /// Whether loopback addresses (127.0.0.0/8, ::1) are allowed (`--dev` allows them, for a local receiver).
    pub allow_loopback: bool,
    /// Sockets callbacks never go to, whatever else is allowed: the broker's own listeners and its API server.
    pub refused_sockets: Vec<SocketAddr>,
}

/// Where a checked URL points: a literal address, or a name to resolve (each answer checked again).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallbackTarget {
    Address(SocketAddr),
    Name { host: String, port: u16 },
}

/// Addresses of cloud metadata services outside the link-local range (AWS IPv6, Alibaba Cloud).
const METADATA: [IpAddr; 2] = [
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
];

/// The address as the network will treat it: IPv6 forms that embed an IPv4 address become that address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else {
        return ip;
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let s = v6.segments();
    // NAT64 (RFC 6052 well-known prefix 64:ff9b::/96) carries the IPv4 address in its last 32 bits.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return IpAddr::V4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    // IPv4-compatible (deprecated ::a.b.c.d), but not :: and ::1 themselves.
    if s[..6] == [0; 6] && (s[6] != 0 || s[7] > 1) {
        return IpAddr::V4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    ip
}

impl CallbackUrlPolicy {
    fn host_allowed(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        // Host names are case-insensitive.
        let host = host.to_ascii_lowercase();
        self.allowed_hosts.is_empty()
            || self
                .allowed_hosts
                .iter()
                .any(|p| super::glob::matches(&p.to_ascii_lowercase(), &host))
    }

    /// Why a callback must not be sent to this address, if it must not.
    pub fn refuses(&self, addr: SocketAddr) -> Option<String> {
        let ip = canonical(addr.ip());
        let socket = SocketAddr::new(ip, addr.port());
        let own = self.refused_sockets.iter().any(|r| {
            let rip = canonical(r.ip());
            r.port() == socket.port() && (rip == ip || (rip.is_unspecified() && is_local(ip)))
        });
        if own {
            return Some(format!(
                "the broker's own endpoint or its Kubernetes API ({socket})"
            ));
        }
        let link_local = match ip {
            IpAddr::V4(v4) => v4.is_link_local(),
            IpAddr::V6(v6) => v6.is_unicast_link_local(),
        };
        if !self.allow_link_local && (link_local || METADATA.contains(&ip)) {
            return Some(format!("a link-local or cloud metadata address ({ip})"));
        }
        let unspecified = match ip {
            IpAddr::V4(v4) => v4.octets()[0] == 0,
            IpAddr::V6(v6) => v6.is_unspecified(),
        };
        if unspecified {
            return Some(format!("an unspecified address ({ip})"));
        }
        if !self.allow_loopback && ip.is_loopback() {
            return Some(format!("a loopback address ({ip})"));
        }
        None
    }

    /// Whether callbacks may go to `url`; the client-facing reason when not.
    pub fn check(&self, url: &str) -> Result<CallbackTarget, String> {
        let parsed = HttpUrl::parse(url)
            .map_err(|_| "callbackUrl must be an absolute http(s) URL".to_string())?;
        // Read the host exactly as the HTTP client will.
        let whatwg = url::Url::parse(url)
            .map_err(|_| "callbackUrl must be an absolute http(s) URL".to_string())?;
        let port = parsed.port();
        let target = match whatwg.host() {
            Some(url::Host::Ipv4(v4)) => CallbackTarget::Address(SocketAddr::new(v4.into(), port)),
            Some(url::Host::Ipv6(v6)) => CallbackTarget::Address(SocketAddr::new(v6.into(), port)),
            Some(url::Host::Domain(d)) => CallbackTarget::Name {
                host: d.to_string(),
                port,
            },
            None => return Err("callbackUrl must be an absolute http(s) URL".into()),
        };
        let host = match &target {
            CallbackTarget::Name { host, .. } => host.clone(),
            CallbackTarget::Address(a) => a.ip().to_string(),
        };
        if !self.host_allowed(&host) && !self.host_allowed(parsed.host()) {
            return Err(format!(
                "callbackUrl host \"{}\" is not in the broker's callback allowlist",
                parsed.host()
            ));
        }
        if let CallbackTarget::Address(a) = target
            && let Some(why) = self.refuses(a)
        {
            return Err(format!("callbackUrl must not point at {why}"));
        }
        Ok(target)
    }
}

/// Addresses a listener on the unspecified address also answers on, as far as can be told without I/O.
fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist() {
        let mut p = CallbackUrlPolicy::default();
        assert!(p.check("http://manager:9090/cb").is_ok());
        assert!(p.check("ftp://manager/x").is_err());
        p.allowed_hosts = vec!["*.example.com".into(), "manager".into()];
        assert!(p.check("https://hooks.example.com/cb").is_ok());
        assert!(p.check("http://MANAGER/cb").is_ok());
        assert!(
            p.check("http://manager./cb").is_ok(),
            "a trailing dot is the same host"
        );
        assert!(p.check("http://evil.com/cb").is_err());
    }

    #[test]
    fn every_spelling_of_the_metadata_service_is_refused() {
        let p = CallbackUrlPolicy::default();
        for url in [
            "http://169.254.169.254/latest",
            "http://169.254.169.254./latest",
            "http://2852039166/",
            "http://0xa9fea9fe/",
            "http://0251.0376.0251.0376/",
            "http://169.254.43518/",
            "http://[::ffff:169.254.169.254]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://[::169.254.169.254]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[64:ff9b::169.254.169.254]/",
            "http://[fd00:ec2::254]/",
            "http://100.100.100.200/",
            "http://[fe80::1]/x",
            "http://0.0.0.0:8082/",
            "http://[::]:8082/",
            "http://0/",
        ] {
            let e = p.check(url).expect_err(url);
            // Either refused as an address, or not accepted as a URL at all (an all-numeric last label).
            assert!(
                e.starts_with("callbackUrl must not point at")
                    || e.contains("absolute http(s) URL"),
                "{url}: {e}"
            );
        }
        let open = CallbackUrlPolicy {
            allow_link_local: true,
            ..Default::default()
        };
        assert!(open.check("http://169.254.169.254/latest").is_ok());
    }

    #[test]
    fn loopback_and_the_brokers_own_sockets() {
        let mut p = CallbackUrlPolicy {
            refused_sockets: vec![
                "0.0.0.0:8082".parse().unwrap(),
                "0.0.0.0:9090".parse().unwrap(),
                "10.96.0.1:443".parse().unwrap(),
            ],
            ..Default::default()
        };
        for url in [
            "http://127.0.0.1:9999/cb",
            "http://[::1]:9999/cb",
            "http://[::ffff:127.0.0.1]:9999/cb",
            "http://2130706433:9999/cb",
        ] {
            assert!(p.check(url).is_err(), "{url}");
        }
        p.allow_loopback = true;
        assert!(p.check("http://127.0.0.1:9999/cb").is_ok());
        assert!(
            p.check("http://127.0.0.1:9090/metrics").is_err(),
            "own metrics port"
        );
        assert!(
            p.check("http://[::1]:8082/v1/provision").is_err(),
            "own API port"
        );
        assert!(
            p.check("https://10.96.0.1/api").is_err(),
            "the Kubernetes API"
        );
        assert!(
            p.check("http://10.0.0.7:8082/cb").is_ok(),
            "another host's 8082 is fine"
        );
        assert!(
            p.check("http://10.1.2.3/cb").is_ok(),
            "private ranges stay allowed"
        );
        assert!(p.check("http://[fd12::1]/cb").is_ok());
    }

    #[test]
    fn embedded_ipv4_is_unwrapped() {
        let v4: IpAddr = "169.254.169.254".parse().unwrap();
        for s in [
            "::ffff:169.254.169.254",
            "::169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert_eq!(canonical(s.parse().unwrap()), v4, "{s}");
        }
        for s in ["::1", "::", "fd00:ec2::254", "2001:db8::1"] {
            let ip: IpAddr = s.parse().unwrap();
            assert_eq!(canonical(ip), ip, "{s}");
        }
    }
}
