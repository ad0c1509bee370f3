//! Drift: what runs compared with what was asked, one human-readable line per difference; and the helpers
//! that turn Kubernetes' own notation (quantities, image references) into the domain's terms.

use super::catalogue::{Engine, Size};
use super::request::DesiredSpec;

/// What is observed running, as far as it is known. `None` means "not observed", never "zero": drift is
/// reported only for what has been seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActualSpec {
    /// The engine of the workload (from its labels).
    pub engine: Engine,
    /// The version from the running image tags, e.g. `"15.2"` or `"15"`.
    pub version: Option<String>,
    /// The size whose resources the containers have; `None` when they match no size (or were not seen).
    pub size: Option<Size>,
    /// Replicas of the StatefulSet.
    pub replicas: Option<u32>,
    /// The main container's CPU, in millicores.
    pub cpu_millis: Option<u32>,
    /// The main container's memory, in MiB.
    pub memory_mib: Option<u32>,
}

/// Every difference between desired and actual, one line each, in a fixed order (engine, version,
/// size/resources, replicas). Empty when nothing has drifted.
///
/// Lines read like `Version mismatch: desired=15, actual=15.2 (patch update)`, `Size mismatch:
/// desired=medium, actual=small`, `Resources mismatch: desired=2000m CPU/4096Mi memory, actual=1500m
/// CPU/4096Mi memory` (when the resources match no size), `Replica mismatch: desired=3 (highAvailability),
/// actual=1`.
pub fn drift(desired: &DesiredSpec, actual: &ActualSpec) -> Vec<String> {
    let mut lines = Vec::new();

    if actual.engine != desired.engine {
        lines.push(format!(
            "Engine mismatch: desired={}, actual={}",
            desired.engine, actual.engine
        ));
    }

    if let Some(v) = actual.version.as_deref()
        && v != desired.version
    {
        // `15.2` runs where `15` was asked: the image moved along its tag, which is the point of a major tag.
        let kind = if is_patch_of(v, &desired.version) {
            "patch update"
        } else {
            "different version"
        };
        lines.push(format!(
            "Version mismatch: desired={}, actual={v} ({kind})",
            desired.version
        ));
    }

    let want = desired.size.spec();
    // The caller may have passed raw resources without a size; they still identify one if they match it.
    let actual_size = actual
        .size
        .or(match (actual.cpu_millis, actual.memory_mib) {
            (Some(c), Some(m)) => size_from_resources(c, m),
            _ => None,
        });
    match actual_size {
        Some(s) if s != desired.size => lines.push(format!(
            "Size mismatch: desired={}, actual={}",
            desired.size, s
        )),
        Some(_) => {}
        None if actual.cpu_millis.is_some() || actual.memory_mib.is_some() => {
            let cpu = |m: Option<u32>| m.map_or_else(|| "unknown".to_string(), |m| format!("{m}m"));
            let mem =
                |m: Option<u32>| m.map_or_else(|| "unknown".to_string(), |m| format!("{m}Mi"));
            lines.push(format!(
                "Resources mismatch: desired={}m CPU/{}Mi memory, actual={} CPU/{} memory",
                want.cpu_millis,
                want.memory_mib,
                cpu(actual.cpu_millis),
                mem(actual.memory_mib),
            ));
        }
        None => {}
    }

    if let Some(n) = actual.replicas {
        let want = desired.replicas();
        if n != want {
            let why = if desired.high_availability {
                " (highAvailability)"
            } else {
                ""
            };
            lines.push(format!("Replica mismatch: desired={want}{why}, actual={n}"));
        }
    }

    lines
}

/// Whether `actual` is `desired` with more version components (`15.2` of `15`, `8.0.36` of `8.0`).
fn is_patch_of(actual: &str, desired: &str) -> bool {
    actual
        .strip_prefix(desired)
        .is_some_and(|rest| rest.starts_with('.') && rest.len() > 1)
}

/// The size whose CPU and memory are exactly these, if any.
pub fn size_from_resources(cpu_millis: u32, memory_mib: u32) -> Option<Size> {
    Size::ALL.into_iter().find(|s| {
        let spec = s.spec();
        spec.cpu_millis == cpu_millis && spec.memory_mib == memory_mib
    })
}

