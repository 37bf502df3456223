"""Geometry: surfaces from labels, aortic-root landmarks, tetrahedral fluid meshes.

Modules
-------
surface
    Watertight lumen surface (marching cubes, smoothing, repair) with flat inlet/outlet caps.
landmarks
    :func:`measure_aortic_root` → :class:`AorticRootLandmarks` (annulus, LVOT, sinus, orifice).
anatomy_gate
    The quality gate a segmentation passes before meshing (:func:`run_gate`, documented ranges).
volume_mesh
    gmsh tetrahedra of the fluid domain, tagged and time-bounded (:class:`FluidDomain`).
quality
    Tetrahedron quality measures.

Imports point downward only: geometry uses imaging, never physics, the store or the workflows.
"""
