"""Every code block in the README and in ``docs/`` runs as written, or says why it does not.

A ``python``, ``bash`` or ``sh`` block is executed (in a fresh folder holding the checkout's
``examples/``, ``baselines/`` and ``leaderboards/``, so that its relative paths resolve and its
outputs stay out of the checkout) unless the line before its fence is ``<!-- not run: REASON
-->``: a command that needs the network, a placeholder such as ``model.py`` for the reader's
own file, hours of training. ``text``, ``json`` and ``yaml`` blocks are output and
configuration, not commands. The README's "Your own model" file is also evaluated."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = {"python", "bash", "sh"}
NOT_CODE = {"text", "json", "yaml"}
FENCE = re.compile(r"^```(\S*)\n(.*?)^```", re.S | re.M)
NOT_RUN = re.compile(r"<!-- not run: (.+?) -->\s*$")


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    code: str
    not_run: str


def blocks() -> list[Block]:
    out = []
    for page in PAGES:
        text = page.read_text()
        for m in FENCE.finditer(text):
            before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
            reason = NOT_RUN.search(before)
            out.append(Block(str(page.relative_to(ROOT)), text[:m.start()].count("\n") + 1,
                             m.group(1), m.group(2), reason.group(1) if reason else ""))
    return out


ALL = blocks()


@pytest.mark.parametrize("block", ALL, ids=lambda b: f"{b.page}:{b.line}")
def test_every_block_is_a_known_kind(block):
    assert block.lang in RUN | NOT_CODE, (
        f"{block.page} line {block.line}: a ```{block.lang or '(no language)'} block; mark it "
        f"as one of {sorted(RUN | NOT_CODE)}")
    if block.lang in NOT_CODE:
        assert not block.not_run, f"{block.page} line {block.line}: output needs no reason"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    here = tmp_path_factory.mktemp("docs")
    for name in ("examples", "baselines", "leaderboards"):
        (here / name).symlink_to(ROOT / name)
    return here


@pytest.mark.slow
@pytest.mark.parametrize("block", [b for b in ALL if b.lang in RUN and not b.not_run],
                         ids=lambda b: f"{b.page}:{b.line}")
def test_every_runnable_block_runs(block, workdir):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    argv = ([sys.executable, "-c", block.code] if block.lang == "python"
            else ["bash", "-euo", "pipefail", "-c", block.code])
    run = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, (f"{block.page} line {block.line} failed "
                                 f"(exit {run.returncode}):\n{run.stdout[-2000:]}\n"
                                 f"{run.stderr[-3000:]}")


def test_the_readme_model_file_is_the_minimal_model(tmp_path):
    """The README's model file, saved and evaluated, scores what examples/minimal_model.py
    scores (the same add-one categorical)."""
    import gmbench

    code = next(b.code for b in ALL if b.page == "README.md" and "def load(" in b.code)
    path = tmp_path / "my_model.py"
    path.write_text(code)
    mine = gmbench.evaluate(path, metrics=["nll"], progress=False)
    reference = gmbench.evaluate(ROOT / "examples" / "minimal_model.py", dataset="digits",
                                 metrics=["nll"], progress=False)
    # the same model written twice: equal up to float32 summation order (1.4e-9 relative on
    # an AVX-512 CPU, 0 on AVX2)
    assert mine["nll"].value == pytest.approx(reference["nll"].value, rel=1e-7)


def test_the_readme_stays_short_and_every_reason_is_given():
    words = len((ROOT / "README.md").read_text().split())
    assert words <= 2600, f"the README has {words} words; move reference text to docs/"
    for block in ALL:
        if block.not_run:
            assert len(block.not_run) > 15, (block.page, block.line, block.not_run)


def _tokens(line: str) -> list[str | float]:
    out: list[str | float] = []
    for tok in re.findall(r"-?\d+\.\d+|-?\d+|\S", line):
        try:
            out.append(float(tok))
        except ValueError:
            out.append(tok)
    return out


def _same(quoted: str, printed: str) -> bool:
    a, b = _tokens(quoted), _tokens(printed)
    return len(a) == len(b) and all(
        x == y if isinstance(x, str) or isinstance(y, str)
        else abs(x - y) <= 1e-3 * max(abs(x), abs(y)) + 1e-9 for x, y in zip(a, b, strict=True))


@pytest.mark.slow
def test_the_readme_quotes_what_the_first_command_prints(workdir):
    """The table quoted under "Reading the table" is what the set-up command prints (its
    lines, in order; numbers to 1e-3 relative, as another CPU's float rounding may move the
    last digit; the one line cut short with "..." compared up to there)."""
    text = (ROOT / "README.md").read_text()
    quoted = text.split("## Reading the table", 1)[1].split("```text\n", 1)[1].split("```")[0]
    run = subprocess.run(["gmbench", "evaluate", "examples/minimal_model.py", "--dataset",
                          "digits", "--out", "gmbench-out/readme-table"], cwd=workdir,
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr
    printed = run.stdout.splitlines()
    at = 0
    for line in quoted.splitlines():
        head = line.split("...")[0].rstrip("; ") if "..." in line else line
        while at < len(printed) and not _same(head, printed[at][:len(head)] if "..." in line
                                              else printed[at]):
            at += 1
        assert at < len(printed), f"README quotes a line the command does not print: {line}"
        at += 1
