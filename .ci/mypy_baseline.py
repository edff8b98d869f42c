"""`make lint`: type-check the package with mypy and fail only when the error count exceeds the baseline.

The repository root is the package ``crystaloop`` (setuptools ``package-dir``), so mypy cannot name its
modules from the root itself: this script links the root as ``<tmp>/crystaloop`` and runs
``mypy -p crystaloop`` there with the ``[tool.mypy]`` settings of pyproject.toml (tests/ and benchmarks/
excluded). The committed baseline is the number in ``.ci/mypy_baseline.txt``; lower it when you fix
errors, never raise it to hide new ones.

    python .ci/mypy_baseline.py          # exit 1 when errors > baseline, or when mypy itself fails
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import tempfile
from pathlib import Path

logger = logging.getLogger("crystaloop.ci.mypy")

ROOT = Path(__file__).resolve().parent.parent
BASELINE_FILE = ROOT / ".ci" / "mypy_baseline.txt"
SUMMARY = re.compile(r"^Found (\d+) errors? in \d+ files?", re.MULTILINE)


def count_errors(output: str, returncode: int) -> int:
    """Number of mypy errors in ``output``; raises ``RuntimeError`` when mypy did not finish a check."""
    if returncode == 0 and output.startswith("Success"):
        return 0
    match = SUMMARY.search(output)
    if returncode != 1 or match is None:
        raise RuntimeError(f"mypy exited with status {returncode} without an error summary:\n{output[-4000:]}")
    return int(match.group(1))


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    baseline = int(BASELINE_FILE.read_text().strip())
    with tempfile.TemporaryDirectory(prefix="crystaloop-mypy-") as tmp:
        (Path(tmp) / "crystaloop").symlink_to(ROOT, target_is_directory=True)
        command = [
            sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
            "--cache-dir", str(ROOT / ".mypy_cache"), "-p", "crystaloop",
        ]
        result = subprocess.run(command, cwd=tmp, capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    try:
        errors = count_errors(output, result.returncode)
    except RuntimeError as error:
        logger.error("%s", error)
        return 1
    if errors > baseline:
        logger.error("%s\nmypy: %d errors, above the baseline of %d in %s: fix the new ones above.", output, errors, baseline, BASELINE_FILE.relative_to(ROOT))
        return 1
    if errors < baseline:
        logger.info("mypy: %d errors, below the baseline of %d: lower %s to %d.", errors, baseline, BASELINE_FILE.relative_to(ROOT), errors)
    else:
        logger.info("mypy: %d errors (baseline %d)", errors, baseline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
