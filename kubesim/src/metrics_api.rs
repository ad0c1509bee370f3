//! `metrics.k8s.io/v1beta1`: PodMetrics and NodeMetrics as metrics-server serves them, computed on each request
//! from the pods and nodes in the store.
//!
//! Owns the usage model: each container of a Running pod uses 20–60 % of what it requests (limits when it requests
//! nothing, a small nominal amount when it sets neither), a share fixed per container with a wobble that changes
//! once per 15 s scrape window, so that repeated reads within a window agree, like metrics-server's. A node uses
//! what its Running pods use plus a system overhead. Pods that are not Running have no metrics, as with
//! metrics-server. Read-only: it never writes to the store.

use std::sync::Arc;

use http::{Method, Response};
use serde_json::{Value, json};

use crate::apierror::{ApiError, ApiResult};
use crate::meta;
use crate::registry::{Backend, ResourceDef};
use crate::server::{self, Body, Ctx, Query, Rendering, Target};
use crate::store::Inner;
use crate::table;

/// metrics-server's default metric resolution; also the period of the usage wobble.
const WINDOW_SECS: i64 = 15;
/// What a container that sets neither requests nor limits is taken to ask for: 100m CPU, 64 MiB.
const NOMINAL_CPU_CORES: f64 = 0.1;
const NOMINAL_MEMORY_BYTES: f64 = 64.0 * 1024.0 * 1024.0;
/// The node's own use (kubelet, runtime, system daemons) on top of its pods'.
const NODE_OVERHEAD_CPU_CORES: f64 = 0.15;
const NODE_OVERHEAD_MEMORY_BYTES: f64 = 900.0 * 1024.0 * 1024.0;

/// Answers a metrics request: get and list (label and field selectors); every other verb is refused.
pub(crate) fn handle(
    ctx: &Ctx,
    method: &Method,
    t: &Target,
    q: &Query,
    render: Rendering,
) -> ApiResult<Response<Body>> {
    let read = *method == Method::GET || *method == Method::HEAD;
    if !read || matches!(q.get("watch"), Some("true" | "1")) {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    let (labels, fields) = server::selectors(q)?;
    let now = jiff::Timestamp::now();
    let scrape = Scrape::at(now);
    let items: Vec<Value> = {
        let g = ctx.store.lock();
        match t.def.backend {
            Backend::NodeMetrics => node_metrics(&g, &scrape, t.name.as_deref()),
            _ => pod_metrics(&g, &scrape, t.ns.as_deref(), t.name.as_deref()),
        }
    };
    if let Some(name) = &t.name {
        let shown = match &t.ns {
            Some(ns) => format!("{ns}/{name}"),
            None => name.clone(),
        };
        let item = items
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::not_found(&t.def, &shown))?;
        return Ok(server::json_response(
            200,
            &render_items(&t.def, vec![item], render, q, false),
        ));
    }
    let items: Vec<Value> = items
        .into_iter()
        .filter(|m| {
            labels.matches(m.pointer("/metadata/labels").and_then(Value::as_object))
                && fields.matches(m)
        })
        .collect();
    Ok(server::json_response(
        200,
        &render_items(&t.def, items, render, q, true),
    ))
}

fn render_items(
    def: &ResourceDef,
    items: Vec<Value>,
    render: Rendering,
    q: &Query,
    list: bool,
) -> Value {
    match render {
        Rendering::Table => {
            let refs: Vec<&Value> = items.iter().collect();
            table::table(
                &def.kind,
                &def.group,
                &refs,
                None,
                q.get("includeObject").unwrap_or("Metadata"),
                json!({}),
                jiff::Timestamp::now(),
            )
        }
        Rendering::Metadata if list => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {},
            "items": items.iter().map(server::partial_metadata).collect::<Vec<_>>(),
        }),
        Rendering::Metadata => server::partial_metadata(&items[0]),
        Rendering::Full if list => json!({
            "kind": format!("{}List", def.kind),
            "apiVersion": def.api_version(def.storage_version()),
            "metadata": {},
            "items": items,
        }),
        Rendering::Full => items.into_iter().next().unwrap_or(Value::Null),
    }
}

