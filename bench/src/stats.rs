//! Order statistics of a sample of durations.

use std::time::Duration;

/// The `q`-quantile (0..=1) of `samples` by the nearest-rank method; `None` if empty.
pub fn quantile(samples: &[Duration], q: f64) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let last = sorted.len().checked_sub(1)?;
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.saturating_sub(1).min(last)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|m| Duration::from_millis(*m)).collect()
    }

    #[test]
    fn nearest_rank_quantiles() {
        let s = ms(&[40, 10, 30, 20]);
        assert_eq!(quantile(&s, 0.5), Some(Duration::from_millis(20)));
        assert_eq!(quantile(&s, 0.9), Some(Duration::from_millis(40)));
        assert_eq!(quantile(&s, 0.0), Some(Duration::from_millis(10)));
        assert_eq!(quantile(&ms(&[7]), 0.5), Some(Duration::from_millis(7)));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
