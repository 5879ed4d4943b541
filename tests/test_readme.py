"""Every command of README.md's runnable code blocks exits 0, run in order from a fresh checkout's layout.

Convention (README.md states it too): a fenced block whose info string is ``sh`` is run one line at a time (each
non-empty line not starting with ``#`` is one shell command; a trailing ``# comment`` is the shell's); a ``python``
block is run as a script; a ``text`` block right after a ``python`` block is that script's printed output,
compared line by line (trailing spaces aside); a block with any other info string (``console`` for commands that
need the install, a cluster, or minutes, such as ``make study``) is not run. Blocks run top to bottom in one
scratch directory holding only what a fresh clone has there (``configs/``, ``study/specs/``, the published
``results/open-questions/``), with the installed ``diffctl`` on the path.

Shortened where a flag allows, so the whole README runs in about a minute: ``diffctl train`` gets
``--set optim.epochs=1`` and a small evaluation appended (later ``--set`` win). The study it runs is the tiny one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tiny_specs import diffctl_env

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
RUN = ("sh", "python")
SHORTER = {
    "diffctl train ": " --set optim.epochs=1 --set eval.prior_samples=200 --set eval.triplet_indices=500"
    " --set eval.triplets=2000",
}
# The first hour's path: README must keep these commands runnable (not only in console blocks).
REQUIRED = ("diffctl study run", "diffctl study status", "diffctl export", "diffctl reproduce", "diffctl train",
            "diffctl gradcheck", "diffctl config show")  # fmt: skip


def readme_blocks(text: str) -> list[tuple[str, str]]:
    """(info string, body) of every fenced block of ``text``, in order."""
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(text)]


def shortened(command: str) -> str:
    for prefix, extra in SHORTER.items():
        if command.startswith(prefix):
            code, _, comment = command.partition(" #")
            return code.rstrip() + extra + (f"  #{comment}" if comment else "")
    return command


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip("\n").splitlines()]


def test_block_parsing_and_shortening():
    text = "```sh\na  # x\n\n# c\n```\n```console\nmake study\n```\n```python\nprint(1)\n```\n"
    assert readme_blocks(text) == [("sh", "a  # x\n\n# c\n"), ("console", "make study\n"), ("python", "print(1)\n")]
    assert shortened("diffctl train --config c.yaml --out r  # note") == (
        "diffctl train --config c.yaml --out r --set optim.epochs=1 --set eval.prior_samples=200"
        " --set eval.triplet_indices=500 --set eval.triplets=2000  # note"
    )


@pytest.mark.slow  # trains and runs the tiny study
def test_every_readme_command_exits_0(tmp_path):
    blocks = readme_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    assert any(kind == "console" and "make study" in body for kind, body in blocks)
    work = tmp_path / "checkout"
    shutil.copytree(ROOT / "configs", work / "configs")
    shutil.copytree(ROOT / "study" / "specs", work / "study" / "specs")
    shutil.copytree(ROOT / "results" / "open-questions", work / "results" / "open-questions")  # the published study
    env = diffctl_env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    ran, printed, compared = [], None, 0
    for kind, body in blocks:
        if kind == "text" and printed is not None:
            assert _lines(printed) == _lines(body), f"README: printed\n{printed}\nbut README shows\n{body}"
            compared += 1
        printed = None
        if kind == "python":
            script = tmp_path / f"block{len(ran)}.py"
            script.write_text(body, encoding="utf-8")
            commands = [([sys.executable, str(script)], body.strip().splitlines()[-1])]
        elif kind == "sh":
            lines = [line.strip() for line in body.splitlines()]
            commands = [(["bash", "-c", shortened(line)], line) for line in lines if line and not line.startswith("#")]
        else:
            continue
        for argv, shown in commands:
            proc = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=300, check=False)
            assert proc.returncode == 0, f"README: {shown!r} exited {proc.returncode}:\n{proc.stderr[-2000:]}"
            ran.append(shown)
            printed = proc.stdout if kind == "python" else None
    assert all(any(line.startswith(required) for line in ran) for required in REQUIRED), ran
    assert compared >= 1, "no printed output of a python block is shown (and compared) in README"
    assert (work / "results" / "first" / "report.md").is_file() and (work / "runs" / "fixed" / "model.pt").is_file()