/// One scrape: its timestamp (the start of the current window) and the window index that drives the wobble.
struct Scrape {
    window: i64,
    timestamp: String,
    created: String,
}

impl Scrape {
    fn at(now: jiff::Timestamp) -> Self {
        let window = now.as_second().div_euclid(WINDOW_SECS);
        let start = jiff::Timestamp::from_second(window * WINDOW_SECS).unwrap_or(now);
        Scrape {
            window,
            timestamp: meta::format_time(start),
            created: meta::format_time(now),
        }
    }
}

/// Usage of one container: CPU in cores, memory in bytes.
#[derive(Clone, Copy, Default, Debug, PartialEq)]
struct Usage {
    cpu: f64,
    memory: f64,
}

impl Usage {
    /// metrics-server's wire form: CPU in nanocores, memory in KiB (BinarySI).
    fn to_json(self) -> Value {
        let nanos = (self.cpu * 1e9).round().max(0.0) as u64;
        let kib = (self.memory / 1024.0).round().max(0.0) as u64;
        json!({"cpu": format!("{nanos}n"), "memory": format!("{kib}Ki")})
    }
}

fn is_running(pod: &Value) -> bool {
    pod.pointer("/status/phase").and_then(Value::as_str) == Some("Running")
}

/// Per-container usage of a Running pod.
fn container_usage(pod: &Value, window: i64) -> Vec<(String, Usage)> {
    let uid = meta::uid(pod);
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    let name = c
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    let asked = |res: &str, nominal: f64| {
                        ["requests", "limits"]
                            .iter()
                            .find_map(|k| {
                                c.pointer(&format!("/resources/{k}/{res}"))
                                    .and_then(Value::as_str)
                                    .and_then(parse_quantity)
                                    .filter(|v| *v > 0.0)
                            })
                            .unwrap_or(nominal)
                    };
                    let usage = Usage {
                        cpu: asked("cpu", NOMINAL_CPU_CORES) * share(&[uid, &name, "cpu"], window),
                        memory: asked("memory", NOMINAL_MEMORY_BYTES)
                            * share(&[uid, &name, "memory"], window),
                    };
                    (name, usage)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The share of its request a container uses: a base in 0.25..0.55 fixed by its identity, plus a wobble of
/// ±0.05 that changes per scrape window; always within 0.2..=0.6.
fn share(identity: &[&str], window: i64) -> f64 {
    let base = 0.25 + 0.30 * unit(hash(identity, None));
    let wobble = 0.10 * unit(hash(identity, Some(window))) - 0.05;
    (base + wobble).clamp(0.2, 0.6)
}

/// FNV-1a: stable across runs and platforms, unlike the standard library's hasher, so usage is reproducible.
fn hash(parts: &[&str], window: Option<i64>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for p in parts {
        eat(p.as_bytes());
        eat(&[0]);
    }
    if let Some(w) = window {
        eat(&w.to_le_bytes());
    }
    h
}

fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn pod_metrics(g: &Inner, scrape: &Scrape, ns: Option<&str>, name: Option<&str>) -> Vec<Value> {
    let pods_def = g.def("", "pods");
    let pods: Vec<Arc<Value>> = match (ns, name) {
        (Some(ns), Some(name)) => g.get(&pods_def, ns, name).into_iter().collect(),
        _ => g.list(&pods_def, ns),
    };
    pods.iter()
        .filter(|p| is_running(p))
        .map(|p| {
            let containers: Vec<Value> = container_usage(p, scrape.window)
                .into_iter()
                .map(|(name, u)| json!({"name": name, "usage": u.to_json()}))
                .collect();
            let mut md = json!({
                "name": meta::name(p),
                "namespace": meta::namespace(p),
                "creationTimestamp": scrape.created,
            });
            if let Some(l) = p.pointer("/metadata/labels") {
                md["labels"] = l.clone();
            }
            json!({
                "kind": "PodMetrics",
                "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": md,
                "timestamp": scrape.timestamp,
                "window": format!("{WINDOW_SECS}s"),
                "containers": containers,
            })
        })
        .collect()
}

fn node_metrics(g: &Inner, scrape: &Scrape, name: Option<&str>) -> Vec<Value> {
    let nodes_def = g.def("", "nodes");
    let nodes: Vec<Arc<Value>> = match name {
        Some(n) => g.get(&nodes_def, "", n).into_iter().collect(),
        None => g.list(&nodes_def, None),
    };
    let pods = g.list(&g.def("", "pods"), None);
    nodes
        .iter()
        .map(|n| {
            let node = meta::name(n);
            // The overhead wobbles too (0.7..=1.1 of nominal), so an idle node's usage still moves.
            let mut total = Usage {
                cpu: NODE_OVERHEAD_CPU_CORES * (0.5 + share(&[meta::uid(n), "cpu"], scrape.window)),
                memory: NODE_OVERHEAD_MEMORY_BYTES,
            };
            for p in pods.iter().filter(|p| {
                is_running(p) && p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node)
            }) {
                for (_, u) in container_usage(p, scrape.window) {
                    total.cpu += u.cpu;
                    total.memory += u.memory;
                }
            }
            let mut md = json!({"name": node, "creationTimestamp": scrape.created});
            if let Some(l) = n.pointer("/metadata/labels") {
                md["labels"] = l.clone();
            }
            json!({
                "kind": "NodeMetrics",
                "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": md,
                "timestamp": scrape.timestamp,
                "window": format!("{WINDOW_SECS}s"),
                "usage": total.to_json(),
            })
        })
        .collect()
}

