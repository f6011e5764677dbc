"""The risk manager under random signal streams (hypothesis): limits hold whatever comes in."""

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from turbomode_pipeline.core.risk import PROPOSAL_COLUMNS, MarketState, RiskLimits, review

proposal = st.fixed_dictionaries(
    {
        "strategy_id": st.sampled_from(["s1", "s2", "s3", "s4", "s5"]),
        "symbol": st.sampled_from(["AAPL", "AMD", "NVDA"]),
        "side": st.sampled_from(["buy", "sell"]),
        "price": st.floats(0.5, 2_000, allow_nan=False),
        "allocation": st.floats(100, 50_000, allow_nan=False),
        "held_qty": st.sampled_from([0.0, 0.0, 1.0, 10.0, 250.0]),
        "day_pnl": st.floats(-2_000, 2_000, allow_nan=False),
    }
)
limits_strategy = st.builds(
    RiskLimits,
    max_allocation_share=st.floats(0.05, 1.0),
    max_equity_share=st.floats(0.01, 0.5),
    max_open_positions=st.integers(1, 6),
    daily_loss_limit=st.floats(50, 1_000),
    min_price=st.floats(0, 20),
    allow_short=st.booleans(),
)
state_strategy = st.builds(
    MarketState, equity=st.floats(1_000, 1_000_000), open_positions=st.integers(0, 8), market_open=st.booleans(),
    kill_switch=st.booleans(),
)


def proposals(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=PROPOSAL_COLUMNS)


@settings(max_examples=300, deadline=None)
@given(st.lists(proposal, max_size=30), limits_strategy, state_strategy)
def test_no_approved_order_breaks_a_limit(rows, limits, state):
    reviewed = review(proposals(rows), limits, state)
    approved = reviewed.filter(pl.col("approved"))
    assert reviewed.height == len(rows)
    assert (reviewed.filter(~pl.col("approved"))["qty"] == 0).all()
    if state.kill_switch or not state.market_open:
        assert approved.is_empty()
    for row in approved.iter_rows(named=True):
        assert row["qty"] > 0 and row["qty"] == int(row["qty"])
        assert row["price"] >= limits.min_price
        assert row["day_pnl"] > -limits.daily_loss_limit
        if row["side"] == "buy":
            after = (row["held_qty"] + row["qty"]) * row["price"]
            assert after <= row["allocation"] * limits.max_allocation_share + 1e-6
            assert after <= state.equity * limits.max_equity_share + 1e-6
        elif not limits.allow_short:
            assert row["qty"] == row["held_qty"]  # a sell only closes what is held
    new_positions = approved.filter(pl.col("held_qty") == 0).height
    assert state.open_positions + new_positions <= max(limits.max_open_positions, state.open_positions)


@settings(max_examples=100, deadline=None)
@given(st.lists(proposal, min_size=1, max_size=20), limits_strategy, st.floats(1_000, 1_000_000))
def test_nothing_passes_after_the_kill_switch_and_every_rejection_names_it(rows, limits, equity):
    reviewed = review(proposals(rows), limits, MarketState(equity, 0, market_open=True, kill_switch=True))
    assert not reviewed["approved"].any()
    assert set(reviewed["reason"]) == {"kill switch is on: all trading halted"}


@settings(max_examples=100, deadline=None)
@given(st.lists(proposal, min_size=1, max_size=20), limits_strategy, st.floats(1_000, 1_000_000))
def test_no_order_when_the_market_is_closed(rows, limits, equity):
    reviewed = review(proposals(rows), limits, MarketState(equity, 0, market_open=False, kill_switch=False))
    assert not reviewed["approved"].any()
    assert set(reviewed["reason"]) == {"market is closed"}


def test_each_rule_rejects_with_its_reason():
    limits = RiskLimits(max_open_positions=2, daily_loss_limit=500, min_price=5)
    rows = [
        {"strategy_id": "a", "symbol": "AAPL", "side": "buy", "price": 100.0, "allocation": 10_000.0, "held_qty": 0.0, "day_pnl": 0.0},
        {"strategy_id": "b", "symbol": "AMD", "side": "buy", "price": 4.0, "allocation": 10_000.0, "held_qty": 0.0, "day_pnl": 0.0},
        {"strategy_id": "c", "symbol": "NVDA", "side": "buy", "price": 50.0, "allocation": 10_000.0, "held_qty": 0.0, "day_pnl": -600.0},
        {"strategy_id": "d", "symbol": "NVDA", "side": "sell", "price": 50.0, "allocation": 10_000.0, "held_qty": 0.0, "day_pnl": 0.0},
        {"strategy_id": "e", "symbol": "NVDA", "side": "buy", "price": 50.0, "allocation": 10_000.0, "held_qty": 200.0, "day_pnl": 0.0},
        {"strategy_id": "f", "symbol": "AMD", "side": "buy", "price": 50.0, "allocation": 10_000.0, "held_qty": 0.0, "day_pnl": 0.0},
        {"strategy_id": "g", "symbol": "AAPL", "side": "sell", "price": 100.0, "allocation": 10_000.0, "held_qty": 30.0, "day_pnl": 0.0},
    ]
    reviewed = review(proposals(rows), limits, MarketState(equity=100_000, open_positions=1, market_open=True, kill_switch=False))
    assert reviewed.select("strategy_id", "qty", "reason").rows() == [
        ("a", 100.0, "approved"),  # 10% of 100,000 equity = 10,000 = the allocation: 100 shares at 100
        ("b", 0.0, "price 4.0 below the minimum 5.00"),
        ("c", 0.0, "daily loss limit 500.00 reached (P&L today -600.0): halted for the day"),
        ("d", 0.0, "shorting is disabled and nothing is held to sell"),
        ("e", 0.0, "position already at its size limit"),
        ("f", 0.0, "maximum of 2 open positions reached"),  # one held + a's new one fill both slots
        ("g", 30.0, "approved"),
    ]
