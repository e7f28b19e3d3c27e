"""`LiveUpdate`: one rolling answer of the live loop, in stream time, with a versioned JSON form.

JSON schema "actfusion-sdk/live/1" (one object per line in the CLI's ``--jsonl``)::

    {
      "schema": "actfusion-sdk/live/1",
      "index": int,                   # 0, 1, 2, ... in stream-time order
      "time": float,                  # stream seconds observed (the end of the observed part)
      "observed_frames": int,         # feature frames observed since the start of the stream
      "context_start": float,         # stream seconds where the model's input begins (0 without context)
      "horizon": float,               # seconds anticipated after `time`
      "fps": float,                   # feature frames per second
      "latency": float,               # wall seconds from the newest needed frame's arrival to this update
      "lag": float,                   # stream seconds that had arrived beyond `time` when it was made
      "skipped": int,                 # stale updates skipped just before this one (drop policy)
      "final": bool,                  # the last update of the stream
      "end": "end" | "stalled" | null,  # why the stream ended (final updates only)
      "observed_segments": [segment, ...], "anticipated_segments": [segment, ...]
    }

Segments are those of the result schema (`actfusion-sdk/result/1`) with times and frames in stream time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from ..errors import InputError
from ..results import Segment
from ..results.document import (
    boolean,
    check_values,
    count,
    number,
    one_of,
    optional,
    positive_number,
    segments,
)

LIVE_SCHEMA = "actfusion-sdk/live/1"
# What each field of the JSON form must hold (checked by `from_dict`).
_FIELDS = {
    "index": count,
    "time": number,
    "observed_frames": count,
    "context_start": number,
    "horizon": positive_number,
    "fps": positive_number,
    "latency": number,
    "lag": number,
    "skipped": count,
    "final": boolean,
    "end": optional(one_of("end", "stalled")),
    "observed_segments": segments,
    "anticipated_segments": segments,
}


@dataclass(frozen=True)
class LiveUpdate:
    """What the model says at stream time `time`: the observed segments and the next `horizon` seconds."""

    index: int
    time: float
    observed_frames: int
    context_start: float
    horizon: float
    fps: float
    latency: float
    lag: float
    skipped: int
    final: bool
    end: str | None
    observed_segments: tuple[Segment, ...]
    anticipated_segments: tuple[Segment, ...]

    @property
    def current(self) -> Segment | None:
        """The action going on at `time` (the last observed segment), with its score."""
        return self.observed_segments[-1] if self.observed_segments else None

    @property
    def next_action(self) -> Segment | None:
        """The first anticipated segment of another action than the current one; `start` is when."""
        current = self.current
        for segment in self.anticipated_segments:
            if current is None or segment.label_id != current.label_id:
                return segment
        return None

    def status_line(self) -> str:
        """One line for a terminal: time, current action, next action and its expected start, latency."""
        current, upcoming = self.current, self.next_action
        now = "-" if current is None else f"{current.label} ({current.score or 0:.2f})"
        then = "-" if upcoming is None else f"{upcoming.label} at {upcoming.start:.1f} s"
        flags = "".join(
            [f"  skipped {self.skipped}" if self.skipped else "", f"  [{self.end}]" if self.final else ""]
        )
        return (
            f"{self.time:8.1f} s  now: {now:<28} next: {then:<28} "
            f"latency {self.latency:.2f} s  lag {self.lag:.1f} s{flags}"
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"schema": LIVE_SCHEMA}
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name.endswith("_segments"):
                value = [segment.to_dict() for segment in value]
            data[field.name] = value
        return data

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LiveUpdate:
        """An update from its JSON object, every field checked (an InputError names the first bad one)."""
        if data.get("schema") != LIVE_SCHEMA:
            raise InputError(
                f"expected a live update of schema {LIVE_SCHEMA!r}, found {data.get('schema')!r}"
            )
        check_values(data, _FIELDS, "live update")
        values = {field.name: data[field.name] for field in fields(cls)}
        for name in ("observed_segments", "anticipated_segments"):
            values[name] = tuple(Segment.from_dict(row) for row in values[name])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> LiveUpdate:
        """One update from its JSON text (a line of a ``--jsonl`` file)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"live update is not valid JSON ({err})") from err
        if not isinstance(data, dict):
            raise InputError(f"a live update is a JSON object, got {type(data).__name__}")
        return cls.from_dict(data)
