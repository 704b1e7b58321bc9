//! A deterministic generator of realistic contract data sets: a music-streaming service
//! whose customers listen in sessions, with daily and weekly traffic cycles, injected
//! traffic spikes, heavy-tailed activity, sign-up cohorts, churn and plan changes, and
//! the dirt real feeds carry: late rows, rows beyond the allowed lateness, replayed
//! duplicates and rows that break a contract rule.
//!
//! # Layout
//! `out_dir/events/part-NNNNN.<ext>` (file-name order is time order; each file is one
//! batch), `out_dir/users/users.<ext>`, `out_dir/subscriptions/subscriptions.<ext>` and
//! `out_dir/items/items.<ext>`, with exactly the contract's column names. Events carry
//! no `session_id` column, so sessions are derived.
//!
//! # How events are placed
//! The span is cut into 5-minute slots, each with an event budget proportional to the
//! traffic curve (hour of day, weekday, users active then, spikes). Files are runs of
//! slots holding about equal numbers of events; sessions are simulated slot by slot in
//! time order, and a session running past its file's end continues in the next file.
//! With `M` the largest event time of the files written so far, file `k + 1` receives:
//! - **late** rows: rows of file `k` with `M - 1h <= ts < M`, held back one file;
//! - **too late** rows: rows of file `k` with `ts < M - 1h`, held back one file, which
//!   the watermark rule quarantines;
//! - **duplicates**: exact copies of rows staying in file `k` with `ts >= M - 1h`;
//!
//! and every file gets **invalid** rows: copies (with a fresh event_id) of one of its
//! own rows with exactly one rule broken. All these have times at most `M`, so they never
//! move a file's largest event time. Rows are written in arrival order: held-back and
//! duplicate rows are scattered among the file's own rows.

mod model;
mod write;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::records::Millis;
use crate::time::{days_from_civil, DAY_MS};
use model::{Items, Row, Sessions, Users, HOUR, SLOTS_PER_DAY, SLOT_MS};
use write::{Column, EventWriter};

/// The file format of a generated data set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    /// Apache Parquet (zstd level 1); times are TIMESTAMP(ms, UTC).
    #[default]
    Parquet,
    /// CSV with a header row; times are text in a mix of the accepted forms.
    Csv,
    /// One JSON object a line; times are text in a mix of the accepted forms or numbers.
    Ndjson,
}

impl OutputFormat {
    /// The file extension of the format, without `.gz`.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Parquet => "parquet",
            OutputFormat::Csv => "csv",
            OutputFormat::Ndjson => "ndjson",
        }
    }
}

/// What to generate. `Default` gives one million events by 10,000 customers from
/// 2025-01-01, with 1% late rows, 0.5% duplicates and 0.2% invalid rows.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratorConfig {
    /// Rows in the event files, all kinds included (exact unless the data set is too
    /// small to place every duplicate or invalid row; see [`GenerateSummary`]).
    pub events: u64,
    /// Rows of the users table (customers); not all of them are active.
    pub users: u64,
    /// Seed of the random generator: the same seed and config give the same bytes.
    pub seed: u64,
    /// First UTC day of the span, `YYYY-MM-DD`.
    pub start_day: String,
    /// Days of event time; 0 means the default of 60 days.
    pub days: u32,
    /// Number of event files; 0 means `max(10, events / 50,000, 4 * days)`, so a
    /// file covers at most about six hours of event time. Late rows and duplicates
    /// come from the last hour before each cut between files, so few files cannot
    /// hold large shares of them.
    pub files: u32,
    /// File format of every table.
    pub format: OutputFormat,
    /// Gzip the text formats (`.csv.gz`, `.ndjson.gz`); ignored for Parquet.
    pub gzip: bool,
    /// Share of events written one file later than their time order, within the
    /// allowed lateness of one hour.
    pub late_share: f64,
    /// Share of events written one file later and more than one hour behind the
    /// largest time seen before: the watermark rule quarantines them as `too_late`.
    pub too_late_share: f64,
    /// Share of rows that are exact copies of a row of the previous file, recent
    /// enough to be recognised as duplicates rather than `too_late`.
    pub duplicate_share: f64,
    /// Share of rows breaking exactly one contract rule: empty user_id, unparsable ts
    /// (text formats only), negative duration, duration over two hours, or empty
    /// event_type.
    pub invalid_share: f64,
    /// Share of customers who sign up during the span (the rest signed up up to a year
    /// before it). 0 gives a customer base that is complete from the first day: the
    /// stream a flat-memory experiment needs, where open keys stop growing.
    pub new_user_share: f64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            events: 1_000_000,
            users: 10_000,
            seed: 42,
            start_day: "2025-01-01".to_string(),
            days: 0,
            files: 0,
            format: OutputFormat::Parquet,
            gzip: false,
            late_share: 0.01,
            too_late_share: 0.0,
            duplicate_share: 0.005,
            invalid_share: 0.002,
            new_user_share: 0.6,
        }
    }
}

