"""What a set of annotations means for a dataset: checked, merged and ordered before any feature is made.

Errors (a `DatasetError` listing every problem, one line each with its file and line or element): a video
that is not among the inputs, a segment that starts before 0 s, ends before it starts or is empty, an input
video without any annotation, and (by default) two segments with different labels that overlap. Warnings (one
line each, also kept in the dataset card): label spellings that differ only in case or spaces (merged into
the most frequent spelling with ``merge_case``), overlaps resolved by a policy, segments clipped at the
video's end.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from ..errors import ConfigError, DatasetError
from .annotations import Annotation

log = logging.getLogger(__name__)

OVERLAP_POLICIES = ("error", "later", "longer")
MAX_LISTED_ERRORS = 20


@dataclass(frozen=True)
class CheckedAnnotations:
    """Annotations that passed the checks, per video in painting order (a later one wins where two overlap),
    the class list (background first, then sorted) and the warnings given."""

    by_video: Mapping[str, tuple[Annotation, ...]]
    classes: tuple[str, ...]
    warnings: tuple[str, ...]


def label_key(label: str) -> str:
    """What spellings of one label share: case folded, runs of spaces and underscores read as one space."""
    return re.sub(r"[\s_]+", " ", label.strip()).casefold()


def check_annotations(
    annotations: Sequence[Annotation],
    videos: Sequence[str],
    *,
    background: str = "background",
    overlap: str = "error",
    merge_case: bool = False,
) -> CheckedAnnotations:
    """Check `annotations` against the input `videos` (their names); see the module docstring."""
    if overlap not in OVERLAP_POLICIES:
        raise ConfigError(f"overlap must be one of {', '.join(OVERLAP_POLICIES)}, got {overlap!r}")
    if not background.strip():
        raise ConfigError("the background class needs a name, e.g. 'background'")
    errors: list[str] = []
    warnings: list[str] = []
    known = set(videos)
    valid = []  # the annotations without errors of their own, checked further for overlaps
    for item in annotations:
        if item.video not in known:
            listed = ", ".join(sorted(known)[:8]) + (", ..." if len(known) > 8 else "")
            errors.append(
                f"{item.where}: video {item.video!r} is not among the input videos ({listed}); "
                "add the video or fix its name"
            )
        elif item.start < 0:
            errors.append(f"{item.where}: the segment starts at {item.start:g} s, before the video starts")
        elif item.end < item.start:
            errors.append(
                f"{item.where}: the segment ends ({item.end:g} s) before it starts ({item.start:g} s)"
            )
        elif item.end == item.start:
            errors.append(f"{item.where}: the segment is empty (starts and ends at {item.start:g} s)")
        else:
            valid.append(item)
    annotated = {item.video for item in annotations}
    sources = sorted({str(item.source) for item in annotations})
    for video in videos:
        if video not in annotated:
            errors.append(
                f"video {video!r} has no annotation in {', '.join(sources) or 'the annotation files'}; "
                "annotate it or leave it out"
            )
    spelling = _spellings(valid, background, merge_case, warnings)
    merged = [replace(item, label=spelling.get(item.label, item.label)) for item in valid]
    by_video: dict[str, tuple[Annotation, ...]] = {}
    grouped: dict[str, list[Annotation]] = {video: [] for video in videos}
    for item in merged:
        grouped[item.video].append(item)
    for video, own in grouped.items():
        by_video[video] = _painting_order(own, overlap, errors, warnings)
    _raise(errors)
    names = {item.label for item in merged} - {background}
    classes = (background, *sorted(names, key=lambda name: (name.casefold(), name)))
    for line in warnings:
        log.warning(line)
    return CheckedAnnotations(by_video, classes, tuple(warnings))


def clip_to_durations(
    checked: CheckedAnnotations, durations: Mapping[str, float], tolerances: Mapping[str, float]
) -> CheckedAnnotations:
    """Segments cut at their video's end; an overshoot beyond the video's tolerance (seconds) is warned with
    its amount (a segment wholly past the end is dropped and warned)."""
    warnings = list(checked.warnings)
    clipped: dict[str, tuple[Annotation, ...]] = {}
    for video, items in checked.by_video.items():
        duration = durations[video]
        kept = []
        for item in items:
            over = item.end - duration
            if item.start >= duration:
                warnings.append(
                    f"{item.where}: the segment ({item.start:g}-{item.end:g} s) lies past the end of video "
                    f"{video!r} ({duration:.3f} s); dropped"
                )
                log.warning(warnings[-1])
                continue
            if over > tolerances[video]:
                warnings.append(
                    f"{item.where}: the segment ends {over:.3f} s past the end of video {video!r} "
                    f"({item.end:g} s > {duration:.3f} s); clipped"
                )
                log.warning(warnings[-1])
            kept.append(replace(item, end=min(item.end, duration)))
        clipped[video] = tuple(kept)
    return replace(checked, by_video=clipped, warnings=tuple(warnings))


def _raise(errors: list[str]) -> None:
    if not errors:
        return
    if len(errors) == 1:
        raise DatasetError(errors[0])
    shown = errors[:MAX_LISTED_ERRORS]
    more = f"\n  ... and {len(errors) - len(shown)} more" if len(errors) > len(shown) else ""
    raise DatasetError(
        f"{len(errors)} problems in the annotations:\n" + "\n".join(f"  {line}" for line in shown) + more
    )


def _spellings(
    annotations: Sequence[Annotation], background: str, merge: bool, warnings: list[str]
) -> dict[str, str]:
    """Spelling -> the label it is merged into (empty unless `merge`); each group of spellings is warned."""
    counts = Counter(item.label for item in annotations)
    first_seen: dict[str, Annotation] = {}
    for item in annotations:
        first_seen.setdefault(item.label, item)
    groups: dict[str, list[str]] = {}
    for label in first_seen:
        groups.setdefault(label_key(label), []).append(label)
    mapping: dict[str, str] = {}
    for key, spellings in groups.items():
        if len(spellings) < 2 and not (key == label_key(background) and spellings[0] != background):
            continue
        if key == label_key(background):
            target = background
        else:
            target = max(spellings, key=lambda label: (counts[label], -spellings.index(label)))
        listed = ", ".join(f"{label!r} ({first_seen[label].where})" for label in spellings)
        if background not in spellings and target == background:
            listed += f" and the background class {background!r}"
        if merge:
            mapping.update({label: target for label in spellings})
            warnings.append(f"labels {listed} differ only in case or spaces; merged into {target!r}")
        else:
            warnings.append(
                f"labels {listed} differ only in case or spaces and stay separate classes; "
                "pass --merge-case (merge_case=True) to merge them"
            )
    return mapping


def _painting_order(
    items: list[Annotation], policy: str, errors: list[str], warnings: list[str]
) -> tuple[Annotation, ...]:
    """`items` ordered so that painting them in turn applies `policy`; overlaps of different labels are
    errors under "error", else counted and warned once per video."""
    ordered = sorted(items, key=lambda item: (item.start, item.end))
    overlaps = []
    reach = float("-inf")  # the furthest end among the segments before the current one
    for index, item in enumerate(ordered):
        if item.start < reach:
            overlaps += [
                (other, item)
                for other in ordered[:index]
                if other.end > item.start and other.label != item.label
            ]
        reach = max(reach, item.end)
    if overlaps and policy == "error":
        for first, second in overlaps:
            errors.append(
                f"{first.where} ({first.label!r}, {first.start:g}-{first.end:g} s) overlaps "
                f"{second.where} ({second.label!r}, {second.start:g}-{second.end:g} s); fix one, or pass "
                "--overlap later|longer"
            )
        return tuple(ordered)
    if overlaps:
        winner = "the later segment" if policy == "later" else "the longer segment"
        warnings.append(
            f"video {ordered[0].video!r}: {len(overlaps)} overlapping segment pair(s) resolved, {winner} "
            f"wins (first: {overlaps[0][0].where} and {overlaps[0][1].where})"
        )
    if policy == "longer":
        return tuple(sorted(ordered, key=lambda item: (item.duration, item.start)))
    return tuple(ordered)
