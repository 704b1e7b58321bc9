//! The simulated world behind the generator: customers with heavy-tailed activity,
//! a catalogue with Zipf popularity, plan changes, the daily/weekly traffic curve with
//! injected spikes, and the listening sessions themselves.

use rand::distr::weighted::WeightedIndex;
use rand::rngs::StdRng;
use rand::Rng;
use rand_distr::{Distribution, Exp, Geometric, LogNormal, Pareto, Zipf};

use crate::records::Millis;
use crate::time::DAY_MS;

/// One minute in milliseconds.
pub(super) const MINUTE: Millis = 60_000;
/// One hour in milliseconds.
pub(super) const HOUR: Millis = 60 * MINUTE;
/// The planning grain of the traffic curve: 5 minutes, the contract's default window.
pub(super) const SLOT_MS: Millis = 5 * MINUTE;
/// Slots per UTC day.
pub(super) const SLOTS_PER_DAY: usize = (DAY_MS / SLOT_MS) as usize;

/// Event types, indexed by the `etype` byte of a [`Row`].
pub(super) const EVENT_TYPES: [&str; 8] = [
    "play",
    "skip",
    "pause",
    "like",
    "search",
    "playlist_add",
    "page_view",
    "stop",
];
const PLAY: u8 = 0;
const SKIP: u8 = 1;
const PAUSE: u8 = 2;
const LIKE: u8 = 3;
const SEARCH: u8 = 4;
const PLAYLIST_ADD: u8 = 5;
const PAGE_VIEW: u8 = 6;
const STOP: u8 = 7;

/// Pages a `page_view` acts on; encoded in [`Row::item`] as `PAGE_BASE + index`.
pub(super) const PAGES: [&str; 6] = [
    "page:home",
    "page:browse",
    "page:library",
    "page:artist",
    "page:album",
    "page:settings",
];
/// [`Row::item`] values at or above this are pages.
pub(super) const PAGE_BASE: u32 = 0xFFFF_FF00;
/// [`Row::item`] value for "no item".
pub(super) const NO_ITEM: u32 = u32::MAX;
/// [`Row::dur`] value for a null duration.
pub(super) const NO_DURATION: i64 = i64::MIN;

/// Share of each event type in a session's first event (play, page_view, search).
const FIRST_WEIGHTS: [(u8, u32); 3] = [(PLAY, 50), (PAGE_VIEW, 28), (SEARCH, 22)];
/// Share of each event type after the first one (`stop` comes only last).
const NEXT_WEIGHTS: [(u8, u32); 7] = [
    (PLAY, 57),
    (SKIP, 16),
    (PAUSE, 7),
    (LIKE, 5),
    (SEARCH, 4),
    (PLAYLIST_ADD, 4),
    (PAGE_VIEW, 5),
];

/// ISO country codes with a skewed share (percent); a few customers have none.
const COUNTRIES: [(&str, u32); 15] = [
    ("US", 30),
    ("GB", 10),
    ("DE", 9),
    ("BR", 8),
    ("IN", 7),
    ("FR", 6),
    ("MX", 5),
    ("JP", 5),
    ("CA", 4),
    ("ES", 4),
    ("IT", 3),
    ("NL", 3),
    ("SE", 2),
    ("AU", 2),
    ("PL", 2),
];

const GENRES: [(&str, u32); 12] = [
    ("pop", 22),
    ("hip-hop", 16),
    ("rock", 14),
    ("electronic", 10),
    ("latin", 8),
    ("r&b", 7),
    ("indie", 6),
    ("country", 5),
    ("jazz", 4),
    ("classical", 3),
    ("metal", 3),
    ("podcast", 2),
];

const WORDS: [&str; 32] = [
    "midnight",
    "river",
    "echo",
    "neon",
    "golden",
    "summer",
    "rain",
    "city",
    "heart",
    "fire",
    "ocean",
    "dream",
    "static",
    "velvet",
    "paper",
    "shadow",
    "silver",
    "wild",
    "blue",
    "north",
    "garden",
    "signal",
    "glass",
    "thunder",
    "honey",
    "electric",
    "lonely",
    "satellite",
    "road",
    "morning",
    "ghost",
    "dance",
];

