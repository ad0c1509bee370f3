//! Pod faults on demand: the keys of ConfigMap `kube-system/kubesim-faults` that the kubelet obeys.
//!
//! Owns parsing those keys into [`PodFaults`] and matching them against a pod. The API fault keys of the same
//! ConfigMap belong to `crate::faults` and are ignored here; this module never writes anything.
//!
//! | key | value | effect on a pod whose `<namespace>/<name>` matches |
//! |---|---|---|
//! | `imagePullFailure` | regex | containers never start: `ErrImagePull`, then `ImagePullBackOff`; phase Pending |
//! | `crashLoop` | regex | containers exit with code 1 once started: `CrashLoopBackOff`, rising restartCount |
//! | `notReady` | regex | a running pod reports Ready=False while the key matches it |
//! | `readyDelay` | Go duration | added to the start of every pod admitted while it is set |
//!
//! An empty value switches a key off (an empty regex would otherwise match every pod). A value that does not
//! parse is logged and ignored, so one typo cannot take the other keys down.

use std::time::Duration;

use regex::Regex;
use serde_json::Value;

/// The pod fault settings of one version of the ConfigMap.
#[derive(Debug, Default)]
pub(crate) struct PodFaults {
    image_pull: Option<Regex>,
    crash: Option<Regex>,
    not_ready: Option<Regex>,
    /// Extra start delay for every pod.
    pub ready_delay: Duration,
}

/// Which faults apply to one pod right now.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Matched {
    pub image_pull: bool,
    pub crash: bool,
    pub not_ready: bool,
}

impl PodFaults {
    /// Parses the ConfigMap (or its absence).
    pub(crate) fn from_configmap(cm: Option<&Value>) -> Self {
        let data = cm.and_then(|c| c.get("data")).and_then(Value::as_object);
        let get = |k: &str| {
            data.and_then(|d| d.get(k))
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let regex = |k: &str| {
            let v = get(k)?;
            match Regex::new(v) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(key = k, error = %e, "kubesim-faults: not a regular expression; ignored");
                    None
                }
            }
        };
        let ready_delay = match get("readyDelay").map(crate::faults::parse_duration) {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                tracing::warn!(key = "readyDelay", error = %e, "kubesim-faults: ignored");
                Duration::ZERO
            }
            None => Duration::ZERO,
        };
        PodFaults {
            image_pull: regex("imagePullFailure"),
            crash: regex("crashLoop"),
            not_ready: regex("notReady"),
            ready_delay,
        }
    }

    /// The faults that match `<ns>/<name>`.
    pub(crate) fn matching(&self, ns: &str, name: &str) -> Matched {
        let subject = format!("{ns}/{name}");
        let m = |r: &Option<Regex>| r.as_ref().is_some_and(|r| r.is_match(&subject));
        Matched {
            image_pull: m(&self.image_pull),
            crash: m(&self.crash),
            not_ready: m(&self.not_ready),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_match_namespace_slash_name() {
        let cm = json!({"data": {"crashLoop": "^demo/db-1$", "notReady": "", "imagePullFailure": "(", "readyDelay": "1.5s"}});
        let f = PodFaults::from_configmap(Some(&cm));
        assert!(f.matching("demo", "db-1").crash);
        assert!(!f.matching("demo", "db-10").crash);
        assert!(
            !f.matching("demo", "db-1").not_ready,
            "an empty value is off"
        );
        assert!(
            !f.matching("demo", "(").image_pull,
            "a bad regex is ignored"
        );
        assert_eq!(f.ready_delay, Duration::from_millis(1500));
        assert_eq!(
            PodFaults::from_configmap(None).matching("a", "b"),
            Matched::default()
        );
    }
}
