"""The statistical must-shows of the 66 sector models, on the simulated market (seed 7).

The models learn the sector-relative label (the symbol's H-session return beats its sector's
median from the same entry session) from MODEL_FEATURES (stock features and their ranks within
(session, sector); no market-wide feature). Measured on the universe file (22 stocks per
sector) over SESSIONS sessions with a HOLDOUT-session holdout, fast settings:

1. With planted predictability (1.0) the stacked ensemble's holdout AUC is >= 0.55 in every
   sector, and the pooled daily rank IC (each session's within-sector Spearman correlation of
   the probability with the H-session return, averaged over sectors) has an overlap-adjusted
   t above 3 (sessions / H independent outcomes).
2. On a random walk (predictability 0) |rank IC t| < 3 and every model's AUC lies inside the
   measured null band: the leakage guard of `core/leakage.py`. The null models are the 66
   models trained on each of two independent random walks (NULL_SEEDS), scored on the seed-7
   random-walk holdout of their sector: nothing about seed 7's future can be in them. A model
   is flagged when |AUC - 0.5| exceeds the Bonferroni limit for 66 models at a 5% family-wise
   false-alarm rate (3.37) times the null models' root-mean-square distance from 0.5; the band
   half-width (limit x spread) is printed and asserted well below the +/-0.12 that absolute
   labels (which share the market's and the sector's path) allowed.
3. The positive control: the same random-walk pipeline with `ret_1` read one session ahead (a
   join off by one day) fails both: the guard names every sector, and the rank IC t exceeds 3.
4. Every sector's stacked holdout ECE is below 0.05, on the predictable market.
5. The BUY share of the signals (threshold TURBOMODE_SIGNAL_THRESHOLD's default) over the last
   30 holdout sessions of the predictable market lies between 35% and 65%.
"""

from concurrent.futures import ThreadPoolExecutor
from datetime import date

import polars as pl
import pytest

from turbomode_pipeline.calendar import sessions_between

from turbomode_pipeline.core.features import MODEL_FEATURES, compute_features
from turbomode_pipeline.core.labels import triple_barrier, without_sector_median
from turbomode_pipeline.core.leakage import calibration_in_the_large, chance_limit, leaks, null_spread
from turbomode_pipeline.core.market_sim import SIM_EPOCH, simulate_daily_bars
from turbomode_pipeline.core.model_zoo import MODEL_TYPES, STACKED, ModelSettings
from turbomode_pipeline.core.training import SectorTraining, metrics, overlap_adjusted_t, train_sector
from turbomode_pipeline.core.universe import GICS_SECTORS, load_universe
from turbomode_pipeline.settings import DEFAULT_UNIVERSE

SESSIONS = 1250
HOLDOUT = 400
HORIZON = 10
SEED = 7
NULL_SEEDS = (8, 9)  # the independent markets the null models learn on
LAST_SESSION = date(2025, 6, 30)
FALSE_ALARM = 0.05  # the guard's family-wise false-alarm rate over the 66 models
LEAK = "ret_1_ahead"  # ret_1 of the next session: a feature computed with a one-day look-ahead

# Each market trains 66 models (the final refit skipped: the holdout's numbers are the validated
# models'); a fixture trains up to three markets, beyond the suite's 600 s per test when loaded.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


def market_samples(seed: int, predictability: float, leak: bool = False) -> pl.DataFrame:
    """Training samples (features, label, barrier, t1) of the universe's simulated market."""
    grid = sessions_between(SIM_EPOCH, LAST_SESSION)
    wanted = grid[-(SESSIONS + 260 + HORIZON) :]  # the features' warm-up before, the label horizon after
    bars = simulate_daily_bars(load_universe(DEFAULT_UNIVERSE), grid, wanted, seed=seed, predictability=predictability)
    features = compute_features(bars)
    if leak:
        features = features.with_columns(pl.col("ret_1").shift(-1).over("symbol", order_by="session").alias(LEAK))
    names = [*MODEL_FEATURES, LEAK] if leak else list(MODEL_FEATURES)
    samples = (
        triple_barrier(bars, features)
        .select("session", "symbol", pl.col("beats_sector").alias("label"), "barrier", "t1", "fwd_ret")
        .join(features.select("session", "symbol", "sector", *names), on=["session", "symbol"])
    )
    return without_sector_median(samples).drop_nulls(names)  # as sector_models reads them


