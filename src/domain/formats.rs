//! Syntactic checks of the text formats a request carries: Kubernetes names and label values, email
//! addresses, and http(s) URLs.
//!
//! Each check is deliberately a little stricter than its RFC where the RFC allows something the rest of the
//! chain (the Kubernetes API server, the HTTP client) would reject later: a request that passes here must not
//! fail after the broker has answered 202.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Whether `s` is a lowercase RFC 1123 label of at most `max` characters: `a-z`, `0-9` and `-`, starting and
/// ending with a letter or digit. Namespaces are such labels.
pub fn is_dns1123_label(s: &str, max: usize) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= max
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Whether `s` is a lowercase RFC 1035 label of at most `max` characters: an RFC 1123 label that also starts
/// with a letter. Service names must be such labels, and the broker names Services after the resource.
pub fn is_dns1035_label(s: &str, max: usize) -> bool {
    is_dns1123_label(s, max) && s.as_bytes()[0].is_ascii_lowercase()
}

/// Whether `s` is a non-empty Kubernetes label value: at most 63 characters of `A-Z a-z 0-9 - _ .`, starting
/// and ending with a letter or digit.
pub fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Whether `s` is a plausible email address `local@domain.tld`.
///
/// The local part is an RFC 5322 dot-atom (quoted local parts are refused: nobody needs them for an owner
/// field, and they allow spaces and `@`); the domain is at least two DNS labels with an alphabetic (or
/// punycode) top-level label. Lengths follow RFC 5321: 64 for the local part, 254 overall.
pub fn is_email(s: &str) -> bool {
    if s.len() > 254 {
        return false;
    }
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    is_dot_atom(local) && is_email_domain(domain)
}

fn is_dot_atom(local: &str) -> bool {
    const SPECIALS: &[u8] = b"!#$%&'*+/=?^_`{|}~-";
    !local.is_empty()
        && local.len() <= 64
        && local.split('.').all(|atom| {
            !atom.is_empty()
                && atom
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || SPECIALS.contains(&c))
        })
}

fn is_email_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    let tld = labels[labels.len() - 1];
    domain.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| is_host_label(l))
        && ((tld.len() >= 2 && tld.bytes().all(|c| c.is_ascii_alphabetic()))
            || tld.starts_with("xn--"))
}

/// A DNS label in either case: 1–63 of `A-Z a-z 0-9 -`, not starting or ending with `-`.
fn is_host_label(l: &str) -> bool {
    let b = l.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// An absolute `http` or `https` URL, split into the parts the broker cares about (the callback allowlist
/// checks the host; the client connects to host and port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    https: bool,
    host: String,
    port: Option<u16>,
    rest: String,
}

/// Why a text is not an acceptable [`HttpUrl`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlError {
    /// Not of the form `http(s)://host[:port][/path][?query][#fragment]`.
    Invalid,
    /// It embeds `user:password@`. Refused because the URL is stored in the intent record, readable by anyone
    /// who can read the namespace's records, and logged.
    Credentials,
}

impl HttpUrl {
    /// Parses `scheme://host[:port][/path][?query][#fragment]` with scheme `http` or `https` (any case).
    ///
    /// The host is a DNS name, a dotted-quad IPv4 address or a bracketed IPv6 address. Path, query and
    /// fragment must be printable ASCII without the characters URL parsers disagree about (`\ < > " { } | ^`
    /// and backtick), so that whatever HTTP client later sends the callback reads the same URL we checked.
    pub fn parse(s: &str) -> Result<HttpUrl, UrlError> {
        let (scheme, after) = s.split_once("://").ok_or(UrlError::Invalid)?;
        let https = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return Err(UrlError::Invalid);
        };
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let (authority, rest) = after.split_at(end);
        if authority.contains('@') {
            return Err(UrlError::Credentials);
        }
        let (host, port) = split_host_port(authority).ok_or(UrlError::Invalid)?;
        if !rest.bytes().all(is_url_tail_byte) {
            return Err(UrlError::Invalid);
        }
        Ok(HttpUrl {
            https,
            host: host.to_string(),
            port,
            rest: rest.to_string(),
        })
    }

    /// Whether the scheme is `https`.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// The host as written, without the brackets of an IPv6 literal.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port to connect to: the explicit one, else 80 or 443.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(if self.https { 443 } else { 80 })
    }

    /// The host as an IP address when it is a literal one (for refusing link-local targets).
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        self.host.parse().ok()
    }

    /// Path, query and fragment as written (possibly empty).
    pub fn path_and_query(&self) -> &str {
        &self.rest
    }
}

fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (inner, after) = bracketed.split_once(']')?;
        inner.parse::<Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (inner, port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if !is_url_host(host) {
            return None;
        }
        (host, port)
    };
    let port = match port {
        None => None,
        Some(p) => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            Some(p.parse::<u16>().ok().filter(|&n| n != 0)?)
        }
    };
    Some((host, port))
}

