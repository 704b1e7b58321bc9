//! Settings from a TOML file and from CLI flags (flags win), resolved into [`Params`].

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use tidemark_dataflows::model::settings::{Params, Settings};

/// The settings flags of `tidemark run`; each one overrides the same key of `--settings`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct SettingsArgs {
    /// TOML file with any of the keys below (snake_case), e.g. `session_gap_minutes = 20`.
    #[arg(long, value_name = "FILE")]
    pub settings: Option<PathBuf>,
    /// A gap of at least this many minutes starts a new session [default: 30].
    #[arg(long, value_name = "MIN", allow_negative_numbers = true)]
    pub session_gap_minutes: Option<f64>,
    /// Split derived sessions at each UTC midnight [default: true].
    #[arg(long, value_name = "BOOL")]
    pub midnight_split: Option<bool>,
    /// Length of the tumbling windows in minutes [default: 5].
    #[arg(long, value_name = "MIN", allow_negative_numbers = true)]
    pub window_minutes: Option<f64>,
    /// Window slots in the spike baseline [default: 12].
    #[arg(long, value_name = "N")]
    pub baseline_windows: Option<usize>,
    /// Percentile of the spike baseline, 0..1 [default: 0.95].
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    pub baseline_percentile: Option<f64>,
    /// Days of history in the spike `alert` baseline (the same window on each) [default: 7].
    #[arg(long, value_name = "DAYS")]
    pub alert_days: Option<usize>,
    /// Robust deviations above its baseline a window needs to alert [default: 6].
    #[arg(long, value_name = "K", allow_negative_numbers = true)]
    pub alert_deviations: Option<f64>,
    /// Fewest sessions started in a window that can alert [default: 5].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub alert_min_sessions: Option<i64>,
    /// Sessions in the period that make an active user engaged [default: 80].
    #[arg(long, value_name = "N")]
    pub engaged_sessions: Option<u64>,
    /// Start of the KPI analysis period (inclusive), e.g. 2025-03-01 [default: all data].
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// End of the KPI analysis period (exclusive) [default: all data].
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Minutes an event may arrive behind the largest event time seen [default: 60].
    #[arg(long, value_name = "MIN", allow_negative_numbers = true)]
    pub allowed_lateness_minutes: Option<f64>,
    /// Forget event ids of closed days and events of closed months, for flat memory on
    /// an endless stream (see README "Bounded state") [default: false].
    #[arg(long, value_name = "BOOL")]
    pub forget_behind_watermark: Option<bool>,
    /// What engagement_by_dimension slices by, comma-separated: hour_of_day, genre,
    /// artist, country, or a user attribute (a [users.columns] key of the mapping, else
    /// the users/ column of that name) [default: hour_of_day,genre,artist]; an empty
    /// value turns the table off.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub dimensions: Option<Vec<String>>,
}

impl SettingsArgs {
    /// The settings in force: defaults, then the file, then the flags.
    pub fn settings(&self) -> Result<Settings> {
        let mut settings = match &self.settings {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading settings file {}", path.display()))?;
                toml::from_str::<Settings>(&text).map_err(|e| {
                    anyhow!(
                        "settings file {}: {}\nfix the key shown above; `tidemark run --print-settings` prints every valid key",
                        path.display(),
                        e.to_string().trim_end()
                    )
                })?
            }
            None => Settings::default(),
        };
        macro_rules! flag {
            ($field:ident) => {
                if let Some(value) = &self.$field {
                    settings.$field = value.clone();
                }
            };
        }
        flag!(session_gap_minutes);
        flag!(midnight_split);
        flag!(window_minutes);
        flag!(baseline_windows);
        flag!(baseline_percentile);
        flag!(alert_days);
        flag!(alert_deviations);
        flag!(alert_min_sessions);
        flag!(engaged_sessions);
        flag!(allowed_lateness_minutes);
        flag!(forget_behind_watermark);
        if let Some(dimensions) = &self.dimensions {
            settings.dimensions = dimensions
                .iter()
                .map(|d| d.trim().to_string())
                .filter(|d| !d.is_empty())
                .collect();
        }
        if self.from.is_some() {
            settings.from = self.from.clone();
        }
        if self.to.is_some() {
            settings.to = self.to.clone();
        }
        Ok(settings)
    }

    /// The resolved parameters; an invalid value is an error naming its key.
    pub fn params(&self) -> Result<(Settings, Params)> {
        let settings = self.settings()?;
        let params = settings.params().map_err(|e| anyhow!(e))?;
        Ok((settings, params))
    }
}
