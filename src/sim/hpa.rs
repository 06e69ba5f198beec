//! The Kubernetes HPA's replica calculator and scaling rules, ported from kubernetes/kubernetes
//! `pkg/controller/podautoscaler` so that the `hpa` and `keda` baselines are the HPA itself, not a
//! sketch of it. Read from a fork tracking upstream master (omerap12/kubernetes, commits a769d588
//! for replica_calculator.go and horizontal.go, 060da168 for horizontal_test.go, 2025); Apache-2.0,
//! The Kubernetes Authors. The ported test cases below keep their upstream names.
//!
//! Quantities are milli-values in `i64`, and averages are truncated, exactly as the HPA computes
//! them. Times are seconds on the simulator's clock instead of `time.Now()`.

/// Default tolerance of the HPA controller (`--horizontal-pod-autoscaler-tolerance`).
pub const DEFAULT_TOLERANCE: f64 = 0.1;

/// Default scale-down stabilization (`--horizontal-pod-autoscaler-downscale-stabilization`).
pub const DEFAULT_DOWNSCALE_STABILIZATION_SECONDS: f64 = 300.0;

/// Without `spec.behavior`, the HPA grows to at most max(2 x current, 4) replicas per sync.
const SCALE_UP_LIMIT_FACTOR: f64 = 2.0;
const SCALE_UP_LIMIT_MINIMUM: f64 = 4.0;

/// A pod's phase, as far as the replica calculator cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

/// One pod of the scale target, with its sample of the metric if the metrics API returned one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pod {
    pub phase: PodPhase,
    pub deleting: bool,
    pub metric_milli: Option<i64>,
}

impl Pod {
    pub fn running(metric_milli: Option<i64>) -> Self {
        Self {
            phase: PodPhase::Running,
            deleting: false,
            metric_milli,
        }
    }
}

/// `Tolerances`: the usage ratio band within which the HPA does not scale.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerances {
    pub scale_down: f64,
    pub scale_up: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Self {
            scale_down: DEFAULT_TOLERANCE,
            scale_up: DEFAULT_TOLERANCE,
        }
    }
}

impl Tolerances {
    fn is_within(&self, usage_ratio: f64) -> bool {
        (1.0 - self.scale_down) <= usage_ratio && usage_ratio <= (1.0 + self.scale_up)
    }
}

/// Why the calculator returned no replica count (the HPA then does not scale).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CalcError {
    #[error("no pods returned by selector while calculating replica count")]
    NoPods,
    #[error("did not receive metrics for targeted pods (pods might be unready)")]
    NoMetrics,
}

/// `groupPods` for a non-CPU metric: (ready count, unready, missing); deleted and terminal pods
/// are ignored, Pending pods are unready, pods without a sample are missing.
fn group_pods(pods: &[Pod]) -> (usize, Vec<usize>, Vec<usize>) {
    let (mut ready, mut unready, mut missing) = (0, Vec::new(), Vec::new());
    for (i, pod) in pods.iter().enumerate() {
        if pod.deleting || matches!(pod.phase, PodPhase::Succeeded | PodPhase::Failed) {
            continue;
        }
        if pod.phase == PodPhase::Pending {
            unready.push(i);
            continue;
        }
        if pod.metric_milli.is_none() {
            missing.push(i);
            continue;
        }
        ready += 1;
    }
    (ready, unready, missing)
}

/// `GetMetricUsageRatio`: the truncated mean of the samples against the target.
fn usage_ratio(samples: &[i64], target_milli: i64) -> (f64, i64) {
    let total = samples.iter().fold(0_i64, |t, v| t.saturating_add(*v));
    let usage = total / samples.len().max(1) as i64;
    (usage as f64 / target_milli as f64, usage)
}

/// Saturating `int32(math.Ceil(x))`.
fn ceil_i32(x: f64) -> i32 {
    let c = x.ceil();
    if c >= i32::MAX as f64 {
        i32::MAX
    } else if c <= i32::MIN as f64 {
        i32::MIN
    } else {
        c as i32
    }
}

/// `calcPlainMetricReplicas` (behind `GetMetricReplicas`, a Pods metric with an AverageValue
/// target): returns (replicas, mean usage).
pub fn pod_metric_replicas(
    pods: &[Pod],
    current_replicas: i32,
    target_milli: i64,
    tolerances: Tolerances,
) -> Result<(i32, i64), CalcError> {
    if pods.is_empty() {
        return Err(CalcError::NoPods);
    }
    let (ready, unready, missing) = group_pods(pods);
    let mut samples: Vec<i64> = pods
        .iter()
        .filter(|p| {
            !p.deleting
                && !matches!(
                    p.phase,
                    PodPhase::Succeeded | PodPhase::Failed | PodPhase::Pending
                )
        })
        .filter_map(|p| p.metric_milli)
        .collect();
    if samples.is_empty() {
        return Err(CalcError::NoMetrics);
    }
    let (ratio, usage) = usage_ratio(&samples, target_milli);
    let scale_up_with_unready = !unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && missing.is_empty() {
        if tolerances.is_within(ratio) {
            return Ok((current_replicas, usage));
        }
        return Ok((ceil_i32(ratio * ready as f64), usage));
    }
    if !missing.is_empty() {
        if ratio < 1.0 {
            // On a scale-down, missing pods count as using exactly the target.
            samples.extend(missing.iter().map(|_| target_milli));
        } else if ratio > 1.0 {
            // On a scale-up, missing pods count as using nothing.
            samples.extend(missing.iter().map(|_| 0));
        }
    }
    if scale_up_with_unready {
        samples.extend(unready.iter().map(|_| 0));
    }
    let (new_ratio, _) = usage_ratio(&samples, target_milli);
    if tolerances.is_within(new_ratio)
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok((current_replicas, usage));
    }
    let new_replicas = ceil_i32(new_ratio * samples.len() as f64);
    if (new_ratio < 1.0 && new_replicas > current_replicas)
        || (new_ratio > 1.0 && new_replicas < current_replicas)
    {
        return Ok((current_replicas, usage));
    }
    Ok((new_replicas, usage))
}

