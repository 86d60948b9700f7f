"""The README's two newcomer commands exist, and CI runs exactly the README's test command."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_gives_exactly_two_commands_main_job_and_tests():
    commands = _readme_commands()
    assert len(commands) == 2
    assert commands[0].startswith("python3 -m venv .venv") and "experiments.reproduce --quick" in commands[0]
    assert commands[1].startswith("python3 -m venv .venv") and commands[1].endswith("python -m pytest")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _readme_commands()[1] in ci


def test_readme_results_block_present():
    text = (ROOT / "README.md").read_text()
    assert "<!-- results:begin -->" in text and "<!-- results:end -->" in text
