"""The promotion rule, pure: numbers in, a :class:`Decision` out; :func:`explain` writes its reason.

A challenger replaces the champion only if its one-hour relative MAE (MAE / naive MAE on the same backtest
origins) beats the champion's *on the same backtest* and is no worse than naive; when nothing beats naive, naive
is the champion. No MLflow here: :func:`coincast.registry.versions.promote` applies the decision to the registry.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any, Mapping

from coincast.forecasting.backtest import NAIVE, best_model


class Rule(str, Enum):
    """Which clause of :func:`decide` settled it."""

    NAIVE_ONLY = "naive_only"  # no champion, or one this backtest did not score: the challenger vs naive
    REFIT = "refit"  # the challenger is the champion's own model, refit on newer data
    NEITHER_BEATS_NAIVE = "neither_beats_naive"
    BEATS_CHAMPION = "beats_champion"
    TIE = "tie"
    NOT_NAIVE = "beats_champion_not_naive"
    DOES_NOT_BEAT = "does_not_beat"


@dataclass(frozen=True)
class Decision:
    """What the gate decided: whether the challenger is promoted and who is champion after it (``champion_model``),
    from the challenger and the champion before (``champion``, None if there was none) with their 1 h rel_mae."""

    promote: bool
    champion_model: str
    challenger: str
    challenger_rel: float | None
    champion: str | None
    champion_rel: float | None
    rule: Rule


def finite(x: Any) -> bool:
    """Whether ``x`` is a finite number (None and NaN are not)."""
    return isinstance(x, (int, float)) and math.isfinite(x)


def decide(challenger: str, challenger_rel: float | None, champion: str | None,
           champion_rel: float | None) -> Decision:
    """The promotion gate (pure). ``*_rel`` are one-hour rel_mae on the same backtest; naive is 1.0.

    * the challenger becomes champion if it beats the champion (strictly: ties do not promote) and is
      no worse than naive (rel_mae <= 1);
    * the champion stays if the challenger does not beat it, unless neither beats naive: then naive is
      the champion;
    * no champion, or a champion this backtest did not score: the challenger if it is no worse than naive,
      else naive;
    * the challenger *is* the champion's model (refit on newer data): its new version takes over if it is
      still no worse than naive — the comparison would otherwise be a tie by construction and the
      champion would never be refreshed.
    """
    def made(promote: bool, winner: str, rule: Rule) -> Decision:
        return Decision(promote, winner, challenger, challenger_rel, champion, champion_rel, rule)

    c_ok = finite(challenger_rel) and challenger_rel <= 1.0
    if champion is None or not finite(champion_rel):
        return made(True, challenger, Rule.NAIVE_ONLY) if c_ok else made(False, NAIVE, Rule.NAIVE_ONLY)
    if challenger == champion:
        return made(True, challenger, Rule.REFIT) if c_ok else made(False, NAIVE, Rule.REFIT)
    if not c_ok and champion_rel > 1.0:
        return made(False, NAIVE, Rule.NEITHER_BEATS_NAIVE)
    if c_ok and challenger_rel < champion_rel:
        return made(True, challenger, Rule.BEATS_CHAMPION)
    if finite(challenger_rel) and challenger_rel == champion_rel:
        return made(False, champion, Rule.TIE)
    if finite(challenger_rel) and challenger_rel < champion_rel:  # better but worse than naive
        return made(False, champion, Rule.NOT_NAIVE)
    return made(False, champion, Rule.DOES_NOT_BEAT)


def explain(d: Decision) -> str:
    """The decision in one sentence with its numbers (kept on the registry version and in registry.json)."""
    c_txt = f"{d.challenger} 1h rel_mae {d.challenger_rel:.4f}" if finite(d.challenger_rel) else \
        f"{d.challenger} has no 1h rel_mae"
    naive_txt = "naive (1.0000)"
    if d.rule is Rule.NAIVE_ONLY:
        head = "no champion yet" if d.champion is None else \
            f"champion {d.champion} is not scored in this backtest, so compared with naive only"
        if not d.promote:
            return f"{head}: {c_txt} does not beat {naive_txt}, so naive is champion"
        if d.challenger == NAIVE:
            return f"{head}: naive (1h rel_mae 1.0000) becomes champion"
        return f"{head}: {c_txt} {'ties' if d.challenger_rel == 1.0 else 'beats'} {naive_txt}"
    if d.rule is Rule.REFIT:
        if d.promote:
            return (f"{c_txt}: the champion's model refit on this build (no worse than {naive_txt}) replaces its "
                    f"previous version")
        return f"{c_txt}: the champion's model no longer beats {naive_txt}, so naive is champion"
    k_txt = f"champion {d.champion} ({d.champion_rel:.4f})"
    if d.rule is Rule.NEITHER_BEATS_NAIVE:
        return f"neither {c_txt} nor {k_txt} beats {naive_txt}, so naive is champion"
    if d.rule is Rule.BEATS_CHAMPION:
        if d.challenger == NAIVE:
            return f"nothing beats naive: {k_txt} is worse than naive (1h rel_mae 1.0000), so naive is champion"
        return f"{c_txt} beats {k_txt}" + ("" if d.champion == NAIVE else f" and {naive_txt}")
    if d.rule is Rule.TIE:
        return f"{c_txt} ties {k_txt}: the champion stays"
    if d.rule is Rule.NOT_NAIVE:
        return f"{c_txt} beats {k_txt} but not {naive_txt}: the champion stays"
    return f"{c_txt} does not beat {k_txt}: the champion stays"


def pick_challenger(models: Mapping[str, Mapping[str, Any]]) -> str:
    """The best model of the build: :func:`coincast.forecasting.backtest.best_model` at 1 h (one rule everywhere)."""
    return best_model(models, 1)


def metric(entry: Mapping[str, Any] | None, h: int, name: str) -> float | None:
    """A backtest model entry's ``name`` at horizon ``h`` (``{"horizons": {"1": {...}}}``), None unless finite."""
    hs = (entry or {}).get("horizons") or {}
    try:
        value = float((hs.get(str(h)) or hs.get(h) or {}).get(name))
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
