//! The forecast: how many replicas the demand of the next startup horizon needs at the chosen
//! quantile, learned from the bucketed demand history in status.
//!
//! Each level of replicas is its own recurring event: the k-th replica is needed whenever demand
//! exceeds k - 1 replicas of work. From the idle gaps between the times a level was needed, the
//! policy estimates the chance that it is needed again within the horizon, given how long it has
//! been idle now: the hazard of the gap distribution, as keep-alive policies for serverless
//! functions estimate it from an idle-time histogram (Shahrad et al., "Serverless in the Wild",
//! ATC'20). A level is kept, or started ahead of its next expected need, while that chance is at
//! least `1 - forecastQuantile`. So a replica is released only when the traffic seen says the
//! idle time before it is needed again is longer than a restart (startup plus one interval), and
//! a burst that recurs is met by replicas that started one startup before it, not after it.

/// Rounding slack on demand against a level, as in the replica count (2.0 needs 2, not 3).
const LEVEL_EPSILON: f64 = 1e-9;

/// What the history says about one level of replicas above the demand now.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Recurrence {
    /// The level: the `replicas`-th replica, needed when demand exceeds `replicas - 1`.
    pub replicas: i32,
    /// Share of the past idle gaps that outlasted the current one and ended within the horizon.
    pub chance: f64,
    /// Seconds since the level was last needed (0 when needed within the newest bucket).
    pub idle_seconds: f64,
    /// Past idle gaps that outlasted the current one (plus the leading stretch of the history
    /// when it outlasted the current one by more than the horizon): what `chance` is a share of.
    pub gaps: u32,
    /// Whether the history shows the level needed at all.
    pub seen: bool,
    /// For a level above the first one over the demand now: the share of the times that first
    /// level was needed in which demand went on to need this one too (how high its bursts go).
    pub reach: Option<f64>,
}

/// Most levels above the demand now one plan looks at (bounding its cost on large pools): a
/// burst bigger than that is started by the demand it brings, not ahead of it.
pub const MAX_LEVELS_AHEAD: i32 = 128;

/// Seconds of history the trend towards a new high is fitted on.
pub const TREND_SECONDS: f64 = 1800.0;

/// Fewest bucket peaks a trend is fitted on.
const MIN_TREND_POINTS: usize = 8;

/// Least spread of demand around its trend, in replicas: a flat, noiseless history does not
/// make a level just above it certain never to be needed.
const MIN_SPREAD: f64 = 0.05;

/// The chance that demand exceeds `threshold` at `now + horizon`, from a straight line fitted to
/// `points` (seconds, demand): where the line is now, carried over the horizon only while it
/// rises, with the points' spread around it taken as normal.
fn trend_exceeds(points: &[(f64, f64)], now: f64, horizon: f64, threshold: f64) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(x, y), p| (x + p.0 / n, y + p.1 / n));
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let spread = (points
        .iter()
        .map(|p| (p.1 - my - slope * (p.0 - mx)).powi(2))
        .sum::<f64>()
        / (n - 1.0).max(1.0))
    .sqrt()
    .max(MIN_SPREAD);
    let expected = my + slope * (now - mx) + slope.max(0.0) * horizon;
    1.0 - normal_cdf((threshold - expected) / spread)
}

/// The standard normal distribution function (Abramowitz and Stegun 7.1.26, error under 1.5e-7).
fn normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-x * x).exp();
    if z >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

/// Weight, in gaps, of the onset-rate chance that a level's own gaps are shrunk towards.
pub const PRIOR_GAPS: f64 = 1.0;

/// Fewest past gaps the chance of a level is trusted on. With fewer, a level is kept for one
/// horizon after it was last needed and then released: the break-even rule of ski rental (keep an
/// idle replica as long as a restart costs), which never pays more than twice the best choice in
/// hindsight.
pub const MIN_GAPS: u32 = 3;

impl Recurrence {
    /// Whether the level is expected within the horizon at least `floor` of the time.
    pub fn expected(&self, floor: f64, horizon_seconds: f64) -> bool {
        self.chance >= floor
            || (self.seen && self.gaps < MIN_GAPS && self.idle_seconds < horizon_seconds)
    }
}

/// The forecast's plan: the replicas the horizon needs at the quantile, and why it stopped there.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Forecast {
    /// Replicas the horizon needs: at least the demand now.
    pub replicas: i32,
    /// The highest level kept above the demand now, when one is.
    pub kept: Option<Recurrence>,
    /// The first level above the plan, which the history does not expect within the horizon.
    pub next: Option<Recurrence>,
}

