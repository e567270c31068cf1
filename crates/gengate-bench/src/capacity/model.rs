//! The capacity model: arithmetic on measured numbers, nothing else.

/// Responses per second a link carries: bits per second ÷ 8 ÷ bytes per
/// response (downstream; requests are small and go the other way).
pub fn link_rps(bandwidth_bps: f64, bytes_per_response: f64) -> f64 {
    if bytes_per_response <= 0.0 {
        return f64::INFINITY;
    }
    bandwidth_bps / 8.0 / bytes_per_response
}

/// Tasks per minute a provider account finishes: slots ÷ seconds per task.
pub fn provider_tasks_per_min(concurrency: f64, latency_s: f64) -> f64 {
    if latency_s <= 0.0 {
        return f64::INFINITY;
    }
    concurrency / latency_s * 60.0
}

/// How long the `nth` of users who all create a task at the same moment
/// waits in the queue before a provider slot is free for it: full rounds
/// of `concurrency` tasks ahead of it, each taking `latency_s`.
pub fn queue_wait_s(nth: usize, concurrency: usize, latency_s: f64) -> f64 {
    if nth == 0 || concurrency == 0 {
        return 0.0;
    }
    ((nth - 1) / concurrency) as f64 * latency_s
}

/// The `nth` user's time to result: the queue, then the provider.
pub fn time_to_result_s(nth: usize, concurrency: usize, latency_s: f64) -> f64 {
    queue_wait_s(nth, concurrency, latency_s) + latency_s
}

/// Users a resource carries when each user needs `per_user` of what it
/// delivers `capacity` of (per second).
pub fn users(capacity: f64, per_user: f64) -> f64 {
    if per_user <= 0.0 {
        return f64::INFINITY;
    }
    capacity / per_user
}

/// Users that fit in memory: what is left after the OS, the database and
/// the server's own baseline, divided by each user's share.
pub fn memory_users(memory: f64, os: f64, db: f64, base: f64, per_user: f64) -> f64 {
    users((memory - os - db - base).max(0.0), per_user)
}

/// Requests per second `cpus` cores serve when one request costs
/// `cpu_s_per_request` seconds of CPU.
pub fn cpu_rps(cpus: f64, cpu_s_per_request: f64) -> f64 {
    users(cpus, cpu_s_per_request)
}

/// Least-squares slope of y over x (`None` with fewer than two distinct x).
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    Some(sxy / sxx)
}