/// `GetExternalPerPodMetricReplicas` (an External metric with an AverageValue target, which is
/// what KEDA's ScaledObject creates by default): returns (replicas, usage per pod).
pub fn external_per_pod_replicas(
    metric_values_milli: &[i64],
    status_replicas: i32,
    target_per_pod_milli: i64,
    tolerances: Tolerances,
) -> (i32, i64) {
    let mut usage: i64 = 0;
    for v in metric_values_milli {
        usage = usage.wrapping_add(*v);
        if usage < 0 {
            // Only an int64 overflow gets here.
            usage = i64::MAX;
            break;
        }
    }
    let mut replicas = status_replicas;
    let ratio = usage as f64 / (target_per_pod_milli as f64 * status_replicas as f64);
    if !tolerances.is_within(ratio) {
        replicas = ceil_i32(usage as f64 / target_per_pod_milli as f64);
    }
    let per_pod = if usage as f64 >= i64::MAX as f64 {
        i64::MAX
    } else if status_replicas == 0 {
        0
    } else {
        (usage as f64 / status_replicas as f64).ceil() as i64
    };
    (replicas, per_pod)
}

/// `HPAScalingPolicyType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyType {
    Pods,
    Percent,
}

/// `HPAScalingPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScalingPolicy {
    pub kind: PolicyType,
    pub value: i32,
    pub period_seconds: i32,
}

/// `ScalingPolicySelect`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectPolicy {
    Max,
    Min,
    Disabled,
}

/// `HPAScalingRules`, defaulted.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalingRules {
    pub stabilization_window_seconds: i32,
    pub select: SelectPolicy,
    pub policies: Vec<ScalingPolicy>,
}

impl ScalingRules {
    /// `GenerateHPAScaleUpRules(nil)`: no stabilization, the larger of +4 pods or +100% per 15 s.
    pub fn default_up() -> Self {
        Self {
            stabilization_window_seconds: 0,
            select: SelectPolicy::Max,
            policies: vec![
                ScalingPolicy {
                    kind: PolicyType::Pods,
                    value: 4,
                    period_seconds: 15,
                },
                ScalingPolicy {
                    kind: PolicyType::Percent,
                    value: 100,
                    period_seconds: 15,
                },
            ],
        }
    }

    /// `GenerateHPAScaleDownRules(nil)` with the controller's 300 s stabilization: -100% per 15 s.
    pub fn default_down() -> Self {
        Self {
            stabilization_window_seconds: DEFAULT_DOWNSCALE_STABILIZATION_SECONDS as i32,
            select: SelectPolicy::Max,
            policies: vec![ScalingPolicy {
                kind: PolicyType::Percent,
                value: 100,
                period_seconds: 15,
            }],
        }
    }

    fn longest_period(&self) -> i32 {
        self.policies
            .iter()
            .map(|p| p.period_seconds)
            .max()
            .unwrap_or(0)
    }
}

/// `spec.behavior`, both directions defaulted.
#[derive(Clone, Debug, PartialEq)]
pub struct Behavior {
    pub scale_up: ScalingRules,
    pub scale_down: ScalingRules,
}

/// `timestampedScaleEvent`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScaleEvent {
    pub replica_change: i32,
    pub at_seconds: f64,
    pub outdated: bool,
}

/// `timestampedRecommendation`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Recommendation {
    pub replicas: i32,
    pub at_seconds: f64,
}

/// `getReplicasChangePerPeriod`: replicas changed by events strictly after `now - period`.
fn replicas_change_per_period(period_seconds: i32, events: &[ScaleEvent], now: f64) -> i32 {
    let cutoff = now - f64::from(period_seconds);
    events
        .iter()
        .filter(|e| e.at_seconds > cutoff)
        .fold(0_i32, |sum, e| sum.saturating_add(e.replica_change))
}

