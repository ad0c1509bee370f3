//! API faults on demand: the keys of ConfigMap `kube-system/kubesim-faults` that make the API server itself fail
//! the way a real one does under load or during an outage: errors (500, 503 and 429 with `Retry-After`, 504),
//! added latency, and watch streams that end early. The ConfigMap is read live on every resource request.
//!
//! Owns parsing those keys, caching the parsed form by the ConfigMap's resourceVersion, and deciding per request
//! what to inflict ([`FaultPlan`]). It never writes to the store, and never faults a request that touches the
//! faults ConfigMap itself, or faults could not be switched off. The pod keys of the same ConfigMap
//! (`imagePullFailure`, `crashLoop`, `notReady`, `readyDelay`) belong to the kubelet and are ignored here.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use rand::Rng;
use regex::Regex;
use serde_json::Value;

use crate::apierror::ApiError;
use crate::registry::ResKey;
use crate::server::{Query, Target};
use crate::store::{Inner, ObjKey};

/// Namespace of the faults ConfigMap.
pub(crate) const FAULTS_NAMESPACE: &str = "kube-system";
/// Name of the faults ConfigMap.
pub(crate) const FAULTS_CONFIGMAP: &str = "kubesim-faults";

/// `Retry-After` seconds when `apiRetryAfter` is not set: upstream's max-in-flight filter sends 1.
const DEFAULT_RETRY_AFTER: u64 = 1;
/// Window for random watch cuts when `watchCutRate` is set without `watchMaxDuration`: well under kube-runtime's
/// 290 s watch timeout, so that cuts are frequent enough to matter in a test run.
const DEFAULT_WATCH_CUT_WINDOW: Duration = Duration::from_secs(30);
/// Codes `apiErrorCodes` may name.
const SUPPORTED_CODES: &[u16] = &[429, 500, 503, 504];

/// The API fault settings of one version of the ConfigMap.
#[derive(Debug, Default)]
struct ApiFaults {
    /// Share of matched requests that fail, 0..=1.
    error_rate: f64,
    /// Codes a failing request gets, one picked at random per failure.
    error_codes: Vec<u16>,
    retry_after: u64,
    latency: Duration,
    latency_jitter: Duration,
    /// Matched against `"<verb> <resource>"`; `None` matches every resource request.
    matcher: Option<Regex>,
    /// Matched against the request's User-Agent; `None` matches every client. Cuts one client off (a
    /// partition between it and the API server) while others are served.
    agent: Option<Regex>,
    watch_cut_rate: f64,
    watch_max: Option<Duration>,
}

impl ApiFaults {
    /// Parses the ConfigMap's `data`. A malformed key is reported and ignored so that the other keys still apply.
    fn parse(data: Option<&serde_json::Map<String, Value>>) -> Self {
        let mut f = ApiFaults {
            error_codes: vec![500],
            retry_after: DEFAULT_RETRY_AFTER,
            ..Default::default()
        };
        let Some(data) = data else { return f };
        let get = |k: &str| {
            data.get(k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let warn = |key: &str, value: &str, why: &str| {
            tracing::warn!(key, value, why, "kubesim-faults: key ignored");
        };
        if let Some(v) = get("apiErrorRate") {
            match parse_rate(v) {
                Ok(r) => f.error_rate = r,
                Err(e) => warn("apiErrorRate", v, &e),
            }
        }
        if let Some(v) = get("apiErrorCodes") {
            let mut codes = vec![];
            for c in v.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                match c.parse::<u16>() {
                    Ok(n) if SUPPORTED_CODES.contains(&n) => codes.push(n),
                    _ => warn(
                        "apiErrorCodes",
                        c,
                        "supported codes are 429, 500, 503 and 504",
                    ),
                }
            }
            if !codes.is_empty() {
                f.error_codes = codes;
            }
        }
        if let Some(v) = get("apiRetryAfter") {
            match parse_duration(v) {
                Ok(d) => f.retry_after = d.as_secs_f64().ceil().max(1.0) as u64,
                Err(e) => warn("apiRetryAfter", v, &e),
            }
        }
        if let Some(v) = get("apiLatency") {
            match parse_duration(v) {
                Ok(d) => f.latency = d,
                Err(e) => warn("apiLatency", v, &e),
            }
        }
        if let Some(v) = get("apiLatencyJitter") {
            match parse_duration(v) {
                Ok(d) => f.latency_jitter = d,
                Err(e) => warn("apiLatencyJitter", v, &e),
            }
        }
        // A pattern that scopes faults. A typo must not turn a scoped fault into a global one: a broken
        // pattern matches nothing instead.
        let scope = |key: &str| {
            let v = get(key)?;
            Some(Regex::new(v).unwrap_or_else(|e| {
                warn(key, v, &e.to_string());
                Regex::new("$^").expect("valid regex")
            }))
        };
        f.matcher = scope("apiFaultMatch");
        f.agent = scope("apiUserAgentMatch");
        if let Some(v) = get("watchCutRate") {
            match parse_rate(v) {
                Ok(r) => f.watch_cut_rate = r,
                Err(e) => warn("watchCutRate", v, &e),
            }
        }
        if let Some(v) = get("watchMaxDuration") {
            match parse_duration(v) {
                Ok(d) if !d.is_zero() => f.watch_max = Some(d),
                Ok(_) => warn("watchMaxDuration", v, "must be more than zero"),
                Err(e) => warn("watchMaxDuration", v, &e),
            }
        }
        if f.watch_max.is_some() && get("watchCutRate").is_none() {
            // A maximum duration alone cuts every matched watch somewhere within it.
            f.watch_cut_rate = 1.0;
        }
        f
    }

    fn is_empty(&self) -> bool {
        self.error_rate == 0.0
            && self.latency.is_zero()
            && self.latency_jitter.is_zero()
            && self.watch_cut_rate == 0.0
    }
}

/// What to inflict on one request.
#[derive(Debug, Default)]
pub(crate) struct FaultPlan {
    /// Wait this long before handling the request.
    pub delay: Duration,
    /// Answer with this error instead of handling the request.
    pub error: Option<ApiError>,
    /// End the watch stream this long after it starts.
    pub watch_cut: Option<Duration>,
}

/// The parsed faults, cached by the ConfigMap's resourceVersion so that a request costs one map lookup when
/// nothing changed.
pub(crate) struct FaultCache {
    cached: Mutex<Option<(String, Arc<ApiFaults>)>>,
    /// Where the ConfigMap lives in the store, built once so that looking it up allocates nothing.
    res_key: ResKey,
    obj_key: ObjKey,
}

impl Default for FaultCache {
    fn default() -> Self {
        FaultCache {
            cached: Mutex::new(None),
            res_key: (String::new(), "configmaps".into()),
            obj_key: (FAULTS_NAMESPACE.into(), FAULTS_CONFIGMAP.into()),
        }
    }
}

impl FaultCache {
    /// The faults ConfigMap as it is now. Callers already holding the store's lock pass it in, so that the hook
    /// costs two map lookups and no other acquisition of a lock that every request contends for.
    pub(crate) fn configmap(&self, g: &Inner) -> Option<Arc<Value>> {
        g.find(&self.res_key, &self.obj_key).cloned()
    }

