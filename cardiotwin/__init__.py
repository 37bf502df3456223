"""cardiotwin: patient-specific cardiac digital twins.

DICOM → segmentation → surfaces and landmarks → tetrahedral fluid mesh → FEniCSx haemodynamics
before and after a device, kept in an audited store. See ``docs/architecture.md``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cardiotwin")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.1.0+src"

__all__ = ["__version__"]
