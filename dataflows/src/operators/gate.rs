//! From parsed rows to accepted events: the watermark gate (contract "Lateness") and
//! deduplication by `event_id` (first seen wins).

use std::cell::RefCell;
use std::collections::BTreeMap;

use differential_dataflow::{AsCollection, VecCollection};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use tidemark_records::records::{Event, Millis, QuarantineRow};
use tidemark_records::time::day_of;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::Capability;
use xxhash_rust::xxh3::xxh3_128;

use crate::model::action::{Action, ActionMaker};
use crate::operators::expiry::{note_watermarks, take_watermark_through, Watermarks};
use crate::operators::held::{flatten, hold_chunks, HeldByTime, HeldChunks, HeldUpdates};
use crate::operators::reduce::HashReduce;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::StreamVec;

/// Logical time: the index of the input batch in arrival order. A batch holds one or
/// more input units (files, or live lines of an interval).
pub type Time = u64;

/// A valid event row as read, tagged with where it came from. `(batch, row)` orders
/// arrivals, which decides which duplicate is "first seen".
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RawEvent {
    /// The input unit (file index in arrival order, across batches) that brought the row.
    pub batch: u64,
    /// The row's 1-based number in its file.
    pub row: u64,
    /// The parsed event.
    pub event: Event,
}

/// An event row that passed the watermark gate, compact: where it came from (which
/// orders duplicates), the 128-bit hash of its `event_id` (what deduplication keys
/// on) and the [`Action`] it becomes if it is the first of its id. Every text is gone,
/// so the rows that are moved, exchanged and sorted from here on are 88 bytes, `Copy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Admitted {
    /// The input unit that brought the row (see [`RawEvent::batch`]).
    pub batch: u64,
    /// The row's 1-based number in its file.
    pub row: u64,
    /// `xxh3_128` of the `event_id` text, high half first (read it with
    /// [`Admitted::id`]): two words align to 8 bytes where a `u128` aligns to 16, which
    /// would pad the row to 96 bytes.
    id: [u64; 2],
    /// The event as the metrics hold it.
    pub action: Action,
}

impl Admitted {
    /// The compact form of `event`, row `row` of input unit `batch`.
    pub fn new(batch: u64, row: u64, event: &Event) -> Admitted {
        Admitted {
            batch,
            row,
            id: split(xxh3_128(event.event_id.as_bytes())),
            action: ActionMaker.make(event),
        }
    }

    /// `xxh3_128` of the row's `event_id` text: what deduplication keys on.
    pub fn id(&self) -> u128 {
        (u128::from(self.id[0]) << 64) | u128::from(self.id[1])
    }
}

/// A 128-bit id as its high and low words.
fn split(id: u128) -> [u64; 2] {
    [(id >> 64) as u64, id as u64]
}

/// Event rows of one input unit, in file order, as one record: what the gate takes in.
/// A file's rows go from its reader to the gate in the reader's own vectors, moved
/// whole, so no row is copied or allocated again before the gate turns it into an
/// [`Admitted`] row. A unit may come in several of these (tests feed a row at a time).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnitRows {
    /// The input unit (see [`RawEvent::batch`]).
    pub batch: u64,
    /// Each event's 1-based row number in its file (as long as `events`).
    pub rows: Vec<u64>,
    /// The parsed events.
    pub events: Vec<Event>,
}

impl From<RawEvent> for UnitRows {
    /// One row as a run of its own.
    fn from(raw: RawEvent) -> UnitRows {
        UnitRows {
            batch: raw.batch,
            rows: vec![raw.row],
            events: vec![raw.event],
        }
    }
}

/// What the worker that read an input unit announces to every worker, at the logical
/// time of the unit's batch: the file's name and the largest event time among its
/// valid event rows. Watermarks are built from these, per unit (contract "Lateness").
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BatchMark {
    /// The input unit (arrival order across batches).
    pub batch: u64,
    /// The file, relative to the dataset directory.
    pub file: String,
    /// Largest `ts` of the batch's valid events, if it had any.
    pub max_ts: Option<Millis>,
}

