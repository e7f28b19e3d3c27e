"""The viewer pages' inline stylesheet and script (kept here so that every page is one self-contained file).

The script reads the page's markup only: segments are elements of class ``seg`` carrying ``data-label``,
``data-start``, ``data-end`` (seconds) and optionally ``data-score`` and ``data-part``; ``#timeline`` carries
``data-end`` (seconds at the right edge); a live replay's update rows carry ``data-time``. Without a playable
video a clock of the page's own stands in for it, so the timeline still plays and seeks.
"""

from __future__ import annotations

STYLE = """
:root { --lane: 26px; --names: 150px; font: 14px/1.4 system-ui, sans-serif; color: #222; }
body { margin: 16px 20px; background: #fff; }
h1 { font-size: 18px; margin: 0 0 4px; }
.meta { color: #555; margin-bottom: 10px; }
#player { display: flex; flex-direction: column; align-items: flex-start; gap: 6px; }
#video { height: min(45vh, 360px); max-width: 100%; background: #000; }
.notice { padding: 6px 10px; border-radius: 4px; background: #fff4d6; border: 1px solid #e6c96f; }
.notice.error { background: #fde2e1; border-color: #e08a85; }
#controls { display: flex; gap: 8px; align-items: center; margin: 8px 0; flex-wrap: wrap; }
#controls button { font: inherit; padding: 2px 10px; }
#clock { font-variant-numeric: tabular-nums; min-width: 9em; }
.keys { color: #666; font-size: 12px; }
.timeline { display: flex; border: 1px solid #ddd; border-radius: 4px; }
.names { flex: 0 0 var(--names); border-right: 1px solid #ddd; background: #fafafa; }
.names div { height: var(--lane); line-height: var(--lane); margin-bottom: 4px; padding: 0 8px;
  overflow: hidden; white-space: nowrap; text-overflow: ellipsis; font-size: 12px; }
.names .axis-name { height: 22px; margin-bottom: 0; }
.names .update { height: 14px; line-height: 14px; font-size: 11px; }
.scroll { flex: 1 1 auto; overflow-x: auto; overflow-y: hidden; }
.inner { position: relative; width: 100%; min-width: 100%; overflow: hidden; }
.axis { position: relative; z-index: 1; height: 22px; border-bottom: 1px solid #ccc; font-size: 11px;
  color: #555; }
.tick { position: absolute; top: 0; height: 100%; border-left: 1px solid #ccc; padding-left: 3px; }
.lane { position: relative; height: var(--lane); margin-bottom: 4px; }
.lane.conf { background: #f3f3f3; }
.lane.update { --lane: 14px; height: 14px; }
.lane.update.now { outline: 2px solid #222; }
.seg { position: absolute; top: 0; height: 100%; box-sizing: border-box; cursor: pointer; }
.anticipated { background-image: repeating-linear-gradient(45deg, rgba(255, 255, 255, 0.75) 0 2px,
  transparent 2px 8px); }
.hatch { background-color: #8c8c8c; }
.seg.current { box-shadow: inset 0 0 0 2px #000; }
.seg:hover { filter: brightness(1.12); }
.conf svg { position: absolute; left: 0; top: 0; height: 100%; }
.conf path { fill: #4a78b5; }
.shade { position: absolute; top: 0; bottom: 0; background: #d9d9d9; z-index: 0; }
.lanes { position: relative; z-index: 1; }
.mark { position: absolute; top: 0; bottom: 0; width: 0; z-index: 2; pointer-events: none; }
.mark span { position: absolute; top: 3px; left: 3px; font-size: 11px; white-space: nowrap;
  background: rgba(255, 255, 255, 0.9); padding: 0 2px; }
.cutline { position: absolute; top: -2px; bottom: -2px; border-left: 2px solid #000; z-index: 2;
  pointer-events: none; }
.mark.cut { border-left: 2px dashed #000; }
.mark.video-end { border-left: 2px dotted #000; }
#playhead { position: absolute; top: 0; bottom: 0; width: 0; border-left: 2px solid #d62728; z-index: 3;
  pointer-events: none; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; margin: 10px 0; }
.legend-entry { display: flex; align-items: center; gap: 6px; }
.swatch { display: inline-block; width: 14px; height: 14px; border-radius: 2px;
  box-shadow: inset 0 0 0 1px rgba(0, 0, 0, 0.25); }
.legend .total { color: #555; font-variant-numeric: tabular-nums; }
#tooltip { position: fixed; z-index: 10; pointer-events: none; background: #222; color: #fff;
  padding: 4px 8px; border-radius: 4px; font-size: 12px; white-space: pre; }
table.videos { border-collapse: collapse; width: 100%; }
table.videos td, table.videos th { padding: 4px 8px; border-bottom: 1px solid #eee; text-align: left; }
table.videos td.mini { width: 50%; }
.mini .lane { margin: 0; height: 16px; }
.failures li { color: #a12; }
"""

