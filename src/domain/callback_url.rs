//! Where callbacks may go: a host allowlist and the refusal of link-local addresses (cloud metadata services).
//! Pure: checked when a request is accepted and again, on the resolved addresses, at every delivery.

use std::net::IpAddr;

use super::formats::HttpUrl;

/// The callback URL policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallbackUrlPolicy {
    /// Host patterns callbacks may go to (`*` wildcards); empty allows any host.
    pub allowed_hosts: Vec<String>,
    /// Whether link-local addresses (169.254.0.0/16, fe80::/10: cloud metadata services) are allowed.
    pub allow_link_local: bool,
}

fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern.eq_ignore_ascii_case(s),
        Some((pre, post)) => {
            s.len() >= pre.len() + post.len()
                && s[..pre.len()].eq_ignore_ascii_case(pre)
                && s[s.len() - post.len()..].eq_ignore_ascii_case(post)
        }
    }
}

fn link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

impl CallbackUrlPolicy {
    fn host_allowed(&self, host: &str) -> bool {
        self.allowed_hosts.is_empty() || self.allowed_hosts.iter().any(|p| glob(p, host))
    }

    /// Whether an address a callback host resolved to is refused.
    pub fn refuses_address(&self, ip: IpAddr) -> bool {
        !self.allow_link_local && link_local(ip)
    }

    /// Whether callbacks may go to `url`; the client-facing reason when not.
    pub fn check(&self, url: &str) -> Result<HttpUrl, String> {
        let parsed = HttpUrl::parse(url)
            .map_err(|_| "callbackUrl must be an absolute http(s) URL".to_string())?;
        if !self.host_allowed(parsed.host()) {
            return Err(format!(
                "callbackUrl host \"{}\" is not in the broker's callback allowlist",
                parsed.host()
            ));
        }
        if parsed.ip().is_some_and(|ip| self.refuses_address(ip)) {
            return Err("callbackUrl must not point at a link-local address".into());
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_and_link_local() {
        let mut p = CallbackUrlPolicy::default();
        assert!(p.check("http://manager:9090/cb").is_ok());
        assert!(p.check("http://169.254.169.254/latest").is_err());
        assert!(p.check("http://[fe80::1]/x").is_err());
        assert!(p.check("ftp://manager/x").is_err());
        p.allowed_hosts = vec!["*.example.com".into(), "manager".into()];
        assert!(p.check("https://hooks.example.com/cb").is_ok());
        assert!(p.check("http://MANAGER/cb").is_ok());
        assert!(p.check("http://evil.com/cb").is_err());
        p.allow_link_local = true;
        p.allowed_hosts.clear();
        assert!(p.check("http://169.254.169.254/latest").is_ok());
    }
}
