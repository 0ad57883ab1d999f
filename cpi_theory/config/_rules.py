"""The one table of rules a configuration must keep: for one run (:class:`Config`) and columns of runs alike.

Each :class:`Rule` reads some keys (the names of :class:`Config`'s fields) and says, elementwise, where it
holds: given Python numbers it answers for one run; given NumPy columns it answers for every run at once
(the sweep's vectorized validation, :meth:`ToyParams.validate`). The refusal names ``key`` and gives
``message`` (computed from one run's values), so the command line says the same thing whichever way the
run came in. ``Config``'s checks are the one-row case of this table; an engine adds rules of its own
(the full engine's integer class counts) on its registration.
"""

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from ._data_class import DataClass


class _LazyNumPy:
    """``np.floor`` and friends, importing NumPy on first use: the command line reads this table (its help
    and its argument checks) before NumPy or JAX are loaded."""

    def __getattr__(self, name):
        import numpy

        return getattr(numpy, name)


np = _LazyNumPy()

#: The Config fields holding the point counts of the data classes, in DataClass order.
CLASS_COUNT_KEYS = tuple(data_class.count_key for data_class in DataClass)
#: Keys that must hold whole numbers (besides ``steps`` and ``record_every``, which are not per run).
INTEGER_KEYS = ("n_answers", "n_subjects")

Values = Mapping[str, Any]  # key -> a number (one run) or an array (a column of runs)


@dataclasses.dataclass(frozen=True)
class Rule:
    """One rule: where it ``holds`` (elementwise over runs), the ``key`` a run that breaks it is refused
    for, the keys it ``reads``, and the ``message`` for one run's values (after ``key: ``)."""

    key: str
    reads: tuple[str, ...]
    holds: Callable[[Values], Any]
    message: Callable[[Values], str]

    def first_broken(self, values: Values) -> int | None:
        """The first run (index into the columns of ``values``) that breaks the rule, or None."""
        ok = np.asarray(self.holds(values))
        if ok.all():
            return None
        return int(np.argmin(ok.ravel()))


def class_total(v: Values):
    """Training points of all classes (a sum over DataClass order)."""
    return sum(v[key] for key in CLASS_COUNT_KEYS)


def subjects_needed(v: Values):
    """Distinct subjects: one per training point plus the counterfactual test subject s*."""
    return class_total(v) + 1


def answers_needed(v: Values):
    """Distinct answers: one per C/C+S/S point, two per augmented point (context and memory), c* and a*."""
    n_c, n_cs, n_s, n_aug = (v[key] for key in CLASS_COUNT_KEYS)
    return n_c + n_cs + n_s + 2 * n_aug + 2


def _whole(x):
    """Whether ``x`` holds whole numbers (elementwise for columns; no NumPy for one Python number)."""
    if isinstance(x, int | float):
        return float(x).is_integer()
    return np.floor(x) == x


def _integral(key: str) -> Rule:
    return Rule(
        key,
        (key,),
        lambda v: _whole(v[key]),
        lambda v: f"must be an integer, got {v[key]!r}",
    )


def _probability(key: str) -> Rule:
    return Rule(
        key,
        (key,),
        lambda v: (v[key] > 0.0) & (v[key] < 1.0),
        lambda v: f"must be a probability strictly between 0 and 1, got {v[key]}",
    )


def _value_logit(key: str) -> Rule:
    # exp(o) enters the normaliser Z of the value table; beyond ~709 it overflows to inf.
    return Rule(
        key,
        (key,),
        lambda v: abs(v[key]) <= 700.0,
        lambda v: f"must lie in [-700, 700] (exp({key}) must be finite), got {v[key]}",
    )


def _rate(key: str) -> Rule:
    return Rule(
        key, (key,), lambda v: v[key] >= 0.0, lambda v: f"must be >= 0 (a learning rate), got {v[key]}"
    )


def _count(key: str) -> Rule:
    return Rule(
        key, (key,), lambda v: v[key] >= 0, lambda v: f"must be >= 0 (a count of points), got {v[key]}"
    )


# In the order Config checks them: the first rule a run breaks is the one it is refused for.
RULES: tuple[Rule, ...] = (
    *(_integral(key) for key in INTEGER_KEYS),
    Rule(
        "n_answers",
        ("n_answers",),
        lambda v: v["n_answers"] >= 2,
        lambda v: f"must be >= 2, got {v['n_answers']}",
    ),
    Rule(
        "n_subjects",
        ("n_subjects",),
        lambda v: v["n_subjects"] >= 1,
        lambda v: f"must be >= 1, got {v['n_subjects']}",
    ),
    *(_count(key) for key in CLASS_COUNT_KEYS),
    Rule(
        "n_context_critical",
        CLASS_COUNT_KEYS,
        lambda v: class_total(v) > 0,
        lambda v: "the training set is empty: every class count is 0",
    ),
    *(_probability(key) for key in ("delta_c", "delta_m")),
    Rule(
        "delta_m",
        ("delta_c", "delta_m"),
        lambda v: v["delta_m"] > 2 * v["delta_c"],
        lambda v: (
            "must be > 2*delta_c (memory beats self-copy, paper Assumption 6), got "
            f"delta_m={v['delta_m']}, delta_c={v['delta_c']}"
        ),
    ),
    *(_value_logit(key) for key in ("o_c", "o_r")),
    *(_rate(key) for key in ("lr_kq", "lr_v")),
    Rule(
        "n_subjects",
        ("n_subjects", *CLASS_COUNT_KEYS),
        lambda v: v["n_subjects"] >= subjects_needed(v),
        lambda v: (
            f"vocabulary too small: the requested points need {subjects_needed(v)} distinct subjects "
            f"(one per training point plus the test subject), got n_subjects={v['n_subjects']}"
        ),
    ),
    Rule(
        "n_answers",
        ("n_answers", *CLASS_COUNT_KEYS),
        lambda v: v["n_answers"] >= answers_needed(v),
        lambda v: (
            f"vocabulary too small: the requested points need {answers_needed(v)} distinct answers "
            "(one per C, C+S and S point, two per augmented point, plus c* and a*), got n_answers="
            f"{v['n_answers']}"
        ),
    ),
)

#: The rule of the initial attention tilt, a parameter of runs that is not a Config key (see ToyParams).
CONTEXT_BIAS_RULE = Rule(
    "context_bias",
    ("context_bias",),
    lambda v: np.isfinite(v["context_bias"]),
    lambda v: f"must be finite, got {v['context_bias']!r}",
)

#: The full d x d engine's own rule: a world has whole points (real class sizes are the reduced engine's).
INTEGER_CLASS_COUNT_RULES: tuple[Rule, ...] = tuple(
    Rule(
        key,
        (key,),
        lambda v, key=key: _whole(v[key]),
        lambda v, key=key: (
            f"the full engine needs integer class counts, got {v[key]!r}; real class sizes need --engine reduced"
        ),
    )
    for key in CLASS_COUNT_KEYS
)