/// `calculateScaleUpLimitWithScalingRules`.
fn scale_up_limit(
    current: i32,
    up_events: &[ScaleEvent],
    down_events: &[ScaleEvent],
    rules: &ScalingRules,
    now: f64,
) -> i32 {
    let (mut result, pick): (i32, fn(i32, i32) -> i32) = match rules.select {
        SelectPolicy::Disabled => return current,
        SelectPolicy::Min => (i32::MAX, i32::min),
        SelectPolicy::Max => (i32::MIN, i32::max),
    };
    for policy in &rules.policies {
        let added = replicas_change_per_period(policy.period_seconds, up_events, now);
        let deleted = replicas_change_per_period(policy.period_seconds, down_events, now);
        let start = current.saturating_sub(added).saturating_add(deleted);
        let proposed = match policy.kind {
            PolicyType::Pods => start.saturating_add(policy.value),
            PolicyType::Percent => {
                ceil_i32(f64::from(start) * (1.0 + f64::from(policy.value) / 100.0))
            }
        };
        result = pick(result, proposed);
    }
    result
}

/// `calculateScaleDownLimitWithBehaviors`.
fn scale_down_limit(
    current: i32,
    up_events: &[ScaleEvent],
    down_events: &[ScaleEvent],
    rules: &ScalingRules,
    now: f64,
) -> i32 {
    let (mut result, pick): (i32, fn(i32, i32) -> i32) = match rules.select {
        SelectPolicy::Disabled => return current,
        SelectPolicy::Min => (i32::MIN, i32::max),
        SelectPolicy::Max => (i32::MAX, i32::min),
    };
    for policy in &rules.policies {
        let added = replicas_change_per_period(policy.period_seconds, up_events, now);
        let deleted = replicas_change_per_period(policy.period_seconds, down_events, now);
        let start = current.saturating_sub(added).saturating_add(deleted);
        let proposed = match policy.kind {
            PolicyType::Pods => start.saturating_sub(policy.value),
            // Go's int32(float) truncates toward zero.
            PolicyType::Percent => {
                (f64::from(start) * (1.0 - f64::from(policy.value) / 100.0)).trunc() as i32
            }
        };
        result = pick(result, proposed);
    }
    result
}

/// The HPA controller's memory for one HPA: its recommendations and, with `spec.behavior`, its
/// scale events; `normalize` is the step after the replica calculator.
#[derive(Clone, Debug, Default)]
pub struct Normalizer {
    pub behavior: Option<Behavior>,
    pub recommendations: Vec<Recommendation>,
    pub scale_up_events: Vec<ScaleEvent>,
    pub scale_down_events: Vec<ScaleEvent>,
    /// `--horizontal-pod-autoscaler-downscale-stabilization`, used without `spec.behavior`.
    pub downscale_stabilization_seconds: f64,
}

impl Normalizer {
    pub fn new(behavior: Option<Behavior>) -> Self {
        Self {
            behavior,
            downscale_stabilization_seconds: DEFAULT_DOWNSCALE_STABILIZATION_SECONDS,
            ..Default::default()
        }
    }

    /// `recordInitialRecommendation`: the first sync remembers the current count as a
    /// recommendation, so a new HPA does not scale down before its window has passed.
    pub fn record_initial(&mut self, current: i32, now: f64) {
        if self.recommendations.is_empty() {
            self.recommendations.push(Recommendation {
                replicas: current,
                at_seconds: now,
            });
        }
    }

    /// `stabilizeRecommendation` (no `spec.behavior`): records this recommendation, reusing an
    /// outdated slot, and returns the highest within the downscale window.
    pub fn stabilize(&mut self, desired: i32, now: f64) -> i32 {
        let cutoff = now - self.downscale_stabilization_seconds;
        let mut max = desired;
        let mut old = None;
        for (i, r) in self.recommendations.iter().enumerate() {
            if r.at_seconds < cutoff {
                old = Some(i);
            } else if r.replicas > max {
                max = r.replicas;
            }
        }
        let new = Recommendation {
            replicas: desired,
            at_seconds: now,
        };
        match old {
            Some(i) => self.recommendations[i] = new,
            None => self.recommendations.push(new),
        }
        max
    }

    /// `stabilizeRecommendationWithBehaviors`: within the up window the lowest recommendation, within
    /// the down window the highest, the current count kept between them.
    pub fn stabilize_with_behaviors(&mut self, current: i32, desired: i32, now: f64) -> i32 {
        let Some(b) = &self.behavior else {
            return self.stabilize(desired, now);
        };
        let up_cutoff = now - f64::from(b.scale_up.stabilization_window_seconds);
        let down_cutoff = now - f64::from(b.scale_down.stabilization_window_seconds);
        let (mut up, mut down) = (desired, desired);
        let mut old = None;
        for (i, r) in self.recommendations.iter().enumerate() {
            if r.at_seconds > up_cutoff {
                up = up.min(r.replicas);
            }
            if r.at_seconds > down_cutoff {
                down = down.max(r.replicas);
            }
            if r.at_seconds < up_cutoff && r.at_seconds < down_cutoff {
                old = Some(i);
            }
        }
        let recommendation = current.max(up).min(down);
        let new = Recommendation {
            replicas: desired,
            at_seconds: now,
        };
        match old {
            Some(i) => self.recommendations[i] = new,
            None => self.recommendations.push(new),
        }
        recommendation
    }

