"""Physics in SI units: dolfinx Navier–Stokes, Brinkman device regions, outlet models, metrics.

Import :mod:`dolfinx_solver` before dolfinx/petsc4py (it loads the MPI runtime of the wheel).

Modules
-------
mesh
    :class:`~.mesh.FlowMesh` (a dolfinx mesh in metres with named facet groups),
    :func:`~.mesh.load_domain` (the one mm → m conversion) and per-cell/facet helpers
    (Brinkman indicator, inlet profile, cell sizes).
rheology
    :class:`~.rheology.Newtonian` (the fluid: density and viscosity; default blood) and
    :class:`~.rheology.CarreauYasuda` (shear-thinning viscosity).
brinkman
    porous regions (valves, devices) placed in LPS mm.
windkessel
    0-D outlet models (:class:`~.windkessel.RCR`, :class:`~.windkessel.TwoElement`,
    :class:`~.windkessel.OutletResistance`) and the 0-D left-heart circulation.
waveforms
    inflow waveforms (aortic flow, Fourier series) and Womersley flow.
linear
    PETSc assembly and KSP wrappers shared by the solvers.
steady
    :func:`~.steady.solve_steady`: stabilised P1–P1 Picard with resistance outlets and a
    Brinkman device (the patient solver) → :class:`~.steady.FlowResult`.
newton
    :func:`~.newton.solve_newton`: Taylor–Hood Newton with Reynolds continuation
    (verification grade).
pulsatile
    package; :func:`~.pulsatile.solve_pulsatile`: IPCS P2–P1 over heartbeats with
    Windkessel outlets → :class:`~.pulsatile.PulsatileResult`.
metrics
    gradients, wall shear stress and flow split of a steady result.
verification
    benchmark meshes, manufactured solutions and reference values.
solid
    vessel-wall elasticity: :class:`~.solid.SolidMesh` (:func:`~.solid.load_wall` reads a
    WallDomain, mm → m), :class:`~.solid.Material`, :class:`~.solid.ElasticWall` (linear or
    neo-Hookean, P1/P2, MUMPS or GAMG).
contact
    :func:`~.contact.solve_frame_expansion`: a device frame (:class:`~.contact.ExpandingFrame`)
    expanding against the wall with frictionless penalty contact →
    :class:`~.contact.FrameContactSolution`.
solid_verification
    Lamé cylinder, shrink fit and neo-Hookean references for the wall mechanics.
"""
