//! Cron schedules as CronJobs write them: the five standard fields (minute, hour, day of month, month, day of
//! week) with `*`, `?`, lists, ranges, steps and month/day names, and the `@hourly`-style macros, with the
//! semantics of the parser upstream uses (robfig/cron `ParseStandard`): when both day fields are restricted a
//! day matches if either does.
//!
//! Owns parsing and "next time after"; it knows nothing of CronJobs.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// The day-of-month / day-of-week field was `*` or `?`.
    any_day: bool,
    any_weekday: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// How far ahead to look for a match before calling a schedule impossible (e.g. `0 0 30 2 *`).
const SEARCH_YEARS: i16 = 5;

impl Schedule {
    /// Parses a schedule; the error is fit for a log line.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let expanded = match s {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(format!("unrecognized descriptor: {other}"));
            }
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: {s}",
                fields.len()
            ));
        }
        let any = |f: &str| f.starts_with('*') || f.starts_with('?');
        Ok(Schedule {
            minutes: field(fields[0], 0, 59, &[])?,
            hours: field(fields[1], 0, 23, &[])?,
            days: field(fields[2], 1, 31, &[])?,
            months: field(fields[3], 1, 12, &MONTHS)?,
            // 7 is accepted for Sunday, as in most crons.
            weekdays: {
                let w = field(fields[4], 0, 7, &WEEKDAYS)?;
                (w | (w >> 7)) & 0x7f
            },
            any_day: any(fields[2]),
            any_weekday: any(fields[4]),
        })
    }

    fn day_matches(&self, d: Date) -> bool {
        let dom = self.days & (1 << d.day()) != 0;
        let dow = self.weekdays & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        if self.any_day || self.any_weekday {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first time strictly after `after` that the schedule fires, in `tz`.
    pub(crate) fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = after.to_zoned(tz.clone()).datetime();
        // The next whole minute after `after`.
        let mut t = start
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let limit = start.year() + SEARCH_YEARS;
        while t.year() <= limit {
            if self.months & (1 << t.month()) == 0 {
                t = DateTime::from_parts(first_of_next_month(t.date())?, Time::midnight());
                continue;
            }
            if !self.day_matches(t.date()) {
                t = DateTime::from_parts(t.date().tomorrow().ok()?, Time::midnight());
                continue;
            }
            if self.hours & (1 << t.hour()) == 0 {
                t = t
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if self.minutes & (1 << t.minute()) == 0 {
                t = t.checked_add(1.minute()).ok()?;
                continue;
            }
            let ts = tz.to_ambiguous_zoned(t).compatible().ok()?.timestamp();
            if ts > after {
                return Some(ts);
            }
            t = t.checked_add(1.minute()).ok()?;
        }
        None
    }
}

fn first_of_next_month(d: Date) -> Option<Date> {
    d.first_of_month().checked_add(1.month()).ok()
}

/// One field as a bit set of allowed values.
fn field(f: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let value = |s: &str| -> Result<u32, String> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            return Ok(i as u32 + if min == 1 { 1 } else { 0 });
        }
        s.parse::<u32>()
            .map_err(|_| format!("failed to parse int from {s}"))
    };
    let mut bits = 0u64;
    for part in f.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                Some(
                    s.parse::<u32>()
                        .map_err(|_| format!("failed to parse int from {s}"))?,
                ),
            ),
            None => (part, None),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            // `n/step` means from n to the end, as robfig/cron reads it.
            (v, if step.is_some() { max } else { v })
        };
        if lo < min || hi > max || lo > hi {
            return Err(format!("value out of range ({min} - {max}): {part}"));
        }
        let step = step.unwrap_or(1);
        if step == 0 {
            return Err(format!("step of range should be a positive number: {part}"));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn next_times() {
        let utc = TimeZone::UTC;
        let every5 = Schedule::parse("*/5 * * * *").unwrap();
        assert_eq!(
            every5.next_after(ts("2025-01-01T10:02:30Z"), &utc),
            Some(ts("2025-01-01T10:05:00Z"))
        );
        assert_eq!(
            every5.next_after(ts("2025-01-01T10:05:00Z"), &utc),
            Some(ts("2025-01-01T10:10:00Z")),
            "strictly after"
        );
        let nightly = Schedule::parse("30 2 * * *").unwrap();
        assert_eq!(
            nightly.next_after(ts("2025-01-01T10:00:00Z"), &utc),
            Some(ts("2025-01-02T02:30:00Z"))
        );
        let monthly = Schedule::parse("@monthly").unwrap();
        assert_eq!(
            monthly.next_after(ts("2025-01-31T10:00:00Z"), &utc),
            Some(ts("2025-02-01T00:00:00Z"))
        );
        let weekdays = Schedule::parse("0 9 * * MON-FRI").unwrap();
        // 2025-01-04 is a Saturday.
        assert_eq!(
            weekdays.next_after(ts("2025-01-04T00:00:00Z"), &utc),
            Some(ts("2025-01-06T09:00:00Z"))
        );
        let either = Schedule::parse("0 0 13 * 5").unwrap();
        // The 13th or any Friday: 2025-01-03 is a Friday.
        assert_eq!(
            either.next_after(ts("2025-01-01T00:00:00Z"), &utc),
            Some(ts("2025-01-03T00:00:00Z"))
        );
        assert_eq!(
            Schedule::parse("0 0 30 2 *")
                .unwrap()
                .next_after(ts("2025-01-01T00:00:00Z"), &utc),
            None
        );
    }

    #[test]
    fn time_zones_shift_the_hour() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let s = Schedule::parse("0 9 * * *").unwrap();
        assert_eq!(
            s.next_after(ts("2025-01-01T00:00:00Z"), &berlin),
            Some(ts("2025-01-01T08:00:00Z"))
        );
    }

    #[test]
    fn bad_schedules() {
        assert!(Schedule::parse("* * * *").is_err());
        assert!(Schedule::parse("61 * * * *").is_err());
        assert!(Schedule::parse("*/0 * * * *").is_err());
        assert!(Schedule::parse("@every 5m").is_err());
        assert!(Schedule::parse("0 0 * JAN,jul SUN").is_ok());
    }
}
