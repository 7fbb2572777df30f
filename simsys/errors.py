"""The user-facing exceptions of simsys, and nothing else.

Every error a user can cause derives from :class:`SimsysError`. The CLI prints such an error as one
line and exits with code 1 (no traceback unless ``--debug``). Messages follow one shape, so that a
user can find and fix the cause without reading code::

    scenarios/melanoma.yaml: biases[1].keep: expected a number in [0, 1], got 1.5

that is: *where* (file, then the key path), *what was found*, *what is allowed*.
"""

from __future__ import annotations


class SimsysError(Exception):
    """Base class of every error a user of simsys can cause and fix.

    Its text is always one line: a character that is not printable (a newline or another control
    character in a name from a scenario file) is shown escaped, as Python writes it in a string.
    """

    def __str__(self) -> str:
        text = super().__str__()
        if text.isprintable():
            return text
        return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class ScenarioError(SimsysError):
    """Raised when a scenario file (or a dict passed in its place) is malformed or inconsistent.

    ``source`` is the file name (or ``<scenario>``) and ``path`` the key path inside it, e.g.
    ``nodes.age.sd`` or ``biases[1].keep``.
    """

    def __init__(self, source: str, path: str, message: str):
        self.source = source
        self.path = path
        self.message = message
        where = f"{source}: {path}: " if path else f"{source}: "
        super().__init__(where + message)


class ExpressionError(SimsysError):
    """Raised when an expression in a scenario is not in the whitelisted language.

    The scenario loader re-raises it as a :class:`ScenarioError` with the file and key path.
    """


class GraphError(SimsysError):
    """Raised for a structural problem of the causal graph (a cycle, an unknown node)."""


class ModelError(SimsysError):
    """Raised when a candidate model cannot be built (unknown name, disallowed import path)."""


class RunError(SimsysError):
    """Raised when a run cannot start or be resumed (bad sweep, bad run folder)."""
