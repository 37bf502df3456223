"""Imaging sits below geometry (DESIGN.md §3): importing any imaging module loads no geometry."""

from __future__ import annotations

import subprocess
import sys


def test_imaging_never_imports_geometry():
    code = (
        "import pkgutil, sys, importlib, cardiotwin.imaging as im\n"
        "for m in pkgutil.walk_packages(im.__path__, 'cardiotwin.imaging.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n.startswith('cardiotwin.geometry'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_landmark_record_is_one_type():
    from cardiotwin.geometry.landmarks import AorticRootLandmarks
    from cardiotwin.imaging.anatomy import AorticRootLandmarks as Record

    assert AorticRootLandmarks is Record
