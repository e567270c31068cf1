//! Quantities written on bench's and capacity's command lines: counts
//! (`10k`), rates (`5000`, `2k/s`), bandwidth (`3Mbps`), shares (`0.1%`), the
//! server description (`cpus=4,memory=4GiB,bandwidth=3Mbps`) and the SLO
//! (`p95=200ms,errors=0.1%`). Durations and byte sizes are gengate-core's.

use std::time::Duration;

use gengate_core::units::{parse_bytes, parse_duration};

fn split_number(s: &str) -> (&str, &str) {
    let s = s.trim();
    let at = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    s.split_at(at)
}

/// `1000`, `10k`, `1.5M`, `2G`.
///
/// # Errors
/// A message saying what is expected.
pub fn parse_count(s: &str) -> Result<u64, String> {
    let (num, suffix) = split_number(s);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a count; write it like 1000, 10k or 1.5M"))?;
    let mult = match suffix.trim() {
        "" => 1.0,
        "k" | "K" => 1e3,
        "m" | "M" => 1e6,
        "g" | "G" => 1e9,
        other => return Err(format!("unknown suffix {other:?} in {s:?}; use k, M or G")),
    };
    let n = value * mult;
    if !(1.0..=1e15).contains(&n) || n.fract() != 0.0 {
        return Err(format!("{s:?} must be a whole number ≥ 1"));
    }
    Ok(n as u64)
}

/// Requests per second: `5000`, `2k`, `2k/s`, `0.5`.
///
/// # Errors
/// A message saying what is expected.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim().trim_end_matches("/s");
    let (num, suffix) = split_number(t);
    let value: f64 = num.parse().map_err(|_| {
        format!("{s:?} is not a rate; write it like 5000 or 2k (requests per second)")
    })?;
    let mult = match suffix.trim() {
        "" => 1.0,
        "k" | "K" => 1e3,
        "m" | "M" => 1e6,
        other => return Err(format!("unknown suffix {other:?} in {s:?}; use k or M")),
    };
    let r = value * mult;
    if !(r > 0.0 && r.is_finite()) {
        return Err(format!("{s:?} must be more than 0"));
    }
    Ok(r)
}

/// Bits per second: `3Mbps`, `100Mbit`, `1Gbps`, `500kbps`; bytes with
/// `B/s` (`375KB/s`). Networking units are decimal (1 Mbps = 10⁶ bit/s).
///
/// # Errors
/// A message saying what is expected.
pub fn parse_bandwidth(s: &str) -> Result<f64, String> {
    let (num, unit) = split_number(s);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a bandwidth; write it like 3Mbps or 1Gbps"))?;
    let unit = unit.trim();
    let (prefix, rest) = match unit.chars().next() {
        Some(c @ ('k' | 'K' | 'm' | 'M' | 'g' | 'G')) => (Some(c), &unit[1..]),
        _ => (None, unit),
    };
    let mult = match prefix {
        None => 1.0,
        Some('k' | 'K') => 1e3,
        Some('m' | 'M') => 1e6,
        _ => 1e9,
    };
    let bits = match rest {
        "bps" | "bit" | "bit/s" | "b/s" => 1.0,
        "B/s" | "Bps" => 8.0,
        _ => {
            return Err(format!(
                "unknown bandwidth unit in {s:?}; use bps, kbps, Mbps, Gbps or MB/s"
            ));
        }
    };
    let v = value * mult * bits;
    if !(v > 0.0 && v.is_finite()) {
        return Err(format!("{s:?} must be more than 0"));
    }
    Ok(v)
}

/// `0.1%` or `0.001`.
///
/// # Errors
/// A message saying what is expected.
pub fn parse_share(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| format!("{s:?} is not a share; write it like 0.1% or 0.001"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("{s:?} must be between 0 and 100%"));
    }
    Ok(v)
}

/// The server being planned for.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSpec {
    pub cpus: f64,
    pub memory_bytes: u64,
    pub bandwidth_bps: f64,
    /// Memory the OS and everything else on the box keeps.
    pub os_bytes: u64,
    /// Memory the database keeps (when it runs on the same box).
    pub db_bytes: u64,
}

