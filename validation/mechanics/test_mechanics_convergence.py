"""Finer convergence study of the wall mechanics (validation marker; see docs/mechanics.md).

The default-run tests (tests/physics/test_solid.py, test_contact.py) check the same properties
on coarser meshes; ``python -m validation.mechanics.run`` prints the full tables.
"""

from __future__ import annotations

import pytest

from cardiotwin.physics.solid_verification import (
    convergence_order,
    lame_case,
    shrink_fit_case,
)


@pytest.mark.validation
def test_lame_p2_four_meshes():
    hs = [2e-3, 1.5e-3, 1e-3, 0.75e-3]
    rs = [lame_case(h, degree=2) for h in hs]
    assert rs[-1].ur_error < 1e-3 and rs[-1].hoop_error < 3e-3
    assert convergence_order(hs, [r.ur_error for r in rs]) > 1.8
    assert convergence_order(hs, [r.hoop_error for r in rs]) > 1.5


@pytest.mark.validation
def test_shrink_fit_mesh_and_penalty_convergence():
    hs = [3e-3, 2e-3, 1.5e-3, 1e-3]
    errs = [shrink_fit_case(h, penalty=1000.0).error for h in hs]
    assert errs[-1] < 1e-3
    assert convergence_order(hs, errs) > 1.5
    ref = shrink_fit_case(1.5e-3, penalty=1e4).pressure_pa
    pens = [0.1, 0.3, 1.0, 3.0]
    e = [abs(shrink_fit_case(1.5e-3, penalty=k).pressure_pa / ref - 1) for k in pens]
    assert convergence_order([1 / k for k in pens], e) == pytest.approx(1.0, abs=0.15)