    /// `convertDesiredReplicasWithBehaviorRate` (with `spec.behavior`) or
    /// `convertDesiredReplicasWithRules` (without): the rate limits and the bounds, with the reason.
    pub fn convert(
        &self,
        current: i32,
        desired: i32,
        min: i32,
        max: i32,
        now: f64,
    ) -> (i32, &'static str) {
        let Some(b) = &self.behavior else {
            let up_limit =
                (SCALE_UP_LIMIT_FACTOR * f64::from(current)).max(SCALE_UP_LIMIT_MINIMUM) as i32;
            let (ceiling, reason) = if max > up_limit {
                (up_limit, "ScaleUpLimit")
            } else {
                (max, "TooManyReplicas")
            };
            if desired < min {
                return (min, "TooFewReplicas");
            }
            if desired > ceiling {
                return (ceiling, reason);
            }
            return (desired, "DesiredWithinRange");
        };
        if desired > current {
            let limit = scale_up_limit(
                current,
                &self.scale_up_events,
                &self.scale_down_events,
                &b.scale_up,
                now,
            )
            .max(current);
            let (ceiling, reason) = if max > limit {
                (limit, "ScaleUpLimit")
            } else {
                (max, "TooManyReplicas")
            };
            if desired > ceiling {
                return (ceiling, reason);
            }
        } else if desired < current {
            let limit = scale_down_limit(
                current,
                &self.scale_up_events,
                &self.scale_down_events,
                &b.scale_down,
                now,
            )
            .min(current);
            let (floor, reason) = if min < limit {
                (limit, "ScaleDownLimit")
            } else {
                (min, "TooFewReplicas")
            };
            if desired < floor {
                return (floor, reason);
            }
        }
        (desired, "DesiredWithinRange")
    }

    /// `storeScaleEvent`: with `spec.behavior`, remembers the change for the rate limits,
    /// reusing a slot older than the longest policy period.
    pub fn store_scale_event(&mut self, previous: i32, new: i32, now: f64) {
        let Some(b) = &self.behavior else {
            return;
        };
        let (events, rules, change) = if new > previous {
            (&mut self.scale_up_events, &b.scale_up, new - previous)
        } else {
            (&mut self.scale_down_events, &b.scale_down, previous - new)
        };
        let cutoff = now - f64::from(rules.longest_period());
        let mut old = None;
        for (i, e) in events.iter_mut().enumerate() {
            if e.at_seconds < cutoff {
                e.outdated = true;
            }
            if e.outdated {
                old = Some(i);
            }
        }
        let event = ScaleEvent {
            replica_change: change,
            at_seconds: now,
            outdated: false,
        };
        match old {
            Some(i) => events[i] = event,
            None => events.push(event),
        }
    }

    /// One sync's normalization of the calculator's `desired`: stabilization, then rate and bounds.
    pub fn normalize(&mut self, current: i32, desired: i32, min: i32, max: i32, now: f64) -> i32 {
        let stabilized = self.stabilize_with_behaviors(current, desired, now);
        self.convert(current, stabilized, min, max, now).0
    }
}

#[cfg(test)]
mod tests {
    //! Cases ported from upstream's replica_calculator_test.go (TestReplicaCalcPodMetric,
    //! TestReplicaCalcExternalPerPodMetric) and horizontal_test.go (TestScalingWithRules,
    //! TestNormalizeDesiredReplicas, TestNormalizeDesiredReplicasWithBehavior), names kept.
    use super::*;

    const NOW: f64 = 10_000.0;

    fn one_percent_up() -> Tolerances {
        Tolerances {
            scale_down: DEFAULT_TOLERANCE,
            scale_up: 0.01,
        }
    }

    /// `currentReplicas` running pods (or as many as `phases` lists), the first ones with samples.
    fn pods(current: usize, levels: &[i64], phases: Option<&[PodPhase]>) -> Vec<Pod> {
        let n = phases.map_or(current, |p| p.len().max(current));
        (0..n)
            .map(|i| Pod {
                phase: phases.map_or(PodPhase::Running, |p| p[i]),
                deleting: false,
                metric_milli: levels.get(i).copied(),
            })
            .collect()
    }

    #[test]
    fn replica_calc_pod_metric() {
        use PodPhase::Running;
        // (name, current, levels, phases, target, tolerances, replicas, usage). Readiness and
        // start times only matter for CPU metrics, so the "hot-CPU" cases reduce to their levels.
        type Case = (
            &'static str,
            i32,
            Vec<i64>,
            Option<Vec<PodPhase>>,
            i64,
            Tolerances,
            i32,
            i64,
        );
        let cases: Vec<Case> = vec![
            (
                "scale up",
                3,
                vec![20000, 10000, 30000],
                None,
                15000,
                Tolerances::default(),
                4,
                20000,
            ),
            (
                "scale up: unready hot-CPU pod scales less",
                3,
                vec![50000, 10000, 30000],
                None,
                15000,
                Tolerances::default(),
                6,
                30000,
            ),
            (
                "scale up: unready hot-CPU pods avoid scale-down",
                3,
                vec![50000, 15000, 30000],
                None,
                15000,
                Tolerances::default(),
                7,
                31666,
            ),
            (
                "scale down",
                5,
                vec![12000; 5],
                None,
                20000,
                Tolerances::default(),
                3,
                12000,
            ),
            (
                "within default tolerance",
                3,
                vec![20000, 21000, 21000],
                None,
                20000,
                Tolerances::default(),
                3,
                20666,
            ),
            (
                "outside configurable 1% tolerance",
                3,
                vec![20000, 21000, 21000],
                None,
                20000,
                one_percent_up(),
                4,
                20666,
            ),
            (
                "no change: missing metrics",
                5,
                vec![20000, 19000, 21000],
                None,
                20000,
                Tolerances::default(),
                5,
                20000,
            ),
            (
                "rolling update with maxSurge: extra pod missing metric",
                2,
                vec![10000, 10000],
                Some(vec![Running; 3]),
                17000,
                Tolerances::default(),
                2,
                10000,
            ),
        ];
        for (name, current, levels, phases, target, tol, want, usage) in cases {
            let p = pods(current as usize, &levels, phases.as_deref());
            assert_eq!(
                pod_metric_replicas(&p, current, target, tol),
                Ok((want, usage)),
                "{name}"
            );
        }
    }