def train_sectors(samples: pl.DataFrame) -> dict[str, SectorTraining]:
    """The six models of every sector, two sectors at a time as the asset trains them."""
    names = [c for c in samples.columns if c in MODEL_FEATURES or c == LEAK]

    def train(sector: str) -> SectorTraining:
        return train_sector(
            sector, samples.filter(pl.col("sector") == sector), names,
            horizon=HORIZON, holdout_sessions=HOLDOUT, settings=ModelSettings.fast(), refit=False,
        )

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(GICS_SECTORS, pool.map(train, GICS_SECTORS), strict=True))


def holdout_table(trainings: dict[str, SectorTraining], holdouts: dict[str, pl.DataFrame] | None = None) -> pl.DataFrame:
    """One row per (sector, model type): holdout metrics, calibration-in-the-large (`citl`) and the
    mean probability, on the models' own holdout or on `holdouts[sector]` (the null models on seed 7's)."""

    def score(sector: str) -> list[dict]:
        training = trainings[sector]
        holdout = holdouts[sector] if holdouts else training.holdout
        labels = holdout["label"].to_numpy()
        upper_hit = (holdout["barrier"] == "upper").to_numpy()
        rows = []
        for model_type, trained in training.models.items():
            probability = trained.validated.predict_proba(holdout.select(training.feature_names))[:, 1]
            rows.append({
                "sector": sector, "model_type": model_type, **metrics(labels, probability, upper_hit),
                "citl": calibration_in_the_large(labels, probability), "mean_probability": float(probability.mean()),
            })
        return rows

    with ThreadPoolExecutor(max_workers=2) as pool:
        return pl.DataFrame([row for rows in pool.map(score, GICS_SECTORS) for row in rows])


@pytest.fixture(scope="module")
def predictable_models() -> dict[str, SectorTraining]:
    return train_sectors(market_samples(SEED, predictability=1.0))


@pytest.fixture(scope="module")
def predictable(predictable_models) -> pl.DataFrame:
    return holdout_table(predictable_models)


@pytest.fixture(scope="module")
def random_walk_models() -> dict[str, SectorTraining]:
    return train_sectors(market_samples(SEED, predictability=0.0))


@pytest.fixture(scope="module")
def random_walk(random_walk_models) -> pl.DataFrame:
    return holdout_table(random_walk_models)


@pytest.fixture(scope="module")
def null_models(random_walk_models) -> pl.DataFrame:
    """The models of independent random walks, on seed 7's random-walk holdout of their sector."""
    holdouts = {sector: training.holdout for sector, training in random_walk_models.items()}
    return pl.concat(
        holdout_table(train_sectors(market_samples(seed, predictability=0.0)), holdouts).with_columns(null_seed=pl.lit(seed))
        for seed in NULL_SEEDS
    )


@pytest.fixture(scope="module")
def leaked_models() -> dict[str, SectorTraining]:
    """The random-walk pipeline with one feature read a session ahead: the positive control."""
    return train_sectors(market_samples(SEED, predictability=0.0, leak=True))


@pytest.fixture(scope="module")
def leaked(leaked_models) -> pl.DataFrame:
    return holdout_table(leaked_models)


def stacked_holdout(trainings: dict[str, SectorTraining]) -> pl.DataFrame:
    """session, sector, symbol, fwd_ret and the validated stacked model's holdout probability."""
    return pl.concat(
        training.holdout.select("session", "sector", "symbol", "fwd_ret").with_columns(
            probability=pl.Series(training.models[STACKED].holdout_probability)
        )
        for training in trainings.values()
    )


def pooled_rank_ic_t(trainings: dict[str, SectorTraining]) -> tuple[float, float]:
    """Mean and overlap-adjusted t of the daily rank IC: within each sector, averaged over sectors."""
    holdout = stacked_holdout(trainings)
    by_sector = [_daily(rows) for _, rows in holdout.group_by("sector")]
    daily = pl.concat(by_sector).group_by("session").agg(pl.col("rank_ic").mean()).sort("session")["rank_ic"]
    return float(daily.mean()), overlap_adjusted_t(daily, HORIZON)


def _daily(rows: pl.DataFrame) -> pl.DataFrame:
    return (
        rows.group_by("session").agg(rank_ic=pl.corr("probability", "fwd_ret", method="spearman"))
        .drop_nulls().filter(pl.col("rank_ic").is_not_nan())
    )


def breaking(metrics: pl.DataFrame, metric: str, holds: pl.Expr) -> dict[str, float]:
    """Every (sector, model type) that breaks a claim, with its value: the failure message."""
    return {
        f"{row['sector']}/{row['model_type']}": round(row[metric], 4)
        for row in metrics.filter(~holds).iter_rows(named=True)
    }


