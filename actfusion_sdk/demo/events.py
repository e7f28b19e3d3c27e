"""The visual vocabulary of procedural videos: every step class is an event with its own shapes, colours and
motion (notes/procedural-demo.md: objects >= ~45 px on 160x160); "background" is the absence of any event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .shapes import Scene, column, disc, rectangle, regular_polygon, ring, star, triangle_wave

BACKGROUND = "background"

Layers = list[np.ndarray]  # coverage in [0, 1], one [n, W, W] array per colour of the event

# Each event maker draws the parameters of one step instance from `rng` and returns a function from the
# step's local time (seconds, [n]) to its coverage layers, one per colour in StepEvent.colours.
EventMaker = Callable[[np.random.Generator, Scene], Callable[[np.ndarray], Layers]]


def _red_disc_bounce(rng: np.random.Generator, scene: Scene) -> Callable[[np.ndarray], Layers]:
    radius = scene.length(0.16 * rng.uniform(0.9, 1.1))
    drift_period, drift_phase = rng.uniform(3.0, 5.0), rng.uniform()
    hop_period, height, floor = rng.uniform(0.8, 1.2), rng.uniform(0.35, 0.5), rng.uniform(0.72, 0.8)

    def layers(t: np.ndarray) -> Layers:
        cx = scene.at(0.2 + 0.6 * triangle_wave(drift_phase + t / drift_period))
        cy = scene.at(floor - height * np.abs(np.sin(np.pi * t / hop_period)))
        return [disc(scene, cx, cy, radius)]

    return layers


def _blue_square_slide(rng: np.random.Generator, scene: Scene) -> Callable[[np.ndarray], Layers]:
    half = scene.length(0.16 * rng.uniform(0.9, 1.1))
    row, period, phase = rng.uniform(0.3, 0.7), rng.uniform(2.5, 3.5), rng.uniform()

    def layers(t: np.ndarray) -> Layers:
        cx = scene.at(0.2 + 0.6 * triangle_wave(phase + t / period))
        return [rectangle(scene, cx, scene.at(np.full_like(t, row)), half, half, 0.0)]

    return layers


def _green_triangle_spin(rng: np.random.Generator, scene: Scene) -> Callable[[np.ndarray], Layers]:
    apothem = scene.length(0.11 * rng.uniform(0.9, 1.1))
    cx, cy = scene.at(rng.uniform(0.35, 0.65)), scene.at(rng.uniform(0.35, 0.65))
    spin, start = rng.choice((-1.0, 1.0)) * rng.uniform(1.5, 3.0), rng.uniform(0, 2 * np.pi)

    def layers(t: np.ndarray) -> Layers:
        return [regular_polygon(scene, cx, cy, apothem, 3, start + spin * t)]

    return layers


def _yellow_bar_grow(rng: np.random.Generator, scene: Scene) -> Callable[[np.ndarray], Layers]:
    half_width = scene.length(0.06 * rng.uniform(0.9, 1.1))
    cx, cy = scene.at(rng.uniform(0.4, 0.6)), scene.at(rng.uniform(0.4, 0.6))
    angle, period, phase = rng.uniform(-0.35, 0.35), rng.uniform(2.0, 3.0), rng.uniform()

    def layers(t: np.ndarray) -> Layers:
        half_length = scene.length(0.06) + scene.length(0.26) * np.mod(phase + t / period, 1.0)
        return [rectangle(scene, cx, cy, half_length, half_width, angle)]

    return layers


def _purple_ring_pulse(rng: np.random.Generator, scene: Scene) -> Callable[[np.ndarray], Layers]:
    half_width = scene.length(0.035)
    cx, cy = scene.at(rng.uniform(0.35, 0.65)), scene.at(rng.uniform(0.35, 0.65))
    period, phase = rng.uniform(1.0, 1.6), rng.uniform()

    def layers(t: np.ndarray) -> Layers:
        radius = scene.length(0.17) + scene.length(0.05) * np.sin(2 * np.pi * (phase + t / period))
        return [ring(scene, cx, cy, radius, half_width)]

    return layers


def _orange_cross_orbit(rng: np.random.Generator, scene: Scene) -> Callable[[np.ndarray], Layers]:
    arm, half_width = scene.length(0.15 * rng.uniform(0.9, 1.1)), scene.length(0.045)
    centre_x, centre_y = rng.uniform(0.45, 0.55), rng.uniform(0.45, 0.55)
    speed, start = rng.choice((-1.0, 1.0)) * rng.uniform(1.2, 2.0), rng.uniform(0, 2 * np.pi)

    def layers(t: np.ndarray) -> Layers:
        angle = start + speed * t
        cx = scene.at(centre_x + 0.2 * np.cos(angle))
        cy = scene.at(centre_y + 0.2 * np.sin(angle))
        cross = np.maximum(
            rectangle(scene, cx, cy, arm, half_width, angle),
            rectangle(scene, cx, cy, arm, half_width, angle + np.pi / 2),
        )
        return [cross]

    return layers


def _cyan_diamond_zigzag(rng: np.random.Generator, scene: Scene) -> Callable[[np.ndarray], Layers]:
    apothem = scene.length(0.12 * rng.uniform(0.9, 1.1))
    fast_period, slow_period = rng.uniform(0.9, 1.3), rng.uniform(4.0, 6.0)
    fast_phase, slow_phase = rng.uniform(), rng.uniform()

    def layers(t: np.ndarray) -> Layers:
        cx = scene.at(0.22 + 0.56 * triangle_wave(fast_phase + t / fast_period))
        cy = scene.at(0.25 + 0.5 * triangle_wave(slow_phase + t / slow_period))
        return [regular_polygon(scene, cx, cy, apothem, 4, 0.0)]

    return layers


def _magenta_star_drift(rng: np.random.Generator, scene: Scene) -> Callable[[np.ndarray], Layers]:
    outer = scene.length(0.19 * rng.uniform(0.9, 1.1))
    periods, phases = rng.uniform(4.0, 7.0, size=2), rng.uniform(0, 2 * np.pi, size=2)
    spin, start = rng.choice((-1.0, 1.0)) * rng.uniform(0.3, 0.8), rng.uniform(0, 2 * np.pi)

    def layers(t: np.ndarray) -> Layers:
        cx = scene.at(0.5 + 0.22 * np.sin(2 * np.pi * t / periods[0] + phases[0]))
        cy = scene.at(0.5 + 0.22 * np.sin(2 * np.pi * t / periods[1] + phases[1]))
        return [star(scene, cx, cy, outer, 0.42 * outer, start + spin * t)]

    return layers


def _white_stripes_scroll(rng: np.random.Generator, scene: Scene) -> Callable[[np.ndarray], Layers]:
    half = scene.length(0.22 * rng.uniform(0.9, 1.1))
    cx, cy = scene.at(rng.uniform(0.35, 0.65)), scene.at(rng.uniform(0.35, 0.65))
    stripe_angle, period = rng.uniform(0, np.pi), scene.length(0.11)
    stripes_per_second = rng.choice((-1.0, 1.0)) * rng.uniform(1.2, 2.0)

    def layers(t: np.ndarray) -> Layers:
        panel = rectangle(scene, cx, cy, half, half, 0.0)
        across = (scene.cols - cx) * np.cos(stripe_angle) + (scene.rows - cy) * np.sin(stripe_angle)
        wave = np.sin(2 * np.pi * (across / period - stripes_per_second * column(t)))
        return [panel, panel * np.clip(0.5 + 3.0 * wave, 0.0, 1.0)]

    return layers


def _black_pendulum_swing(rng: np.random.Generator, scene: Scene) -> Callable[[np.ndarray], Layers]:
    rod, rod_half_width = scene.length(0.5), scene.length(0.02)
    bob = scene.length(0.1 * rng.uniform(0.9, 1.1))
    pivot_x, pivot_y = rng.uniform(0.4, 0.6), 0.08
    amplitude, period, phase = rng.uniform(0.5, 0.8), rng.uniform(1.4, 2.0), rng.uniform(0, 2 * np.pi)

    def layers(t: np.ndarray) -> Layers:
        swing = amplitude * np.sin(2 * np.pi * t / period + phase)
        direction = np.arctan2(np.cos(swing), np.sin(swing))  # from the pivot, downwards at rest
        mid_x = scene.at(pivot_x + 0.25 * np.sin(swing))
        mid_y = scene.at(pivot_y + 0.25 * np.cos(swing))
        bob_x = scene.at(pivot_x + 0.5 * np.sin(swing))
        bob_y = scene.at(pivot_y + 0.5 * np.cos(swing))
        body = np.maximum(
            rectangle(scene, mid_x, mid_y, rod / 2, rod_half_width, direction),
            disc(scene, bob_x, bob_y, bob),
        )
        return [body]

    return layers


@dataclass(frozen=True)
class StepEvent:
    """What a step class looks like: its base colours (RGB, 0..255) and how its shapes move."""

    colours: tuple[tuple[int, int, int], ...]
    make: EventMaker


STEP_EVENTS: dict[str, StepEvent] = {
    "red_disc_bounce": StepEvent(((220, 40, 40),), _red_disc_bounce),
    "blue_square_slide": StepEvent(((40, 70, 220),), _blue_square_slide),
    "green_triangle_spin": StepEvent(((40, 180, 60),), _green_triangle_spin),
    "yellow_bar_grow": StepEvent(((230, 225, 40),), _yellow_bar_grow),
    "purple_ring_pulse": StepEvent(((110, 40, 200),), _purple_ring_pulse),
    "orange_cross_orbit": StepEvent(((250, 120, 20),), _orange_cross_orbit),
    "cyan_diamond_zigzag": StepEvent(((40, 210, 220),), _cyan_diamond_zigzag),
    "magenta_star_drift": StepEvent(((240, 50, 180),), _magenta_star_drift),
    "white_stripes_scroll": StepEvent(((30, 30, 30), (240, 240, 240)), _white_stripes_scroll),
    "black_pendulum_swing": StepEvent(((20, 20, 20),), _black_pendulum_swing),
}