    #[test]
    fn replica_calc_pod_metric_errors() {
        assert_eq!(
            pod_metric_replicas(&[], 1, 1000, Tolerances::default()),
            Err(CalcError::NoPods)
        );
        // Every pod still loading: no samples, so the HPA cannot compute and holds.
        assert_eq!(
            pod_metric_replicas(&[Pod::running(None); 2], 2, 1000, Tolerances::default()),
            Err(CalcError::NoMetrics)
        );
    }

    #[test]
    fn replica_calc_external_per_pod_metric() {
        let cases: Vec<(&str, i32, i64, i64, Tolerances, i32, i64)> = vec![
            (
                "replica count overflow saturates to MaxInt32",
                1,
                i64::MAX,
                1,
                Tolerances::default(),
                i32::MAX,
                i64::MAX,
            ),
            (
                "usage overflow with huge target leaves replicas unchanged",
                1,
                i64::MAX,
                i64::MAX,
                Tolerances::default(),
                1,
                i64::MAX,
            ),
            (
                "statusReplicas zero does not overflow usage",
                0,
                20000,
                5000,
                Tolerances::default(),
                4,
                0,
            ),
            (
                "statusReplicas zero and metric zero does not underflow",
                0,
                0,
                5000,
                Tolerances::default(),
                0,
                0,
            ),
            ("scale up", 3, 8600, 2150, Tolerances::default(), 4, 2867),
            ("scale down", 5, 8600, 2867, Tolerances::default(), 3, 1720),
            (
                "within default tolerance",
                3,
                8600,
                2900,
                Tolerances::default(),
                3,
                2867,
            ),
            (
                "outside configurable 1% tolerance",
                3,
                8600,
                2800,
                one_percent_up(),
                4,
                2867,
            ),
        ];
        for (name, status, level, target, tol, want, usage) in cases {
            assert_eq!(
                external_per_pod_replicas(&[level], status, target, tol),
                (want, usage),
                "{name}"
            );
        }
    }

    fn rules(
        pods: i32,
        pods_period: i32,
        percent: i32,
        percent_period: i32,
        window: i32,
    ) -> ScalingRules {
        let mut policies = Vec::new();
        if pods != 0 {
            policies.push(ScalingPolicy {
                kind: PolicyType::Pods,
                value: pods,
                period_seconds: pods_period,
            });
        }
        if percent != 0 {
            policies.push(ScalingPolicy {
                kind: PolicyType::Percent,
                value: percent,
                period_seconds: percent_period,
            });
        }
        ScalingRules {
            stabilization_window_seconds: window,
            select: SelectPolicy::Max,
            policies,
        }
    }

    /// `generateEventsUniformDistribution`: events in the middle of equal segments of the period.
    fn uniform(raw: &[i32], period: f64) -> Vec<ScaleEvent> {
        let segment = period / raw.len() as f64;
        raw.iter()
            .enumerate()
            .map(|(i, &change)| ScaleEvent {
                replica_change: change,
                at_seconds: NOW - (period - segment * (i + 1) as f64 + segment / 2.0),
                outdated: false,
            })
            .collect()
    }

