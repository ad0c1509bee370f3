//! The cluster's name server for real pods: a small UDP DNS responder on the bridge address that answers `A`
//! queries under `svc.<domain>` from the store, as CoreDNS's kubernetes plugin would:
//!
//! - `<service>.<ns>.svc.<domain>`: the ready addresses of the Service's Endpoints. Upstream answers a ClusterIP
//!   Service with its ClusterIP; kubesim does not route ClusterIPs (no NAT), so it answers with the endpoints
//!   behind it (the difference is written in the README). Headless Services answer the same way, as upstream.
//! - `<hostname>.<service>.<ns>.svc.<domain>`: the endpoint address whose `hostname` is that (a StatefulSet pod
//!   under its headless Service).
//!
//! Anything else is NXDOMAIN (pods here have no way out, so there is nothing to forward to); a name that exists
//! but has no IPv4 answer (an `AAAA` query) gets an empty NOERROR, so resolvers move on.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use serde_json::Value;
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::controllers::str_at;
use crate::store::Store;

const TYPE_A: u16 = 1;
const TTL_SECONDS: u32 = 5;

/// What a name resolves to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    NoSuchName,
    Addresses(Vec<Ipv4Addr>),
}

/// Resolves `name` (lower case, without the trailing dot) from the store.
pub(crate) fn lookup(store: &Store, domain: &str, name: &str) -> Answer {
    let Some(rest) = name.strip_suffix(&format!(".svc.{domain}")) else {
        return Answer::NoSuchName;
    };
    let labels: Vec<&str> = rest.split('.').collect();
    let (host, service, ns) = match labels.as_slice() {
        [service, ns] => (None, *service, *ns),
        [host, service, ns] => (Some(*host), *service, *ns),
        _ => return Answer::NoSuchName,
    };
    let g = store.lock();
    let services = g.def("", "services");
    if g.get(&services, ns, service).is_err() {
        return Answer::NoSuchName;
    }
    let endpoints = g.def("", "endpoints");
    let Ok(ep) = g.get(&endpoints, ns, service) else {
        return match host {
            None => Answer::Addresses(vec![]),
            Some(_) => Answer::NoSuchName,
        };
    };
    let addresses: Vec<&Value> = ep
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("addresses").and_then(Value::as_array))
        .flatten()
        .collect();
    let ips = |filter: &dyn Fn(&Value) -> bool| -> Vec<Ipv4Addr> {
        let mut v: Vec<Ipv4Addr> = addresses
            .iter()
            .filter(|a| filter(a))
            .filter_map(|a| str_at(a, "/ip").parse().ok())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    match host {
        None => Answer::Addresses(ips(&|_| true)),
        Some(h) => match ips(&|a| str_at(a, "/hostname") == h) {
            v if v.is_empty() => Answer::NoSuchName,
            v => Answer::Addresses(v),
        },
    }
}

/// The question of a query: (id, flags, name, type, class, where the question ends).
fn parse_question(q: &[u8]) -> Option<(u16, u16, String, u16, u16, usize)> {
    if q.len() < 12 {
        return None;
    }
    let id = u16::from_be_bytes([q[0], q[1]]);
    let flags = u16::from_be_bytes([q[2], q[3]]);
    let qdcount = u16::from_be_bytes([q[4], q[5]]);
    if qdcount != 1 || flags & 0x8000 != 0 {
        return None;
    }
    let mut i = 12;
    let mut labels = vec![];
    loop {
        let len = *q.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        let label = q.get(i..i + len)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let qclass = u16::from_be_bytes([*q.get(i + 2)?, *q.get(i + 3)?]);
    Some((id, flags, labels.join("."), qtype, qclass, i + 4))
}

/// The response to one query packet, or `None` for a packet that is not one.
pub(crate) fn respond(query: &[u8], resolve: impl Fn(&str) -> Answer) -> Option<Vec<u8>> {
    let (id, flags, name, qtype, _class, end) = parse_question(query)?;
    let answer = resolve(&name);
    // QR, the opcode and RD copied, AA, RA.
    let mut rflags = 0x8000 | (flags & 0x7900) | 0x0400 | 0x0080;
    let records: Vec<Ipv4Addr> = match &answer {
        Answer::NoSuchName => {
            rflags |= 3;
            vec![]
        }
        Answer::Addresses(v) if qtype == TYPE_A => v.clone(),
        Answer::Addresses(_) => vec![],
    };
    let mut out = Vec::with_capacity(end + records.len() * 16);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&rflags.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(records.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&query[12..end]);
    for ip in records {
        // The name is a pointer to the question's (offset 12).
        out.extend_from_slice(&[0xc0, 12]);
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&TTL_SECONDS.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&ip.octets());
    }
    Some(out)
}

/// Serves DNS on `addr` until shutdown.
pub(crate) async fn serve(
    addr: SocketAddr,
    store: Arc<Store>,
    domain: String,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let socket = UdpSocket::bind(addr)
        .await
        .map_err(|e| format!("cluster DNS on {addr}: {e}"))?;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 1500];
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                got = socket.recv_from(&mut buf) => {
                    let Ok((n, from)) = got else { continue };
                    if let Some(reply) = respond(&buf[..n], |name| lookup(&store, &domain, name)) {
                        let _ = socket.send_to(&reply, from).await;
                    }
                }
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    }

    #[test]
    fn an_a_query_is_answered_with_every_address() {
        let q = query("DB-0.db.team.svc.cluster.local", TYPE_A);
        let r = respond(&q, |name| {
            assert_eq!(name, "db-0.db.team.svc.cluster.local");
            Answer::Addresses(vec![
                Ipv4Addr::new(10, 244, 0, 2),
                Ipv4Addr::new(10, 244, 0, 3),
            ])
        })
        .unwrap();
        assert_eq!(&r[..2], &[0x12, 0x34], "the id is echoed");
        assert_eq!(r[3] & 0x0f, 0, "NOERROR");
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 2, "two answers");
        assert_eq!(&r[r.len() - 4..], &[10, 244, 0, 3]);
        assert_eq!(&r[12..q.len()], &q[12..], "the question is repeated");
    }

    #[test]
    fn unknown_names_are_nxdomain_and_aaaa_is_empty() {
        let r = respond(&query("example.com", TYPE_A), |_| Answer::NoSuchName).unwrap();
        assert_eq!(r[3] & 0x0f, 3);
        let r = respond(&query("db.team.svc.cluster.local", 28), |_| {
            Answer::Addresses(vec![Ipv4Addr::new(10, 244, 0, 2)])
        })
        .unwrap();
        assert_eq!(r[3] & 0x0f, 0);
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 0);
        assert!(respond(&[1, 2, 3], |_| Answer::NoSuchName).is_none());
    }
}
