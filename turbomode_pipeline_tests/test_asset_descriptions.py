"""What the Dagster UI shows of each asset: its owner, its table's columns, numbers a person can read."""

from datetime import date

import polars as pl
import pytest

from turbomode_pipeline import schemas
from turbomode_pipeline.assets.market_data import _preview
from turbomode_pipeline.definitions import defs
from turbomode_pipeline.settings import SettingsError, get_settings, load_settings


@pytest.fixture(scope="module")
def asset_graph():
    return defs.get_repository_def().asset_graph


def metadata_of(asset_graph, asset: str) -> dict:
    return asset_graph.get(next(k for k in asset_graph.get_all_asset_keys() if k.to_user_string() == asset)).metadata


def test_every_asset_has_the_desk_as_owner(asset_graph):
    owners = {key.to_user_string(): asset_graph.get(key).owners for key in asset_graph.get_all_asset_keys()}
    assert len(owners) >= 10 and all(value == [get_settings().asset_owner] for value in owners.values()), owners
    with pytest.raises(SettingsError, match="TURBOMODE_ASSET_OWNER='quants' is invalid: expected an email or team"):
        load_settings({"TURBOMODE_ASSET_OWNER": "quants"})


def test_each_table_asset_shows_the_columns_its_pandera_model_validates(asset_graph):
    models = {"daily_bars": schemas.DailyBars, "drift_report": schemas.DriftReport, "daily_features": schemas.DailyFeatures}
    for asset, model in models.items():
        metadata = metadata_of(asset_graph, asset)
        assert metadata["dagster/table_name"] == f"warehouse.{asset}"
        columns = {column.name: column for column in metadata["dagster/column_schema"].columns}
        expected = model.to_schema().columns if hasattr(model, "to_schema") else model.columns
        assert list(columns) == list(expected)
        assert all(columns[name].type == str(column.dtype) and columns[name].constraints.nullable == column.nullable
                   for name, column in expected.items())
    bars = {c.name: c for c in metadata_of(asset_graph, "daily_bars")["dagster/column_schema"].columns}
    assert bars["close"].constraints.other == ["finite"] and bars["symbol"].constraints.other == ["str_length(min_value=1)"]
    assert bars["vwap"].constraints.nullable and not bars["close"].constraints.nullable


def test_the_bars_preview_shows_cents_and_whole_volumes():
    bars = pl.DataFrame({
        "session": [date(2026, 11, 30)], "symbol": ["XEL"], "sector": ["Utilities"], "open": [71.123456],
        "high": [72.5], "low": [70.0], "close": [71.9999999], "volume": [2316340.0], "vwap": [71.47333],
        "trade_count": [9001], "source": ["simulated"], "ingested_at": [None],
    })
    preview = _preview(bars)
    assert "2316340" in preview and "e+" not in preview and "71.12" in preview and "72.00" in preview
