"""Regimes of the minimal reduced engine: which fused update a configuration needs.

A regime fixes the *structure* of the dynamics, not its numbers: whether W_V trains (lr_v > 0) and whether
subject-only (S) or counterfactual-augmented (AUG) points exist. C and C+S points are in every regime (a
class of size 0 is handled numerically: zero weight, NaN records). Within a regime every number (class and
vocabulary sizes, learning rates, delta's, o's) is a traced input, so one compilation serves all of its
configurations. A regime *covers* a configuration when it has every feature the configuration needs; the
update of a larger regime is still exact for it (the extra coordinates stay at zero), so a batch of mixed
configurations runs in the union of their regimes.
"""

import dataclasses

from ..config._config import Config


@dataclasses.dataclass(frozen=True, order=True)
class Regime:
    """The structural features of a run that select its fused update."""

    value_trained: bool = False  # lr_v > 0: Delta W_V moves
    subject_only: bool = False  # S points [s, r] -> a
    augmented: bool = False  # counterfactual-augmented points

    @property
    def name(self) -> str:
        """Identifier of the regime's generated functions, e.g. ``qk``, ``qkv_s_aug``."""
        parts = ["qkv" if self.value_trained else "qk"]
        if self.subject_only:
            parts.append("s")
        if self.augmented:
            parts.append("aug")
        return "_".join(parts)

    @property
    def classes(self) -> tuple[str, ...]:
        """Classes (symbols of :data:`cpi_theory.reduced._symbolic.CLASSES`) whose points the update sees."""
        return ("C", "CS") + (("S",) if self.subject_only else ()) + (("AUG",) if self.augmented else ())

    def covers(self, other: "Regime") -> bool:
        """Whether this regime's update is exact for runs of ``other`` (it has all of its features)."""
        return all(getattr(self, f.name) or not getattr(other, f.name) for f in dataclasses.fields(self))

    def union(self, other: "Regime") -> "Regime":
        """The smallest regime covering both."""
        return Regime(
            **{f.name: getattr(self, f.name) or getattr(other, f.name) for f in dataclasses.fields(self)}
        )


#: Every regime, in a fixed order (the order of the generated module).
REGIMES = tuple(
    Regime(value_trained=v, subject_only=s, augmented=a)
    for v in (False, True)
    for s in (False, True)
    for a in (False, True)
)


def regime_of(config: Config) -> Regime:
    """The smallest regime covering ``config``: W_V trained iff lr_v > 0, S / AUG iff those classes exist."""
    _, _, n_s, n_aug = config.class_counts()
    return Regime(value_trained=config.lr_v > 0, subject_only=n_s > 0, augmented=n_aug > 0)