/// Rows held per logical time until it is complete, with capabilities for the on-time
/// and the too-late output.
type HeldRows = HeldByTime<(Capability<Time>, Capability<Time>), Vec<(UnitRows, isize)>>;

/// A complete time the gate is releasing, a chunk of rows per activation.
struct Releasing {
    time: Time,
    /// Capabilities for the on-time and the too-late output.
    caps: (Capability<Time>, Capability<Time>),
    /// The time's runs of rows, each with its multiplicity.
    units: Vec<(UnitRows, isize)>,
    /// The run being released, and its first row not released yet.
    unit: usize,
    at: usize,
    /// The watermark of each unit among them, once judged.
    judged: BTreeMap<u64, Option<Millis>>,
}

/// Operators that hold a whole logical time release it at most this many records per
/// activation, so that the operators downstream take each chunk (and the copies made
/// for each of them: every metric reads the accepted events) while it is in cache,
/// before the next chunk is made.
pub const RELEASE_CHUNK: usize = 16_384;

/// Splits event rows into those at or above their unit's watermark and `too_late`
/// quarantine rows. The watermark of input unit `u` is the largest event time of units
/// `< u` minus `allowed_lateness_ms`, whichever logical times those units were grouped
/// into; rows of time `t` are held until every worker has announced its
/// [`BatchMark`]s up to `t`, so the split is the same on any number of workers and
/// processes, and for any grouping of units into times.
///
/// Each row comes with a multiplicity: -1 retracts a row fed earlier. A row whose
/// `raw.batch` is an earlier unit (the rows of a changed file re-ingested in place of
/// its old unit, and the retraction of that old unit) is judged against the watermark
/// of `raw.batch`, so a retraction undoes exactly the earlier decision and a
/// replacement is judged where its file arrived. Watermarks never move back.
///
/// The third output is the watermark of every logical time (the watermark of its first
/// unit, once some unit before it had events), the same on every worker: what
/// [`crate::operators::expiry`] retires state by.
///
/// With [`deduplicate`] after it, this is how accepted events are made:
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use tidemark_dataflows::operators::gate::{deduplicate, watermark_gate, BatchMark, RawEvent, UnitRows};
/// use tidemark_records::records::Event;
/// use timely::dataflow::operators::{Input as _, Inspect};
///
/// const HOUR: i64 = 3_600_000;
/// let event = |id: &str, ts: i64| Event {
///     event_id: id.into(),
///     user_id: "u1".into(),
///     ts,
///     event_type: "play".into(),
///     item_id: None,
///     duration_ms: None,
///     session_id: None,
///     value: None,
/// };
/// let (accepted, late) = (Arc::new(Mutex::new(0)), Arc::new(Mutex::new(Vec::new())));
/// let (accepted_out, late_out) = (Arc::clone(&accepted), Arc::clone(&late));
/// timely::execute_directly(move |worker| {
///     let (mut rows, mut marks) = worker.dataflow::<u64, _, _>(|scope| {
///         let (rows_in, rows) = scope.new_input::<Vec<(UnitRows, isize)>>();
///         let (marks_in, marks) = scope.new_input::<Vec<BatchMark>>();
///         let (on_time, too_late, watermarks) = watermark_gate(rows, marks, HOUR);
///         deduplicate(on_time, &watermarks, false)
///             .inner
///             .inspect(move |(_, _, diff)| *accepted_out.lock().unwrap() += diff);
///         too_late
///             .inner
///             .inspect(move |(row, _, _)| late_out.lock().unwrap().push(row.clone()));
///         (rows_in, marks_in)
///     });
///     // Unit 0 (file a): events at 10:00 and 12:00.
///     for (row, e) in [event("e1", 10 * HOUR), event("e2", 12 * HOUR)].into_iter().enumerate() {
///         rows.send((RawEvent { batch: 0, row: row as u64 + 1, event: e }.into(), 1));
///     }
///     marks.send(BatchMark { batch: 0, file: "a".into(), max_ts: Some(12 * HOUR) });
///     rows.advance_to(1);
///     marks.advance_to(1);
///     // Unit 1 (file b), judged against 12:00 - 1 h: 10:30 is too late, 11:30 is
///     // on time, and a repeat of e2 is a duplicate.
///     for (row, e) in [event("e3", 10 * HOUR + HOUR / 2), event("e4", 11 * HOUR + HOUR / 2), event("e2", 12 * HOUR)]
///         .into_iter()
///         .enumerate()
///     {
///         rows.send((RawEvent { batch: 1, row: row as u64 + 1, event: e }.into(), 1));
///     }
///     marks.send(BatchMark { batch: 1, file: "b".into(), max_ts: Some(12 * HOUR) });
///     rows.advance_to(2);
///     marks.advance_to(2);
/// });
/// assert_eq!(*accepted.lock().unwrap(), 3); // e1, e2, e4
/// let late = late.lock().unwrap();
/// assert_eq!(late.len(), 1);
/// assert_eq!((late[0].file.as_str(), late[0].row, late[0].reason.as_str()), ("b", 1, "too_late"));
/// ```
pub fn watermark_gate<'s>(
    rows: StreamVec<'s, Time, (UnitRows, isize)>,
    marks: StreamVec<'s, Time, BatchMark>,
    allowed_lateness_ms: Millis,
) -> (
    VecCollection<'s, Time, Admitted>,
    VecCollection<'s, Time, QuarantineRow>,
    Watermarks<'s>,
) {
    // One operator with three outputs: each row goes to exactly one of them, with no
    // partition and no copy for a second reader.
    let scope = rows.scope();
    let mut builder = OperatorBuilder::new("WatermarkGate".to_owned(), scope);
    let mut rows_in = builder.new_input(rows, Pipeline);
    let mut marks_in = builder.new_input(marks.broadcast(), Pipeline);
    let (on_time_out, on_time) = builder.new_output::<Vec<(Admitted, Time, isize)>>();
    let (too_late_out, too_late) = builder.new_output::<Vec<(QuarantineRow, Time, isize)>>();
    let (watermarks_out, watermarks) = builder.new_output::<Vec<Millis>>();
    let mut on_time_out = OutputBuilder::<_, CapacityContainerBuilder<_>>::from(on_time_out);
    let mut too_late_out = OutputBuilder::<_, CapacityContainerBuilder<_>>::from(too_late_out);
    let mut watermarks_out = OutputBuilder::<_, CapacityContainerBuilder<_>>::from(watermarks_out);
    let activator = scope.activator_for(builder.operator_info().address);
    builder.build(move |_initial| {
        // Rows of each time, with capabilities for the on-time and too-late outputs.
        let mut pending: HeldRows = HeldByTime::default();
        // A capability at each batch time, to announce that time's watermark, and
        // the units the time holds.
        let mut marked: HeldUpdates<u64> = HeldByTime::default();
        // Every unit's file and largest event time: kept (one entry per unit) so
        // that a retraction can be judged against its own unit's watermark.
        let mut files: BTreeMap<u64, String> = BTreeMap::new();
        let mut maxima: BTreeMap<u64, Millis> = BTreeMap::new();
        // The largest event time of the units before each unit judged so far.
        let mut before: BTreeMap<u64, Option<Millis>> = BTreeMap::new();
        let mut largest_before: Option<Millis> = None;
        let mut folded: u64 = 0;
        // The complete time being released: its capabilities, the rows left and the
        // watermark of each unit among them.
        let mut releasing: Option<Releasing> = None;
        let lateness =
            move |largest: Option<Millis>| largest.map(|m| m.saturating_sub(allowed_lateness_ms));
        move |frontiers| {
            let mut on_time_out = on_time_out.activate();
            let mut too_late_out = too_late_out.activate();
            let mut watermarks_out = watermarks_out.activate();
            rows_in.for_each(|cap, data| {
                if let (Some(on_time), Some(too_late)) = (cap.retain_least(0), cap.retain_least(1))
                {
                    let time = *on_time.time();
                    pending.at(time, || (on_time, too_late)).append(data);
                }
            });
            marks_in.for_each(|cap, data| {
                for mark in data.drain(..) {
                    if let Some(cap) = cap.retain_least(2) {
                        let at = *cap.time();
                        marked.at(at, || cap).push(mark.batch);
                    }
                    if let Some(ts) = mark.max_ts {
                        let entry = maxima.entry(mark.batch).or_insert(ts);
                        *entry = (*entry).max(ts);
                    }
                    files.insert(mark.batch, mark.file);
                }
            });
            // A time is complete once neither input can bring more for it.
            let complete = |t: &Time| !frontiers[0].less_equal(t) && !frontiers[1].less_equal(t);
            // Complete times in order: each announces its watermark (if it is a batch
            // time) and releases its rows (if it has any), a chunk per activation.
            loop {
                if let Some(release) = releasing.as_mut() {
                    let time = release.time;
                    let mut on_time = on_time_out.session(&release.caps.0);
                    let mut too_late = too_late_out.session(&release.caps.1);
                    let mut budget = RELEASE_CHUNK;
                    while budget > 0 && release.unit < release.units.len() {
                        let (run, diff) = &mut release.units[release.unit];
                        let (unit, diff) = (run.batch, *diff);
                        // The watermark of the run's unit, looked up once per run.
                        let watermark =
                            *release.judged.entry(unit).or_insert_with(|| {
                                lateness(before.get(&unit).copied().unwrap_or_else(|| {
                                    maxima.range(..unit).map(|(_, ts)| *ts).max()
                                }))
                            });
                        // Rows and events pair up (a reader gives both, as long).
                        debug_assert_eq!(run.events.len(), run.rows.len());
                        let len = run.events.len().min(run.rows.len());
                        let end = len.min(release.at + budget);
                        let rows = run.rows[release.at..end].iter();
                        for (row, event) in rows.zip(&run.events[release.at..end]) {
                            if watermark.is_some_and(|w| event.ts < w) {
                                let row = QuarantineRow {
                                    file: files.get(&unit).cloned().unwrap_or_default(),
                                    row: *row,
                                    field: "ts".into(),
                                    reason: "too_late".into(),
                                    raw: event.raw_json(),
                                };
                                too_late.give((row, time, diff));
                            } else {
                                on_time.give((Admitted::new(unit, *row, event), time, diff));
                            }
                        }
                        budget -= end - release.at;
                        release.at = end;
                        if end == len {
                            // The run is released: its memory goes back now.
                            *run = UnitRows::default();
                            release.unit += 1;
                            release.at = 0;
                        }
                    }
                    if release.unit < release.units.len() {
                        activator.activate();
                        break;
                    }
                    drop((on_time, too_late));
                    releasing = None;
                }
                let next = match (pending.first_time(), marked.first_time()) {
                    (Some(a), Some(b)) => a.min(b),
                    (Some(a), None) => a,
                    (None, Some(b)) => b,
                    (None, None) => break,
                };
                if !complete(&next) {
                    break;
                }
                let time = next;
                // The running maximum over every unit before each unit of `time`
                // (every earlier unit is in a complete time by now, and releases
                // come in time order), so the usual case costs no scan.
                if let Some((cap, mut units)) = marked.take(time) {
                    units.sort_unstable();
                    for unit in &units {
                        if *unit < folded {
                            continue;
                        }
                        for (_, ts) in maxima.range(folded..*unit) {
                            largest_before =
                                Some(largest_before.map_or(*ts, |m: Millis| m.max(*ts)));
                        }
                        folded = *unit;
                        before.insert(*unit, largest_before);
                    }
                    let first = units.first().and_then(|unit| before.get(unit).copied());
                    if let Some(watermark) = lateness(first.flatten()) {
                        watermarks_out.session(&cap).give(watermark);
                    }
                }
                if let Some((caps, units)) = pending.take(time) {
                    releasing = Some(Releasing {
                        time,
                        caps,
                        units,
                        unit: 0,
                        at: 0,
                        judged: BTreeMap::new(),
                    });
                }
            }
        }
    });
    (
        on_time.as_collection(),
        too_late.as_collection(),
        watermarks,
    )
}

