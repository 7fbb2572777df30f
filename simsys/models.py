"""Candidate models behind one small interface, and the thresholds that turn scores into decisions.

This module owns three things:

* **Building** a candidate model from a scenario's ``experiment.models`` entry
  (:func:`build_model` -> :class:`CandidateModel`): the built-in short names (the models of
  :mod:`simsys.estimators`, the mitigations of :mod:`simsys.mitigations`), import paths with their allow-list, classes in a
  Python file (``path/file.py:Class``, with the same allow-list switch), estimator objects and
  classes passed from Python, parameter checking, nested model specs and fairlearn constraint
  names.
* **Fitting and scoring** (:meth:`CandidateModel.fit` -> :class:`FittedModel`,
  :meth:`FittedModel.predict_score`): one calling convention over scikit-learn classifiers and
  fairlearn mitigators, which differ in how they take the group and how they expose scores.
* **Thresholds** (:class:`ThresholdPolicy`, :func:`parse_threshold_policy`,
  :func:`choose_threshold`): how a score becomes a 0/1 prediction, always ``score >= threshold``.

It also offers :func:`limit_threads`, so that fitting inside parallel workers does not oversubscribe
the cores. Nothing here reads files or draws seeds: the caller passes an ``int`` ``random_state``
(the runner's "model" stream) and arrays.

A model spec is a plain dict, as it comes from YAML::

    {name: "lr", model: "logistic_regression", params: {C: 0.1}, receives_group: false}

``name`` defaults to the ``model`` string; ``params`` and ``receives_group`` are optional.
See ``docs/models.md`` for the user-facing description.
"""

from __future__ import annotations

import ast
import copy
import difflib
import hashlib
import importlib
import importlib.util
import inspect
import math
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy.special import expit
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from simsys.errors import ModelError
from simsys.estimators import (
    BUILTIN_MODELS,
    FAIRLEARN_CONSTRAINTS,
    _sample_weight_key,
)
from simsys.mitigations import MITIGATIONS

__all__ = [
    "ALLOWED_IMPORT_PREFIXES",
    "BUILTIN_MODELS",
    "FAIRLEARN_CONSTRAINTS",
    "CandidateModel",
    "FittedModel",
    "ThresholdPolicy",
    "build_model",
    "choose_threshold",
    "limit_threads",
    "model_label",
    "parse_threshold_policy",
]

#: Import-path prefixes accepted without ``allow_imports=True`` (``--allow-import`` on the CLI).
#: Importing a module runs its code, so a scenario file must not be able to name any module.
ALLOWED_IMPORT_PREFIXES: tuple[str, ...] = ("sklearn.", "simsys.", "fairlearn.")

# One or more dots between identifiers, nothing else: no spaces, no calls, no empty parts.
_IMPORT_PATH_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")

# A model class in a Python file: "path/to/file.py:ClassName" (path relative to the scenario file).
_FILE_MODEL_RE = re.compile(r"(?P<path>[^:]+\.py):(?P<attr>[A-Za-z_][A-Za-z0-9_]*)")

_SPEC_KEYS = ("model", "name", "params", "receives_group")
_NESTED_SPEC_KEYS = ("model", "params")


# Message templates (fairlearn's habit: one constant per text, tests compare the text).
_MSG_IMPORT_NOT_ALLOWED = (
    "{where}.model: import path '{path}' is not allowed; allowed prefixes are {prefixes} "
    "(pass --allow-import to allow others)"
)
_MSG_NOT_A_MODEL = (
    "{where}.model: '{model}' is neither a built-in model nor a dotted import path; "
    "allowed are the built-ins {builtins} or a path such as sklearn.svm.SVC"
)
_MSG_FILE_NOT_ALLOWED = (
    "{where}.model: loading a model from the file '{path}' runs its code; "
    "pass --allow-import (allow_imports=True in Python) to allow it"
)
_MSG_PARAM_NEEDS_IMPORT = (
    "{where}: {found}; a parameter that names a path or an object can act on files or run code, "
    "so it needs --allow-import (allowed without it: numbers, booleans, null, one of the "
    "parameter's string choices, a nested model spec)"
)
# Parameter names that say "a place": a string there is a path whatever the class declares
# (joblib's ``memory`` caches to, and unpickles from, the folder it names).
_PATH_LIKE_PARAM = re.compile(r"memory|cache|path|dir|file|folder|location|root|url|uri", re.I)
_MSG_SINGLE_CLASS = (
    "model '{name}': training labels contain a single class (all {n} labels are {value}); "
    "fitting needs both 0 and 1"
)


# --------------------------------------------------------------------------------------------
# Thread hygiene
# --------------------------------------------------------------------------------------------


