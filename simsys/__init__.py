"""simsys: synthetic cohorts from causal graphs, with biases injected by known amounts.

The public API is small:

- :func:`load_scenario` reads and validates a scenario file;
- :func:`sample` draws a cohort (true and observed columns side by side);
- :func:`counterfactual` recomputes a cohort under an intervention with the same noise.
"""

from simsys.errors import SimsysError
from simsys.scenario import Scenario, from_dict, load_scenario
from simsys.simulate import counterfactual, iter_chunks, sample

__version__ = "0.1.0"

__all__ = [
    "Scenario",
    "SimsysError",
    "__version__",
    "counterfactual",
    "from_dict",
    "iter_chunks",
    "load_scenario",
    "sample",
]
