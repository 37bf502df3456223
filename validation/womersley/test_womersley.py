"""Womersley pulsatile pipe flow (Womersley 1955) with the IPCS P2–P1 solver, α = 4 and 10.

See README.md beside this file for the set-up, the tolerance and the measured errors.
"""

from __future__ import annotations

import pytest

from tests.physics.conftest import make_pipe
from tests.physics.test_pulsatile import womersley_case

R_MM = 5.0


@pytest.mark.validation
@pytest.mark.slow
@pytest.mark.parametrize("alpha,h_mm,length_mm,steps", [(4.0, 0.9, 10.0, 40), (10.0, 0.6, 5.0, 60)])
def test_womersley_l2_error_below_2_percent(tmp_path, alpha, h_mm, length_mm, steps):
    """Space-time relative L2 velocity error over one period < 2 % (issue target)."""
    from cardiotwin.physics.flow import load_domain

    dom = make_pipe(tmp_path / "pipe.msh", radius_mm=R_MM, length_mm=length_mm, h_mm=h_mm)
    fm = load_domain(dom)
    err, res = womersley_case(fm, radius_m=R_MM * 1e-3, length_m=length_mm * 1e-3, alpha=alpha,
                              steps_per_period=steps)
    print(f"Womersley α={alpha}: h={h_mm} mm, {steps} steps/period, L2 {err:.4f}, dofs "
          f"{res.n_dofs}, {res.timings_s['per_step']:.3f} s/step")
    assert err < 0.02, err