/// Relative session-start intensity at each UTC hour (peak 19-20 h, trough 4 h),
/// linearly interpolated between hours.
const HOURLY: [f64; 24] = [
    0.55, 0.42, 0.31, 0.23, 0.19, 0.21, 0.28, 0.38, 0.50, 0.58, 0.63, 0.68, 0.73, 0.74, 0.73, 0.75,
    0.81, 0.89, 0.96, 1.00, 1.00, 0.95, 0.85, 0.70,
];
/// Relative intensity per weekday, Monday first.
const WEEKDAY: [f64; 7] = [0.92, 0.95, 0.97, 1.00, 1.06, 1.16, 1.12];

/// Extra traffic of an injected spike, in average slots' worth per slot.
const SPIKE_EXTRA: f64 = 8.0;
/// Slots (5 minutes each) one spike lasts.
pub(super) const SPIKE_SLOTS: usize = 3;

/// One event row as the generator holds it before rendering; compact so a file's
/// worth of rows is cheap to buffer, sort and hand to the writer thread.
#[derive(Clone, Copy, Debug)]
pub(super) struct Row {
    /// Event time (ms).
    pub ts: Millis,
    /// Arrival order within the file (rows are written sorted by `(key, seq)`).
    pub key: Millis,
    /// Generation counter; the event_id is a bijection of it, so it is unique per event.
    pub seq: u64,
    /// duration_ms, or [`NO_DURATION`].
    pub dur: i64,
    /// User index.
    pub user: u32,
    /// Item index, a page (`>= PAGE_BASE`) or [`NO_ITEM`].
    pub item: u32,
    /// Index into [`EVENT_TYPES`].
    pub etype: u8,
    /// Rendering style: bits 0-1 the text form of `ts`, bits 2-3 the spelling variant
    /// of `event_type` (0 = canonical).
    pub style: u8,
    /// The contract rule this row breaks ([`super::Bad`] as u8), 0 for none.
    pub bad: u8,
    /// How the row got into its file ([`super::Kind`] as u8).
    pub kind: u8,
}

/// The customers: ids, sign-up, country, initial plan and the interval in which they
/// use the service (from sign-up or the span's start until churn or the span's end).
pub(super) struct Users {
    pub ids: Vec<String>,
    pub signup: Vec<Millis>,
    pub country: Vec<Option<&'static str>>,
    pub paid: Vec<bool>,
    pub active_from: Vec<Millis>,
    pub active_to: Vec<Millis>,
    pub weight: Vec<f64>,
}

fn pick<T: Copy>(rng: &mut StdRng, table: &[(T, u32)]) -> T {
    let total: u32 = table.iter().map(|(_, w)| w).sum();
    let mut x = rng.random_range(0..total);
    for &(v, w) in table {
        if x < w {
            return v;
        }
        x -= w;
    }
    table[table.len() - 1].0
}

/// Width of the zero-padded number in ids of a table of `n` rows.
fn id_width(n: u64) -> usize {
    n.max(1).saturating_sub(1).to_string().len().max(5)
}

impl Users {
    /// `n` customers: a share `1 - new_share` signed up before the span (up to a
    /// year), the rest during it; activity weight Pareto(1.16) capped at 300 (paid users 1.5x); 30% churn
    /// after an exponential time (mean 21 days) of use.
    pub fn generate(rng: &mut StdRng, n: u64, new_share: f64, start: Millis, end: Millis) -> Users {
        let width = id_width(n);
        let pareto = Pareto::new(1.0f64, 1.16).expect("valid Pareto");
        let churn = Exp::new(1.0 / (21.0 * DAY_MS as f64)).expect("valid Exp");
        let span = (end - start).max(1);
        let cap = n as usize;
        let mut users = Users {
            ids: Vec::with_capacity(cap),
            signup: Vec::with_capacity(cap),
            country: Vec::with_capacity(cap),
            paid: Vec::with_capacity(cap),
            active_from: Vec::with_capacity(cap),
            active_to: Vec::with_capacity(cap),
            weight: Vec::with_capacity(cap),
        };
        for i in 0..n {
            let paid = rng.random_bool(0.25);
            let sampled: f64 = pareto.sample(rng);
            let mut weight = sampled.min(300.0);
            if paid {
                weight *= 1.5;
            }
            let signup = if rng.random_bool(1.0 - new_share) {
                start - rng.random_range(1..365 * DAY_MS)
            } else {
                start + rng.random_range(0..span)
            };
            let country = if rng.random_bool(0.01) {
                None
            } else {
                Some(pick(rng, &COUNTRIES))
            };
            let from = signup.max(start);
            let to = if rng.random_bool(0.3) {
                from.saturating_add(churn.sample(rng) as i64).min(end)
            } else {
                end
            };
            users.ids.push(format!("u{i:0width$}"));
            users.signup.push(signup);
            users.country.push(country);
            users.paid.push(paid);
            users.active_from.push(from);
            users.active_to.push(to);
            users.weight.push(weight);
        }
        users
    }

