//! The policy's memory in status, bounded whatever the spec says: the latest readings (for the
//! load window, the queue's growth and the up window) and the demand history in fixed buckets
//! (for the forecast and the down window). The buckets change only when one opens or its maximum
//! moves, so a steady pool rewrites little of its status.

use crate::api::{DemandHistory, Recommendation, from_time, to_time};
use chrono::{DateTime, TimeDelta, Utc};

/// Most readings kept; faster readings are merged (their mean work, their lowest replicas).
pub const MAX_RECENT: usize = 64;

/// Buckets of demand history kept: two hours at the default 15 s interval.
pub const HISTORY_BUCKETS: usize = 480;

/// Shortest bucket; readings faster than this share a bucket's maximum.
pub const MIN_BUCKET_SECONDS: i64 = 15;

/// Seconds per history bucket: at least [`MIN_BUCKET_SECONDS`] and the interval, and long enough
/// for the history to cover `cover_seconds` (a scale-down window, when set).
pub fn bucket_seconds(interval_seconds: i32, cover_seconds: i64) -> i64 {
    let n = HISTORY_BUCKETS as i64;
    let cover = (cover_seconds.max(0) + n - 1) / n;
    MIN_BUCKET_SECONDS
        .max(i64::from(interval_seconds))
        .max(cover)
}

/// Drops readings older than `window` and merges the rest down to [`MAX_RECENT`].
pub fn prune_recent(recent: &mut Vec<Recommendation>, now: DateTime<Utc>, window: TimeDelta) {
    recent.retain(|r| now - from_time(&r.time) <= window);
    while recent.len() > MAX_RECENT {
        // Merge the adjacent pair holding the fewest readings (the oldest such pair), so merged
        // entries stay even in length and the newest readings stay whole longest.
        let i = (0..recent.len() - 1)
            .min_by_key(|&i| recent[i].readings.saturating_add(recent[i + 1].readings))
            .unwrap_or(0);
        let older = recent.remove(i);
        let newer = &mut recent[i];
        *newer = merge(&older, newer);
    }
}

/// Two consecutive entries as one: the later time and queue, the mean work, the lower replicas
/// (an up window must not scale up on a recommendation that was not there all along).
fn merge(older: &Recommendation, newer: &Recommendation) -> Recommendation {
    let (a, b) = (
        f64::from(older.readings.max(1)),
        f64::from(newer.readings.max(1)),
    );
    let work = match (older.work_replicas, newer.work_replicas) {
        (Some(x), Some(y)) => Some((x * a + y * b) / (a + b)),
        (x, y) => y.or(x),
    };
    Recommendation {
        time: newer.time.clone(),
        replicas: older.replicas.min(newer.replicas),
        work_replicas: work,
        requests_waiting: newer.requests_waiting,
        readings: older.readings.max(1).saturating_add(newer.readings.max(1)),
    }
}

/// Mean work of the readings less than `window` before `now`, this one's (`latest`) included,
/// weighted by the readings each entry holds. Readings are evenly spaced by the interval, so the
/// plain mean is the time-weighted one.
pub fn mean_work(
    recent: &[Recommendation],
    now: DateTime<Utc>,
    window: TimeDelta,
    latest: f64,
) -> f64 {
    let (sum, n) = recent
        .iter()
        .filter(|r| now - from_time(&r.time) < window)
        .filter_map(|r| Some((r.work_replicas?, f64::from(r.readings.max(1)))))
        .fold((latest, 1.0), |(sum, n), (w, k)| (sum + w * k, n + k));
    sum / n
}

/// Demand rounded up to hundredths: the stored peak never says a level was not needed when it was.
fn round_up(work: f64) -> f64 {
    (work * 100.0 - 1e-6).ceil().max(0.0) / 100.0
}

fn bucket_start(now: DateTime<Utc>, bucket_seconds: i64) -> DateTime<Utc> {
    let s = now.timestamp();
    DateTime::from_timestamp(s - s.rem_euclid(bucket_seconds), 0).unwrap_or(now)
}

