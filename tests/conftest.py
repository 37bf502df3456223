"""Project-wide test fixtures.

Real data from outside the repository (``../shared/data``) is found through one fixture,
``shared_data``; ``CARDIOTWIN_SHARED_DATA`` overrides its location.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the real test data (DICOM corpus, PhysioNet, FDA nozzle)."""
    path = Path(os.environ.get("CARDIOTWIN_SHARED_DATA", ROOT.parent / "shared" / "data"))
    if not (path / "README.md").exists():
        pytest.fail(
            f"real test data not found at {path}. Put the project's shared data folder there "
            "(it holds dicom/, physionet/, validation/ with a README.md) or set "
            "CARDIOTWIN_SHARED_DATA=/path/to/data.", pytrace=False)
    return path
