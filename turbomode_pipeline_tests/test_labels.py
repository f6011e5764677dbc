"""Triple-barrier labels on hand-made paths whose outcomes are known exactly."""

from datetime import date

import numpy as np
import polars as pl
import pytest

from turbomode_pipeline.calendar import sessions_between
from turbomode_pipeline.core.labels import Barriers, beats_sector_median, triple_barrier, without_sector_median

SESSIONS = sessions_between(date(2024, 3, 1), date(2024, 3, 28))  # 20 sessions; entry on the first


def path(symbol: str, days: list[tuple[float, float, float, float]]) -> pl.DataFrame:
    """Entry bar (close 100) then (open, high, low, close) per day, padded flat to 15 days."""
    days = [(100.0, 100.0, 100.0, 100.0), *days]
    days += [(days[-1][3],) * 4] * (16 - len(days))
    return pl.DataFrame(
        {
            "session": SESSIONS[: len(days)], "symbol": symbol, "sector": "Energy",
            "open": [d[0] for d in days], "high": [d[1] for d in days], "low": [d[2] for d in days],
            "close": [d[3] for d in days],
        }
    )


def outcome(days, barriers=Barriers(k_up=2, k_dn=2, horizon=10)) -> dict:
    bars = path("X", days)
    atr = bars.select("session", "symbol", pl.lit(1.0).alias("atr_14"))  # barriers at 102 and 98
    return triple_barrier(bars, atr, barriers).filter(pl.col("session") == SESSIONS[0]).row(0, named=True)


def test_upper_barrier_first():
    result = outcome([(100.5, 101, 99.5, 100.8), (101, 102.5, 100.6, 102.2)])
    assert (result["barrier"], result["label"], result["t1"], result["days_held"]) == ("upper", 1, SESSIONS[2], 2)
    assert result["exit_price"] == 102 and result["ret"] == pytest.approx(0.02)


def test_lower_barrier_first():
    result = outcome([(99.5, 100.2, 98.5, 99), (99, 99.4, 97.9, 98.2)])
    assert (result["barrier"], result["label"], result["t1"], result["days_held"]) == ("lower", 0, SESSIONS[2], 2)
    assert result["exit_price"] == 98 and result["ret"] == pytest.approx(-0.02)


def test_both_barriers_on_one_day_count_the_stop_first():
    result = outcome([(100, 103, 97, 101)])
    assert (result["barrier"], result["label"], result["t1"], result["days_held"]) == ("lower", 0, SESSIONS[1], 1)
    assert result["ret"] == pytest.approx(-0.02)


def test_time_barrier_takes_the_close_and_the_sign_of_its_return():
    days = [(100, 101, 99, 100.2)] * 9 + [(100.2, 101, 99.5, 100.5)]
    result = outcome(days)
    assert (result["barrier"], result["label"], result["t1"], result["days_held"]) == ("time", 1, SESSIONS[10], 10)
    assert result["exit_price"] == 100.5 and result["ret"] == pytest.approx(0.005)
    down = outcome([(100, 101, 99, 99.6)] * 10)
    assert (down["barrier"], down["label"]) == ("time", 0) and down["ret"] == pytest.approx(-0.004)


def test_a_gap_through_the_barrier_exits_at_the_open():
    result = outcome([(104, 105, 103.5, 104.5)])
    assert (result["barrier"], result["exit_price"]) == ("upper", 104) and result["ret"] == pytest.approx(0.04)
    gap_down = outcome([(96, 96.5, 95, 95.5)])
    assert (gap_down["barrier"], gap_down["exit_price"]) == ("lower", 96)


def test_sessions_without_a_full_horizon_are_not_labelled():
    bars = path("X", [(100, 100.5, 99.5, 100)] * 15)
    atr = bars.select("session", "symbol", pl.lit(1.0).alias("atr_14"))
    labelled = triple_barrier(bars, atr, Barriers(horizon=10))["session"].to_list()
    assert labelled == SESSIONS[: 16 - 10]


def test_without_the_sector_median_the_relative_label_is_one_half_whatever_the_sectors_size():
    """Labelled 0, an odd sector's median stock pulls the base rate to (n - 1) / 2n: 2 of 5 stocks
    beat the median, 0.4, and a model calibrated to it calls SELL on the whole sector (the real-closes
    demo scanned 0 BUY / 87 SELL in a 5-stock sector). A one-stock sector keeps no sample."""
    rng = np.random.default_rng(2)
    sizes = {"A": 5, "B": 3, "C": 4, "D": 1}
    rows = pl.DataFrame(
        [{"session": day, "symbol": f"{sector}{i}", "sector": sector} for sector, n in sizes.items() for i in range(n)
         for day in range(50)]
    ).with_columns(fwd_ret=pl.Series(rng.normal(0, 0.02, sum(sizes.values()) * 50)))
    labelled = rows.with_columns(beats_sector=beats_sector_median(pl.col("fwd_ret")))
    assert labelled.group_by("sector").agg(pl.col("beats_sector").mean()).sort("sector")["beats_sector"].to_list() == [
        0.4, 1 / 3, 0.5, 0.0
    ]
    kept = without_sector_median(labelled)
    rates = dict(kept.group_by("sector").agg(pl.col("beats_sector").mean()).iter_rows())
    assert rates == {"A": 0.5, "B": 0.5, "C": 0.5}
    assert kept.height == 50 * (4 + 2 + 4)