    #[test]
    fn scaling_with_rules() {
        struct Case {
            name: &'static str,
            up_events: Vec<ScaleEvent>,
            down_events: Vec<ScaleEvent>,
            min: i32,
            max: i32,
            up: Option<ScalingRules>,
            down: Option<ScalingRules>,
            current: i32,
            desired: i32,
            want: i32,
            reason: &'static str,
        }
        let c = |name, min, max, up, down, current, desired, want, reason| Case {
            name,
            up_events: vec![],
            down_events: vec![],
            min,
            max,
            up,
            down,
            current,
            desired,
            want,
            reason,
        };
        let e = uniform;
        let mut cases = vec![
            c(
                "prenormalized desired replicas within range",
                3,
                8,
                None,
                None,
                5,
                7,
                7,
                "DesiredWithinRange",
            ),
            c(
                "prenormalized desired replicas < minReplicas",
                2,
                8,
                None,
                None,
                3,
                1,
                2,
                "TooFewReplicas",
            ),
            c(
                "prenormalized desired replicas within range when minReplicas is 0",
                0,
                10,
                None,
                None,
                1,
                0,
                0,
                "DesiredWithinRange",
            ),
            c(
                "maxReplicas is the limit because maxReplicas < scaleUpLimit",
                1,
                10,
                None,
                None,
                20,
                1000,
                10,
                "TooManyReplicas",
            ),
            c(
                "desired replica count is more than the maximum replica count",
                100,
                150,
                None,
                None,
                100,
                1000,
                150,
                "TooManyReplicas",
            ),
            c(
                "scaleUpLimit is the limit because scaleUpLimit < maxReplicas with user policies",
                1,
                2000,
                Some(rules(0, 0, 1, 60, 0)),
                None,
                3,
                1000,
                4,
                "ScaleUpLimit",
            ),
            c(
                "scaleUp with default behavior",
                1,
                1000,
                None,
                None,
                10,
                50,
                20,
                "ScaleUpLimit",
            ),
            c(
                "scaleUp with pods policy larger than percent policy",
                1,
                1000,
                Some(rules(100, 60, 100, 60, 0)),
                None,
                10,
                500,
                110,
                "ScaleUpLimit",
            ),
            c(
                "scaleUp with percent policy larger than pods policy",
                1,
                1000,
                Some(rules(2, 60, 100, 60, 0)),
                None,
                10,
                500,
                20,
                "ScaleUpLimit",
            ),
            c(
                "scaleUp with spec MaxReplicas limitation with large pod policy",
                1,
                1000,
                Some(rules(100, 60, 0, 0, 0)),
                None,
                10,
                50,
                50,
                "DesiredWithinRange",
            ),
            c(
                "scaleUp with spec MaxReplicas limitation with large percent policy",
                1,
                1000,
                Some(rules(10000, 60, 0, 0, 0)),
                None,
                10,
                50,
                50,
                "DesiredWithinRange",
            ),
            c(
                "scaleUp with pod policy limitation",
                1,
                1000,
                Some(rules(30, 60, 0, 0, 0)),
                None,
                10,
                50,
                40,
                "ScaleUpLimit",
            ),
            c(
                "scaleUp with percent policy limitation",
                1,
                1000,
                Some(rules(0, 0, 200, 60, 0)),
                None,
                10,
                50,
                30,
                "ScaleUpLimit",
            ),
            c(
                "scaleDown with percent policy larger than pod policy",
                1,
                1000,
                None,
                Some(rules(20, 60, 1, 60, 300)),
                100,
                2,
                80,
                "ScaleDownLimit",
            ),
            c(
                "scaleDown with pod policy larger than percent policy",
                1,
                1000,
                None,
                Some(rules(2, 60, 1, 60, 300)),
                100,
                2,
                98,
                "ScaleDownLimit",
            ),
            c(
                "scaleDown with spec MinReplicas limitation with large pod policy",
                1,
                1000,
                None,
                Some(rules(100, 60, 0, 0, 300)),
                10,
                0,
                1,
                "TooFewReplicas",
            ),
            c(
                "scaleDown with spec MinReplicas limitation with large percent policy",
                5,
                1000,
                None,
                Some(rules(0, 0, 100, 60, 300)),
                10,
                2,
                5,
                "TooFewReplicas",
            ),
            c(
                "scaleDown with pod policy limitation",
                1,
                1000,
                None,
                Some(rules(5, 60, 0, 0, 300)),
                10,
                2,
                5,
                "ScaleDownLimit",
            ),
            c(
                "scaleDown with percent policy limitation",
                1,
                1000,
                None,
                Some(rules(0, 0, 50, 60, 300)),
                10,
                5,
                5,
                "DesiredWithinRange",
            ),
        ];
        let mut with_events = |name,
                               up: Vec<ScaleEvent>,
                               down: Vec<ScaleEvent>,
                               min,
                               max,
                               up_rules,
                               down_rules,
                               current,
                               desired,
                               want,
                               reason| {
            let mut k = c(
                name, min, max, up_rules, down_rules, current, desired, want, reason,
            );
            k.up_events = up;
            k.down_events = down;
            cases.push(k);
        };
        with_events(
            "scaleUp with spec MaxReplicas limitation with large pod policy and events",
            e(&[1, 5, 9], 120.0),
            vec![],
            1,
            200,
            Some(rules(300, 60, 0, 0, 0)),
            None,
            100,
            500,
            200,
            "TooManyReplicas",
        );
        with_events(
            "scaleUp with spec MaxReplicas limitation with large percent policy and events",
            e(&[1, 5, 9], 120.0),
            vec![],
            1,
            200,
            Some(rules(0, 0, 10000, 60, 0)),
            None,
            100,
            500,
            200,
            "TooManyReplicas",
        );
        with_events(
            "scaleUp with currentReplicas limitation with rate.PeriodSeconds with a lot of recent scale up events",
            e(&[1, 5, 9], 120.0),
            vec![],
            1,
            1000,
            Some(rules(5, 120, 0, 0, 0)),
            None,
            100,
            500,
            100,
            "ScaleUpLimit",
        );
        with_events(
            "scaleUp with pod policy and previous scale up events",
            e(&[1, 5, 9], 120.0),
            vec![],
            1,
            1000,
            Some(rules(150, 120, 0, 0, 0)),
            None,
            100,
            500,
            235,
            "ScaleUpLimit",
        );
        with_events(
            "scaleUp with percent policy and previous scale up events",
            e(&[1, 5, 9], 120.0),
            vec![],
            1,
            1000,
            Some(rules(0, 0, 200, 120, 0)),
            None,
            100,
            500,
            255,
            "ScaleUpLimit",
        );
        with_events(
            "scaleUp with percent policy and previous scale up and down events",
            e(&[4], 120.0),
            e(&[2], 120.0),
            1,
            1000,
            Some(rules(0, 0, 300, 300, 0)),
            None,
            6,
            24,
            16,
            "ScaleUpLimit",
        );
        with_events(
            "scaleDown with default policy and previous events",
            vec![],
            e(&[1, 5, 9], 120.0),
            1,
            1000,
            None,
            None,
            10,
            5,
            5,
            "DesiredWithinRange",
        );
        with_events(
            "scaleDown with spec MinReplicas=nil limitation with large pod policy and previous events",
            vec![],
            e(&[1, 5, 9], 120.0),
            1,
            1000,
            None,
            Some(rules(115, 120, 0, 0, 300)),
            100,
            0,
            1,
            "TooFewReplicas",
        );
        with_events(
            "scaleDown with spec MinReplicas limitation with large pod policy and previous events",
            vec![],
            e(&[1, 5, 9], 120.0),
            5,
            1000,
            None,
            Some(rules(130, 120, 0, 0, 300)),
            100,
            0,
            5,
            "TooFewReplicas",
        );
        with_events(
            "scaleDown with spec MinReplicas limitation with large percent policy and previous events",
            vec![],
            e(&[1, 5, 9], 120.0),
            5,
            1000,
            None,
            Some(rules(0, 0, 100, 120, 300)),
            100,
            2,
            5,
            "TooFewReplicas",
        );
        with_events(
            "scaleDown with pod policy limitation and previous events",
            vec![],
            e(&[1, 5, 9], 120.0),
            1,
            1000,
            None,
            Some(rules(5, 120, 0, 0, 300)),
            100,
            2,
            100,
            "ScaleDownLimit",
        );
        with_events(
            "scaleDown with percent policy limitation and previous events",
            vec![],
            e(&[2, 4, 6], 120.0),
            1,
            1000,
            None,
            Some(rules(0, 0, 50, 120, 300)),
            100,
            0,
            56,
            "ScaleDownLimit",
        );
        with_events(
            "scaleDown with percent policy and previous scale up and down events",
            e(&[2], 120.0),
            e(&[4], 120.0),
            1,
            1000,
            None,
            Some(rules(0, 0, 50, 180, 0)),
            10,
            1,
            6,
            "ScaleDownLimit",
        );
        with_events(
            "scaleDown with previous events preventing further scale down",
            vec![],
            e(&[10, 10, 10], 120.0),
            1,
            1000,
            None,
            Some(rules(0, 0, 10, 120, 300)),
            100,
            0,
            100,
            "ScaleDownLimit",
        );
        with_events(
            "scaleDown with with previous events still allowing more scale down",
            vec![],
            e(&[10, 10, 10], 120.0),
            1,
            1000,
            None,
            Some(rules(0, 0, 1000, 120, 300)),
            10,
            5,
            5,
            "DesiredWithinRange",
        );
        with_events(
            "check 'outdated' flag for events for one behavior for up",
            e(&[8, 12, 9, 11], 120.0),
            vec![],
            1,
            1000,
            Some(rules(1000, 60, 0, 0, 0)),
            None,
            100,
            200,
            200,
            "DesiredWithinRange",
        );
        with_events(
            "check that events were not marked 'outdated' for two different policies in the behavior for up",
            e(&[8, 12, 9, 11], 120.0),
            vec![],
            1,
            1000,
            Some(rules(1000, 120, 100, 60, 0)),
            None,
            100,
            200,
            200,
            "DesiredWithinRange",
        );
        with_events(
            "check that events were marked 'outdated' for two different policies in the behavior for up",
            e(&[8, 12, 9, 11], 120.0),
            vec![],
            1,
            1000,
            Some(rules(1000, 30, 100, 60, 0)),
            None,
            100,
            200,
            200,
            "DesiredWithinRange",
        );
        with_events(
            "check 'outdated' flag for events for one behavior for down",
            vec![],
            e(&[8, 12, 9, 11], 120.0),
            1,
            1000,
            None,
            Some(rules(1000, 60, 0, 0, 300)),
            100,
            5,
            5,
            "DesiredWithinRange",
        );
        with_events(
            "check that events were not marked 'outdated' for two different policies in the behavior for down",
            vec![],
            e(&[8, 12, 9, 11], 120.0),
            1,
            1000,
            None,
            Some(rules(1000, 120, 100, 60, 300)),
            100,
            5,
            5,
            "DesiredWithinRange",
        );
        with_events(
            "check that events were marked 'outdated' for two different policies in the behavior for down",
            vec![],
            e(&[8, 12, 9, 11], 120.0),
            1,
            1000,
            None,
            Some(rules(1000, 30, 100, 60, 300)),
            100,
            5,
            5,
            "DesiredWithinRange",
        );

        for k in cases {
            // Upstream's test always passes a (defaulted) behavior to convertDesiredReplicasWithBehaviorRate.
            let n = Normalizer {
                behavior: Some(Behavior {
                    scale_up: k.up.unwrap_or_else(ScalingRules::default_up),
                    scale_down: k.down.unwrap_or_else(ScalingRules::default_down),
                }),
                scale_up_events: k.up_events,
                scale_down_events: k.down_events,
                ..Normalizer::new(None)
            };
            let (replicas, reason) = n.convert(k.current, k.desired, k.min, k.max, NOW);
            assert_eq!((replicas, reason), (k.want, k.reason), "{}", k.name);
        }
    }

