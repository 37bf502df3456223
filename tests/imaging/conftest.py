"""Shared, session-scoped fixtures of the imaging tests (phantoms are built once per session)."""

from __future__ import annotations

import pytest

from cardiotwin.imaging.phantom import Phantom, PhantomParameters, make_phantom

#: Coarse spacing keeps the imaging tests fast (~0.5 s per phantom) while every structure stays
#: at least two voxels thick.
COARSE_SPACING_MM = (1.5, 1.5, 1.5)


@pytest.fixture(scope="session")
def coarse_phantom() -> Phantom:
    """The default phantom at 1.5 mm isotropic spacing, seed 0."""
    return make_phantom(PhantomParameters(spacing_mm=COARSE_SPACING_MM), seed=0)


@pytest.fixture(scope="session")
def small_phantom() -> Phantom:
    """A 2.5 × 2.0 × 3.0 mm (anisotropic) phantom: few small slices for DICOM round trips."""
    return make_phantom(PhantomParameters(spacing_mm=(2.5, 2.0, 3.0)), seed=7)
