"""core/scanner.py on hand-made paths whose answers are known."""

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import polars as pl
import pytest

from turbomode_pipeline.core.labels import Barriers
from turbomode_pipeline.core.scanner import (
    daily_ic,
    forward_returns,
    hit_rates,
    ic_summary,
    one_sided_sessions,
    outcomes,
    relative_outcomes,
    signals,
)
from turbomode_pipeline.schemas import SignalHistory, SignalOutcomes

DAYS = [date(2025, 6, 2) + timedelta(days=i) for i in range(5)]  # the core knows no calendar: any ordered days
FLAT = (100.0, 100.0, 100.0, 100.0)


def bars_of(paths: dict[str, list[tuple[float, float, float, float]]]) -> pl.DataFrame:
    """One bar (open, high, low, close) per day of DAYS for each symbol."""
    return pl.DataFrame(
        [
            {"session": day, "symbol": symbol, "open": o, "high": h, "low": low, "close": c}
            for symbol, path in paths.items()
            for day, (o, h, low, c) in zip(DAYS, path, strict=False)
        ]
    )


def signal(symbol: str, kind: str, entry: float, target: float, stop: float, day: date = DAYS[0]) -> dict:
    return {"id": f"{day}-{symbol}", "session": day, "symbol": symbol, "sector": "Energy", "signal_type": kind,
            "entry_price": entry, "target_price": target, "stop_loss": stop}


def test_outcomes_on_hand_made_paths():
    paths = {
        "UPHIT": [(99, 100, 98, 100), (100, 103, 99, 102), (102, 105, 101, 104), (104, 104, 103, 103), FLAT],
        "SHORTSTOP": [(50, 50, 50, 50), (51, 55, 50, 54), (54, 54, 53, 53), (53, 53, 52, 52), FLAT],
        "DRIFT": [(20, 20, 20, 20), (20, 21, 19.5, 20.5), (20.5, 21, 19.5, 20), (20, 21, 19.5, 20.5), FLAT],
        "BOTH": [(10, 10, 10, 10), (10, 11.5, 8.5, 10), (10, 10, 10, 10), (10, 10, 10, 10), FLAT],
        "GAPUP": [(100, 100, 100, 100), (106, 107, 105, 106), (106, 106, 106, 106), (106, 106, 106, 106), FLAT],
        "SHORTWIN": [(40, 40, 40, 40), (39, 40, 38, 39), (35, 36, 34, 35), (35, 35, 35, 35), FLAT],
        "TOOSOON": [FLAT, FLAT, FLAT, FLAT, FLAT],
    }
    found = outcomes(
        pl.DataFrame([
            signal("UPHIT", "BUY", 100, 104, 96),
            signal("SHORTSTOP", "SELL", 50, 46, 54),
            signal("DRIFT", "BUY", 20, 22, 18),
            signal("BOTH", "BUY", 10, 11, 9),
            signal("GAPUP", "BUY", 100, 104, 96),
            signal("SHORTWIN", "SELL", 40, 36, 44),
            signal("TOOSOON", "BUY", 100, 104, 96, day=DAYS[2]),  # needs DAYS[5]: not graded yet
        ]),
        bars_of(paths),
        horizon=3,
    )
    scores = pl.DataFrame({"session": DAYS[0], "symbol": list(paths)[:-1], "sector": "Energy"})
    relative = relative_outcomes(found, scores, bars_of(paths), horizon=3)
    SignalOutcomes.validate(relative)
    # 3-session returns 0.03, 0.04, 0.025, 0, 0.06, -0.125: the sector's median is 0.0275
    assert {r["symbol"]: (round(r["excess_ret"], 6), r["beat_sector"]) for r in relative.iter_rows(named=True)} == {
        "UPHIT": (0.0025, True), "SHORTSTOP": (-0.0125, False), "DRIFT": (-0.0025, False),
        "BOTH": (-0.0275, False), "GAPUP": (0.0325, True), "SHORTWIN": (0.1525, True),  # a SELL is right below the median
    }
    got = {r["symbol"]: (r["outcome"], r["exit_session"], r["exit_price"], round(r["ret"], 6), r["days_held"])
           for r in found.iter_rows(named=True)}
    assert got == {
        "UPHIT": ("target", DAYS[2], 104.0, 0.04, 2),
        "SHORTSTOP": ("stop", DAYS[1], 54.0, -0.08, 1),  # a SELL's loss when the price rose to the stop
        "DRIFT": ("expired", DAYS[3], 20.5, 0.025, 3),
        "BOTH": ("stop", DAYS[1], 9.0, -0.1, 1),  # one day touched both: the stop counts first
        "GAPUP": ("target", DAYS[1], 106.0, 0.06, 1),  # gapped through the target: filled at the open
        "SHORTWIN": ("target", DAYS[2], 35.0, 0.125, 2),  # gapped below a SELL's target: filled at the open
    }
    rates = hit_rates(found).filter(pl.col("signal_type") == "BUY").row(0, named=True)
    assert (rates["signals"], rates["hit_rate"], rates["stop_rate"]) == (4, 0.5, 0.25)