impl Default for ServerSpec {
    fn default() -> Self {
        ServerSpec {
            cpus: 4.0,
            memory_bytes: 4 << 30,
            bandwidth_bps: 3e6,
            os_bytes: 512 << 20,
            db_bytes: 0,
        }
    }
}

/// `cpus=4,memory=4GiB,bandwidth=3Mbps[,os=512MiB][,db=0]`; keys left out
/// keep the defaults (4 cores, 4 GiB, 3 Mbps, 512 MiB for the OS, no
/// database on the box).
///
/// # Errors
/// A message naming the key.
pub fn parse_server(s: &str) -> Result<ServerSpec, String> {
    let mut spec = ServerSpec::default();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?}: write it like cpus=4"))?;
        match k.trim() {
            "cpus" | "cores" => {
                spec.cpus = v
                    .trim()
                    .parse()
                    .ok()
                    .filter(|c: &f64| *c > 0.0)
                    .ok_or_else(|| format!("cpus={v}: a number of cores > 0"))?;
            }
            "memory" | "ram" => {
                spec.memory_bytes = parse_bytes(v).map_err(|e| format!("memory: {e}"))?
            }
            "bandwidth" | "bw" => {
                spec.bandwidth_bps = parse_bandwidth(v).map_err(|e| format!("bandwidth: {e}"))?
            }
            "os" => spec.os_bytes = parse_bytes(v).map_err(|e| format!("os: {e}"))?,
            "db" => spec.db_bytes = parse_bytes(v).map_err(|e| format!("db: {e}"))?,
            other => {
                return Err(format!(
                    "unknown key {other:?}; use cpus, memory, bandwidth, os, db"
                ));
            }
        }
    }
    Ok(spec)
}

/// What "meets the SLO" means.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slo {
    /// The latency percentile that is bounded (95 for p95).
    pub percentile: f64,
    pub latency: Duration,
    /// Largest share of failed requests.
    pub errors: f64,
}

impl Default for Slo {
    fn default() -> Self {
        Slo {
            percentile: 95.0,
            latency: Duration::from_millis(200),
            errors: 0.001,
        }
    }
}

/// `p95=200ms,errors=0.1%` (p50, p90, p95, p99 or p999).
///
/// # Errors
/// A message naming the key.
pub fn parse_slo(s: &str) -> Result<Slo, String> {
    let mut slo = Slo::default();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?}: write it like p95=200ms"))?;
        match k.trim() {
            "errors" => slo.errors = parse_share(v)?,
            p @ ("p50" | "p90" | "p95" | "p99" | "p999") => {
                slo.percentile = if p == "p999" {
                    99.9
                } else {
                    p[1..].parse().unwrap_or(95.0)
                };
                slo.latency = parse_duration(v).map_err(|e| format!("{p}: {e}"))?;
            }
            other => {
                return Err(format!(
                    "unknown SLO key {other:?}; use p50, p90, p95, p99, p999 or errors"
                ));
            }
        }
    }
    Ok(slo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_and_nonsense_is_refused() {
        assert_eq!(parse_count("10k"), Ok(10_000));
        assert_eq!(parse_count("1.5M"), Ok(1_500_000));
        assert!(parse_count("0").is_err() && parse_count("ten").is_err());
        assert_eq!(parse_rate("2k/s"), Ok(2000.0));
        assert!(parse_rate("0").is_err());
        assert_eq!(parse_bandwidth("3Mbps"), Ok(3e6));
        assert_eq!(parse_bandwidth("375KB/s"), Ok(3e6));
        assert!(parse_bandwidth("3 furlongs").is_err());
        assert_eq!(parse_share("0.1%"), Ok(0.001));
        let s = parse_server("cpus=4,memory=4GiB,bandwidth=3Mbps,os=1GiB").unwrap();
        assert_eq!(
            (s.cpus, s.memory_bytes, s.bandwidth_bps, s.os_bytes),
            (4.0, 4 << 30, 3e6, 1 << 30)
        );
        assert!(parse_server("gpus=1").unwrap_err().contains("gpus"));
        let slo = parse_slo("p99=50ms,errors=1%").unwrap();
        assert_eq!(
            (slo.percentile, slo.latency, slo.errors),
            (99.0, Duration::from_millis(50), 0.01)
        );
        assert!(parse_slo("p42=1s").is_err());
    }
}
