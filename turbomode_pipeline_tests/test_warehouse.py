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


# What the hand-written DDL of daily_bars and training_samples created before the DDL was generated from the
# pandera models: a warehouse file written then must match what the pipeline creates now, column for column.
HAND_WRITTEN_DDL = {
    "daily_bars": "CREATE TABLE daily_bars (session DATE NOT NULL, symbol VARCHAR NOT NULL, sector VARCHAR NOT NULL, "
                  "open DOUBLE NOT NULL, high DOUBLE NOT NULL, low DOUBLE NOT NULL, close DOUBLE NOT NULL, "
                  "volume DOUBLE NOT NULL, vwap DOUBLE, trade_count BIGINT, source VARCHAR NOT NULL, "
                  "ingested_at TIMESTAMP WITH TIME ZONE NOT NULL, PRIMARY KEY (session, symbol))",
    "training_samples": "CREATE TABLE training_samples (session DATE NOT NULL, symbol VARCHAR NOT NULL, "
                        "sector VARCHAR NOT NULL, entry DOUBLE NOT NULL, atr_14 DOUBLE NOT NULL, upper DOUBLE NOT NULL, "
                        "lower DOUBLE NOT NULL, barrier VARCHAR NOT NULL, label TINYINT NOT NULL, t1 DATE NOT NULL, "
                        "exit_price DOUBLE NOT NULL, ret DOUBLE NOT NULL, days_held INTEGER NOT NULL, "
                        "fwd_ret DOUBLE NOT NULL, beats_sector TINYINT NOT NULL, PRIMARY KEY (session, symbol))",
}


def test_the_ddl_generated_from_the_pandera_models_matches_the_tables_of_older_files():
    from turbomode_pipeline.schemas import DAILY_BARS, TRAINING_SAMPLES

    for table in (DAILY_BARS, TRAINING_SAMPLES):
        with duckdb.connect() as old, duckdb.connect() as new:
            old.execute(HAND_WRITTEN_DDL[table.name])
            new.execute(table.ddl)
            described = [con.execute(f"DESCRIBE {table.name}").fetchall() for con in (old, new)]
        assert described[0] == described[1], table.name


def test_every_table_is_created_with_its_models_columns_in_order_nulls_and_key():
    from turbomode_pipeline import schemas

    models = {
        "daily_bars": schemas.DailyBars, "daily_features": schemas.DailyFeatures,
        "training_samples": schemas.TrainingSamples, "signal_history": schemas.SignalHistory,
        "scanner_scores": schemas.ScannerScores, "signal_outcomes": schemas.SignalOutcomes,
        "drift_report": schemas.DriftReport, "drift_features": schemas.DriftFeatures,
        "signal_backtest_daily": schemas.SignalBacktestDaily, "signal_backtest_trades": schemas.SignalBacktestTrades,
        "signal_backtest_curves": schemas.SignalBacktestCurves, "signal_backtest_summary": schemas.SignalBacktestSummary,
        "signal_backtest_quantiles": schemas.SignalBacktestQuantiles, "strategy_backtest": schemas.StrategyBacktestSummary,
        "strategy_backtest_trades": schemas.StrategyBacktestTrades, "strategy_backtest_equity": schemas.StrategyBacktestEquity,
        "model_versions": schemas.ModelVersions, "champion_history": schemas.ChampionHistory,
    }
    tables = [value for value in vars(schemas).values() if isinstance(value, Table)]
    assert sorted(table.name for table in tables) == sorted(models)
    for table in tables:
        model = models[table.name]
        columns = (model.to_schema() if hasattr(model, "to_schema") else model).columns
        with duckdb.connect() as con:
            con.execute(table.ddl)
            described = con.execute(f"DESCRIBE {table.name}").fetchall()
        assert [row[0] for row in described] == list(columns), table.name
        assert [row[2] == "YES" for row in described] == [bool(c.nullable) for c in columns.values()], table.name
        assert [row[0] for row in described if row[3] == "PRI"] == list(table.key_columns), table.name
