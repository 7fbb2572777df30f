"""Tests of simsys.power: the simulated power of a TPR audit against the closed-form formula,
the sample-size search, seeding, designs read from a scenario, and the ``simsys power`` command."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from simsys.cli import main
from simsys.errors import SimsysError
from simsys.power import (
    AuditDesign,
    closed_form_power,
    design_from_scenario,
    format_power,
    sample_size,
    simulate_power,
)
from simsys.scenario import load_scenario

DATA = Path(__file__).parent / "data"


def _closed_form_n(design: AuditDesign, target: float, alpha: float) -> int:
    """Smallest n with closed-form power >= target (prevalence 1: sick patients = patients)."""
    n = 1
    while closed_form_power(n, design.n_reference(n), design.tpr - design.effect, design.tpr,
                            alpha=alpha) < target:
        n += 1
    return n


@pytest.mark.parametrize(("n", "ratio", "tpr", "effect"), [
    (150, 1.0, 0.8, 0.1), (300, 2.0, 0.85, 0.08), (400, 0.5, 0.6, 0.1), (1000, 3.0, 0.9, 0.03)])
def test_simulated_power_matches_the_closed_form_two_proportion_formula(n, ratio, tpr, effect):
    """With prevalence 1 the numbers of sick patients are fixed, so the pooled two-proportion
    z-test's normal-approximation power formula (Fleiss et al.) holds. At these sizes (>= 150 sick
    per group) the formula is within 0.009 of the exact power (enumerating both binomials: 0.0034,
    0.0016, 0.0089, 0.0003 for the four cases); the simulation's binomial SE with 8,000 audits is
    <= 0.0056. Tolerance: 4 SE + 0.01."""
    design = AuditDesign(1.0, 1.0, ratio, tpr, effect)
    p, se = simulate_power(n, design, sims=8000, seed=20)
    expected = closed_form_power(n, design.n_reference(n), tpr - effect, tpr)
    assert se == pytest.approx(math.sqrt(p * (1 - p) / 8000))
    assert abs(p - expected) < 4 * se + 0.01, (p, expected, se)


def _exact_power(m1: int, m2: int, p1: float, p2: float, alpha: float = 0.05) -> float:
    """The test's power by enumerating both binomial counts (the slow, exact twin)."""
    from scipy.stats import binom, norm

    k1, k2 = np.arange(m1 + 1)[:, None], np.arange(m2 + 1)[None, :]
    w = binom.pmf(k1, m1, p1) * binom.pmf(k2, m2, p2)
    pbar = (k1 + k2) / (m1 + m2)
    se = np.sqrt(pbar * (1 - pbar) * (1 / m1 + 1 / m2))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(se > 0, (k2 / m2 - k1 / m1) / se, 0.0)
    return float((w * (np.abs(z) > norm.ppf(1 - alpha / 2))).sum())


@pytest.mark.parametrize(("n", "ratio"), [(20, 1.0), (60, 3.0), (400, 0.5)])
def test_simulated_power_matches_exact_enumeration(n, ratio):
    """Also where the normal approximation is poor (20 sick per group): simulation and exact
    enumeration agree within 4 binomial SE."""
    design = AuditDesign(1.0, 1.0, ratio, 0.6, 0.1)
    p, se = simulate_power(n, design, sims=8000, seed=2)
    assert abs(p - _exact_power(n, design.n_reference(n), 0.5, 0.6)) < 4 * se


def test_closed_form_power_known_values():
    # alpha is the rejection rate when there is no gap (normal approximation): both tails
    assert closed_form_power(500, 500, 0.7, 0.7) == pytest.approx(0.05, abs=1e-12)
    # the classic textbook case: 0.8 vs 0.7 needs about 294 per group for 80% power (alpha 0.05,
    # pooled-variance formula, no continuity correction)
    assert closed_form_power(294, 294, 0.7, 0.8) == pytest.approx(0.80, abs=0.005)
    assert closed_form_power(293, 294, 0.7, 0.8) < closed_form_power(294, 294, 0.7, 0.8)


def test_sample_size_search_brackets_the_closed_form_answer():
    """The answer of the search lies within its own uncertainty bracket of the closed-form n, and
    within 10% of it (2,000 audits per size: SE about 0.009 near 80% power)."""
    design = AuditDesign(1.0, 1.0, 2.0, 0.8, 0.1, labels=("B", "A"))
    result = sample_size(design, power=0.8, sims=2000, seed=5)
    exact = _closed_form_n(design, 0.8, 0.05)
    assert abs(result.n - exact) <= 0.1 * exact
    assert result.n_low is not None and result.n_high is not None
    assert result.n_low <= exact <= result.n_high
    t = result.table
    assert t["n_small"].is_monotonic_increasing
    assert list(t.columns) == ["n_small", "n_reference", "expected_sick_small",
                               "expected_sick_reference", "power", "se", "lo", "hi"]
    at = t[t["n_small"] == result.n].iloc[0]
    assert at["power"] >= 0.8 and at["n_reference"] == 2 * result.n
    # every size's estimate is what simulate_power gives for it alone (seeded by size)
    for _, row in t.iterrows():
        assert simulate_power(int(row["n_small"]), design, sims=2000, seed=5)[0] == row["power"]
    text = format_power(result)
    assert text.splitlines()[-1].startswith(f"answer: about {result.n:,} patients of B (with "
                                            f"{2 * result.n:,} of A; about {result.n:,} sick)")


