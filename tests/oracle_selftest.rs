//! Self-tests of the oracle: small hand-built batch sequences whose results were
//! worked out by hand from the contract text. They pin the oracle's reading of it.

mod oracle;

use tidemark_dataflows::settings::Params;
use tidemark_dataflows::tables::{self, Cell};

#[test]
fn empty_input_yields_every_table_empty() {
    let out = oracle::compute(&[], &Params::default());
    assert_eq!(out.len(), tables::ALL_TABLES.len());
    for spec in tables::ALL_TABLES {
        assert_eq!(out[spec.name], Vec::<Vec<Cell>>::new(), "{}", spec.name);
    }
}