impl GeneratorConfig {
    /// The span in days, with 0 resolved to the default (60).
    pub fn effective_days(&self) -> u32 {
        if self.days == 0 {
            60
        } else {
            self.days
        }
    }

    /// The number of event files, with 0 resolved to `max(10, events / 50,000, 4 * days)`.
    pub fn effective_files(&self) -> u32 {
        if self.files == 0 {
            let by_time = 4 * self.effective_days() as u64;
            (self.events / 50_000)
                .max(by_time)
                .clamp(10, u32::MAX as u64) as u32
        } else {
            self.files
        }
    }

    /// The items catalogue size: twice the users, at least 1,000.
    pub fn items(&self) -> u64 {
        self.users.saturating_mul(2).max(1000)
    }

    /// The file name extension of every table, `.gz` included where it applies.
    pub fn extension(&self) -> String {
        match (self.format, self.gzip) {
            (OutputFormat::Parquet, _) | (_, false) => self.format.extension().to_string(),
            (_, true) => format!("{}.gz", self.format.extension()),
        }
    }
}

/// What [`generate`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GenerateSummary {
    /// Rows in all event files.
    pub events_written: u64,
    /// Rows the contract accepts: `events_written - invalid - duplicates - too_late`.
    pub valid_events: u64,
    /// Accepted rows that arrive after a file holding a later event time (within the
    /// allowed lateness).
    pub late: u64,
    /// Rows below the watermark of their file: quarantined as `too_late`.
    pub too_late: u64,
    /// Rows repeating an earlier file's event (same event_id and content).
    pub duplicates: u64,
    /// Rows breaking exactly one contract rule.
    pub invalid: u64,
    /// Rows of the users table.
    pub users: u64,
    /// Rows of the subscriptions table.
    pub subscriptions: u64,
    /// Rows of the items table.
    pub items: u64,
    /// Sessions the generator simulated. Derived sessions can differ slightly: the
    /// engine splits sessions at midnight, and a few sessions of very active users run
    /// into each other.
    pub sessions: u64,
    /// The event files in order (file-name order = time order).
    pub event_files: Vec<PathBuf>,
    /// Every file written: the event files, then users, subscriptions and items.
    pub files: Vec<PathBuf>,
    /// The injected traffic spikes: the start (ms) of each one's first 5-minute slot.
    /// Each lasts [`SPIKE_MINUTES`]. The ground truth for measuring spike rules.
    pub spikes: Vec<Millis>,
}

/// How long one injected traffic spike lasts, in minutes.
pub const SPIKE_MINUTES: i64 = model::SPIKE_SLOTS as i64 * SLOT_MS / 60_000;

/// How a row got into its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    InOrder = 0,
    Late = 1,
    TooLate = 2,
    Duplicate = 3,
    Invalid = 4,
}

/// The contract rule an invalid row breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Bad {
    EmptyUser = 1,
    UnparsableTs = 2,
    NegativeDuration = 3,
    HugeDuration = 4,
    EmptyEventType = 5,
}

/// Splits `total` over `weights` by cumulative rounding (the parts sum to `total`).
fn quota(total: u64, weights: &[f64]) -> Vec<u64> {
    let sum: f64 = weights.iter().sum();
    let mut out = Vec::with_capacity(weights.len());
    if sum <= 0.0 || !sum.is_finite() {
        out.resize(weights.len(), 0);
        if let Some(last) = out.last_mut() {
            *last = total;
        }
        return out;
    }
    let (mut cum, mut given) = (0f64, 0u64);
    for (i, w) in weights.iter().enumerate() {
        cum += w;
        let target = if i + 1 == weights.len() {
            total
        } else {
            ((total as f64 * cum / sum).round() as u64).min(total)
        };
        let part = target.saturating_sub(given);
        out.push(part);
        given += part;
    }
    out
}

fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

fn check(cfg: &GeneratorConfig) -> io::Result<Millis> {
    for (name, share) in [
        ("late_share", cfg.late_share),
        ("too_late_share", cfg.too_late_share),
        ("duplicate_share", cfg.duplicate_share),
        ("invalid_share", cfg.invalid_share),
    ] {
        if !(0.0..=0.5).contains(&share) {
            return Err(invalid_input(format!(
                "{name} must be within 0..=0.5, got {share}"
            )));
        }
    }
    if !(0.0..=1.0).contains(&cfg.new_user_share) {
        return Err(invalid_input(format!(
            "new_user_share must be within 0..=1, got {}",
            cfg.new_user_share
        )));
    }
    if cfg.late_share + cfg.too_late_share > 0.5 {
        return Err(invalid_input(
            "late_share + too_late_share must be at most 0.5".into(),
        ));
    }
    if cfg.events > 0 && cfg.users == 0 {
        return Err(invalid_input("events need at least one user".into()));
    }
    if cfg.users > u32::MAX as u64 / 2 || cfg.items() >= model::PAGE_BASE as u64 {
        return Err(invalid_input("too many users".into()));
    }
    let date = chrono::NaiveDate::parse_from_str(cfg.start_day.trim(), "%Y-%m-%d")
        .map_err(|e| invalid_input(format!("start_day {:?}: {e}", cfg.start_day)))?;
    use chrono::Datelike;
    Ok(days_from_civil(date.year(), date.month(), date.day()) as Millis * DAY_MS)
}

/// Creates the table directories; refuses ones that already hold files, so a data set
/// never mixes files of two runs.
fn prepare_dirs(out_dir: &Path) -> io::Result<PathBuf> {
    for table in ["events", "users", "subscriptions", "items"] {
        let dir = out_dir.join(table);
        fs::create_dir_all(&dir)?;
        if fs::read_dir(&dir)?.next().is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} is not empty", dir.display()),
            ));
        }
    }
    let tmp = out_dir.join(".tidemark-gen-tmp");
    fs::create_dir_all(&tmp)?;
    Ok(tmp)
}

/// Rows of each kind that earlier files could not place.
#[derive(Default)]
struct Owed {
    late: u64,
    too_late: u64,
    duplicates: u64,
    invalid: u64,
}

/// A file's rows handed to the writer thread.
struct FileJob {
    tmp: PathBuf,
    path: PathBuf,
    rows: Vec<Row>,
}

