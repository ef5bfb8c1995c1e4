//! A histogram that takes many observations of one value at once, without a lock.
//!
//! The broadcast latency is observed for every frame written to every terminal: flat out with
//! 50 terminals that is several hundred thousand observations a second, and
//! `prometheus_client`'s histogram takes a mutex for each (a profile put it, with the clock
//! read per frame, at about 4 % of the hub's CPU). A terminal's writer instead counts the
//! events of one commit that it wrote in one flush, reads the clock once, and adds them here
//! with one atomic add per bucket touched. The exposition is the same histogram.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Cheap to clone: clones share the counts.
#[derive(Clone, Debug)]
pub struct BatchHistogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Upper bounds, ascending; observations above the last go to the implicit `+Inf`.
    bounds: Vec<f64>,
    /// One count per bound, plus `+Inf` last (not cumulative).
    counts: Vec<AtomicU64>,
    /// Sum of the observations, in nanoseconds (u64 holds 584 years of them).
    sum_nanos: AtomicU64,
}

impl BatchHistogram {
    /// `bounds` in seconds, ascending.
    pub fn new(bounds: impl IntoIterator<Item = f64>) -> BatchHistogram {
        let bounds: Vec<f64> = bounds.into_iter().collect();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        BatchHistogram {
            inner: Arc::new(Inner {
                bounds,
                counts,
                sum_nanos: AtomicU64::new(0),
            }),
        }
    }

    /// Records `n` observations of `d`.
    pub fn observe_n(&self, d: std::time::Duration, n: u64) {
        if n == 0 {
            return;
        }
        let secs = d.as_secs_f64();
        let i = self
            .inner
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.inner.bounds.len());
        self.inner.counts[i].fetch_add(n, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.inner
            .sum_nanos
            .fetch_add(nanos.saturating_mul(n), Ordering::Relaxed);
    }

    /// Records one observation of `d`.
    pub fn observe(&self, d: std::time::Duration) {
        self.observe_n(d, 1);
    }
}

impl TypedMetric for BatchHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for BatchHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let counts: Vec<u64> = self
            .inner
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let buckets: Vec<(f64, u64)> = self
            .inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(counts.iter().copied())
            .collect();
        let count = counts.iter().sum();
        // Exact below 2^53 ns (104 days of summed latency); beyond, the last digits round.
        #[allow(clippy::cast_precision_loss)]
        let sum = self.inner.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;
    use std::time::Duration;

    fn render(h: &BatchHistogram) -> String {
        let mut r = Registry::default();
        r.register("lat_seconds", "test", h.clone());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).expect("encode");
        out
    }

    #[test]
    fn batches_land_in_their_bucket_and_the_exposition_is_cumulative() {
        let h = BatchHistogram::new([0.001, 0.01]);
        h.observe_n(Duration::from_micros(500), 3);
        h.observe(Duration::from_millis(5));
        h.observe_n(Duration::from_secs(2), 2);
        let text = render(&h);
        for line in [
            "lat_seconds_bucket{le=\"0.001\"} 3",
            "lat_seconds_bucket{le=\"0.01\"} 4",
            "lat_seconds_bucket{le=\"+Inf\"} 6",
            "lat_seconds_count 6",
            "lat_seconds_sum 4.0065",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
