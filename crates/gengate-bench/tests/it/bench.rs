//! The histogram, the open loop's coordinated-omission correction, bytes on
//! the wire and the JSON report, against servers with known behaviour.

use std::sync::Arc;
use std::time::Duration;

use gengate_bench::scenario::UserOptions;
use gengate_bench::{Load, Plan, RunSpec, Scenario, Summary, Target, measure, report};

use crate::servers;

pub(crate) fn run(url: &str, connections: usize, load: Load, duration: Duration) -> Summary {
    let target = Target::parse(url).unwrap();
    let plan = Arc::new(
        Plan::new(
            Scenario::Raw,
            target.clone(),
            Vec::new(),
            load,
            Vec::new(),
            UserOptions::default(),
        )
        .unwrap(),
    );
    let spec = RunSpec {
        addrs: vec![target.addr],
        connections,
        threads: 2,
        load,
        duration: Some(duration),
        requests: None,
        timeout: Duration::from_secs(5),
        progress: false,
    };
    measure(&spec, &plan, &target).unwrap()
}

fn closed() -> Load {
    Load::Closed {
        think: Duration::ZERO,
    }
}

#[test]
fn percentiles_are_those_of_a_server_whose_latency_is_known() {
    // 9 answers in 10 take 10 ms, every 10th 50 ms.
    let server = servers::fixed_latency(10, 50, 10);
    let s = run(&server.url(), 8, closed(), Duration::from_millis(1500));
    let l = s.latency_ms;
    // tokio's timer adds up to about a millisecond to each sleep.
    assert!((10.0..13.0).contains(&l.p50), "p50 {l:?}");
    assert!((50.0..54.0).contains(&l.p95), "p95 {l:?}");
    assert!((50.0..54.0).contains(&l.p99), "p99 {l:?}");
    assert!((50.0..60.0).contains(&l.max), "max {l:?}");
    // 8 connections, each request ~14 ms on average: ~570 req/s.
    assert!((400.0..700.0).contains(&s.rps), "rps {}", s.rps);
    assert_eq!(s.status_counts["200"], s.requests);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.bytes_per_response, servers::wire_size() as f64);
}

#[test]
fn the_open_loop_reports_the_stall_the_closed_loop_hides() {
    // wrk2's demonstration: the server freezes for 1 s in the middle of a
    // 2 s run at 1000 req/s. About half of the requests were due during the
    // freeze; measured from when they were due, their latencies spread
    // evenly over 0..1 s, so p99 is close to 1 s and p90 close to 0.8 s.
    let server = servers::stalls_once(500, Duration::from_secs(1));
    let open = run(
        &server.url(),
        4,
        Load::Open { rate: 1000.0 },
        Duration::from_secs(2),
    );
    let l = open.latency_ms;
    assert!(
        (1900..=2001).contains(&open.requests),
        "requests {}",
        open.requests
    );
    assert!((900.0..1100.0).contains(&l.p99), "p99 {l:?}");
    assert!((700.0..950.0).contains(&l.p90), "p90 {l:?}");
    assert!((950.0..1200.0).contains(&l.max), "max {l:?}");
    drop(server);

    // The same stall seen by a closed loop: only the 4 requests in flight
    // wait; the thousands sent before and after hide it below p99.
    let server = servers::stalls_once(500, Duration::from_secs(1));
    let closed = run(&server.url(), 4, closed(), Duration::from_secs(2));
    assert!(closed.latency_ms.max >= 900.0, "{:?}", closed.latency_ms);
    assert!(closed.latency_ms.p99 < 50.0, "{:?}", closed.latency_ms);
}

#[test]
fn requests_bound_the_run_and_errors_are_counted_by_kind() {
    let server = servers::fixed_latency(0, 0, 1);
    let target = Target::parse(&server.url()).unwrap();
    let load = closed();
    let plan = Arc::new(
        Plan::new(
            Scenario::Raw,
            target.clone(),
            Vec::new(),
            load,
            Vec::new(),
            UserOptions::default(),
        )
        .unwrap(),
    );
    let spec = RunSpec {
        addrs: vec![target.addr],
        connections: 4,
        threads: 2,
        load,
        duration: None,
        requests: Some(1000),
        timeout: Duration::from_secs(5),
        progress: false,
    };
    let s = measure(&spec, &plan, &target).unwrap();
    assert_eq!(s.requests, 1000);
    drop(server);

    // Nobody listens any more: every attempt is a connect error.
    let s = run(&target.url, 2, closed(), Duration::from_millis(200));
    assert_eq!(s.requests, 0);
    assert!(s.errors["connect"] > 0, "{:?}", s.errors);
    assert_eq!(s.success_rate, 0.0);
}

#[test]
fn the_json_report_has_the_documented_fields() {
    let server = servers::fixed_latency(0, 0, 1);
    let s = run(&server.url(), 2, closed(), Duration::from_millis(300));
    let mut out = Vec::new();
    report::json(&s, &mut out).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    for key in [
        "requests",
        "duration_s",
        "rps",
        "bytes_per_response",
        "success_rate",
    ] {
        assert!(v[key].is_number(), "{key} in {v}");
    }
    for p in ["p50", "p90", "p95", "p99", "p999", "max"] {
        assert!(v["latency_ms"][p].is_number(), "latency_ms.{p} in {v}");
    }
    assert!(v["status_counts"]["200"].as_u64().unwrap() > 0);
    assert!(v["errors"].is_object());
    assert_eq!(
        (v["scenario"].as_str(), v["mode"].as_str()),
        (Some("raw"), Some("closed"))
    );

    let mut md = Vec::new();
    report::markdown(&s, &mut md).unwrap();
    assert!(String::from_utf8(md).unwrap().contains("| throughput |"));
    let mut html = Vec::new();
    report::html(&s, &mut html).unwrap();
    let html = String::from_utf8(html).unwrap();
    assert!(
        html.starts_with("<!doctype html>")
            && !html.contains("http-equiv")
            && !html.contains("<script src")
    );
}
