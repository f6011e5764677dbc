"""A Sharpe ratio with its uncertainty: standard error, t, and the deflated Sharpe ratio.

Pure functions, one home for every report that prints a Sharpe (strategy backtest, replay,
paper-trading report, signal backtest).

- Standard error (Lo 2002; Mertens 2002 for non-normal returns): for n returns with per-period
  Sharpe SR, skewness g3 and (non-excess) kurtosis g4,
  SE(SR) = sqrt((1 - g3 SR + (g4 - 1) / 4 SR^2) / (n - 1)). Annualised: both times sqrt(252).
  A zero-edge strategy over one year of daily returns has an annualised SE of about 1.
- Probabilistic Sharpe ratio PSR(SR*) = Phi((SR - SR*) sqrt(n - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2)):
  the probability that the true Sharpe exceeds SR*.
- Deflated Sharpe ratio (Bailey and Lopez de Prado 2014): PSR against the Sharpe the best of N
  strategies would show by luck, SR0 = sqrt(V) ((1 - gamma) Z(1 - 1/N) + gamma Z(1 - 1/(N e))),
  where V is the variance of the N strategies' Sharpe ratios (by default the null variance of
  one estimate, 1 / (n - 1)) and gamma is Euler's constant. DSR is a probability: above 0.95 the
  best strategy's Sharpe is unlikely to be luck of the selection.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

TRADING_DAYS = 252
EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()


def moments(returns) -> tuple[int, float, float, float]:
    """n, per-period Sharpe (mean / sample sd), skewness and non-excess kurtosis of the finite returns."""
    r = np.asarray(returns, dtype=float)
    r = r[np.isfinite(r)]
    n = len(r)
    if n < 2:
        return n, math.nan, 0.0, 3.0
    sd = r.std(ddof=1)
    if not sd > 0 or np.ptp(r) == 0:  # a constant series has no Sharpe (its sd is rounding)
        return n, math.nan, 0.0, 3.0
    z = (r - r.mean()) / r.std()
    return n, float(r.mean() / sd), float(np.mean(z**3)), float(np.mean(z**4))


def sharpe_standard_error(sharpe: float, n: int, skew: float = 0.0, kurtosis: float = 3.0) -> float:
    """Standard error of a per-period Sharpe estimated from n returns (Lo 2002, Mertens 2002)."""
    if n < 2 or not math.isfinite(sharpe):
        return math.nan
    return math.sqrt(max(1 - skew * sharpe + (kurtosis - 1) / 4 * sharpe**2, 1e-12) / (n - 1))


def probabilistic_sharpe(sharpe: float, benchmark: float, n: int, skew: float = 0.0, kurtosis: float = 3.0) -> float:
    """P(true per-period Sharpe > benchmark) given the estimate from n returns."""
    se = sharpe_standard_error(sharpe, n, skew, kurtosis)
    if not math.isfinite(se):
        return math.nan
    return _NORMAL.cdf((sharpe - benchmark) / se)


def expected_max_sharpe(trials: int, variance: float) -> float:
    """The per-period Sharpe the best of `trials` zero-edge strategies shows on average, their Sharpe
    estimates having `variance` (Bailey and Lopez de Prado's approximation; 0 for one trial)."""
    if trials <= 1:
        return 0.0
    return math.sqrt(variance) * (
        (1 - EULER_GAMMA) * _NORMAL.inv_cdf(1 - 1 / trials) + EULER_GAMMA * _NORMAL.inv_cdf(1 - 1 / (trials * math.e))
    )


def deflated_sharpe(sharpe: float, n: int, trials: int, skew: float = 0.0, kurtosis: float = 3.0,
                    variance: float | None = None) -> float:
    """Deflated Sharpe ratio: P(true Sharpe > 0) allowing for the best of `trials` having been picked.
    `variance`: of the trials' per-period Sharpe estimates (default, the null's 1 / (n - 1))."""
    if n < 2 or not math.isfinite(sharpe):
        return math.nan
    benchmark = expected_max_sharpe(trials, variance if variance is not None else 1 / (n - 1))
    return probabilistic_sharpe(sharpe, benchmark, n, skew, kurtosis)


def sharpe_stats(returns, trials: int = 1, periods: int = TRADING_DAYS) -> dict:
    """Annualised Sharpe of per-period `returns`, its standard error and t, and the deflated Sharpe
    for `trials` strategies compared: sharpe, sharpe_se, sharpe_t, deflated_sharpe, periods_n."""
    n, sr, skew, kurtosis = moments(returns)
    se = sharpe_standard_error(sr, n, skew, kurtosis)
    nan_to_none = lambda x: float(x) if x is not None and math.isfinite(x) else None  # noqa: E731
    return {
        "sharpe": nan_to_none(sr * math.sqrt(periods)),
        "sharpe_se": nan_to_none(se * math.sqrt(periods)),
        "sharpe_t": nan_to_none(sr / se) if math.isfinite(se) and se > 0 else None,
        "deflated_sharpe": nan_to_none(deflated_sharpe(sr, n, trials, skew, kurtosis)),
        "periods_n": n,
    }


def deflate(sharpes, ns, skews=None, kurtoses=None, periods: int = TRADING_DAYS) -> list[float | None]:
    """Deflated Sharpe of each of several strategies compared together (annualised Sharpes, their
    return counts): the trials are the strategies, their variance the larger of the Sharpes' spread
    and the null's (a handful of strategies estimate a spread poorly)."""
    per = [s / math.sqrt(periods) if s is not None and math.isfinite(s) else math.nan for s in sharpes]
    finite = [s for s in per if math.isfinite(s)]
    trials = len(finite)
    longest = max([n for n, s in zip(ns, per, strict=True) if math.isfinite(s)], default=2)
    variance = max(float(np.var(finite, ddof=1)) if trials > 1 else 0.0, 1 / max(longest - 1, 1))
    skews = skews or [0.0] * len(per)
    kurtoses = kurtoses or [3.0] * len(per)
    out = []
    for s, n, g3, g4 in zip(per, ns, skews, kurtoses, strict=True):
        value = deflated_sharpe(s, n, trials, g3, g4, variance) if math.isfinite(s) else math.nan
        out.append(value if math.isfinite(value) else None)
    return out


def describe(stats: dict) -> str:
    """'Sharpe 1.23 ± 1.00 (t 1.2, deflated 0.45)' for a report line."""
    if stats.get("sharpe") is None:
        return "Sharpe n/a"
    text = f"Sharpe {stats['sharpe']:.2f}"
    if stats.get("sharpe_se") is not None:
        text += f" ± {stats['sharpe_se']:.2f} SE"
    extras = [f"t {stats['sharpe_t']:.1f}"] if stats.get("sharpe_t") is not None else []
    if stats.get("deflated_sharpe") is not None:
        extras.append(f"deflated {stats['deflated_sharpe']:.2f}")
    return text + (f" ({', '.join(extras)})" if extras else "")
