"""Geometry: surfaces from labels, aortic-root landmarks, tetrahedral fluid meshes."""