SCRIPT = r"""
(function () {
  "use strict";
  const timeline = document.getElementById("timeline");
  const end = parseFloat(timeline.dataset.end);
  const scroll = timeline.querySelector(".scroll");
  const inner = timeline.querySelector(".inner");
  const axis = timeline.querySelector(".axis");
  const playhead = document.getElementById("playhead");
  const clock = document.getElementById("clock");
  const tooltip = document.getElementById("tooltip");
  const video = document.getElementById("video");
  const notice = document.getElementById("video-error");

  // The media: the video, or a clock of the page's own when there is none (or it cannot play).
  function pageClock() {
    let time = 0, paused = true, last = 0;
    function tick(now) {
      if (paused) return;
      time = Math.min(end, time + (now - last) / 1000);
      last = now;
      if (time >= end) { paused = true; }
      update();
      requestAnimationFrame(tick);
    }
    return {
      get currentTime() { return time; },
      set currentTime(value) { time = Math.max(0, Math.min(end, value)); update(); },
      get paused() { return paused; },
      play() { if (paused) { paused = false; last = performance.now(); requestAnimationFrame(tick); } },
      pause() { paused = true; update(); },
    };
  }
  let media = video || pageClock();
  function describeError(error) {
    const kinds = { 1: "loading was aborted", 2: "a network error", 3: "the video could not be decoded",
      4: "the format or codec is not supported by this browser" };
    return "This browser cannot play the video " + (video.getAttribute("src") || "").slice(0, 120) +
      " (" + (kinds[error.code] || "error " + error.code) + (error.message ? ": " + error.message : "") +
      "). Re-encode it as H.264 MP4 or VP9 WebM; the timeline below plays on its own clock.";
  }
  function videoFailed() {
    notice.textContent = describeError(video.error);
    notice.hidden = false;
    notice.classList.add("error");
    const time = media.currentTime;
    media = pageClock();
    media.currentTime = time;
  }
  if (video) {
    video.addEventListener("error", videoFailed);
    if (video.error) videoFailed();
  }

  // Lanes: their segments in time order, with starts and ends read once.
  const lanes = Array.from(inner.querySelectorAll(".lane")).map(function (lane) {
    const segments = Array.from(lane.querySelectorAll(".seg"));
    return {
      lane: lane,
      segments: segments,
      starts: segments.map(function (s) { return parseFloat(s.dataset.start); }),
      ends: segments.map(function (s) { return parseFloat(s.dataset.end); }),
      current: null,
    };
  }).filter(function (entry) { return entry.segments.length > 0; });
  const main = lanes.length ? lanes[0] : null;
  const updates = Array.from(inner.querySelectorAll(".lane.update"));
  const updateTimes = updates.map(function (lane) { return parseFloat(lane.dataset.time); });
  let currentUpdate = null;

  function lastAtOrBefore(values, time) {  // index of the last value <= time, or -1
    let low = 0, high = values.length - 1, found = -1;
    while (low <= high) {
      const middle = (low + high) >> 1;
      if (values[middle] <= time) { found = middle; low = middle + 1; } else { high = middle - 1; }
    }
    return found;
  }
  function format(seconds) {
    const minutes = Math.floor(seconds / 60);
    const rest = (seconds - 60 * minutes).toFixed(2).padStart(5, "0");
    return minutes > 0 ? minutes + ":" + rest : seconds.toFixed(2) + " s";
  }

  function update() {
    const time = media.currentTime;
    const fraction = Math.max(0, Math.min(1, time / end));
    playhead.style.left = (100 * fraction) + "%";
    clock.textContent = format(time) + " / " + format(end);
    for (const entry of lanes) {
      const k = lastAtOrBefore(entry.starts, time);
      const segment = k >= 0 && time < entry.ends[k] ? entry.segments[k] : null;
      if (segment !== entry.current) {
        if (entry.current) entry.current.classList.remove("current");
        if (segment) segment.classList.add("current");
        entry.current = segment;
      }
    }
    if (updates.length) {
      const k = lastAtOrBefore(updateTimes, time);
      const lane = k >= 0 ? updates[k] : null;
      if (lane !== currentUpdate) {
        if (currentUpdate) currentUpdate.classList.remove("now");
        if (lane) lane.classList.add("now");
        currentUpdate = lane;
      }
    }
    if (!media.paused) {  // keep the playhead in view while playing, when zoomed in
      const x = fraction * inner.clientWidth;
      if (x < scroll.scrollLeft || x > scroll.scrollLeft + scroll.clientWidth - 20) {
        scroll.scrollLeft = x - scroll.clientWidth / 4;
      }
    }
  }
  function animate() {
    update();
    if (!media.paused) requestAnimationFrame(animate);
  }
  if (video) {
    for (const name of ["timeupdate", "seeked", "loadedmetadata", "pause"]) {
      video.addEventListener(name, update);
    }
    video.addEventListener("play", function () { requestAnimationFrame(animate); });
  }

  function seek(time) {
    media.currentTime = time;
    update();
  }
  function togglePlay() {
    if (media.paused) {
      const started = media.play();
      if (started && started.catch) started.catch(function () {});
    } else {
      media.pause();
    }
  }
  function step(direction) {  // to the start of the next / previous segment of the first lane
    if (!main) return;
    const time = media.currentTime;
    const k = lastAtOrBefore(main.starts, time + 1e-6);
    let target;
    if (direction > 0) {
      target = Math.min(k + 1, main.starts.length - 1);
    } else {
      target = k >= 0 && time - main.starts[k] > 0.5 ? k : Math.max(k - 1, 0);
    }
    seek(main.starts[target]);
  }

  inner.addEventListener("click", function (event) {
    const segment = event.target.closest(".seg");
    if (segment) {
      seek(parseFloat(segment.dataset.start));
    } else {
      const box = inner.getBoundingClientRect();
      seek(end * (event.clientX - box.left) / box.width);
    }
  });
  inner.addEventListener("mousemove", function (event) {
    const segment = event.target.closest(".seg");
    if (!segment) { tooltip.hidden = true; return; }
    const start = parseFloat(segment.dataset.start), stop = parseFloat(segment.dataset.end);
    const lines = [segment.dataset.label + (segment.dataset.part ? " (" + segment.dataset.part + ")" : ""),
      format(start) + " \u2013 " + format(stop) + "   length " + (stop - start).toFixed(2) + " s"];
    if (segment.dataset.score) lines.push("score " + parseFloat(segment.dataset.score).toFixed(3));
    tooltip.textContent = lines.join("\n");
    tooltip.hidden = false;
    tooltip.style.left = (event.clientX + 12) + "px";
    tooltip.style.top = (event.clientY + 14) + "px";
  });
  inner.addEventListener("mouseleave", function () { tooltip.hidden = true; });

  // Zoom: the inner width is a multiple of the visible width; segments are placed in percent.
  let zoom = 1;
  function drawAxis() {
    const width = inner.clientWidth || 1;
    const raw = end * 90 / width;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const stepSize = [1, 2, 5, 10].map(function (m) { return m * power; })
      .find(function (s) { return s >= raw; });
    const ticks = [];
    for (let t = 0; t <= end + 1e-9; t += stepSize) {
      ticks.push('<div class="tick" style="left:' + (100 * t / end) + '%">' + format(t) + "</div>");
    }
    axis.innerHTML = ticks.join("");
  }
  function setZoom(value, anchorFraction) {
    const anchor = anchorFraction === undefined ? media.currentTime / end : anchorFraction;
    zoom = Math.max(1, Math.min(value, Math.max(1, end)));
    inner.style.width = (100 * zoom) + "%";
    drawAxis();
    scroll.scrollLeft = anchor * inner.clientWidth - scroll.clientWidth / 2;
  }
  document.getElementById("zoom-in").addEventListener("click", function () { setZoom(zoom * 2); });
  document.getElementById("zoom-out").addEventListener("click", function () { setZoom(zoom / 2); });
  document.getElementById("zoom-fit").addEventListener("click", function () { setZoom(1); });
  document.getElementById("play").addEventListener("click", togglePlay);
  scroll.addEventListener("wheel", function (event) {
    if (!event.ctrlKey) return;
    event.preventDefault();
    const box = inner.getBoundingClientRect();
    setZoom(zoom * (event.deltaY < 0 ? 1.25 : 0.8), (event.clientX - box.left) / box.width);
  }, { passive: false });

  document.addEventListener("keydown", function (event) {
    if (event.target.closest && event.target.closest("input, textarea, select")) return;
    const key = event.key;
    if (event.target === video && key === " ") return;  // the video's own controls toggle it
    if (key === " " || key === "k") { togglePlay(); }
    else if (key === "n" || key === "]") { step(1); }
    else if (key === "p" || key === "[") { step(-1); }
    else if (key === "+" || key === "=") { setZoom(zoom * 2); }
    else if (key === "-") { setZoom(zoom / 2); }
    else if (key === "0") { setZoom(1); }
    else { return; }
    event.preventDefault();
  });
  window.addEventListener("resize", drawAxis);
  drawAxis();
  update();
})();
"""
