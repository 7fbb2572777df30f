"""``simsys.testing``: stress a fairness method from a method developer's own test suite.

    from simsys.testing import stress

    def test_my_method_recovers_equal_opportunity():
        result = stress(MyMethod, scenarios=["blum_stangl"], replicates=5)
        rec = result.recovery("blum_stangl", metric="tpr")   # an Estimate, with its 95% interval
        assert rec.lo > 0.5
        assert not result.failures()

The result is a :class:`simsys.stress.StressResult`: ``recovery``, ``gap`` and ``score`` return
:class:`simsys.intervals.Estimate` objects (``value``, ``lo``, ``hi``, ``replicates``) for a
scenario of the battery (at its most-biased sweep point unless ``point=`` says otherwise);
``failures()`` lists the findings where the method makes the true gap worse than its baseline or
only hides it from an audit; ``leaderboard`` is the full table. Nothing is written to disk unless
``output_dir`` is given, and the run uses one worker process unless ``workers`` says otherwise
(methods defined in a test module are then used in-process, without pickling).
"""

from __future__ import annotations

from typing import Any

from simsys.stress import StressResult
from simsys.stress import stress as _stress


def stress(method: Any, *, scenarios: list[str] | None = None, replicates: int | None = 3,
           workers: int = 1, output_dir: str | None = None, **kwargs: Any) -> StressResult:
    """Run ``method`` (an estimator class or object, or a model spec) through the battery (see
    :func:`simsys.stress.stress`), in memory by default."""
    return _stress(method, scenarios=scenarios, replicates=replicates, workers=workers,
                   output_dir=output_dir, **kwargs)


__all__ = ["StressResult", "stress"]
