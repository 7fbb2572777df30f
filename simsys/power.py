"""Power and sample size of a fairness audit, by repeated simulation.

This module owns one question: *how many patients of the smaller group does an audit need to
detect a gap of a given size in the true-positive rate (TPR) between two groups, with a given
power?* The audit compares the TPRs of a deployed model in the two groups with a two-sided,
pooled two-proportion z-test at level ``alpha``.

An :class:`AuditDesign` fixes what the audit faces: the prevalence of the condition in each
group, how many reference-group patients come with each patient of the smaller group, the TPR
in the reference group, and the gap (``effect``): the smaller group's TPR is ``tpr - effect``.
:func:`design_from_scenario` reads the group shares and prevalences off a scenario's
population. :func:`simulate_power` estimates the power at one size by simulation, with its
binomial standard error; :func:`sample_size` searches over sizes; :func:`closed_form_power`
is the textbook normal-approximation formula, for checking.

One simulated audit of ``n`` smaller-group patients (all draws vectorised over simulations):

    P_s ~ Binomial(n, prev_s),          P_r ~ Binomial(round(n * ratio), prev_r)   (sick patients)
    TP_s ~ Binomial(P_s, tpr - effect), TP_r ~ Binomial(P_r, tpr)
    z = (TP_r/P_r - TP_s/P_s) / sqrt(pbar (1 - pbar) (1/P_s + 1/P_r)),  pbar = (TP_s + TP_r)/(P_s + P_r)
    reject when |z| > z_{1 - alpha/2}   (an audit without sick patients in a group, or with
    pbar in {0, 1}, does not reject)

The power estimate is the share of rejections over ``sims`` audits, with standard error
sqrt(p (1 - p) / sims). Seeding: the root seed becomes a ``SeedSequence``; the audits of size
``n`` use its child with ``spawn_key=(n,)``, so a size's estimate does not depend on which other
sizes the search visited.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from simsys.errors import SimsysError

__all__ = [
    "AuditDesign",
    "PowerResult",
    "closed_form_power",
    "design_from_scenario",
    "format_power",
    "sample_size",
    "simulate_power",
]

_ERR_RATE = "{name}: expected a number in [0, 1], got {value!r}"
_ERR_EFFECT = "effect: expected a number in (0, tpr] (the smaller group's TPR is tpr - effect), got {value!r}"
_ERR_POSITIVE = "{name}: expected a number > 0, got {value!r}"
_ERR_INT = "{name}: expected an integer >= {lo}, got {value!r}"
_ERR_LEVEL = "{name}: expected a number in (0, 1), got {value!r}"


@dataclass(frozen=True)
class AuditDesign:
    """What an audit of a TPR gap between a smaller group and a reference group faces.

    Attributes
    ----------
    prevalence_small, prevalence_reference : float
        Share of sick (target = 1) patients in each group, in [0, 1].
    ratio : float
        Reference-group patients per smaller-group patient (> 0).
    tpr : float
        TPR of the audited model in the reference group.
    effect : float
        The gap to detect: the smaller group's TPR is ``tpr - effect``.
    labels : tuple of str
        Names of the (smaller, reference) groups, for reports.
    """

    prevalence_small: float
    prevalence_reference: float
    ratio: float
    tpr: float
    effect: float
    labels: tuple[str, str] = ("smaller group", "reference group")

    def __post_init__(self):
        for name in ("prevalence_small", "prevalence_reference", "tpr"):
            v = getattr(self, name)
            if not _real(v) or not 0 <= v <= 1:
                raise SimsysError(_ERR_RATE.format(name=name, value=v))
        if not _real(self.ratio) or self.ratio <= 0:
            raise SimsysError(_ERR_POSITIVE.format(name="ratio", value=self.ratio))
        if not _real(self.effect) or not 0 < self.effect <= self.tpr:
            raise SimsysError(_ERR_EFFECT.format(value=self.effect))

    def n_reference(self, n_small: int) -> int:
        """Reference-group patients that come with ``n_small`` smaller-group patients."""
        return max(1, round(n_small * self.ratio))


@dataclass(frozen=True)
class PowerResult:
    """The outcome of :func:`sample_size`.

    Attributes
    ----------
    n : int or None
        Smallest size visited whose estimated power reaches the target (None if ``n_max`` does
        not reach it).
    n_low, n_high : int or None
        The sizes visited just around the answer that the simulation can tell apart from the
        target: the largest n whose power is significantly below it (estimate + z * se <
        target) and the smallest whose power is significantly above it (estimate - z * se >=
        target), z = 1.96. The answer is uncertain between them.
    table : DataFrame
        Every size visited: ``n_small``, ``n_reference``, ``expected_sick_small``,
        ``expected_sick_reference``, ``power``, ``se``, ``lo``, ``hi`` (power +- 1.96 se),
        sorted by size.
    design : AuditDesign
    target : float
    alpha : float
    sims : int
    """

    n: int | None
    n_low: int | None
    n_high: int | None
    table: pd.DataFrame
    design: AuditDesign
    target: float
    alpha: float
    sims: int


def _real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _check_level(name: str, v) -> float:
    if not _real(v) or not 0 < v < 1:
        raise SimsysError(_ERR_LEVEL.format(name=name, value=v))
    return float(v)


def _check_int(name: str, v, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
        raise SimsysError(_ERR_INT.format(name=name, lo=lo, value=v))
    return int(v)


def _root(seed) -> np.random.SeedSequence:
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, np.random.Generator):
        return np.random.SeedSequence(int(seed.integers(2**63)))
    return np.random.SeedSequence(seed)


def _reject(tp_s, pos_s, tp_r, pos_r, alpha: float) -> np.ndarray:
    """Two-sided pooled two-proportion z-test of TP/P between two groups, per simulation."""
    with np.errstate(invalid="ignore", divide="ignore"):
        p_s = tp_s / pos_s
        p_r = tp_r / pos_r
        pbar = (tp_s + tp_r) / (pos_s + pos_r)
        se = np.sqrt(pbar * (1.0 - pbar) * (1.0 / pos_s + 1.0 / pos_r))
        z = (p_r - p_s) / se
    ok = (pos_s > 0) & (pos_r > 0) & (se > 0)
    return ok & (np.abs(np.where(ok, z, 0.0)) > norm.ppf(1.0 - alpha / 2.0))


def simulate_power(n_small: int, design: AuditDesign, *, alpha: float = 0.05, sims: int = 1000,
                   seed=None) -> tuple[float, float]:
    """Estimated power of the audit with ``n_small`` smaller-group patients, and its standard error.

    Parameters
    ----------
    n_small : int
        Patients of the smaller group (>= 1); the reference group has ``design.n_reference(n)``.
    design : AuditDesign
    alpha : float in (0, 1), default 0.05
        Level of the two-sided test.
    sims : int, default 1000
        Simulated audits.
    seed : int, SeedSequence, Generator or None
        Root seed; the audits of size n use ``SeedSequence(root, spawn_key=(n,))``.

    Returns
    -------
    power, se : float
        Share of audits that reject, and sqrt(power (1 - power) / sims).
    """
    n_small = _check_int("n_small", n_small, 1)
    alpha = _check_level("alpha", alpha)
    sims = _check_int("sims", sims, 1)
    root = _root(seed)
    child = np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, n_small))
    rng = np.random.default_rng(child)
    pos_s = rng.binomial(n_small, design.prevalence_small, size=sims)
    pos_r = rng.binomial(design.n_reference(n_small), design.prevalence_reference, size=sims)
    tp_s = rng.binomial(pos_s, design.tpr - design.effect)
    tp_r = rng.binomial(pos_r, design.tpr)
    p = float(_reject(tp_s, pos_s, tp_r, pos_r, alpha).mean())
    return p, math.sqrt(p * (1.0 - p) / sims)


def closed_form_power(m_small: float, m_reference: float, p_small: float, p_reference: float, *,
                      alpha: float = 0.05) -> float:
    """Power of the two-sided pooled two-proportion z-test, normal approximation (Fleiss,
    Levin & Paik 2003, "Statistical Methods for Rates and Proportions", section 4.2).

    With m_1, m_2 trials (here: sick patients, taken as fixed), true proportions p_1, p_2,
    d = |p_1 - p_2|, pbar = (m_1 p_1 + m_2 p_2) / (m_1 + m_2),
    se_0 = sqrt(pbar (1 - pbar) (1/m_1 + 1/m_2)) and se_1 = sqrt(p_1 (1 - p_1)/m_1 + p_2 (1 - p_2)/m_2):

        power = Phi((d - z se_0) / se_1) + Phi((-d - z se_0) / se_1),   z = z_{1 - alpha/2}.

    It holds when the numbers of sick patients are fixed (prevalence 1, or sick patients
    sampled by design) and large enough for the normal approximation.
    """
    alpha = _check_level("alpha", alpha)
    d = abs(p_small - p_reference)
    pbar = (m_small * p_small + m_reference * p_reference) / (m_small + m_reference)
    se0 = math.sqrt(pbar * (1 - pbar) * (1 / m_small + 1 / m_reference))
    se1 = math.sqrt(p_small * (1 - p_small) / m_small + p_reference * (1 - p_reference) / m_reference)
    z = norm.ppf(1 - alpha / 2)
    return float(norm.cdf((d - z * se0) / se1) + norm.cdf((-d - z * se0) / se1))


def sample_size(design: AuditDesign, *, power: float = 0.8, alpha: float = 0.05, sims: int = 1000,
                seed=None, n_start: int = 10, n_max: int = 1_000_000, rel_tol: float = 0.02
                ) -> PowerResult:
    """Smallest number of smaller-group patients whose simulated power reaches ``power``.

    The search doubles n from ``n_start`` until the estimated power reaches the target (or
    ``n_max`` is passed), then bisects between the last size below and the first at or above the
    target until they are within ``rel_tol`` of each other (relative; at least 1 patient). Each
    size visited is simulated once, with ``sims`` audits (:func:`simulate_power`). Near the
    answer, power estimates are noisy; ``n_low`` / ``n_high`` of the result bracket the sizes
    the simulation cannot tell from the target.

    Raises
    ------
    SimsysError
        For a target, level or count out of range.
    """
    target = _check_level("power", power)
    alpha = _check_level("alpha", alpha)
    sims = _check_int("sims", sims, 1)
    n_start = _check_int("n_start", n_start, 1)
    n_max = _check_int("n_max", n_max, n_start)
    if not _real(rel_tol) or rel_tol <= 0:
        raise SimsysError(_ERR_POSITIVE.format(name="rel_tol", value=rel_tol))
    root = _root(seed)
    seen: dict[int, tuple[float, float]] = {}

    def at(n: int) -> float:
        if n not in seen:
            seen[n] = simulate_power(n, design, alpha=alpha, sims=sims, seed=root)
        return seen[n][0]

    lo, hi = 0, None
    n = n_start
    while n <= n_max:
        if at(n) >= target:
            hi = n
            break
        lo = n
        n *= 2
    if hi is None and lo < n_max:
        if at(n_max) >= target:
            hi = n_max
        else:
            lo = n_max
    if hi is not None:
        while hi - lo > max(1, int(rel_tol * hi)):
            mid = (lo + hi) // 2
            if at(mid) >= target:
                hi = mid
            else:
                lo = mid
    z = norm.ppf(0.975)
    rows = []
    for n_s in sorted(seen):
        p, se = seen[n_s]
        rows.append({"n_small": n_s, "n_reference": design.n_reference(n_s),
                     "expected_sick_small": n_s * design.prevalence_small,
                     "expected_sick_reference": design.n_reference(n_s) * design.prevalence_reference,
                     "power": p, "se": se, "lo": p - z * se, "hi": p + z * se})
    table = pd.DataFrame(rows)
    answer = None if hi is None else min(n_s for n_s in seen if seen[n_s][0] >= target)
    below = [r["n_small"] for r in rows if r["hi"] < target and (answer is None or r["n_small"] <= answer)]
    above = [r["n_small"] for r in rows if r["lo"] >= target and (answer is None or r["n_small"] >= answer)]
    return PowerResult(answer, max(below) if below else None, min(above) if above else None, table,
                       design, target, alpha, sims)


def design_from_scenario(scenario, *, effect: float, tpr: float = 0.8, group: str | None = None,
                         population: str | None = None, n: int = 200_000, seed=None) -> AuditDesign:
    """An :class:`AuditDesign` with the group shares and prevalences of a scenario's population.

    Draws ``n`` patients of ``population`` (default: the experiment's test population, else
    ``test``) without biases (the audit compares the model with the true diagnosis) and
    measures each group's share and prevalence of the target. The reference group is
    ``roles.reference_group`` if set, else the largest group; the compared group is ``group``
    (a label such as ``skin_tone=dark``) or, by default, the smallest other group.

    Raises
    ------
    SimsysError
        For an unknown population or group label, or a group absent from the sample.
    """
    from simsys.groups import GroupCoding
    from simsys.simulate import build_plan, run_plan

    exp = scenario.spec.experiment or {}
    population = population or exp.get("test", "test")
    if population not in scenario.spec.populations:
        raise SimsysError(f"{scenario.source}: populations: unknown population {population!r}; "
                          f"defined: {', '.join(scenario.spec.populations)}")
    root = _root(scenario.spec.seed if seed is None else seed)
    cohort = run_plan(build_plan(scenario, population, biased=False), int(n),
                      int(root.generate_state(1)[0]), filter=False, threads=1)
    coding = GroupCoding.of(scenario)
    codes = coding.codes(cohort)
    y = cohort.column(scenario.spec.roles.target).astype(np.float64)
    G = len(coding.labels)
    size = np.bincount(codes, minlength=G).astype(np.float64)
    sick = np.bincount(codes, weights=y, minlength=G)
    ref = coding.reference if coding.reference is not None else int(np.argmax(size))
    if group is None:
        others = [g for g in range(G) if g != ref and size[g] > 0]
        if not others:
            raise SimsysError(f"{scenario.source}: roles.group: the audit needs two groups with patients")
        small = min(others, key=lambda g: size[g])
    else:
        if group not in coding.labels:
            raise SimsysError(f"group: unknown group {group!r}; groups: {', '.join(coding.labels)}")
        small = coding.labels.index(group)
        if small == ref:
            raise SimsysError(f"group: {group!r} is the reference group; choose another")
    if size[small] == 0:
        raise SimsysError(f"group: no patients of {coding.labels[small]!r} in {n} draws of {population!r}")
    return AuditDesign(prevalence_small=float(sick[small] / size[small]),
                       prevalence_reference=float(sick[ref] / size[ref]),
                       ratio=float(size[ref] / size[small]), tpr=float(tpr), effect=float(effect),
                       labels=(coding.labels[small], coding.labels[ref]))


def format_power(result: PowerResult) -> str:
    """A readable report of :func:`sample_size` for the terminal."""
    d = result.design
    small, ref = d.labels
    lines = [
        f"audit: two-sided pooled two-proportion z-test of the TPR, {small} vs {ref}, alpha {result.alpha:g}",
        f"design: prevalence {d.prevalence_small:.4f} ({small}) / {d.prevalence_reference:.4f} ({ref}); "
        f"{d.ratio:.3g} {ref} patients per {small} patient; TPR {d.tpr:.3f} vs {d.tpr - d.effect:.3f} "
        f"(gap {d.effect:g})",
        f"{'n ' + small:>24} {'n ' + ref:>24} {'sick ' + small:>18} {'power':>8} {'se':>7}",
    ]
    for _, r in result.table.iterrows():
        lines.append(f"{int(r['n_small']):>24,} {int(r['n_reference']):>24,} "
                     f"{r['expected_sick_small']:>18,.1f} {r['power']:>8.3f} {r['se']:>7.3f}")
    if result.n is None:
        lines.append(f"power {result.target:g} not reached up to {int(result.table['n_small'].max()):,} "
                     f"patients of {small}")
        return "\n".join(lines)
    row = result.table[result.table["n_small"] == result.n].iloc[0]
    span = ""
    if result.n_low is not None or result.n_high is not None:
        lo = f"{result.n_low:,}" if result.n_low is not None else "?"
        hi = f"{result.n_high:,}" if result.n_high is not None else "?"
        span = f"; given the simulation error, between {lo} and {hi}"
    lines.append(
        f"answer: about {result.n:,} patients of {small} (with {d.n_reference(result.n):,} of {ref}; "
        f"about {result.n * d.prevalence_small:,.0f} sick) for power {result.target:g}: simulated "
        f"{row['power']:.3f} +- {row['se']:.3f} ({result.sims:,} audits){span}")
    return "\n".join(lines)