    /// Plan changes for about 10% of the users who are active in the span: one switch
    /// (free to paid or back) at a random time of their activity, a second switch back
    /// for a fifth of them. Sorted by time then user.
    pub fn plan_changes(&self, rng: &mut StdRng) -> Vec<(Millis, u32, bool)> {
        let mut changes = Vec::new();
        for u in 0..self.ids.len() {
            let (from, to) = (self.active_from[u], self.active_to[u]);
            if to - from < MINUTE || !rng.random_bool(0.1) {
                continue;
            }
            let first = rng.random_range(from..to);
            changes.push((first, u as u32, !self.paid[u]));
            if rng.random_bool(0.2) && to - first > MINUTE {
                let second = rng.random_range(first + 1..to);
                changes.push((second, u as u32, self.paid[u]));
            }
        }
        changes.sort_unstable();
        changes
    }
}

/// The catalogue: tracks with an artist, genre, title and length.
pub(super) struct Items {
    pub ids: Vec<String>,
    pub artist: Vec<Option<u32>>,
    pub genre: Vec<Option<&'static str>>,
    pub title: Vec<String>,
    pub length: Vec<Option<i64>>,
    pub artist_width: usize,
}

impl Items {
    /// `n` tracks by about `n / 8` artists (Zipf-skewed), with lognormal lengths around
    /// 3.5 minutes; a few fields are null as in real catalogues.
    pub fn generate(rng: &mut StdRng, n: u64) -> Items {
        let width = id_width(n);
        let artists = (n / 8).max(50);
        let artist_zipf = Zipf::new(artists as f64, 0.8).expect("valid Zipf");
        let length = LogNormal::new((210_000f64).ln(), 0.35).expect("valid LogNormal");
        let cap = n as usize;
        let mut items = Items {
            ids: Vec::with_capacity(cap),
            artist: Vec::with_capacity(cap),
            genre: Vec::with_capacity(cap),
            title: Vec::with_capacity(cap),
            length: Vec::with_capacity(cap),
            artist_width: id_width(artists),
        };
        for i in 0..n {
            items.ids.push(format!("t{i:0width$}"));
            let artist = artist_zipf.sample(rng) as u32 - 1;
            items
                .artist
                .push((!rng.random_bool(0.005)).then_some(artist));
            items
                .genre
                .push((!rng.random_bool(0.02)).then(|| pick_genre(rng)));
            let a = WORDS[rng.random_range(0..WORDS.len())];
            let b = WORDS[rng.random_range(0..WORDS.len())];
            let title = if rng.random_bool(0.15) {
                format!("{} {} (Remix)", capitalize(a), capitalize(b))
            } else {
                format!("{} {}", capitalize(a), capitalize(b))
            };
            items.title.push(title);
            let ms = (length.sample(rng) as i64).clamp(30_000, 15 * MINUTE);
            items.length.push((!rng.random_bool(0.01)).then_some(ms));
        }
        items
    }
}

fn pick_genre(rng: &mut StdRng) -> &'static str {
    pick(rng, &GENRES)
}

fn capitalize(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    let mut chars = word.chars();
    if let Some(c) = chars.next() {
        out.extend(c.to_uppercase());
    }
    out.push_str(chars.as_str());
    out
}

