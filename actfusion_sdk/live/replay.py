"""The replay page of a live run (``actfusion view live.jsonl``): how the anticipation evolved.

The top row is what happened: the segments the last update observed (with --context, earlier times from the
last update whose context held them). Under it, one row per update at its
stream time: what it had observed (plain) and what it anticipated after its cut (hatched), so each
anticipation can be read against the top row. The row of the update current at the playhead is outlined.

Updates carry class ids and labels but not the model's class list; the colours come from the classes seen,
placed at their ids (so they match the result pages' colours unless an unseen class is named after a colour).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ..errors import InputError
from ..results import Segment, html
from ..results.viewer import total_times
from .update import LiveUpdate


def read_updates(path: str | os.PathLike[str]) -> list[LiveUpdate]:
    """The updates of a ``--jsonl`` file, in order; a bad line is an InputError naming it."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise InputError(f"cannot read live updates '{path}': {err.strerror}") from err
    updates = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            updates.append(LiveUpdate.from_json(line))
        except InputError as err:
            raise InputError(f"{path}:{number}: {err}") from err
    if not updates:
        raise InputError(
            f"'{path}' holds no live update; write one with `actfusion live SOURCE --jsonl FILE`"
        )
    return updates


def write_replay_page(
    updates: Sequence[LiveUpdate],
    path: str | os.PathLike[str],
    video: str | os.PathLike[str] | None = None,
    title: str = "live run",
) -> Path:
    """Write the replay page of `updates` to `path`; `video` is the recorded stream, when there is one."""
    path = Path(path)
    return html.write_page(path, replay_page(updates, path, video, title))


def replay_page(
    updates: Sequence[LiveUpdate], path: Path, video: str | os.PathLike[str] | None, title: str
) -> str:
    """The HTML of the replay page as it will be written to `path`."""
    palette = html.Palette()
    classes = _classes_seen(updates)
    colors = palette.classes_of(classes)
    end = max(update.time + update.horizon for update in updates)
    last = updates[-1]
    happened = what_happened(updates)
    lanes = [(html.Lane("what happened", [(None, segment) for segment in happened], colors), "")]
    for update in updates:
        segments = [("observed", s) for s in update.observed_segments]
        segments += [("anticipated", s) for s in update.anticipated_segments]
        cut = f'<div class="cutline" style="left:{html.percent(update.time, end)}"></div>'
        name = f"#{update.index} at {update.time:.1f} s"
        attributes = f' data-time="{html.seconds(update.time)}" data-update="{update.index}"'
        lane = html.Lane(name, segments, colors, cut, attributes)
        lanes.append((lane, "update"))
    source = None if video is None else html.video_source(video, path)
    stream_end = "" if last.end is None else f", ended: {last.end}"
    meta = (
        f"{len(updates)} updates, {last.time:.1f} s of stream{stream_end}; each row: observed (plain) and "
        f"anticipated (hatched, {last.horizon:g} s horizon) at its update time"
    )
    body = (
        f'<h1>{html.escape(title)}</h1><div class="meta">{html.escape(meta)}</div>'
        + html.player(source, None if video is None else Path(video).name)
        + html.controls()
        + html.timeline(end, lanes)
        + html.legend(_legend(happened, classes, colors))
    )
    return html.page(title, body, palette)


def what_happened(updates: Sequence[LiveUpdate]) -> list[Segment]:
    """The observed segments of the whole stream in hindsight: each time from the last update that observed
    it (whose context held it), adjacent pieces of one label joined."""
    pieces: list[Segment] = []
    covered_from = math.inf  # later times are already taken from a later update
    for update in reversed(updates):
        for segment in reversed(update.observed_segments):
            start, end = max(segment.start, update.context_start), min(segment.end, covered_from)
            if end > start:
                frames = {"start_frame": round(start * update.fps), "end_frame": round(end * update.fps)}
                pieces.append(replace(segment, start=start, end=end, **frames))
        covered_from = min(covered_from, update.context_start)
        if covered_from <= 0:
            break
    joined: list[Segment] = []
    for piece in reversed(pieces):
        if joined and joined[-1].label_id == piece.label_id and joined[-1].end == piece.start:
            piece = replace(joined.pop(), end=piece.end, end_frame=piece.end_frame, score=None)
        joined.append(piece)
    return joined


def _legend(
    happened: Sequence[Segment], classes: Sequence[str], colors: Sequence[str]
) -> list[tuple[str, str, str, str]]:
    """Each class of what happened with its total time, and the hatch of anticipated segments."""
    totals = sorted(total_times(happened).items())
    entries = [(classes[i], colors[i], f"{total:.2f} s", html.seconds(total)) for i, total in totals]
    return [*entries, ("anticipated", "anticipated hatch", "after each update's cut (hatched)", "")]


def _classes_seen(updates: Sequence[LiveUpdate]) -> list[str]:
    """Class names at their ids, from every segment of the updates ("" for ids never seen)."""
    names: dict[int, str] = {}
    for update in updates:
        for segment in update.observed_segments + update.anticipated_segments:
            names.setdefault(segment.label_id, segment.label)
    return [names.get(label_id, "") for label_id in range(max(names, default=-1) + 1)]
