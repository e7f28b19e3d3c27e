"""The viewer pages in a real browser (headless Chromium from the Debian package, driven by Selenium): every
kind of page loads without console errors, draws one element per segment, seeks on a click, moves its
playhead while playing, and paints each segment in its class colour."""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest
from matplotlib.colors import to_rgb

from actfusion_sdk.live.replay import write_replay_page
from actfusion_sdk.results import AnticipationResult, Result, SegmentationResult
from actfusion_sdk.results.timeline import class_colors
from actfusion_sdk.results.viewer_index import view_folder

from .browser import chromium, console_errors, open_page, unavailable_reason
from .test_viewer import live_update

CLASSES = ("background", "red_disc_bounce", "green_square_slide", "blue_ring", "pour")
FPS = 2.0
LABELS = np.repeat([0, 1, 2, 4, 3, 1, 0], [3, 4, 2, 5, 3, 4, 1])  # 22 frames: 11 s at 2 frames/s
CLIP_SECONDS = 12


@pytest.fixture(scope="module")
def driver():
    """The browser; without one the tests skip with the reason (fail with ACTFUSION_REQUIRE_BROWSER=1, CI)."""
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("ACTFUSION_REQUIRE_BROWSER") == "1":
            pytest.fail(f"no browser for the viewer tests: {reason}")
        pytest.skip(f"no browser for the viewer tests: {reason}")
    with chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 12 s clip Chromium plays: VP8 WebM (H.264 MP4 where this PyAV lacks libvpx)."""
    playable = [(c, f) for c, f in (("libvpx", "webm"), ("libx264", "mp4")) if c in av.codecs_available]
    if not playable:
        pytest.skip("this PyAV build has neither libvpx nor libx264 to write a test clip")
    codec, container = playable[0]
    path = tmp_path_factory.mktemp("clip") / f"clip.{container}"
    with av.open(str(path), "w", format=container) as output:
        stream = output.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for index in range(10 * CLIP_SECONDS):
            frame = np.full((64, 96, 3), (index * 2) % 255, dtype=np.uint8)
            output.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        output.mux(stream.encode())
    return path


def probabilities(num_frames: int) -> np.ndarray:
    probs = np.random.default_rng(0).random((len(CLASSES), num_frames)).astype(np.float32)
    return probs / probs.sum(axis=0)


def drawn(driver, source: str = "prediction") -> list[dict]:
    """The segment elements of a lane: their data attributes and their box on the page."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(`.lane[data-source='${arguments[0]}'] .seg`)).map(s => {"
        " const r = s.getBoundingClientRect();"
        " return {label: s.dataset.label, start: +s.dataset.start, end: +s.dataset.end,"
        " part: s.dataset.part || null, x: r.left, y: r.top, width: r.width, height: r.height}; });",
        source,
    )


def assert_segments_drawn(driver, result: Result) -> list[dict]:
    segments = drawn(driver)
    expected = [(s.label, round(s.start, 6), round(s.end, 6)) for _, ss in result.parts() for s in ss]
    assert [(s["label"], s["start"], s["end"]) for s in segments] == expected
    return segments


def assert_click_seeks(driver, segments: list[dict], lane: str = "prediction") -> None:
    """A click on each segment puts the media (video or page clock) at its start."""
    from selenium.webdriver.common.by import By

    elements = driver.find_elements(By.CSS_SELECTOR, f".lane[data-source='{lane}'] .seg")
    assert len(elements) == len(segments)
    for element, segment in zip(elements, segments, strict=True):
        element.click()
        shown = driver.execute_script("return document.getElementById('playhead').style.left")
        time = driver.execute_script(
            "const v = document.getElementById('video'); return v && !v.error ? v.currentTime : null"
        )
        if time is not None:
            assert time == pytest.approx(segment["start"], abs=1e-3)
        end = float(driver.execute_script("return document.getElementById('timeline').dataset.end"))
        assert float(shown.rstrip("%")) == pytest.approx(100 * segment["start"] / end, abs=0.01)


