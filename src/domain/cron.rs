//! Backup schedules: validated 5-field cron expressions.
//!
//! The schedule ends up in a CronJob, whose controller parses it with robfig/cron's standard parser. We accept
//! a subset of what that parser accepts, so a schedule we take is never one the API server refuses after the
//! 202: no `?`, no `L`/`W`/`#`, no `TZ=` prefix, no `@every`, and day-of-week 0–6 (robfig has no 7).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A validated cron schedule, kept as the text the user wrote.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CronSchedule(String);

/// The nightly default: 02:00, when most teams' traffic is lowest.
pub const DEFAULT_BACKUP_SCHEDULE: &str = "0 2 * * *";

/// The descriptors robfig/cron understands in place of five fields.
const DESCRIPTORS: [&str; 7] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// The value range of one field and its optional names (the first name stands for `min`).
struct FieldRule {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

/// minute, hour, day of month, month, day of week — in that order.
const FIELDS: [FieldRule; 5] = [
    FieldRule {
        min: 0,
        max: 59,
        names: &[],
    },
    FieldRule {
        min: 0,
        max: 23,
        names: &[],
    },
    FieldRule {
        min: 1,
        max: 31,
        names: &[],
    },
    FieldRule {
        min: 1,
        max: 12,
        names: &MONTHS,
    },
    FieldRule {
        min: 0,
        max: 6,
        names: &DAYS,
    },
];

impl CronSchedule {
    /// Accepts a descriptor (`@daily`, `@hourly`, `@weekly`, `@monthly`, `@yearly`, `@annually`,
    /// `@midnight`) or five space-separated fields: minute (0–59), hour (0–23), day of month (1–31), month
    /// (1–12 or JAN–DEC), day of week (0–6 or SUN–SAT). Each field is a comma-separated list of `*`, `N`,
    /// `N-M`, each optionally with `/step`; names are case-insensitive.
    pub fn parse(s: &str) -> Option<CronSchedule> {
        let valid = if s.starts_with('@') {
            DESCRIPTORS.contains(&s)
        } else {
            let fields: Vec<&str> = s.split(' ').filter(|f| !f.is_empty()).collect();
            // Leading or trailing blanks are refused rather than trimmed: we store the text as given.
            s.trim_matches(' ') == s
                && fields.len() == FIELDS.len()
                && fields
                    .iter()
                    .zip(&FIELDS)
                    .all(|(f, rule)| field_ok(f, rule))
        };
        valid.then(|| CronSchedule(s.to_string()))
    }

    /// The nightly default, [`DEFAULT_BACKUP_SCHEDULE`].
    pub fn default_backup() -> CronSchedule {
        CronSchedule(DEFAULT_BACKUP_SCHEDULE.to_string())
    }

    /// The schedule as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn field_ok(field: &str, rule: &FieldRule) -> bool {
    field.split(',').all(|item| item_ok(item, rule))
}

fn item_ok(item: &str, rule: &FieldRule) -> bool {
    let (range, step) = match item.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (item, None),
    };
    if let Some(step) = step {
        match number(step) {
            // A step beyond the field's span would fire once at most, which is never what was meant.
            Some(n) if n >= 1 && n <= rule.max => {}
            _ => return false,
        }
    }
    if range == "*" {
        return true;
    }
    match range.split_once('-') {
        Some((a, b)) => matches!((value(a, rule), value(b, rule)), (Some(a), Some(b)) if a <= b),
        // `N/step` means N through the maximum, as in robfig/cron.
        None => value(range, rule).is_some(),
    }
}

fn value(s: &str, rule: &FieldRule) -> Option<u32> {
    let n = match number(s) {
        Some(n) => n,
        None => {
            let i = rule.names.iter().position(|n| n.eq_ignore_ascii_case(s))?;
            rule.min + u32::try_from(i).ok()?
        }
    };
    (rule.min..=rule.max).contains(&n).then_some(n)
}

fn number(s: &str) -> Option<u32> {
    // Two digits cover every field; the bound also keeps `parse` far from overflow.
    if s.is_empty() || s.len() > 2 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for CronSchedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CronSchedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        CronSchedule::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid cron schedule {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_forms() {
        for ok in [
            "0 2 * * *",
            "*/5 * * * *",
            "0 0 1-5/2 * *",
            "0,15,30,45 * * * *",
            "0 2 * * MON-FRI",
            "0 2 * jan,Jul sun",
            "59 23 31 12 6",
            "0 0 1 1 0",
            "5/10 * * * *",
            "0  2 * * *",
            "@daily",
            "@hourly",
            "@weekly",
            "@monthly",
            "@yearly",
            "@annually",
            "@midnight",
        ] {
            let c = CronSchedule::parse(ok).unwrap_or_else(|| panic!("{ok:?} should parse"));
            assert_eq!(c.as_str(), ok);
        }
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "",
            "0 2 * *",
            "0 2 * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * 32 * *",
            "* * * 0 *",
            "* * * 13 *",
            "* * * * 7",
            "* * * * SUNDAY",
            "* * * MON *",
            "* * * * JAN",
            "5-1 * * * *",
            "*/0 * * * *",
            "*/60 * * * *",
            "*/ * * * *",
            "1,,2 * * * *",
            "-1 * * * *",
            "0 2 ? * *",
            "0 2 L * *",
            "0 2 * * 1#2",
            "0 2 * * *\n",
            " 0 2 * * *",
            "0 2 * * * ",
            "0\t2 * * *",
            "TZ=UTC 0 2 * * *",
            "@every 1h",
            "@Daily",
            "@reboot",
            "007 * * * *",
        ] {
            assert_eq!(CronSchedule::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn default_is_nightly_and_valid() {
        assert_eq!(CronSchedule::default_backup().as_str(), "0 2 * * *");
        assert!(CronSchedule::parse(DEFAULT_BACKUP_SCHEDULE).is_some());
    }

    #[test]
    fn serde_is_a_validated_string() {
        let c = CronSchedule::parse("0 3 * * SUN").unwrap();
        assert_eq!(serde_json::to_value(&c).unwrap(), "0 3 * * SUN");
        assert_eq!(
            serde_json::from_value::<CronSchedule>("0 3 * * SUN".into()).unwrap(),
            c
        );
        assert!(serde_json::from_value::<CronSchedule>("nightly".into()).is_err());
    }
}