/// Accepted events: per `event_id`, the first-seen row (smallest batch, then row).
/// Later rows with the same id are duplicates and count once (contract `events/`).
///
/// Input rows are only ever added, and a later batch can never precede an earlier one,
/// so the first-seen row of an id never changes once its batch is complete. That makes
/// dedup a streaming operator: rows are routed by id, each complete batch is taken in
/// row order, and an id's first row is emitted while its 128-bit hash is remembered.
/// (A differential `reduce` here would arrange every event by id and copy it on each
/// merge; this keeps 16 bytes per id instead.)
///
/// With `forget` (setting `forget_behind_watermark`), ids are kept per UTC day of their
/// first row's time and a day's ids are dropped once the watermark passes its end, so
/// the state holds the open days' ids only.
///
/// The example of [`watermark_gate`] runs it: a repeated `event_id` counts once.
pub fn deduplicate<'s>(
    rows: VecCollection<'s, Time, Admitted>,
    watermarks: &Watermarks<'s>,
    forget: bool,
) -> VecCollection<'s, Time, Action> {
    let route = Exchange::new(|(row, _time, _diff): &(Admitted, Time, isize)| row.id() as u64);
    let scope = rows.scope();
    rows.inner
        .binary_frontier(
            watermarks.clone(),
            route,
            Pipeline,
            "Deduplicate",
            move |_capability, info| {
                let activator = scope.activator_for(info.address);
                let mut pending: HeldChunks<Admitted> = HeldByTime::default();
                let mut known: BTreeMap<Time, Millis> = BTreeMap::new();
                // Ids by the day of their first row (with `forget`), or all of them.
                let mut seen: BTreeMap<i32, FxHashSet<u128>> = BTreeMap::new();
                let mut all_ids = IdSet::default();
                // The complete time being released, in row order, a chunk per activation.
                let mut releasing: Option<(Time, Capability<Time>, Judged)> = None;
                move |(input, frontier), (marks, marks_frontier), output| {
                    input.for_each(|cap, data| hold_chunks(&mut pending, &cap, data));
                    marks.for_each(|cap, data| note_watermarks(&mut known, &cap, data));
                    loop {
                        if releasing.is_none() {
                            let Some((time, cap, chunks)) = pending.pop_complete(|time| {
                                !frontier.frontier().less_equal(&time)
                                    && !marks_frontier.frontier().less_equal(&time)
                            }) else {
                                break;
                            };
                            let rows = flatten(chunks, |row, diff| {
                                // Retractions come only with `--reingest-changed`, which
                                // selects `deduplicate_with_retractions` instead.
                                debug_assert!(diff > 0, "input rows are never retracted here");
                                row
                            });
                            let watermark = take_watermark_through(&mut known, time);
                            if let Some(watermark) = watermark.filter(|_| forget) {
                                // Days that ended at or before the watermark are closed.
                                seen = seen.split_off(&day_of(watermark));
                            }
                            let keep = if forget {
                                // An id is kept under the day of its first row, which
                                // closes with that day.
                                let seen = RefCell::new(&mut seen);
                                first_arrivals(
                                    &rows,
                                    |row| {
                                        let mut seen = seen.borrow_mut();
                                        if seen.values().any(|ids| ids.contains(&row.id())) {
                                            return false;
                                        }
                                        let day = day_of(row.action.ts);
                                        seen.entry(day).or_default().insert(row.id())
                                    },
                                    |recorded, winner| {
                                        let mut seen = seen.borrow_mut();
                                        let day = day_of(recorded.action.ts);
                                        if let Some(ids) = seen.get_mut(&day) {
                                            ids.remove(&recorded.id());
                                        }
                                        let day = day_of(winner.action.ts);
                                        seen.entry(day).or_default().insert(winner.id());
                                    },
                                )
                            } else {
                                // One probe answers and records.
                                all_ids.reserve(rows.len());
                                first_arrivals(&rows, |row| all_ids.insert(row.id()), |_, _| {})
                            };
                            releasing = Some((time, cap, Judged { rows, keep, at: 0 }));
                        }
                        let Some((time, cap, judged)) = releasing.as_mut() else {
                            break;
                        };
                        let mut session = output.session(cap);
                        let end = judged.rows.len().min(judged.at + RELEASE_CHUNK);
                        let chunk = (judged.at..end).filter(|&at| judged.keep[at]);
                        session.give_iterator(chunk.map(|at| (judged.rows[at].action, *time, 1)));
                        judged.at = end;
                        drop(session);
                        if end < judged.rows.len() {
                            // The next chunk after the operators downstream have taken
                            // this one: the copies for each of them stay in cache.
                            activator.activate();
                            break;
                        }
                        releasing = None;
                    }
                }
            },
        )
        .as_collection()
}