    /// The faults for one resource request, or `None` to serve it normally. `configmap` is the faults ConfigMap
    /// as [`FaultCache::configmap`] read it.
    pub(crate) fn plan(
        &self,
        configmap: Option<Arc<Value>>,
        t: &Target,
        method: &Method,
        q: &Query,
        user_agent: &str,
    ) -> Option<FaultPlan> {
        if touches_faults_configmap(t) {
            return None;
        }
        let faults = self.current(configmap.as_deref()?)?;
        if let Some(a) = &faults.agent
            && !a.is_match(user_agent)
        {
            return None;
        }
        let verb = verb(method, t, q);
        if let Some(m) = &faults.matcher {
            let mut resource = t.def.qualified();
            if let Some(sub) = &t.sub {
                resource.push('/');
                resource.push_str(sub);
            }
            if !m.is_match(&format!("{verb} {resource}")) {
                return None;
            }
        }
        let mut rng = rand::rng();
        let mut plan = FaultPlan {
            delay: faults.latency,
            ..Default::default()
        };
        if !faults.latency_jitter.is_zero() {
            plan.delay += faults.latency_jitter.mul_f64(rng.random::<f64>());
        }
        if faults.error_rate > 0.0 && rng.random::<f64>() < faults.error_rate {
            let code = faults.error_codes[rng.random_range(0..faults.error_codes.len())];
            plan.error = Some(fault_error(code, faults.retry_after, verb, t));
        }
        if verb == "watch"
            && faults.watch_cut_rate > 0.0
            && rng.random::<f64>() < faults.watch_cut_rate
        {
            let window = faults.watch_max.unwrap_or(DEFAULT_WATCH_CUT_WINDOW);
            // Anywhere in the window, never at once: a stream that ends before its first byte is a failed request.
            plan.watch_cut = Some(window.mul_f64(rng.random_range(0.05..=1.0)));
        }
        Some(plan)
    }

    /// The faults `cm` sets; `None` when it sets no API fault.
    fn current(&self, cm: &Value) -> Option<Arc<ApiFaults>> {
        let rv = crate::meta::str_field(cm, "resourceVersion");
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((crv, f)) = &*cached
            && crv == rv
        {
            return (!f.is_empty()).then(|| f.clone());
        }
        let f = Arc::new(ApiFaults::parse(cm.get("data").and_then(Value::as_object)));
        *cached = Some((rv.to_string(), f.clone()));
        (!f.is_empty()).then_some(f)
    }
}

/// Requests on the faults ConfigMap, and collection requests on ConfigMaps in its namespace (a create or a list
/// cannot be told apart from one that concerns it without reading the body), are never faulted.
fn touches_faults_configmap(t: &Target) -> bool {
    t.def.group.is_empty()
        && t.def.plural == "configmaps"
        && t.ns.as_deref() == Some(FAULTS_NAMESPACE)
        && t.name.as_deref().is_none_or(|n| n == FAULTS_CONFIGMAP)
}

/// The Kubernetes verb of a request, as RBAC and audit logs name it.
fn verb(method: &Method, t: &Target, q: &Query) -> &'static str {
    let named = t.name.is_some();
    match *method {
        Method::GET | Method::HEAD if named => "get",
        Method::GET | Method::HEAD if matches!(q.get("watch"), Some("true" | "1")) => "watch",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    }
}