/// A Kubernetes CPU quantity in millicores, rounded up as Kubernetes does: `"1"` → 1000, `"500m"` → 500,
/// `"1.5"` → 1500, `"2000m"` → 2000, `"100000u"` → 100. `None` if it is not a non-negative quantity or does
/// not fit.
pub fn parse_cpu_millis(q: &str) -> Option<u32> {
    let quantity = Quantity::parse(q)?;
    quantity.ceil_div(1000, 1)
}

/// A Kubernetes memory quantity in MiB, rounded up: `"4Gi"` → 4096, `"512Mi"` → 512, `"4096M"` → 3907
/// (4096 × 10⁶ bytes), `"1073741824"` → 1024. `None` if it is not a non-negative quantity or does not fit.
pub fn parse_memory_mib(q: &str) -> Option<u32> {
    let quantity = Quantity::parse(q)?;
    quantity.ceil_div(1, 1 << 20)
}

/// A parsed quantity: `digits / 10^decimals × multiplier`, the multiplier being `10^exp10` or `2^exp2`.
struct Quantity {
    digits: u128,
    decimals: u32,
    exp10: i32,
    exp2: u32,
}

impl Quantity {
    /// Parses `<number><suffix>` where the number is `123`, `1.5`, `.5` or `5.` (an optional leading `+`),
    /// and the suffix is binary (`Ki` … `Ei`), decimal SI (`n u m k M G T P E`) or an exponent (`e3`, `E-3`).
    fn parse(q: &str) -> Option<Quantity> {
        let q = q.strip_prefix('+').unwrap_or(q);
        let split = q
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(q.len());
        let (number, suffix) = q.split_at(split);
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        // 30 significant digits is far beyond any real quantity and keeps the u128 arithmetic exact.
        if int.len() + frac.len() > 30 || frac.contains('.') {
            return None;
        }
        let digits: u128 = format!("{int}{frac}").parse().ok()?;
        let decimals = u32::try_from(frac.len()).ok()?;
        let (exp10, exp2) = match suffix {
            "" => (0, 0),
            "n" => (-9, 0),
            "u" => (-6, 0),
            "m" => (-3, 0),
            "k" => (3, 0),
            "M" => (6, 0),
            "G" => (9, 0),
            "T" => (12, 0),
            "P" => (15, 0),
            "E" => (18, 0),
            "Ki" => (0, 10),
            "Mi" => (0, 20),
            "Gi" => (0, 30),
            "Ti" => (0, 40),
            "Pi" => (0, 50),
            "Ei" => (0, 60),
            s => {
                let exp = s.strip_prefix(['e', 'E'])?;
                let (sign, mag) = match exp.strip_prefix('-') {
                    Some(m) => (-1, m),
                    None => (1, exp.strip_prefix('+').unwrap_or(exp)),
                };
                if mag.is_empty() || mag.len() > 2 || !mag.bytes().all(|c| c.is_ascii_digit()) {
                    return None;
                }
                (sign * mag.parse::<i32>().ok()?, 0)
            }
        };
        Some(Quantity {
            digits,
            decimals,
            exp10,
            exp2,
        })
    }

    /// `ceil(value × scale / unit)` as a u32, with `None` on overflow.
    fn ceil_div(&self, scale: u128, unit: u128) -> Option<u32> {
        let mut num = self.digits.checked_mul(scale)?;
        let mut den = unit.checked_mul(10u128.checked_pow(self.decimals)?)?;
        num = num.checked_mul(1u128.checked_shl(self.exp2)?)?;
        let pow = 10u128.checked_pow(self.exp10.unsigned_abs())?;
        if self.exp10 >= 0 {
            num = num.checked_mul(pow)?;
        } else {
            den = den.checked_mul(pow)?;
        }
        u32::try_from(num.div_ceil(den)).ok()
    }
}