/// Generates a data set into `out_dir` (see the module documentation). Deterministic:
/// the same config gives byte-identical files. Event files are produced in time order
/// one at a time, rendered on a second thread while the next one is simulated, so
/// memory stays at a few files' worth of rows.
///
/// # Errors
/// An invalid config (shares outside 0..=0.5, bad `start_day`, events without users),
/// a table directory that already holds files, or any I/O error.
pub fn generate(out_dir: &Path, cfg: &GeneratorConfig) -> io::Result<GenerateSummary> {
    let start = check(cfg)?;
    let days = cfg.effective_days();
    let files = cfg.effective_files().max(1) as usize;
    let end = start + days as Millis * DAY_MS;
    let tmp_dir = prepare_dirs(out_dir)?;
    let ext = cfg.extension();
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let salt = rng.random::<u64>();

    let users = Users::generate(&mut rng, cfg.users, cfg.new_user_share, start, end);
    let items = Items::generate(&mut rng, cfg.items());
    let changes = users.plan_changes(&mut rng);
    let mut summary = GenerateSummary {
        users: cfg.users,
        items: cfg.items(),
        subscriptions: changes.len() as u64,
        ..GenerateSummary::default()
    };
    let table_files = write_tables(out_dir, &tmp_dir, cfg, &ext, &users, &items, &changes)?;

    // Plan: event budget per 5-minute slot, files as runs of slots.
    let slots = days as usize * SLOTS_PER_DAY;
    let (weights, spikes) = model::traffic(&mut rng, &users, start, slots);
    summary.spikes = spikes
        .iter()
        .map(|&slot| start + slot as Millis * SLOT_MS)
        .collect();
    let n_dup = (cfg.events as f64 * cfg.duplicate_share).round() as u64;
    let n_bad = (cfg.events as f64 * cfg.invalid_share).round() as u64;
    let n_base = cfg.events.saturating_sub(n_dup).saturating_sub(n_bad);
    let budget = quota(n_base, &weights);
    let first_slot = file_starts(&budget, n_base, files);
    let planned: Vec<f64> = (0..files)
        .map(|k| budget[first_slot[k]..first_slot[k + 1]].iter().sum::<u64>() as f64)
        .collect();
    // Nothing is held back from the last file: it has no next file.
    let mut held_weights = planned.clone();
    held_weights[files - 1] = 0.0;
    let late_quota = quota(
        (cfg.events as f64 * cfg.late_share).round() as u64,
        &held_weights,
    );
    let too_late_quota = quota(
        (cfg.events as f64 * cfg.too_late_share).round() as u64,
        &held_weights,
    );
    let dup_quota = quota(n_dup, &held_weights);
    let bad_quota = quota(n_bad, &planned);

    let writer = EventWriter {
        users: &users,
        items: &items,
        format: cfg.format,
        gzip: cfg.gzip,
        salt,
    };
    let mut sessions = Sessions::new(&mut rng, &users, &items);
    let mut event_files = Vec::with_capacity(files);
    let written: io::Result<()> = std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<FileJob>(1);
        let writer = &writer;
        let handle = scope.spawn(move || -> io::Result<()> {
            for job in rx {
                writer.write(&job.tmp, &job.path, &job.rows)?;
            }
            Ok(())
        });
        let mut carry: Vec<Row> = Vec::new();
        let mut held: Vec<Row> = Vec::new();
        let mut max_ts = Millis::MIN;
        let (mut seq, mut balance, mut remaining) = (0u64, 0i64, n_base);
        let mut bad_seq = u64::MAX / 2;
        let mut owed = Owed::default();
        let mut send_failed = false;
        for k in 0..files {
            let file_end = if k + 1 < files {
                start + first_slot[k + 1] as Millis * SLOT_MS
            } else {
                Millis::MAX
            };
            let mut rows: Vec<Row> = Vec::with_capacity(planned[k] as usize + held.len() + 64);
            let mut next_carry = Vec::new();
            for row in carry.drain(..) {
                if row.ts < file_end {
                    rows.push(row);
                } else {
                    next_carry.push(row);
                }
            }
            let slot_range = first_slot[k]..first_slot[k + 1];
            for (slot, &slot_budget) in slot_range.clone().zip(&budget[slot_range]) {
                balance += slot_budget as i64;
                let slot_start = start + slot as Millis * SLOT_MS;
                sessions.fill_slot(
                    &mut rng,
                    slot_start,
                    &mut balance,
                    &mut remaining,
                    &mut seq,
                    |row| {
                        if row.ts < file_end {
                            rows.push(row);
                        } else {
                            next_carry.push(row);
                        }
                    },
                );
            }
            carry = next_carry;
            // Generation order is not time order across sessions: sort before choosing.
            rows.sort_unstable_by_key(|r| (r.ts, r.seq));
            if let Some(last) = rows.last() {
                max_ts = max_ts.max(last.ts);
            }
            let in_order = rows.len();

            // Rows held back for the next file, and duplicates of rows that stay.
            let mut next_held = Vec::new();
            if k + 1 < files && in_order > 0 {
                let floor = max_ts - HOUR;
                let late_from = rows.partition_point(|r| r.ts < floor);
                let late_to = rows.partition_point(|r| r.ts < max_ts);
                let mut moved = vec![false; in_order];
                // At most half of the candidates, so the hour before a cut keeps
                // most of its own rows; what cannot be placed is owed to later files.
                let want = late_quota[k] + owed.late;
                let late = choose(
                    &mut rng,
                    late_from..late_to,
                    want.min((late_to - late_from) as u64 / 2),
                );
                owed.late = want - late.len() as u64;
                let want = too_late_quota[k] + owed.too_late;
                let too_late = choose(&mut rng, 0..late_from, want.min(late_from as u64 / 2));
                owed.too_late = want - too_late.len() as u64;
                for (picked, kind) in [(late, Kind::Late), (too_late, Kind::TooLate)] {
                    for i in picked {
                        moved[i] = true;
                        next_held.push(Row {
                            kind: kind as u8,
                            ..rows[i]
                        });
                    }
                }
                let staying: Vec<usize> = (late_from..in_order).filter(|&i| !moved[i]).collect();
                let want = dup_quota[k] + owed.duplicates;
                let dups = choose(
                    &mut rng,
                    0..staying.len(),
                    want.min(staying.len() as u64 / 2),
                );
                owed.duplicates = want - dups.len() as u64;
                for i in dups {
                    next_held.push(Row {
                        kind: Kind::Duplicate as u8,
                        ..rows[staying[i]]
                    });
                }
                let mut i = 0;
                rows.retain(|_| {
                    i += 1;
                    !moved[i - 1]
                });
            }
            // Invalid rows: a copy of one of this file's rows with one rule broken.
            let own = rows.len();
            owed.invalid += bad_quota[k];
            if own > 0 {
                for _ in 0..std::mem::take(&mut owed.invalid) {
                    let template = rows[rng.random_range(0..own)];
                    let mut bad = match rng.random_range(1..=5u8) {
                        1 => Bad::EmptyUser,
                        2 => Bad::UnparsableTs,
                        3 => Bad::NegativeDuration,
                        4 => Bad::HugeDuration,
                        _ => Bad::EmptyEventType,
                    };
                    if bad == Bad::UnparsableTs && cfg.format == OutputFormat::Parquet {
                        bad = Bad::NegativeDuration;
                    }
                    let dur = match bad {
                        Bad::NegativeDuration => -rng.random_range(1..600_000),
                        Bad::HugeDuration => rng.random_range(7_200_001..30_000_000),
                        _ => template.dur,
                    };
                    bad_seq += 1;
                    rows.push(Row {
                        seq: bad_seq,
                        dur,
                        bad: bad as u8,
                        kind: Kind::Invalid as u8,
                        ..template
                    });
                }
            }
            // Rows held back from the previous file arrive scattered among this one's.
            for mut row in held.drain(..) {
                row.key = if own > 0 {
                    rows[rng.random_range(0..own)].ts
                } else {
                    row.ts
                };
                rows.push(row);
            }
            held = next_held;
            rows.sort_unstable_by_key(|r| (r.key, r.seq, r.kind));

            for row in &rows {
                let counter = match row.kind {
                    k if k == Kind::Late as u8 => &mut summary.late,
                    k if k == Kind::TooLate as u8 => &mut summary.too_late,
                    k if k == Kind::Duplicate as u8 => &mut summary.duplicates,
                    k if k == Kind::Invalid as u8 => &mut summary.invalid,
                    _ => continue,
                };
                *counter += 1;
            }
            summary.events_written += rows.len() as u64;
            let name = format!("part-{k:05}.{ext}");
            let (path, tmp) = write::paths(out_dir, &tmp_dir, "events", &name);
            event_files.push(path.clone());
            if tx.send(FileJob { tmp, path, rows }).is_err() {
                send_failed = true;
                break;
            }
        }
        drop(tx);
        let result = handle
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("event writer panicked")));
        if result.is_ok() && send_failed {
            return Err(io::Error::other("event writer stopped"));
        }
        result
    });
    written?;
    let _ = fs::remove_dir(&tmp_dir);

    summary.sessions = sessions.count;
    summary.valid_events =
        summary.events_written - summary.invalid - summary.duplicates - summary.too_late;
    summary.files = event_files.iter().cloned().chain(table_files).collect();
    summary.event_files = event_files;
    Ok(summary)
}

