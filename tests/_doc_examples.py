"""The documented command-line examples whose output is shown: ``$ cpi-theory ...`` followed by what it
prints, in a fenced block or an indented one, in the README and every Markdown file of docs/ and the
package. Used by tests/test_readme.py (runs them) and tests/test_advise.py (the advisor's, on its fixture)."""

import dataclasses
import pathlib
import re
import shlex

FILES = ("README.md", "docs/*.md", "cpi_theory/**/*.md", "experiments/*.md")


@dataclasses.dataclass(frozen=True)
class Example:
    where: str  # file:line
    argv: tuple[str, ...]  # after "cpi-theory"
    shown: str  # the lines printed below the command

    @property
    def id(self) -> str:
        return f"{self.where} {' '.join(self.argv[:2])}"


def documented_examples(root: pathlib.Path) -> list[Example]:
    found = []
    for pattern in FILES:
        for path in sorted(root.glob(pattern)):
            lines = path.read_text().splitlines()
            for i, line in enumerate(lines):
                match = re.match(r"^(\s*)\$ cpi-theory (.*)$", line)
                if not match:
                    continue
                indent = match.group(1)
                shown = []
                for following in lines[i + 1 :]:
                    if indent:  # an indented block ends at the first line outside it
                        if not following.startswith(indent) or not following.strip():
                            break
                    elif following.startswith("```"):  # a fenced block (blank lines are output)
                        break
                    shown.append(following[len(indent) :])
                where = f"{path.relative_to(root)}:{i + 1}"
                found.append(Example(where, tuple(shlex.split(match.group(2))), "\n".join(shown)))
    return found


def printed(out: str, err: str) -> str:
    """What a user sees, as the docs show it: stdout, then stderr, without the status lines (``cpi-theory
    VERB: ...``, elapsed times) and the ``wrote PATHS`` line (its paths are the test's temporary ones)."""
    lines = [line for line in (out + err).splitlines() if not line.startswith(("cpi-theory ", "wrote "))]
    return "\n".join(lines)
