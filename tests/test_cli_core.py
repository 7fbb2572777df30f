"""Tests of the ``simsys`` command's core commands (validate, schema, sample) with click's CliRunner:
exit codes, the exact one-line error on stderr (no traceback unless ``--debug``), and the files that
``sample`` writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

import simsys
from simsys.cli import main
from simsys.errors import ScenarioError

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent
MELANOMA = ROOT / "scenarios" / "melanoma.yaml"  # the flagship: may change, so tested generically
CORE = DATA / "core.yaml"  # a frozen 5-node melanoma scenario, for exact output
TINY = DATA / "tiny.yaml"


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


# =====================================================================================================
# validate
# =====================================================================================================
def test_validate_flagship_scenario_prints_every_node_parent_role_and_bias():
    r = run("validate", MELANOMA)
    assert r.exit_code == 0, r.output
    sc = simsys.load_scenario(MELANOMA)
    lines = r.stdout.splitlines()
    assert lines[0] == (f"scenario {sc.name}: {len(sc.spec.nodes)} nodes, {len(sc.spec.biases)} "
                        f"biases, seed {sc.spec.seed}")
    node_lines = lines[2:2 + len(sc.order)]
    for node, line in zip(sc.order, node_lines):
        assert line.split()[:3] == [node, sc.spec.nodes[node].kind, "parents:"]
        assert " ".join(line.split()[3:]) == (", ".join(sc.parents[node]) or "-")
    roles = sc.spec.roles
    assert f"roles: group={roles.group} target={roles.target} features={', '.join(roles.features)}" in lines
    for i, b in enumerate(sc.spec.biases):
        assert any(line.startswith(f"  [{i}] ") and f": {b.type} " in line for line in lines), b.type
    assert lines[-1] == "ok"


def test_validate_prints_nodes_parents_roles_and_biases():
    r = run("validate", CORE)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == "scenario melanoma_core: 5 nodes, 2 biases, seed 20201124"
    assert lines[1] == "nodes (in causal order):"
    assert lines[2].split() == ["dark_skin", "bernoulli", "parents:", "-"]
    assert lines[5].split() == ["melanoma", "bernoulli", "parents:", "age,", "dark_skin,", "uv"]
    assert lines[6].split() == ["contrast", "normal", "parents:", "dark_skin,", "melanoma"]
    assert lines[7] == "roles: group=dark_skin target=melanoma features=age, uv, contrast"
    assert lines[8] == "biases:"
    assert lines[9] == '  [0] representation_0: representation {"group": {"dark_skin": 1}, "keep": 0.1}'
    assert lines[10].startswith('  [1] label_1: label {"group": {"dark_skin": 1}, "false_negative_rate": 0.3')
    assert lines[-1] == "ok"
    assert r.stderr == ""


@pytest.mark.parametrize(("name", "message"), [
    ("cycle.yaml", "nodes: the graph has a cycle: a -> b -> c -> a; a node cannot depend on itself"),
    ("malformed.yaml", "malformed YAML at line 2, column 38: expected ',' or ']', but got '}'"),
    ("bad_probability.yaml", "nodes.g.p: expected a value in [0, 1], got 1.5"),
    ("unknown_kind.yaml", "nodes.y: unknown kind 'gamma'; allowed: 'bernoulli', 'categorical', "
                          "'normal', 'lognormal', 'poisson', 'uniform', 'deterministic'"),
    ("missing_role.yaml", "roles.features[1]: names a missing node 'height'; nodes: g, y, x"),
    ("nope.yaml", "file not found"),
])
def test_validate_bad_file_exits_1_with_one_line_error_and_no_traceback(name, message):
    path = DATA / name
    r = run("validate", path)
    assert r.exit_code == 1
    assert r.stderr == f"error: {path}: {message}\n"
    assert r.stdout == ""
    assert "Traceback" not in r.output


def test_validate_debug_raises_with_traceback():
    r = run("--debug", "validate", DATA / "cycle.yaml")
    assert r.exit_code == 1
    assert isinstance(r.exception, ScenarioError)
    proc = subprocess.run([sys.executable, "-m", "simsys", "--debug", "validate", str(DATA / "cycle.yaml")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.rstrip().endswith("a -> b -> c -> a; a node cannot depend on itself")


def test_validate_warns_about_an_emptied_group_but_succeeds():
    r = run("validate", DATA / "empty_group.yaml")
    assert r.exit_code == 0
    f = DATA / "empty_group.yaml"
    assert r.stderr == (f"warning: simsys run would fail with the default experiment: {f}: experiment.test: "
                        "unknown population 'test'; defined: train\n"
                        f"warning: {f}: biases[0]: keeps no member of group "
                        "{'g': 1}: the group is empty in the biased data\n")


# =====================================================================================================
# schema
# =====================================================================================================
@pytest.fixture(scope="module")
def schema():
    r = run("schema")
    assert r.exit_code == 0
    s = json.loads(r.stdout)
    jsonschema.Draft202012Validator.check_schema(s)
    return s


@pytest.mark.parametrize("path", [MELANOMA, CORE, TINY], ids=["melanoma", "core", "tiny"])
def test_schema_accepts_valid_scenarios(schema, path):
    jsonschema.validate(yaml.safe_load(path.read_text()), schema)


@pytest.mark.parametrize("name", ["unknown_kind.yaml", "unknown_bias.yaml"])
def test_schema_rejects_unknown_kinds_and_bias_types(schema, name):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(yaml.safe_load((DATA / name).read_text()), schema)


def test_schema_rejects_unknown_keys(schema):
    data = yaml.safe_load(CORE.read_text())
    data["nodes"]["age"]["median"] = 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)


# =====================================================================================================
# sample
# =====================================================================================================
COLUMNS = ["patient_id", "group", "site", "age", "income", "visits", "score", "disease", "marker",
           "biopsy", "disease_observed", "marker_observed", "income_observed"]


@pytest.fixture(scope="module")
def expected():
    return simsys.sample(simsys.load_scenario(TINY), n=5000)


@pytest.mark.parametrize("ext", ["parquet", "csv"])
def test_sample_writes_the_cohort(tmp_path, expected, ext):
    out = tmp_path / f"cohort.{ext}"
    r = run("sample", TINY, "-n", 5000, "-o", out, "--chunk-size", 1000)
    assert r.exit_code == 0, r.output
    assert r.stderr.startswith(f"wrote {len(expected)} of 5000 patients to {out}")
    df = pd.read_parquet(out) if ext == "parquet" else pd.read_csv(out)
    assert list(df.columns) == COLUMNS
    assert 0 < len(df) < 5000  # representation and selection biases dropped some
    assert np.array_equal(df["patient_id"].to_numpy(), expected["patient_id"].to_numpy())
    for col in COLUMNS:
        if col == "site":
            assert df[col].astype(str).tolist() == expected[col].astype(str).tolist()
        else:
            assert np.array_equal(df[col].to_numpy(dtype=float), expected[col].to_numpy(dtype=float),
                                  equal_nan=True), col
    if ext == "parquet":
        assert isinstance(df["site"].dtype, pd.CategoricalDtype)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary file left behind


def test_sample_clean_and_seed_options(tmp_path):
    out = tmp_path / "clean.parquet"
    r = run("sample", TINY, "-n", 3000, "-o", out, "--clean", "--seed", 5, "--population", "test")
    assert r.exit_code == 0, r.output
    df = pd.read_parquet(out)
    assert len(df) == 3000
    want = simsys.sample(simsys.load_scenario(TINY), n=3000, seed=5, population="test", biased=False)
    assert np.array_equal(df["age"].to_numpy(), want["age"].to_numpy())


def test_sample_unknown_extension_exits_1_and_writes_nothing(tmp_path):
    out = tmp_path / "cohort.xlsx"
    r = run("sample", TINY, "-n", 100, "-o", out)
    assert r.exit_code == 1
    assert r.stderr == f"error: {out}: unknown output format '.xlsx'; allowed: .parquet, .csv\n"
    assert list(tmp_path.iterdir()) == []


def test_sample_unknown_population_exits_1(tmp_path):
    r = run("sample", TINY, "-n", 100, "-o", tmp_path / "x.csv", "--population", "site_b")
    assert r.exit_code == 1
    assert r.stderr == f"error: {TINY}: populations: unknown population 'site_b'; defined: train, test\n"


def test_sample_invalid_scenario_exits_1(tmp_path):
    r = run("sample", DATA / "negative_sd.yaml", "-n", 100, "-o", tmp_path / "x.csv")
    assert r.exit_code == 1
    assert r.stderr == (f"error: {DATA / 'negative_sd.yaml'}: nodes.x.sd: expected a value in "
                        "[0, inf], got -3\n")


def test_every_command_has_help_text():
    for name, cmd in main.commands.items():
        assert cmd.help and cmd.help.strip(), name
        assert run(name, "--help").exit_code == 0