/// How many hash sets hold the ids of [`IdSet`].
const ID_SET_PARTS: usize = 16;

/// The id hashes of every accepted event on this worker (the exact default: 16 bytes
/// an id), in [`ID_SET_PARTS`] hash sets picked by the id's leading byte.
///
/// A hash set has a power of two of buckets and doubles when 7/8 full, so one set for
/// all ids was between 44% and 87% full, 19 to 39 bytes an id, by the luck of the id
/// count: at 30M events on 2 workers, 15M ids a worker had just doubled it to 570 MB,
/// and the copy had held the old 285 MB table beside it, at the run's peak. Here the
/// parts take unequal shares of the ids, part `i` in proportion to `2^(i/16)`, so
/// their doublings are spread evenly over each doubling of the whole: whatever the
/// count, the parts are as full as a set is on average over its cycle (about 27
/// bytes an id), and a doubling copies one part, a twentieth of the ids or less.
struct IdSet {
    parts: Vec<FxHashSet<u128>>,
    /// The part of each leading byte of an id.
    part_of: [u8; 256],
}

impl Default for IdSet {
    fn default() -> IdSet {
        let share = |part: usize| (part as f64 / ID_SET_PARTS as f64).exp2();
        let total: f64 = (0..ID_SET_PARTS).map(share).sum();
        let mut part_of = [0u8; 256];
        let mut below = 0.0;
        let mut first = 0;
        for part in 0..ID_SET_PARTS {
            below += share(part);
            let end = ((below / total) * 256.0).round() as usize;
            part_of[first..end].fill(part as u8);
            first = end;
        }
        IdSet {
            parts: vec![FxHashSet::default(); ID_SET_PARTS],
            part_of,
        }
    }
}

