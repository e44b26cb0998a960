"""The README's `make run` output is what `make run` prints: the demo batch, made exactly as
`make demo-data` makes it, validated, and the README's lines found in the job's output."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from jobs import generate, validate

ROOT = Path(__file__).resolve().parents[2]


def _demo_generate_args(out: Path) -> list[str]:
    """The generator's command line in the Makefile's demo-data recipe, writing to ``out``."""
    recipe = re.search(
        r"^demo-data:.*\n\t\$\(PY\) -m jobs\.generate (.*)$", (ROOT / "Makefile").read_text(), re.M
    )
    assert recipe, "the Makefile's demo-data target no longer runs jobs.generate"
    return [str(out) if word == "$(DEMO)" else word for word in shlex.split(recipe.group(1))]


def _readme_output() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- make-run-output -->\n```\n(.*?)```\n<!-- end make-run-output -->", readme, re.S)
    assert block, "the README lost its make run output block"
    return block.group(1).splitlines()


@pytest.mark.integration
def test_the_readme_shows_what_make_run_prints(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert generate.main(_demo_generate_args(tmp_path / "demo")) == 0
    capsys.readouterr()
    manifest = tmp_path / "demo" / "manifest.json"
    argv = ["--manifest", str(manifest), "--lake-root", str(tmp_path / "lake"), "--log-format", "text"]
    assert validate.main(argv, spark=spark) == 0
    printed = capsys.readouterr().out.splitlines()
    shown = _readme_output()
    assert printed[: len(shown)] == shown