@contextmanager
def limit_threads(n: int = 1) -> Iterator[None]:
    """Cap the threads of BLAS and OpenMP thread pools inside a ``with`` block.

    The runner fits many small models in parallel processes. Each process would otherwise let
    OpenBLAS/MKL (used by ``LogisticRegression``, ``MLPClassifier``) and OpenMP (used by
    ``HistGradientBoostingClassifier``) start one thread per core, so ``k`` workers on ``c`` cores
    would run ``k * c`` busy threads and be slower than ``k``. Wrapping each fit in
    ``limit_threads(1)`` keeps one thread per worker.

    Uses :func:`threadpoolctl.threadpool_limits`, which changes the limits of the native libraries
    already loaded in this process (this module imports scikit-learn and numpy, so theirs are) and
    restores them on exit. It does not affect ``n_jobs`` of joblib-based estimators (the built-in
    random forest uses ``n_jobs=1``) nor child processes.

    Parameters
    ----------
    n : int, default 1
        Maximum number of threads per thread pool, at least 1.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"limit_threads: n must be an integer >= 1, got {n!r}")
    with threadpool_limits(limits=int(n)):
        yield




# --------------------------------------------------------------------------------------------
# Recipes: picklable factories of fresh, unfitted estimators
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _EstimatorRecipe:
    """A picklable factory: ``target(**kwargs)`` with nested recipes built fresh on each call.

    A closure would not pickle, and the runner sends candidate models to worker processes. A new
    estimator (and new nested estimators and fairlearn moments, which hold data after ``fit``) is
    built on every call so that no state leaks between fits.
    """

    target: Callable[..., Any]
    kwargs: tuple[tuple[str, Any], ...] = ()

    def __call__(self) -> Any:
        built = {}
        for name, value in self.kwargs:
            # deepcopy: a list given in YAML must not be shared (and mutated) across estimators.
            built[name] = value() if isinstance(value, _EstimatorRecipe) else copy.deepcopy(value)
        return self.target(**built)


# --------------------------------------------------------------------------------------------
# Candidate and fitted models
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CandidateModel:
    """An unfitted candidate model, as built from one ``experiment.models`` entry.

    Attributes
    ----------
    name : str
        Label used in results (the spec's ``name``, default its ``model`` string).
    model : str
        The spec's ``model`` string: a built-in name or an import path.
    make_estimator : callable
        Zero-argument factory returning a fresh, unfitted estimator. Picklable.
    receives_group : bool
        Whether the group codes are passed to ``fit`` as ``sensitive_features``.
    random_state : int
        Seed given to the estimator (and to randomised ``predict`` of post-processors).
    """

    name: str
    model: str
    make_estimator: Callable[[], Any]
    receives_group: bool
    random_state: int

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        group: np.ndarray | None = None,
        sample_weight: np.ndarray | None = None,
    ) -> FittedModel:
        """Fit a fresh estimator and return it wrapped as a :class:`FittedModel`.

        Parameters
        ----------
        X : ndarray of shape (n, p)
            Features, float64; may contain NaN (the built-ins impute or handle it).
        y : ndarray of shape (n,)
            Labels, 0 or 1.
        group : ndarray of shape (n,), optional
            Integer group codes. Required when ``receives_group`` is true, ignored otherwise
            (pass the group as a column of ``X`` if the model should use it as a feature).
        sample_weight : ndarray of shape (n,), optional
            Passed to the estimator only when given. A built-in pipeline receives it on its final
            step (``model__sample_weight``); the imputer and scaler are fitted unweighted.

        Raises
        ------
        ModelError
            When ``y`` holds a single class (checked before scikit-learn is called, so the runner
            can record it and go on), or when ``sample_weight`` is given to an estimator whose
            ``fit`` does not take it.
        ValueError
            When the arrays have the wrong shape, ``y`` is not 0/1, or ``group`` is missing for a
            model that receives it.
        """
        X = _as_features(X)
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise ValueError(
                f"model '{self.name}': y must have shape ({X.shape[0]},), got {y.shape}"
            )
        values = np.unique(y)
        if not np.isin(values, (0, 1)).all():
            raise ValueError(
                f"model '{self.name}': y must contain only 0 and 1, got values {values[:5].tolist()}"
            )
        if values.size == 0:
            raise ModelError(f"model '{self.name}': training set is empty; fitting needs rows")
        if values.size == 1:
            raise ModelError(
                _MSG_SINGLE_CLASS.format(name=self.name, n=y.shape[0], value=int(values[0]))
            )
        y = y.astype(np.int64, copy=False)

        estimator = self.make_estimator()
        fit_kwargs: dict[str, Any] = {}
        if self.receives_group:
            fit_kwargs["sensitive_features"] = _check_group(group, X.shape[0], self.name)
        if sample_weight is not None:
            key = _sample_weight_key(estimator)
            if key is None:
                raise ModelError(
                    f"model '{self.name}': {type(estimator).__name__}.fit does not accept "
                    "sample_weight; use a model whose fit takes sample_weight or do not weight"
                )
            sample_weight = np.asarray(sample_weight, dtype=np.float64)
            if sample_weight.shape != (X.shape[0],):
                raise ValueError(
                    f"model '{self.name}': sample_weight must have shape ({X.shape[0]},), "
                    f"got {sample_weight.shape}"
                )
            fit_kwargs[key] = sample_weight
        estimator.fit(X, y, **fit_kwargs)
        return FittedModel(
            name=self.name,
            estimator=estimator,
            receives_group=self.receives_group,
            score_method=_score_method(estimator),
            random_state=self.random_state,
        )


ScoreMethod = Literal[
    "predict_with_groups", "pmf_predict", "predict_proba", "decision_function", "predict"
]


@dataclass(frozen=True)
class FittedModel:
    """A fitted estimator with one way to get a score for the positive class.

    Attributes
    ----------
    name : str
        The candidate model's name.
    estimator : object
        The fitted scikit-learn / fairlearn estimator.
    receives_group : bool
        Copied from the candidate model.
    score_method : str
        How :meth:`predict_score` gets scores, chosen once after fitting; see there.
    random_state : int
        Seed for randomised predictions (fairlearn's ``ThresholdOptimizer``), so that scoring the
        same rows twice gives the same result.
    """

    name: str
    estimator: Any
    receives_group: bool
    score_method: ScoreMethod
    random_state: int

    @property
    def hard_predictions_only(self) -> bool:
        """True when scores are 0/1 predictions, so that choosing a threshold makes no sense.

        This holds for post-processors such as fairlearn's ``ThresholdOptimizer`` and for
        estimators that only have ``predict``. Rank metrics (AUROC) are then degenerate too.
        """
        return self.score_method in ("predict_with_groups", "predict")

    def predict_score(self, X: np.ndarray, *, group: np.ndarray | None = None) -> np.ndarray:
        """Score of the positive class for each row, as a float64 array of shape (n,).

        The first case that applies, in this order (``score_method`` records which):

        1. ``predict_with_groups``: post-processors whose ``predict`` takes
           ``sensitive_features`` (fairlearn's ``ThresholdOptimizer``) have no scores; the score
           is ``predict(X, sensitive_features=group, random_state=self.random_state)``, 0 or 1.
           The prediction is randomised between two group thresholds; the fixed seed makes it
           repeatable.
        2. ``pmf_predict``: fairlearn reductions (``ExponentiatedGradient``) have no
           ``predict_proba``; ``_pmf_predict(X)[:, 1]`` is the probability that the randomised
           classifier predicts 1, a deterministic score in [0, 1].
        3. ``predict_proba``: column of class 1 of ``predict_proba(X)``.
        4. ``decision_function``: squashed by the logistic function ``1 / (1 + exp(-d))`` so that
           it lies in (0, 1) and threshold 0.5 equals decision 0. Ranks are kept; the values are
           not calibrated probabilities.
        5. ``predict``: the 0/1 prediction itself.

        Parameters
        ----------
        X : ndarray of shape (n, p)
            Features, with the columns used in fit.
        group : ndarray of shape (n,), optional
            Integer group codes; required for case 1, ignored otherwise.
        """
        X = _as_features(X)
        est = self.estimator
        method = self.score_method
        if method == "pmf_predict":
            score = np.asarray(est._pmf_predict(X))[:, 1]
        elif method == "predict_proba":
            proba = np.asarray(est.predict_proba(X))
            score = proba[:, np.flatnonzero(np.asarray(est.classes_) == 1)[0]]
        elif method == "predict_with_groups":
            group = _check_group(group, X.shape[0], self.name)
            score = est.predict(X, sensitive_features=group, random_state=self.random_state)
        elif method == "decision_function":
            score = expit(np.asarray(est.decision_function(X), dtype=np.float64))
        else:
            score = est.predict(X)
        return _as_probabilities(np.asarray(score, dtype=np.float64).reshape(-1), self.name)


def _as_probabilities(score: np.ndarray, name: str) -> np.ndarray:
    """Scores clipped to [0, 1] when they leave it by rounding only; otherwise a ModelError.

    A randomised classifier's probability is a weighted sum of 0/1 predictions, which can exceed 1
    by rounding (fairlearn's ``ExponentiatedGradient._pmf_predict`` gives 1.0000000000000007).
    A user's estimator returning something else is that model's error, recorded by the runner for
    that model alone, not a failure of the metrics computed later.
    """
    ok = np.isfinite(score) & (score >= -1e-9) & (score <= 1 + 1e-9)
    if not ok.all():
        raise ModelError(f"model '{name}': scores must be finite probabilities in [0, 1], "
                         f"got {float(score[~ok][0])!r}")
    return np.ascontiguousarray(np.clip(score, 0.0, 1.0))


def _as_features(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array, got {X.ndim} dimension(s)")
    return X


def _check_group(group: np.ndarray | None, n: int, name: str) -> np.ndarray:
    if group is None:
        raise ValueError(f"model '{name}' receives the group (receives_group: true); pass group=")
    group = np.asarray(group)
    if group.shape != (n,):
        raise ValueError(f"model '{name}': group must have shape ({n},), got {group.shape}")
    return group


def _score_method(estimator: Any) -> ScoreMethod:
    # Post-processors first: ThresholdOptimizer also has a _pmf_predict, but it needs the group
    # and its "scores" are mixing weights between group thresholds, not a ranking of rows.
    predict = getattr(estimator, "predict", None)
    if predict is not None and "sensitive_features" in _signature_params(predict):
        return "predict_with_groups"
    if hasattr(estimator, "_pmf_predict"):
        return "pmf_predict"
    if hasattr(estimator, "predict_proba"):
        return "predict_proba"
    if hasattr(estimator, "decision_function"):
        return "decision_function"
    return "predict"


def _signature_params(func: Callable[..., Any]) -> Mapping[str, inspect.Parameter]:
    try:
        return inspect.signature(func).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return {}


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------


def build_model(
    spec: Mapping[str, Any],
    *,
    random_state: int,
    allow_imports: bool = False,
    source: str = "<scenario>",
    key: str = "experiment.models[0]",
) -> CandidateModel:
    """Build a :class:`CandidateModel` from one model spec, checking everything that can be checked.

    Parameters
    ----------
    spec : mapping
        ``{name: str, model: str, params: mapping, receives_group: bool}``; only ``model`` is
        required. ``model`` is a built-in name (:data:`BUILTIN_MODELS`), a built-in mitigation
        (:data:`simsys.mitigations.MITIGATIONS`), a dotted import path ``module.Class``, a class
        in a Python file ``path/to/file.py:Class`` (relative to the folder of ``source``; needs
        ``allow_imports``), or, from Python, an estimator object (cloned for every fit; no
        ``params``) or class. ``params`` set parameters of the built-in's final estimator, or of
        the class. ``receives_group`` defaults to true for the mitigations and for objects /
        classes from Python whose ``fit`` names ``sensitive_features``, false otherwise. A
        ``params`` value that is a mapping with a ``model`` key is itself built
        as a (nested) model spec with keys ``model`` and ``params`` (e.g. the ``estimator`` of a
        fairlearn mitigator). For classes from ``fairlearn.reductions``, a string
        ``constraints`` value is turned into the moment object named in
        :data:`FAIRLEARN_CONSTRAINTS`; other classes (``ThresholdOptimizer``) get the string.
    random_state : int
        Given as ``random_state`` to every (nested) estimator that has that parameter, unless the
        spec sets it.
    allow_imports : bool, default False
        Allow import paths outside :data:`ALLOWED_IMPORT_PREFIXES`, and classes in files.
    source, key : str
        File name and key path of the spec, used in error messages; a file path in ``model`` is
        relative to the folder of ``source`` (the working directory when it is not a file).

    Returns
    -------
    CandidateModel

    Raises
    ------
    ModelError
        For a malformed spec, an unknown built-in, a malformed / disallowed / unimportable import
        path, an imported object that is not a class with ``fit``, an unknown or missing
        parameter, an invalid parameter value (when the estimator declares its constraints, as
        scikit-learn's do), an unknown fairlearn constraint name, or a ``receives_group`` flag
        the estimator cannot honour.
    """
    where = f"{source}: {key}"
    _check_spec_keys(spec, _SPEC_KEYS, where)
    model = spec["model"]
    receives_group = spec.get("receives_group", _default_receives_group(model))
    if not isinstance(receives_group, bool):
        raise ModelError(f"{where}.receives_group: expected true or false, got {receives_group!r}")
    if isinstance(random_state, bool) or not isinstance(random_state, int | np.integer):
        # The runner's seed, not user input: a programming error.
        raise TypeError(f"build_model: random_state must be an int, got {random_state!r}")
    random_state = int(random_state)

    recipe, target = _build_recipe(spec, random_state, allow_imports, where, _base_dir(source))
    name = spec.get("name", model_label(model))
    if not isinstance(name, str) or not name:
        raise ModelError(f"{where}.name: expected a non-empty string, got {name!r}")
    _check_receives_group(target, receives_group, where)
    return CandidateModel(
        name=name,
        model=model_label(model),
        make_estimator=recipe,
        receives_group=receives_group,
        random_state=random_state,
    )


def _check_spec_keys(spec: Any, allowed: tuple[str, ...], where: str) -> None:
    if not isinstance(spec, Mapping):
        raise ModelError(
            f"{where}: expected a mapping with keys {', '.join(allowed)}, got {type(spec).__name__}"
        )
    for k in spec:
        if k not in allowed:
            raise ModelError(f"{where}: unknown key {k!r}; allowed keys are {', '.join(allowed)}")
    if "model" not in spec:
        raise ModelError(f"{where}: missing key 'model'; allowed keys are {', '.join(allowed)}")
    if not isinstance(spec["model"], str) and not _is_estimator_like(spec["model"]):
        raise ModelError(
            f"{where}.model: expected a string (a built-in name or an import path), "
            f"got {spec['model']!r}"
        )


def model_label(model: Any) -> str:
    """The ``model`` of a spec as text: the string itself, or the class name of an object."""
    if isinstance(model, str):
        return model
    return model.__name__ if inspect.isclass(model) else type(model).__name__


def _is_estimator_like(model: Any) -> bool:
    # An estimator object or class passed from Python (``simsys.run(..., models=[...])``).
    return callable(getattr(model, "fit", None))


def _default_receives_group(model: Any) -> bool:
    """``receives_group`` when the spec leaves it out.

    True for the built-in mitigations (:data:`simsys.mitigations.MITIGATIONS`) and for estimator
    objects / classes from Python whose ``fit`` names ``sensitive_features``; false otherwise
    (import paths keep the explicit flag, so that a scenario file says what the model sees).
    """
    if isinstance(model, str):
        return model in _mitigations()
    if _is_estimator_like(model):
        return "sensitive_features" in _signature_params(model.fit)
    return False


def _mitigations() -> Mapping[str, type]:
    return MITIGATIONS


def _base_dir(source: str) -> Path:
    """The folder that a file path in a model spec is relative to: the scenario file's."""
    path = Path(source)
    return path.parent if source and path.is_file() else Path.cwd()


def _build_recipe(
    spec: Mapping[str, Any],
    random_state: int,
    allow_imports: bool,
    where: str,
    base_dir: Path | None = None,
) -> tuple[_EstimatorRecipe, type]:
    """Resolve ``spec`` into a recipe; also return the class (for a built-in, the pipeline's)."""
    model = spec["model"]
    if _is_estimator_like(model) and not inspect.isclass(model):
        # An estimator object from Python: a fresh clone for every fit, parameters as set on it.
        if spec.get("params"):
            raise ModelError(
                f"{where}.params: an estimator object takes no params; set them on the object"
            )
        recipe = _EstimatorRecipe(target=clone, kwargs=(("estimator", model),))
        _validate_values(recipe(), where)
        return recipe, type(model)
    params = spec.get("params")
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise ModelError(
            f"{where}.params: expected a mapping of parameter names to values, "
            f"got {type(params).__name__}"
        )
    for pname in params:
        if not isinstance(pname, str):
            raise ModelError(f"{where}.params: parameter names must be strings, got {pname!r}")

    mitigations = _mitigations()
    if inspect.isclass(model):
        target, display = model, model.__name__  # a class from Python: as an imported one
        allowed, required, open_kwargs = _init_params(target)
    elif model in BUILTIN_MODELS:
        builder, final_cls = BUILTIN_MODELS[model]
        # get_params() of a default instance is exactly what set_params() will accept.
        allowed = sorted(final_cls().get_params(deep=False))
        target: Callable[..., Any] = builder
        owner: type = final_cls
        display = f"{model} ({final_cls.__name__})"
        required: list[str] = []
        open_kwargs = False
    elif model in mitigations:
        target = mitigations[model]
        display = f"{model} ({target.__name__})"
        allowed, required, open_kwargs = _init_params(target)
    elif _FILE_MODEL_RE.fullmatch(model):
        target = _load_file_class(model, allow_imports, where, base_dir or Path.cwd())
        display = target.__name__
        allowed, required, open_kwargs = _init_params(target)
    else:
        close = difflib.get_close_matches(model, list(mitigations), n=1)
        if close and "." not in model:
            raise ModelError(
                f"{where}.model: unknown model '{model}'; did you mean {close[0]}? "
                f"Built-in mitigations are {', '.join(mitigations)}"
            )
        target = _import_class(model, allow_imports, where)
        display = target.__name__
        allowed, required, open_kwargs = _init_params(target)

    for pname in params:
        if pname not in allowed and not open_kwargs:
            raise ModelError(
                f"{where}.params.{pname}: unknown parameter of {display}; "
                f"allowed parameters are {', '.join(allowed)}"
            )
    missing = [p for p in required if p not in params]
    if missing:
        raise ModelError(
            f"{where}.params: missing required parameter(s) {', '.join(missing)} of {display}"
        )

    if model not in BUILTIN_MODELS:
        owner = target  # the class itself declares its parameters
    kwargs: dict[str, Any] = {}
    for pname, value in params.items():
        kwargs[pname] = _resolve_param(
            target, pname, value, random_state, allow_imports, f"{where}.params.{pname}", base_dir,
            owner=owner,
        )
    if "random_state" in allowed and "random_state" not in kwargs:
        kwargs["random_state"] = random_state
    _route_nested_sample_weight(kwargs, allowed)

    recipe = _EstimatorRecipe(target=target, kwargs=tuple(kwargs.items()))
    # Build one instance now, so that construction errors and invalid values surface at load
    # time with the key path, not in a worker halfway through a sweep.
    try:
        prototype = recipe()
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{where}.params: cannot construct {display}: {exc}") from exc
    _validate_values(prototype, where)
    return recipe, type(prototype)


def _import_class(path: str, allow_imports: bool, where: str) -> type:
    """Import ``module.Class`` with ``importlib`` (never ``eval``), after checking the allow-list."""
    if not _IMPORT_PATH_RE.fullmatch(path):
        raise ModelError(
            _MSG_NOT_A_MODEL.format(where=where, model=path, builtins=", ".join(BUILTIN_MODELS))
        )
    # The allow-list is checked before importing: importing a module executes its code.
    if not allow_imports and not path.startswith(ALLOWED_IMPORT_PREFIXES):
        raise ModelError(
            _MSG_IMPORT_NOT_ALLOWED.format(
                where=where, path=path, prefixes=", ".join(ALLOWED_IMPORT_PREFIXES)
            )
        )
    module_name, attr = path.rsplit(".", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(
            f"{where}.model: cannot import module '{module_name}' of import path '{path}' "
            f"({exc}); an import path is module.Class with an importable module"
        ) from exc
    try:
        obj = getattr(module, attr)
    except AttributeError as exc:
        public = [n for n in dir(module) if not n.startswith("_")]
        close = difflib.get_close_matches(attr, public, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "check the spelling"
        raise ModelError(
            f"{where}.model: module '{module_name}' has no attribute '{attr}' "
            f"(import path '{path}'); {hint}"
        ) from exc
    if not inspect.isclass(obj):
        raise ModelError(
            f"{where}.model: '{path}' is a {type(obj).__name__}, not a class; "
            "an import path must name an estimator class with a fit method"
        )
    if not callable(getattr(obj, "fit", None)):
        raise ModelError(
            f"{where}.model: class '{path}' has no fit method; "
            "an import path must name an estimator class with a fit method"
        )
    return obj


def _load_file_class(model: str, allow_imports: bool, where: str, base_dir: Path) -> type:
    """Load ``ClassName`` from ``path/to/file.py:ClassName`` (never ``eval``).

    The path is relative to ``base_dir`` (the scenario file's folder) unless absolute. Loading
    runs the file, so it needs ``allow_imports``. The module is loaded once per process with
    ``importlib.util.spec_from_file_location`` under a name derived from its absolute path, and
    registered in ``sys.modules`` so that its objects pickle within the process.
    """
    m = _FILE_MODEL_RE.fullmatch(model)
    rel, attr = m["path"], m["attr"]
    if not allow_imports:
        raise ModelError(_MSG_FILE_NOT_ALLOWED.format(where=where, path=rel))
    path = (base_dir / rel).resolve()
    if not path.is_file():
        raise ModelError(
            f"{where}.model: file '{rel}' not found (looked for {path}); "
            "a file path is relative to the scenario file"
        )
    module_name = "simsys_user_" + hashlib.sha256(str(path).encode()).hexdigest()[:16]
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ModelError(f"{where}.model: cannot load '{rel}' as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[module_name]
            raise ModelError(
                f"{where}.model: running '{rel}' failed ({type(exc).__name__}: {exc})"
            ) from exc
    obj = getattr(module, attr, None)
    if obj is None:
        public = [n for n in dir(module) if not n.startswith("_")]
        close = difflib.get_close_matches(attr, public, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "check the spelling"
        raise ModelError(f"{where}.model: file '{rel}' has no attribute '{attr}'; {hint}")
    if not inspect.isclass(obj) or not callable(getattr(obj, "fit", None)):
        raise ModelError(
            f"{where}.model: '{model}' is not a class with a fit method; "
            "a file path must name an estimator class"
        )
    return obj


def _init_params(cls: type) -> tuple[list[str], list[str], bool]:
    """Constructor parameters of ``cls``: (all names, required names, takes ``**kwargs``).

    scikit-learn's ``get_params()`` lists exactly the ``__init__`` parameters; reading the
    signature gives the same names without constructing an instance, which for classes with
    required arguments (fairlearn's ``ExponentiatedGradient``) is impossible before the spec is
    resolved.
    """
    names: list[str] = []
    required: list[str] = []
    open_kwargs = False
    for p in _signature_params(cls).values():
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            open_kwargs = True
        elif p.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        else:
            names.append(p.name)
            if p.default is inspect.Parameter.empty:
                required.append(p.name)
    return sorted(names), required, open_kwargs


def _resolve_param(
    target: Callable[..., Any],
    pname: str,
    value: Any,
    random_state: int,
    allow_imports: bool,
    where: str,
    base_dir: Path | None = None,
    *,
    owner: Any = None,
) -> Any:
    """Turn a nested model spec or a fairlearn constraint name into a recipe; pass others as is.

    Without ``allow_imports`` a value must be plain (:func:`_unsafe_param`): a class may act on
    the file system through a parameter (joblib's ``memory`` writes to the folder it names and
    unpickles what it finds there), and an object or a callable runs code.
    """
    if isinstance(value, Mapping) and "model" in value:
        _check_spec_keys(value, _NESTED_SPEC_KEYS, where)
        recipe, _ = _build_recipe(value, random_state, allow_imports, where, base_dir)
        return recipe
    if pname == "constraints" and isinstance(value, str) and _is_fairlearn_reduction(target):
        if value not in FAIRLEARN_CONSTRAINTS:
            raise ModelError(
                f"{where}: unknown fairlearn constraint '{value}'; "
                f"allowed are {', '.join(FAIRLEARN_CONSTRAINTS)}"
            )
        reductions = importlib.import_module("fairlearn.reductions")
        return _EstimatorRecipe(target=getattr(reductions, FAIRLEARN_CONSTRAINTS[value]))
    if not allow_imports:
        found = _unsafe_param(owner if owner is not None else target, pname, value, where)
        if found is not None:
            raise ModelError(_MSG_PARAM_NEEDS_IMPORT.format(where=where, found=found))
    return value


def _unsafe_param(owner: Any, pname: str, value: Any, where: str) -> str | None:
    """What makes ``value`` of parameter ``pname`` of ``owner`` need ``--allow-import``, or None.

    Plain values pass: None, booleans, finite-or-not numbers (their range is the class's or the
    scenario checks' business), lists and mappings of those, and a string that the class
    declares as one of the parameter's choices. A string is a choice when scikit-learn's
    ``_parameter_constraints`` lists it in a ``StrOptions``, or the ``__init__`` annotation is a
    ``Literal`` naming it, or the class is one of simsys's own (which take no paths and check
    their strings themselves). A string is *not* a choice when the parameter's name says it is a
    place (``memory``, ``cache_dir``, ``path``, ...), when the constraints also accept free text,
    or when the class declares nothing about the parameter. Anything else (a callable, an
    estimator or joblib ``Memory`` object from Python) is an object.
    """
    if value is None or isinstance(value, bool | int | float | np.integer | np.floating):
        return None
    if isinstance(value, str):
        if _PATH_LIKE_PARAM.search(pname):
            return f"{value!r} may name a file-system path"
        choices, free = _string_choices(owner, pname)
        if choices is None:
            return (f"{value!r} is text that {getattr(owner, '__name__', owner)!s} does not "
                    "declare as one of the parameter's choices")
        if value in choices:
            return None
        if free:
            return f"{value!r} is free text, not one of the parameter's choices"
        if choices and not hasattr(owner, "_parameter_constraints"):
            # a Literal annotation: nothing else checks it before fit
            raise ModelError(f"{where}: {value!r} is not one of the parameter's choices; "
                             f"allowed: {', '.join(sorted(map(str, choices)))}")
        return None  # not a choice, and no free text: the class's own check rejects it
    if isinstance(value, list | tuple):
        for item in value:
            if isinstance(item, str) or _unsafe_param(owner, "", item, where) is not None:
                return f"{_short(value)} holds {_short(item)}, not a number, boolean or null"
        return None
    if isinstance(value, Mapping):
        for k, item in value.items():
            if not isinstance(k, str | int | float | bool) or isinstance(item, str) or (
                    _unsafe_param(owner, "", item, where) is not None):
                return f"{_short(value)} holds {_short(item)}, not a number, boolean or null"
        return None
    return f"a {type(value).__name__} object"


def _short(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _string_choices(owner: Any, pname: str) -> tuple[frozenset | None, bool]:
    """(string choices the class declares for ``pname``, whether it also accepts free text).

    ``(None, False)`` when the class declares nothing about the parameter.
    """
    if getattr(owner, "__module__", "").startswith("simsys."):
        return frozenset(), False  # simsys's classes check their own string choices
    constraints = getattr(owner, "_parameter_constraints", None)
    if isinstance(constraints, Mapping) and pname in constraints:
        choices: set = set()
        free = False
        for c in constraints[pname]:
            options = getattr(c, "options", None)  # StrOptions / Options
            if isinstance(options, set | frozenset):
                choices.update(o for o in options if isinstance(o, str))
            elif _accepts_any_text(c):
                free = True
        if pname == "scoring":  # a scorer's name is looked up in scikit-learn's registry
            from sklearn.metrics import get_scorer_names

            choices.update(get_scorer_names())
            choices.add("loss")
        return frozenset(choices), free
    literal = _literal_choices(owner, pname)
    if literal is not None:
        return literal, False
    return None, False


def _accepts_any_text(constraint: Any) -> bool:
    """Whether a scikit-learn parameter constraint accepts a string it does not list (``str``,
    ``object``, ``MissingValues``): asked of the constraint itself with a string no option has."""
    probe = "\x00simsys: not an option"
    try:
        from sklearn.utils._param_validation import make_constraint

        return bool(make_constraint(constraint).is_satisfied_by(probe))
    except Exception:  # a private API that may change: fall back to the plain types
        return constraint is str or (inspect.isclass(constraint) and issubclass(str, constraint))


def _literal_choices(owner: Any, pname: str) -> frozenset | None:
    """The strings of a ``Literal[...]`` annotation of ``pname`` in ``owner.__init__`` (fairlearn's
    ``ThresholdOptimizer``), or None."""
    try:
        param = _signature_params(owner).get(pname)
    except (TypeError, ValueError):
        return None
    ann = getattr(param, "annotation", None)
    if isinstance(ann, str):  # ``from __future__ import annotations``: the annotation's text
        m = re.fullmatch(r"\s*(?:typing\.)?Literal\[(.*)\]\s*", ann, re.S)
        if not m:
            return None
        try:
            values = ast.literal_eval(f"({m[1]},)")  # the class's source text, not user input
        except (ValueError, SyntaxError):
            return None
        return frozenset(v for v in values if isinstance(v, str))
    if getattr(ann, "__origin__", None) is Literal:
        return frozenset(v for v in ann.__args__ if isinstance(v, str))
    return None


def _is_fairlearn_reduction(target: Callable[..., Any]) -> bool:
    # Reductions take a Moment object; fairlearn's ThresholdOptimizer takes the string itself.
    return getattr(target, "__module__", "").startswith("fairlearn.reductions")


def _route_nested_sample_weight(kwargs: dict[str, Any], allowed: list[str]) -> None:
    """Point a reduction's ``sample_weight_name`` at the final step of a nested pipeline.

    ``ExponentiatedGradient`` fits its ``estimator`` with ``fit(X, y, **{sample_weight_name: w})``
    on every iteration, and a Pipeline rejects a bare ``sample_weight``.
    """
    nested = kwargs.get("estimator")
    if "sample_weight_name" not in allowed or "sample_weight_name" in kwargs:
        return
    if not isinstance(nested, _EstimatorRecipe):
        return
    example = nested()
    if isinstance(example, Pipeline):
        kwargs["sample_weight_name"] = f"{example.steps[-1][0]}__sample_weight"


def _validate_values(estimator: Any, where: str) -> None:
    """Check parameter values now, for estimators that declare their constraints.

    scikit-learn only checks values in ``fit``; its (private) ``_validate_params`` runs the same
    check without data. For a pipeline the user's params live in the final step.
    """
    final = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
    if not hasattr(type(final), "_parameter_constraints") or not hasattr(final, "_validate_params"):
        return
    try:
        final._validate_params()
    except (TypeError, ValueError) as exc:
        found = re.search(r"The '(\w+)' parameter", str(exc))
        at = f"{where}.params.{found.group(1)}" if found else f"{where}.params"
        raise ModelError(f"{at}: {exc}") from exc


def _check_receives_group(cls: type, receives_group: bool, where: str) -> None:
    fit_params = _signature_params(cls.fit)
    named = "sensitive_features" in fit_params
    open_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in fit_params.values())
    needs = named or _is_fairlearn_reduction(cls)
    if needs and not receives_group:
        raise ModelError(
            f"{where}.receives_group: {cls.__name__} needs the group in fit "
            "(sensitive_features); set receives_group: true"
        )
    # A Pipeline's **params are routed to steps by name and would reject sensitive_features.
    accepts = needs or (open_kwargs and not issubclass(cls, Pipeline))
    if receives_group and not accepts:
        raise ModelError(
            f"{where}.receives_group: {cls.__name__}.fit does not take sensitive_features; "
            "set receives_group: false (add the group to the features if the model should see it)"
        )


# --------------------------------------------------------------------------------------------
# Threshold policies
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThresholdPolicy:
    """How to pick the threshold that turns scores into predictions (``score >= threshold``).

    Attributes
    ----------
    kind : {"fixed", "sensitivity", "specificity", "max_f1", "top_fraction"}
    threshold : float or None
        For ``fixed`` only.
    target : float or None
        For ``sensitivity`` and ``specificity`` only.
    fraction : float or None
        For ``top_fraction`` only: the share of the scored population to flag.

    See :func:`choose_threshold` for the exact rules.
    """

    kind: Literal["fixed", "sensitivity", "specificity", "max_f1", "top_fraction"] = "fixed"
    threshold: float | None = 0.5
    target: float | None = None
    fraction: float | None = None


_POLICY_KEYS: dict[str, tuple[str, ...]] = {
    "fixed": ("kind", "threshold"),
    "sensitivity": ("kind", "target"),
    "specificity": ("kind", "target"),
    "max_f1": ("kind",),
    "top_fraction": ("kind", "fraction"),
}


def parse_threshold_policy(
    d: Mapping[str, Any] | None,
    *,
    source: str = "<scenario>",
    key: str = "experiment.threshold",
) -> ThresholdPolicy:
    """Parse ``{kind: ..., ...}`` into a :class:`ThresholdPolicy`.

    Accepted forms: ``None`` (the default, fixed 0.5); ``{kind: fixed, threshold: t}`` with ``t``
    in [0, 1] (default 0.5); ``{kind: sensitivity, target: s}`` and
    ``{kind: specificity, target: s}`` with ``s`` in (0, 1]; ``{kind: max_f1}``;
    ``{kind: top_fraction, fraction: f}`` with ``f`` in (0, 1].

    Raises
    ------
    ModelError
        With a one-line message naming ``source``, the key path, what was found and what is
        allowed.
    """
    where = f"{source}: {key}"
    if d is None:
        return ThresholdPolicy()
    if not isinstance(d, Mapping):
        raise ModelError(
            f"{where}: expected a mapping like {{kind: fixed, threshold: 0.5}}, got {d!r}"
        )
    kinds = ", ".join(_POLICY_KEYS)
    if "kind" not in d:
        raise ModelError(f"{where}: missing key 'kind'; allowed kinds are {kinds}")
    kind = d["kind"]
    if kind not in _POLICY_KEYS:
        raise ModelError(
            f"{where}.kind: unknown threshold policy {kind!r}; allowed kinds are {kinds}"
        )
    for k in d:
        if k not in _POLICY_KEYS[kind]:
            raise ModelError(
                f"{where}: unknown key {k!r} for kind {kind}; "
                f"allowed keys are {', '.join(_POLICY_KEYS[kind])}"
            )
    if kind == "fixed":
        t = _number(d.get("threshold", 0.5), f"{where}.threshold", low=0.0, low_open=False)
        return ThresholdPolicy(kind="fixed", threshold=t, target=None)
    if kind == "max_f1":
        return ThresholdPolicy(kind="max_f1", threshold=None, target=None)
    if kind == "top_fraction":
        if "fraction" not in d:
            raise ModelError(
                f"{where}: missing key 'fraction' for kind top_fraction; expected a number in (0, 1]"
            )
        f = _number(d["fraction"], f"{where}.fraction", low=0.0, low_open=True)
        return ThresholdPolicy(kind="top_fraction", threshold=None, target=None, fraction=f)
    if "target" not in d:
        raise ModelError(
            f"{where}: missing key 'target' for kind {kind}; expected a number in (0, 1]"
        )
    target = _number(d["target"], f"{where}.target", low=0.0, low_open=True)
    return ThresholdPolicy(kind=kind, threshold=None, target=target)


def _number(value: Any, where: str, *, low: float, low_open: bool) -> float:
    interval = f"{'(' if low_open else '['}{low:g}, 1]"
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and value <= 1
    if not ok:
        raise ModelError(f"{where}: expected a number in {interval}, got {value!r}")
    return float(value)


def choose_threshold(policy: ThresholdPolicy, y_val: np.ndarray, score_val: np.ndarray, *,
                     scored: np.ndarray | None = None) -> float:
    """Choose the threshold; predictions are then ``score >= threshold``.

    Every policy but ``top_fraction`` chooses on validation data; ``top_fraction`` ranks the
    population the predictions are for (``scored``), as a programme that enrols the top k% of the
    patients it scores does.

    Candidate thresholds are the distinct validation scores plus ``np.nextafter(max score, inf)``
    (the threshold that predicts no positives). Sensitivity is ``TP / P`` and specificity
    ``TN / N``, computed in float64 and compared with the target by ``>=``, where a row counts as
    predicted positive when ``score >= threshold``. Rules:

    * ``fixed``: the policy's threshold; the validation data are not used.
    * ``sensitivity``: the highest candidate whose sensitivity is ``>= target``. This is the
      ``k``-th highest score among the positives, ``k`` the smallest count with ``k / P >= target``;
      ties at that score are all predicted positive, so sensitivity may exceed the target.
      It is also the highest real threshold with sensitivity ``>= target``.
    * ``specificity``: the lowest candidate whose specificity is ``>= target``. Rows tied at the
      chosen score are all predicted positive, so negatives tied with it count against it.
    * ``max_f1``: the candidate maximising ``F1 = 2 TP / (2 TP + FP + FN)`` (0 when ``TP = 0``);
      among equal F1 values the highest threshold wins (as Seyyed-Kalantari et al., 2021,
      *Nature Medicine*, chose operating points by F1 on validation data).
    * ``top_fraction``: the ``m``-th highest of the ``n`` scored scores, ``m`` the smallest count
      with ``m / n >= fraction`` (compared in float64, so 3% of 100 is 3, not 4). No label is
      used. Rows tied with the ``m``-th score are all flagged, so with ties at the boundary more
      than ``m`` rows may be flagged; with distinct scores exactly ``m`` are.

    Parameters
    ----------
    policy : ThresholdPolicy
    y_val : ndarray of shape (n,)
        Validation labels, 0/1.
    score_val : ndarray of shape (n,)
        Validation scores (from :meth:`FittedModel.predict_score`).
    scored : ndarray, optional
        The scores of the population the predictions are for (the test cohort in a run), ranked by
        ``top_fraction``; default ``score_val``. Other policies ignore it.

    Returns
    -------
    float

    Raises
    ------
    ModelError
        When the validation labels lack the class a policy needs (positives for ``sensitivity``
        and ``max_f1``, negatives for ``specificity``), or the scores contain NaN (or, for
        ``top_fraction``, there are no scores to rank).
    """
    if policy.kind == "fixed":
        return float(policy.threshold if policy.threshold is not None else 0.5)
    if policy.kind == "top_fraction":
        return _top_fraction_threshold(
            np.asarray(score_val if scored is None else scored, dtype=np.float64), policy.fraction
        )
    y = np.asarray(y_val)
    s = np.asarray(score_val, dtype=np.float64)
    if y.ndim != 1 or s.shape != y.shape:
        raise ValueError(
            f"y_val and score_val must be 1-D of equal length, got {y.shape}, {s.shape}"
        )
    if np.isnan(s).any():
        raise ModelError(f"threshold policy '{policy.kind}': validation scores contain NaN")
    thresholds, tp, fp = _threshold_counts(y.astype(bool), s)
    n_pos = int(tp[-1])
    n_neg = int(fp[-1])
    if policy.kind in ("sensitivity", "max_f1") and n_pos == 0:
        raise ModelError(
            f"threshold policy '{policy.kind}': validation labels contain no positives; "
            "the policy needs at least one"
        )
    if policy.kind == "specificity" and n_neg == 0:
        raise ModelError(
            "threshold policy 'specificity': validation labels contain no negatives; "
            "the policy needs at least one"
        )
    if policy.kind == "sensitivity":
        # Thresholds descend, so sensitivity rises along the array: take the first that passes.
        ok = tp / n_pos >= policy.target
        return float(thresholds[np.argmax(ok)])
    if policy.kind == "specificity":
        # Specificity falls along the array (index 0 predicts nothing positive): take the last.
        ok = (n_neg - fp) / n_neg >= policy.target
        return float(thresholds[np.flatnonzero(ok)[-1]])
    f1 = 2.0 * tp / (tp + fp + n_pos)  # 2TP / (2TP + FP + FN) with FN = P - TP
    return float(thresholds[np.argmax(f1)])  # argmax takes the first, i.e. highest, on ties


def _top_fraction_threshold(s: np.ndarray, fraction: float | None) -> float:
    """The ``m``-th highest score, ``m`` the smallest count with ``m / n >= fraction``."""
    if s.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {s.shape}")
    if s.size == 0:
        raise ModelError("threshold policy 'top_fraction': no scores to rank")
    if np.isnan(s).any():
        raise ModelError("threshold policy 'top_fraction': scores contain NaN")
    n = s.size
    f = 1.0 if fraction is None else float(fraction)
    # ceil(f * n) can be one too many in floating point (0.07 * 100 = 7.000000000000001), so the
    # count is settled by the same float comparison the rule states
    m = min(n, max(1, math.ceil(f * n)))
    while m > 1 and (m - 1) / n >= f:
        m -= 1
    while m < n and m / n < f:
        m += 1
    return float(np.partition(s, n - m)[n - m])


def _threshold_counts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate thresholds in descending order, with TP and FP counts at each.

    Entry 0 is ``nextafter(max, inf)`` (no positives predicted); entry ``i > 0`` is the ``i``-th
    highest distinct score, with counts of rows whose score is ``>=`` it.
    """
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    y_sorted = y[order]
    tps = np.cumsum(y_sorted, dtype=np.int64)
    fps = np.cumsum(~y_sorted, dtype=np.int64)
    # Last position of each run of equal scores: all tied rows fall on the same side.
    last = (
        np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1]
        if s.size
        else np.array([], dtype=np.intp)
    )
    top = np.nextafter(s_sorted[0], np.inf) if s.size else 0.5
    thresholds = np.r_[top, s_sorted[last]]
    tp = np.r_[0, tps[last]].astype(np.float64)
    fp = np.r_[0, fps[last]].astype(np.float64)
    return thresholds, tp, fp
