"""The service: use cases over the store, the keys, the engine and the 1:N index, behind the
``FaceService`` facade (``facade.py``), composed from settings by ``compose.open_service``."""

from facegate.service.context import Caller, Probe
from facegate.service.facade import FaceService
from facegate.service.policy import ROLES

__all__ = ["ROLES", "Caller", "FaceService", "Probe"]
