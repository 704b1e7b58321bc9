//! Settings that change what the dataflows compute. Defaults are the contract's.

use serde::{Deserialize, Serialize};
use tidemark_records::records::Millis;

use crate::model::name::Name;

/// The semantic knobs of the contract ("Gap and the midnight split are settings", ...).
/// Loaded from a TOML file and CLI flags by the binary; unknown keys are rejected.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// A gap of at least this many minutes between a user's events starts a new session.
    pub session_gap_minutes: f64,
    /// Whether a derived session also ends at each UTC midnight.
    pub midnight_split: bool,
    /// Length of the tumbling activity windows, in minutes.
    pub window_minutes: f64,
    /// Number of window slots before a window that form its spike baseline.
    pub baseline_windows: usize,
    /// Percentile (0..1) of the baseline compared against a window.
    pub baseline_percentile: f64,
    /// Days of history in the `alert` baseline: the same window of each of the previous
    /// this many days (see `spike_alerts.alert`).
    pub alert_days: usize,
    /// How many robust deviations above its baseline a window must be to alert.
    pub alert_deviations: f64,
    /// The fewest sessions started in a window that can alert.
    pub alert_min_sessions: i64,
    /// Active users with at least this many sessions in the period count as engaged.
    pub engaged_sessions: u64,
    /// Start of the KPI analysis period (inclusive), RFC 3339; none means all data.
    pub from: Option<String>,
    /// End of the KPI analysis period (exclusive), RFC 3339; none means all data.
    pub to: Option<String>,
    /// How far (minutes) behind the largest event time seen an event may still arrive.
    pub allowed_lateness_minutes: f64,
    /// Also forget what only a row behind the watermark could still need: the event ids
    /// of closed days (deduplication), the events of closed months (segments) and the
    /// dimension state of closed days. Memory then grows more slowly on an endless
    /// stream, at a documented cost: an id repeated after its first copy's day closed
    /// counts again, a `users/` or `subscriptions/` row no longer moves the events of
    /// months already closed, and a late `items/` or `users/` row no longer moves the
    /// events of closed days between dimension members.
    pub forget_behind_watermark: bool,
    /// What `engagement_by_dimension` slices accepted events by: `hour_of_day`,
    /// `genre`, `artist` (from `items/`), `country` and any user attribute (from
    /// `users/`, a column brought in by the mapping or of the same name).
    pub dimensions: Vec<String>,
}

/// One dimension of `engagement_by_dimension` (contract "Dimensions").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Dimension {
    /// The event's UTC hour, `00` to `23`.
    HourOfDay,
    /// The `genre` of the latest `items/` row of the event's item.
    Genre,
    /// The `artist_id` of the latest `items/` row of the event's item.
    Artist,
    /// The `country` of the user's latest `users/` row.
    Country,
    /// A user attribute brought in by the mapping: that column of the user's latest
    /// `users/` row.
    Attribute(Name),
}

impl Dimension {
    /// The dimensions with a name of their own, in the order rows list them.
    pub const BUILT_IN: [Dimension; 4] = [
        Dimension::HourOfDay,
        Dimension::Genre,
        Dimension::Artist,
        Dimension::Country,
    ];

    /// The setting's (and the table's) name of the dimension.
    pub fn name(self) -> String {
        match self {
            Dimension::HourOfDay => "hour_of_day".to_string(),
            Dimension::Genre => "genre".to_string(),
            Dimension::Artist => "artist".to_string(),
            Dimension::Country => "country".to_string(),
            Dimension::Attribute(name) => name.text().to_string(),
        }
    }

    /// The dimension called `name`: a built-in one, else a user attribute.
    pub fn named(name: &str) -> Result<Dimension, String> {
        let name = name.trim();
        if let Some(d) = Dimension::BUILT_IN.into_iter().find(|d| d.name() == name) {
            return Ok(d);
        }
        tidemark_records::check_attribute_name(name)
            .map_err(|e| format!("setting `dimensions`: {e}"))?;
        Ok(Dimension::Attribute(Name::new(name)))
    }
}

/// The most user attributes one run slices by.
pub const MAX_ATTRIBUTE_DIMENSIONS: usize = 8;

