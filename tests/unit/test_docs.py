"""The README and docs/ tell the truth: every command they show parses against the code it names,
and every generated part (settings, reason codes) is what the code generates now."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from common.errors import ConfigurationError
from common.settings import load_settings
from tests import docgen

ROOT = docgen.ROOT
MAKEFILE = (ROOT / "Makefile").read_text()
_FENCE = re.compile(r"^```(?P<lang>[a-z]*)\n(?P<body>.*?)^```", re.DOTALL | re.MULTILINE)
JOBS_WITH_SETTINGS = {"validate", "transform", "run", "maintain"}


def shell_commands(text: str) -> list[str]:
    """Each command of the ```bash blocks: continuation lines joined, comments dropped."""
    out = []
    for block in _FENCE.finditer(text):
        if block.group("lang") != "bash":
            continue
        joined = block.group("body").replace("\\\n", " ")
        for line in joined.splitlines():
            if shlex.split(line, comments=True):
                out.append(line)
    return out


def _documented() -> list[tuple[str, str]]:
    return [(str(p.relative_to(ROOT)), cmd) for p in docgen.DOCS for cmd in shell_commands(p.read_text())]


# --- one checker per kind of command: each raises AssertionError (or SystemExit) when it breaks ----


def _make_targets() -> set[str]:
    return set(re.findall(r"^([a-zA-Z][\w-]*):(?!=)", MAKEFILE, re.MULTILINE))


def check_make(args: list[str]) -> None:
    assigned = dict(a.split("=", 1) for a in args if "=" in a)
    targets = [a for a in args if "=" not in a]
    assert targets, "make without a target: name the target"
    unknown = sorted(set(targets) - _make_targets())
    assert not unknown, f"no such make target: {unknown}"
    for name in assigned:
        assert f"$({name})" in MAKEFILE, f"the Makefile reads no variable {name}"
    if "ops" in targets:
        from orchestration.ops import build_parser

        build_parser().parse_args(shlex.split(assigned["CMD"]))


def check_job(job: str, args: list[str]) -> None:
    if job in JOBS_WITH_SETTINGS:
        load_settings(args, prog=f"python -m jobs.{job}")
    elif job == "generate":
        from jobs.generate import parse_args

        parse_args(args)
    elif job == "catalog":
        from jobs.catalog import build_parser

        load_settings(build_parser().parse_known_args(args)[1])
    else:
        raise AssertionError(f"no job {job!r}")


def check_python(args: list[str]) -> None:
    assert args[0] == "-m", "run modules with python -m"
    module, rest = args[1], args[2:]
    if module.startswith("jobs."):
        check_job(module.removeprefix("jobs."), rest)
    elif module == "tests.bench":
        from tests.bench.__main__ import build_parser

        build_parser().parse_args(rest)
    elif module == "tests.docgen":
        assert rest in ([], ["--check"]), rest
    elif module == "pytest":
        check_pytest(rest)
    else:
        raise AssertionError(f"no check for python -m {module}")


def check_pytest(args: list[str]) -> None:
    declared = set(re.findall(r'^    "([a-z]+):', (ROOT / "pyproject.toml").read_text(), re.MULTILINE))
    it = iter(args)
    for arg in it:
        if arg == "-m":
            words = set(re.findall(r"[a-z]+", next(it))) - {"not", "and", "or"}
            assert words <= declared, f"undeclared markers {sorted(words - declared)}"
        elif not arg.startswith("-"):
            assert (ROOT / arg.split("::")[0]).exists(), f"no test path {arg}"


def check_spark_submit(args: list[str]) -> None:
    script = next(i for i, a in enumerate(args) if a.endswith(".py"))
    assert (ROOT / args[script]).exists(), args[script]
    options = args[:script]
    if "--properties-file" in options:
        written = options[options.index("--properties-file") + 1]
        assert written.replace(".jars/", "$(JARS)/") in MAKEFILE, f"make install does not write {written}"
    check_job(Path(args[script]).stem, args[script + 1 :])


def _compose_services() -> set[str]:
    return set(yaml.safe_load((ROOT / "docker/compose.yaml").read_text())["services"])


def check_container(args: list[str]) -> None:
    if args[0] == "compose":
        assert args[1] == "-f" and (ROOT / args[2]).exists(), args[:3]
        rest = [a for a in args[4:] if not a.startswith("-")]
        unknown = set(rest) - _compose_services()
        assert not unknown, f"no compose service {sorted(unknown)}"
    elif args[0] == "run":
        image = next(i for i, a in enumerate(args) if a.startswith("ecom-pipeline:"))
        check_job(args[image + 1], args[image + 2 :])
    else:
        raise AssertionError(f"no check for a container command {args[0]!r}")


CHECKERS: dict[str, Callable[[list[str]], None]] = {
    "make": check_make,
    "python": check_python,
    ".venv/bin/python": check_python,
    "spark-submit": check_spark_submit,
    "docker": check_container,
    "docker/engine": check_container,
}


def check_command(line: str) -> None:
    """Parse one documented command against the code it names.

    Raises:
        AssertionError: the command names a target, flag, job, service or file that does not exist.
        SystemExit: argparse refused the command line.
        ConfigurationError: the jobs' settings refused it.
    """
    words = shlex.split(line, comments=True)
    while "=" in words[0] and not words[0].startswith("-"):  # VAR=value before the command
        words = words[1:]
    assert words[0] in CHECKERS, f"no check for the command {words[0]!r}: add one to {__name__}"
    CHECKERS[words[0]](words[1:])


@pytest.mark.parametrize(
    ("doc", "command"), _documented(), ids=[f"{d}: {c.strip()[:70]}" for d, c in _documented()]
)
def test_every_documented_command_parses_against_the_code(doc: str, command: str) -> None:
    check_command(command)


@pytest.mark.parametrize(
    "broken",
    [
        "make no-such-target",
        "make ops CMD='show'",  # show needs a batch id
        "make deploy STACKNAME=x",  # the Makefile reads STACK
        "python -m jobs.validate --no-such-flag x",
        "python -m jobs.generate --items many",
        "docker compose -f docker/compose.yaml run --rm no-such-service",
        "docker run --rm ecom-pipeline:local no-such-job",
        "spark-submit --properties-file .jars/other.conf jobs/validate.py",
        "python -m pytest -m nosuchmarker",
        "curl http://127.0.0.1",
    ],
)
def test_a_broken_command_is_caught(broken: str) -> None:
    with pytest.raises((AssertionError, SystemExit, ConfigurationError)):
        check_command(broken)


def test_the_docs_show_commands() -> None:
    docs = {doc for doc, _ in _documented()}
    assert {"README.md", "docs/jobs.md", "docs/operations.md", "docs/benchmarks.md"} <= docs


@pytest.mark.parametrize("path", docgen.DOCS, ids=lambda p: p.name)
def test_generated_parts_are_what_the_code_generates(path: Path) -> None:
    text = path.read_text()
    assert docgen.regenerate(text) == text, f"{path.name} is stale: run make docs"


def test_the_settings_and_reason_codes_are_generated_somewhere() -> None:
    found = {name for path in docgen.DOCS for name in docgen.parts(path.read_text())}
    assert found == set(docgen.GENERATORS)


_PATH = re.compile(r"`((?:tests|common|jobs|infra|docker|docs|\.ci)/[\w./-]*\w)`")


def test_every_file_the_docs_name_exists() -> None:
    named = {(p.name, n) for p in docgen.DOCS for n in _PATH.findall(p.read_text())}
    assert len(named) > 10
    assert sorted((doc, n) for doc, n in named if not (ROOT / n).exists()) == []


def test_every_doc_page_is_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        assert f"docs/{page.name}" in readme, page.name