def assert_playing_moves_the_playhead(driver) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    before = driver.execute_script("return parseFloat(document.getElementById('playhead').style.left)")
    driver.execute_script("document.getElementById('play').click()")
    WebDriverWait(driver, 10).until(
        lambda d: (
            d.execute_script("return parseFloat(document.getElementById('playhead').style.left)")
            > before + 1.0
        )
    )
    driver.execute_script("document.getElementById('play').click()")  # pause


def assert_painted_in_class_colours(driver, segments: list[dict], classes=CLASSES) -> None:
    """The screenshot's pixels across the middle of each segment are mostly its class colour (hatched ones
    too: the hatch is thin and light)."""
    from PIL import Image
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    ActionChains(driver).move_to_element(driver.find_element(By.TAG_NAME, "h1")).perform()  # no hover
    driver.execute_script("document.getElementById('timeline').scrollIntoView()")
    segments = drawn(driver, "prediction")
    image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    colours = class_colors(classes)
    for segment in segments:
        if segment["width"] < 6:
            continue
        y = int(segment["y"] + segment["height"] / 2)
        xs = range(int(segment["x"]) + 3, int(segment["x"] + segment["width"]) - 3)
        common, _ = Counter(image.getpixel((x, y)) for x in xs).most_common(1)[0]
        want = tuple(round(255 * c) for c in to_rgb(colours[classes.index(segment["label"])]))
        assert max(abs(a - b) for a, b in zip(common, want, strict=True)) <= 3, (segment, common, want)


def test_segmentation_page(driver, clip, tmp_path):
    result = SegmentationResult.from_frames(
        LABELS, CLASSES, FPS, frame_probs=probabilities(22), video=str(clip)
    )
    truth = [CLASSES[i] for i in np.roll(LABELS, 1)]
    page = result.to_html(tmp_path / "pages" / "clip.html", truth=truth)
    assert open_page(driver, page) == []
    assert driver.execute_script("return document.getElementById('video').error") is None
    segments = assert_segments_drawn(driver, result)
    assert len(drawn(driver, "ground truth")) == 6  # the rolled last frame joins the first run
    assert_click_seeks(driver, segments)
    # Hovering a segment shows its label, times, length and score.
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    second = driver.find_elements(By.CSS_SELECTOR, ".lane[data-source='prediction'] .seg")[1]
    ActionChains(driver).move_to_element(second).perform()
    tooltip = driver.execute_script(
        "const t = document.getElementById('tooltip'); return t.hidden ? '' : t.textContent"
    )
    score = result.segments[1].score
    assert "red_disc_bounce" in tooltip and "1.50 s \u2013 3.50 s" in tooltip and "length 2.00 s" in tooltip
    assert f"score {score:.3f}" in tooltip
    driver.execute_script("document.getElementById('video').currentTime = 0")
    assert_playing_moves_the_playhead(driver)
    assert driver.execute_script("return document.getElementById('video').currentTime") > 0
    driver.execute_script("document.getElementById('video').currentTime = 0")
    assert_painted_in_class_colours(driver, segments)
    # Keys: n goes to the next segment's start.
    driver.execute_script("document.getElementById('video').currentTime = 0")
    driver.execute_script(
        "document.body.dispatchEvent(new KeyboardEvent('keydown', {key: 'n', bubbles: true}))"
    )
    assert (
        driver.execute_script("return document.getElementById('video').currentTime") == segments[1]["start"]
    )
    assert console_errors(driver) == []


def test_anticipation_page(driver, clip, tmp_path):
    result = AnticipationResult.from_frames(
        LABELS, CLASSES, FPS, 8, frame_probs=probabilities(22), video=str(clip), observation_ratio=0.36
    )
    page = result.to_html(tmp_path / "anticipation.html")
    assert open_page(driver, page) == []
    segments = assert_segments_drawn(driver, result)
    assert [s["part"] for s in segments] == ["observed"] * 3 + ["anticipated"] * 5
    assert_click_seeks(driver, segments)
    assert_painted_in_class_colours(driver, segments)
    assert console_errors(driver) == []


