"""Blood rheology: the Newtonian fluid and the Carreau–Yasuda (shear-thinning) viscosity law.

Both laws give the dynamic viscosity μ (Pa·s) as a function of the shear rate
``γ̇ = sqrt(2 D:D)`` (1/s), with ``D = (∇u + ∇uᵀ)/2`` the rate-of-strain tensor. They provide the
same value twice: as a UFL expression for the variational forms (:meth:`ufl_viscosity`) and as a
NumPy function for post-processing and independent reference solutions (:meth:`viscosity`).

Carreau–Yasuda (Yasuda et al. 1981; Bird, Armstrong & Hassager 1987)::

    μ(γ̇) = μ_∞ + (μ_0 − μ_∞) [1 + (λ γ̇)^a]^((n − 1)/a)

with ``a = 2`` the Carreau law. The defaults are the blood fit of Cho & Kensey (1991), "Effects
of the non-Newtonian viscosity of blood on flows in a diseased arterial vessel. Part 1: Steady
flows", Biorheology 28:241–262, as tabulated by Johnston et al. (2004), J. Biomech.
37:709–720 (Table 1, Carreau model): μ_0 = 0.056 Pa·s, μ_∞ = 0.00345 Pa·s, λ = 3.313 s,
n = 0.3568, a = 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cardiotwin.errors import InputError

__all__ = ["CarreauYasuda", "Newtonian", "Rheology", "shear_rate"]


def shear_rate(u: Any, *, floor_1_s: float = 0.0) -> Any:
    """UFL shear rate ``γ̇ = sqrt(2 D(u):D(u))`` in 1/s of a velocity field ``u`` (m/s).

    Parameters
    ----------
    u : UFL vector expression (a dolfinx Function or a component of a mixed Function).
    floor_1_s : added under the square root as ``floor²`` so that the derivative of ``γ̇`` stays
        finite at ``D = 0`` (needed by Newton when the viscosity depends on ``γ̇``; ``1e-6``
        1/s changes μ by far less than round-off for blood).
    """
    import ufl

    d = ufl.sym(ufl.grad(u))
    return ufl.sqrt(2.0 * ufl.inner(d, d) + floor_1_s**2)


def _check_positive(name: str, value: float, lo: float, hi: float, hint: str) -> None:
    if not (math.isfinite(value) and lo < value < hi):
        raise InputError(f"{name} must be in ({lo:g}, {hi:g}); got {value!r}. {hint}")


@dataclass(frozen=True)
class Newtonian:
    """A Newtonian fluid: constant viscosity and a density (the one fluid type of the solvers).

    ``Newtonian()`` is blood (DESIGN.md: ρ = 1060 kg/m³, μ = 3.5e-3 Pa·s); benchmarks give their
    own values, e.g. ``Newtonian(1e-3, density_kg_m3=1.0)`` for the Schäfer–Turek cylinder. It is
    the ``blood`` of :func:`~cardiotwin.physics.steady.solve_steady` and
    :func:`~cardiotwin.physics.pulsatile.solve_pulsatile` and a viscosity law (``rheology``) like
    :class:`CarreauYasuda`; :func:`~cardiotwin.physics.newton.solve_newton` takes its density as
    a separate argument and uses only the viscosity.

    Parameters
    ----------
    viscosity_pa_s : dynamic viscosity μ in Pa·s, in (1e-6, 1e3) (blood ≈ 3.5e-3).
    density_kg_m3 : density ρ in kg/m³, in (0, 1e5) (blood ≈ 1060).
    """

    viscosity_pa_s: float = 3.5e-3
    density_kg_m3: float = 1060.0

    def __post_init__(self) -> None:
        for name in ("viscosity_pa_s", "density_kg_m3"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise InputError(f"Newtonian {name} must be a number; got {v!r}")
        _check_positive("Newtonian viscosity_pa_s", self.viscosity_pa_s, 1e-6, 1e3,
                        "Give the dynamic viscosity in Pa·s (blood ≈ 3.5e-3).")
        _check_positive("Newtonian density_kg_m3", self.density_kg_m3, 0.0, 1e5,
                        "Give the density in kg/m³ (blood ≈ 1060).")
        object.__setattr__(self, "viscosity_pa_s", float(self.viscosity_pa_s))
        object.__setattr__(self, "density_kg_m3", float(self.density_kg_m3))

    @property
    def reference_viscosity_pa_s(self) -> float:
        """The viscosity used to define a Reynolds number (here μ itself)."""
        return float(self.viscosity_pa_s)

    @property
    def is_newtonian(self) -> bool:
        return True

    def ufl_viscosity(self, shear_rate: Any) -> Any:  # noqa: ARG002  (same signature as CY)
        """μ as a UFL-compatible value (the shear rate is ignored)."""
        return self.viscosity_pa_s

    def viscosity(self, shear_rate: np.ndarray) -> np.ndarray:
        """μ (Pa·s) for an array of shear rates (1/s)."""
        g = np.asarray(shear_rate, dtype=float)
        return np.full_like(g, self.viscosity_pa_s)


@dataclass(frozen=True)
class CarreauYasuda:
    """Carreau–Yasuda shear-thinning viscosity.

    Parameters
    ----------
    mu0_pa_s : zero-shear viscosity μ_0 in Pa·s.
    mu_inf_pa_s : infinite-shear viscosity μ_∞ in Pa·s, ``0 < μ_∞ <= μ_0``.
    lambda_s : relaxation time λ in s, > 0 (the inverse of the shear rate where thinning sets in).
    n : power-law index, ``0 < n <= 1`` (1 = Newtonian).
    a : Yasuda transition exponent, > 0 (2 = Carreau).

    Defaults: blood, Cho & Kensey (1991) via Johnston et al. (2004), see the module docstring.
    """

    mu0_pa_s: float = 0.056
    mu_inf_pa_s: float = 0.00345
    lambda_s: float = 3.313
    n: float = 0.3568
    a: float = 2.0

    def __post_init__(self) -> None:
        _check_positive("CarreauYasuda mu0_pa_s", self.mu0_pa_s, 1e-6, 1e3, "Zero-shear viscosity in Pa·s.")
        _check_positive("CarreauYasuda mu_inf_pa_s", self.mu_inf_pa_s, 1e-6, 1e3,
                        "Infinite-shear viscosity in Pa·s (blood ≈ 3.45e-3).")
        if self.mu_inf_pa_s > self.mu0_pa_s:
            raise InputError(
                f"CarreauYasuda needs mu_inf_pa_s <= mu0_pa_s (shear thinning); got "
                f"mu_inf={self.mu_inf_pa_s}, mu0={self.mu0_pa_s}")
        _check_positive("CarreauYasuda lambda_s", self.lambda_s, 0.0, 1e6, "Relaxation time in s.")
        if not (math.isfinite(self.n) and 0.0 < self.n <= 1.0):
            raise InputError(f"CarreauYasuda n must be in (0, 1] (shear thinning); got {self.n!r}")
        _check_positive("CarreauYasuda a", self.a, 0.0, 100.0, "Yasuda exponent (2 = Carreau).")

    @property
    def reference_viscosity_pa_s(self) -> float:
        """μ_∞, the high-shear (large-vessel) viscosity used to define a Reynolds number."""
        return float(self.mu_inf_pa_s)

    @property
    def is_newtonian(self) -> bool:
        return self.n == 1.0 or self.mu0_pa_s == self.mu_inf_pa_s

    def ufl_viscosity(self, shear_rate: Any) -> Any:
        """μ(γ̇) as a UFL expression of a UFL scalar shear rate (1/s)."""
        lg = self.lambda_s * shear_rate
        return self.mu_inf_pa_s + (self.mu0_pa_s - self.mu_inf_pa_s) * (
            1.0 + lg**self.a) ** ((self.n - 1.0) / self.a)

    def viscosity(self, shear_rate: np.ndarray) -> np.ndarray:
        """μ (Pa·s) for an array of shear rates (1/s, >= 0)."""
        g = np.abs(np.asarray(shear_rate, dtype=float))
        return self.mu_inf_pa_s + (self.mu0_pa_s - self.mu_inf_pa_s) * (
            1.0 + (self.lambda_s * g) ** self.a) ** ((self.n - 1.0) / self.a)


Rheology = Newtonian | CarreauYasuda
