//! The whole capacity measurement: find or start the server, ramp each
//! scenario, probe, work out the per-user numbers the model needs, and
//! assemble the report.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};

use super::evaluation::{Measured, ProviderMeasure, answer, evaluate, upgrades};
use super::model;
use super::options::CapacityOptions;
use super::probe::probe_connections;
use super::process::{clock_ticks, rss_bytes};
use super::ramp::ramp;
use super::report::Report;
use super::spawn::{cpu_list, pin_pid, spawn_server};
use super::step::{Step, Stepper};
use crate::report::thousands;
use crate::scenario::{Scenario, Setup, Target};
use crate::{Load, Plan, RunSpec, measure};

/// Runs the whole capacity measurement and builds the report. Progress goes
/// to stderr.
///
/// # Errors
/// When the server cannot be started, pinned or prepared, or a step fails.
pub fn run(opts: &CapacityOptions) -> anyhow::Result<Report> {
    let mut notes = Vec::new();
    let ncpu = crate::default_threads();
    if let Some(n) = opts.pin_cpus
        && n > ncpu
    {
        bail!("--pin-cpus {n}: this machine has {ncpu} cores");
    }
    let spawned = match &opts.spawn {
        Some(o) => Some(spawn_server(o, opts.pin_cpus, ncpu)?),
        None => None,
    };
    let url = match (&spawned, &opts.target) {
        (Some(s), _) => s.url.clone(),
        (None, Some(t)) => t.clone(),
        (None, None) => bail!("give --target URL, or --spawn to start a gengate to measure"),
    };
    let target = Target::parse(&url)?;
    let pid = spawned.as_ref().map(|s| s.child.id()).or(opts.server_pid);
    let pinned = match (opts.pin_cpus, pid) {
        (Some(n), Some(pid)) => {
            if spawned.is_none() {
                pin_pid(pid, &cpu_list(0, n))?;
            }
            if n < ncpu {
                // The load generator takes the other cores, so it does not
                // compete with the server it measures.
                pin_pid(std::process::id(), &cpu_list(n, ncpu))?;
            } else {
                notes.push("the load generator shared the server's cores".into());
            }
            Some(n)
        }
        (Some(_), None) => {
            bail!("--pin-cpus needs the server's pid: use --spawn, or --server-pid PID")
        }
        (None, _) => None,
    };
    let measured_cpus = pinned.map_or(ncpu as f64, |n| n as f64);
    let load_threads = opts
        .threads
        .unwrap_or_else(|| pinned.map_or(ncpu, |n| ncpu.saturating_sub(n).max(1)));
    if pid.is_none() {
        notes.push(
            "no server pid (--spawn or --server-pid): CPU and memory were not measured".into(),
        );
    }
    let admin_key = opts
        .admin_key
        .clone()
        .or_else(|| spawned.as_ref().and_then(|s| s.admin_key.clone()))
        .or_else(|| crate::scenario::bearer_in(&opts.headers));
    let mut setup = Setup::new(&target, admin_key.clone(), &opts.user.model);
    if !crate::scenario::block_on(async { Ok(setup.is_gengate().await) })? {
        bail!("{url} does not answer like a gengate (GET /healthz and /v1/models)");
    }
    if admin_key.is_none() {
        bail!("capacity makes users through the admin API: give --admin-key (or use --spawn)");
    }
    let ticks = clock_ticks();
    // Let the server settle before its memory at rest is read.
    std::thread::sleep(Duration::from_millis(500));
    let idle_rss = pid.and_then(rss_bytes);
    // Before the ramp: afterwards the allocator would hand the probe memory
    // the ramp's connections freed, and the growth would read as nothing.
    let rss_per_connection = match pid {
        Some(pid) if opts.probes => probe_connections(&target, pid, 1000).ok(),
        _ => None,
    };
    let stepper = Stepper {
        opts,
        target: &target,
        load_threads,
        pid,
        ticks,
    };
    let mut ramps = BTreeMap::new();
    for &scenario in &opts.scenarios {
        eprintln!(
            "ramping {scenario}: steps of {:?} from {} users, SLO {}",
            opts.step, opts.start_users, opts.slo_text
        );
        let r = ramp(opts.start_users, opts.max_users, opts.tolerance, |users| {
            stepper.run(&mut setup, scenario, users)
        })?;
        ramps.insert(scenario.name().to_owned(), r);
    }
    let main = ramps
        .get("mixed")
        .or_else(|| ramps.values().next())
        .context("no scenario ramped")?
        .clone();

    // Per-user rates from the steps that met the SLO (unsaturated).
    let good: Vec<&Step> = main.steps.iter().filter(|s| s.meets_slo).collect();
    let basis: Vec<&Step> = if good.is_empty() {
        main.steps.iter().collect()
    } else {
        good
    };
    let per_user_rps =
        basis.iter().map(|s| s.rps / s.users as f64).sum::<f64>() / basis.len() as f64;
    let per_user_creates = basis
        .iter()
        .map(|s| s.creates_per_s / s.users as f64)
        .sum::<f64>()
        / basis.len() as f64;
    let biggest = basis.iter().max_by_key(|s| s.users).copied();
    let bytes_per_response = biggest.map_or(0.0, |s| s.bytes_per_response);
    let (cpu_total, req_total) = main
        .steps
        .iter()
        .filter_map(|s| s.cpu_s.map(|c| (c, s.requests)))
        .fold((0.0, 0u64), |a, (c, r)| (a.0 + c, a.1 + r));
    let cpu_s_per_request =
        (req_total > 0 && cpu_total > 0.0).then(|| cpu_total / req_total as f64);
    let rss_points: Vec<(f64, f64)> = main
        .steps
        .iter()
        .filter_map(|s| s.rss_bytes.map(|r| (s.users as f64, r as f64)))
        .collect();
    let rss_per_user = model::slope(&rss_points).map(|s| s.max(0.0));
    let mut store_writes = main
        .steps
        .iter()
        .map(|s| s.creates_per_s)
        .fold(0.0, f64::max);

    // The providers: their limits, and the latency they showed.
    let stats = crate::scenario::block_on(setup.admin_stats())?;
    let models = crate::scenario::block_on(async { Ok(setup.models().await) })?;
    let used_provider = models
        .iter()
        .find(|(m, _)| *m == opts.user.model)
        .map(|(_, p)| p.clone());
    // When the target has observed no latency yet, the bench's own median
    // time to result at the lightest step (the least queueing) stands in.
    let ttr_median = main
        .steps
        .iter()
        .filter(|s| s.time_to_result_s.is_some())
        .min_by_key(|s| s.users)
        .and_then(|s| s.time_to_result_s);
    let providers: Vec<ProviderMeasure> = stats["providers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| {
                    let name = p["provider"].as_str()?.to_owned();
                    Some(ProviderMeasure {
                        used: used_provider.as_deref() == Some(name.as_str()),
                        concurrency: p["concurrency_limit"].as_u64()? as usize,
                        latency_s: p["latency_seconds"].as_f64().or(ttr_median)?,
                        name,
                    })
                })
                .collect()
        })
        .unwrap_or_default();

    let mut rss_per_task = None;
    let mut store_bytes_per_task = None;
    if opts.probes {
        eprintln!(
            "probing the store: durable creates for {:?}",
            opts.step.min(Duration::from_secs(5))
        );
        let before = pid.and_then(rss_bytes);
        let plan = Arc::new(Plan::new(
            Scenario::Create,
            target.clone(),
            opts.headers.clone(),
            Load::Closed {
                think: Duration::ZERO,
            },
            setup.users.iter().take(32).cloned().collect(),
            opts.user.clone(),
        )?);
        let spec = RunSpec {
            addrs: vec![target.addr],
            connections: 32,
            threads: load_threads,
            load: Load::Closed {
                think: Duration::ZERO,
            },
            duration: Some(opts.step.min(Duration::from_secs(5))),
            requests: None,
            timeout: opts.timeout,
            progress: false,
        };
        let s = measure(&spec, &plan, &target)?;
        let accepted = s.status_counts.get("202").copied().unwrap_or(0);
        store_writes = store_writes.max(accepted as f64 / s.duration_s);
        eprintln!("  {} creates/s", thousands(accepted as f64 / s.duration_s));
        std::thread::sleep(Duration::from_millis(500));
        if let (Some(b), Some(a)) = (before, pid.and_then(rss_bytes))
            && accepted > 0
        {
            rss_per_task = Some((a as f64 - b as f64).max(0.0) / accepted as f64);
        }
        if let Some(sp) = &spawned {
            let db: u64 = ["gengate.db", "gengate.db-wal"]
                .iter()
                .filter_map(|f| std::fs::metadata(sp.dir.join("data").join(f)).ok())
                .map(|m| m.len())
                .sum();
            let total: u64 = crate::scenario::block_on(setup.admin_stats())?["tasks"]
                .as_array()
                .map(|a| a.iter().filter_map(|c| c["count"].as_u64()).sum())
                .unwrap_or(0);
            if total > 0 {
                store_bytes_per_task = Some(db as f64 / total as f64);
            }
        }
        notes.push(format!(
            "the store probe's {accepted} creates stayed queued on the throwaway server; its memory and disk per task come from them"
        ));
    } else {
        notes.push("the store's write rate is the highest the ramp reached: the create burst that finds the store's own limit runs only on a server capacity starts itself (--spawn), never on a target whose tasks would reach real providers".into());
    }

    let measured = Measured {
        cpus: measured_cpus,
        per_user_rps,
        per_user_creates_per_s: per_user_creates,
        bytes_per_response,
        cpu_s_per_request,
        idle_rss_bytes: idle_rss,
        rss_per_user_bytes: rss_per_user,
        rss_per_connection_bytes: rss_per_connection,
        rss_per_task_bytes: rss_per_task,
        store_writes_per_s: store_writes,
        store_bytes_per_task,
        providers,
        slo_users: main.best,
        slo_capped: main.capped,
    };
    notes.push("CPU scales with cores in the model (linear); the measured CPU time per request includes everything the server did meanwhile (dispatcher, provider polling)".into());
    let evaluation = evaluate(&measured, &opts.server, 1.0, 1.0);
    let answer = answer(&measured, &evaluation, opts.users);
    let upgrades = upgrades(&measured, &opts.server);
    let u = &opts.user;
    Ok(Report {
        target: url,
        server: (&opts.server).into(),
        slo: opts.slo_text.clone(),
        pinned_cpus: pinned,
        scenario: opts
            .scenarios
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", "),
        users_behave: format!(
            "each user: mix {}, think {:?} on average, follows created tasks {}",
            u.mix,
            u.think,
            match u.follow {
                crate::scenario::Follow::Poll => format!("by polling every {:?}", u.poll_interval),
                crate::scenario::Follow::Wait => "by long polls".into(),
                crate::scenario::Follow::Sse => "by event stream".into(),
            }
        ),
        ramps,
        measured,
        evaluation,
        answer,
        upgrades,
        notes,
    })
}