/// The error an overloaded or failing apiserver gives, with upstream's messages.
fn fault_error(code: u16, retry_after: u64, verb: &str, t: &Target) -> ApiError {
    match code {
        429 => {
            ApiError::too_many_requests("Too many requests, please try again later.", retry_after)
        }
        503 => ApiError::service_unavailable(
            "the server is currently unable to handle the request",
            retry_after,
        ),
        504 => {
            let mut e = ApiError::timeout(format!(
                "Timeout: request did not complete within the allotted timeout ({verb} {})",
                t.def.qualified()
            ));
            e.retry_after = Some(retry_after);
            e.details = Some(serde_json::json!({"retryAfterSeconds": retry_after}));
            e
        }
        _ => ApiError::internal(format!(
            "kubesim-faults: injected failure of {verb} {}",
            t.def.qualified()
        )),
    }
}

fn parse_rate(v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err("must be a number from 0 to 1".into()),
    }
}

/// A Go duration (`250ms`, `1.5s`, `1m30s`; units ns, us, µs, ms, s, m, h), or a bare number of seconds.
pub(crate) fn parse_duration(v: &str) -> Result<Duration, String> {
    let bad = || format!("{v:?} is not a duration such as 250ms, 1.5s or 1m30s");
    if let Ok(secs) = v.parse::<f64>() {
        return if secs >= 0.0 && secs.is_finite() {
            Ok(Duration::from_secs_f64(secs))
        } else {
            Err(bad())
        };
    }
    let mut rest = v;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += n * scale;
    }
    if total.is_finite() {
        Ok(Duration::from_secs_f64(total))
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> ApiFaults {
        ApiFaults::parse(v.as_object())
    }

    #[test]
    fn durations_in_go_syntax() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn keys_parse_and_bad_ones_are_ignored() {
        let f = parse(json!({
            "apiErrorRate": "0.25", "apiErrorCodes": "503, 429, 418", "apiLatency": "100ms",
            "apiRetryAfter": "2s", "apiFaultMatch": "^create statefulsets", "crashLoop": "demo/.*"
        }));
        assert_eq!(f.error_rate, 0.25);
        assert_eq!(f.error_codes, vec![503, 429]);
        assert_eq!(f.latency, Duration::from_millis(100));
        assert_eq!(f.retry_after, 2);
        assert!(
            f.matcher
                .as_ref()
                .unwrap()
                .is_match("create statefulsets.apps")
        );
        assert!(!f.is_empty());

        let f = parse(json!({"apiErrorRate": "1", "apiUserAgentMatch": r"\(replica b\)"}));
        let agent = f.agent.as_ref().unwrap();
        assert!(agent.is_match("kidp-broker/0.1.0 (replica b)"));
        assert!(!agent.is_match("kidp-broker/0.1.0 (replica a)"));

        let f = parse(json!({"apiErrorRate": "2", "crashLoop": "x"}));
        assert_eq!(f.error_rate, 0.0);
        assert!(f.is_empty(), "pod keys alone configure no API fault");

        let f = parse(json!({"apiErrorRate": "1", "apiFaultMatch": "(unclosed"}));
        assert!(
            !f.matcher.as_ref().unwrap().is_match("get pods"),
            "a broken pattern matches nothing rather than everything"
        );
    }

    #[test]
    fn max_duration_alone_cuts_every_watch() {
        let f = parse(json!({"watchMaxDuration": "2s"}));
        assert_eq!(f.watch_cut_rate, 1.0);
        assert_eq!(f.watch_max, Some(Duration::from_secs(2)));
        let f = parse(json!({"watchCutRate": "0.5"}));
        assert_eq!(f.watch_cut_rate, 0.5);
        assert_eq!(f.watch_max, None);
    }

    #[test]
    fn errors_carry_retry_after_where_upstream_does() {
        let reg = crate::registry::Registry::with_builtins();
        let t = Target {
            def: reg
                .get(&("apps".into(), "statefulsets".into()))
                .unwrap()
                .clone(),
            version: "v1".into(),
            ns: Some("demo".into()),
            name: None,
            sub: None,
        };
        let e = fault_error(503, 3, "create", &t);
        assert_eq!(
            (e.code, e.reason, e.retry_after),
            (503, "ServiceUnavailable", Some(3))
        );
        assert_eq!(e.to_status()["details"]["retryAfterSeconds"], 3);
        let e = fault_error(429, 1, "create", &t);
        assert_eq!(
            (e.code, e.reason, e.retry_after),
            (429, "TooManyRequests", Some(1))
        );
        let e = fault_error(500, 1, "create", &t);
        assert_eq!(
            (e.code, e.reason, e.retry_after),
            (500, "InternalError", None)
        );
        assert!(e.message.starts_with("Internal error occurred: "));
    }
}
