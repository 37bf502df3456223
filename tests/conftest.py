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


@pytest.fixture(scope="session")
def coarse_demo(tmp_path_factory):
    """A twin of a coarse phantom built end to end through the workflows (shared by several tests).

    Phantom at 1.5 mm, mesh 2–4 mm: the whole chain in about a minute on two cores. Returns a dict
    with ``store``, ``actor``, ``twin``, ``phantom``, ``dicom_dir`` and ``log_path`` (the log of the
    build, for privacy checks).
    """
    import logging

    from cardiotwin import workflows
    from cardiotwin.imaging import dicom, phantom
    from cardiotwin.store import Actor

    root = tmp_path_factory.mktemp("coarse_demo")
    ph = phantom.make_phantom(phantom.PhantomParameters(spacing_mm=(1.5, 1.5, 1.5)), seed=0)
    dicom_dir = root / "dicom"
    dicom.write_ct_series(ph.ct, dicom_dir)
    store = workflows.open_store(root / "store")
    actor = Actor(username="dr.test", role="clinician", client="pytest")
    log_path = root / "build.log"
    handler = logging.FileHandler(log_path)
    handler.setLevel(logging.DEBUG)
    logger = logging.getLogger("cardiotwin")
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        twin = workflows.build_twin(
            dicom_dir, store=store, actor=actor,
            settings=workflows.BuildSettings(h_max_mm=4.0, h_min_mm=2.0, refine_radius_mm=18.0))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        handler.close()
    return {"store": store, "actor": actor, "twin": twin, "phantom": ph, "dicom_dir": dicom_dir,
            "log_path": log_path, "root": root}
