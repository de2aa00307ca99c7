//! What the benchmarks measure of processes: resident memory over a run, and CPU time by part
//! of the exchange (broker, database, hub, adapters) so that a rate can be read against what
//! each part spent on it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Resident set size of a process, in MiB (0 when it is gone).
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// RSS of some processes sampled every `every` until stopped.
pub struct RssSampler {
    samples: Arc<Mutex<BTreeMap<String, Vec<f64>>>>,
    task: tokio::task::JoinHandle<()>,
}

/// What an [`RssSampler`] saw of one process.
#[derive(Debug, Clone, Copy)]
pub struct RssSummary {
    /// Mean of the first quarter of the samples, MiB.
    pub first_quarter: f64,
    /// Mean of the last quarter of the samples, MiB.
    pub last_quarter: f64,
    pub max: f64,
    pub samples: usize,
}

impl std::fmt::Display for RssSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "first quarter {:.0} MiB, last quarter {:.0} MiB, max {:.0} MiB ({} samples)",
            self.first_quarter, self.last_quarter, self.max, self.samples
        )
    }
}

impl RssSampler {
    pub fn start(pids: &[(String, u32)], every: Duration) -> RssSampler {
        let pids = pids.to_vec();
        let samples = Arc::new(Mutex::new(BTreeMap::new()));
        let keep = samples.clone();
        let task = tokio::spawn(async move {
            loop {
                for (name, pid) in &pids {
                    let rss = rss_mib(*pid);
                    keep.lock().expect("lock").entry(name.clone()).or_insert_with(Vec::new).push(rss);
                }
                tokio::time::sleep(every).await;
            }
        });
        RssSampler { samples, task }
    }

    /// Stops sampling; what each process showed, by name.
    pub fn stop(self) -> BTreeMap<String, RssSummary> {
        self.task.abort();
        let samples = self.samples.lock().expect("lock");
        let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len().max(1) as f64;
        samples
            .iter()
            .map(|(name, rss)| {
                let quarter = rss.len().div_ceil(4).max(1).min(rss.len());
                let summary = RssSummary {
                    first_quarter: mean(&rss[..quarter]),
                    last_quarter: mean(&rss[rss.len() - quarter..]),
                    max: rss.iter().copied().fold(0.0, f64::max),
                    samples: rss.len(),
                };
                (name.clone(), summary)
            })
            .collect()
    }
}

/// The part of the exchange a process belongs to, by its command name; the simulated
/// provincial systems (`adapter simulate`, by its arguments) apart from the adapters.
fn part(comm: &str, proc_dir: &std::path::Path) -> &'static str {
    match comm {
        "beam.smp" | "erl_child_setup" | "inet_gethost" | "epmd" => "broker",
        "postgres" => "postgres",
        "hub" => "hub",
        "adapter" => {
            let args = std::fs::read(proc_dir.join("cmdline")).unwrap_or_default();
            if args.split(|b| *b == 0).nth(1) == Some(b"simulate".as_slice()) { "provinces" } else { "adapters" }
        }
        "demo" => "simulator",
        _ if comm.starts_with("throughput") || comm.starts_with("cases") => "bench",
        _ => "other",
    }
}

/// The kernel counts in USER_HZ, 100 per second on Linux.
const HZ: f64 = 100.0;

/// CPU seconds (user + system) every running process has spent, summed by part, and under
/// `machine` what the kernel counts busy on all cores (`/proc/stat`: every state but idle and
/// waiting for I/O), the check on the sum. A process that ended between two readings is missing
/// from the later one; the parts measured here live through a run (the hub's database
/// connections are pooled).
pub fn cpu_by_part() -> BTreeMap<&'static str, f64> {
    let mut out = BTreeMap::new();
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    if let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) {
        let ticks: Vec<f64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal (guest is inside user already).
        let busy: f64 = ticks.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, t)| t).sum();
        out.insert("machine", busy / HZ);
    }
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for entry in dir.flatten() {
        // Only the numbered entries are processes: `self` and `thread-self` are the reader
        // again, which counted the benchmark two or three times over.
        if !entry.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // The command name is in parentheses and may hold spaces; the fields follow the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let comm = &stat[open + 1..close];
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        *out.entry(part(comm, &entry.path())).or_insert(0.0) += (ticks(11) + ticks(12)) / HZ;
    }
    out
}

/// What `name` spent between two [`cpu_by_part`] readings.
fn spent(before: &BTreeMap<&'static str, f64>, after: &BTreeMap<&'static str, f64>, name: &str) -> f64 {
    after.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0)
}

