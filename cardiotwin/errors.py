"""The project's exception types.

Every error a user can cause (bad file, bad value, failed solve) is one of these, with a message
that says what was wrong, where, what was expected, and what to do. The CLI prints the message
without a traceback and exits non-zero.
"""


class CardiotwinError(Exception):
    """Base class of all cardiotwin errors."""


class InputError(CardiotwinError, ValueError):
    """A value or argument is outside what the function accepts (units, ranges, shapes)."""


class DicomError(CardiotwinError):
    """A DICOM file or series cannot be read or is not usable for the requested step."""


class SegmentationError(CardiotwinError):
    """Segmentation could not find the expected anatomy."""


class GeometryError(CardiotwinError):
    """Surface extraction, landmark detection or meshing failed."""


class SolverError(CardiotwinError):
    """A finite-element solve diverged or did not converge."""


class DeviceError(CardiotwinError):
    """A device, size or placement is not valid for the anatomy or the catalog."""


class StoreError(CardiotwinError):
    """The twin store or an artifact could not be read or written."""


class AuditError(StoreError):
    """The audit chain is broken or an audited action was refused."""


class AccessDenied(CardiotwinError):
    """The actor's role may not perform this action (the attempt is audited)."""


class ConfigError(CardiotwinError):
    """A configuration file or setting is invalid; the message names the key."""
