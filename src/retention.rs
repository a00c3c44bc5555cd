//! The retention policy: which bundles `prune` keeps, as a pure function of
//! (bundles, policy, now), so every rule can be tested with fixed times.
//!
//! The rules follow restic's `forget`: a bundle is kept when any rule keeps it.
//! `daily`, `weekly` (ISO weeks) and `monthly` keep the newest bundle of each of
//! the last N periods that have bundles, in UTC. Two rules no policy can turn
//! off: the newest good bundle is always kept, the newest bundle in which each
//! store was healthy is always kept (`last-healthy`, see [`crate::shrink`]),
//! and pre-restore safety bundles are kept while younger than
//! `keep_safety_days`. Damaged bundles are never
//! candidates, so they cannot take a keep slot from a good one.

use jiff::civil::Date;

use crate::bundle::BundleId;
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};
use serde::{Deserialize, Serialize};

/// Safety bundles younger than this many days survive any policy by default.
pub const DEFAULT_KEEP_SAFETY_DAYS: u32 = 7;

/// A retention policy. One type is the config's `[retention]` table
/// (serde), `bundle prune`'s rule flags (clap) and the rule set the engine
/// applies, so the three can never drift apart.
#[derive(Debug, Clone, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Keep the newest N bundles
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep every bundle created within DURATION before now (e.g. 7d, 36h, 2w, 3 months)
    #[arg(long, value_name = "DURATION", value_parser = parse_span)]
    #[serde(default, deserialize_with = "span_text")]
    pub keep_within: Option<Span>,
    /// Keep the newest bundle of each of the last N days that have bundles (UTC)
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest bundle of each of the last N ISO weeks that have bundles
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest bundle of each of the last N months that have bundles
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Pre-restore safety bundles younger than this many days are always kept
    /// (`None`: [`DEFAULT_KEEP_SAFETY_DAYS`]; config only)
    #[arg(skip)]
    pub keep_safety_days: Option<u32>,
}

/// Parses a span such as `7d`, `2w`, `36h`, `1 month` or ISO 8601 `P7D`.
pub fn parse_span(text: &str) -> std::result::Result<Span, String> {
    let span: Span = text.trim().parse().map_err(|e| {
        format!("\"{text}\" is not a duration ({e}); write it like 7d, 12h, 2w or 3 months")
    })?;
    if span.is_negative() || span.is_zero() {
        return Err(format!("\"{text}\" must be a positive duration"));
    }
    Ok(span)
}

/// Reads a duration such as `7d` or `3 months` (see [`parse_span`]).
fn span_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Span>, D::Error> {
    let text = String::deserialize(d)?;
    parse_span(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

impl Policy {
    /// Whether no keep rule is set (a prune without rules would delete everything).
    pub fn has_no_rules(&self) -> bool {
        self.keep_last.is_none()
            && self.keep_within.is_none()
            && self.keep_daily.is_none()
            && self.keep_weekly.is_none()
            && self.keep_monthly.is_none()
    }

    /// The policy to apply: `flags` when they set any rule, else this one (the
    /// config's); `keep_safety_days` comes from the config unless flags set it.
    pub fn or_flags(&self, flags: &Policy) -> Policy {
        let mut chosen = if flags.has_no_rules() {
            self.clone()
        } else {
            flags.clone()
        };
        chosen.keep_safety_days = flags.keep_safety_days.or(self.keep_safety_days);
        chosen
    }
}

/// Why a bundle is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// The newest bundle that passes the quick check: never deleted.
    NewestGood,
    /// The newest bundle in which some store was healthy: never deleted, so
    /// a week of bundles of a wiped store cannot rotate the data out.
    LastHealthy,
    /// A pre-restore safety bundle younger than `keep_safety_days`.
    Safety,
    /// Among the newest `keep_last`.
    Last,
    /// Created within `keep_within` of now.
    Within,
    /// Newest of its day.
    Daily,
    /// Newest of its ISO week.
    Weekly,
    /// Newest of its month.
    Monthly,
}

impl Reason {
    /// The name printed and written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NewestGood => "newest-good",
            Reason::LastHealthy => "last-healthy",
            Reason::Safety => "safety",
            Reason::Last => "last",
            Reason::Within => "within",
            Reason::Daily => "daily",
            Reason::Weekly => "weekly",
            Reason::Monthly => "monthly",
        }
    }
}

