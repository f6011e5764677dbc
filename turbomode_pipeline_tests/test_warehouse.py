"""The warehouse resource on a real DuckDB file."""

import duckdb
import polars as pl
from datetime import date

from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.schemas import Table

SAMPLES = Table(
    name="samples",
    ddl="CREATE TABLE IF NOT EXISTS samples (session DATE NOT NULL, symbol VARCHAR NOT NULL, label BIGINT, "
        "beats_sector BIGINT, PRIMARY KEY (session, symbol))",
    partition_column="session", key_columns=("session", "symbol"),
)


def test_a_table_written_by_an_older_version_gains_the_new_columns_on_the_next_write(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:  # what an older version left: no beats_sector column
        con.execute("CREATE TABLE samples (session DATE NOT NULL, symbol VARCHAR NOT NULL, label BIGINT, "
                    "PRIMARY KEY (session, symbol))")
        con.execute("INSERT INTO samples VALUES ('2026-11-02', 'AAPL', 1), ('2026-11-03', 'AAPL', 0)")
    warehouse = Warehouse(path=str(path))
    new = pl.DataFrame({"session": [date(2026, 11, 3)], "symbol": ["AAPL"], "label": [1], "beats_sector": [1]})
    assert warehouse.replace_partitions(SAMPLES, new, [date(2026, 11, 3)]) == 1
    stored = warehouse.query("SELECT * FROM samples ORDER BY session")
    assert stored.columns == ["session", "symbol", "label", "beats_sector"]
    assert stored.rows() == [(date(2026, 11, 2), "AAPL", 1, None), (date(2026, 11, 3), "AAPL", 1, 1)]
