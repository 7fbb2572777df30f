"""A seeded scenario fuzzer: every command either succeeds or fails with one clean line.

Each case mutates one of the shipped scenarios (``scenarios/*.yaml``, ``tests/data/*.yaml``) a few
times -- deleting keys, changing types, swapping numbers for text, NaN, huge or negative values,
renaming nodes, inserting Unicode, newlines and very long names, duplicating keys, adding anchors,
breaking formulas, adding cycles -- and runs ``validate``, ``explain``, ``graph``, ``sample`` and a
tiny ``run`` on it through click's CliRunner. Every command must exit 0, or exit 1 with exactly one
line on stderr that starts with ``error: `` and no traceback (warnings, the compile notice and
``run``'s progress bar may precede it); it must not hang (a per-case alarm, and faulthandler as the
backstop for a hang outside Python); and it must leave no partial or hidden file behind, nor the
output of a command that failed. ``run`` gets the same scenario shrunk (a few hundred patients, one
replicate, at most two fast models, one point of each sweep), so that a case takes a fraction of a
second; 400 cases take about a minute on a quiet 2-core machine. Everything is derived from
``random.Random(case number)``, so a failing case is reproduced by its number alone::

    python tests/test_fuzz_scenarios.py 137         # run case 137 and print what each command did
"""

from __future__ import annotations

import copy
import faulthandler
import math
import random
import re
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from simsys.cli import main

ROOT = Path(__file__).parent.parent
SHIPPED = sorted((ROOT / "scenarios").glob("*.yaml"))
SEEDS = SHIPPED + sorted((Path(__file__).parent / "data").glob("*.yaml"))
N_CASES = 400
CASE_SECONDS = 60  # a case is a few tenths of a second; a hang is what this catches
RUN_N = 300  # patients of every population (and of the test and validation cohorts) for `run`

WEIRD_NAMES = ["", "x\n", "age\n", "\U0001d41a\U0001d420\U0001d41e", "a" * 5000, "_hidden", "lambda",
               "x_observed", "../up", "a/b", "with space", "patient_id", "exp", "1abc", "nul\x00",
               "caf\u00e9", "\u202eevil", "CON", "x" * 64, "x" * 65]
WEIRD_NUMBERS = [math.nan, math.inf, -math.inf, 1e308, -1e308, 1e-320, 10**30, -(10**30), -1, 0,
                 0.5, 2, 257, 1e19, True, "abc", "", None, [], {}, "1e999", "10**400", "nan"]
WEIRD_FORMULAS = ["(", "x +", "__import__('os').system('true')", "age.__class__", "foo(1)",
                  "1/0", "log(-1)", "sqrt(-1) + 1", "exp(1000)", "(" * 80 + "1" + ")" * 80,
                  " + ".join(["1"] * 1500), "1 if 1 else 2", "'text'", "[1, 2]", "1e999",
                  "\U0001d41a\U0001d420\U0001d41e + 1", "x\n+ 1", "nan", "0/0", "2 ** 2000", "-1",
                  "where(1, 2)", "min(1)", "lambda: 1", "True", "not", "\t1"]


# =====================================================================================================
# mutations
# =====================================================================================================
def _paths(data, prefix=()):
    """Every (path, value) of a nested structure of dicts and lists."""
    out = [(prefix, data)]
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, (*prefix, i))
    return out


def _get(data, path):
    for k in path:
        data = data[k]
    return data


def _set(data, path, value):
    _get(data, path[:-1])[path[-1]] = value


def _delete_key(rng, d):
    paths = [p for p, _ in _paths(d) if p and isinstance(_get(d, p[:-1]), dict)]
    if paths:
        p = rng.choice(paths)
        del _get(d, p[:-1])[p[-1]]


def _change_value(rng, d):
    paths = [p for p, _ in _paths(d) if p]
    if paths:
        _set(d, rng.choice(paths), copy.deepcopy(rng.choice(WEIRD_NUMBERS)))


def _change_number(rng, d):
    paths = [p for p, v in _paths(d) if p and isinstance(v, int | float) and not isinstance(v, bool)]
    if paths:
        p = rng.choice(paths)
        v = _get(d, p)
        _set(d, p, rng.choice([-v, v * 1e6, v + 0.5, -1, 0, 1e12, math.nan, str(v), [v], {"v": v}]))


