"""Tests of ``simsys explain``'s one-screen version (``simsys.explain.brief``): formulas evaluated
per group (exactly where they depend only on params and the group, else averaged over a simulated
sample that a slow pandas twin reproduces), one screen for the flagship, and ``--full`` for the
full walk."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import simsys
from simsys import explain as X
from simsys import expressions as ex
from simsys.cli import main

ROOT = Path(__file__).parent.parent
DATA = Path(__file__).parent / "data"
MELANOMA = ROOT / "scenarios" / "melanoma.yaml"
TINY = DATA / "tiny.yaml"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def melanoma():
    return simsys.load_scenario(MELANOMA)


@pytest.fixture(scope="module")
def melanoma_brief(melanoma):
    return X.brief(melanoma)


def test_the_flagship_fits_one_screen(melanoma_brief):
    lines = melanoma_brief.splitlines()
    assert len(lines) <= 40
    assert max(len(line) for line in lines) <= X.WIDTH


def test_each_bias_is_one_sentence_with_its_numbers_per_group(melanoma_brief):
    text = flat(melanoma_brief)
    # formulas of params and the group only are evaluated exactly (no "≈")
    assert ("1. under_representation (under-representation): kept in the training data: 100% light, "
            "50% medium, 30% dark.") in text
    assert ("3. missed_melanomas (label bias): a true melanoma = 1 is recorded as 0 (missed): 5% light, "
            "10% medium, 20% dark.") in text
    # the selection depends on suspicion, not only on the group: an average, marked as one
    assert re.search(r"2\. biopsy_selection \(selection\): only patients with biopsied = 1 enter the "
                     r"training data: ≈\d+% light, ≈\d+% medium, ≈\d+% dark\.", text)


def test_no_raw_formula_is_printed(melanoma_brief):
    for raw in ("where(", "log(", "skin_tone_dark", "label_fnr_dark"):
        assert raw not in melanoma_brief


def test_who_the_patients_are_and_what_the_model_sees(melanoma, melanoma_brief):
    text = flat(melanoma_brief)
    shares = np.array([0.484, 0.381, 0.136]) / (0.484 + 0.381 + 0.136)
    shown = ", ".join(f"{X.percent(s)} {c}" for s, c in zip(shares, ("light", "medium", "dark")))
    assert f"By skin_tone: {shown}." in text
    assert shown == "48% light, 38% medium, 14% dark"
    assert "By skin_tone: 32% light, 37% medium, 32% dark." in text  # the test population's shares
    assert ("What the model sees: skin_pigment, age, contrast, asymmetry, diameter, evolution and acral. "
            "It learns melanoma_observed, the recorded melanoma; it is scored against the true melanoma.") in text


def test_settings_change_the_numbers(melanoma):
    sc = melanoma.with_values({"params.label_fnr_dark": 0.4, "params.keep_dark": 0.03})
    text = flat(X.brief(sc))
    assert "recorded as 0 (missed): 5% light, 10% medium, 40% dark." in text
    assert "kept in the training data: 100% light, 50% medium, 3% dark." in text


def test_measurement_missingness_and_label_biases_of_the_tiny_scenario():
    text = flat(X.brief(simsys.load_scenario(TINY)))
    assert ("3. measurement_2 (measurement bias): marker is recorded as the true value plus 0 group=0, "
            "-0.3 group=1; plus noise with sd 0 group=0, 0.1 group=1.") in text
    assert "4. missingness_3 (missing values): income is missing for 10% in every group." in text
    assert "2. label_1 (label bias): a true disease = 1 is recorded as 0 (missed): 0% group=0, 20% group=1." in text
    assert "1. representation_0 (under-representation): kept in the training data: 100% group=0, 50% group=1." in text


def test_estimates_equal_a_pandas_twin_of_the_same_sample():
    """The ≈ values are group means over the clean population's first n patients (the scenario's
    seed): a DataFrame from simsys.sample gives the same numbers."""
    sc = simsys.load_scenario(MELANOMA)
    n = 5000
    facts = X.GroupFacts(sc, "train", n=n)
    df = simsys.sample(sc, n, population="train", biased=False)
    got, exact = facts.values(ex.call("!=", ex.name("biopsied"), ex.const(0.0)))
    assert not exact
    want = df.groupby("skin_tone", observed=False)["biopsied"].mean().to_numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    prev, exact = facts.prevalence("melanoma")  # depends on age: estimated
    assert not exact
    np.testing.assert_allclose(prev, df.groupby("skin_tone", observed=False)["melanoma"].mean(), atol=1e-12)


def test_a_prevalence_of_params_and_group_only_is_exact():
    sc = simsys.from_dict({
        "name": "exact", "params": {"p0": 0.1, "p1": 0.3},
        "nodes": {"g": {"kind": "bernoulli", "p": 0.25},
                  "y": {"kind": "bernoulli", "p": "where(g, p1, p0)"},
                  "x": {"kind": "normal", "mean": "y"}},
        "roles": {"group": "g", "target": "y", "features": ["x"]},
        "biases": [{"type": "label", "group": {"g": 1}, "false_positive_rate": 0.02}]})
    text = flat(X.brief(sc))
    assert "By g: 75% g=0, 25% g=1. The truth, y = 1: 10% g=0, 30% g=1." in text
    assert "a true y = 0 is recorded as 1 (false alarm): 0% g=0, 2% g=1." in text
    assert "≈ marks" in text  # the footnote is always there, so the mark is always explained


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_library_scenario_gets_a_short_explanation(path):
    result = run("explain", path)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    sc = simsys.load_scenario(path)
    assert len(lines) <= 40, path
    for i in range(len(sc.spec.biases)):
        assert re.search(rf"^{i + 1}\. {re.escape(X.bias_lines(sc)[i][:20])}", result.stdout, re.M)
    assert "where(" not in result.stdout


def test_full_gives_the_full_walk(melanoma):
    result = run("explain", "--full", MELANOMA)
    assert result.exit_code == 0, result.output
    assert result.stdout == X.explain(melanoma)
    assert len(result.stdout.splitlines()) > 100  # the walk, every formula included
    short = run("explain", MELANOMA)
    assert short.stdout == X.brief(melanoma)


def test_percent_reads_as_a_person_writes_it():
    assert [X.percent(v) for v in (0.05, 0.025, 0.4835, 0.0033, 1.0, 0.0, 0.0995, 0.0994)] == \
        ["5%", "2.5%", "48%", "0.33%", "100%", "0%", "10%", "9.9%"]