/// A good (undamaged) bundle the policy decides about.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The bundle id.
    pub id: String,
    /// Its manifest's `created_at`.
    pub created_at: Timestamp,
    /// Whether it is a pre-restore safety bundle.
    pub safety: bool,
    /// The stores healthy in it (see [`crate::shrink::healthy_in`]).
    pub healthy: Vec<String>,
}

/// The decision about one candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The bundle id.
    pub id: String,
    /// Why it is kept; empty means delete.
    pub reasons: Vec<Reason>,
    /// The stores whose last healthy bundle this is.
    pub last_healthy: Vec<String>,
}

impl Decision {
    /// Whether the bundle is kept.
    pub fn keep(&self) -> bool {
        !self.reasons.is_empty()
    }
}

/// A period rule: how many slots are left and the last period that took one.
struct PeriodRule<K> {
    reason: Reason,
    slots: u32,
    last: Option<K>,
}

impl<K: PartialEq> PeriodRule<K> {
    fn new(reason: Reason, slots: Option<u32>) -> Self {
        PeriodRule {
            reason,
            slots: slots.unwrap_or(0),
            last: None,
        }
    }

    /// Offers a bundle of `period` (newest first); true when it takes a slot.
    fn offer(&mut self, period: K) -> bool {
        if self.slots == 0 || self.last.as_ref() == Some(&period) {
            return false;
        }
        self.slots -= 1;
        self.last = Some(period);
        true
    }
}

/// Decides which candidates to keep; returns one decision per candidate, newest first.
pub fn decide(candidates: &[Candidate], policy: &Policy, now: Timestamp) -> Vec<Decision> {
    let mut sorted: Vec<&Candidate> = candidates.iter().collect();
    // Newest first; bundles of the same second order by id suffix (`-2` < `-10`).
    sorted.sort_by_cached_key(|c| std::cmp::Reverse((c.created_at, BundleId::parse(&c.id))));
    let within_since = policy.keep_within.map(|span| before(now, span));
    let safety_days = policy.keep_safety_days.unwrap_or(DEFAULT_KEEP_SAFETY_DAYS);
    let safety_since = before(now, Span::new().days(i64::from(safety_days)));
    let mut daily = PeriodRule::<Date>::new(Reason::Daily, policy.keep_daily);
    let mut weekly = PeriodRule::<(i16, i8)>::new(Reason::Weekly, policy.keep_weekly);
    let mut monthly = PeriodRule::<(i16, i8)>::new(Reason::Monthly, policy.keep_monthly);
    let mut last_slots = policy.keep_last.unwrap_or(0);

    let mut decisions = Vec::with_capacity(sorted.len());
    let mut seen_healthy = std::collections::BTreeSet::new();
    for (i, c) in sorted.iter().enumerate() {
        let mut reasons = Vec::new();
        if i == 0 {
            reasons.push(Reason::NewestGood);
        }
        let last_healthy: Vec<String> = c
            .healthy
            .iter()
            .filter(|s| seen_healthy.insert(s.as_str()))
            .cloned()
            .collect();
        if !last_healthy.is_empty() {
            reasons.push(Reason::LastHealthy);
        }
        if c.safety && c.created_at > safety_since {
            reasons.push(Reason::Safety);
        }
        if last_slots > 0 {
            last_slots -= 1;
            reasons.push(Reason::Last);
        }
        if within_since.is_some_and(|since| c.created_at >= since) {
            reasons.push(Reason::Within);
        }
        let date = TimeZone::UTC.to_datetime(c.created_at).date();
        let week = date.iso_week_date();
        if daily.offer(date) {
            reasons.push(daily.reason);
        }
        if weekly.offer((week.year(), week.week())) {
            reasons.push(weekly.reason);
        }
        if monthly.offer((date.year(), date.month())) {
            reasons.push(monthly.reason);
        }
        decisions.push(Decision {
            id: c.id.clone(),
            reasons,
            last_healthy,
        });
    }
    decisions
}

