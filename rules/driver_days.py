"""A driver's driving time per local day across vehicles (issue 12 item 7).

The daily driving limit (DOMAIN.md, Fatigue driving: at most 8 h a day; JT/T 808 0x0058) binds
the driver: a driver who drove 5 h on one coach and then 4 h on another has driven 9 h that day.
Each vehicle's fatigue state keeps what its drivers drove on it per local day
(``fatigue.State.driver_days``, ``"{certificate_no}|{day}" -> seconds``); this ledger holds those
figures for every vehicle, so the fatigue rule of one vehicle can add what the same driver drove
on the others. Entries are *set* (never added to), so re-evaluating a fix gives the same
figures: a retried batch or a redelivered message counts nothing twice.

One ledger per rules worker (shared by the contexts of all vehicles; filled from the stored
states of the vehicles it owns, :meth:`DriverDays.restore`, and emptied of those whose partition
moves away, :meth:`DriverDays.forget`); ``evaluate`` over one vehicle has its own. On a
partitioned transport a driver's vehicles may be owned by different processes: each then adds
only what that driver drove on its own vehicles.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable


def key(certificate_no: str, day: int) -> str:
    """The state's key of a driver's local day (day number as in ``LocalClock.day_number``)."""
    return f"{certificate_no}|{day}"


class DriverDays:
    """``(certificate_no, day) -> {vehicle_id: seconds driven on that vehicle}``."""

    def __init__(self) -> None:
        self._days: dict[tuple[str, int], dict[int, float]] = {}

    def record(self, certificate_no: str, day: int, vehicle_id: int, driving_s: float) -> None:
        self._days.setdefault((certificate_no, day), {})[vehicle_id] = driving_s

    def others(self, certificate_no: str, day: int, vehicle_id: int) -> float:
        """Seconds the driver drove that day on vehicles other than ``vehicle_id``."""
        per_vehicle = self._days.get((certificate_no, day), {})
        return sum(s for v, s in per_vehicle.items() if v != vehicle_id)

    def vehicles(self, certificate_no: str, day: int) -> dict[int, float]:
        return dict(self._days.get((certificate_no, day), {}))

    def restore(self, states: Iterable[tuple[int, dict[str, float]]]) -> None:
        """Take the figures of ``(vehicle_id, fatigue.State.driver_days)`` stored states: each
        named vehicle's entries are replaced, the other vehicles' kept (a rules process on a
        partitioned transport restores the partitions it gains one batch at a time)."""
        states = list(states)
        self.forget({vehicle_id for vehicle_id, _ in states})
        for vehicle_id, days in states:
            for name, seconds in days.items():
                certificate_no, _, day = name.rpartition("|")
                if certificate_no and day.lstrip("-").isdigit():
                    self.record(certificate_no, int(day), vehicle_id, seconds)

    def forget(self, vehicle_ids: Collection[int]) -> None:
        """Drop what the ledger holds of ``vehicle_ids`` (their partitions moved to another
        process, or their stored figures are about to replace these)."""
        wanted = set(vehicle_ids)
        for name in list(self._days):
            per_vehicle = self._days[name]
            for vehicle_id in wanted & per_vehicle.keys():
                del per_vehicle[vehicle_id]
            if not per_vehicle:
                del self._days[name]
