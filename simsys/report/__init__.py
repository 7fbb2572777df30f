"""The report of a finished run: figures and one self-contained ``report.html``, what ``simsys run``
writes last and what ``simsys report RUN_DIR`` rebuilds from the run folder alone.

The package owns ``<run>/figures/`` and ``<run>/report.html``, one concept per module:

- :mod:`simsys.report.data`: reading and checking a run folder (untrusted input) and rebuilding the
  run's findings (:mod:`simsys.findings`) from it;
- :mod:`simsys.report.predictions`: the predictions behind the ROC figure, and when the report may
  fit the run's models again to get them;
- :mod:`simsys.report.figures`: the matplotlib figures;
- :mod:`simsys.report.page`: laying out the findings, tables and figures in the Jinja2 templates
  (``templates/``, ``static/``) and writing the files.

Every sentence with a number on the page is a finding's own text; ``docs/report.md`` describes the
sections and figures.
"""

from __future__ import annotations

from simsys.report.data import RunData, load_run
from simsys.report.figures import FIGURES
from simsys.report.page import build, render, write_report

__all__ = ["FIGURES", "RunData", "build", "load_run", "render", "write_report"]
