//! Latency samples per operation and their percentiles (nearest-rank), as a printed table
//! and as JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// The nearest-rank percentile `p` (0 < p <= 100) of `sorted` (ascending): the smallest
/// sample such that at least p % of the samples are <= it. `None` for no samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() || !(p > 0.0 && p <= 100.0) {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// One operation's summary, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Summary {
    /// `None` when there are no samples.
    pub fn of(samples: &[Duration]) -> Option<Summary> {
        let mut sorted = samples.to_vec();
        sorted.sort();
        let total: Duration = sorted.iter().sum();
        Some(Summary {
            count: sorted.len(),
            p50_ms: ms(percentile(&sorted, 50.0)?),
            p90_ms: ms(percentile(&sorted, 90.0)?),
            p99_ms: ms(percentile(&sorted, 99.0)?),
            max_ms: ms(*sorted.last()?),
            mean_ms: ms(total) / sorted.len() as f64,
        })
    }
}

/// Samples by operation name, in the order operations were first recorded; the whole cycle
/// is recorded under [`CYCLE`].
#[derive(Debug, Default, Clone)]
pub struct Samples {
    order: Vec<String>,
    by_op: BTreeMap<String, Vec<Duration>>,
}

/// The name the per-cycle (or per-iteration) total is recorded under.
pub const CYCLE: &str = "cycle";

impl Samples {
    pub fn record(&mut self, op: &str, took: Duration) {
        if !self.by_op.contains_key(op) {
            self.order.push(op.to_string());
        }
        self.by_op.entry(op.to_string()).or_default().push(took);
    }

    pub fn merge(&mut self, other: Samples) {
        for op in other.order {
            if let Some(samples) = other.by_op.get(&op) {
                for s in samples {
                    self.record(&op, *s);
                }
            }
        }
    }

    /// (operation, summary) in first-recorded order, the cycle last.
    pub fn summaries(&self) -> Vec<(String, Summary)> {
        let mut ops: Vec<&String> = self.order.iter().filter(|o| *o != CYCLE).collect();
        if self.by_op.contains_key(CYCLE) {
            ops.push(&self.order[self.order.iter().position(|o| o == CYCLE).unwrap_or(0)]);
        }
        ops.into_iter()
            .filter_map(|op| {
                let summary = Summary::of(self.by_op.get(op)?)?;
                Some((op.clone(), summary))
            })
            .collect()
    }
}

/// What `--json` writes.
#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: String,
    pub target: String,
    pub n: usize,
    pub concurrency: usize,
    pub pods: usize,
    pub wall_ms: f64,
    pub ops: BTreeMap<String, Summary>,
    pub cycle: Option<Summary>,
}

impl Report {
    pub fn new(
        mode: &str,
        target: &str,
        (n, concurrency, pods): (usize, usize, usize),
        wall: Duration,
        samples: &Samples,
    ) -> Report {
        let mut ops = BTreeMap::new();
        let mut cycle = None;
        for (op, summary) in samples.summaries() {
            if op == CYCLE {
                cycle = Some(summary);
            } else {
                ops.insert(op, summary);
            }
        }
        Report {
            mode: mode.to_string(),
            target: target.to_string(),
            n,
            concurrency,
            pods,
            wall_ms: ms(wall),
            ops,
            cycle,
        }
    }
}

/// The human table: one line per operation, the cycle last.
pub fn table(samples: &Samples) -> String {
    let mut out = format!(
        "{:<22} {:>6} {:>10} {:>10} {:>10} {:>10}\n",
        "operation", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for (op, s) in samples.summaries() {
        out.push_str(&format!(
            "{:<22} {:>6} {:>10.2} {:>10.2} {:>10.2} {:>10.2}\n",
            op, s.count, s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|m| Duration::from_millis(*m)).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let ten = millis(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        let cases: &[(f64, Option<u64>)] = &[
            (50.0, Some(5)),
            (90.0, Some(9)),
            (99.0, Some(10)),
            (100.0, Some(10)),
            (10.0, Some(1)),
            (0.1, Some(1)),
            (0.0, None),
            (101.0, None),
        ];
        for (p, want) in cases {
            assert_eq!(
                percentile(&ten, *p),
                want.map(Duration::from_millis),
                "p{p}"
            );
        }
        assert_eq!(percentile(&[], 50.0), None);
        let one = millis(&[7]);
        for p in [1.0, 50.0, 99.0, 100.0] {
            assert_eq!(percentile(&one, p), Some(Duration::from_millis(7)));
        }
        // 100 samples: p99 is the 99th, not the maximum.
        let hundred: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&hundred, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&hundred, 50.0), Some(Duration::from_millis(50)));
    }

    #[test]
    fn summary_sorts_its_samples() {
        let s = Summary::of(&millis(&[30, 10, 20])).expect("summary");
        assert_eq!(s.count, 3);
        assert_eq!((s.p50_ms, s.p90_ms, s.max_ms), (20.0, 30.0, 30.0));
        assert!((s.mean_ms - 20.0).abs() < 1e-9);
        assert_eq!(Summary::of(&[]), None);
    }

    #[test]
    fn samples_keep_order_with_cycle_last() {
        let mut a = Samples::default();
        a.record("RunPodSandbox", Duration::from_millis(5));
        a.record(CYCLE, Duration::from_millis(9));
        a.record("CreateContainer", Duration::from_millis(2));
        let mut b = Samples::default();
        b.record("CreateContainer", Duration::from_millis(4));
        a.merge(b);
        let names: Vec<String> = a.summaries().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["RunPodSandbox", "CreateContainer", CYCLE]);
        let report = Report::new("pod-cycle", "x", (1, 1, 0), Duration::ZERO, &a);
        assert_eq!(report.ops["CreateContainer"].count, 2);
        assert_eq!(report.cycle.as_ref().map(|c| c.count), Some(1));
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["ops"]["RunPodSandbox"]["p50_ms"], 5.0);
        assert!(table(&a)
            .lines()
            .last()
            .is_some_and(|l| l.starts_with(CYCLE)));
    }
}
