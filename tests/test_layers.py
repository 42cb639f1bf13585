"""The layers of code hold: the import contracts in pyproject.toml pass, and they catch a back-import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """Run import-linter with the project's contracts on the ``crm_spark`` package found under ``root``."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), str(REPO / "pyproject.toml"), "--no-cache"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300, check=False)


def test_the_package_keeps_every_import_contract():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


@pytest.mark.parametrize(
    ("module", "back_import", "broken"),
    [
        # A metric that needs a stage: shared metrics sit below the stages.
        ("metrics/ranking.py", "from crm_spark.stages import recommend", "crm_spark.metrics.ranking -> "
                                                                          "crm_spark.stages.recommend"),
        # Config reaching up to the tables it describes.
        ("config/sections.py", "from crm_spark import tables", "crm_spark.config.sections -> crm_spark.tables"),
        # One stage importing another.
        ("stages/score.py", "from crm_spark.stages import train", "crm_spark.stages.score -> crm_spark.stages.train"),
    ],
)
def test_a_back_import_breaks_a_contract(tmp_path, module, back_import, broken):
    shutil.copytree(REPO / "crm_spark", tmp_path / "crm_spark", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "crm_spark" / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{back_import}  # noqa: E402, F401\n", encoding="utf-8")
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN" in result.stdout and f"- {broken} (l." in result.stdout, result.stdout
