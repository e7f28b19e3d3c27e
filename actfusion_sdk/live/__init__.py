"""Live video: rolling segmentation and anticipation while a stream plays (`actfusion live`)."""

from .stream import UpdatePlan, live_updates
from .update import LIVE_SCHEMA, LiveUpdate

__all__ = ["LIVE_SCHEMA", "LiveUpdate", "UpdatePlan", "live_updates"]
