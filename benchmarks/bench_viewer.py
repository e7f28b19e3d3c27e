"""The viewer page of a long result in headless Chromium: page size, write time, load time, and the frame
times of scrolling the zoomed-in timeline. With --screenshot, a picture of a page (the README's).

    .venv/bin/python benchmarks/bench_viewer.py                        # a 2-hour result, 5,000 segments
    .venv/bin/python benchmarks/bench_viewer.py --segments 20000 --hours 8
    .venv/bin/python benchmarks/bench_viewer.py --screenshot docs/viewer.png \
        --page demo_output/demo_anticipation.html

Needs /usr/bin/chromium, /usr/bin/chromedriver and selenium (the dev extra), as the browser tests do.
Measured: `to_html` wall seconds and bytes; in the browser, navigation start to the load event's end (parse,
style, layout and the page's script), then at zoom x64 a scroll across the whole timeline one step per
animation frame: the median and the worst frame interval (about 16.7 ms is 60 frames per second).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.browser: the tests' Chromium setup

from actfusion_sdk.results import SegmentationResult  # noqa: E402
from tests.browser import chromium, open_page, unavailable_reason  # noqa: E402

CLASSES = ("background", "red_disc_bounce", "green_square_slide", "blue_ring", "pour", "stir", "cut", "wash")

SCROLL_SCRIPT = """
const done = arguments[arguments.length - 1];
const scroll = document.querySelector('#timeline .scroll');
const zoomStart = performance.now();
for (let i = 0; i < 6; i++) document.getElementById('zoom-in').click();  // x64
const width = scroll.scrollWidth;  // forces the layout at the new zoom
const zoom = performance.now() - zoomStart;
const steps = arguments[0], gaps = [];
let last = null, step = 0;
function frame(now) {
  if (last !== null) gaps.push(now - last);
  last = now;
  scroll.scrollLeft = (scroll.scrollWidth - scroll.clientWidth) * step / steps;
  if (++step <= steps) requestAnimationFrame(frame); else done({gaps: gaps, width: width, zoom: zoom});
}
requestAnimationFrame(function () { requestAnimationFrame(frame); });  // after the zoom's first paint
"""


def long_result(segments: int, hours: float, seed: int = 0) -> SegmentationResult:
    """A result of `segments` segments over `hours`, with probabilities (so a confidence strip)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 6, size=segments)
    labels = (np.arange(segments) % len(CLASSES))[np.repeat(np.arange(segments), lengths)]
    probs = rng.random((len(CLASSES), len(labels))).astype(np.float32)
    fps = len(labels) / (hours * 3600)
    return SegmentationResult.from_frames(labels, CLASSES, fps, frame_probs=probs / probs.sum(axis=0))


def measure(segments: int, hours: float, folder: Path) -> None:
    result = long_result(segments, hours)
    result.to_html(folder / "warm-up.html")  # imports (matplotlib for the palette) out of the timing
    started = time.perf_counter()
    page = result.to_html(folder / "long.html")
    written = time.perf_counter() - started
    print(
        f"{segments} segments, {hours:g} h, {result.num_frames} frames: "
        f"page {page.stat().st_size / 1e6:.2f} MB, written in {written:.2f} s"
    )
    with chromium() as driver:
        loads = []
        for _ in range(3):
            errors = open_page(driver, page)
            assert errors == [], errors
            timing = driver.execute_script(
                "const t = performance.getEntriesByType('navigation')[0]; return t.loadEventEnd - t.startTime"
            )
            loads.append(timing)
        drawn = driver.execute_script("return document.querySelectorAll('.seg').length")
        report = driver.execute_async_script(SCROLL_SCRIPT, 240)
    gaps = sorted(report["gaps"])
    print(
        f"browser: {drawn} segment elements, load {statistics.median(loads):.0f} ms (median of 3: "
        f"{', '.join(f'{value:.0f}' for value in loads)}); zoom to x64 ({report['width']} px wide) "
        f"{report['zoom']:.0f} ms; scroll frames: median {statistics.median(gaps):.1f} ms, "
        f"p95 {gaps[int(0.95 * (len(gaps) - 1))]:.1f} ms, worst {gaps[-1]:.1f} ms over {len(gaps)} frames"
    )


def screenshot(page: Path, out: Path, width: int, height: int, at: float) -> None:
    """A picture of `page` with its video paused at `at` seconds (a 256-colour PNG)."""
    from PIL import Image
    from selenium.webdriver.support.ui import WebDriverWait

    with chromium(width, height) as driver:
        errors = open_page(driver, page)
        assert errors == [], errors
        driver.execute_script("document.getElementById('video').currentTime = arguments[0]", at)
        WebDriverWait(driver, 10).until(
            lambda d: d.execute_script("const v = document.getElementById('video'); return !v.seeking")
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
    image = Image.open(out).convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    image.save(out, optimize=True)
    print(f"{out}: {out.stat().st_size / 1e3:.0f} kB")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--segments", type=int, default=5000)
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--screenshot", type=Path, metavar="PNG", help="write a picture of --page instead")
    parser.add_argument("--page", type=Path, help="the page to picture (with --screenshot)")
    parser.add_argument("--size", default="1100x800", help="window size of the picture (WxH)")
    parser.add_argument("--at", type=float, default=20.0, help="video time of the picture (seconds)")
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason is not None:
        print(f"no browser: {reason}", file=sys.stderr)
        return 2
    if args.screenshot is not None:
        if args.page is None:
            parser.error("--screenshot needs --page")
        width, height = (int(value) for value in args.size.split("x"))
        screenshot(args.page, args.screenshot, width, height, args.at)
        return 0
    with tempfile.TemporaryDirectory() as folder:
        measure(args.segments, args.hours, Path(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