/// The first slot of each file (and `slots` at the end): file `k` starts at the first
/// slot before which the cumulative budget reaches `k / files` of the total.
fn file_starts(budget: &[u64], total: u64, files: usize) -> Vec<usize> {
    let slots = budget.len();
    let mut first = vec![slots; files + 1];
    first[0] = 0;
    if total == 0 {
        for (k, slot) in first.iter_mut().enumerate() {
            *slot = slots * k / files;
        }
        return first;
    }
    let (mut cum, mut k) = (0u128, 1usize);
    for (s, &b) in budget.iter().enumerate() {
        while k < files && cum * files as u128 >= k as u128 * total as u128 {
            first[k] = s;
            k += 1;
        }
        cum += b as u128;
    }
    first
}

/// `amount` distinct indices of `range` (fewer if the range is shorter), in order.
fn choose(rng: &mut StdRng, range: std::ops::Range<usize>, amount: u64) -> Vec<usize> {
    let len = range.len();
    let amount = (amount as usize).min(len);
    if amount == 0 {
        return Vec::new();
    }
    let mut picked: Vec<usize> = rand::seq::index::sample(rng, len, amount)
        .into_iter()
        .map(|i| range.start + i)
        .collect();
    picked.sort_unstable();
    picked
}

/// Platforms a user is seen on (a user attribute, `users/` column `platform`).
const PLATFORMS: [&str; 3] = ["ios", "android", "web"];
/// Age groups (a user attribute, `users/` column `age_group`).
const AGE_GROUPS: [&str; 4] = ["18-24", "25-34", "35-44", "45+"];