/// A resource quantity (`500m`, `1.5`, `256Mi`, `1G`, `1e3`) in base units (cores, bytes); `None` when malformed.
pub(crate) fn parse_quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some(n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("500m"), Some(0.5));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("256Mi"), Some(256.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("1G"), Some(1e9));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("lots"), None);
    }

    #[test]
    fn usage_is_a_stable_share_of_requests() {
        let pod = json!({
            "metadata": {"uid": "u-1"},
            "spec": {"containers": [
                {"name": "db", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}},
                {"name": "side", "resources": {"limits": {"cpu": "200m", "memory": "128Mi"}}},
                {"name": "bare"}
            ]}
        });
        let a = container_usage(&pod, 7);
        assert_eq!(a, container_usage(&pod, 7), "same window, same numbers");
        let (db, side, bare) = (a[0].1, a[1].1, a[2].1);
        assert!((0.2..=0.6).contains(&db.cpu), "{db:?}");
        assert!(
            (0.2..=0.6).contains(&(db.memory / 1024f64.powi(3))),
            "{db:?}"
        );
        assert!(
            (0.04..=0.12).contains(&side.cpu),
            "limits stand in for requests: {side:?}"
        );
        assert!(bare.cpu > 0.0 && bare.memory > 0.0);
        for w in 0..50 {
            let s = share(&["u-1", "db", "cpu"], w);
            assert!((0.2..=0.6).contains(&s));
        }
        assert_ne!(
            (0..10)
                .map(|w| share(&["u-1", "db", "cpu"], w).to_bits())
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            1,
            "usage moves between windows"
        );
    }

    #[test]
    fn wire_units_are_nanocores_and_kibibytes() {
        let u = Usage {
            cpu: 0.0013786814,
            memory: 5764.0 * 1024.0,
        };
        assert_eq!(u.to_json(), json!({"cpu": "1378681n", "memory": "5764Ki"}));
    }
}
