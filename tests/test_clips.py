"""Clip sampling against hand-computed schedules, and the streaming assembler's bounded window."""

from __future__ import annotations

import numpy as np
import pytest

from actfusion_sdk.features.settings import FeatureSettings
from actfusion_sdk.video.clips import ClipSchedule

DEMO = ClipSchedule(clip_frames=8, frame_stride=2, feature_stride=8)
KINETICS = ClipSchedule(clip_frames=8, frame_stride=8, feature_stride=15)


def test_demo_schedule_by_hand() -> None:
    # Feature k covers frames 8k..8k+7 (centre 8k+4); a clip of 8 frames every 2nd: 8k-4, 8k-2, ..., 8k+10
    # (frame centres 8k-3.5 .. 8k+10.5, mean 8k+3.5: half a frame early, as S-(C-1)s-1 = -7 is odd).
    assert DEMO.frame_indices(0).tolist() == [-4, -2, 0, 2, 4, 6, 8, 10]
    assert DEMO.frame_indices(3).tolist() == [20, 22, 24, 26, 28, 30, 32, 34]
    assert DEMO.frame_indices(0, num_frames=9).tolist() == [0, 0, 0, 2, 4, 6, 8, 8]
    assert DEMO.timestamps(3, fps=16).tolist() == [0.25, 0.75, 1.25]


def test_kinetics_schedule_by_hand() -> None:
    # Feature k covers frames 15k..15k+14 (centre 15k+7.5); 8 frames every 8th span 64 frames centred on it:
    # 15k-21, 15k-13, ..., 15k+35, whose centres average exactly 15k+7.5.
    assert KINETICS.frame_indices(2).tolist() == [9, 17, 25, 33, 41, 49, 57, 65]
    centres = KINETICS.frame_indices(2) + 0.5
    assert centres.mean() == 2 * 15 + 7.5
    assert KINETICS.timestamps(2, fps=30).tolist() == [0.25, 0.75]


@pytest.mark.parametrize(("num_frames", "features"), [(1, 1), (7, 1), (8, 1), (9, 2), (64, 8), (65, 9)])
def test_number_of_features(num_frames: int, features: int) -> None:
    assert DEMO.num_features(num_frames) == features


@pytest.mark.parametrize(
    "schedule", [DEMO, KINETICS, ClipSchedule(1, 1, 15), ClipSchedule(4, 3, 5), ClipSchedule(8, 1, 1)]
)
@pytest.mark.parametrize("num_frames", [1, 2, 7, 8, 9, 40, 61])
def test_streamed_clips_equal_direct_indexing(schedule: ClipSchedule, num_frames: int) -> None:
    streamed = [list(map(int, clip)) for clip in schedule.clips(iter(range(num_frames)))]
    direct = [
        schedule.frame_indices(k, num_frames).tolist() for k in range(schedule.num_features(num_frames))
    ]
    assert streamed == direct


class TrackedFrame:
    """A frame stand-in that counts how many instances are alive."""

    alive = 0
    peak = 0

    def __init__(self) -> None:
        TrackedFrame.alive += 1
        TrackedFrame.peak = max(TrackedFrame.peak, TrackedFrame.alive)

    def __del__(self) -> None:
        TrackedFrame.alive -= 1


def test_streaming_holds_a_bounded_window() -> None:
    TrackedFrame.alive = TrackedFrame.peak = 0
    count = 0
    for clip in DEMO.clips(TrackedFrame() for _ in range(2000)):
        count += 1
        del clip
    assert count == 250
    # A clip spans 15 frames; the window never needs more than a clip plus one feature stride.
    assert TrackedFrame.peak <= 15 + 8 + 1


def test_schedule_from_settings_matches_demo() -> None:
    demo = FeatureSettings.demo()
    schedule = ClipSchedule(demo.clip_frames, demo.frame_stride, demo.feature_stride)
    assert schedule == DEMO
    assert demo.features_per_second == 2.0
    assert np.isclose(demo.clip_seconds, 1.0)
