//! Feeding the dataflow: one worker's input handles, how one input unit goes in, and
//! [`build_with_feeds`], which makes the inputs and builds the dataflow on them. The
//! runtime (`tidemark run`), the test harness and the benches all feed it this way.

use differential_dataflow::input::{Input as _, InputSession};
use tidemark_records::records::{FileBatch, Item, QuarantineRow, Subscription, UserRow};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::Input as _;
use timely::dataflow::{InputHandle, Scope};

use crate::dataflow::{build, Inputs, Outputs};
use crate::model::plans::Arrival;
use crate::model::settings::Params;
use crate::operators::gate::{BatchMark, Time, UnitRows};

/// The input handles of one worker's dataflow.
pub struct Feeds {
    /// Event rows, a unit's rows at a time, with their arrival and row numbers.
    pub rows: InputHandle<Time, CapacityContainerBuilder<Vec<(UnitRows, isize)>>>,
    /// One [`BatchMark`] per input unit, from the worker that fed it.
    pub marks: InputHandle<Time, CapacityContainerBuilder<Vec<BatchMark>>>,
    /// `users/` rows with their arrival.
    pub users: InputSession<Time, (UserRow, Arrival), isize>,
    /// `subscriptions/` rows with their arrival.
    pub subscriptions: InputSession<Time, (Subscription, Arrival), isize>,
    /// `items/` rows with their arrival.
    pub items: InputSession<Time, (Item, Arrival), isize>,
    /// Rows and files rejected while reading.
    pub errors: InputSession<Time, QuarantineRow, isize>,
}

impl Feeds {
    /// Feeds `batch`, the input unit arriving as unit `arrival`, at the current
    /// logical time with multiplicity `diff` (-1 retracts it at a later time).
    /// The batch is moved in: its event rows go to the gate as one record, in the
    /// reader's vectors, so no event is copied. Its [`BatchMark`] is sent apart.
    pub fn feed(&mut self, batch: FileBatch, arrival: u64, diff: isize) {
        if !batch.events.is_empty() {
            let rows = UnitRows {
                batch: arrival,
                rows: batch.event_rows,
                events: batch.events,
            };
            self.rows.send((rows, diff));
        }
        for (position, user) in batch.users.into_iter().enumerate() {
            self.users.update((user, (arrival, position as u64)), diff);
        }
        for (position, change) in batch.subscriptions.into_iter().enumerate() {
            self.subscriptions
                .update((change, (arrival, position as u64)), diff);
        }
        for (position, item) in batch.items.into_iter().enumerate() {
            self.items.update((item, (arrival, position as u64)), diff);
        }
        for row in batch.quarantine {
            self.errors.update(row, diff);
        }
    }

    /// Closes logical time `time` on this worker.
    pub fn advance(&mut self, time: Time) {
        let next = time + 1;
        self.rows.advance_to(next);
        self.marks.advance_to(next);
        self.users.advance_to(next);
        self.subscriptions.advance_to(next);
        self.items.advance_to(next);
        self.errors.advance_to(next);
        self.users.flush();
        self.subscriptions.flush();
        self.items.flush();
        self.errors.flush();
    }
}

/// Makes the inputs of a worker's dataflow and builds it on them ([`build`]).
/// `retractions`: see [`Inputs::retractions`].
pub fn build_with_feeds<'s>(
    scope: &Scope<'s, Time>,
    params: Params,
    retractions: bool,
) -> (Feeds, Outputs<'s>) {
    let (rows, event_rows) = scope.new_input::<Vec<(UnitRows, isize)>>();
    let (marks, batch_marks) = scope.new_input::<Vec<BatchMark>>();
    let (users, user_rows) = scope.new_collection();
    let (subscriptions, subscription_rows) = scope.new_collection();
    let (items, item_rows) = scope.new_collection();
    let (errors, read_errors) = scope.new_collection();
    let outputs = build(
        Inputs {
            event_rows,
            batch_marks,
            users: user_rows,
            subscriptions: subscription_rows,
            items: item_rows,
            read_errors,
            retractions,
        },
        params,
    );
    let feeds = Feeds {
        rows,
        marks,
        users,
        subscriptions,
        items,
        errors,
    };
    (feeds, outputs)
}