/// The version an image reference runs, from its tag: `postgres:15` → `15`,
/// `docker.io/library/postgres:15.2@sha256:…` → `15.2`, `reg:5000/x/postgres:15` → `15`.
///
/// A variant suffix after a numeric version is dropped (`15.2-alpine` → `15.2`, `8.0.36-debian` → `8.0.36`)
/// because it is not part of the version. A reference without a tag runs `latest`; one pinned only by digest
/// has no readable version (`None`).
pub fn version_from_image(image: &str) -> Option<String> {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    // The tag follows the last `:` only if that is after the last `/`; before it, `:` is a registry port.
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let tag = name[last_slash..].split_once(':').map(|(_, t)| t);
    let tag = match (tag, digest) {
        (Some(t), _) if !t.is_empty() => t,
        (Some(_), _) => return None,
        (None, Some(_)) => return None,
        (None, None) => return Some("latest".to_string()),
    };
    let numeric_len = tag
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(tag.len());
    let version = match tag.as_bytes().get(numeric_len) {
        Some(b'-') if numeric_len > 0 && tag.as_bytes()[0].is_ascii_digit() => &tag[..numeric_len],
        _ => tag,
    };
    Some(version.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::request::{Backup, Encryption};

    fn desired(version: &str, size: Size, ha: bool) -> DesiredSpec {
        DesiredSpec {
            engine: Engine::Postgresql,
            version: version.into(),
            size,
            high_availability: ha,
            backup: Backup::default(),
            encryption: Encryption::default(),
        }
    }

    fn seen(version: &str, size: Size, replicas: u32) -> ActualSpec {
        let s = size.spec();
        ActualSpec {
            engine: Engine::Postgresql,
            version: Some(version.into()),
            size: Some(size),
            replicas: Some(replicas),
            cpu_millis: Some(s.cpu_millis),
            memory_mib: Some(s.memory_mib),
        }
    }

    #[test]
    fn no_drift_when_everything_matches() {
        assert!(
            drift(
                &desired("15", Size::Medium, true),
                &seen("15", Size::Medium, 3)
            )
            .is_empty()
        );
    }

    #[test]
    fn nothing_observed_means_no_drift() {
        let actual = ActualSpec {
            engine: Engine::Postgresql,
            version: None,
            size: None,
            replicas: None,
            cpu_millis: None,
            memory_mib: None,
        };
        assert!(drift(&desired("15", Size::Medium, true), &actual).is_empty());
    }

    #[test]
    fn the_seed_patch_update_line() {
        assert_eq!(
            drift(
                &desired("15", Size::Medium, false),
                &seen("15.2", Size::Medium, 1)
            ),
            ["Version mismatch: desired=15, actual=15.2 (patch update)"]
        );
        assert_eq!(
            drift(
                &desired("8.0", Size::Medium, false),
                &seen("8.0.36", Size::Medium, 1)
            ),
            ["Version mismatch: desired=8.0, actual=8.0.36 (patch update)"]
        );
    }

    #[test]
    fn other_versions_are_different_versions() {
        for actual in ["16", "150", "1", "15.", "latest"] {
            assert_eq!(
                drift(
                    &desired("15", Size::Small, false),
                    &seen(actual, Size::Small, 1)
                ),
                [format!(
                    "Version mismatch: desired=15, actual={actual} (different version)"
                )]
            );
        }
        assert_eq!(
            drift(
                &desired("8.0", Size::Small, false),
                &seen("8.4.1", Size::Small, 1)
            ),
            ["Version mismatch: desired=8.0, actual=8.4.1 (different version)"]
        );
    }

    #[test]
    fn size_and_replica_drift() {
        assert_eq!(
            drift(
                &desired("15", Size::Medium, true),
                &seen("15", Size::Small, 1)
            ),
            [
                "Size mismatch: desired=medium, actual=small",
                "Replica mismatch: desired=3 (highAvailability), actual=1"
            ]
        );
        assert_eq!(
            drift(
                &desired("15", Size::Medium, false),
                &seen("15", Size::Medium, 2)
            ),
            ["Replica mismatch: desired=1, actual=2"]
        );
    }

    #[test]
    fn resources_that_match_no_size() {
        let mut actual = seen("15", Size::Medium, 1);
        actual.size = None;
        actual.cpu_millis = Some(1500);
        assert_eq!(
            drift(&desired("15", Size::Medium, false), &actual),
            ["Resources mismatch: desired=2000m CPU/4096Mi memory, actual=1500m CPU/4096Mi memory"]
        );
        actual.memory_mib = None;
        assert_eq!(
            drift(&desired("15", Size::Medium, false), &actual),
            [
                "Resources mismatch: desired=2000m CPU/4096Mi memory, actual=1500m CPU/unknown memory"
            ]
        );
    }

    #[test]
    fn raw_resources_are_matched_to_a_size() {
        let mut actual = seen("15", Size::Large, 1);
        actual.size = None;
        assert_eq!(
            drift(&desired("15", Size::Medium, false), &actual),
            ["Size mismatch: desired=medium, actual=large"]
        );
        actual.cpu_millis = Some(2000);
        actual.memory_mib = Some(4096);
        assert!(drift(&desired("15", Size::Medium, false), &actual).is_empty());
    }

    #[test]
    fn engine_drift_comes_first() {
        let mut actual = seen("8.0", Size::Small, 1);
        actual.engine = Engine::Mysql;
        assert_eq!(
            drift(&desired("15", Size::Small, false), &actual),
            [
                "Engine mismatch: desired=postgresql, actual=mysql",
                "Version mismatch: desired=15, actual=8.0 (different version)"
            ]
        );
    }

    #[test]
    fn sizes_from_resources() {
        for s in Size::ALL {
            let spec = s.spec();
            assert_eq!(
                size_from_resources(spec.cpu_millis, spec.memory_mib),
                Some(s)
            );
        }
        assert_eq!(size_from_resources(2000, 2048), None);
        assert_eq!(size_from_resources(1500, 4096), None);
    }

    #[test]
    fn cpu_quantities() {
        let cases = [
            ("1", Some(1000)),
            ("500m", Some(500)),
            ("1.5", Some(1500)),
            ("2000m", Some(2000)),
            ("0.25", Some(250)),
            (".5", Some(500)),
            ("+2", Some(2000)),
            ("100000u", Some(100)),
            ("1n", Some(1)),
            ("0.0001", Some(1)),
            ("1e3", Some(1_000_000)),
            ("1E-3", Some(1)),
            ("2k", Some(2_000_000)),
            ("1Ki", Some(1_024_000)),
            ("0", Some(0)),
            ("", None),
            (".", None),
            ("-1", None),
            ("1.2.3", None),
            ("1x", None),
            ("m", None),
            ("1 m", None),
            ("1e", None),
            ("5G", None),
        ];
        for (q, want) in cases {
            assert_eq!(parse_cpu_millis(q), want, "{q:?}");
        }
    }

    #[test]
    fn memory_quantities() {
        let cases = [
            ("4Gi", Some(4096)),
            ("512Mi", Some(512)),
            ("4096M", Some(3907)),
            ("1073741824", Some(1024)),
            ("1073741825", Some(1025)),
            ("2048Ki", Some(2)),
            ("1.5Gi", Some(1536)),
            ("1G", Some(954)),
            ("1Ti", Some(1_048_576)),
            ("128974848", Some(123)),
            ("129e6", Some(124)),
            ("0", Some(0)),
            ("4 Gi", None),
            ("4gi", None),
            ("Gi", None),
            ("1Pi", Some(1 << 30)),
            ("1Ei", None),
            ("4096Ei", None),
        ];
        for (q, want) in cases {
            assert_eq!(parse_memory_mib(q), want, "{q:?}");
        }
    }

    #[test]
    fn versions_from_images() {
        let cases = [
            ("postgres:15", Some("15")),
            (
                "docker.io/library/postgres:15.2@sha256:abcdef",
                Some("15.2"),
            ),
            ("reg:5000/x/postgres:15", Some("15")),
            ("reg:5000/x/postgres", Some("latest")),
            ("postgres", Some("latest")),
            ("postgres@sha256:abcdef", None),
            ("postgres:", None),
            ("redis:7.2-alpine", Some("7.2")),
            ("mysql:8.0.36-debian", Some("8.0.36")),
            ("mongo:7.0.12-jammy", Some("7.0.12")),
            ("postgres:latest", Some("latest")),
            ("postgres:bookworm-15", Some("bookworm-15")),
        ];
        for (image, want) in cases {
            assert_eq!(version_from_image(image).as_deref(), want, "{image:?}");
        }
    }
}
