"""The gps-monitor exception family.

    GpsMonitorError                 base of everything raised on purpose
    ├── ConfigurationError          a setting is missing or unusable (says which and what came)
    ├── PayloadError                an incoming message cannot become a position (reason kept)
    ├── GeometryError               a geofence or route geometry is invalid at save
    ├── NotFoundError               a referenced company, vehicle, alarm... does not exist
    └── StateError                  an object is not in the state an operation expects

Messages say what was expected and what came, e.g.
``PayloadError("latitude: expected a number in [-90, 90], got 123.4")``.
"""

from __future__ import annotations


class GpsMonitorError(Exception):
    """Base class of all errors gps-monitor raises on purpose."""


class ConfigurationError(GpsMonitorError):
    """A setting is missing or unusable."""


class PayloadError(GpsMonitorError):
    """An incoming message cannot be turned into positions.

    ``reason`` is a short machine-friendly code (``malformed_json``, ``missing_field``,
    ``wrong_type``, ``oversize``, ``unknown_terminal``, ``bad_topic``...), stored with the raw
    bytes in ``rejected_messages``; ``str(error)`` is the human explanation.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class GeometryError(GpsMonitorError):
    """A geofence or route geometry is invalid (self-intersecting, out of range, swapped axes)."""


class NotFoundError(GpsMonitorError):
    """A referenced object does not exist."""


class StateError(GpsMonitorError):
    """An object is not in the state an operation expects; names expected and actual state."""

    def __init__(self, what: str, expected: str, actual: str) -> None:
        super().__init__(f"{what}: expected state {expected}, got {actual}")
        self.expected = expected
        self.actual = actual
