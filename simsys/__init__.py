"""simsys: synthetic cohorts from causal graphs, with biases injected by known amounts.

The public API is small:

- :func:`load_scenario` reads and validates a scenario file;
- :func:`sample` draws a cohort (true and observed columns side by side);
- :func:`counterfactual` recomputes a cohort under an intervention with the same noise;
- :func:`run` runs a scenario's experiment (models, metrics against the truth, amplification) and
  returns its results as DataFrames (imported on first use: it brings scikit-learn along);
- :func:`explore` gives live controls of a scenario inline in a Jupyter notebook, and
  :func:`cohort_summary` a cohort's truth beside what is recorded, per group (both imported on
  first use).
"""

from simsys.errors import SimsysError
from simsys.scenario import Scenario, from_dict, load_scenario
from simsys.simulate import counterfactual, iter_chunks, sample

__version__ = "0.1.0"


def __getattr__(name):
    # ``simsys.run`` is loaded lazily so that sampling does not pay for importing scikit-learn.
    if name == "run":
        from simsys.runner import run

        return run
    if name == "explore":
        from simsys.explorer import explore

        return explore
    if name == "cohort_summary":
        from simsys.display import cohort_summary

        return cohort_summary
    raise AttributeError(f"module 'simsys' has no attribute {name!r}")

__all__ = [
    "Scenario",
    "SimsysError",
    "__version__",
    "cohort_summary",
    "counterfactual",
    "explore",
    "from_dict",
    "iter_chunks",
    "load_scenario",
    "run",
    "sample",
]
