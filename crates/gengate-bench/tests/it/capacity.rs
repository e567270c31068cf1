//! The capacity search against a server with a known capacity.

use std::sync::Arc;
use std::time::Duration;

use gengate_bench::capacity::{Step, meets, ramp};
use gengate_bench::scenario::UserOptions;
use gengate_bench::units::Slo;
use gengate_bench::{Load, Plan, RunSpec, Scenario, Target, measure};

use crate::servers;

#[test]
fn the_ramp_finds_the_users_a_fixed_capacity_server_carries() {
    // The server answers 200 requests per second, no more; each user waits
    // 50 ms between an answer and its next request. Once users arrive
    // faster than the server answers, every answer takes
    // users / 200 − 0.05 s, so a p95 of 25 ms holds up to
    // 200 × (0.050 + 0.025) = 15 users.
    let server = servers::fixed_capacity(200.0);
    let target = Target::parse(&server.url()).unwrap();
    let think = Duration::from_millis(50);
    let slo = Slo {
        percentile: 95.0,
        latency: Duration::from_millis(25),
        errors: 0.001,
    };
    let load = Load::Closed { think };
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
    let r = ramp(2, 64, 0.1, |users| {
        let spec = RunSpec {
            addrs: vec![target.addr],
            connections: users,
            threads: 1,
            load,
            duration: Some(Duration::from_millis(700)),
            requests: None,
            timeout: Duration::from_secs(5),
            progress: false,
        };
        let s = measure(&spec, &plan, &target)?;
        Ok(Step {
            users,
            rps: s.rps,
            latency_ms: s.latency_ms,
            error_rate: s.error_rate(),
            bytes_per_response: s.bytes_per_response,
            creates_per_s: 0.0,
            rss_bytes: None,
            cpu_s: None,
            duration_s: s.duration_s,
            requests: s.requests,
            time_to_result_s: None,
            meets_slo: meets(&slo, &s),
        })
    })
    .unwrap();
    let found: Vec<_> = r
        .steps
        .iter()
        .map(|s| (s.users, s.latency_ms.p95, s.meets_slo))
        .collect();
    // Tolerance: ±20 % of the 15 users the arithmetic gives.
    assert!((12..=18).contains(&r.best), "found {} in {found:?}", r.best);
    assert!(!r.capped);
    assert!(r.first_failing.unwrap() > r.best);
    // Below capacity the server is not the bottleneck: ~users / (50 ms + 5 ms).
    let four = r.steps.iter().find(|s| s.users == 4).unwrap();
    assert!((55.0..80.0).contains(&four.rps), "{found:?} {}", four.rps);
}