/// A set of dimensions (`Copy`, so `Params` stays `Copy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dimensions {
    /// Bit `i` set: `Dimension::BUILT_IN[i]` is in the set.
    built_in: u8,
    /// User attributes, in the order named.
    attributes: [Option<Name>; MAX_ATTRIBUTE_DIMENSIONS],
}

impl Dimensions {
    /// The set of `dimensions` (an error past [`MAX_ATTRIBUTE_DIMENSIONS`] attributes).
    pub fn of(dimensions: &[Dimension]) -> Result<Dimensions, String> {
        let mut set = Dimensions::default();
        for d in dimensions {
            match d {
                Dimension::Attribute(name) => {
                    if set.attributes.contains(&Some(*name)) {
                        continue;
                    }
                    let free = set.attributes.iter_mut().find(|a| a.is_none()).ok_or_else(|| {
                        format!(
                            "setting `dimensions`: at most {MAX_ATTRIBUTE_DIMENSIONS} user attributes"
                        )
                    })?;
                    *free = Some(*name);
                }
                built_in => {
                    let bit = Dimension::BUILT_IN
                        .iter()
                        .position(|b| b == built_in)
                        .unwrap_or(0);
                    set.built_in |= 1 << bit;
                }
            }
        }
        Ok(set)
    }

    /// Whether `dimension` is in the set.
    pub fn contains(self, dimension: Dimension) -> bool {
        match dimension {
            Dimension::Attribute(name) => self.attributes.contains(&Some(name)),
            built_in => Dimension::BUILT_IN
                .iter()
                .position(|b| *b == built_in)
                .is_some_and(|bit| self.built_in & (1 << bit) != 0),
        }
    }

    /// The dimensions in the set: the built-in ones, then the user attributes.
    pub fn iter(self) -> impl Iterator<Item = Dimension> + Clone {
        Dimension::BUILT_IN
            .into_iter()
            .filter(move |d| self.contains(*d))
            .chain(
                self.attributes
                    .into_iter()
                    .flatten()
                    .map(Dimension::Attribute),
            )
    }

    /// The user attributes in the set, by name.
    pub fn attribute_names(self) -> Vec<String> {
        self.attributes
            .into_iter()
            .flatten()
            .map(|n| n.text().to_string())
            .collect()
    }
}

fn default_dimensions() -> Dimensions {
    Params::default().dimensions
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            session_gap_minutes: 30.0,
            midnight_split: true,
            window_minutes: 5.0,
            baseline_windows: 12,
            baseline_percentile: 0.95,
            alert_days: 7,
            alert_deviations: 6.0,
            alert_min_sessions: 5,
            engaged_sessions: 80,
            from: None,
            to: None,
            allowed_lateness_minutes: 60.0,
            forget_behind_watermark: false,
            dimensions: vec![
                "hour_of_day".to_string(),
                "genre".to_string(),
                "artist".to_string(),
            ],
        }
    }
}

/// The settings resolved into the units the dataflows work in.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Session gap in ms.
    pub session_gap_ms: Millis,
    /// Midnight split on or off.
    pub midnight_split: bool,
    /// Window length in ms.
    pub window_ms: Millis,
    /// Baseline slots.
    pub baseline_windows: usize,
    /// Baseline percentile in 0..=1.
    pub baseline_percentile: f64,
    /// Days in the `alert` baseline (at least 1).
    #[serde(default = "default_alert_days")]
    pub alert_days: usize,
    /// Robust deviations above the `alert` baseline needed to alert (at least 0).
    #[serde(default = "default_alert_deviations")]
    pub alert_deviations: f64,
    /// Fewest sessions started that can alert.
    #[serde(default = "default_alert_min_sessions")]
    pub alert_min_sessions: i64,
    /// Engaged threshold in sessions.
    pub engaged_sessions: u64,
    /// Analysis period start (inclusive); `Millis::MIN` for all data.
    pub period_from: Millis,
    /// Analysis period end (exclusive); `Millis::MAX` for all data.
    pub period_to: Millis,
    /// Allowed lateness in ms.
    pub allowed_lateness_ms: Millis,
    /// See [`Settings::forget_behind_watermark`].
    pub forget_behind_watermark: bool,
    /// See [`Settings::dimensions`].
    #[serde(default = "default_dimensions")]
    pub dimensions: Dimensions,
}