/// The instant `span` before `now` in UTC calendar terms (the far past on overflow).
fn before(now: Timestamp, span: Span) -> Timestamp {
    TimeZone::UTC
        .to_datetime(now)
        .checked_sub(span)
        .ok()
        .and_then(|dt| TimeZone::UTC.to_timestamp(dt).ok())
        .unwrap_or(Timestamp::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn candidates(times: &[&str]) -> Vec<Candidate> {
        times
            .iter()
            .map(|t| Candidate {
                id: t.to_string(),
                created_at: at(t),
                safety: false,
                healthy: Vec::new(),
            })
            .collect()
    }

    fn kept(decisions: &[Decision]) -> Vec<&str> {
        decisions
            .iter()
            .filter(|d| d.keep())
            .map(|d| d.id.as_str())
            .collect()
    }

    fn reasons_of<'a>(decisions: &'a [Decision], id: &str) -> &'a [Reason] {
        &decisions.iter().find(|d| d.id == id).unwrap().reasons
    }

    const NOW: &str = "2026-11-23T12:00:00Z";

    #[test]
    fn no_rules_keeps_only_the_newest_good_bundle() {
        let c = candidates(&["2026-11-20T01:00:00Z", "2026-11-21T01:00:00Z"]);
        let policy = Policy {
            keep_last: Some(0),
            ..Policy::default()
        };
        let d = decide(&c, &policy, at(NOW));
        assert_eq!(kept(&d), ["2026-11-21T01:00:00Z"]);
        assert_eq!(reasons_of(&d, "2026-11-21T01:00:00Z"), [Reason::NewestGood]);
        assert!(Policy::default().has_no_rules());
        assert!(!policy.has_no_rules());
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day_with_bundles_across_gaps() {
        // Two bundles on the 20th, a gap of several days, then the 16th and 10th.
        let c = candidates(&[
            "2026-11-10T08:00:00Z",
            "2026-11-16T23:59:59Z",
            "2026-11-20T01:00:00Z",
            "2026-11-20T22:00:00Z",
        ]);
        let policy = Policy {
            keep_daily: Some(2),
            ..Policy::default()
        };
        let d = decide(&c, &policy, at(NOW));
        assert_eq!(kept(&d), ["2026-11-20T22:00:00Z", "2026-11-16T23:59:59Z"]);
        assert_eq!(
            reasons_of(&d, "2026-11-20T22:00:00Z"),
            [Reason::NewestGood, Reason::Daily]
        );
        assert_eq!(reasons_of(&d, "2026-11-16T23:59:59Z"), [Reason::Daily]);
    }

    #[test]
    fn a_bundle_exactly_at_midnight_belongs_to_the_new_day() {
        let c = candidates(&[
            "2026-11-20T23:59:59Z",
            "2026-11-21T00:00:00Z",
            "2026-11-21T06:00:00Z",
        ]);
        let policy = Policy {
            keep_daily: Some(2),
            ..Policy::default()
        };
        let d = decide(&c, &policy, at(NOW));
        // 00:00:00 is the 21st, so the 21st's newest (06:00) and the 20th's newest.
        assert_eq!(kept(&d), ["2026-11-21T06:00:00Z", "2026-11-20T23:59:59Z"]);
    }

    #[test]
    fn weekly_uses_iso_weeks_across_a_year_boundary() {
        // 2026-12-28 (Mon) .. 2027-01-03 (Sun) is ISO week 2026-W53.
        let c = candidates(&[
            "2026-12-20T10:00:00Z", // W51 (Sunday)
            "2026-12-21T10:00:00Z", // W52 (Monday)
            "2026-12-28T10:00:00Z", // W53
            "2027-01-03T10:00:00Z", // W53 (Sunday), newest of it
            "2027-01-04T10:00:00Z", // 2027-W01
        ]);
        let policy = Policy {
            keep_weekly: Some(3),
            ..Policy::default()
        };
        let d = decide(&c, &policy, at("2027-01-05T00:00:00Z"));
        assert_eq!(
            kept(&d),
            [
                "2027-01-04T10:00:00Z",
                "2027-01-03T10:00:00Z",
                "2026-12-21T10:00:00Z"
            ]
        );
    }

    #[test]
    fn monthly_keeps_the_newest_of_each_month() {
        let c = candidates(&[
            "2026-08-31T23:00:00Z",
            "2026-09-01T00:00:00Z",
            "2026-09-30T12:00:00Z",
            "2026-11-02T00:00:00Z",
        ]);
        let policy = Policy {
            keep_monthly: Some(2),
            ..Policy::default()
        };
        let d = decide(&c, &policy, at(NOW));
        // October has no bundles, so the two months are November and September.
        assert_eq!(kept(&d), ["2026-11-02T00:00:00Z", "2026-09-30T12:00:00Z"]);
    }

    #[test]
    fn last_and_within_combine_and_list_every_reason() {
        let c = candidates(&[
            "2026-11-01T00:00:00Z",
            "2026-11-16T12:00:00Z", // exactly 7 days before now: within
            "2026-11-16T11:59:59Z", // one second older: not within
            "2026-11-22T00:00:00Z",
        ]);
        let policy = Policy {
            keep_last: Some(2),
            keep_within: Some("7d".parse().unwrap()),
            ..Policy::default()
        };
        let d = decide(&c, &policy, at(NOW));
        assert_eq!(kept(&d), ["2026-11-22T00:00:00Z", "2026-11-16T12:00:00Z"]);
        assert_eq!(
            reasons_of(&d, "2026-11-22T00:00:00Z"),
            [Reason::NewestGood, Reason::Last, Reason::Within]
        );
        assert_eq!(
            reasons_of(&d, "2026-11-16T12:00:00Z"),
            [Reason::Last, Reason::Within]
        );
        assert!(reasons_of(&d, "2026-11-16T11:59:59Z").is_empty());
    }

    #[test]
    fn young_safety_bundles_survive_every_policy() {
        let mut c = candidates(&[
            "2026-11-10T00:00:00Z",
            "2026-11-17T00:00:00Z",
            "2026-11-22T00:00:00Z",
        ]);
        c[0].safety = true; // 13 days old: no longer protected
        c[1].safety = true; // 6.5 days old: protected
        let policy = Policy {
            keep_last: Some(0),
            ..Policy::default()
        };
        let d = decide(&c, &policy, at(NOW));
        assert_eq!(kept(&d), ["2026-11-22T00:00:00Z", "2026-11-17T00:00:00Z"]);
        assert_eq!(reasons_of(&d, "2026-11-17T00:00:00Z"), [Reason::Safety]);
        let shorter = Policy {
            keep_safety_days: Some(3),
            ..policy
        };
        assert_eq!(
            kept(&decide(&c, &shorter, at(NOW))),
            ["2026-11-22T00:00:00Z"]
        );
    }

    #[test]
    fn flags_replace_the_config_policy_but_not_its_safety_days() {
        let config = Policy {
            keep_last: Some(3),
            keep_daily: Some(7),
            keep_safety_days: Some(14),
            ..Policy::default()
        };
        let flags = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        let chosen = config.or_flags(&flags);
        assert_eq!(chosen.keep_last, Some(1));
        assert_eq!(chosen.keep_daily, None);
        assert_eq!(chosen.keep_safety_days, Some(14));
        assert_eq!(config.or_flags(&Policy::default()).keep_daily, Some(7));
    }
}