/// Relative traffic of each 5-minute slot of the span: hour-of-day and weekday curve,
/// times the activity weight of the users active then, plus injected 15-minute spikes
/// (3 + one per 20 days).
/// Returns the weights and the first slot of each spike.
pub(super) fn traffic(
    rng: &mut StdRng,
    users: &Users,
    start: Millis,
    slots: usize,
) -> (Vec<f64>, Vec<usize>) {
    // Active weight per slot through a difference array over slot indices.
    let mut delta = vec![0f64; slots + 1];
    let slot_of =
        |t: Millis| -> usize { ((t - start).max(0) as u64).div_ceil(SLOT_MS as u64) as usize };
    for u in 0..users.ids.len() {
        let (from, to) = (users.active_from[u], users.active_to[u]);
        if to <= from {
            continue;
        }
        let a = slot_of(from).min(slots);
        let b = slot_of(to).min(slots);
        if a < b {
            delta[a] += users.weight[u];
            delta[b] -= users.weight[u];
        }
    }
    let spikes_n = if slots > 4 * SLOTS_PER_DAY / 24 {
        3 + slots / SLOTS_PER_DAY / 20
    } else {
        0
    };
    let mut spikes: Vec<usize> = (0..spikes_n)
        .map(|_| rng.random_range(SLOTS_PER_DAY / 12..slots - SPIKE_SLOTS))
        .collect();
    spikes.sort_unstable();
    let start_day = start.div_euclid(DAY_MS);
    let mut active = 0f64;
    let mut weights = Vec::with_capacity(slots);
    for (s, d) in delta.iter().take(slots).enumerate() {
        active += d;
        let mid = start.rem_euclid(DAY_MS) + s as Millis * SLOT_MS + SLOT_MS / 2;
        let day = start_day + mid.div_euclid(DAY_MS);
        let hour = mid.rem_euclid(DAY_MS) as f64 / HOUR as f64;
        let h0 = hour.floor() as usize % 24;
        let frac = hour - hour.floor();
        let diurnal = HOURLY[h0] * (1.0 - frac) + HOURLY[(h0 + 1) % 24] * frac;
        // 1970-01-01 was a Thursday (index 3 with Monday = 0).
        let weekday = WEEKDAY[(day + 3).rem_euclid(7) as usize];
        weights.push(diurnal * weekday * active.max(0.0));
    }
    // A spike adds a burst as large as SPIKE_EXTRA average slots, whatever the hour.
    let mean = weights.iter().sum::<f64>() / slots.max(1) as f64;
    for &s in &spikes {
        for w in &mut weights[s..s + SPIKE_SLOTS] {
            *w += SPIKE_EXTRA * mean;
        }
    }
    (weights, spikes)
}

/// Builds sessions: picks a user active at the start time and not in another session,
/// then emits a run of events a few seconds to a few minutes apart.
pub(super) struct Sessions<'a> {
    users: &'a Users,
    pick_user: Option<WeightedIndex<f64>>,
    last_end: Vec<Millis>,
    item_zipf: Zipf<f64>,
    rank_to_item: Vec<u32>,
    item_length: Vec<i64>,
    length: Geometric,
    gap: LogNormal<f64>,
    starts: Vec<(Millis, u64)>,
    /// Sessions emitted so far.
    pub count: u64,
}