fn is_url_host(host: &str) -> bool {
    // One trailing dot is a fully-qualified name (`manager.ns.svc.cluster.local.`).
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.len() > 253 || !name.split('.').all(is_host_label) {
        return false;
    }
    // WHATWG URL parsers read a host whose last label is numeric as IPv4 and reject it when it is not a valid
    // address, so such a host must be a real dotted quad here too.
    let last = name.rsplit('.').next().unwrap_or(name);
    if last.bytes().all(|c| c.is_ascii_digit()) {
        return name.parse::<Ipv4Addr>().is_ok();
    }
    true
}

fn is_url_tail_byte(c: u8) -> bool {
    c.is_ascii_graphic()
        && !matches!(
            c,
            b'\\' | b'<' | b'>' | b'"' | b'{' | b'}' | b'|' | b'^' | b'`'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns1123_labels() {
        for ok in ["a", "team-platform", "0abc", "a0", &"a".repeat(63)] {
            assert!(is_dns1123_label(ok, 63), "{ok:?}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a_b",
            "a.b",
            "é",
            " a",
            &"a".repeat(64),
        ] {
            assert!(!is_dns1123_label(bad, 63), "{bad:?}");
        }
        assert!(!is_dns1123_label("abcdef", 5));
    }

    #[test]
    fn dns1035_labels_start_with_a_letter() {
        assert!(is_dns1035_label("pg1", 40));
        assert!(!is_dns1035_label("1pg", 40));
        assert!(!is_dns1035_label("", 40));
    }

    #[test]
    fn label_values() {
        for ok in ["platform-team", "A.b_c-9", "x", &"a".repeat(63)] {
            assert!(is_label_value(ok), "{ok:?}");
        }
        for bad in ["", "-a", "a.", "_a", "a b", "a/b", "ä", &"a".repeat(64)] {
            assert!(!is_label_value(bad), "{bad:?}");
        }
    }

    #[test]
    fn emails() {
        for ok in [
            "user@example.com",
            "alice.o'neil+dbs@mail.example.co.uk",
            "x@a-b.io",
            "ops@xn--bcher-kva.xn--p1ai",
        ] {
            assert!(is_email(ok), "{ok:?}");
        }
        for bad in [
            "",
            "user",
            "@example.com",
            "user@",
            "user@example",
            "user@@example.com",
            "a@b@example.com",
            "user@example.c",
            "user@example.123",
            "user@-example.com",
            "user@example..com",
            ".user@example.com",
            "us..er@example.com",
            "user.@example.com",
            "us er@example.com",
            "\"quoted\"@example.com",
            "user@exa_mple.com",
        ] {
            assert!(!is_email(bad), "{bad:?}");
        }
        assert!(!is_email(&format!("{}@example.com", "a".repeat(65))));
        assert!(is_email(&format!("{}@example.com", "a".repeat(64))));
    }

    #[test]
    fn urls_that_parse() {
        let u = HttpUrl::parse("http://manager:9090/v1/callback").unwrap();
        assert!(!u.is_https());
        assert_eq!(
            (u.host(), u.port(), u.path_and_query()),
            ("manager", 9090, "/v1/callback")
        );

        let u = HttpUrl::parse("HTTPS://Hooks.Example.com?x=1&y=%20#frag").unwrap();
        assert!(u.is_https());
        assert_eq!(
            (u.host(), u.port(), u.path_and_query()),
            ("Hooks.Example.com", 443, "?x=1&y=%20#frag")
        );

        let u = HttpUrl::parse("http://[fd00::1]:8080/cb").unwrap();
        assert_eq!((u.host(), u.port()), ("fd00::1", 8080));
        assert!(u.ip().unwrap().is_ipv6());

        let u = HttpUrl::parse("http://169.254.169.254/latest").unwrap();
        assert_eq!(u.ip(), Some("169.254.169.254".parse().unwrap()));
        assert_eq!(u.port(), 80);

        assert!(HttpUrl::parse("http://manager.ns.svc.cluster.local./cb").is_ok());
    }

    #[test]
    fn urls_that_do_not() {
        for bad in [
            "",
            "manager:9090/v1/callback",
            "//manager/cb",
            "ftp://manager/cb",
            "http:/manager/cb",
            "http://",
            "http:///cb",
            "http://:80/cb",
            "http://manager:/cb",
            "http://manager:0/cb",
            "http://manager:65536/cb",
            "http://manager:8o/cb",
            "http://man ager/cb",
            "http://manager/c b",
            "http://manager/c\\b",
            "http://manager/é",
            "http://-manager/",
            "http://manager_1/",
            "http://999.1.1.1/",
            "http://1.2.3/",
            "http://[fd00::1/",
            "http://[nothex]/",
            "http://[fd00::1]x/",
        ] {
            assert_eq!(HttpUrl::parse(bad), Err(UrlError::Invalid), "{bad:?}");
        }
        assert_eq!(
            HttpUrl::parse("https://user:secret@manager/cb"),
            Err(UrlError::Credentials)
        );
    }
}
