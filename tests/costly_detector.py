"""A detector added from outside ratewarden through the registry alone: one :class:`Detector`
class and one settings field. ``python -m tests.costly_detector`` runs a worker with it."""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from ratewarden.stream.detectors import Alert, Detector, at_least
from ratewarden.stream.settings import DetectorSettings, StreamSettings
from ratewarden.stream.windows import ClientSummary, Summary


@dataclass
class CostlyDetector(Detector[ClientSummary]):
    """A client whose requests cost more than ``max_cost`` a minute."""

    max_cost: int = 1000
    alert_type: ClassVar[str] = "costly"
    summary_type: ClassVar[type[Summary]] = ClientSummary

    def check(self, w: ClientSummary, state: MutableMapping[str, Any], /) -> Alert | None:
        if w.cost <= at_least(self.max_cost, w.scale, 1):
            return None
        return Alert(self.alert_type, "warning", w.client_id, w.window_start, {"cost": w.cost}, "talk to the client")


class Detectors(DetectorSettings):
    costly: CostlyDetector = Field(default_factory=CostlyDetector)  # RATEWARDEN_DETECTORS__COSTLY__MAX_COST


class Settings(StreamSettings):
    detectors: Detectors = Field(default_factory=Detectors)


if __name__ == "__main__":
    from faust.worker import Worker

    from ratewarden.stream.app import create_app

    Worker(create_app(Settings()), loglevel="info", quiet=True).execute_from_commandline()
