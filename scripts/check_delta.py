#!/usr/bin/env python3
"""Checks tidemark's Delta Lake tables with other readers.

Usage: check_delta.py OUT [--tables-url s3://bucket/prefix]

For every table with a change stream under OUT/changes/<table>/, opens
OUT/tables/<table>/ with the Python `deltalake` package and with Polars
`pl.read_delta`, checks the column types (instants are timestamp[ms|us, UTC], day and
month columns date32, counts int64, measures float64, flags bool, text string) and
compares the row count with the change stream's summed diffs (read with pyarrow).
Exits 1 with a message per problem.

With --tables-url, the Delta tables are opened from object storage instead
(URL/tables/<table>, through `storage_options` built from the AWS_* environment
variables), while the change streams are still read from OUT (a downloaded copy).
"""

import os
import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable

# The contract's column types of the written tables (tidemark_dataflows::tables).
TIMESTAMP, DATE, INT, FLOAT, STR, BOOL = "timestamp", "date", "int", "float", "str", "bool"
TABLES = {
    "sessions": {
        "user_id": STR, "session_start": TIMESTAMP, "session_id": STR,
        "session_end": TIMESTAMP, "duration_s": FLOAT, "actions": INT,
    },
    "window_activity": {
        "window_start": TIMESTAMP, "window_end": TIMESTAMP, "events": INT,
        "active_users": INT, "sessions_started": INT, "sessions_per_min": FLOAT,
    },
    "spike_alerts": {
        "window_start": TIMESTAMP, "sessions_started": INT, "recent_avg": FLOAT,
        "recent_p95": FLOAT, "spike": BOOL, "alert": BOOL, "alert_baseline": FLOAT,
        "alert_threshold": FLOAT,
    },
    "daily_active": {"day": DATE, "dau": INT},
    "monthly_active": {"month": DATE, "mau": INT, "avg_dau": FLOAT, "stickiness": FLOAT},
    "retention_cohorts": {
        "cohort_month": DATE, "months_since": INT, "cohort_size": INT,
        "active_users": INT, "retention": FLOAT,
    },
    "kpis": {"metric": STR, "value": FLOAT},
    "session_metrics_daily": {"day": DATE, "sessions": INT, "avg_duration_s": FLOAT, "avg_actions": FLOAT},
    "skip_rate_daily": {"day": DATE, "skips": INT, "plays": INT, "skip_rate": FLOAT},
    "event_mix_daily": {"day": DATE, "event_type": STR, "events": INT, "share": FLOAT},
    "feature_adoption": {
        "day": DATE, "event_type": STR, "new_adopters": INT,
        "adopters_to_date": INT, "adoption_pct": FLOAT,
    },
    "engagement_by_segment": {
        "month": DATE, "country": STR, "plan": STR, "active_users": INT,
        "events": INT, "total_duration_ms": INT,
    },
    "quarantine": {"file": STR, "row": INT, "field": STR, "reason": STR, "raw": STR},
}


def arrow_type_ok(kind, ty):
    if kind == TIMESTAMP:
        return pa.types.is_timestamp(ty) and ty.unit in ("ms", "us") and ty.tz in ("UTC", "+00:00", "Etc/UTC")
    if kind == DATE:
        return pa.types.is_date32(ty)
    if kind == INT:
        return pa.types.is_int64(ty)
    if kind == FLOAT:
        return pa.types.is_float64(ty)
    if kind == BOOL:
        return pa.types.is_boolean(ty)
    return pa.types.is_string(ty) or pa.types.is_large_string(ty) or pa.types.is_string_view(ty)


def polars_type_ok(kind, ty):
    if kind == TIMESTAMP:
        return isinstance(ty, pl.Datetime) and ty.time_unit in ("ms", "us") and ty.time_zone in ("UTC", "+00:00", "Etc/UTC")
    return ty == {DATE: pl.Date, INT: pl.Int64, FLOAT: pl.Float64, BOOL: pl.Boolean, STR: pl.String}[kind]


def change_stream_rows(changes_dir):
    """Number of rows of the table: the sum of all diffs of its change stream."""
    total = 0
    for path in sorted(changes_dir.glob("*.parquet")):
        diff = pq.read_table(path, columns=["diff"]).column("diff")
        total += pc.sum(diff).as_py() or 0
    return total


def storage_options():
    """The deltalake/polars object-store settings of the AWS_* environment variables."""
    keys = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP"]
    options = {key: os.environ[key] for key in keys if key in os.environ}
    # A single-host S3 server (moto, MinIO) has no locking service: tidemark is the only writer.
    options["AWS_S3_ALLOW_UNSAFE_RENAME"] = "true"
    return options


def main(out, tables_url=None):
    out = Path(out)
    problems = []
    checked = 0
    for changes_dir in sorted((out / "changes").iterdir()):
        name = changes_dir.name
        if not any(changes_dir.glob("*.parquet")):
            continue
        columns = TABLES.get(name)
        if columns is None:
            print(f"{name}: no column types known to this script; checking row counts only")
        before = len(problems)
        expected_rows = change_stream_rows(changes_dir)
        path = out / "tables" / name
        options = None
        if tables_url:
            path = f"{tables_url.rstrip('/')}/tables/{name}"
            options = storage_options()
        try:
            arrow_table = DeltaTable(str(path), storage_options=options).to_pyarrow_table()
        except Exception as error:  # noqa: BLE001 - reported, not hidden
            problems.append(f"{name}: deltalake cannot read {path}: {error}")
            continue
        if arrow_table.num_rows != expected_rows:
            problems.append(f"{name}: deltalake reads {arrow_table.num_rows} rows, change stream sums to {expected_rows}")
        if columns is None:
            columns = {}
        elif arrow_table.column_names != list(columns):
            problems.append(f"{name}: deltalake columns {arrow_table.column_names}, expected {list(columns)}")
        for field in arrow_table.schema:
            if field.name in columns and not arrow_type_ok(columns[field.name], field.type):
                problems.append(f"{name}.{field.name}: deltalake type {field.type}, expected {columns[field.name]}")
        try:
            frame = pl.read_delta(str(path), storage_options=options)
        except Exception as error:  # noqa: BLE001
            problems.append(f"{name}: polars cannot read {path}: {error}")
            continue
        if frame.height != expected_rows:
            problems.append(f"{name}: polars reads {frame.height} rows, change stream sums to {expected_rows}")
        for column, dtype in frame.schema.items():
            if column in columns and not polars_type_ok(columns[column], dtype):
                problems.append(f"{name}.{column}: polars type {dtype}, expected {columns[column]}")
        checked += 1
        status = "ok" if len(problems) == before else "PROBLEMS"
        print(f"{name}: {expected_rows} rows (deltalake {arrow_table.num_rows}, polars {frame.height}): {status}")
    if checked == 0:
        problems.append(f"no table with a change stream under {out / 'changes'}")
    for problem in problems:
        print("PROBLEM:", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) == 3 and args[1] == "--tables-url":
        sys.exit(main(args[0], args[2]))
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(args[0]))
