//! Watch streams: newline-delimited JSON events on a chunked HTTP 200, one line per event, flushed per event.
//!
//! Semantics follow the apiserver's watch cache: `resourceVersion` unset or "0" starts with synthetic ADDED events,
//! `N` replays changes after N from the change log, a too-old N gets an in-stream `ERROR` with code 410 (never an
//! HTTP 410, which kube-runtime would retry forever), `sendInitialEvents` ends the initial state with a bookmark
//! annotated `k8s.io/initial-events-end`, and objects entering or leaving a selector are seen as ADDED/DELETED.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::apierror::{ApiError, ApiResult};
use crate::meta;
use crate::registry::ResourceDef;
use crate::selector::{FieldSelector, LabelSelector};
use crate::server::{self, Body, Ctx, Query, Rendering, Target};
use crate::store::{Event, EventType};
use crate::table;

/// Lines buffered per watcher before the writer waits for the client.
const CLIENT_BUFFER: usize = 1024;

/// A parsed watch request.
pub(crate) struct WatchRequest {
    def: Arc<ResourceDef>,
    version: String,
    ns: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    /// `None`: start from the current state (synthetic ADDED events).
    from_rv: Option<u64>,
    send_initial: bool,
    bookmarks: bool,
    timeout: Duration,
    render: Rendering,
    include_object: String,
}

impl WatchRequest {
    pub(crate) fn from_query(q: &Query, t: &Target, render: Rendering) -> ApiResult<Self> {
        let (labels, fields) = server::selectors(q)?;
        let rv = q.get("resourceVersion").unwrap_or("");
        let send_initial = q.get("sendInitialEvents") == Some("true");
        let bookmarks = q.get("allowWatchBookmarks") == Some("true");
        if send_initial {
            if !bookmarks {
                return Err(ApiError::unprocessable(
                    "ListOptions.meta.k8s.io \"\" is invalid: allowWatchBookmarks: Forbidden: allowWatchBookmarks must be set to true when sendInitialEvents is set",
                ));
            }
            if q.get("resourceVersionMatch") != Some("NotOlderThan") {
                return Err(ApiError::unprocessable(
                    "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                ));
            }
        }
        let from_rv =
            if rv.is_empty() || rv == "0" || send_initial {
                None
            } else {
                Some(rv.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion {rv:?}"))
                })?)
            };
        let timeout = match q.get("timeoutSeconds") {
            Some(s) if !s.is_empty() => {
                let n: u64 = s
                    .parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {s:?}")))?;
                Duration::from_secs(n)
            }
            // Upstream picks a random timeout between the minimum request timeout and twice it.
            _ => {
                use rand::Rng;
                Duration::from_secs(1800 + rand::rng().random_range(0..1800))
            }
        };
        Ok(WatchRequest {
            def: t.def.clone(),
            version: t.version.clone(),
            ns: t.ns.clone(),
            labels,
            fields,
            from_rv,
            send_initial,
            bookmarks,
            timeout,
            render,
            include_object: q.get("includeObject").unwrap_or("Metadata").to_string(),
        })
    }

    fn matches(&self, o: &Value) -> bool {
        if let Some(ns) = &self.ns
            && meta::namespace(o) != ns
        {
            return false;
        }
        self.labels
            .matches(o.pointer("/metadata/labels").and_then(Value::as_object))
            && self.fields.matches(o)
    }

    /// What this watcher sees of a committed change, if anything.
    fn view<'a>(&self, ev: &'a Event) -> Option<(EventType, &'a Arc<Value>)> {
        if ev.res != self.def.key() {
            return None;
        }
        let now = self.matches(&ev.object);
        let before = ev.prev.as_ref().map(|p| self.matches(p)).unwrap_or(false);
        match ev.kind {
            EventType::Added => now.then_some((EventType::Added, &ev.object)),
            EventType::Deleted => (now || before).then_some((EventType::Deleted, &ev.object)),
            EventType::Modified => match (before, now) {
                (true, true) => Some((EventType::Modified, &ev.object)),
                (false, true) => Some((EventType::Added, &ev.object)),
                (true, false) => Some((EventType::Deleted, &ev.object)),
                (false, false) => None,
            },
        }
    }

    fn line(&self, kind: EventType, o: &Arc<Value>) -> Bytes {
        let object = match self.render {
            Rendering::Full => server::present(o, &self.def, &self.version).into_owned(),
            Rendering::Metadata => server::partial_metadata(o),
            Rendering::Table => {
                let obj = server::present(o, &self.def, &self.version);
                table::table(
                    &self.def.kind,
                    &self.def.group,
                    &[&*obj],
                    self.def.printer_columns.as_deref(),
                    &self.include_object,
                    json!({"resourceVersion": meta::str_field(o, "resourceVersion")}),
                    jiff::Timestamp::now(),
                )
            }
        };
        encode(kind.as_str(), &object)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut md = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            md["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let (kind, api_version) = match self.render {
            Rendering::Full => (self.def.kind.clone(), self.def.api_version(&self.version)),
            Rendering::Metadata => ("PartialObjectMetadata".into(), "meta.k8s.io/v1".into()),
            Rendering::Table => ("Table".into(), "meta.k8s.io/v1".into()),
        };
        encode(
            "BOOKMARK",
            &json!({"kind": kind, "apiVersion": api_version, "metadata": md}),
        )
    }
}