def test_the_stacked_ensemble_beats_055_in_every_sector_on_a_predictable_market(predictable, predictable_models):
    stacked = predictable.filter(pl.col("model_type") == STACKED)
    assert stacked.height == len(GICS_SECTORS)
    rank_ic = {s: t.models[STACKED].metrics["rank_ic"] for s, t in predictable_models.items()}
    print(stacked.select("sector", "roc_auc", "ece").with_columns(rank_ic=pl.col("sector").replace_strict(rank_ic)))
    assert breaking(stacked, "roc_auc", pl.col("roc_auc") >= 0.55) == {}


def test_the_pooled_daily_rank_ic_is_significant_on_a_predictable_market(predictable_models):
    mean, t = pooled_rank_ic_t(predictable_models)
    print(f"predictable: pooled daily rank IC {mean:+.4f}, overlap-adjusted t {t:+.2f}")
    assert t > 3, f"pooled daily rank IC {mean:+.4f}, overlap-adjusted t {t:+.2f}"


def test_calibration_keeps_every_models_ranking(predictable_models):
    """Calibrated and raw holdout AUC are equal for every model (the calibration is monotone)."""
    for training in predictable_models.values():
        for model_type, trained in training.models.items():
            assert trained.metrics["roc_auc"] == pytest.approx(trained.metrics["raw_roc_auc"], abs=1e-9), (
                training.sector, model_type
            )


def test_every_sector_is_calibrated_on_the_holdout(predictable):
    stacked = predictable.filter(pl.col("model_type") == STACKED)
    assert stacked.height == len(GICS_SECTORS)
    assert breaking(stacked, "ece", pl.col("ece") < 0.05) == {}


def test_buy_and_sell_balance_over_the_last_30_sessions(predictable_models):
    from turbomode_pipeline.settings import load_settings

    threshold = load_settings({}).signal_threshold
    holdout = stacked_holdout(predictable_models)
    last = holdout["session"].unique().sort()[-30:]
    scored = holdout.filter(pl.col("session").is_in(last.implode()))["probability"].to_numpy()
    buy, sell = int((scored >= threshold).sum()), int((scored <= 1 - threshold).sum())
    assert buy + sell >= 100
    print(f"last 30 holdout sessions: {buy} BUY / {sell} SELL")
    assert 0.35 <= buy / (buy + sell) <= 0.65, f"{buy} BUY / {sell} SELL"


def guard(models: pl.DataFrame, null: pl.DataFrame) -> None:
    """The leakage guard: fails naming every model whose AUC is too far from chance for the null band."""
    flagged = leaks(models, spread=null_spread(null["roc_auc"]), tests=models.height, false_alarm=FALSE_ALARM)
    assert flagged == {}, "AUC too far from chance for a model without look-ahead:\n" + "\n".join(
        f"{model}: {why}" for model, why in flagged.items()
    )


def band_half_width(null: pl.DataFrame, tests: int) -> float:
    return chance_limit(tests, FALSE_ALARM) * null_spread(null["roc_auc"])


def test_the_random_walk_models_pass_the_leakage_guard(random_walk, null_models):
    assert random_walk.height == len(GICS_SECTORS) * len(MODEL_TYPES)
    assert null_models.height == len(NULL_SEEDS) * random_walk.height
    width = band_half_width(null_models, random_walk.height)
    print(f"null band 0.5 +/- {width:.4f}; random-walk AUCs {random_walk['roc_auc'].min():.4f}..{random_walk['roc_auc'].max():.4f}")
    assert width < 0.08, f"the null band +/-{width:.4f} is not well below +/-0.12"
    guard(random_walk, null_models)


def test_the_random_walk_rank_ic_is_not_significant(random_walk_models):
    mean, t = pooled_rank_ic_t(random_walk_models)
    print(f"random walk: pooled daily rank IC {mean:+.4f}, overlap-adjusted t {t:+.2f}")
    assert abs(t) < 3, f"pooled daily rank IC {mean:+.4f}, overlap-adjusted t {t:+.2f}"


def test_a_feature_with_a_one_day_look_ahead_fails_the_leakage_guard(leaked, null_models):
    with pytest.raises(AssertionError) as failure:
        guard(leaked, null_models)
    for sector in GICS_SECTORS:  # the guard names each sector's stacked ensemble and its AUC
        assert f"{sector}/{STACKED}: AUC 0." in str(failure.value)


def test_a_feature_with_a_one_day_look_ahead_fails_the_rank_ic_criterion(leaked_models):
    mean, t = pooled_rank_ic_t(leaked_models)
    print(f"one-day look-ahead: pooled daily rank IC {mean:+.4f}, overlap-adjusted t {t:+.2f}")
    assert t >= 3, f"pooled daily rank IC {mean:+.4f}, overlap-adjusted t {t:+.2f}: the leak went unseen"
