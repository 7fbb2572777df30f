"""The sampling kernel is compiled once: numbers, formulas and graph structure are data.

numba broadcasts a ``numba:compile`` event only when it really compiles (never on a cache load), so
counting those events while sampling shows whether a change of scenario forced a recompile.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from numba.core import event

import simsys
from simsys.scenario import from_dict

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "name": "tiny",
    "seed": 1,
    "params": {"a": 0.3},
    "nodes": {
        "g": {"kind": "bernoulli", "p": "a"},
        "x": {"kind": "normal", "mean": "g", "sd": 1},
        "y": {"kind": "bernoulli", "logit": "-1 + x"},
    },
    "roles": {"group": "g", "target": "y", "features": ["x"]},
    "populations": {"train": {"n": 1000, "biased": True}, "test": {"n": 1000}},
}


def _wide(n_nodes: int) -> dict:
    """A 60-node graph with every node kind, every bias type and every function of the language."""
    nodes = {"g": {"kind": "categorical", "categories": ["a", "b", "c"], "probs": [0.5, 0.3, 0.2]}}
    kinds = [
        lambda i: {"kind": "normal", "mean": f"0.1*v{i - 1} + g_b", "sd": f"1 + 0.1*abs(v{i - 1})"},
        lambda i: {"kind": "bernoulli", "logit": f"clip(v{i - 1}, -3, 3) - 0.5"},
        lambda i: {"kind": "lognormal", "meanlog": f"0.01*v{i - 1}", "sdlog": 0.3},
        lambda i: {"kind": "poisson", "rate": f"exp(0.1*min(v{i - 1}, 5)) + 20*(g == 2)"},
        lambda i: {"kind": "uniform", "low": f"-1 - logistic(v{i - 1})", "high": 2},
        lambda i: {"kind": "deterministic", "value": f"where(v{i - 1} > 0, sqrt(abs(v{i - 1})), log(1 + v{i - 1}**2))"},
    ]
    nodes["v0"] = {"kind": "normal", "mean": 0, "sd": 1}
    for i in range(1, n_nodes - 2):
        nodes[f"v{i}"] = kinds[i % len(kinds)](i)
    nodes["y"] = {"kind": "bernoulli", "logit": "0.2*v1 - 0.3*g_c + (v2 > 0 or v3 < 1)"}
    return {
        "name": "wide",
        "seed": 2,
        "nodes": nodes,
        "roles": {"group": "g", "target": "y", "features": ["v0", "v1", "v3"]},
        "biases": [
            {"type": "representation", "group": {"g": "c"}, "keep_positive": 0.4},
            {"type": "label", "group": {"g": "b"}, "false_negative_rate": 0.2, "false_positive_rate": 0.05},
            {"type": "measurement", "feature": "v0", "group": {"g": "c"}, "offset": -0.3, "noise_sd": 0.5},
            {"type": "missingness", "feature": "v3", "rate": "0.1 + 0.2*(v3 > 1)"},
            {"type": "selection", "node": "v1"},
        ],
        "populations": {"train": {"n": 2000, "biased": True}, "test": {"n": 2000}},
    }


@pytest.fixture()
def compile_events():
    events = []

    class Listener(event.Listener):
        def on_start(self, ev):
            events.append(ev.data)

        def on_end(self, ev):
            pass

    listener = Listener()
    simsys.sample(from_dict(TINY), n=100)  # the kernels are compiled (or loaded) here, once
    event.register("numba:compile", listener)
    yield events
    event.unregister("numba:compile", listener)


def test_new_numbers_formulas_and_structure_do_not_recompile(compile_events):
    sc = from_dict(TINY)
    simsys.sample(sc, n=5000, seed=3)
    simsys.sample(sc.with_values({"params.a": 0.7, "nodes.x.sd": "2 + g"}), n=5000, seed=4)
    wide = from_dict(_wide(60))
    assert len(wide.spec.nodes) == 60
    df = simsys.sample(wide, n=20000, seed=5)
    simsys.sample(wide, n=20000, seed=5, biased=False, threads=2)
    assert len(df) > 0
    assert compile_events == []


def test_a_new_process_loads_the_kernel_from_the_cache():
    code = (
        "import sys\n"
        "from numba.core import event\n"
        "import simsys\n"
        "n = []\n"
        "class L(event.Listener):\n"
        "    def on_start(self, ev): n.append(1)\n"
        "    def on_end(self, ev): pass\n"
        "event.register('numba:compile', L())\n"
        f"simsys.sample(simsys.load_scenario({str(ROOT / 'scenarios' / 'melanoma.yaml')!r}), n=1000)\n"
        "print(len(n))\n"
    )
    simsys.sample(from_dict(TINY), n=100)  # make sure this machine's cache holds the kernels
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"
