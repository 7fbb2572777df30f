"""The live explorer: move a bias, watch a model absorb it, see what an audit would see.

- :mod:`simsys.explorer.engine`: the computation, free of any user interface (settings in, plain
  numbers and sentences out), with caches so that a change redoes only what it touches;
- :mod:`simsys.explorer.view`: the results as HTML, shared by the web page and the notebook;
- :mod:`simsys.explorer.server`: ``simsys explore FILE``, a local web app (Starlette + uvicorn);
- :mod:`simsys.explorer.widget`: ``simsys.explore(scenario)``, the same controls inline in Jupyter.

:func:`explore` is what ``simsys.explore`` names. (The package is ``explorer``, not ``explore``:
a subpackage called ``explore`` would become the attribute ``simsys.explore`` once imported,
hiding the function.)
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
        :func:`simsys.explorer.engine.controls` for the names.

    Returns
    -------
    Explorer
        An ipywidgets box; display it (the last expression of a cell does).
    """
    from simsys.explorer.widget import Explorer

    return Explorer(scenario, settings)


__all__ = ["explore"]
