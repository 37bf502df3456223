"""Outlet models of the pulsatile solver: Windkessel, resistance or open, as ``p = a + b Q`` per step.
"""

from __future__ import annotations

from cardiotwin.errors import InputError
from cardiotwin.physics.mesh import FlowMesh
from cardiotwin.physics.windkessel import RCR, OutletResistance, TwoElement

__all__ = ["OPEN", "OutletModel", "OutletState", "outlet_key"]


OPEN = "open"
"""Outlet model meaning a zero-pressure (traction-free) outlet."""


OutletModel = RCR | TwoElement | OutletResistance | str


def outlet_key(fm: FlowMesh, name: str) -> str:
    if name in fm.names:
        return name
    if f"outlet:{name}" in fm.names:
        return f"outlet:{name}"
    raise InputError(f"unknown outlet {name!r}; the mesh's outlets are {fm.outlet_names}")


class OutletState:
    """Outlet model adapter: ``p^{n+1} = a + b Q^{n+1}`` and the state update."""

    def __init__(self, name: str, model: OutletModel, p0: float | None):
        self.name, self.model = name, model
        if isinstance(model, RCR | TwoElement):
            self.p_c = float(model.p_d if p0 is None else p0)
        else:
            self.p_c = 0.0
        self.q = 0.0

    def coefficients(self, dt: float) -> tuple[float, float]:
        m = self.model
        if isinstance(m, RCR | TwoElement):
            return m.implicit_coefficients(self.p_c, self.q, dt)
        if isinstance(m, OutletResistance):
            return m.p0_pa, m.resistance_pa_s_m3
        return 0.0, 0.0

    def pressure(self, q: float) -> float:
        m = self.model
        if isinstance(m, RCR | TwoElement):
            return float(m.pressure(self.p_c, q))
        if isinstance(m, OutletResistance):
            return m.p0_pa + m.resistance_pa_s_m3 * q
        return 0.0

    def advance(self, q_new: float, dt: float) -> None:
        if isinstance(self.model, RCR | TwoElement):
            self.p_c = float(self.model.step(self.p_c, q_new, dt, q_prev=self.q))
        self.q = float(q_new)