impl IdSet {
    /// Records `id`; whether it is new.
    #[inline]
    fn insert(&mut self, id: u128) -> bool {
        let part = self.part_of[(id >> (u128::BITS - 8)) as usize];
        self.parts[usize::from(part)].insert(id)
    }

    /// Room for about `ids` more ids spread over the parts by their shares, with a
    /// little to spare: a time's ids go in without a rehash of a part for each doubling
    /// on the way.
    fn reserve(&mut self, ids: usize) {
        let mut bytes = [0usize; ID_SET_PARTS];
        for part in self.part_of {
            bytes[usize::from(part)] += 1;
        }
        for (part, bytes) in self.parts.iter_mut().zip(bytes) {
            let each = ids * bytes / 256;
            part.reserve(each + each / 8 + 16);
        }
    }
}

/// A complete time's rows, each with whether it is the first of its id.
struct Judged {
    rows: Vec<Admitted>,
    /// Whether each row is the first of its id.
    keep: Vec<bool>,
    /// The first row not released yet.
    at: usize,
}

/// Which of one time's `rows` (in any order) are the first arrival of their id:
/// `record(row)` records a row's id and says whether no earlier time had it. Among the
/// rows of this time with one id the earliest `(batch, row)` wins, so the rows need
/// no sort: the few ids that repeat within the time are settled afterwards, and
/// `moved(recorded, winner)` is told when a row recorded first is not the winner.
fn first_arrivals(
    rows: &[Admitted],
    mut record: impl FnMut(&Admitted) -> bool,
    mut moved: impl FnMut(&Admitted, &Admitted),
) -> Vec<bool> {
    let mut keep = Vec::with_capacity(rows.len());
    // The earliest of the rows whose id was already recorded, per id.
    let mut repeats: FxHashMap<u128, usize> = FxHashMap::default();
    for (at, row) in rows.iter().enumerate() {
        let new = record(row);
        keep.push(new);
        if !new {
            let earliest = repeats.entry(row.id()).or_insert(at);
            if (row.batch, row.row) < (rows[*earliest].batch, rows[*earliest].row) {
                *earliest = at;
            }
        }
    }
    if !repeats.is_empty() {
        // An id recorded by a row of this time: the earliest of its rows wins.
        for at in 0..rows.len() {
            let row = &rows[at];
            if !keep[at] {
                continue;
            }
            if let Some(&other) = repeats.get(&row.id()) {
                if (rows[other].batch, rows[other].row) < (row.batch, row.row) {
                    keep[at] = false;
                    keep[other] = true;
                    moved(row, &rows[other]);
                }
            }
        }
    }
    keep
}

