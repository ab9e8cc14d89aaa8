//! Durations on command lines and in environment variables: `10`, `10s`,
//! `500ms`, `1.5s` or `2m`. A plain number is seconds.

use std::time::Duration;

/// Parse a duration; the error says what is accepted. The number is read
/// as a decimal, exactly (to the nanosecond), so that what [`format`]
/// writes reads back the same.
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let not_a_duration = || format!("{s:?} is not a duration; use e.g. 10s or 500ms");
    let (whole, fraction) = num.split_once('.').unwrap_or((num, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(not_a_duration());
    }
    let nanos_per_unit: u128 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use ms, s or m")),
    };
    let out_of_range = || format!("{s:?} is out of range");
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| out_of_range())?
    };
    // Digits past the nanosecond are dropped.
    let mut frac_nanos: u128 = 0;
    let mut scale = nanos_per_unit;
    for d in fraction.bytes() {
        scale /= 10;
        frac_nanos += u128::from(d - b'0') * scale;
    }
    let nanos = whole
        .checked_mul(nanos_per_unit)
        .and_then(|n| n.checked_add(frac_nanos))
        .ok_or_else(out_of_range)?;
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| out_of_range())?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// The form [`parse`] reads back: whole seconds as `10s`, anything else in
/// milliseconds (`1500ms`). Below a millisecond is dropped.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(
            parse("soon"),
            Err("\"soon\" is not a duration; use e.g. 10s or 500ms".into())
        );
        assert_eq!(
            parse("3h"),
            Err("\"3h\": unknown unit \"h\"; use ms, s or m".into())
        );
    }

    #[test]
    fn formatted_durations_parse_back() {
        for ms in [0, 1, 999, 1000, 1500, 60_000, 600_000, 86_400_123] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse(&format(d)), Ok(d), "{}", format(d));
        }
        assert_eq!(format(Duration::from_secs(600)), "600s");
        assert_eq!(format(Duration::from_millis(250)), "250ms");
    }
}