/// Adds a reading to the history: its demand (`None` when the reading cannot say, for example
/// with pods missing) and the replicas recommended. Opens buckets up to `now` (empty ones where
/// no reading fell), keeps the latest [`HISTORY_BUCKETS`], and starts over when the bucket length
/// changed or the history is older than its whole span.
pub fn record(
    history: &mut Option<DemandHistory>,
    bucket_seconds: i64,
    now: DateTime<Utc>,
    demand: Option<f64>,
    replicas: i32,
) {
    let start = bucket_start(now, bucket_seconds);
    let peak = demand.filter(|d| d.is_finite()).map(round_up);
    let fresh = || DemandHistory {
        bucket_seconds: i32::try_from(bucket_seconds).unwrap_or(i32::MAX),
        newest: to_time(start),
        peak_work_replicas: vec![peak],
        max_replicas: vec![replicas],
    };
    let Some(h) = history.as_mut() else {
        *history = Some(fresh());
        return;
    };
    let newest = from_time(&h.newest);
    let behind = (start - newest).num_seconds() / bucket_seconds;
    let consistent = i64::from(h.bucket_seconds) == bucket_seconds
        && h.peak_work_replicas.len() == h.max_replicas.len()
        && !h.peak_work_replicas.is_empty();
    if !consistent || behind >= HISTORY_BUCKETS as i64 {
        *history = Some(fresh());
        return;
    }
    if behind <= 0 {
        // This bucket (or a clock that stepped back): its maximum moves only upwards.
        if let Some(last) = h.peak_work_replicas.last_mut() {
            *last = match (*last, peak) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
        if let Some(last) = h.max_replicas.last_mut() {
            *last = (*last).max(replicas);
        }
        return;
    }
    for _ in 1..behind {
        h.peak_work_replicas.push(None);
        h.max_replicas.push(0);
    }
    h.peak_work_replicas.push(peak);
    h.max_replicas.push(replicas);
    h.newest = to_time(start);
    let excess = h.peak_work_replicas.len().saturating_sub(HISTORY_BUCKETS);
    h.peak_work_replicas.drain(..excess);
    h.max_replicas.drain(..excess);
}

/// Highest replicas recommended in the buckets that overlap the `window` before `now`.
pub fn max_replicas_within(
    history: Option<&DemandHistory>,
    now: DateTime<Utc>,
    window: TimeDelta,
) -> Option<i32> {
    let h = history?;
    let b = i64::from(h.bucket_seconds.max(1));
    let newest = from_time(&h.newest);
    let n = h.max_replicas.len() as i64;
    h.max_replicas
        .iter()
        .enumerate()
        .filter(|&(i, _)| {
            let end = newest + TimeDelta::seconds((i as i64 - (n - 1)) * b + b);
            now - end < window
        })
        .map(|(_, r)| *r)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_010 + s, 0).unwrap()
    }

    fn reading(s: i64, work: f64, replicas: i32) -> Recommendation {
        Recommendation {
            time: to_time(t(s)),
            replicas,
            work_replicas: Some(work),
            requests_waiting: None,
            readings: 1,
        }
    }

    #[test]
    fn readings_beyond_the_bound_merge_into_means_and_lows() {
        // One reading a second for 100 s, work = the second: a window of 3600 s keeps them all.
        let mut recent: Vec<_> = (0..100)
            .map(|s| reading(s, s as f64, 100 - s as i32))
            .collect();
        prune_recent(&mut recent, t(100), TimeDelta::seconds(3600));
        assert_eq!(recent.len(), MAX_RECENT);
        let readings: u32 = recent.iter().map(|r| r.readings).sum();
        assert_eq!(readings, 100);
        // The weighted mean is the mean of 0..100 and this reading's 100: 5050 / 101.
        let mean = mean_work(&recent, t(100), TimeDelta::seconds(3600), 100.0);
        assert!((mean - 5050.0 / 101.0).abs() < 1e-9, "{mean}");
        // The newest readings stay whole; the lowest replicas of a merged pair are kept.
        assert_eq!(recent.last().unwrap().readings, 1);
        assert_eq!(recent[0].replicas, 99);
        assert_eq!(recent[0].readings, 2);
    }

    #[test]
    fn buckets_keep_the_maximum_open_empty_ones_and_stay_bounded() {
        let mut h = None;
        record(&mut h, 15, t(0), Some(1.234), 2);
        record(&mut h, 15, t(5), Some(0.5), 3);
        let hist = h.clone().unwrap();
        assert_eq!(hist.peak_work_replicas, vec![Some(1.24)]);
        assert_eq!(hist.max_replicas, vec![3]);
        // 50 s later: two empty buckets between.
        record(&mut h, 15, t(50), None, 2);
        let hist = h.clone().unwrap();
        assert_eq!(hist.peak_work_replicas, vec![Some(1.24), None, None, None]);
        assert_eq!(hist.max_replicas, vec![3, 0, 0, 2]);
        for s in 0..1000 {
            record(&mut h, 15, t(60 + 15 * s), Some(1.0), 1);
        }
        assert_eq!(
            h.as_ref().unwrap().peak_work_replicas.len(),
            HISTORY_BUCKETS
        );
        // A changed bucket length starts over.
        record(&mut h, 30, t(20_000), Some(2.0), 1);
        assert_eq!(h.unwrap().peak_work_replicas, vec![Some(2.0)]);
    }

    #[test]
    fn the_down_window_reads_the_buckets_it_overlaps() {
        let mut h = None;
        for (s, r) in [(0, 9), (15, 4), (30, 3), (45, 2)] {
            record(&mut h, 15, t(s), Some(1.0), r);
        }
        // At 50 s a 20 s window reaches back to 30 s: the buckets of 30 and 45.
        let max = |w| max_replicas_within(h.as_ref(), t(50), TimeDelta::seconds(w));
        assert_eq!(max(20), Some(3));
        assert_eq!(max(30), Some(4));
        assert_eq!(max(3600), Some(9));
    }

    #[test]
    fn the_bucket_follows_the_interval_and_the_window() {
        assert_eq!(bucket_seconds(15, 0), 15);
        assert_eq!(bucket_seconds(1, 300), 15);
        assert_eq!(bucket_seconds(60, 0), 60);
        assert_eq!(bucket_seconds(15, 86_400), 180);
    }
}
