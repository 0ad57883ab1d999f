"""The data classes of SPEC.md §4 and §7: one vocabulary for the config keys, the per-class records, the
sympy symbols, the figure labels and the bridge.

Every spelling of a class lives here, on one member: ``key`` (the name in per-class records and results
files, e.g. ``"non_context_critical"``), ``count_key`` (its Config field), ``label`` (the paper's short name
used in figures, reports and the bridge, ``"C+S"``) and ``symbol`` (the identifier-safe short name of the
sympy derivation, ``"CS"``). Members are in the order of every per-class array.
"""

import enum


class DataClass(enum.Enum):
    """A kind of training point (SPEC.md §4, §7)."""

    #: ``[c, s, r] -> c``, the subject is not memorized: only the context can answer.
    CONTEXT_CRITICAL = ("context_critical", "C", "C")
    #: ``[c, s, r] -> c`` where ``(s, c)`` is a memorized fact: context-redundant (C+S).
    NON_CONTEXT_CRITICAL = ("non_context_critical", "C+S", "CS")
    #: ``[s, r] -> a`` where ``(s, a)`` is memorized: fact recall without context.
    SUBJECT_ONLY = ("subject_only", "S", "S")
    #: ``[c, s, r] -> c`` where ``s`` memorized a different answer: counterfactual augmentation.
    COUNTERFACTUAL_AUGMENTED = ("counterfactual_augmented", "AUG", "AUG")

    def __init__(self, key: str, label: str, symbol: str):
        self.key = key
        self.label = label
        self.symbol = symbol

    @property
    def count_key(self) -> str:
        """The Config field holding this class's number of points, e.g. ``n_non_context_critical``."""
        return f"n_{self.key}"

    @property
    def index(self) -> int:
        """Position in every per-class array (and the ``data_class`` id of a world's points)."""
        return _ORDER.index(self)

    @property
    def has_context(self) -> bool:
        return self is not DataClass.SUBJECT_ONLY

    @classmethod
    def from_name(cls, name: str) -> "DataClass":
        """The member spelled ``name`` in any of its forms (key, count key, label or symbol)."""
        for member in cls:
            if name in (member.key, member.count_key, member.label, member.symbol, member.name):
                return member
        raise ValueError(f"unknown data class {name!r} (one of {', '.join(m.label for m in cls)})")


_ORDER = tuple(DataClass)

#: Per-class record names in array order (the ``data_class`` coordinate of results files).
DATA_CLASSES = tuple(member.key for member in DataClass)
