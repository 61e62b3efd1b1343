"""The README's two commands are the ones CI runs (CI must call the README's test command)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S)
    return [b.strip() for b in blocks if "pip install" in b]


def test_readme_has_exactly_two_setup_commands_and_ci_runs_both():
    cmds = readme_commands()
    assert len(cmds) == 2, cmds
    assert "featgraph families" in cmds[0]
    assert "pytest" in cmds[1]
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    for cmd in cmds:
        assert cmd in ci_lines, f".ci/run does not run the README command verbatim: {cmd}"