impl<'a> Sessions<'a> {
    /// Prepares the samplers; the item popularity order is a seeded permutation.
    pub fn new(rng: &mut StdRng, users: &'a Users, items: &Items) -> Sessions<'a> {
        let pick_user = WeightedIndex::new(users.weight.iter().copied()).ok();
        let n = items.ids.len().max(1);
        let mut rank_to_item: Vec<u32> = (0..n as u32).collect();
        // Fisher-Yates with our own RNG so the order is fixed by the seed.
        for i in (1..n).rev() {
            let j = rng.random_range(0..=i);
            rank_to_item.swap(i, j);
        }
        Sessions {
            users,
            pick_user,
            last_end: vec![Millis::MIN; users.ids.len()],
            item_zipf: Zipf::new(n as f64, 0.9).expect("valid Zipf"),
            rank_to_item,
            item_length: items.length.iter().map(|l| l.unwrap_or(200_000)).collect(),
            length: Geometric::new(1.0 / 8.0).expect("valid Geometric"),
            gap: LogNormal::new((25_000f64).ln(), 1.0).expect("valid LogNormal"),
            starts: Vec::new(),
            count: 0,
        }
    }

    /// Spends the event budget of one slot: draws session sizes while `balance > 0`
    /// (at most `remaining` events in all), start times uniform in the slot, and emits
    /// each session's rows. A session for which no user can be found gives its budget
    /// back; the slot then stops and the balance carries to the next slot.
    pub fn fill_slot(
        &mut self,
        rng: &mut StdRng,
        slot_start: Millis,
        balance: &mut i64,
        remaining: &mut u64,
        seq: &mut u64,
        mut emit: impl FnMut(Row),
    ) {
        self.starts.clear();
        while *balance > 0 && *remaining > 0 {
            let n = (1 + self.length.sample(rng)).min(400).min(*remaining);
            *balance -= n as i64;
            *remaining -= n;
            self.starts.push((0, n));
        }
        if self.starts.is_empty() {
            return;
        }
        for s in &mut self.starts {
            s.0 = slot_start + rng.random_range(0..SLOT_MS);
        }
        let mut starts = std::mem::take(&mut self.starts);
        starts.sort_unstable();
        for &(start, n) in &starts {
            match self.pick_user(rng, start) {
                Some(user) => {
                    let end = self.session(rng, user, start, n, seq, &mut emit);
                    self.last_end[user as usize] = end;
                    self.count += 1;
                }
                None => {
                    *balance += n as i64;
                    *remaining += n;
                }
            }
        }
        self.starts = starts;
    }

    /// A user active at `t` (weighted by activity), preferring one whose last session
    /// ended at least 31 minutes before so sessions do not run into each other.
    fn pick_user(&mut self, rng: &mut StdRng, t: Millis) -> Option<u32> {
        let pick = self.pick_user.as_ref()?;
        let mut fallback = None;
        for _ in 0..64 {
            let u = pick.sample(rng);
            if self.users.active_from[u] <= t && t < self.users.active_to[u] {
                if self.last_end[u] == Millis::MIN || t >= self.last_end[u] + 31 * MINUTE {
                    return Some(u as u32);
                }
                fallback.get_or_insert(u as u32);
            }
        }
        fallback
    }

    fn popular_item(&self, rng: &mut StdRng) -> u32 {
        let rank = self.item_zipf.sample(rng) as usize;
        self.rank_to_item[(rank - 1).min(self.rank_to_item.len() - 1)]
    }

    /// Emits `n` events of one session from `start`; returns the last event's time.
    fn session(
        &self,
        rng: &mut StdRng,
        user: u32,
        start: Millis,
        n: u64,
        seq: &mut u64,
        emit: &mut impl FnMut(Row),
    ) -> Millis {
        let mut t = start;
        let mut current = None;
        let mut last = start;
        for j in 0..n {
            let etype = if j == 0 {
                pick(rng, &FIRST_WEIGHTS)
            } else if j + 1 == n && n > 2 && rng.random_bool(0.3) {
                STOP
            } else {
                pick(rng, &NEXT_WEIGHTS)
            };
            let (item, dur) = match etype {
                PLAY | SKIP => {
                    let item = self.popular_item(rng);
                    current = Some(item);
                    let dur = if etype == PLAY {
                        let length = self.item_length[item as usize];
                        if rng.random_bool(0.65) {
                            length
                        } else {
                            (length as f64 * rng.random_range(0.05..1.0)) as i64
                        }
                    } else {
                        NO_DURATION
                    };
                    (item, dur)
                }
                PAUSE | LIKE | PLAYLIST_ADD | STOP => (
                    current.unwrap_or_else(|| self.popular_item(rng)),
                    NO_DURATION,
                ),
                PAGE_VIEW => (
                    PAGE_BASE + rng.random_range(0..PAGES.len() as u32),
                    NO_DURATION,
                ),
                _ => (NO_ITEM, NO_DURATION),
            };
            let form = match rng.random_range(0..100u32) {
                0..85 => 0,
                85..91 => 1,
                91..95 => 2,
                _ => 3,
            };
            let variant = if rng.random_bool(0.002) {
                rng.random_range(1..4u8)
            } else {
                0
            };
            emit(Row {
                ts: t,
                key: t,
                seq: *seq,
                dur,
                user,
                item,
                etype,
                style: form | (variant << 2),
                bad: 0,
                kind: super::Kind::InOrder as u8,
            });
            *seq += 1;
            last = t;
            let gap = if etype == PLAY {
                (dur + rng.random_range(300..5_000)).clamp(5_000, 20 * MINUTE)
            } else {
                (self.gap.sample(rng) as i64).clamp(5_000, 5 * MINUTE)
            };
            t += gap;
        }
        last
    }
}