/// Deduplication that also accepts retracted rows (a re-ingested file): a differential
/// `reduce` per id hash keeps every live arrival, so retracting the first-seen row
/// promotes the next one. Slower and larger than [`deduplicate`]; used only when
/// retractions are possible.
pub fn deduplicate_with_retractions<'s>(
    rows: VecCollection<'s, Time, Admitted>,
) -> VecCollection<'s, Time, Action> {
    rows.map(|row| (row.id(), (row.batch, row.row, row.action)))
        .reduce_by_hash("DeduplicateWithRetractions", |_id, arrivals, output| {
            // Values arrive sorted, so the first is the earliest live arrival.
            output.push((arrivals[0].0 .2, 1isize));
        })
        .map(|(_id, action)| action)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tidemark_records::records::Event;
    use timely::dataflow::operators::{Input as _, Inspect};

    const HOUR: i64 = 3_600_000;

    #[test]
    fn the_id_set_in_parts_answers_as_one_set() {
        let mut next = crate::test_numbers(17);
        let mut parts = IdSet::default();
        let mut one = FxHashSet::default();
        // Ids as the gate makes them (128-bit hashes), some repeated, in times of
        // varied sizes with room reserved as the gate does.
        let mut earlier: Vec<u128> = Vec::new();
        for size in [0, 1, 700, 5_000, 40_000] {
            parts.reserve(size);
            for _ in 0..size {
                let id = if !earlier.is_empty() && next(5) == 0 {
                    earlier[next(earlier.len() as u64) as usize]
                } else {
                    // 31 random bits a draw: five fill the 128.
                    (0..5).fold(0u128, |id, _| id << 31 | u128::from(next(1 << 31)))
                };
                earlier.push(id);
                assert_eq!(parts.insert(id), one.insert(id), "id {id:x}");
            }
        }
        let held: usize = parts.parts.iter().map(|p| p.len()).sum();
        assert_eq!(held, one.len());
        // Part i holds about a share 2^(i/16) / sum of them, the last about twice the
        // first: their doublings come one after another.
        let total: f64 = (0..ID_SET_PARTS).map(|i| (i as f64 / 16.0).exp2()).sum();
        for (i, part) in parts.parts.iter().enumerate() {
            let share = part.len() as f64 / one.len() as f64;
            let expected = (i as f64 / 16.0).exp2() / total;
            assert!((share / expected - 1.0).abs() < 0.15, "part {i}: {share}");
        }
        let (first, last) = (parts.parts[0].len(), parts.parts[ID_SET_PARTS - 1].len());
        assert!(last as f64 / first as f64 > 1.6, "{first} {last}");
    }

    fn event(id: usize, ts: i64) -> Event {
        Event {
            event_id: format!("e{id}").into(),
            user_id: "u1".into(),
            ts,
            event_type: "play".into(),
            item_id: None,
            duration_ms: None,
            session_id: None,
            value: None,
        }
    }

    /// A time far larger than [`RELEASE_CHUNK`] is released over several activations:
    /// the first row of every id still wins across chunk borders, and the rows of the
    /// next time (too late ones included) are judged only after it.
    #[test]
    fn times_larger_than_a_release_chunk_keep_first_seen_and_lateness() {
        let rows_per_time = 2 * RELEASE_CHUNK + 1000;
        let distinct = RELEASE_CHUNK + 500;
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let late = Arc::new(Mutex::new(0isize));
        let (accepted_out, late_out) = (Arc::clone(&accepted), Arc::clone(&late));
        timely::execute_directly(move |worker| {
            let (mut rows, mut marks) = worker.dataflow::<u64, _, _>(|scope| {
                let (rows_in, rows) = scope.new_input::<Vec<(UnitRows, isize)>>();
                let (marks_in, marks) = scope.new_input::<Vec<BatchMark>>();
                let (on_time, too_late, watermarks) = watermark_gate(rows, marks, HOUR);
                deduplicate(on_time, &watermarks, false).inner.inspect(
                    move |(action, time, diff)| {
                        accepted_out.lock().unwrap().push((*time, action.ts, *diff))
                    },
                );
                too_late
                    .inner
                    .inspect(move |(_, _, diff)| *late_out.lock().unwrap() += diff);
                (rows_in, marks_in)
            });
            // Time 0: ids repeat after `distinct` rows; a row's ts is 10:00 plus its
            // number in ms, so the accepted ts tell which row won. Rows arrive in
            // reverse order: the release sorts them.
            for row in (1..=rows_per_time).rev() {
                let e = event((row - 1) % distinct, 10 * HOUR + row as i64);
                rows.send((
                    RawEvent {
                        batch: 0,
                        row: row as u64,
                        event: e,
                    }
                    .into(),
                    1,
                ));
            }
            marks.send(BatchMark {
                batch: 0,
                file: "a".into(),
                max_ts: Some(12 * HOUR),
            });
            rows.advance_to(1);
            marks.advance_to(1);
            // Time 1: every other row is before 11:00 (too late); the others are new.
            for row in 1..=rows_per_time {
                let ts = if row % 2 == 0 { 10 * HOUR } else { 12 * HOUR };
                let e = event(distinct + row, ts);
                rows.send((
                    RawEvent {
                        batch: 1,
                        row: row as u64,
                        event: e,
                    }
                    .into(),
                    1,
                ));
            }
            marks.send(BatchMark {
                batch: 1,
                file: "b".into(),
                max_ts: Some(12 * HOUR),
            });
            rows.advance_to(2);
            marks.advance_to(2);
        });
        let accepted = accepted.lock().unwrap();
        let first: Vec<i64> = accepted
            .iter()
            .filter(|(t, _, _)| *t == 0)
            .map(|a| a.1)
            .collect();
        let expected: Vec<i64> = (1..=distinct).map(|row| 10 * HOUR + row as i64).collect();
        let mut sorted = first.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, expected, "the first row of each id wins");
        let second = accepted.iter().filter(|(t, _, _)| *t == 1).count();
        assert_eq!(second, rows_per_time.div_ceil(2));
        assert_eq!(*late.lock().unwrap(), (rows_per_time / 2) as isize);
        assert!(accepted.iter().all(|(_, _, diff)| *diff == 1));
    }

    /// Rows of one time in any order: the earliest `(batch, row)` of each id new to the
    /// time wins, as a sort by arrival followed by a first-of-id scan says, and ids of
    /// earlier times lose.
    #[test]
    fn first_arrivals_equal_the_first_of_each_id_in_arrival_order() {
        let mut next = crate::test_numbers(5);
        for case in 0..200 {
            let rows: Vec<Admitted> = (0..next(40))
                .map(|_| Admitted::new(next(3), next(10), &event(next(8) as usize, 10 * HOUR)))
                .collect();
            let earlier: FxHashSet<u128> = (0..next(3))
                .map(|_| xxh3_128(format!("e{}", next(8)).as_bytes()))
                .collect();
            let mut ids = earlier.clone();
            let keep = first_arrivals(&rows, |row| ids.insert(row.id()), |_, _| {});
            let mut ours: Vec<(u64, u64, u128)> = (rows.iter().zip(&keep))
                .filter(|(_, keep)| **keep)
                .map(|(r, _)| (r.batch, r.row, r.id()))
                .collect();
            ours.sort_unstable();
            let mut sorted = rows.clone();
            sorted.sort_by_key(|r| (r.batch, r.row));
            let mut seen = earlier;
            let expected: Vec<(u64, u64, u128)> = sorted
                .iter()
                .filter(|r| seen.insert(r.id()))
                .map(|r| (r.batch, r.row, r.id()))
                .collect();
            // Rows of one id at one (batch, row) are equal here, so either may win.
            let mut expected = expected;
            expected.sort_unstable();
            assert_eq!(ours, expected, "case {case}");
        }
    }
}
