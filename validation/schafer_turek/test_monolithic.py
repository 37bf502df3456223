"""Cross-check of the IPCS 2D-2 lift against an independent monolithic Taylor–Hood solver.

Question (issue 5): the pulsatile IPCS solver gives c_L,max = 0.984–0.987 for Schäfer–Turek
2D-2, below the participants' interval [0.99, 1.01] of Schäfer & Turek (1996), while c_D,max, St
and Δp are inside theirs. Is that a defect of the splitting scheme / its force evaluation, or
what a Taylor–Hood discretisation gives on this geometry?

Reference solver (:mod:`validation.schafer_turek.monolithic`): fully coupled P2–P1, implicit
midpoint rule (Crank–Nicolson family, pressure at t^{n+1/2}), Newton + MUMPS per step,
do-nothing outlet in gradient form, benchmark units. It shares only the mesh generator and the
post-processing (``benchmark_quantities``) with the IPCS run; its drag and lift are its own
discrete momentum residual tested with John's (2004) cylinder test function, so the force is
consistent with its time discretisation by construction.

Measured (2026-11-25, 2-core shared machine; last 4 lift periods, benchmark units; "mono" =
this solver, "IPCS" = ``test_2d2.py``; drift = change of the last two lift maxima)::

  scheme  h / h_cyl       dofs     dt      c_D,max  c_L,max  c_L,min  St      Δp      drift
  mono    0.02 / 0.005    31,075   1/800   3.2241   0.9820   -1.0173  0.3014  2.4737  6e-5
  mono    0.02 / 0.005    31,075   1/1600  3.2240   0.9819   -1.0171  0.3014  2.4737  6e-6
  IPCS    0.02 / 0.005    31,075   1/800   3.2250   0.9841   -1.0193  0.3014  2.4743  6e-5
  mono    0.015 / 0.00375 54,923   1/800   3.2271   0.9863   -1.0209  0.3017  2.4853  7e-5
  IPCS    0.015 / 0.00375 54,923   1/800   3.2277   0.9868*  -1.0217  0.3018  2.4857  1.2e-3
  IPCS    0.015 / 0.00375 54,923   1/1600  3.2262   0.9840*  -1.0176  0.3017  2.4848  4.0e-3
  IPCS    0.01 / 0.0025   122,285  1/800   3.2274   0.9860*  -1.0198  0.3020  2.4821  3.9e-3
  IPCS    0.015 / 0.00375 54,923   1/800   3.2280   0.9881   -1.0227  0.3018  2.4859  6e-5  (t_end 6)
  IPCS    0.01 / 0.0025   122,285  1/800   3.2285   0.9885   -1.0232  0.3019  2.4829  6e-5  (t_end 6)
  mono P3–P2  0.02 / 0.005  75,275  1/800  3.2278   0.9873   -1.0218  0.3018  2.4846  8e-5

  * not yet periodic (t_end 4–4.5 s, the lift maxima still grow by 0.1–0.4 % per period);
    compared at equal times with the 1/800 run, the 1/1600 run is 0.0016 lower. The t_end 6
    rows are the same meshes run to a periodic state.

  The last row is this solver with Taylor–Hood P3–P2 (``--degree 3``) on the coarse mesh: an
  element order higher in both fields (35 min on the shared machine). Its 0.9873 sits between
  the P2–P1 values of the two finer meshes. The IPCS values on 55k / 122k dofs (0.9881 / 0.9885),
  less the IPCS time error at Δt = 1/800 (≈ +0.002, from the coupled 55k run), give the same.
  Three discretisations (P2–P1 split, P2–P1 coupled, P3–P2 coupled) converge to
  c_L,max = 0.987 ± 0.001, with c_L,min = −1.022 (the lift oscillates about −0.017, since the
  cylinder sits 0.01 m below the channel's mid-line).

What the cross-check shows: the coupled solver, which has no splitting and whose force is its
own discrete residual and is converged in time (Δt 1/800 → 1/1600 changes c_L,max by 1e-4), gives the *same* low lift: c_L,max 0.9820 (31k dofs) and 0.9863 (55k
dofs), at least as far below 0.99 as the IPCS (0.9841, ≈0.988). The IPCS lies 0.002 above it
at Δt = 1/800 and that difference shrinks about 4× when Δt is halved (second order, towards the
coupled solution) — the IPCS drop under Δt refinement is convergence to the time-continuous
value, not a drift away from the truth. c_D,max, St and Δp of the two solvers agree to
0.001/0.0001/0.001. So the IPCS scheme and its force evaluation are not at fault; a converged
Taylor–Hood discretisation of this geometry gives c_L,max = 0.987 ± 0.001 (P3–P2 0.9873; IPCS mesh
increment 55k → 122k dofs +0.0004, periodic), about 0.3 % below the lower bound of the 1996
participants' interval. The peak-to-peak half amplitude, (c_L,max − c_L,min)/2 = 1.005, lies
inside [0.99, 1.01].

Runtime (measured, ``pytest -m "slow or validation"`` on the shared 2-core machine): 2 passed in
19 min 25 s — monolithic fixture 784 s (spin-up 4.5 s at Δt 1/200, then 1.75 s at 1/800; chord
Newton with the LU rebuilt every 5 iterations), IPCS fixture 379 s (7 s at 1/800).
"""

