"""Pulsatile incompressible Navier–Stokes with Windkessel outlets (IPCS, Taylor–Hood P2–P1).

:func:`solve_pulsatile` marches the flow over one or more heartbeats with a physiological inflow,
Windkessel/resistance/open outlets coupled implicitly, Newtonian or shear-thinning blood,
Brinkman devices, optional LES, checkpoints and restarts, and returns a
:class:`PulsatileResult` with the clinical read-outs. The scheme and its references are in
:mod:`.solver` and ``docs/pulsatile.md``.

Modules
-------
settings
    :class:`Inflow`, :class:`ValvePlanes`, :class:`PulsatileSettings` (the inputs).
solver
    :func:`solve_pulsatile`.
result
    :class:`PulsatileResult` (traces, fields, valve metrics, summary), :class:`StepState`.
outlets
    :data:`OPEN`, ``OutletModel`` and the per-outlet state ``p = a + b Q``.
inflow
    the inflow Dirichlet profile (parabolic, plug, Womersley, or a velocity expression).
forms
    the shear-thinning momentum forms and the Smagorinsky eddy viscosity.
valve
    transvalvular section pressures, jet speed, flow through Brinkman parts.
wall_shear
    TAWSS and OSI over the last cycle.
forces
    :func:`boundary_force` (drag and lift).
checkpoint
    restart checkpoints (adios4dolfinx or per-rank npz) and :func:`latest_checkpoint`.
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401  (loads the MPI runtime before dolfinx/petsc4py)

from cardiotwin.physics.pulsatile.checkpoint import latest_checkpoint
from cardiotwin.physics.pulsatile.forces import boundary_force
from cardiotwin.physics.pulsatile.outlets import OPEN, OutletModel
from cardiotwin.physics.pulsatile.result import PulsatileResult, StepState
from cardiotwin.physics.pulsatile.settings import Inflow, PulsatileSettings, ValvePlanes
from cardiotwin.physics.pulsatile.solver import solve_pulsatile

__all__ = ["OPEN", "Inflow", "OutletModel", "PulsatileResult", "PulsatileSettings", "StepState",
           "ValvePlanes", "boundary_force", "latest_checkpoint", "solve_pulsatile"]
