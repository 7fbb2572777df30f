"""Group codes: the groups a scenario's metrics compare, one integer per patient.

The group attribute(s) of ``roles.group`` (several = their intersections, e.g. ``race=Black &
sex=F``) are coded as integers ``0 .. G-1`` in a fixed order, with readable labels and the code of
``roles.reference_group``. The runner, the findings, the report, the explorer and ``simsys power``
all code groups this one way.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from simsys.scenario import Scenario


@dataclass
class GroupCoding:
    """Integer group codes (intersections of several group attributes) and their labels."""

    nodes: list[str]
    cards: list[int]
    labels: list[str]
    reference: int | None

    @classmethod
    def of(cls, scenario: Scenario) -> GroupCoding:
        nodes = scenario.groups
        cats = [scenario.categories(g) for g in nodes]
        cards = [len(c) for c in cats]
        labels = [" & ".join(f"{g}={c[i]}" for g, c, i in zip(nodes, cats, idx))
                  for idx in itertools.product(*(range(k) for k in cards))]
        ref = None
        rg = scenario.spec.roles.reference_group
        if rg:
            from simsys.scenario import selector_code

            idx = [selector_code(scenario, g, rg[g]) if g in rg else 0 for g in nodes]
            ref = cls._combine(idx, cards)
        return cls(nodes, cards, labels, ref)

    @staticmethod
    def _combine(idx, cards):
        code = 0
        for i, k in zip(idx, cards):
            code = code * k + i
        return code

    def codes(self, cohort) -> np.ndarray:
        code = np.zeros(cohort.n, dtype=np.int64)
        for g, k in zip(self.nodes, self.cards):
            code = code * k + cohort.column(g).astype(np.int64)
        return code


__all__ = ["GroupCoding"]