from __future__ import annotations

import pytest

from validation.schafer_turek.test_2d2 import INTERVALS_2D2

H_COARSE_M, H_CYL_COARSE_M = 0.02, 0.005
DT_BENCH_S = 1.0 / 800.0
# |c_L,max(monolithic) − c_L,max(IPCS)| on the same mesh and Δt: measured 0.0019 (h 0.02/0.005,
# Δt 1/800); the tolerance allows 2.5× that for the time-discretisation differences of the two
# schemes, and stays well below the 0.008 gap between either solver and the published lower
# bound 0.99 — a splitting or force-evaluation defect of the size of that gap fails the test.
C_L_MAX_AGREEMENT = 5e-3
C_D_MAX_AGREEMENT = 5e-3


@pytest.fixture(scope="module")
def monolithic_coarse() -> dict:
    from validation.schafer_turek.monolithic import run_monolithic

    return run_monolithic(h_m=H_COARSE_M, h_cylinder_m=H_CYL_COARSE_M, dt_bench_s=DT_BENCH_S,
                          measure_bench_s=1.75, spinup_dt_bench_s=1.0 / 200.0,
                          spinup_bench_s=4.5, perturbation=1.0, jacobian_lag=5)


@pytest.fixture(scope="module")
def ipcs_coarse() -> dict:
    from validation.schafer_turek.test_2d2 import run_2d2

    # the coarse-mesh study run of test_2d2.py (c_L,max 0.9841, lift-peak drift 6e-5)
    return run_2d2(h_m=H_COARSE_M, h_cylinder_m=H_CYL_COARSE_M, dt_bench_s=DT_BENCH_S,
                   t_end_bench_s=7.0, perturbation=0.5)


@pytest.mark.slow
@pytest.mark.validation
def test_monolithic_reference_in_published_intervals(monolithic_coarse):
    """Schäfer & Turek (1996) 2D-2 intervals for St and c_D,max (INTERVALS_2D2) hold for the
    independent monolithic solver on the coarse mesh, and its lift is periodic."""
    q = monolithic_coarse["quantities"]
    assert q["lift_peak_drift"] < 5e-3, q
    for k in ("strouhal", "drag_coefficient_max"):
        lo, hi = INTERVALS_2D2[k]
        assert lo <= q[k] <= hi, (k, q[k], (lo, hi))
    # volume (residual) and boundary forms of the force agree (the boundary form converges
    # more slowly; 1 % as in test_2d2.py)
    assert q["lift_coefficient_max_boundary"] == pytest.approx(q["lift_coefficient_max"], rel=1e-2)


@pytest.mark.slow
@pytest.mark.validation
def test_ipcs_lift_matches_monolithic_reference(monolithic_coarse, ipcs_coarse):
    """The IPCS c_L,max (and c_D,max) agree with the monolithic reference on the same mesh and
    Δt within C_L_MAX_AGREEMENT: the lift below 0.99 is not a splitting/force-evaluation defect."""
    qm, qi = monolithic_coarse["quantities"], ipcs_coarse["quantities"]
    assert qi["lift_peak_drift"] < 5e-3, qi
    assert abs(qi["lift_coefficient_max"] - qm["lift_coefficient_max"]) < C_L_MAX_AGREEMENT, (qi, qm)
    assert abs(qi["drag_coefficient_max"] - qm["drag_coefficient_max"]) < C_D_MAX_AGREEMENT, (qi, qm)
    assert qi["strouhal"] == pytest.approx(qm["strouhal"], abs=1e-3)   # measured: 0.30145 both
