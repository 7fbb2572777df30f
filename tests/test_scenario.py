"""Tests of simsys.scenario (and the graph checks it runs): valid files load into typed specs; every
invalid one fails with a one-line ScenarioError naming the file, the key path, what was found and
what is allowed -- compared here as exact text."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

import simsys
from simsys import graph
from simsys.errors import GraphError, ScenarioError
from simsys.scenario import indicator_names, load_scenario

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent
MELANOMA = ROOT / "scenarios" / "melanoma.yaml"  # the flagship: may change, so tested generically
CORE = DATA / "core.yaml"  # a frozen 5-node melanoma scenario: the exact texts below refer to it
BASE = yaml.safe_load(CORE.read_text())
NODES = "dark_skin, age, uv, melanoma, contrast"
KINDS = "'bernoulli', 'categorical', 'normal', 'lognormal', 'poisson', 'uniform', 'deterministic'"
TYPES = "'representation', 'label', 'measurement', 'missingness', 'selection', 'proxy_label'"


def _error(data: dict, source: str = "m.yaml") -> str:
    with pytest.raises(ScenarioError) as info:
        simsys.from_dict(data, source=source)
    text = str(info.value)
    assert "\n" not in text
    return text


def _changed(edit) -> dict:
    d = copy.deepcopy(BASE)
    edit(d)
    return d


# =====================================================================================================
# valid scenarios
# =====================================================================================================
def test_flagship_melanoma_scenario_loads_cleanly():
    sc = load_scenario(MELANOMA)
    assert sc.warnings == ()
    assert set(sc.order) == set(sc.spec.nodes)
    position = {n: i for i, n in enumerate(sc.order)}
    assert all(position[p] < position[n] for n in sc.order for p in sc.parents[n])


def test_core_scenario_loads_with_inferred_parents_and_causal_order():
    sc = load_scenario(CORE)
    assert sc.name == "melanoma_core"
    assert sc.parents == {
        "dark_skin": (), "age": (), "uv": ("dark_skin",),
        "melanoma": ("age", "dark_skin", "uv"), "contrast": ("dark_skin", "melanoma"),
    }
    assert sc.order == ("dark_skin", "age", "uv", "melanoma", "contrast")
    assert sc.groups == ["dark_skin"]
    assert sc.warnings == ()
    assert sc.categories("dark_skin") == ["0", "1"]
    assert sc.formulas["nodes.dark_skin.p"].names() == {"dark_share"}  # a param is not a parent


def test_tiny_scenario_with_every_kind_and_bias_type_loads():
    sc = load_scenario(DATA / "tiny.yaml")
    assert {s.kind for s in sc.spec.nodes.values()} == {
        "bernoulli", "categorical", "normal", "lognormal", "poisson", "uniform", "deterministic"}
    assert [b.type for b in sc.spec.biases] == [
        "representation", "label", "measurement", "missingness", "selection"]
    # a category indicator (site_south) makes the categorical node a parent
    assert sc.parents["age"] == ("site",)
    assert indicator_names(sc.spec)["site_east"] == ("site", 2)
    assert sc.parents["biopsy"] == ("disease", "score")


def test_digest_identifies_the_resolved_scenario():
    a = simsys.from_dict(BASE)
    assert a.digest() == simsys.from_dict(copy.deepcopy(BASE)).digest()
    assert a.digest() != a.with_values({"params.dark_share": 0.5}).digest()


def test_with_values_replaces_a_value_and_rejects_a_path_naming_nothing():
    sc = simsys.from_dict(BASE, source="m.yaml")
    assert sc.with_values({"biases[0].keep": 0.5}).spec.biases[0].keep == 0.5
    with pytest.raises(ScenarioError) as info:
        sc.with_values({"biases[7].keep": 0.5})
    assert str(info.value) == "m.yaml: biases[7].keep: names nothing: there is no item [7] here"


def test_graph_topological_order_keeps_declaration_order_for_ties_and_names_a_cycle():
    parents = {"c": [], "a": ["c"], "b": []}
    assert graph.topological_order(parents) == ["c", "a", "b"]
    assert graph.descendants({"a": [], "b": ["a"], "c": ["b"], "d": []}, ["a"]) == {"b", "c"}
    with pytest.raises(GraphError) as info:
        graph.topological_order({"a": ["b"], "b": ["a"]})
    assert str(info.value) == "the graph has a cycle: a -> b -> a; a node cannot depend on itself"


# =====================================================================================================
# invalid files: exact messages
# =====================================================================================================
FILE_ERRORS = [
    ("malformed.yaml", "malformed YAML at line 2, column 38: expected ',' or ']', but got '}'"),
    ("unknown_kind.yaml", f"nodes.y: unknown kind 'gamma'; allowed: {KINDS}"),
    ("unknown_bias.yaml", f"biases[1]: unknown type 'labels'; allowed: {TYPES}"),
    ("forbidden.yaml", "nodes.y.logit: only calls of abs, clip, exp, log, logistic, max, min, sqrt, "
                       "where by name are allowed in \"__import__('os').system('echo hi')\""),
    ("cycle.yaml", "nodes: the graph has a cycle: a -> b -> c -> a; a node cannot depend on itself"),
    ("bad_probability.yaml", "nodes.g.p: expected a value in [0, 1], got 1.5"),
    ("negative_sd.yaml", "nodes.x.sd: expected a value in [0, inf], got -3"),
    ("missing_role.yaml", "roles.features[1]: names a missing node 'height'; nodes: g, y, x"),
    ("does_not_exist.yaml", "file not found"),
]


@pytest.mark.parametrize(("name", "message"), FILE_ERRORS, ids=[f[0] for f in FILE_ERRORS])
def test_invalid_file_gives_one_line_error_naming_file_and_key(name, message):
    path = DATA / name
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value) == f"{path}: {message}"


def test_a_yaml_list_is_not_a_scenario(tmp_path):
    p = tmp_path / "list.yaml"
    p.write_text("- 1\n- 2\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(p)
    assert str(info.value) == f"{p}: expected a mapping of scenario keys, got list"


def test_a_bias_emptying_a_group_is_a_warning_not_an_error():
    sc = load_scenario(DATA / "empty_group.yaml")
    assert sc.warnings == (f"{DATA / 'empty_group.yaml'}: biases[0]: keeps no member of group "
                           "{'g': 1}: the group is empty in the biased data",)
    df = simsys.sample(sc, n=2000, seed=1)  # and sampling does not crash: the group is just gone
    assert len(df) > 0 and (df["g"] == 0).all()


def test_blum_stangl_keeps_of_zero_and_a_param_valued_keep_of_zero_warn_too():
    def keep_zero_by_label(d):
        d["biases"][0] = {"type": "representation", "group": {"dark_skin": 1},
                          "keep_positive": 0, "keep_negative": "0 * dark_share"}
    assert len(simsys.from_dict(_changed(keep_zero_by_label)).warnings) == 1
    param_zero = _changed(lambda d: d["biases"][0].update(keep="dark_share - 0.3"))
    assert len(simsys.from_dict(param_zero).warnings) == 1
    only_positives = _changed(lambda d: d["biases"][0].update(keep=None, keep_positive=0))
    del only_positives["biases"][0]["keep"]
    assert simsys.from_dict(only_positives).warnings == ()  # negatives still kept


# =====================================================================================================
# invalid dicts: exact messages
# =====================================================================================================
def _skin(d):
    d["nodes"]["skin"] = {"kind": "categorical", "categories": ["light", "mid", "dark"],
                          "probs": [0.5, 0.3, 0.2]}


DICT_ERRORS = [
    ("unknown node key", lambda d: d["nodes"]["age"].update(median=3),
     "nodes.age.median: unknown key; allowed: description, unit, kind, mean, sd"),
    ("unknown top key", lambda d: d.update(bias=[]),
     "bias: unknown key; allowed: name, description, seed, params, nodes, roles, biases, "
     "populations, experiment"),
    ("unknown bias key", lambda d: d["biases"][1].update(fnr=0.2),
     "biases[1].fnr: unknown key; allowed: name, description, populations, type, group, "
     "false_negative_rate, false_positive_rate, target"),
    ("missing kind", lambda d: d["nodes"]["age"].pop("kind"), "nodes.age: missing 'kind'"),
    ("undefined name", lambda d: d["nodes"]["uv"].update(mean="1 + sunshine"),
     "nodes.uv.mean: undefined name 'sunshine' in '1 + sunshine'; known names: age, contrast, "
     "contrast_gap, dark_share, dark_skin, melanoma"),
    ("attribute", lambda d: d["nodes"]["uv"].update(mean="age.__class__"),
     "nodes.uv.mean: attribute access not allowed in 'age.__class__'"),
    ("import", lambda d: d["nodes"]["uv"].update(mean="__import__('os')"),
     "nodes.uv.mean: function '__import__' is not allowed in \"__import__('os')\"; allowed: abs, "
     "clip, exp, log, logistic, max, min, sqrt, where"),
    ("self reference", lambda d: d["nodes"]["uv"].update(mean="uv + 1"),
     "nodes.uv.mean: undefined name 'uv' in 'uv + 1'; known names: age, contrast, contrast_gap, "
     "dark_share, dark_skin, melanoma"),
    ("cycle", lambda d: d["nodes"]["age"].update(mean="40 + contrast"),
     "nodes: the graph has a cycle: melanoma -> contrast -> age -> melanoma; a node cannot depend "
     "on itself"),
    ("p = 1.5", lambda d: d["nodes"]["dark_skin"].update(p=1.5),
     "nodes.dark_skin.p: expected a value in [0, 1], got 1.5"),
    ("param p out of range", lambda d: d["params"].update(dark_share=-0.2),
     "nodes.dark_skin.p: expected a value in [0, 1], got -0.2"),
    ("population param p out of range",
     lambda d: d["populations"]["test"].update(params={"dark_share": 1.25}),
     "nodes.dark_skin.p: expected a value in [0, 1], got 1.25 (with populations.test.params)"),
    ("keep 1.5", lambda d: d["biases"][0].update(keep=1.5),
     "biases[0].keep: expected a value in [0, 1], got 1.5"),
    ("negative sd", lambda d: d["nodes"]["age"].update(sd=-16),
     "nodes.age.sd: expected a value in [0, inf], got -16"),
    ("negative rate", lambda d: d["nodes"].update(k={"kind": "poisson", "rate": "-1"}),
     "nodes.k.rate: expected a value in [0, 1e+10], got -1"),
    ("target missing", lambda d: d["roles"].update(target="melanona"),
     f"roles.target: names a missing node 'melanona'; nodes: {NODES}"),
    ("group missing", lambda d: d["roles"].update(group="skin"),
     f"roles.group: names a missing node 'skin'; nodes: {NODES}"),
    ("group continuous", lambda d: d["roles"].update(group="age"),
     "roles.group: group 'age' must be a bernoulli or categorical node, got kind 'normal'"),
    ("target continuous", lambda d: d["roles"].update(target="age", features=["uv"]),
     "roles.target: target 'age' must be 0/1 (a bernoulli node or a comparison)"),
    ("bias feature missing",
     lambda d: d["biases"].append({"type": "measurement", "feature": "thickness", "offset": 1}),
     f"biases[2].feature: names a missing node 'thickness'; nodes: {NODES}"),
    ("bias group node missing", lambda d: d["biases"][1].update(group={"skin": 1}),
     f"biases[1].group.skin: names a missing node 'skin'; nodes: {NODES}"),
    ("unknown category", lambda d: (_skin(d), d["biases"][1].update(group={"skin": "purple"})),
     "biases[1].group.skin: unknown category 'purple'; allowed: light, mid, dark"),
    ("category code out of range", lambda d: (_skin(d), d["biases"][1].update(group={"skin": 3})),
     "biases[1].group.skin: category code 3 out of range 0..2"),
    ("0/1 selector", lambda d: d["biases"][1].update(group={"dark_skin": 2}),
     "biases[1].group.dark_skin: expected 0 or 1 for a 0/1 node, got 2"),
    ("unknown population", lambda d: d["biases"][1].update(populations=["site_b"]),
     "biases[1].populations[0]: unknown population 'site_b'; known: train, test"),
    ("non-binary proxy", lambda d: d["biases"].append({"type": "proxy_label", "label": "age"}),
     "biases[2].label: proxy label 'age' must be 0/1 (a bernoulli node or a comparison such as "
     "'cost > 5000')"),
    ("reserved underscore", lambda d: d["nodes"].update(_keep={"kind": "normal"}),
     "nodes._keep: names starting with '_' are reserved for internal steps, got '_keep'"),
    ("reserved suffix", lambda d: d["nodes"].update(age_observed={"kind": "normal"}),
     "nodes.age_observed: names ending in '_observed' are reserved for observed values"),
    ("param is a node", lambda d: d["params"].update(age=3),
     "params.age: 'age' is both a param and a node; rename one"),
    ("do closes a cycle", lambda d: d["populations"]["test"].update(do={"uv": "melanoma + 1"}),
     "populations.test.do: the graph has a cycle: melanoma -> uv -> melanoma; a node cannot "
     "depend on itself"),
    ("zero weights", lambda d: d["nodes"].update(
        c={"kind": "categorical", "categories": ["a", "b"], "probs": [0, "0 * dark_share"]}),
     "nodes.c.probs: expected at least one positive weight, got all 0"),
    ("negative weight", lambda d: d["nodes"].update(
        c={"kind": "categorical", "categories": ["a", "b"], "probs": [1, -1]}),
     "nodes.c.probs[1]: expected a value in [0, inf], got -1"),
    ("wrong number of weights", lambda d: d["nodes"].update(
        c={"kind": "categorical", "categories": ["a", "b"], "probs": [1]}),
     "nodes.c: 1 weights for 2 categories; give one per category, got dict"),
    ("p and logit", lambda d: d["nodes"]["dark_skin"].update(logit=0),
     "nodes.dark_skin: give exactly one of 'p' and 'logit', got dict"),
]


@pytest.mark.parametrize(("label", "edit", "message"), DICT_ERRORS, ids=[e[0] for e in DICT_ERRORS])
def test_invalid_scenario_gives_exact_one_line_error(label, edit, message):
    assert _error(_changed(edit)) == f"m.yaml: {message}"


def test_an_internal_name_as_node_is_rejected_not_silently_garbage():
    # regression: a node named like an internal step (_keep) shared its register with that step
    # and came out as uninitialised memory
    d = _changed(lambda d: d["nodes"].update(_u_0={"kind": "normal", "mean": 5}))
    assert "reserved for internal steps" in _error(d)


def test_error_names_the_source_given():
    d = _changed(lambda d: d["nodes"]["age"].update(sd=-1))
    assert _error(d, source="<scenario>").startswith("<scenario>: nodes.age.sd: ")


def test_uniform_with_high_below_low_is_an_error():
    def edit(d):
        d["nodes"]["x_u"] = {"kind": "uniform", "low": 2, "high": 1}

    assert _error(_changed(edit)) == "m.yaml: nodes.x_u.high: expected high >= low (2), got 1"


@pytest.mark.parametrize("seed", range(40))
def test_topological_order_equals_networkx_lexicographical_sort(seed):
    """The plain Kahn sort (no networkx import at start-up) is networkx's order, tie for tie."""
    import random

    import networkx as nx

    r = random.Random(seed)
    names = [f"n{i}" for i in range(r.randint(1, 25))]
    causal = names[:]
    r.shuffle(causal)
    parents = {c: [p for p in causal[:i] if r.random() < 0.25] for i, c in enumerate(causal)}
    declared = {k: parents[k] for k in names}
    rank = {k: i for i, k in enumerate(declared)}
    expected = list(nx.lexicographical_topological_sort(graph.build_graph(declared), key=rank.__getitem__))
    assert graph.topological_order(declared) == expected
