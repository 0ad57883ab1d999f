"""``cpi-theory reproduce --check``: do regenerated figures agree with the published ones?

Compared, per figure: every number of its ``INDEX.md`` entry (``index/FN.json``: the table and the notes)
and every data variable, coordinate and numeric attribute of its data file, each at the figure's tolerance.
A figure module may declare ``CHECK_TOLERANCES`` (variable name -> relative tolerance) for what is not an
exact computation (F7's optimizer outputs); everything else is held to :data:`EXACT`. Differences are
measured relative to the largest magnitude of the reference variable, so that an entry near zero in a
variable of order one is not held to a tolerance below the variable's rounding.

A number printed in the index (``0.5684``) may also differ by one unit of its last printed digit: an exact
value on a rounding edge can print either way. Integers must be equal. The text around the numbers must be
identical. Byte-identical files are counted and reported, not required (bytes are guaranteed only on the
same machine with the same package versions).
"""

import dataclasses
import json
import math
import pathlib
import re

EXACT = 1e-12  # exact engines: float64 rounding, accumulated differently by different CPUs / BLAS
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


@dataclasses.dataclass
class FigureCheck:
    """The comparison of one figure; ``problems`` lists every disagreement (empty: it agrees)."""

    figure: str
    numbers: int = 0  # index numbers compared
    variables: int = 0  # data variables, coordinates and attributes compared
    worst: float = 0.0  # largest difference / its tolerance (<= 1 agrees)
    worst_item: str = ""
    files_identical: int = 0
    files: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def agrees(self) -> bool:
        return not self.problems

    def note(self, item: str, ratio: float) -> None:
        if ratio > self.worst or not self.worst_item:
            self.worst, self.worst_item = ratio, item
        if not ratio <= 1.0:
            self.problems.append(f"{item}: {ratio:.3g} x the tolerance")


def _tolerances(module) -> dict:
    return dict(getattr(module, "CHECK_TOLERANCES", {})) if module is not None else {}


def _last_digit(text: str) -> float:
    """One unit of the last printed digit of a formatted float (``"0.5684"`` -> 1e-4, ``"1.2e-05"`` -> 1e-6)."""
    mantissa, _, exponent = text.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (-decimals + (int(exponent) if exponent else 0))


def compare_text(reference: str, candidate: str, tolerance: float) -> float | None:
    """The largest difference of the numbers in two strings in units of what is allowed (None when the text
    around the numbers differs, or the count of numbers)."""
    if _NUMBER.split(reference) != _NUMBER.split(candidate):
        return None
    ref, new = _NUMBER.findall(reference), _NUMBER.findall(candidate)
    if len(ref) != len(new):
        return None
    worst = 0.0
    for a, b in zip(ref, new, strict=True):
        x, y = float(a), float(b)
        if not any(c in a + b for c in ".eE"):  # integers: equal
            worst = max(worst, 0.0 if x == y else math.inf)
            continue
        allowed = tolerance * max(abs(x), abs(y)) + _last_digit(a) * (1 + 1e-9)
        worst = max(worst, abs(x - y) / allowed if allowed > 0 else (0.0 if x == y else math.inf))
    return worst


def _entry(folder: pathlib.Path, figure: str) -> dict:
    return json.loads((folder / "index" / f"{figure}.json").read_text())


def _compare_index(check: FigureCheck, ref: dict, new: dict, tolerance: float) -> None:
    for key in ("title", "quick", "files"):
        if ref.get(key) != new.get(key):
            check.problems.append(f"index {key}: {new.get(key)!r} instead of {ref.get(key)!r}")
    # Quantities are compared in order, their names too: a name may hold a number (a bound, a dose).
    ref_rows, new_rows = list(ref["numbers"].items()), list(new["numbers"].items())
    if len(ref_rows) != len(new_rows):
        check.problems.append(f"index: {len(new_rows)} quantities instead of {len(ref_rows)}")
        return
    texts = []
    for (ref_key, ref_value), (new_key, new_value) in zip(ref_rows, new_rows, strict=True):
        texts += [
            (f"index name '{ref_key}'", ref_key, new_key),
            (f"index '{ref_key}'", str(ref_value), str(new_value)),
        ]
    ref_notes, new_notes = ref.get("notes", []), new.get("notes", [])
    if len(ref_notes) != len(new_notes):
        check.problems.append(f"index: {len(new_notes)} notes instead of {len(ref_notes)}")
    else:
        texts += [
            (f"index note {i + 1}", a, b) for i, (a, b) in enumerate(zip(ref_notes, new_notes, strict=True))
        ]
    for item, a, b in texts:
        ratio = compare_text(a, b, tolerance)
        check.numbers += len(_NUMBER.findall(a))
        if ratio is None:
            check.problems.append(f"{item}: {b!r} instead of {a!r}")
        else:
            check.note(item, ratio)


