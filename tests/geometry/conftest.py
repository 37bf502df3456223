"""Session fixtures of the geometry tests: a coarse phantom, its fluid surface and fluid mesh.

The phantom is built at 1.5 mm and meshed with sizes scaled up from the 1.0 mm defaults so that the
whole geometry suite stays fast; the demo-size figures are in the module docstrings.
"""

from __future__ import annotations

import numpy as np
import pytest

from cardiotwin.geometry.surface import FluidSurface, fluid_surface
from cardiotwin.geometry.volume_mesh import FluidDomain, mesh_fluid_domain
from cardiotwin.imaging.phantom import Phantom, PhantomParameters, make_phantom

#: voxel size (mm) of the test phantom and mesh sizes used with it
PHANTOM_SPACING_MM = 1.5
H_MAX_MM = 4.0
H_MIN_MM = 2.0


@pytest.fixture(scope="session")
def coarse_phantom() -> Phantom:
    s = PHANTOM_SPACING_MM
    return make_phantom(PhantomParameters(spacing_mm=(s, s, s)), seed=0)


@pytest.fixture(scope="session")
def phantom_fluid_surface(coarse_phantom: Phantom) -> FluidSurface:
    return fluid_surface(coarse_phantom.labels, coarse_phantom.truth.landmarks)


@pytest.fixture(scope="session")
def phantom_fluid_domain(
    phantom_fluid_surface: FluidSurface,
    coarse_phantom: Phantom,
    tmp_path_factory: pytest.TempPathFactory,
) -> FluidDomain:
    lm = coarse_phantom.truth.landmarks
    centre = np.asarray(lm.annulus_centre_mm) + 8.0 * np.asarray(lm.annulus_normal)
    out = tmp_path_factory.mktemp("fluid_mesh") / "fluid.msh"
    return mesh_fluid_domain(
        phantom_fluid_surface,
        out,
        h_max_mm=H_MAX_MM,
        h_min_mm=H_MIN_MM,
        refine_centre_mm=centre,
        refine_radius_mm=15.0,
        seed=0,
    )