def scored(probabilities: list[float], atr: list[float], close: float = 100.0) -> pl.DataFrame:
    n = len(probabilities)
    return pl.DataFrame({
        "session": [DAYS[0]] * n, "symbol": [f"S{i}" for i in range(n)], "sector": ["Energy"] * n,
        "close": [close] * n, "atr_14": atr, "probability_up": probabilities,
        "model_name": ["turbomode-energy-stacked_ensemble"] * n, "model_version": ["3"] * n, "mlflow_run_id": ["r1"] * n,
        "model_labels_through": [DAYS[0] - timedelta(days=3)] * n,
    })


def test_signals_follow_the_threshold_and_the_label_barriers():
    expires = datetime(2025, 6, 16, 20, tzinfo=UTC)
    now = datetime(2025, 6, 2, 23, tzinfo=UTC)
    found = signals(
        scored([0.7, 0.3, 0.5, 0.6, 0.9, 0.1], atr=[2.0, 2.0, 2.0, 1.0, 0.0, 70.0]),
        pl.DataFrame({"session": [DAYS[0]], "expires_at": [expires]}),
        threshold=0.6, barriers=Barriers(k_up=2.0, k_dn=1.5, horizon=10), created_at=now,
    )
    SignalHistory.validate(found)
    assert found.columns == list(SignalHistory.to_schema().columns)
    rows = {r["symbol"]: r for r in found.iter_rows(named=True)}
    assert set(rows) == {"S0", "S1", "S3"}  # 0.5: no view; atr 0: no barriers; S5's SELL target would be below 0
    assert (rows["S0"]["signal_type"], rows["S0"]["target_price"], rows["S0"]["stop_loss"]) == ("BUY", 104.0, 97.0)
    assert (rows["S1"]["signal_type"], rows["S1"]["target_price"], rows["S1"]["stop_loss"]) == ("SELL", 97.0, 104.0)
    assert rows["S1"]["confidence"] == pytest.approx(0.7) and rows["S3"]["confidence"] == pytest.approx(0.6)
    assert rows["S0"]["id"] == f"{DAYS[0]}-S0" and rows["S0"]["expires_at"] == expires and rows["S0"]["is_active"]


def test_ic_rank_ic_and_icir_as_qlib_computes_them():
    rng = np.random.default_rng(3)
    days, symbols = DAYS[:4], [f"S{i}" for i in range(30)]
    frame = pd.DataFrame([(d, s) for d in days for s in symbols], columns=["session", "symbol"])
    frame["probability_up"] = rng.uniform(0, 1, len(frame))
    frame["fwd_ret"] = 0.05 * frame["probability_up"] + rng.normal(0, 0.05, len(frame))
    ic = daily_ic(pl.from_pandas(frame[["session", "symbol", "probability_up"]]),
                  pl.from_pandas(frame[["session", "symbol", "fwd_ret"]]))
    expected_ic = frame.groupby("session").apply(lambda df: df["probability_up"].corr(df["fwd_ret"]))
    expected_rank = frame.groupby("session").apply(lambda df: df["probability_up"].corr(df["fwd_ret"], method="spearman"))
    np.testing.assert_allclose(ic["ic"].to_numpy(), expected_ic.to_numpy())
    np.testing.assert_allclose(ic["rank_ic"].to_numpy(), expected_rank.to_numpy())
    summary = ic_summary(ic)
    assert summary["ic_mean"] == pytest.approx(expected_ic.mean()) and summary["ic_mean"] > 0
    assert summary["icir"] == pytest.approx(expected_ic.mean() / expected_ic.std())
    assert summary["rank_icir"] == pytest.approx(expected_rank.mean() / expected_rank.std())


def test_forward_returns_look_exactly_horizon_sessions_ahead():
    bars = bars_of({"A": [(1, 1, 1, c) for c in (10.0, 11.0, 12.0, 13.0, 14.0)]})
    returns = forward_returns(bars, horizon=2)
    assert returns["fwd_ret"].to_list() == pytest.approx([12 / 10 - 1, 13 / 11 - 1, 14 / 12 - 1])


def test_the_signal_threshold_setting_is_validated_by_name():
    from turbomode_pipeline.settings import SettingsError, load_settings

    assert load_settings({}).signal_threshold == 0.60
    assert load_settings({"TURBOMODE_SIGNAL_THRESHOLD": "0.7"}).signal_threshold == 0.7
    with pytest.raises(SettingsError, match=r"TURBOMODE_SIGNAL_THRESHOLD='0\.5' is invalid: .*BUY and a SELL"):
        load_settings({"TURBOMODE_SIGNAL_THRESHOLD": "0.5"})


def test_a_session_is_one_sided_when_either_side_exceeds_65_percent_of_at_least_10_signals():
    def session(day, buy, sell):
        return [{"session": day, "signal_type": "BUY"}] * buy + [{"session": day, "signal_type": "SELL"}] * sell

    frame = pl.DataFrame([
        *session(DAYS[0], 7, 3),  # 70% BUY: flagged
        *session(DAYS[1], 3, 7),  # 70% SELL: flagged
        *session(DAYS[2], 13, 7),  # 65% BUY: not more than 65%
        *session(DAYS[3], 9, 0),  # 9 signals: too few to say
    ])
    flagged = one_sided_sessions(frame)
    assert flagged.select("session", "buy", "sell").rows() == [(DAYS[0], 7, 3), (DAYS[1], 3, 7)]
