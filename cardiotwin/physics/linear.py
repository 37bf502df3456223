"""PETSc linear algebra shared by the flow solvers: system assembly and KSP wrappers.

:func:`assemble_system` reassembles a matrix and right-hand side with Dirichlet lifting.
:class:`LinearSolver` is a KSP configured from an options dict whose failures raise
:class:`~cardiotwin.errors.SolverError` with the likely cause. :class:`LaggedCoupledSolver`
solves the steady system with implicit resistance outlets by GMRES preconditioned with the LU
factors of an earlier matrix (see :mod:`cardiotwin.physics.steady`).
"""

from __future__ import annotations

from typing import Any

import dolfinx_solver  # noqa: F401  (loads the MPI runtime before dolfinx/petsc4py)
import numpy as np

from cardiotwin.errors import SolverError

__all__ = ["LaggedCoupledSolver", "LinearSolver", "assemble_system"]


def assemble_system(A, b, a_form, L_form, bcs: list) -> None:
    """Reassemble ``A`` and ``b`` in place with Dirichlet lifting (``b`` ghosts summed, BCs set)."""
    from dolfinx.fem import petsc as fpetsc
    from petsc4py import PETSc

    A.zeroEntries()
    fpetsc.assemble_matrix(A, a_form, bcs=bcs)
    A.assemble()
    with b.localForm() as bl:
        bl.set(0.0)
    fpetsc.assemble_vector(b, L_form)
    fpetsc.apply_lifting(b, [a_form], bcs=[bcs])
    b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
    fpetsc.set_bc(b, bcs)


class LinearSolver:
    """PETSc KSP wrapper with an error that says what failed."""

    def __init__(self, comm, options: dict[str, Any], prefix: str):
        from petsc4py import PETSc

        self.PETSc = PETSc
        self.ksp = PETSc.KSP().create(comm)
        self.ksp.setOptionsPrefix(prefix)
        opts = PETSc.Options()
        for k, v in options.items():
            opts[f"{prefix}{k}"] = v
        self.ksp.setFromOptions()
        self._prefix = prefix
        self._keys = list(options)

    def set_operator(self, A) -> None:
        self.ksp.setOperators(A)

    def solve(self, b, x, it: int, what: str) -> None:
        try:
            self.ksp.solve(b, x)
        except self.PETSc.Error as e:  # MUMPS failures surface here
            raise SolverError(
                f"linear solve ({what}) failed at nonlinear iteration {it}: {e}. Likely causes: a "
                "singular system (unconnected mesh part, missing boundary tag) or too little "
                "MUMPS workspace (raise petsc_options['mat_mumps_icntl_14']).") from e
        reason = self.ksp.getConvergedReason()
        if reason < 0:
            raise SolverError(
                f"linear solve ({what}) diverged at nonlinear iteration {it} (KSP reason {reason}). "
                "Use the default direct solver (MUMPS) or check petsc_options.")
        x.ghostUpdate(addv=self.PETSc.InsertMode.INSERT, mode=self.PETSc.ScatterMode.FORWARD)

    def destroy(self) -> None:
        opts = self.PETSc.Options()
        for k in self._keys:
            opts.delValue(f"{self._prefix}{k}")
        self.ksp.destroy()


class LaggedCoupledSolver:
    """GMRES on ``A + B diag(R) Bᵀ`` preconditioned by the LU factors of an earlier ``A``.

    ``B`` holds the outlet vectors ``b_i = ∫_Γi n·v``; the resistance coupling is applied exactly
    in the operator and, in the preconditioner, by the Woodbury identity with the responses
    ``X = Â⁻¹B`` computed at factorisation time::

        (Â + B R Bᵀ)⁻¹ r = y − X (I + R BᵀX)⁻¹ R Bᵀ y,   y = Â⁻¹ r.
    """

    def __init__(self, comm, options: dict[str, Any], prefix: str, A, B: list, R: np.ndarray,
                 rtol: float, max_it: int):
        from petsc4py import PETSc

        self.PETSc, self.A, self.B, self.R = PETSc, A, B, np.asarray(R, dtype=float)
        opts = PETSc.Options()
        self._prefix, self._keys = prefix, list(options)
        for k, v in options.items():
            opts[f"{prefix}{k}"] = v
        self.pc = PETSc.PC().create(comm)
        self.pc.setOptionsPrefix(prefix)
        self.pc.setFromOptions()
        self.A_fact = None
        self.X = [A.createVecLeft() for _ in B]
        self.S_inv = np.eye(len(B))
        self.n_factorisations = 0
        outer = self

        class _Op:
            def mult(self, mat, x, y):
                outer.A.mult(x, y)
                for Ri, bi in zip(outer.R, outer.B, strict=True):
                    if Ri != 0.0:
                        y.axpy(Ri * bi.dot(x), bi)

        class _Prec:
            def apply(self, pc, x, y):
                outer.pc.apply(x, y)
                if outer.B:
                    z = np.array([bi.dot(y) for bi in outer.B])
                    corr = outer.S_inv @ (outer.R * z)
                    for ci, Xi in zip(corr, outer.X, strict=True):
                        y.axpy(-ci, Xi)

        self.M = PETSc.Mat().createPython(A.getSizes(), context=_Op(), comm=comm)
        self.M.setUp()
        self.ksp = PETSc.KSP().create(comm)
        self.ksp.setType("gmres")
        self.ksp.setGMRESRestart(max(30, max_it + 5))
        self.ksp.setOperators(self.M)
        self.ksp.setTolerances(rtol=rtol, atol=1e-300, max_it=max_it)
        self.ksp.setInitialGuessNonzero(True)
        kpc = self.ksp.getPC()
        kpc.setType("python")
        kpc.setPythonContext(_Prec())

    def refactor(self, it: int) -> None:
        if self.A_fact is None:
            self.A_fact = self.A.copy()
        else:
            self.A.copy(self.A_fact, structure=self.PETSc.Mat.Structure.SAME_NONZERO_PATTERN)
        self.pc.setOperators(self.A_fact)
        try:
            self.pc.setUp()
            for bi, Xi in zip(self.B, self.X, strict=True):
                self.pc.apply(bi, Xi)
        except self.PETSc.Error as e:
            raise SolverError(
                f"factorisation failed at nonlinear iteration {it}: {e}. Likely causes: a singular "
                "system (unconnected mesh part, missing boundary tag) or too little MUMPS "
                "workspace (raise petsc_options['mat_mumps_icntl_14']).") from e
        m = len(self.B)
        BtX = np.array([[self.B[j].dot(self.X[i]) for i in range(m)] for j in range(m)])
        self.S_inv = np.linalg.inv(np.eye(m) + self.R[:, None] * BtX) if m else np.eye(0)
        self.n_factorisations += 1

    def solve(self, b, x) -> tuple[int, int]:
        """Solve in place (``x`` holds the initial guess); returns (KSP reason, iterations)."""
        try:
            self.ksp.solve(b, x)
        except self.PETSc.Error:
            return -100, self.ksp.getIterationNumber()
        return self.ksp.getConvergedReason(), self.ksp.getIterationNumber()

    def destroy(self) -> None:
        opts = self.PETSc.Options()
        for k in self._keys:
            opts.delValue(f"{self._prefix}{k}")
        for obj in [self.ksp, self.M, self.pc, *self.X] + ([self.A_fact] if self.A_fact else []):
            obj.destroy()