def _compare_arrays(check: FigureCheck, name: str, ref, new, tolerance: float) -> None:
    import numpy as np

    ref, new = np.asarray(ref), np.asarray(new)
    check.variables += 1
    if ref.shape != new.shape:
        check.problems.append(f"{name}: shape {new.shape} instead of {ref.shape}")
        return
    if ref.dtype.kind not in "biuf" or new.dtype.kind not in "biuf":
        if not np.array_equal(ref.astype(str), new.astype(str)):
            check.problems.append(f"{name}: labels differ")
        return
    ref, new = ref.astype(np.float64), new.astype(np.float64)
    if not np.array_equal(np.isnan(ref), np.isnan(new)) or not np.array_equal(
        ref[np.isinf(ref)], new[np.isinf(new)]
    ):
        check.problems.append(f"{name}: NaN or infinite entries differ")
        return
    finite = np.isfinite(ref)
    if not finite.any():
        return
    scale = float(np.max(np.abs(ref[finite])))
    diff = float(np.max(np.abs(ref[finite] - new[finite])))
    allowed = tolerance * scale if scale > 0 else tolerance
    check.note(f"data {name}", diff / allowed)


def _compare_data(
    check: FigureCheck, ref_path: pathlib.Path, new_path: pathlib.Path, tolerances: dict
) -> None:
    from ._data import load_dataset

    ref, new = load_dataset(str(ref_path)), load_dataset(str(new_path))
    stem = ref_path.stem
    for kind, a, b in (("variables", ref.data_vars, new.data_vars), ("coordinates", ref.coords, new.coords)):
        if set(a) != set(b):
            check.problems.append(f"{stem}: {kind} {sorted(map(str, b))} instead of {sorted(map(str, a))}")
        for name in a:
            if name in b:
                if a[name].dims != b[name].dims:
                    check.problems.append(
                        f"{stem}.{name}: dimensions {b[name].dims} instead of {a[name].dims}"
                    )
                    continue
                tol = tolerances.get(str(name), tolerances.get("default", EXACT))
                _compare_arrays(check, f"{stem}.{name}", a[name].values, b[name].values, tol)
    if set(ref.attrs) != set(new.attrs):
        check.problems.append(f"{stem}: attributes {sorted(new.attrs)} instead of {sorted(ref.attrs)}")
    for key in ref.attrs:
        if key in new.attrs:
            a, b = ref.attrs[key], new.attrs[key]
            if isinstance(a, str) or isinstance(b, str):
                if a != b:
                    check.problems.append(f"{stem} attribute {key}: differs")
            else:
                tol = tolerances.get(str(key), tolerances.get("default", EXACT))
                _compare_arrays(check, f"{stem}.attrs[{key}]", a, b, tol)


def check_figure(figure: str, reference: str, candidate: str, module=None) -> FigureCheck:
    """Compare figure ``figure`` of the folder ``candidate`` with that of ``reference`` (module docstring);
    ``module`` is the figure's module (for its ``CHECK_TOLERANCES``)."""
    ref_dir, new_dir = pathlib.Path(reference), pathlib.Path(candidate)
    check = FigureCheck(figure)
    tolerances = _tolerances(module)
    ref_entry, new_entry = _entry(ref_dir, figure), _entry(new_dir, figure)
    _compare_index(check, ref_entry, new_entry, max([EXACT, *tolerances.values()]))
    for name in ref_entry["files"]:
        ref_file, new_file = ref_dir / name, new_dir / name
        if not new_file.is_file():
            check.problems.append(f"{name}: missing")
            continue
        check.files += 1
        check.files_identical += ref_file.read_bytes() == new_file.read_bytes()
        if name.endswith(".nc"):
            _compare_data(check, ref_file, new_file, tolerances)
    return check


def check_table(checks: list[FigureCheck]) -> str:
    """One row per figure, then every disagreement."""
    rows = [("figure", "numbers", "data", "worst / tolerance", "worst at", "identical files", "verdict")]
    for c in checks:
        where = c.worst_item if c.worst > 0 else "-"
        where = where if len(where) <= 48 else where[:45] + "..."
        rows.append((c.figure, str(c.numbers), str(c.variables), f"{c.worst:.2g}", where,
                     f"{c.files_identical}/{c.files}", "agrees" if c.agrees else "DISAGREES"))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    for c in checks:
        lines += [f"{c.figure}: {p}" for p in c.problems]
    return "\n".join(lines)
