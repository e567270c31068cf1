//! Human-written quantities shared by config files and command-line flags:
//! durations (`500ms`, `30s`, `10m`, `24h`), duration ranges (`2s..6s`) and
//! byte sizes (`64KiB`, `10MB`, `1024`).

use std::time::Duration;

/// Parses `500ms`, `30s`, `1.5s`, `10m`, `24h`, `2d`.
///
/// # Errors
/// A message saying what is expected.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; write it like 500ms, 30s, 10m or 24h"))?;
    let secs = match unit.trim() {
        "ms" => value / 1000.0,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        "" => return Err(format!("{s:?} needs a unit: ms, s, m, h or d")),
        other => {
            return Err(format!(
                "unknown duration unit {other:?} in {s:?}; use ms, s, m, h or d"
            ));
        }
    };
    if !secs.is_finite() || secs > 1e9 {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a range `LOW..HIGH` (`2s..6s`) or a single duration (`3s`, meaning
/// exactly that).
///
/// # Errors
/// A message saying what is expected, or that the low end exceeds the high.
pub fn parse_duration_range(s: &str) -> Result<(Duration, Duration), String> {
    let (lo, hi) = match s.split_once("..") {
        Some((lo, hi)) => (parse_duration(lo)?, parse_duration(hi)?),
        None => {
            let d = parse_duration(s)?;
            (d, d)
        }
    };
    if lo > hi {
        return Err(format!("range {s:?} starts after it ends"));
    }
    Ok((lo, hi))
}

/// Parses `65536`, `64KiB`, `64KB`, `10MiB`, `1GiB` (KB and KiB both 1024).
///
/// # Errors
/// A message saying what is expected.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size; write it like 65536, 64KiB or 10MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?}; use KiB, MiB or GiB"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("10").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 weeks").is_err());
    }

    #[test]
    fn ranges() {
        assert_eq!(
            parse_duration_range("2s..6s"),
            Ok((Duration::from_secs(2), Duration::from_secs(6)))
        );
        assert_eq!(
            parse_duration_range("500ms..1s"),
            Ok((Duration::from_millis(500), Duration::from_secs(1)))
        );
        assert_eq!(
            parse_duration_range("3s"),
            Ok((Duration::from_secs(3), Duration::from_secs(3)))
        );
        assert!(parse_duration_range("6s..2s").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("65536"), Ok(65_536));
        assert_eq!(parse_bytes("64KiB"), Ok(65_536));
        assert_eq!(parse_bytes("10MB"), Ok(10 << 20));
        assert!(parse_bytes("ten").is_err());
        assert!(parse_bytes("5XB").is_err());
    }
}