fn default_alert_days() -> usize {
    Settings::default().alert_days
}

fn default_alert_deviations() -> f64 {
    Settings::default().alert_deviations
}

fn default_alert_min_sessions() -> i64 {
    Settings::default().alert_min_sessions
}

impl Default for Params {
    fn default() -> Self {
        Settings::default()
            .params()
            .expect("default settings are valid")
    }
}

impl Settings {
    /// Checks every value and converts to [`Params`]; the error names the offending key.
    pub fn params(&self) -> Result<Params, String> {
        // A duration in minutes: positive (at least a millisecond), or with `zero_ok`
        // also 0; at most 100 years, so that every derived instant stays in range.
        let minutes = |key: &str, v: f64, zero_ok: bool| -> Result<Millis, String> {
            const MAX_MINUTES: f64 = 100.0 * 366.0 * 24.0 * 60.0;
            let ms = (v * 60_000.0).round();
            let ok =
                v.is_finite() && v <= MAX_MINUTES && if zero_ok { v >= 0.0 } else { ms >= 1.0 };
            if !ok {
                let low = if zero_ok { "0 or more" } else { "more than 0" };
                return Err(format!(
                    "setting `{key}` must be a number of minutes, {low} and at most {MAX_MINUTES}, got {v}"
                ));
            }
            Ok(ms as Millis)
        };
        let instant = |key: &str, v: &Option<String>| -> Result<Option<Millis>, String> {
            match v {
                None => Ok(None),
                Some(text) => tidemark_records::timestamp::parse_instant(text)
                    .map(Some)
                    .ok_or_else(|| {
                        format!("setting `{key}` must be an RFC 3339 time or `YYYY-MM-DD[ HH:MM:SS]`, got {text:?}")
                    }),
            }
        };
        let session_gap_ms = minutes("session_gap_minutes", self.session_gap_minutes, false)?;
        let window_ms = minutes("window_minutes", self.window_minutes, false)?;
        let allowed_lateness_ms = minutes(
            "allowed_lateness_minutes",
            self.allowed_lateness_minutes,
            true,
        )?;
        if self.baseline_windows == 0 {
            return Err("setting `baseline_windows` must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.baseline_percentile) {
            return Err(format!(
                "setting `baseline_percentile` must be within 0..1, got {}",
                self.baseline_percentile
            ));
        }
        if !(1..=366).contains(&self.alert_days) {
            return Err(format!(
                "setting `alert_days` must be a number of days from 1 to 366, got {}",
                self.alert_days
            ));
        }
        if !(self.alert_deviations.is_finite() && (0.0..=1e6).contains(&self.alert_deviations)) {
            return Err(format!(
                "setting `alert_deviations` must be a number from 0 to 1000000, got {}",
                self.alert_deviations
            ));
        }
        if !(0..=1_000_000_000).contains(&self.alert_min_sessions) {
            return Err(format!(
                "setting `alert_min_sessions` must be a count from 0 to 1000000000, got {}",
                self.alert_min_sessions
            ));
        }
        let dimensions = self
            .dimensions
            .iter()
            .map(|name| Dimension::named(name))
            .collect::<Result<Vec<_>, _>>()?;
        let period_from = instant("from", &self.from)?.unwrap_or(Millis::MIN);
        let period_to = instant("to", &self.to)?.unwrap_or(Millis::MAX);
        if period_from >= period_to {
            return Err("setting `from` must be before `to`".into());
        }
        Ok(Params {
            session_gap_ms,
            midnight_split: self.midnight_split,
            window_ms,
            baseline_windows: self.baseline_windows,
            baseline_percentile: self.baseline_percentile,
            alert_days: self.alert_days,
            alert_deviations: self.alert_deviations,
            alert_min_sessions: self.alert_min_sessions,
            engaged_sessions: self.engaged_sessions,
            period_from,
            period_to,
            allowed_lateness_ms,
            forget_behind_watermark: self.forget_behind_watermark,
            dimensions: Dimensions::of(&dimensions)?,
        })
    }
}
