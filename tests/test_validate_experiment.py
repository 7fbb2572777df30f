"""``validate``, ``explain`` and ``graph`` check the whole experiment block as ``run`` does."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from simsys.cli import main

DATA = Path(__file__).parent / "data"

TYPO = """\
name: typo
params: {fnr_female: 0.1}
nodes:
  sex: {kind: bernoulli, p: 0.5}
  x: {kind: normal}
  y: {kind: bernoulli, logit: "x"}
roles: {group: sex, target: y, features: [x]}
biases:
  - {type: label, group: {sex: 1}, false_negative_rate: fnr_female}
experiment:
  sweep: {grid: {params.fnr_femal: [0.0, 0.3]}}
"""


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("command", [("validate",), ("explain",), ("graph", "-o", "g.svg")])
def test_a_misspelt_sweep_param_is_an_error_with_a_suggestion(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    f = tmp_path / "typo.yaml"
    f.write_text(TYPO)
    r = _invoke(command[0], f, *command[1:])
    assert r.exit_code == 1
    assert r.stderr == (f"error: {f}: experiment.sweep (params.fnr_femal): names nothing: no key "
                        "'fnr_femal' here; did you mean 'fnr_female'?\n")
    assert not (tmp_path / "g.svg").exists()


def test_a_sweep_cannot_add_a_param_nothing_uses(tmp_path):
    f = tmp_path / "new.yaml"
    f.write_text(TYPO.replace("params.fnr_femal", "params.unused_knob"))
    r = _invoke("validate", f)
    assert r.exit_code == 1
    assert "params.unused_knob): names nothing: no key 'unused_knob' here; keys here: fnr_female" in r.stderr


def test_validate_refuses_a_model_that_needs_allow_import_and_accepts_it_with_the_flag():
    f = DATA / "plugins" / "methods_plugin.yaml"
    r = _invoke("validate", f)
    assert r.exit_code == 1
    assert "runs its code; pass --allow-import" in r.stderr and r.stderr.startswith("error: ")
    assert _invoke("validate", f, "--allow-import").exit_code == 0


def test_validate_refuses_an_unknown_model():
    r = _invoke("validate", DATA / "runner_bad_model.yaml")
    assert r.exit_code == 1 and r.stderr.startswith("error: ") and "experiment.models[" in r.stderr
    assert len(r.stderr.splitlines()) == 1
