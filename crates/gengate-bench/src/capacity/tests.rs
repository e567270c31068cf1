//! The model's arithmetic, the evaluation of a planned server, and the
//! reports written from it.

use super::model::*;
use super::*;
use crate::units::ServerSpec;

#[test]
fn the_analysis_numbers_come_out_of_the_model() {
    // "bandwidth caps us at 187 req/s": 3 Mbps, 2 KB responses.
    let rps = link_rps(3e6, 2000.0);
    assert!((rps - 187.5).abs() < 1e-9, "{rps}");
    // A 4-slot account at 4 s per task finishes 60 tasks a minute.
    assert_eq!(provider_tasks_per_min(4.0, 4.0), 60.0);
    // The 10th of 10 users creating at once on 4 slots waits two rounds.
    assert_eq!(queue_wait_s(10, 4, 4.0), 8.0);
    assert_eq!(time_to_result_s(10, 4, 4.0), 12.0);
    assert_eq!(queue_wait_s(4, 4, 4.0), 0.0);
    assert_eq!(queue_wait_s(5, 4, 4.0), 4.0);
    // 187.5 req/s carries 375 users making 0.5 req/s each.
    assert_eq!(users(rps, 0.5), 375.0);
    assert_eq!(memory_users(4096.0, 512.0, 512.0, 72.0, 3.0), 1000.0);
    assert_eq!(cpu_rps(4.0, 0.0001), 40_000.0);
    assert_eq!(
        slope(&[(10.0, 100.0), (20.0, 120.0), (40.0, 160.0)]),
        Some(2.0)
    );
    assert_eq!(slope(&[(1.0, 1.0)]), None);
}

fn measured() -> Measured {
    Measured {
        cpus: 1.0,
        per_user_rps: 0.5,
        per_user_creates_per_s: 1.0 / 60.0,
        bytes_per_response: 2000.0,
        cpu_s_per_request: Some(0.0001),
        idle_rss_bytes: Some(20 << 20),
        rss_per_user_bytes: Some(64.0 * 1024.0),
        rss_per_connection_bytes: None,
        rss_per_task_bytes: None,
        store_writes_per_s: 5000.0,
        store_bytes_per_task: None,
        providers: vec![ProviderMeasure {
            name: "sim".into(),
            concurrency: 4,
            latency_s: 4.0,
            used: true,
        }],
        slo_users: 2000,
        slo_capped: true,
    }
}

#[test]
fn the_binding_limit_is_the_smallest_and_upgrades_move_it() {
    let m = measured();
    let e = evaluate(&m, &ServerSpec::default(), 1.0, 1.0);
    // Provider: 60 tasks/min ÷ 1 task/min per user = 60 users.
    assert_eq!(e.binding_name(), "provider sim");
    assert!((e.users() - 60.0).abs() < 1e-9);
    let bw = e.limits.iter().find(|l| l.name == "bandwidth").unwrap();
    assert!((bw.users - 375.0).abs() < 1e-9);
    let a = answer(&m, &e, 100);
    assert!(!a.fits && a.exceeded == ["provider sim"]);
    assert_eq!(a.burst[0].1, 96.0); // (100-1)/4 = 24 rounds of 4 s
    let ups = upgrades(&m, &ServerSpec::default());
    let provider2 = ups.iter().find(|u| u.what.contains("provider")).unwrap();
    assert!((provider2.users - 120.0).abs() < 1e-9);
    let cores = ups.iter().find(|u| u.what.contains("cores")).unwrap();
    assert_eq!(cores.binding, "provider sim");
}

#[test]
fn the_reports_carry_the_answer_and_charts_without_external_assets() {
    let m = measured();
    let e = evaluate(&m, &ServerSpec::default(), 1.0, 1.0);
    let step = |users: usize, p95: f64| Step {
        users,
        rps: users as f64 * 0.5,
        latency_ms: crate::collect::Percentiles {
            p50: p95 / 2.0,
            p95,
            p99: p95 * 1.5,
            ..Default::default()
        },
        error_rate: 0.0,
        bytes_per_response: 2000.0,
        creates_per_s: 0.1,
        rss_bytes: Some(30 << 20),
        cpu_s: Some(0.5),
        duration_s: 10.0,
        requests: 100,
        time_to_result_s: None,
        meets_slo: p95 <= 200.0,
    };
    let ramp = Ramp {
        steps: vec![step(10, 5.0), step(20, 300.0)],
        best: 10,
        first_failing: Some(20),
        capped: false,
    };
    let r = Report {
        target: "http://127.0.0.1:8080".into(),
        server: (&ServerSpec::default()).into(),
        slo: "p95=200ms,errors=0.1%".into(),
        pinned_cpus: Some(1),
        scenario: "mixed".into(),
        users_behave: "test".into(),
        ramps: [("mixed".to_owned(), ramp)].into(),
        answer: answer(&m, &e, 100),
        upgrades: upgrades(&m, &ServerSpec::default()),
        measured: m,
        evaluation: e,
        notes: vec!["a note".into()],
    };
    let mut md = Vec::new();
    r.markdown(&mut md).unwrap();
    let md = String::from_utf8(md).unwrap();
    assert!(
        md.contains("## 100 users at once?")
            && md.contains("**No.**")
            && md.contains("provider sim"),
        "{md}"
    );
    let mut html = Vec::new();
    r.html(&mut html).unwrap();
    let html = String::from_utf8(html).unwrap();
    assert!(html.contains("<svg") && html.contains("<polyline") && html.contains("<table>"));
    assert!(
        !html.contains("src=") && !html.contains("href="),
        "self-contained"
    );
    let mut json = Vec::new();
    r.json(&mut json).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["answer"]["fits"], false);
    assert_eq!(v["ramps"]["mixed"]["best"], 10);
}
