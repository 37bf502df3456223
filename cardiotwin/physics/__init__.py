"""Physics in SI units: dolfinx Navier–Stokes, Brinkman device regions, outlet models, metrics.

Import :mod:`dolfinx_solver` before dolfinx/petsc4py (it loads the MPI runtime of the wheel).
"""