def test_an_unplayable_video_is_said_plainly(driver, tmp_path):
    video = tmp_path / "broken.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    result = SegmentationResult.from_frames(LABELS, CLASSES, FPS, video=str(video))
    page = result.to_html(tmp_path / "broken.html")
    open_page(driver, page)
    notice = driver.execute_script(
        "const n = document.getElementById('video-error'); return n.hidden ? null : n.textContent"
    )
    assert notice is not None and "cannot play" in notice
    segments = assert_segments_drawn(driver, result)
    assert_click_seeks(driver, segments)  # the page's own clock stands in for the video
    assert_playing_moves_the_playhead(driver)


def test_index_page_links_every_result(driver, clip, tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    names, results = [], []
    for index in range(3):
        labels = np.roll(LABELS, index)
        result = SegmentationResult.from_frames(labels, CLASSES, FPS, video=str(clip))
        result.save(folder / f"video{index}.segmentation.json")
        names.append(f"video{index}.segmentation.html")
        results.append(result)
    (folder / "failures.json").write_text(json.dumps([{"video": "lost.mp4", "error": "VideoError: gone"}]))
    index = view_folder(folder)
    assert open_page(driver, index) == []
    links = driver.execute_script("return Array.from(document.querySelectorAll('a')).map(a => a.href)")
    assert links == [(folder / name).as_uri() for name in names]
    assert "lost.mp4" in driver.execute_script("return document.querySelector('.failures').textContent")
    for link, result in zip(links, results, strict=True):
        assert open_page(driver, Path(link.removeprefix("file://"))) == []
        assert_segments_drawn(driver, result)


def test_live_replay_page(driver, tmp_path):
    updates = [live_update(0, 2.0), live_update(1, 4.0), live_update(2, 6.0, final=True)]
    page = write_replay_page(updates, tmp_path / "live.html")
    assert open_page(driver, page) == []
    assert [s["label"] for s in drawn(driver, "what happened")] == ["background"]
    rows = driver.execute_script("return Array.from(document.querySelectorAll('.lane.update')).length")
    assert rows == 3
    segments = drawn(driver, "#1 at 4.0 s")
    assert [(s["label"], s["start"], s["end"], s["part"]) for s in segments] == [
        ("background", 0.0, 4.0, "observed"),
        ("pour", 4.0, 8.0, "anticipated"),
    ]
    assert_click_seeks(driver, segments, lane="#1 at 4.0 s")
    now = driver.execute_script("return document.querySelector('.lane.update.now').dataset.update")
    assert now == "1"  # the update current at the playhead (4.0 s) is outlined
    assert_playing_moves_the_playhead(driver)
    assert console_errors(driver) == []


@pytest.mark.slow
def test_a_two_hour_result_with_5000_segments_opens_and_zooms(driver, tmp_path):
    lengths = np.random.default_rng(2).integers(1, 5, size=5000)
    labels = (np.arange(5000) % len(CLASSES))[np.repeat(np.arange(5000), lengths)]
    result = SegmentationResult.from_frames(labels, CLASSES, len(labels) / 7200.0)
    page = result.to_html(tmp_path / "long.html")
    assert open_page(driver, page) == []
    assert len(drawn(driver)) == 5000
    load = driver.execute_script(
        "const t = performance.getEntriesByType('navigation')[0]; return t.loadEventEnd - t.startTime"
    )
    assert 0 < load < 10_000  # ms; benchmarks/bench_viewer.py measures it on a quiet machine
    width = driver.execute_script("return document.querySelector('#timeline .scroll').scrollWidth")
    for _ in range(4):
        driver.execute_script("document.getElementById('zoom-in').click()")
    zoomed = driver.execute_script("return document.querySelector('#timeline .scroll').scrollWidth")
    assert zoomed == pytest.approx(16 * width, rel=0.01)
    assert console_errors(driver) == []
