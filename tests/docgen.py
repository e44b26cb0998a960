"""The parts of the docs that are generated from the code: ``python -m tests.docgen [--check]``.

A generated part sits between two markers in a Markdown file::

    <!-- generated: settings -->
    ...
    <!-- end generated: settings -->

``make docs`` rewrites every such part from the code; the test suite fails when one differs from
what the code generates now (``--check`` says which).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from common.contracts import load_contracts, reasons
from common.settings import ENV_PREFIX, PROJECT_JARS, Settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NONE = "\N{EN DASH}"  # a setting without a default
_BLOCK = re.compile(
    r"(<!-- generated: (?P<name>[a-z-]+) -->\n)(?P<body>.*?)(<!-- end generated: (?P=name) -->)", re.DOTALL
)


def _default(name: str, field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
        return NONE if not value else f"`{value}`"
    value = field.default
    if value is PydanticUndefined or value is None or value == "":
        return NONE
    if name == "jars_dir" and value == str(PROJECT_JARS):
        return "`<checkout>/.jars`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def settings_table() -> str:
    """Every setting of :class:`common.settings.Settings`: flag, variable, default, meaning."""
    lines = ["| flag | environment variable | default | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        description = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{flag}` | `{ENV_PREFIX}{name.upper()}` | {_default(name, field)} | {description} |")
    return "\n".join(lines) + "\n"


def reason_codes_table() -> str:
    """Every reason code the packaged contracts can give, per dataset, with its severity and meaning."""
    lines = ["| dataset | reason code | severity | meaning |", "|---|---|---|---|"]
    for name, contract in load_contracts().items():
        warnings = {code for code, _ in contract.rules_of("warn")}
        parking = {
            reasons.parent_missing_code(fk.column): fk.park_for_days
            for fk in contract.foreign_keys
            if fk.park_for_days
        }
        for code, meaning in contract.rule_descriptions().items():
            severity = "warning (row kept)" if code in warnings else "error (row quarantined)"
            if code in parking:
                severity = f"error (row parked up to {parking[code]} days, then quarantined)"
            lines.append(f"| `{name}` | `{code}` | {severity} | {meaning.replace('|', chr(92) + '|')} |")
    return "\n".join(lines) + "\n"


GENERATORS: dict[str, Callable[[], str]] = {"settings": settings_table, "reason-codes": reason_codes_table}


def regenerate(text: str) -> str:
    """``text`` with every generated part rewritten from the code.

    Raises:
        KeyError: a marker names a part nobody generates.
    """
    return _BLOCK.sub(lambda m: m.group(1) + GENERATORS[m.group("name")]() + m.group(4), text)


def parts(text: str) -> list[str]:
    """The names of the generated parts in ``text``, in order."""
    return [m.group("name") for m in _BLOCK.finditer(text)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.docgen", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a part is stale")
    args = parser.parse_args(argv)
    stale = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        new = regenerate(text)
        if new != text:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(new, encoding="utf-8")
    for path in stale:
        print(f"{path}: {'stale (run make docs)' if args.check else 'regenerated'}")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
