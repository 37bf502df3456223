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


class BrokerError(CardiotwinError):
    """An MQTT broker cannot be reached, started or stopped within its time bound, or refused us."""


class AuditError(StoreError):
    """The audit chain is broken or an audited action was refused."""


class AccessDenied(CardiotwinError):
    """The actor's role may not perform this action (the attempt is audited)."""


class ConfigError(CardiotwinError):
    """A configuration file or setting is invalid; the message names the key."""


class ObservationError(InputError):
    """A monitoring record cannot become an :class:`~cardiotwin.monitoring.Observation`.

    The message names the record (file and record id), the field, the value received and what
    was expected. The same facts are kept as attributes so a quarantine can store them.

    Parameters
    ----------
    reason : str
        What was wrong, in words.
    record : str, optional
        Where the record came from (``"vitals.json#Observation/hr-1"``).
    field : str, optional
        The field at fault (``"valueQuantity.code"``, ``"OBX-6"``, ``"column sbp"``).
    value : object, optional
        The value received.
    expected : str, optional
        What was expected (``"30-300 /min"``, ``"one of mm[Hg], kPa, Pa"``).
    """

    def __init__(self, reason: str, *, record: str = "", field: str = "", value: object = None,
                 expected: str = ""):
        self.reason = reason
        self.record = record
        self.field = field
        self.value = value
        self.expected = expected
        parts = [f"{record}: " if record else ""]
        parts.append(f"{field}: " if field else "")
        parts.append(reason)
        if value is not None:
            parts.append(f" (got {value!r})")
        if expected:
            parts.append(f"; expected {expected}")
        super().__init__("".join(parts))


class UnknownCodeError(ObservationError):
    """The observation's code is not in the LOINC table of the vitals a twin uses."""


class UnitError(ObservationError):
    """The unit is not a UCUM unit known for the observation's code."""


class ImplausibleValueError(ObservationError):
    """A value (or a time) is outside the plausible range for its code."""