fn encode(kind: &str, object: &Value) -> Bytes {
    let mut buf = Vec::with_capacity(512);
    buf.extend_from_slice(b"{\"type\":\"");
    buf.extend_from_slice(kind.as_bytes());
    buf.extend_from_slice(b"\",\"object\":");
    serde_json::to_writer(&mut buf, object).ok();
    buf.extend_from_slice(b"}\n");
    Bytes::from(buf)
}

fn expired_line(want: u64, oldest: u64) -> Bytes {
    let e = ApiError::expired(format!("too old resource version: {want} ({oldest})"));
    encode("ERROR", &e.to_status())
}

/// How the stream starts: either the current objects or the logged events since an RV.
enum Start {
    Objects(Vec<Arc<Value>>),
    Events(Vec<Arc<Event>>),
    Expired { want: u64, oldest: u64 },
}

/// Starts a watch and returns the streaming response.
pub(crate) fn serve(ctx: Arc<Ctx>, wr: WatchRequest) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(CLIENT_BUFFER);
    let (start, start_rv, sub) = {
        // Subscribing under the lock guarantees that every change after the snapshot reaches the receiver.
        let g = ctx.store.lock();
        let sub = ctx.store.subscribe();
        let start = match wr.from_rv {
            None => Start::Objects(g.list(&wr.def, wr.ns.as_deref())),
            Some(rv) => match g.events_since(rv) {
                Some(evs) => Start::Events(evs),
                None => Start::Expired {
                    want: rv,
                    oldest: g.compacted_rv() + 1,
                },
            },
        };
        let start_rv = wr.from_rv.unwrap_or(g.rv);
        (start, start_rv, sub)
    };
    tokio::spawn(run(ctx, wr, tx, start, start_rv, sub));
    server::stream_response(rx)
}

async fn run(
    ctx: Arc<Ctx>,
    wr: WatchRequest,
    tx: mpsc::Sender<Bytes>,
    start: Start,
    start_rv: u64,
    mut sub: broadcast::Receiver<Arc<Event>>,
) {
    let mut shutdown = ctx.shutdown.clone();
    let deadline = tokio::time::Instant::now() + wr.timeout;
    let mut last_rv = start_rv;
    match start {
        Start::Expired { want, oldest } => {
            let _ = tx.send(expired_line(want, oldest)).await;
            return;
        }
        Start::Objects(objs) => {
            for o in objs.iter().filter(|o| wr.matches(o)) {
                if tx.send(wr.line(EventType::Added, o)).await.is_err() {
                    return;
                }
            }
            if wr.send_initial && tx.send(wr.bookmark(start_rv, true)).await.is_err() {
                return;
            }
        }
        Start::Events(evs) => {
            for ev in evs {
                last_rv = last_rv.max(ev.rv);
                if let Some((k, o)) = wr.view(&ev)
                    && tx.send(wr.line(k, o)).await.is_err()
                {
                    return;
                }
            }
        }
    }
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + ctx.bookmark_interval,
        ctx.bookmark_interval,
    );
    loop {
        tokio::select! {
            r = sub.recv() => match r {
                Ok(ev) => {
                    if ev.rv <= last_rv {
                        continue;
                    }
                    last_rv = ev.rv;
                    if let Some((k, o)) = wr.view(&ev)
                        && tx.send(wr.line(k, o)).await.is_err()
                    {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Fell behind the fan-out ring: catch up from the change log, as a watch cache would.
                    let evs = {
                        let g = ctx.store.lock();
                        g.events_since(last_rv).ok_or(g.compacted_rv() + 1)
                    };
                    match evs {
                        Ok(evs) => {
                            for ev in evs {
                                last_rv = ev.rv;
                                if let Some((k, o)) = wr.view(&ev)
                                    && tx.send(wr.line(k, o)).await.is_err()
                                {
                                    return;
                                }
                            }
                        }
                        Err(oldest) => {
                            let _ = tx.send(expired_line(last_rv, oldest)).await;
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick(), if wr.bookmarks => {
                if tx.send(wr.bookmark(last_rv, false)).await.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                if wr.bookmarks {
                    let _ = tx.send(wr.bookmark(last_rv, false)).await;
                }
                return;
            }
            _ = shutdown.changed() => return,
            _ = tx.closed() => return,
        }
    }
}
