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

/// The p50, p90, min and max of `samples` and the samples themselves, in seconds, as the
/// fields of a figure's JSON; `None` if there are none.
pub fn summary(samples: &[Duration]) -> Option<serde_json::Map<String, serde_json::Value>> {
    let seconds = |q| quantile(samples, q).map(|d| d.as_secs_f64());
    let mut fields = serde_json::Map::new();
    fields.insert("p50_s".into(), seconds(0.5)?.into());
    fields.insert("p90_s".into(), seconds(0.9).into());
    fields.insert("min_s".into(), seconds(0.0).into());
    fields.insert("max_s".into(), seconds(1.0).into());
    let all: Vec<f64> = samples.iter().map(Duration::as_secs_f64).collect();
    fields.insert("samples_s".into(), all.into());
    Some(fields)
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

    #[test]
    fn a_summary_has_the_quantiles_and_every_sample() {
        let fields = summary(&ms(&[40, 10, 30, 20])).unwrap();
        assert_eq!(fields["p50_s"], 0.02);
        assert_eq!(fields["max_s"], 0.04);
        assert_eq!(fields["samples_s"].as_array().map(Vec::len), Some(4));
        assert!(summary(&[]).is_none());
    }
}
