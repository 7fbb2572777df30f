"""The live explorer: move a bias, watch a model absorb it, see what an audit would see.

- :mod:`simsys.explore.engine`: the computation, free of any user interface (settings in, plain
  numbers and sentences out), with caches so that a change redoes only what it touches;
- :mod:`simsys.explore.view`: the results as HTML, shared by the web page and the notebook;
- :mod:`simsys.explore.server`: ``simsys explore FILE``, a local web app (Starlette + uvicorn);
- :mod:`simsys.explore.widget`: ``simsys.explore(scenario)``, the same controls inline in Jupyter.

:func:`explore` is what ``simsys.explore`` names.
"""

from __future__ import annotations

from typing import Any


def explore(scenario: Any, **settings: Any):
    """Live controls of a scenario inline in a Jupyter notebook (ipywidgets).

    Parameters
    ----------
    scenario : Scenario or path
        From :func:`simsys.load_scenario`, or a scenario file.
    **settings
        Initial values by setting name, e.g. ``explore(sc, **{"params.keep_dark": 0.1})`` or
        ``explore(sc, train_n=5000, model="gradient_boosting")``; see
        :func:`simsys.explore.engine.controls` for the names.

    Returns
    -------
    Explorer
        An ipywidgets box; display it (the last expression of a cell does).
    """
    from simsys.explore.widget import Explorer

    return Explorer(scenario, settings)


__all__ = ["explore"]