/// The demand history as the forecast reads it: bucket peaks, oldest first, and where now falls.
#[derive(Clone, Copy, Debug)]
pub struct Peaks<'a> {
    /// Highest demand of each bucket (replicas of work), oldest first; `None` without a reading.
    pub peaks: &'a [Option<f64>],
    pub bucket_seconds: f64,
    /// Seconds from the start of the newest bucket to now.
    pub into_newest_seconds: f64,
}

impl Peaks<'_> {
    /// When the level `replicas` is needed again within `horizon_seconds`, as a share of the
    /// past gaps that lasted longer than the current one. With `shrink`, few gaps are shrunk
    /// towards the chance the level's onset rate alone gives (as if its needs came at random):
    /// few gaps say little about the tail of their distribution.
    pub fn recurrence(&self, replicas: i32, horizon_seconds: f64, shrink: bool) -> Recurrence {
        let threshold = f64::from(replicas.saturating_sub(1)) + LEVEL_EPSILON;
        let needed = |p: &Option<f64>| p.is_some_and(|v| v > threshold);
        let Some(last) = self.peaks.iter().rposition(needed) else {
            return Recurrence {
                replicas,
                chance: 0.0,
                idle_seconds: f64::INFINITY,
                gaps: 0,
                seen: false,
                reach: None,
            };
        };
        let b = self.bucket_seconds;
        // Idle since the end of the last bucket that needed it: a bucket bounds when within it.
        let idle =
            ((self.peaks.len() - 1 - last) as f64 * b + self.into_newest_seconds - b).max(0.0);
        let (mut at_risk, mut events, mut onsets) = (0_u32, 0_u32, 0_u32);
        let mut longest = None::<f64>;
        let mut previous: Option<usize> = None;
        for (i, p) in self.peaks[..=last].iter().enumerate() {
            if !needed(p) {
                continue;
            }
            if previous.is_none_or(|j| i > j + 1) {
                onsets += 1;
            }
            match previous {
                // The stretch before the first need: its start is unknown, so it only says the
                // level can stay idle longer than the horizon.
                None if i as f64 * b > idle + horizon_seconds => at_risk += 1,
                Some(j) if i > j + 1 => {
                    let gap = (i - j - 1) as f64 * b;
                    longest = Some(longest.map_or(gap, |l| l.max(gap)));
                    if gap > idle {
                        at_risk += 1;
                        if gap <= idle + horizon_seconds {
                            events += 1;
                        }
                    }
                }
                _ => {}
            }
            previous = Some(i);
        }
        let span = self.peaks.len() as f64 * b;
        let by_rate = 1.0 - (-horizon_seconds * f64::from(onsets) / span.max(b)).exp();
        let prior = if shrink { PRIOR_GAPS } else { 0.0 };
        Recurrence {
            replicas,
            chance: if at_risk > 0 {
                (f64::from(events) + prior * by_rate) / (f64::from(at_risk) + prior)
            } else if longest.is_some_and(|l| idle <= l + horizon_seconds) {
                // Idle longer than every gap seen: a recurrence that is late, or one that ended.
                // Keep it through one more horizon (break-even again), then let it go.
                by_rate
            } else {
                0.0
            },
            idle_seconds: idle,
            gaps: at_risk,
            seen: true,
            reach: None,
        }
    }

    /// The level just above every level the history needed, which demand needs only when it
    /// sets a new high: no gap can say when. A stationary demand rarely does; a growing one (a
    /// ramp) does so again and again. So the chance is that of the recent trend: a straight line
    /// through the last [`TREND_SECONDS`] of bucket peaks, where it is now and, while it rises,
    /// at the end of the horizon, with the peaks' spread around it taken as normal.
    pub fn new_high(&self, replicas: i32, horizon_seconds: f64) -> Recurrence {
        let b = self.bucket_seconds;
        let window = ((TREND_SECONDS / b).ceil() as usize).max(2);
        let recent = &self.peaks[self.peaks.len().saturating_sub(window)..];
        let points: Vec<(f64, f64)> = recent
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((i as f64 * b, (*p)?)))
            .collect();
        let now = recent.len().saturating_sub(1) as f64 * b + self.into_newest_seconds;
        let threshold = f64::from(replicas.saturating_sub(1));
        let chance = if points.len() >= MIN_TREND_POINTS {
            trend_exceeds(&points, now, horizon_seconds, threshold)
        } else {
            0.0
        };
        Recurrence {
            replicas,
            chance,
            idle_seconds: f64::INFINITY,
            gaps: 0,
            seen: false,
            reach: None,
        }
    }

    /// The highest demand of each past stretch of buckets that needed the level `replicas` (one
    /// still open at the newest bucket is left out: it has not reached its peak yet), lowest
    /// first.
    fn episode_peaks(&self, replicas: i32) -> Vec<f64> {
        let threshold = f64::from(replicas.saturating_sub(1)) + LEVEL_EPSILON;
        let mut peaks = Vec::new();
        let mut open: Option<f64> = None;
        for p in self.peaks {
            match (*p, open) {
                (Some(v), Some(m)) if v > threshold => open = Some(m.max(v)),
                (Some(v), None) if v > threshold => open = Some(v),
                _ => peaks.extend(open.take()),
            }
        }
        peaks.sort_by(f64::total_cmp);
        peaks
    }

    /// Share of `episodes` whose demand needed the level `replicas`; `None` with too few of them
    /// to say (a level needed all along is one stretch, and says nothing of bursts).
    fn reach(episodes: &[f64], replicas: i32) -> Option<f64> {
        if episodes.len() <= MIN_GAPS as usize {
            return None;
        }
        let threshold = f64::from(replicas.saturating_sub(1)) + LEVEL_EPSILON;
        let reached = episodes.len() - episodes.partition_point(|&m| m <= threshold);
        Some(reached as f64 / episodes.len() as f64)
    }

    /// The replicas the next `horizon_seconds` need at `quantile`: the demand now (`need_now`),
    /// or the highest level above it that the history expects within the horizon at least
    /// `1 - quantile` of the time, up to `max`. (Needing a level implies needing every level below
    /// it, so one expected level keeps those below it too, whatever their own, noisier, counts.)
    ///
    /// A level is also expected through a burst: through any lower level above the demand now,
    /// that level's own chance times the share of its past stretches whose demand went on to
    /// need this level too (a burst due); and while one is under way (demand now needs a level
    /// that comes and goes), the share of that level's past stretches that went this high. So
    /// the plan covers the burst sizes seen at the quantile, not only the sizes that happen to
    /// recur on their own schedule.
    pub fn plan(&self, need_now: i32, max: i32, horizon_seconds: f64, quantile: f64) -> Forecast {
        let floor = 1.0 - quantile;
        let need_now = need_now.max(0);
        let highest_seen = self.peaks.iter().flatten().fold(0.0_f64, |m, &v| m.max(v));
        let top = ((highest_seen - LEVEL_EPSILON).ceil() as i32)
            .saturating_add(1)
            .min(max)
            .min(need_now.saturating_add(MAX_LEVELS_AHEAD));
        let under_way = self.episode_peaks(need_now);
        // The levels below this one that are expected: their chance (one kept by the break-even
        // rule counts as certain) and their past stretches' peaks.
        let mut due: Vec<(f64, Vec<f64>)> = Vec::new();
        let mut plan = Forecast {
            replicas: need_now,
            kept: None,
            next: None,
        };
        for level in need_now.saturating_add(1)..=top {
            // Above the first level, how high a burst goes is better told by the bursts of the
            // level below (its reach) than by the few gaps of a level only big bursts need.
            let first = level == need_now.saturating_add(1);
            let mut r = self.recurrence(level, horizon_seconds, first);
            if !r.seen {
                r = self.new_high(level, horizon_seconds);
            }
            let own = r;
            let through_due = due
                .iter()
                .filter_map(|(chance, episodes)| {
                    let reach = Self::reach(episodes, level)?;
                    Some((chance * reach, reach))
                })
                .reduce(|x, y| if y.0 > x.0 { y } else { x });
            let through_under_way = Self::reach(&under_way, level);
            r.reach = through_under_way
                .into_iter()
                .chain(through_due.map(|d| d.1))
                .reduce(f64::max);
            r.chance = r
                .chance
                .max(through_due.map_or(0.0, |d| d.0))
                .max(through_under_way.unwrap_or(0.0));
            if r.expected(floor, horizon_seconds) {
                plan.replicas = level;
                plan.kept = Some(r);
                plan.next = None;
            } else if plan.next.is_none() {
                plan.next = Some(r);
            }
            if own.expected(floor, horizon_seconds) {
                let chance = if own.chance >= floor { own.chance } else { 1.0 };
                due.push((chance, self.episode_peaks(level)));
            }
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A history of 15 s buckets from a pattern: `.` idle at 0.5 replicas, digits the demand.
    fn buckets(pattern: &str) -> Vec<Option<f64>> {
        pattern
            .chars()
            .map(|c| match c {
                '.' => Some(0.5),
                '_' => None,
                d => Some(f64::from(d.to_digit(10).unwrap())),
            })
            .collect()
    }

    fn peaks(p: &[Option<f64>], into_newest: f64) -> Peaks<'_> {
        Peaks {
            peaks: p,
            bucket_seconds: 15.0,
            into_newest_seconds: into_newest,
        }
    }

    #[test]
    fn a_level_never_needed_is_not_expected() {
        let p = buckets("....2...2...");
        let r = peaks(&p, 0.0).recurrence(3, 195.0, false);
        assert!(!r.seen);
        assert_eq!(r.chance, 0.0);
    }

    #[test]
    fn the_chance_is_the_share_of_longer_gaps_that_end_within_the_horizon() {
        // Level 4 needed in buckets 2, 6, 7 and 20: gaps of 3 and 12 buckets (45 s and 180 s);
        // the leading stretch (2 buckets, 30 s) is too short to say anything. Newest bucket 23,
        // 5 s into it: idle since the end of bucket 20, 2 buckets and 5 s = 35 s ago.
        let p = buckets("..4...44............4...");
        let r = peaks(&p, 5.0).recurrence(4, 100.0, false);
        assert_eq!(r.idle_seconds, 35.0);
        // Both gaps outlasted 35 s; 45 s ends within 35 + 100 s, 180 s does not: 1 of 2.
        assert_eq!((r.gaps, r.chance), (2, 0.5));
        // At a 200 s horizon both end within it.
        assert_eq!(peaks(&p, 5.0).recurrence(4, 200.0, false).chance, 1.0);
        // 25 s into the newest bucket: idle 55 s, and only the 180 s gap outlasted that; it
        // does not end within 55 + 100 s.
        let r = peaks(&p, 25.0).recurrence(4, 100.0, false);
        assert_eq!((r.idle_seconds, r.gaps, r.chance), (55.0, 1, 0.0));
    }

    #[test]
    fn a_regular_burst_is_started_one_horizon_before_it_and_released_after_it() {
        // Bursts of 6 replicas of work for 2 buckets every 40 buckets (600 s), over 0.5: two
        // hours of them, enough gaps for their shares to outweigh the onset rate's prior.
        let mut pattern = String::new();
        for _ in 0..12 {
            pattern.push_str("66");
            pattern.push_str(&".".repeat(38));
        }
        let base = buckets(&pattern);
        let horizon = 195.0;
        let want = |idle_buckets: usize| {
            let p = &base[..base.len() - 38 + idle_buckets];
            peaks(p, 15.0).plan(1, 10, horizon, 0.95).replicas
        };
        // Right after a burst the next is 38 buckets (570 s) away: release to the floor.
        assert_eq!(want(1), 1);
        assert_eq!(want(20), 1);
        // 570 - 195 = 375 s idle (25 buckets) is where the next burst enters the horizon.
        assert_eq!(want(24), 1);
        assert_eq!(want(26), 6);
        assert_eq!(want(37), 6);
    }

    #[test]
    fn noise_around_a_level_keeps_it() {
        // Demand crossing 3 every few buckets: level 4 recurs within any horizon, level 5 never.
        let p = buckets("3343334333433343334333");
        let f = peaks(&p, 0.0).plan(3, 10, 195.0, 0.95);
        assert_eq!(f.replicas, 4);
        assert_eq!(f.next.map(|r| r.replicas), Some(5));
        // A level is kept only up to max.
        assert_eq!(peaks(&p, 0.0).plan(3, 3, 195.0, 0.95).replicas, 3);
    }

    #[test]
    fn a_level_that_never_came_back_is_released() {
        // A flash crowd of 9 once, long ago: no gap says it recurs.
        let p = buckets("...9999....................");
        assert_eq!(peaks(&p, 0.0).plan(1, 10, 195.0, 0.95).replicas, 1);
    }

    #[test]
    fn the_quantile_is_the_dial() {
        // Ten gaps after level 3 was needed: one of 14 buckets (210 s), nine of 21 to 29. Idle
        // 15 s, one in ten ends within 15 + 195 s.
        let mut pattern = String::from("3");
        for i in 0..10 {
            let gap = if i == 0 { 14 } else { 20 + i };
            pattern.push_str(&".".repeat(gap));
            pattern.push('3');
        }
        pattern.push('.');
        let p = buckets(&pattern);
        // 1 - 0.95 = 5% < 10%: keep; 1 - 0.8 = 20% > 10%: release.
        assert_eq!(peaks(&p, 15.0).plan(1, 10, 195.0, 0.95).replicas, 3);
        assert_eq!(peaks(&p, 15.0).plan(1, 10, 195.0, 0.8).replicas, 1);
    }
}
