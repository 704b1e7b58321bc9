//! The `quarantine` table's row as the readers make it, and how it is written. Every
//! other table's row type lives in the metric module that computes it
//! (`crate::metrics`), with its formula.

/// The `quarantine` table's row, as the readers make it.
pub use tidemark_records::records::QuarantineRow;

use crate::model::tables::{self, Cell, TableRow, TableSpec};

impl TableRow for QuarantineRow {
    const SPEC: TableSpec = tables::QUARANTINE;
    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Str(self.file.as_str().into()),
            Cell::Int(self.row as i64),
            Cell::Str(self.field.as_str().into()),
            Cell::Str(self.reason.as_str().into()),
            Cell::Str(self.raw.as_str().into()),
        ]
    }
}