def _break_formula(rng, d):
    paths = [p for p, v in _paths(d) if p and isinstance(v, str)]
    if paths:
        p = rng.choice(paths)
        v = _get(d, p)
        _set(d, p, rng.choice([rng.choice(WEIRD_FORMULAS), v + " +", v + " * " + rng.choice(WEIRD_FORMULAS),
                               v[: len(v) // 2], v.replace(" ", "\n"), "(" + v]))


def _node_names(d):
    nodes = d.get("nodes")
    return list(nodes) if isinstance(nodes, dict) else []


def _rename_node(rng, d):
    names = _node_names(d)
    if names:
        old = rng.choice(names)
        new = rng.choice([*WEIRD_NAMES, old + "2", names[0]])
        d["nodes"] = {(new if k == old else k): v for k, v in d["nodes"].items()}


def _weird_key(rng, d):
    """A weird name where names go: a node, a param, a population, a bias name, a category."""
    where = rng.choice(["nodes", "params", "populations", "bias", "category", "name"])
    name = rng.choice(WEIRD_NAMES)
    if where == "nodes" and isinstance(d.get("nodes"), dict):
        d["nodes"][name] = {"kind": "normal", "mean": 0, "sd": 1}
    elif where == "params" and isinstance(d.get("params"), dict):
        d["params"][name] = 1.0
    elif where == "populations" and isinstance(d.get("populations"), dict):
        d["populations"][name] = {"n": 50}
    elif where == "bias" and isinstance(d.get("biases"), list) and d["biases"]:
        if isinstance(d["biases"][0], dict):
            d["biases"][0]["name"] = name
    elif where == "category" and isinstance(d.get("nodes"), dict):
        for spec in d["nodes"].values():
            if isinstance(spec, dict) and isinstance(spec.get("categories"), list) and spec["categories"]:
                spec["categories"][0] = name
                break
    else:
        d["name"] = name


def _add_cycle(rng, d):
    names = _node_names(d)
    if len(names) >= 2:
        a, b = rng.sample(names, 2)
        for n, other in ((a, b), (b, a)):
            spec = d["nodes"][n]
            if isinstance(spec, dict):
                d["nodes"][n] = {"kind": "deterministic", "value": f"{other} + 1"}


def _many_categories(rng, d):
    if isinstance(d.get("nodes"), dict):
        k = rng.choice([2, 255, 256, 257, 300])
        d["nodes"]["many"] = {"kind": "categorical", "categories": [f"c{i}" for i in range(k)],
                              "probs": [1] * k}


def _huge_weights(rng, d):
    names = _node_names(d)
    if names:
        x = rng.choice(names)
        d["nodes"]["weird"] = rng.choice([
            {"kind": "categorical", "categories": ["a", "b"], "probs": [1e308, 1e308]},
            {"kind": "categorical", "categories": ["a", "b"], "probs": [f"{x} - 1", 1]},
            {"kind": "categorical", "categories": ["a", "b"], "logits": [2000, f"log({x})"]},
            {"kind": "bernoulli", "p": f"sqrt({x})"},
            {"kind": "bernoulli", "logit": f"log({x}) * 1e308"},
            {"kind": "poisson", "rate": f"exp({x} * 100)"},
            {"kind": "poisson", "rate": f"{x}"},
            {"kind": "deterministic", "value": f"{x} / 0"},
        ])


def _intervene(rng, d):
    names = _node_names(d)
    pops = d.get("populations")
    if names and isinstance(pops, dict) and pops:
        pop = pops[rng.choice(list(pops))]
        if isinstance(pop, dict):
            pop["do"] = {rng.choice(names): rng.choice([0, 1, 0.5, 7, -1, "1 + 1", rng.choice(names)])}


def _rename_everywhere(rng, d):
    """Rename a node and every use of it (in formulas, roles, biases, sweeps): often still valid."""
    names = _node_names(d)
    if not names:
        return
    old = rng.choice(names)
    new = rng.choice(["renamed", "renamed_" + old, "r" * 64, old + "\n", "\U0001d41a" + old, "if"])
    pattern = re.compile(rf"\b{re.escape(old)}\b")

    def walk(x):
        if isinstance(x, dict):
            return {(new if k == old else k): walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, str):
            return new if x == old else pattern.sub(new, x)
        return x

    d.update(walk(d))


def _tweak_number(rng, d):
    """Scale a number a little (usually still valid): other values, same structure."""
    paths = [p for p, v in _paths(d) if p and isinstance(v, float)]
    if paths:
        p = rng.choice(paths)
        _set(d, p, _get(d, p) * rng.choice([0.0, 0.5, 0.9, 1.1, 2.0]))


def _sweep(rng, d):
    """Sweep something odd (a run-side check: sweep paths and values)."""
    exp = d.get("experiment")
    if not isinstance(exp, dict):
        exp = d["experiment"] = {}
    params = list(d.get("params") or {}) if isinstance(d.get("params"), dict) else []
    key = rng.choice([f"params.{params[0]}" if params else "params.nope", "biases[0].keep", "nodes",
                      "populations.train.n", "seed", "a..b", "nodes.x.kind"])
    values = rng.choice([[0.1, 0.5], [0.3, "0.5"], [math.nan], [], ["abc"], [1e308], [-1]])
    exp["sweep"] = {"grid": {key: values}}


def _roles(rng, d):
    """Point a role at another node, at a list, at a duplicate, or at nothing."""
    names = _node_names(d)
    roles = d.get("roles")
    if not names or not isinstance(roles, dict):
        return
    key = rng.choice(["group", "target", "features", "reference_group"])
    n = rng.choice(names)
    roles[key] = rng.choice([n, [n, n], [n], [], {n: 1}, {n: "nope"}, {n: 2.5}, "nope", roles.get("target")])


def _selector(rng, d):
    """A bias's group selector with odd nodes and values."""
    names = _node_names(d)
    biases = d.get("biases")
    if names and isinstance(biases, list) and biases and isinstance(biases[0], dict):
        b = rng.choice([b for b in biases if isinstance(b, dict)] or [biases[0]])
        b["group"] = {rng.choice(names): rng.choice([0, 1, 2, -1, 1.0, 0.5, "x", "", None, True, 255, 256])}


def _bias_formula(rng, d):
    """A bias field as a formula of nodes (per-patient strengths), sometimes out of range."""
    names = _node_names(d)
    biases = d.get("biases")
    if names and isinstance(biases, list) and biases and isinstance(biases[0], dict):
        b = rng.choice([b for b in biases if isinstance(b, dict)] or [biases[0]])
        x = rng.choice(names)
        field = rng.choice(["keep", "keep_positive", "false_negative_rate", "rate", "noise_sd", "scale",
                            "offset", "node", "label", "feature", "target", "populations"])
        b[field] = rng.choice([f"{x} / 10", f"log({x})", x, f"{x} > 0", "nope", ["train", "nope"], 1.5])


def _scenario_name(rng, d):
    d["name"] = rng.choice([*WEIRD_NAMES, "ok_name", "x" * 64])


def _duplicate_list_item(rng, d):
    paths = [p for p, v in _paths(d) if isinstance(v, list) and v]
    if paths:
        v = _get(d, rng.choice(paths))
        v.append(copy.deepcopy(rng.choice(v)))


DATA_MUTATIONS = [_delete_key, _change_value, _change_number, _break_formula, _rename_node, _weird_key,
                  _add_cycle, _many_categories, _huge_weights, _intervene, _duplicate_list_item,
                  _rename_everywhere, _tweak_number, _tweak_number, _huge_weights, _sweep, _roles,
                  _selector, _bias_formula, _bias_formula, _scenario_name]


def _text_mutation(rng, text: str) -> str:
    lines = text.splitlines(keepends=True)
    kind = rng.randrange(8)
    i = rng.randrange(max(1, len(lines)))
    if kind == 0 and lines:  # a duplicate key
        return "".join([*lines[:i + 1], lines[i], *lines[i + 1:]])
    if kind == 1:  # an anchor and an alias
        return text + "extra: &a [1, 2]\nmore: *a\n"
    if kind == 2:  # truncated
        return text[: rng.randrange(max(1, len(text)))]
    if kind == 3:  # control characters and odd Unicode
        pos = rng.randrange(max(1, len(text)))
        return text[:pos] + rng.choice(["\x00", "\x07", "\ufeff", "\u2028", "\t", "\ud7ff", "\U0001f600"]) + text[pos:]
    if kind == 4:  # a tab indentation
        return text.replace("  ", "\t", 1)
    if kind == 5:  # a YAML tag
        return text + rng.choice(["x: !!python/object/apply:os.system ['true']\n", "x: !!binary aGk=\n",
                                  "x: !!set {a, b}\n", "x: !custom 1\n"])
    if kind == 6:  # deep nesting
        return text + "deep: " + "[" * 200 + "]" * 200 + "\n"
    return text + "name: other\n"  # a duplicate top-level key


def make_case(case: int) -> tuple[str, str, str]:
    """(seed file name, mutated YAML text, the same made tiny for ``run``) of case ``case``."""
    rng = random.Random(case)
    # every seed in turn first; then mostly the shipped scenarios (valid, so that mutations reach
    # sampling and running), sometimes the test files (many are invalid on purpose)
    if case < len(SEEDS):
        seed = SEEDS[case]
    elif rng.random() < 0.7:
        seed = rng.choice(SHIPPED)
    else:
        seed = rng.choice(SEEDS)
    text = seed.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    run_text = text
    mutated = False
    if isinstance(data, dict):
        if rng.random() < 0.8:
            for _ in range(rng.choice([1, 1, 1, 1, 2, 2, 3])):
                rng.choice(DATA_MUTATIONS)(rng, data)
            text = yaml.safe_dump(data, sort_keys=False, allow_unicode=rng.random() < 0.5, width=10**6)
            mutated = True
        run_text = yaml.safe_dump(shrink_for_run(data), sort_keys=False, allow_unicode=True, width=10**6)
    if not mutated or rng.random() < 0.15:
        text_seed = rng.random()  # the same text mutation for both texts
        text = _text_mutation(random.Random(text_seed), text)
        run_text = _text_mutation(random.Random(text_seed), run_text)
    return seed.name, text, run_text


def shrink_for_run(data: dict) -> dict:
    """The same scenario with every population, the cohorts and the experiment made tiny."""
    d = copy.deepcopy(data)
    pops = d.get("populations")
    if isinstance(pops, dict):  # (a huge n is another test's business: memory, not input)
        for pop in pops.values():
            n = pop.get("n") if isinstance(pop, dict) else None
            if isinstance(n, int | float) and not isinstance(n, bool) and not n <= RUN_N:
                pop["n"] = RUN_N
    exp = d.get("experiment")
    if exp is None:
        exp = d["experiment"] = {}
    if isinstance(exp, dict):
        exp.update(test_n=RUN_N, validation_n=RUN_N // 2, replicates=1, bootstrap=0)
        models = exp.get("models")
        if isinstance(models, list):  # at most two models, none of the slow ones (minutes per case)
            fast = [m for m in models if "fairlearn" not in str(m)][:2]
            for m in fast:
                if isinstance(m, dict) and m.get("model") == "gradient_boosting":
                    params = m.get("params")
                    m["params"] = {**(params if isinstance(params, dict) else {}), "max_iter": 10}
            exp["models"] = fast or [{"name": "logreg", "model": "logistic_regression"}]
        else:
            exp.setdefault("models", [{"name": "logreg", "model": "logistic_regression"}])
        sweep = exp.get("sweep")
        if isinstance(sweep, dict):
            grid = sweep.get("grid")
            if isinstance(grid, dict):
                sweep["grid"] = {k: (v[:1] if isinstance(v, list) else v) for k, v in list(grid.items())[:2]}
            if isinstance(sweep.get("points"), list):
                sweep["points"] = sweep["points"][:1]
    return d


# =====================================================================================================
# running a case
# =====================================================================================================
class CaseTimeout(Exception):
    pass


def _leftovers(folder: Path) -> list[str]:
    """Partial or hidden files anywhere under ``folder``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and (p.name.endswith((".part", ".tmp", "~"))
                                      or (p.name.startswith(".") and "lock" not in p.name)))


def check_result(label: str, result, folder: Path, before: set[Path], outputs: list[Path]) -> list[str]:
    """Problems with one command's result (empty when it behaved)."""
    problems = []
    err = result.stderr
    out = result.stdout
    if result.exit_code == 0:
        pass
    elif result.exit_code == 1 and isinstance(result.exception, SystemExit | type(None)):
        lines = err.splitlines()
        error_lines = [ln for ln in lines if ln.startswith("error: ")]
        if len(error_lines) != 1 or not err.endswith("\n") or lines[-1] != error_lines[0]:
            problems.append(f"{label}: exit 1 without exactly one final 'error: ' line: {err[-500:]!r}")
        elif any(not (ln.startswith(("warning: ", "simsys: ", "cells: ")) or ln == error_lines[0])
                 for ln in lines):  # (warnings, the compile notice and run's progress bar may come first)
            problems.append(f"{label}: exit 1 with other lines on stderr: {err[-500:]!r}")
        created = [p for p in folder.rglob("*") if p not in before and p.is_file()]
        bad = [str(p.relative_to(folder)) for p in created if p in outputs]
        if bad:
            problems.append(f"{label}: failed but left {bad}")
    else:
        exc = result.exception
        import traceback

        tb = "".join(traceback.format_exception(exc)) if exc is not None and not isinstance(exc, SystemExit) else ""
        problems.append(f"{label}: exit {result.exit_code}, {type(exc).__name__}: {exc}\n{tb[-3000:]}\n{err[-500:]}")
    if "Traceback" in out + err:
        problems.append(f"{label}: traceback printed: {(out + err)[-1500:]}")
    left = _leftovers(folder)
    if left:
        problems.append(f"{label}: partial or hidden files left: {left}")
    return problems


def run_case(case: int, folder: Path, verbose: bool = False) -> list[str]:
    """Run every command on case ``case`` inside ``folder``; return the problems found."""
    seed, text, run_text = make_case(case)
    scen = folder / "s.yaml"
    scen.write_text(text, encoding="utf-8")
    small = folder / "small.yaml"
    small.write_text(run_text, encoding="utf-8")
    commands = [
        ("validate", ["validate", scen], []),
        ("explain", ["explain", scen], []),
        ("graph", ["graph", scen, "-o", folder / "g.svg"], [folder / "g.svg"]),
        ("sample", ["sample", scen, "-n", "200", "-o", folder / "c.parquet"], [folder / "c.parquet"]),
    ]
    commands.append(("run", ["run", small, "--workers", "1", "--no-report", "--replicates", "1",
                             "--output-dir", folder / "out"], []))
    problems = []
    runner = CliRunner()
    for label, args, outputs in commands:
        before = set(folder.rglob("*"))
        t0 = time.perf_counter()
        result = runner.invoke(main, [str(a) for a in args])
        if verbose:
            print(f"  {label:<8} exit {result.exit_code} {time.perf_counter() - t0:6.2f} s "
                  f"{(result.stderr.strip().splitlines() or [''])[-1][:200]}")
        problems += [f"case {case} ({seed}): {p}" for p in check_result(label, result, folder, before, outputs)]
    return problems


def _alarm(signum, frame):
    raise CaseTimeout()


@pytest.mark.slow
def test_every_command_succeeds_or_fails_with_one_clean_line(tmp_path):
    problems: list[str] = []
    old = signal.signal(signal.SIGALRM, _alarm)
    t_start = time.perf_counter()
    try:
        for case in range(N_CASES):
            folder = tmp_path / f"case{case:03d}"
            folder.mkdir()
            # a hang in Python code raises CaseTimeout; one inside compiled code (where no Python
            # signal handler runs) ends the process with every thread's traceback instead
            faulthandler.dump_traceback_later(2 * CASE_SECONDS, exit=True)
            signal.alarm(CASE_SECONDS)
            try:
                problems += run_case(case, folder)
            except CaseTimeout:
                problems.append(f"case {case}: no result after {CASE_SECONDS} s (a hang)")
            finally:
                signal.alarm(0)
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, old)
    elapsed = time.perf_counter() - t_start
    print(f"{N_CASES} cases in {elapsed:.0f} s")
    assert not problems, f"{len(problems)} problems in {N_CASES} cases ({elapsed:.0f} s):\n" + "\n".join(problems[:20])


def test_the_mutations_are_reproducible_and_varied():
    assert [make_case(c)[1] for c in range(5)] == [make_case(c)[1] for c in range(5)]
    texts = {make_case(c)[1] for c in range(60)}
    assert len(texts) >= 55  # (a mutation may find nothing to act on)
    assert {make_case(c)[0] for c in range(len(SEEDS))} == {p.name for p in SEEDS}


if __name__ == "__main__":  # python tests/test_fuzz_scenarios.py CASE [CASE ...]
    import tempfile

    for arg in sys.argv[1:] or [str(c) for c in range(N_CASES)]:
        c = int(arg)
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            found = run_case(c, Path(tmp), verbose=len(sys.argv) > 1)
            print(f"case {c}: {make_case(c)[0]}: {len(found)} problems, {time.perf_counter() - t:.2f} s")
            for p in found:
                print("   ", p)
