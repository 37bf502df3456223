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
    from cardiotwin.physics.mesh import load_domain

    dom = make_pipe(tmp_path / "pipe.msh", radius_mm=R_MM, length_mm=length_mm, h_mm=h_mm)
    fm = load_domain(dom)
    err, res, p_err = womersley_case(fm, radius_m=R_MM * 1e-3, length_m=length_mm * 1e-3,
                                     alpha=alpha, steps_per_period=steps)
    print(f"Womersley α={alpha}: h={h_mm} mm, {steps} steps/period, L2 {err:.4f}, inlet "
          f"pressure {p_err:.4f}, dofs {res.n_dofs}, {res.timings_s['per_step']:.3f} s/step")
    assert err < 0.02, err


@pytest.mark.validation
@pytest.mark.slow
def test_womersley_inlet_pressure_error_is_spatial(tmp_path):
    """The inlet-face pressure error (RMS, relative to the exact p(0, t)) is a mesh error that
    falls with h, not a splitting layer of the incremental scheme: halving Δt at h = 1.25 mm
    changes it by under 0.5 percentage points, while halving h at fixed Δt divides it by ≥ 2
    (observed order ≥ 1; measured 5.8 % → 2.4 %, order 1.3, of which the polygonal pipe's
    1.4 % / 0.4 % smaller Poiseuille conductance is one part). α = 4, 80 steps per period."""
    from cardiotwin.physics.mesh import load_domain

    errs = {}
    for h_mm, runs in ((1.25, (80, 160)), (0.625, (80,))):
        fm = load_domain(make_pipe(tmp_path / f"pipe_{h_mm}.msh", radius_mm=R_MM,
                                   length_mm=10.0, h_mm=h_mm))
        for steps in runs:
            _, _, errs[h_mm, steps] = womersley_case(fm, radius_m=R_MM * 1e-3, length_m=10e-3,
                                                     alpha=4.0, steps_per_period=steps)
    print("inlet pressure RMS error (h mm, steps/period):", errs)
    assert abs(errs[1.25, 160] - errs[1.25, 80]) < 0.005, errs
    assert errs[1.25, 80] / errs[0.625, 80] >= 2.0, errs
    assert errs[0.625, 80] < 0.03, errs
