//! Time expressions, wherever a command takes a time. All in UTC.
//!
//! Accepted, in this order:
//! - `now`
//! - relative to now: `-2h`, `-90m`, `-1h30m`, `-7d`, `-2w`, `-30s`
//! - RFC 3339: `2026-11-17T14:03:00Z`, `2026-11-17T15:03:00+01:00`
//! - `2026-11-17 14:03`, `2026-11-17 14:03:27.5`, `2026-11-17T14:03`, `2026-11-17` (UTC)
//! - `today [HH:MM[:SS]]`, `yesterday [HH:MM[:SS]]`
//! - a weekday, past by choice: `tuesday 14:00` is the most recent Tuesday at
//!   14:00 that is not in the future (today when today is Tuesday and 14:00 has
//!   passed); `last tuesday 14:00` is the most recent Tuesday before today.
//!   A time of day alone defaults to 00:00.
//! - anything else the `interim` crate understands (`2 hours ago`, `1 April 2026 14:00`).

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc, Weekday};

pub const HELP: &str = "RFC 3339 (2026-11-17T14:03:00Z), '2026-11-17 14:03', relative '-2h' / '-30m' / '-7d', 'now', 'yesterday 09:30', 'tuesday 14:00' or 'last tuesday 14:00' (UTC)";

/// Parse `s` relative to `now`; nanoseconds since the Unix epoch.
pub fn parse(s: &str, now: DateTime<Utc>) -> Result<i64, String> {
    let t = parse_datetime(s.trim(), now).ok_or_else(|| format!("bad time expression '{s}': expected {HELP}"))?;
    t.timestamp_nanos_opt().ok_or_else(|| format!("time '{s}' is outside the range podtrail stores (1677..2262)"))
}

fn parse_datetime(s: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if s.is_empty() {
        return None;
    }
    let lower = s.to_ascii_lowercase();
    if lower == "now" {
        return Some(now);
    }
    if let Some(rel) = lower.strip_prefix('-') {
        return relative(rel).and_then(|d| now.checked_sub_signed(d));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(Utc.from_utc_datetime(&t));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(Utc.from_utc_datetime(&d.and_time(NaiveTime::MIN)));
    }
    if let Some(t) = day_words(&lower, now) {
        return Some(t);
    }
    interim::parse_date_string(s, now, interim::Dialect::Uk).ok()
}

/// `2h`, `1h30m`, `7d`, `2w`, `45s`: a sum of number+unit pairs.
fn relative(s: &str) -> Option<chrono::Duration> {
    let mut total = chrono::Duration::zero();
    let mut num = String::new();
    let mut any = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            's' => chrono::Duration::seconds(1),
            'm' => chrono::Duration::minutes(1),
            'h' => chrono::Duration::hours(1),
            'd' => chrono::Duration::days(1),
            'w' => chrono::Duration::weeks(1),
            _ => return None,
        };
        total = total.checked_add(&unit.checked_mul(n as i32)?)?;
        any = true;
    }
    (any && num.is_empty()).then_some(total)
}

/// `today`, `yesterday`, `[last] <weekday>`, each with an optional time of day.
fn day_words(s: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let mut words: Vec<&str> = s.split_whitespace().collect();
    let time = match words.last().and_then(|w| time_of_day(w)) {
        Some(t) if words.len() > 1 => {
            words.pop();
            t
        }
        _ => NaiveTime::MIN,
    };
    let today = now.date_naive();
    let at = |d: NaiveDate| Utc.from_utc_datetime(&d.and_time(time));
    match words.as_slice() {
        ["today"] => Some(at(today)),
        ["yesterday"] => Some(at(today.checked_sub_days(Days::new(1))?)),
        ["last", day] => {
            let wd = weekday(day)?;
            let back = (7 + today.weekday().num_days_from_monday() - wd.num_days_from_monday()) % 7;
            let back = if back == 0 { 7 } else { back };
            Some(at(today.checked_sub_days(Days::new(back as u64))?))
        }
        [day] => {
            let wd = weekday(day)?;
            let back = (7 + today.weekday().num_days_from_monday() - wd.num_days_from_monday()) % 7;
            let t = at(today.checked_sub_days(Days::new(back as u64))?);
            if t > now { Some(t.checked_sub_days(Days::new(7))?) } else { Some(t) }
        }
        _ => None,
    }
}

