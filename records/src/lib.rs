//! The records tidemark's readers produce and its dataflows consume: the contract's
//! rows (`events/`, `users/`, `subscriptions/`, `items/`, quarantine), instants and
//! calendar days. A crate of its own so that the dataflows build without the readers
//! (Arrow, Parquet, CSV) and the readers without the dataflows.

pub mod records;
pub mod time;
pub mod timestamp;

/// Names a `users/` attribute may have: what a dimension can be called (lower-case
/// letters, digits and `_`, starting with a letter), and no name the contract already
/// gives a dimension.
pub fn check_attribute_name(name: &str) -> Result<(), String> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(format!(
            "user attribute `{name}` in [users.columns]: a name of lower-case letters, digits and `_`, starting with a letter"
        ));
    }
    if ["hour_of_day", "genre", "artist"].contains(&name) {
        return Err(format!(
            "user attribute `{name}` in [users.columns]: `{name}` is a dimension of its own (contract \"Dimensions\"); choose another name"
        ));
    }
    Ok(())
}