/// CPU spent by part between two [`cpu_by_part`] readings, per message, as a printable line
/// (milliseconds per message, and the total against the wall time).
pub fn cpu_per_message(
    before: &BTreeMap<&'static str, f64>,
    after: &BTreeMap<&'static str, f64>,
    messages: usize,
    wall: Duration,
) -> String {
    let mut total = 0.0;
    let mut parts = Vec::new();
    for name in after.keys() {
        let used = spent(before, after, name);
        if used > 0.0 && *name != "other" && *name != "machine" {
            total += used;
            parts.push(format!("{name} {:.3}", used * 1e3 / messages as f64));
        }
    }
    format!(
        "CPU ms/message: {}; total {:.3} ms/message, {:.2} cores busy ({:.2} by the kernel's count of \
         the whole machine)",
        parts.join(", "),
        total * 1e3 / messages as f64,
        total / wall.as_secs_f64(),
        spent(before, after, "machine") / wall.as_secs_f64()
    )
}

/// A histogram series of the hub's: its sum, count and cumulative buckets (upper bound, count).
#[derive(Debug, Clone, Default)]
pub struct Series {
    sum: f64,
    count: f64,
    buckets: Vec<(f64, f64)>,
}

impl Series {
    /// This series over a run: what `after` holds beyond `before`.
    fn since(&self, before: Option<&Series>) -> Series {
        let Some(b) = before else { return self.clone() };
        let buckets = self
            .buckets
            .iter()
            .map(|(le, n)| (*le, n - b.buckets.iter().find(|(l, _)| l == le).map_or(0.0, |(_, m)| *m)))
            .collect();
        Series { sum: self.sum - b.sum, count: self.count - b.count, buckets }
    }

    /// The upper bound of the bucket holding the `p` quantile.
    fn quantile(&self, p: f64) -> f64 {
        self.buckets.iter().find(|(_, n)| *n >= p * self.count).map_or(f64::INFINITY, |(le, _)| *le)
    }
}

/// The hub's stage histograms, by series (name and labels), from its `/metrics`.
pub async fn stage_totals(listen: std::net::SocketAddr) -> BTreeMap<String, Series> {
    let text = reqwest::get(format!("http://{listen}/metrics")).await.expect("metrics").text().await.expect("metrics");
    let stages = [
        "hub_consumer_wait_seconds",
        "hub_consumer_group_size",
        "hub_handler_seconds",
        "hub_relay_stage_seconds",
        "hub_relay_batch_rows",
        "hub_outbox_delay_seconds",
    ];
    let mut out: BTreeMap<String, Series> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Ok(value) = value.parse::<f64>() else { continue };
        let name = series.split('{').next().unwrap_or(series);
        let labels = series.strip_prefix(name).unwrap_or("");
        for stage in stages {
            let Some(part) = name.strip_prefix(stage) else { continue };
            // The bucket bound is a label of its own; the series is named without it.
            let mut le = None;
            let rest: Vec<&str> = labels
                .trim_matches(['{', '}'])
                .split(',')
                .filter(|l| !l.is_empty())
                .filter(|l| match l.strip_prefix("le=") {
                    Some(v) => {
                        le = v.trim_matches('"').parse::<f64>().ok().or(Some(f64::INFINITY));
                        false
                    }
                    None => true,
                })
                .collect();
            let key = if rest.is_empty() { stage.to_owned() } else { format!("{stage}{{{}}}", rest.join(",")) };
            let entry = out.entry(key).or_default();
            match (part, le) {
                ("_sum", _) => entry.sum = value,
                ("_count", _) => entry.count = value,
                ("_bucket", Some(le)) => entry.buckets.push((le, value)),
                _ => {}
            }
        }
    }
    out
}

/// Where the time goes: each stage the hub measures, over one run only (what `after` holds
/// beyond `before`; quantiles to the upper bound of their bucket); sizes as counts.
pub fn print_stages(before: &BTreeMap<String, Series>, after: &BTreeMap<String, Series>) {
    for (name, series) in after {
        let run = series.since(before.get(name));
        if run.count == 0.0 {
            continue;
        }
        let (scale, unit) = if name.contains("_seconds") { (1e3, " ms") } else { (1.0, "") };
        println!(
            "  {name}: mean {:.2}{unit}, p50 ≤ {}{unit}, p99 ≤ {}{unit}, over {:.0}",
            run.sum / run.count * scale,
            run.quantile(0.5) * scale,
            run.quantile(0.99) * scale,
            run.count
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parts together never spend more than the whole machine: the reading process, busy
    /// meanwhile, is counted once (it was counted three times through `/proc/self` and
    /// `/proc/thread-self`). A process that started meanwhile spent all its time meanwhile, and
    /// one that ended is missing, so the sum can only fall short; the margin is the rounding to
    /// ticks and the kernel sampling the machine's count where it measures each process's.
    #[test]
    fn the_parts_never_spend_more_than_the_machine() {
        let before = cpu_by_part();
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(1500) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let after = cpu_by_part();
        let machine = spent(&before, &after, "machine");
        let parts: f64 = after.keys().filter(|k| **k != "machine").map(|k| spent(&before, &after, k)).sum();
        assert!(machine >= 1.0, "the busy loop shows in the machine's count: {machine:.2} s");
        assert!(parts <= machine * 1.1 + 0.3, "parts {parts:.2} s against the machine's {machine:.2} s");
    }
}