/// A user's attribute drawn from `values` by a hash of the user index and `salt` (no
/// random draw, so the other columns are the same bytes as without it); about one user
/// in twenty has it null.
fn user_attribute(user: usize, salt: u64, values: &[&str]) -> Option<String> {
    let mixed = (user as u64 ^ salt.wrapping_mul(0x51_7C_C1_B7_27_22_0A_95))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        >> 32;
    (!mixed.is_multiple_of(20)).then(|| values[(mixed / 20) as usize % values.len()].to_string())
}

/// Writes the users, subscriptions and items tables; returns their paths.
fn write_tables(
    out_dir: &Path,
    tmp_dir: &Path,
    cfg: &GeneratorConfig,
    ext: &str,
    users: &Users,
    items: &Items,
    changes: &[(Millis, u32, bool)],
) -> io::Result<Vec<PathBuf>> {
    let plan = |paid: bool| Some(if paid { "paid" } else { "free" }.to_string());
    let user_columns = [
        Column::Str("user_id", users.ids.iter().cloned().map(Some).collect()),
        Column::Ts(
            "signup_ts",
            users.signup.iter().copied().map(Some).collect(),
        ),
        Column::Str(
            "country",
            users
                .country
                .iter()
                .map(|c| c.map(str::to_string))
                .collect(),
        ),
        Column::Str("plan", users.paid.iter().map(|&p| plan(p)).collect()),
        Column::Str(
            "platform",
            (0..users.ids.len())
                .map(|u| user_attribute(u, 1, &PLATFORMS))
                .collect(),
        ),
        Column::Str(
            "age_group",
            (0..users.ids.len())
                .map(|u| user_attribute(u, 2, &AGE_GROUPS))
                .collect(),
        ),
    ];
    let sub_columns = [
        Column::Str(
            "user_id",
            changes
                .iter()
                .map(|c| Some(users.ids[c.1 as usize].clone()))
                .collect(),
        ),
        Column::Ts("ts", changes.iter().map(|c| Some(c.0)).collect()),
        Column::Str("plan", changes.iter().map(|c| plan(c.2)).collect()),
    ];
    let width = items.artist_width;
    let item_columns = [
        Column::Str("item_id", items.ids.iter().cloned().map(Some).collect()),
        Column::Str(
            "artist_id",
            items
                .artist
                .iter()
                .map(|a| a.map(|a| format!("a{a:0width$}")))
                .collect(),
        ),
        Column::Str(
            "genre",
            items.genre.iter().map(|g| g.map(str::to_string)).collect(),
        ),
        Column::Str("title", items.title.iter().cloned().map(Some).collect()),
        Column::Int("duration_ms", items.length.clone()),
    ];
    let mut paths = Vec::new();
    for (table, columns) in [
        ("users", &user_columns[..]),
        ("subscriptions", &sub_columns[..]),
        ("items", &item_columns[..]),
    ] {
        let (path, tmp) = write::paths(out_dir, tmp_dir, table, &format!("{table}.{ext}"));
        write::write_table(&tmp, &path, cfg.format, cfg.gzip, columns)?;
        paths.push(path);
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_sums_and_follows_weights() {
        let q = quota(10, &[1.0, 1.0, 2.0, 0.0]);
        assert_eq!(q.iter().sum::<u64>(), 10);
        assert_eq!(q, vec![3, 2, 5, 0]);
        assert_eq!(quota(7, &[0.0, 0.0]), vec![0, 7]);
    }
}