    fn recs(list: &[(i32, f64)]) -> Vec<Recommendation> {
        list.iter()
            .map(|&(replicas, ago)| Recommendation {
                replicas,
                at_seconds: NOW - ago,
            })
            .collect()
    }

    #[test]
    fn normalize_desired_replicas() {
        // (name, recommendations (replicas, seconds ago), desired, stabilized, log length)
        type Case = (&'static str, Vec<(i32, f64)>, i32, i32, usize);
        let cases: Vec<Case> = vec![
            ("empty log", vec![], 5, 5, 1),
            ("stabilize", vec![(4, 120.0), (5, 60.0)], 3, 5, 3),
            ("no stabilize", vec![(1, 120.0), (2, 60.0)], 3, 3, 3),
            (
                "no stabilize - old recommendations",
                vec![(10, 600.0), (9, 540.0)],
                3,
                3,
                2,
            ),
            (
                "stabilize - old recommendations",
                vec![(10, 600.0), (4, 60.0), (5, 120.0), (9, 540.0)],
                3,
                5,
                4,
            ),
        ];
        for (name, log, desired, want, len) in cases {
            let mut n = Normalizer::new(None);
            n.recommendations = recs(&log);
            assert_eq!(n.stabilize(desired, NOW), want, "{name}");
            assert_eq!(n.recommendations.len(), len, "{name}: log length");
        }
    }

    #[test]
    fn normalize_desired_replicas_with_behavior() {
        // (name, recommendations, current, desired, stabilized, stored after, up window, down window)
        type Case = (
            &'static str,
            Vec<(i32, f64)>,
            i32,
            i32,
            i32,
            Option<Vec<i32>>,
            i32,
            i32,
        );
        let cases: Vec<Case> = vec![
            (
                "empty recommendations for scaling down",
                vec![],
                100,
                5,
                5,
                Some(vec![5]),
                0,
                0,
            ),
            (
                "simple scale down stabilization",
                vec![(4, 120.0), (5, 60.0)],
                100,
                3,
                5,
                Some(vec![4, 5, 3]),
                0,
                180,
            ),
            (
                "simple scale up stabilization",
                vec![(4, 120.0), (5, 60.0)],
                1,
                7,
                4,
                Some(vec![4, 5, 7]),
                300,
                0,
            ),
            (
                "no scale down stabilization",
                vec![(1, 120.0), (2, 60.0)],
                100,
                3,
                3,
                Some(vec![1, 2, 3]),
                300,
                0,
            ),
            (
                "no scale up stabilization",
                vec![(4, 120.0), (5, 60.0)],
                1,
                3,
                3,
                Some(vec![4, 5, 3]),
                0,
                300,
            ),
            (
                "no scale down stabilization, reuse recommendation element",
                vec![(10, 600.0), (9, 540.0)],
                100,
                3,
                3,
                Some(vec![10, 3]),
                0,
                0,
            ),
            (
                "no scale up stabilization, reuse recommendation element",
                vec![(10, 600.0), (9, 540.0)],
                1,
                100,
                100,
                Some(vec![10, 100]),
                0,
                0,
            ),
            (
                "scale down stabilization, reuse one of obsolete recommendation element",
                vec![(10, 600.0), (4, 60.0), (5, 120.0), (9, 540.0)],
                100,
                3,
                5,
                Some(vec![10, 4, 5, 3]),
                0,
                180,
            ),
            (
                "scale up stabilization, reuse one of obsolete recommendation element",
                vec![(10, 6000.0), (6, 60.0), (5, 120.0), (9, 180.0)],
                1,
                100,
                5,
                Some(vec![100, 6, 5, 9]),
                300,
                0,
            ),
            (
                "scale up and down stabilization, do not scale up when prenormalized rec goes down",
                vec![(2, 6000.0), (3, 180.0)],
                2,
                1,
                2,
                None,
                300,
                300,
            ),
            (
                "scale up and down stabilization, do not scale down when prenormalized rec goes up",
                vec![(2, 6000.0), (1, 180.0)],
                2,
                3,
                2,
                None,
                300,
                300,
            ),
        ];
        for (name, log, current, desired, want, stored, up, down) in cases {
            let mut n = Normalizer::new(Some(Behavior {
                scale_up: ScalingRules {
                    stabilization_window_seconds: up,
                    ..ScalingRules::default_up()
                },
                scale_down: ScalingRules {
                    stabilization_window_seconds: down,
                    ..ScalingRules::default_down()
                },
            }));
            n.recommendations = recs(&log);
            assert_eq!(
                n.stabilize_with_behaviors(current, desired, NOW),
                want,
                "{name}"
            );
            if let Some(stored) = stored {
                let got: Vec<i32> = n.recommendations.iter().map(|r| r.replicas).collect();
                assert_eq!(got, stored, "{name}: stored recommendations");
            }
        }
    }
}
