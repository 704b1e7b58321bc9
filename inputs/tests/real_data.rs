//! Reads the two real data sets in `shared/data` through the example mappings and
//! checks counts computed independently (with Python's csv/json modules).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use tidemark_inputs::{Dataset, Table};

fn data_dir(name: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(name);
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("skipped: {} is absent", dir.display());
        None
    }
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

#[test]
fn online_retail_through_its_mapping() {
    let Some(dir) = data_dir("online_retail") else {
        return;
    };
    let dataset = Dataset::open(&dir, Some(&example("online_retail.toml"))).unwrap();
    let files = dataset.discover().unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].rel, "online_retail.csv.gz");
    assert_eq!(files[0].tables, vec![Table::Events]);
    dataset.check_columns(&files[0]).unwrap();
    let batch = dataset.read(&files[0]);
    // 541,909 lines = events + quarantined (no filter in this mapping).
    assert_eq!(batch.events.len() + batch.quarantine.len(), 541_909);
    assert_eq!(batch.event_rows.len(), batch.events.len());
    // Exactly the 135,080 lines without a CustomerID are quarantined, on user_id.
    assert_eq!(batch.quarantine.len(), 135_080);
    assert!(batch.quarantine.iter().all(|q| q.reason == "missing_value"
        && q.field == "user_id"
        && q.raw.split(',').count() >= 8));
    assert_eq!(batch.events.len(), 406_829);
    // Exact duplicate lines share an event_id: 401,604 distinct lines with a customer.
    let ids: HashSet<&str> = batch.events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), 401_604);
    // 8,905 cancellation lines with a customer; the rest are purchases.
    let cancels = batch
        .events
        .iter()
        .filter(|e| e.event_type == "cancel")
        .count();
    assert_eq!(cancels, 8_905);
    assert!(batch
        .events
        .iter()
        .all(|e| e.event_type == "cancel" || e.event_type == "purchase"));
    let first = &batch.events[0];
    assert_eq!(first.user_id, "17850");
    assert_eq!(first.item_id.as_deref(), Some("85123A"));
    assert_eq!(first.ts, 1_291_191_960_000); // 2010-12-01 08:26:00 UTC
    assert_eq!(batch.event_rows[0], 1);
    let users: HashSet<&str> = batch.events.iter().map(|e| e.user_id.as_str()).collect();
    assert_eq!(users.len(), 4_372);
}

#[test]
fn sparkify_through_its_mapping() {
    let Some(dir) = data_dir("sparkify_log") else {
        return;
    };
    let dataset = Dataset::open(&dir, Some(&example("sparkify.toml"))).unwrap();
    let files = dataset.discover().unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(
        files[0].tables,
        vec![
            Table::Events,
            Table::Users,
            Table::Subscriptions,
            Table::Items
        ]
    );
    dataset.check_columns(&files[0]).unwrap();
    let batch = dataset.read(&files[0]);
    // 8,056 lines: 7,770 logged in, 286 logged out (filtered, not quarantined).
    assert!(
        batch.quarantine.is_empty(),
        "{:?}",
        &batch.quarantine[..batch.quarantine.len().min(3)]
    );
    assert_eq!(batch.events.len(), 7_770);
    assert_eq!(batch.subscriptions.len(), 7_770);
    // Every logged-in line is also a users/ row (with three attributes), every song
    // play a catalogue row.
    assert_eq!(batch.users.len(), 7_770);
    assert_eq!(batch.items.len(), 6_820);
    let names: Vec<&str> = batch.users[2]
        .attributes
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(names, ["gender", "location", "user_agent"]);
    assert_eq!(batch.users[2].user_id, "8");
    assert_eq!(batch.users[2].attributes[0].1.as_deref(), Some("F"));
    let ids: HashSet<&str> = batch.events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), 7_770);
    assert_eq!(
        batch
            .events
            .iter()
            .filter(|e| e.event_type == "play")
            .count(),
        6_820
    );
    let users: HashSet<&str> = batch.events.iter().map(|e| e.user_id.as_str()).collect();
    assert_eq!(users.len(), 97);
    let sessions: HashSet<(&str, &str)> = batch
        .events
        .iter()
        .map(|e| (e.user_id.as_str(), e.session_id.as_deref().unwrap()))
        .collect();
    // 941 session ids in the log, 911 of them with logged-in rows.
    assert_eq!(sessions.len(), 911);
    let paid = batch
        .subscriptions
        .iter()
        .filter(|s| s.plan.as_str() == "paid")
        .count();
    assert_eq!(paid, 6_093);
    // The third line: Kaylee (userId 8) plays "You Gotta Be", 246.30812 s.
    let e = &batch.events[2];
    assert_eq!(batch.event_rows[2], 3);
    assert_eq!((e.user_id.as_str(), e.event_type.as_str()), ("8", "play"));
    assert_eq!(e.item_id.as_deref(), Some("You Gotta Be"));
    assert_eq!(e.duration_ms, Some(246_308));
    assert_eq!(e.session_id.as_deref(), Some("139"));
    assert_eq!(e.ts, 1_541_106_106_796);
}
