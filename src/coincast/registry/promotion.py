"""The promotion rule, pure: numbers in, a :class:`Decision` out; :func:`explain` writes its reason.

A challenger replaces the champion only if it beats both the champion (when this backtest scored it) and naive by
more than noise: its one-hour relative MAE (MAE / naive MAE on the same backtest origins) is lower, and a one-sided
Diebold–Mariano test of its 1 h absolute errors against theirs, origin by origin
(:func:`coincast.metrics.diebold_mariano`), has a p-value below ``level`` (env.yaml ``promotion_p_value``) divided
by the number of candidates it was picked from (Bonferroni: the best of five models that are all no better than
naive would otherwise pass a 5 % test in ~17 % of builds). The champion keeps its place only while it beats naive
beyond noise itself (its own test, at ``level``: it was not picked from this build's candidates). When nothing
beats naive, naive is the champion. No MLflow here: :func:`coincast.registry.versions.promote` applies the
decision to the registry.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any, Mapping, NamedTuple

import pandas as pd

from coincast.forecasting.backtest import NAIVE, best_model
from coincast.metrics import DMTest, diebold_mariano


class Rule(str, Enum):
    """Which clause of :func:`decide` settled it."""

    NAIVE_ONLY = "naive_only"  # no champion, or one this backtest did not score: the challenger vs naive
    REFIT = "refit"  # the challenger is the champion's own model (same kind and settings), refit on newer data
    NEITHER_BEATS_NAIVE = "neither_beats_naive"
    BEATS_CHAMPION = "beats_champion"
    WITHIN_NOISE = "within_noise"  # a lower rel_mae than the champion's, but not by more than noise
    TIE = "tie"
    NOT_NAIVE = "beats_champion_not_naive"
    DOES_NOT_BEAT = "does_not_beat"
    CHAMPION_NO_EDGE = "champion_no_edge"  # the champion no longer beats naive beyond noise; the challenger does


@dataclass(frozen=True)
class Decision:
    """What the gate decided: whether the challenger is promoted and who is champion after it (``champion_model``),
    from the challenger and the champion before (``champion``, None if there was none) with their 1 h rel_mae, the
    Diebold–Mariano tests of the challenger against naive and the champion and of the champion against naive (None:
    not tested), the level and the number of candidates the challenger was picked from."""

    promote: bool
    champion_model: str
    challenger: str
    challenger_rel: float | None
    champion: str | None
    champion_rel: float | None
    rule: Rule
    vs_naive: DMTest | None
    vs_champion: DMTest | None
    level: float
    candidates: int = 1
    champion_vs_naive: DMTest | None = None

    @property
    def threshold(self) -> float:
        """The p-value below which the challenger's edge counts: ``level`` / ``candidates`` (Bonferroni)."""
        return self.level / self.candidates


def finite(x: Any) -> bool:
    """Whether ``x`` is a finite number (None and NaN are not)."""
    return isinstance(x, (int, float)) and math.isfinite(x)


def significant(test: DMTest | None, level: float) -> bool:
    """Whether a Diebold–Mariano test shows an edge beyond noise: its p-value is below ``level``."""
    return test is not None and finite(test.p_value) and test.p_value < level


class NoiseTests(NamedTuple):
    """The Diebold–Mariano tests the gate reads (None: not tested)."""

    vs_naive: DMTest | None  # the challenger against naive
    vs_champion: DMTest | None  # the challenger against the champion
    champion_vs_naive: DMTest | None  # the champion against naive (a champion other than naive and the challenger)


def noise_tests(errors: pd.DataFrame, challenger: str, champion: str | None, horizon: int = 1) -> NoiseTests:
    """The Diebold–Mariano tests of the challenger's absolute errors against naive's and against the champion's, and
    of the champion's against naive's (``errors``: :func:`coincast.forecasting.backtest.errors_by_origin`), on the
    origins where all of them have one. None where there is nothing to test: the two are the same model, a model is
    not in ``errors``, or they share no more than ``horizon`` origins."""
    models = [m for m in dict.fromkeys((challenger, NAIVE, champion)) if m is not None and m in errors.columns]
    both = errors[models].dropna()
    if len(both) <= horizon:  # too few common origins to test anything
        return NoiseTests(None, None, None)

    def test(a: str | None, b: str | None) -> DMTest | None:
        return diebold_mariano(both[a], both[b], horizon) if a in models and b in models and a != b else None

    return NoiseTests(test(challenger, NAIVE), test(challenger, champion),
                      test(champion, NAIVE) if champion != challenger else None)