def test_prevalence_lowers_power_as_fewer_sick_patients_are_audited():
    """Only sick patients inform a TPR: with prevalence q, n patients carry about q n sick ones,
    so the power at n is about the closed-form power at q n (within simulation error + 0.02 for
    the spread of the sick counts)."""
    design = AuditDesign(0.2, 0.2, 1.0, 0.8, 0.1)
    p, se = simulate_power(1500, design, sims=4000, seed=1)
    assert abs(p - closed_form_power(300, 300, 0.7, 0.8)) < 4 * se + 0.02
    assert p < simulate_power(1500, AuditDesign(1.0, 1.0, 1.0, 0.8, 0.1), sims=4000, seed=1)[0]


def test_seeding_is_reproducible():
    design = AuditDesign(0.5, 0.3, 1.5, 0.8, 0.1)
    a = sample_size(design, sims=300, seed=9)
    b = sample_size(design, sims=300, seed=np.random.SeedSequence(9))
    assert a.n == b.n
    np.testing.assert_array_equal(a.table.to_numpy(), b.table.to_numpy())
    assert simulate_power(100, design, sims=300, seed=9) != simulate_power(100, design, sims=300, seed=10)


def test_unreachable_power_is_reported():
    design = AuditDesign(0.01, 0.01, 1.0, 0.8, 0.01)
    result = sample_size(design, sims=100, seed=1, n_max=200)
    assert result.n is None and result.n_high is None
    assert format_power(result).splitlines()[-1] == (
        "power 0.8 not reached up to 200 patients of smaller group")


@pytest.mark.parametrize(("call", "message"), [
    (lambda: AuditDesign(0.5, 0.5, 1.0, 0.8, 0.9),
     "effect: expected a number in (0, tpr] (the smaller group's TPR is tpr - effect), got 0.9"),
    (lambda: AuditDesign(1.5, 0.5, 1.0, 0.8, 0.1),
     "prevalence_small: expected a number in [0, 1], got 1.5"),
    (lambda: AuditDesign(0.5, 0.5, 0.0, 0.8, 0.1), "ratio: expected a number > 0, got 0.0"),
    (lambda: sample_size(AuditDesign(0.5, 0.5, 1.0, 0.8, 0.1), power=1.0),
     "power: expected a number in (0, 1), got 1.0"),
    (lambda: simulate_power(0, AuditDesign(0.5, 0.5, 1.0, 0.8, 0.1)),
     "n_small: expected an integer >= 1, got 0"),
])
def test_errors_name_the_argument(call, message):
    with pytest.raises(SimsysError) as info:
        call()
    assert str(info.value) == message


def test_design_from_scenario_reads_shares_and_prevalences():
    """runner_label_bias.yaml: g ~ Bernoulli(0.5), the same risk model in both groups; the audit
    draws the unbiased test population. Tolerance: 5 SE of a share / prevalence over 100,000."""
    sc = load_scenario(DATA / "runner_label_bias.yaml")
    d = design_from_scenario(sc, effect=0.1, tpr=0.85, n=100_000, seed=3)
    se = math.sqrt(0.25 / 50_000)
    assert d.ratio == pytest.approx(1.0, abs=10 * se)
    assert d.prevalence_small == pytest.approx(d.prevalence_reference, abs=10 * se)
    assert set(d.labels) == {"g=0", "g=1"} and d.tpr == 0.85 and d.effect == 0.1
    assert design_from_scenario(sc, effect=0.1, group="g=0", n=10_000).labels == ("g=0", "g=1")
    with pytest.raises(SimsysError) as info:
        design_from_scenario(sc, effect=0.1, group="g=7", n=1000)
    assert str(info.value) == "group: unknown group 'g=7'; groups: g=0, g=1"


def test_design_uses_the_reference_group_and_the_smallest_other_group():
    sc = load_scenario(Path(__file__).parents[1] / "scenarios" / "melanoma.yaml")
    d = design_from_scenario(sc, effect=0.1, n=50_000, seed=1)
    assert d.labels == ("skin_tone=dark", "skin_tone=light")  # reference_group: light
    assert d.prevalence_small < d.prevalence_reference


def test_power_command():
    result = CliRunner().invoke(main, ["power", str(DATA / "runner_label_bias.yaml"), "--effect", "0.15",
                                       "--sims", "200", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == (
        "audit: two-sided pooled two-proportion z-test of the TPR, g=1 vs g=0, alpha 0.05")
    assert "answer: about " in result.output
    bad = CliRunner().invoke(main, ["power", str(DATA / "runner_label_bias.yaml"), "--effect", "0.9"])
    assert bad.exit_code == 1
    assert bad.stderr.strip() == (
        "error: effect: expected a number in (0, tpr] (the smaller group's TPR is tpr - effect), got 0.9")
    missing = CliRunner().invoke(main, ["power", str(DATA / "runner_label_bias.yaml")])
    assert missing.exit_code == 2 and "Missing option '--effect'" in missing.output
