"""Every Python block of README.md runs as written, in a fresh interpreter outside the source tree
(so it meets the installed package, as a reader does). A block that needs something it cannot make
itself says so in its first line; none does today."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def _title(block: str) -> str:
    return next((line for line in block.splitlines() if line.strip()), "empty")[:60]


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("block", BLOCKS, ids=[f"{i}: {_title(b)}" for i, b in enumerate(BLOCKS)])
def test_readme_python_block_runs_as_written(block, tmp_path):
    result = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, f"README block failed:\n{block}\n--- stderr ---\n{result.stderr[-4000:]}"