def decide(challenger: str, challenger_rel: float | None, champion: str | None, champion_rel: float | None,
           vs_naive: DMTest | None, vs_champion: DMTest | None, level: float, candidates: int = 1,
           champion_vs_naive: DMTest | None = None) -> Decision:
    """The promotion gate (pure). ``*_rel`` are one-hour rel_mae on the same backtest (naive is 1.0); ``vs_naive``
    and ``vs_champion`` the challenger's Diebold–Mariano tests against them, ``champion_vs_naive`` the champion's
    against naive (:func:`noise_tests`); ``level`` the p-value below which an edge counts; ``candidates`` how many
    models (naive aside) the challenger was picked from as the best, so its tests count below ``level`` /
    ``candidates`` (Bonferroni). The challenger *beats naive* when it is naive, or its rel_mae is below 1 and
    ``vs_naive`` is below that threshold. The champion *holds* when it is naive, or its rel_mae is below 1 and
    ``champion_vs_naive`` is below ``level`` (one test, chosen before the build: no correction).

    * a champion that does not hold (it no longer beats naive beyond noise, or is worse than naive) gives way to
      the challenger if the challenger beats naive, else to naive (naive needs no edge);
    * the challenger becomes champion if it beats naive and beats a champion that holds: a lower rel_mae and
      (unless the champion is naive, already tested) ``vs_champion`` below the threshold; a lower rel_mae within
      noise keeps the champion, as a tie does;
    * no champion, or a champion this backtest did not score: the challenger if it beats naive, else naive;
    * the challenger *is* the champion's model (same identity, refit on newer data): its new version takes over if
      it still holds (``vs_naive`` below ``level``), else naive is the champion.
    """
    if not 0 < level < 1:
        raise ValueError(f"the promotion p-value level must be between 0 and 1, got {level!r}")
    if int(candidates) != candidates or candidates < 1:
        raise ValueError(f"candidates must be a whole number >= 1, got {candidates!r}")

    def made(promote: bool, winner: str, rule: Rule) -> Decision:
        return Decision(promote, winner, challenger, challenger_rel, champion, champion_rel, rule,
                        vs_naive, vs_champion, level, int(candidates), champion_vs_naive)

    def edge(rel: float | None, test: DMTest | None, below: float) -> bool:
        return finite(rel) and rel < 1.0 and significant(test, below)

    threshold = level / candidates
    beats_naive = challenger == NAIVE or edge(challenger_rel, vs_naive, threshold)
    if champion is None or not finite(champion_rel):
        return made(True, challenger, Rule.NAIVE_ONLY) if beats_naive else made(False, NAIVE, Rule.NAIVE_ONLY)
    if challenger == champion:
        holds = challenger == NAIVE or edge(challenger_rel, vs_naive, level)
        return made(True, challenger, Rule.REFIT) if holds else made(False, NAIVE, Rule.REFIT)
    if champion != NAIVE and not edge(champion_rel, champion_vs_naive, level):
        if challenger == NAIVE:
            return made(True, NAIVE, Rule.BEATS_CHAMPION)
        if beats_naive:
            return made(True, challenger, Rule.CHAMPION_NO_EDGE)
        return made(False, NAIVE, Rule.NEITHER_BEATS_NAIVE)
    lower = finite(challenger_rel) and challenger_rel < champion_rel
    if lower and beats_naive:
        if challenger == NAIVE or champion == NAIVE or significant(vs_champion, threshold):
            return made(True, challenger, Rule.BEATS_CHAMPION)
        return made(False, champion, Rule.WITHIN_NOISE)
    if finite(challenger_rel) and challenger_rel == champion_rel:
        return made(False, champion, Rule.TIE)
    if lower:  # better than the champion but not than naive beyond noise
        return made(False, champion, Rule.NOT_NAIVE)
    return made(False, champion, Rule.DOES_NOT_BEAT)


def dm_text(test: DMTest | None, level: float, candidates: int = 1) -> str:
    """A Diebold–Mariano test in a few words: ``DM -2.31, p 0.0104 < 0.05``; against ``level`` / ``candidates``
    when there were several: ``DM -2.31, p 0.0104 >= 0.01 (0.05 / 5 candidates)``."""
    if test is None:
        return "not tested"
    below = level / candidates
    sign = "<" if significant(test, below) else ">="
    split = f" ({level:g} / {candidates} candidates)" if candidates > 1 else ""
    return f"DM {test.statistic:.2f}, p {test.p_value:.3g} {sign} {below:.3g}{split}"


