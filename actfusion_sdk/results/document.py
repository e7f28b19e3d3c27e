"""What `Result.from_json` checks in a document before trusting it: every field present with its JSON type
and range (`check_fields`), then the content consistent with itself (`check_consistent`): labels that are
class ids, a duration that holds the frames, and segments that are exactly those the frame labels give.

A document that fails is an `InputError` naming the file (or "result JSON text"), the field and what was
expected; a tampered or hand-edited file is refused on load instead of failing later (an IndexError on a
label, an export that writes the wrong class).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, InputError

if TYPE_CHECKING:
    from .segments import Segment
    from .types import Result

# A field's check: None when the value is right, else what was expected.
Check = Callable[[Any], str | None]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def positive_number(value: Any) -> str | None:
    return None if _number(value) and value > 0 else "a positive, finite number"


def number(value: Any) -> str | None:
    return None if _number(value) else "a finite number"


def integer(value: Any) -> str | None:
    return None if _integer(value) else "an integer"


def count(value: Any) -> str | None:
    return None if _integer(value) and value >= 0 else "an integer >= 0"


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "true or false"


def text(value: Any) -> str | None:
    return None if isinstance(value, str) else "a string"


def class_names(value: Any) -> str | None:
    ok = (
        isinstance(value, list)
        and value
        and all(isinstance(name, str) and name.strip() for name in value)
        and len(set(value)) == len(value)
    )
    return None if ok else "a non-empty list of unique, non-empty class names"


def label_ids(value: Any) -> str | None:
    ok = isinstance(value, list) and value and all(_integer(label) for label in value)
    return None if ok else "a non-empty list of integer class ids"


def probabilities(value: Any) -> str | None:
    ok = (
        isinstance(value, list)
        and all(isinstance(row, list) and all(_number(p) for p in row) for row in value)
        and len({len(row) for row in value}) <= 1
    )
    return None if ok else "a list (one per class) of equally long lists of finite numbers"


def confidences(value: Any) -> str | None:
    return None if isinstance(value, list) and all(_number(p) for p in value) else "a list of finite numbers"


def timings(value: Any) -> str | None:
    ok = isinstance(value, Mapping) and all(_number(seconds) for seconds in value.values())
    return None if ok else "an object of stage -> seconds"


def ratio(value: Any) -> str | None:
    return None if _number(value) and 0 < value < 1 else "a number in (0, 1)"


_SEGMENT_FIELDS: dict[str, Check] = {
    "label": text,
    "label_id": integer,
    "start": number,
    "end": number,
    "start_frame": integer,
    "end_frame": integer,
}


def segments(value: Any) -> str | None:
    expected = "a list of segments (objects with label, label_id, start, end, start_frame, end_frame, score)"
    if not isinstance(value, list):
        return expected
    for row in value:
        if not isinstance(row, Mapping) or any(
            key not in row or check(row[key]) for key, check in _SEGMENT_FIELDS.items()
        ):
            return expected
        if row.get("score") is not None and not _number(row["score"]):
            return expected
    return None


def one_of(*allowed: str) -> Check:
    """One of the strings `allowed`."""

    def check(value: Any) -> str | None:
        return (
            None if value in allowed and isinstance(value, str) else f"one of {', '.join(map(repr, allowed))}"
        )

    return check


def check_values(
    data: Mapping[str, Any], checks: Mapping[str, Check], where: str, *, required: bool = True
) -> None:
    """Every field of `checks` in `data` (when `required`, present) with a value its check accepts; an
    InputError names `where`, the field, the value and what is expected."""
    for name, check in checks.items():
        if name not in data:
            if required:
                raise InputError(f"{where} lacks the field {name!r}")
            continue
        expected = check(data[name])
        if expected is not None:
            raise InputError(f"{where}: {name} is {_shown(data[name])}; expected {expected}")


def optional(check: Check) -> Check:
    """`check`, or null."""

    def either(value: Any) -> str | None:
        found = None if value is None else check(value)
        return None if found is None else f"{found} or null"

    return either


# Every field of a document: required ones, then the optional ones (absent reads as null).
SHARED: dict[str, Check] = {
    "fps": positive_number,
    "duration": positive_number,
    "classes": class_names,
    "frame_labels": label_ids,
}
SHARED_OPTIONAL: dict[str, Check] = {
    "frame_probs": optional(probabilities),
    "frame_confidence": optional(confidences),
    "video": optional(text),
    "model": optional(text),
    "timings": optional(timings),
    "num_frames": optional(integer),
}
BY_KIND: dict[str, tuple[dict[str, Check], dict[str, Check]]] = {
    "segmentation": ({"segments": segments}, {}),
    "anticipation": (
        {
            "observed_segments": segments,
            "anticipated_segments": segments,
            "cut_frame": integer,
            "cut_time": number,
        },
        {
            "observation_ratio": optional(ratio),
            "video_end": optional(positive_number),
            "horizon": optional(number),
        },
    ),
}


def source_name(source: str | os.PathLike[str]) -> str:
    """How a message names a document: its path, or "result JSON text" when the JSON was given inline."""
    given = str(source)
    return "result JSON text" if given.lstrip().startswith("{") else repr(given)


def check_fields(data: Mapping[str, Any], kind: str, where: str) -> None:
    """Every field of a `kind` document present (the optional ones may be absent) with its type and range."""
    required, optional_fields = BY_KIND[kind]
    check_values(data, {**SHARED, **required}, where)
    check_values(data, {**SHARED_OPTIONAL, **optional_fields}, where, required=False)
    labels, classes = data["frame_labels"], data["classes"]
    outside = next((label for label in labels if not 0 <= label < len(classes)), None)
    if outside is not None:
        raise InputError(
            f"{where}: frame_labels holds {outside}, which is not a class id in [0, {len(classes)}) "
            f"({len(classes)} classes)"
        )
    if data.get("num_frames") is not None and data["num_frames"] != len(data["frame_labels"]):
        raise InputError(
            f"{where}: num_frames is {data['num_frames']} but frame_labels has {len(data['frame_labels'])}"
        )


def check_consistent(result: Result, where: str) -> None:
    """`result` (as loaded) equals itself rebuilt from its frame labels: labels in range, a duration that
    holds the frames, and the stored segments (and cut) exactly those the labels give."""
    try:
        rebuilt = _rebuilt(result)
    except ConfigError as err:
        raise InputError(f"{where}: {err}") from err
    cut_time = getattr(result, "cut_time", None)
    if cut_time is not None and not math.isclose(cut_time, rebuilt.cut_time, rel_tol=1e-6, abs_tol=1e-6):
        raise InputError(
            f"{where}: cut_time is {cut_time} but cut_frame {rebuilt.cut_frame} starts at "
            f"{rebuilt.cut_time}; fix one of them or rewrite the file with to_json"
        )
    for (part, stored), (_, expected) in zip(result.parts(), rebuilt.parts(), strict=True):
        if len(stored) != len(expected):
            raise InputError(
                f"{where}: {part} holds {len(stored)} segments but frame_labels give {len(expected)}; "
                "the file was edited: fix frame_labels or rewrite the file with to_json"
            )
        for index, (have, want) in enumerate(zip(stored, expected, strict=True)):
            if not _same_span(have, want):
                raise InputError(
                    f"{where}: {part}[{index}] ({have.label} frames {have.start_frame}-{have.end_frame}) "
                    f"contradicts frame_labels, which give {want.label} frames {want.start_frame}-"
                    f"{want.end_frame}; fix frame_labels or rewrite the file with to_json"
                )


def _rebuilt(result: Result) -> Result:
    """`result` built anew from its frame labels by its kind's `from_frames` (which checks them)."""
    options = {"frame_probs": result.frame_probs, "duration": result.duration}
    if result.kind == "anticipation":
        return type(result).from_frames(
            result.frame_labels,
            result.classes,
            result.fps,
            result.cut_frame,
            observation_ratio=result.observation_ratio,
            video_duration=result.video_end,
            **options,
        )
    return type(result).from_frames(result.frame_labels, result.classes, result.fps, **options)


def _same_span(have: Segment, want: Segment) -> bool:
    return (
        (have.label, have.label_id, have.start_frame, have.end_frame)
        == (want.label, want.label_id, want.start_frame, want.end_frame)
        and math.isclose(have.start, want.start, rel_tol=1e-6, abs_tol=1e-6)
        and math.isclose(have.end, want.end, rel_tol=1e-6, abs_tol=1e-6)
    )


def _shown(value: Any) -> str:
    shown = "null" if value is None else repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."
