"""The Cloud Custodian virtual environment (``bench/.c7n-venv``), made on first use.

c7n_azure pins old azure-mgmt-* releases that cannot live beside the product's pins, so it
gets its own environment, installed from ``bench/c7n-requirements.txt`` (every package pinned
with ``==``). A stamp holding the requirements' hash makes later runs reuse it; a changed
requirements file rebuilds it.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
VENV = BENCH / ".c7n-venv"
REQUIREMENTS = BENCH / "c7n-requirements.txt"
STAMP = VENV / ".installed"


def python() -> Path:
    return VENV / "bin" / "python"


def _digest() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def ready() -> bool:
    return python().exists() and STAMP.exists() and STAMP.read_text().strip() == _digest()


def ensure(log=print) -> Path:
    """The environment's python, creating or rebuilding the environment when needed."""
    if ready():
        return python()
    log(f"creating {VENV.relative_to(BENCH.parent)} from {REQUIREMENTS.name} (once; about a minute) ...")
    if VENV.exists():
        shutil.rmtree(VENV)
    base = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([base, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(python()), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                    "-r", str(REQUIREMENTS)], check=True)
    STAMP.write_text(_digest() + "\n")
    return python()