fn time_of_day(w: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(w, "%H:%M:%S").or_else(|_| NaiveTime::parse_from_str(w, "%H:%M")).ok()
}

fn weekday(w: &str) -> Option<Weekday> {
    let days = [("mon", Weekday::Mon), ("tue", Weekday::Tue), ("wed", Weekday::Wed), ("thu", Weekday::Thu), ("fri", Weekday::Fri), ("sat", Weekday::Sat), ("sun", Weekday::Sun)];
    let full = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
    days.iter().zip(full).find(|((short, _), long)| w == *short || w == *long || (w.len() >= 3 && long.starts_with(w))).map(|((_, d), _)| *d)
}

/// Nanoseconds as RFC 3339 UTC with as many fraction digits as needed.
pub fn format_ns(ns: i64) -> String {
    Utc.timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Thursday 2026-11-26 12:00:00 UTC.
    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap()
    }

    fn p(s: &str) -> String {
        format_ns(parse(s, now()).unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn absolute_forms() {
        assert_eq!(p("2026-11-17T14:03:00Z"), "2026-11-17T14:03:00Z");
        assert_eq!(p("2026-11-17T15:03:00+01:00"), "2026-11-17T14:03:00Z");
        assert_eq!(p("2026-11-17 14:03"), "2026-11-17T14:03:00Z");
        assert_eq!(p("2026-11-17 14:03:27.25"), "2026-11-17T14:03:27.250Z");
        assert_eq!(p("2026-11-17T14:03"), "2026-11-17T14:03:00Z");
        assert_eq!(p("2026-11-17"), "2026-11-17T00:00:00Z");
    }

    #[test]
    fn relative_forms() {
        assert_eq!(p("now"), "2026-11-26T12:00:00Z");
        assert_eq!(p("-2h"), "2026-11-26T10:00:00Z");
        assert_eq!(p("-1h30m"), "2026-11-26T10:30:00Z");
        assert_eq!(p("-7d"), "2026-11-19T12:00:00Z");
        assert_eq!(p("-1w"), "2026-11-19T12:00:00Z");
        assert_eq!(p("yesterday 09:30"), "2026-11-25T09:30:00Z");
        assert_eq!(p("yesterday"), "2026-11-25T00:00:00Z");
        assert_eq!(p("today 08:00"), "2026-11-26T08:00:00Z");
        assert_eq!(p("2 hours ago"), "2026-11-26T10:00:00Z");
    }

    #[test]
    fn weekdays_are_in_the_past() {
        assert_eq!(p("last tuesday 14:00"), "2026-11-24T14:00:00Z");
        assert_eq!(p("tuesday 14:00"), "2026-11-24T14:00:00Z");
        assert_eq!(p("Tue"), "2026-11-24T00:00:00Z");
        // Today is Thursday: "thursday 09:00" is this morning, "thursday 13:00" a week ago.
        assert_eq!(p("thursday 09:00"), "2026-11-26T09:00:00Z");
        assert_eq!(p("thursday 13:00"), "2026-11-19T13:00:00Z");
        assert_eq!(p("last thursday 09:00"), "2026-11-19T09:00:00Z");
    }

    #[test]
    fn bad_input_says_what_is_accepted() {
        for s in ["", "soon", "-2x", "-h", "2026-13-45", "last blursday"] {
            let e = parse(s, now()).unwrap_err();
            assert!(e.contains("bad time expression") && e.contains("RFC 3339"), "{s}: {e}");
        }
    }
}
