"""Convergence study of the wall mechanics (Lamé, shrink fit, neo-Hookean vs linear).

Run from the repository root: ``python -m validation.mechanics.run`` (a few minutes on one core).
Prints the Markdown tables recorded in ``docs/mechanics.md``.
"""

from __future__ import annotations

import time

from cardiotwin.physics.solid_verification import (
    convergence_order,
    lame_case,
    neo_hookean_vs_linear,
    shrink_fit_case,
)

LAME_H_MM = {2: (3.0, 2.0, 1.5, 1.0, 0.75), 1: (3.0, 1.5, 1.0, 0.75)}
SHRINK_H_MM = (3.0, 2.0, 1.5, 1.0)
PENALTIES = (0.1, 0.3, 1.0, 3.0, 10.0, 100.0)


def lame_table() -> None:
    print("### Lamé cylinder (a = 12 mm, b = 15 mm, p = 16 kPa, E = 2 MPa, ν = 0.45)\n")
    print("| degree | h (mm) | dofs | e(u_r) inner | e(σ_θθ) L2 | e(σ_θθ) inner cells | s |")
    print("|---|---|---|---|---|---|---|")
    for deg, hs in LAME_H_MM.items():
        rs = []
        for h in hs:
            t = time.perf_counter()
            r = lame_case(h * 1e-3, degree=deg)
            rs.append(r)
            print(f"| P{deg} | {h} | {r.n_dofs} | {r.ur_error:.2e} | {r.hoop_error:.2e} | "
                  f"{r.hoop_inner_error:.2e} | {time.perf_counter() - t:.1f} |", flush=True)
        hh = [r.h_m for r in rs]
        print(f"| P{deg} | order (last 3) | | {convergence_order(hh[-3:], [r.ur_error for r in rs][-3:]):.2f} "
              f"| {convergence_order(hh[-3:], [r.hoop_error for r in rs][-3:]):.2f} | | |", flush=True)
    print()


def shrink_tables() -> None:
    print("### Shrink fit (inner 9–12 mm E = 20 MPa ν = 0.3, outer 12–15 mm E = 2 MPa ν = 0.45, "
          "δ = 0.2 mm), P2\n")
    print("| h (mm) | penalty | dofs | p_FE (kPa) | p_exact (kPa) | error | facet spread | s |")
    print("|---|---|---|---|---|---|---|---|")
    rs = []
    for h in SHRINK_H_MM:
        t = time.perf_counter()
        r = shrink_fit_case(h * 1e-3, penalty=1000.0)
        rs.append(r)
        print(f"| {h} | 1000 | {r.n_dofs} | {r.pressure_pa / 1e3:.4f} | {r.exact_pa / 1e3:.4f} | "
              f"{r.error:.2e} | {r.pressure_spread:.2f} | {time.perf_counter() - t:.1f} |", flush=True)
    print(f"\nmesh order (last 3): {convergence_order([r.h_m for r in rs][-3:], [r.error for r in rs][-3:]):.2f}\n")
    print("| h (mm) | penalty | p_FE (kPa) | error vs exact | error vs penalty 1e4 | facet spread |")
    print("|---|---|---|---|---|---|")
    ref = shrink_fit_case(1.5e-3, penalty=1e4).pressure_pa
    es, ps = [], []
    for pen in PENALTIES:
        r = shrink_fit_case(1.5e-3, penalty=pen)
        e = abs(r.pressure_pa / ref - 1)
        es.append(e)
        ps.append(pen)
        print(f"| 1.5 | {pen} | {r.pressure_pa / 1e3:.4f} | {r.error:.2e} | {e:.2e} | "
              f"{r.pressure_spread:.2f} |", flush=True)
    print(f"\npenalty order (error vs 1/penalty, first 4): "
          f"{convergence_order([1 / p for p in ps[:4]], es[:4]):.2f}\n")


def neo_hookean_table() -> None:
    print("### Neo-Hookean vs linear (Lamé tube, mean inner radial displacement)\n")
    print("| p (kPa) | u_lin (mm) | u_NH (mm) | u_NH/u_lin − 1 | hoop strain |")
    print("|---|---|---|---|---|")
    for p, steps in ((0.1, 1), (1.0, 1), (16.0, 2), (50.0, 5)):
        ul, un = neo_hookean_vs_linear(p * 1e3, steps=steps)
        print(f"| {p} | {ul * 1e3:.5f} | {un * 1e3:.5f} | {un / ul - 1:+.2e} | {ul / 0.012:.3f} |",
              flush=True)
    print()


if __name__ == "__main__":
    lame_table()
    shrink_tables()
    neo_hookean_table()