def explain(d: Decision) -> str:
    """The decision in one sentence with its numbers (kept on the registry version and in registry.json): the
    rel_mae of each model and the Diebold–Mariano statistic and p-value of each test that counted."""
    c_txt = f"{d.challenger} 1h rel_mae {d.challenger_rel:.4f}" if finite(d.challenger_rel) else \
        f"{d.challenger} has no 1h rel_mae"
    naive_txt = "naive (1.0000)"
    n_dm = f"({dm_text(d.vs_naive, d.level, d.candidates)})"
    k_dm = f"({dm_text(d.vs_champion, d.level, d.candidates)})"
    beyond = f"beyond noise {n_dm}"
    if d.rule is Rule.NAIVE_ONLY:
        head = "no champion yet" if d.champion is None else \
            f"champion {d.champion} is not scored in this backtest, so compared with naive only"
        if d.challenger == NAIVE:
            return f"{head}: naive (1h rel_mae 1.0000) becomes champion"
        if not d.promote:
            return f"{head}: {c_txt} does not beat {naive_txt} {beyond}, so naive is champion"
        return f"{head}: {c_txt} beats {naive_txt} {beyond}"
    if d.rule is Rule.REFIT:
        if d.challenger == NAIVE:
            return "naive (1h rel_mae 1.0000) is the champion's model: its new version replaces the previous one"
        beyond = f"beyond noise ({dm_text(d.vs_naive, d.level)})"  # the champion's own test: no correction
        if d.promote:
            return (f"{c_txt}: the champion's model refit on this build still beats {naive_txt} {beyond} and "
                    f"replaces its previous version")
        return f"{c_txt}: the champion's model no longer beats {naive_txt} {beyond}, so naive is champion"
    k_txt = f"champion {d.champion} ({d.champion_rel:.4f})"
    kn_dm = f"({dm_text(d.champion_vs_naive, d.level)})"  # the champion's own test against naive: no correction
    if d.rule is Rule.NEITHER_BEATS_NAIVE:
        return f"neither {c_txt} {n_dm} nor {k_txt} {kn_dm} beats {naive_txt} beyond noise, so naive is champion"
    if d.rule is Rule.CHAMPION_NO_EDGE:
        return (f"{k_txt} no longer beats {naive_txt} beyond noise {kn_dm}; {c_txt} does {n_dm}, so it is "
                f"champion")
    if d.rule is Rule.BEATS_CHAMPION:
        if d.challenger == NAIVE:
            return (f"nothing beats naive: {k_txt} does not beat naive (1h rel_mae 1.0000) beyond noise {kn_dm}, so "
                    f"naive is champion")
        if d.champion == NAIVE:
            return f"{c_txt} beats {k_txt} {beyond}"
        return f"{c_txt} beats {k_txt} {k_dm} and {naive_txt} {n_dm} beyond noise"
    if d.rule is Rule.WITHIN_NOISE:
        return f"{c_txt} is below {k_txt} but within noise {k_dm}: the champion stays"
    if d.rule is Rule.TIE:
        return f"{c_txt} ties {k_txt}: the champion stays"
    if d.rule is Rule.NOT_NAIVE and d.champion == NAIVE:
        return f"{c_txt} does not beat {k_txt} {beyond}: the champion stays"
    if d.rule is Rule.NOT_NAIVE:
        return f"{c_txt} is below {k_txt} but does not beat {naive_txt} {beyond}: the champion stays"
    return f"{c_txt} does not beat {k_txt}: the champion stays"


def record(d: Decision) -> dict[str, Any]:
    """The decision as JSON (registry.json's ``decision``; the version tags are its flattened keys): the rule,
    whether promoted, the champion after it, the level, the candidates and the challenger's threshold (level /
    candidates) and each test (statistic, p_value, n; None: not tested)."""
    def test(t: DMTest | None) -> dict[str, Any] | None:
        if t is None:
            return None
        return {"statistic": t.statistic if finite(t.statistic) else None,
                "p_value": t.p_value if finite(t.p_value) else None, "n": int(t.n)}

    return {"promoted": bool(d.promote), "rule": d.rule.value, "champion_model": d.champion_model,
            "promotion_p_value": d.level, "candidates": d.candidates, "threshold": d.threshold,
            "vs_naive": test(d.vs_naive), "vs_champion": test(d.vs_champion),
            "champion_vs_naive": test(d.champion_vs_naive)}


def candidates(models: Mapping[str, Any]) -> int:
    """How many models the challenger is picked from (:func:`pick_challenger`), naive aside: the gate's Bonferroni
    divisor (at least 1)."""
    return max(1, sum(1 for name in models if name != NAIVE))


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
