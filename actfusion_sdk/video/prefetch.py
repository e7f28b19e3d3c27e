"""Run an iterator in a producer thread, a bounded number of items ahead of its consumer."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

Item = TypeVar("Item")


class SourceStalled(TimeoutError):
    """The producer delivered nothing for the consumer's stall timeout."""


def prefetch(items: Iterable[Item], depth: int, stall_seconds: float | None = None) -> Iterator[Item]:
    """Iterate ``items`` in a producer thread, at most ``depth`` ahead; its exceptions re-raise here.

    With ``stall_seconds`` (live sources), waiting longer than that for the next item raises
    ``SourceStalled``, and a consumer that stops (a stall, Ctrl-C) does not wait for the producer, which may
    be blocked in a read that cannot be interrupted: the daemon thread ends at its next item.
    """
    buffer: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(entry: tuple[str, Any]) -> bool:
        """Put ``entry`` unless the consumer has stopped; False once it has."""
        while not stop.is_set():
            try:
                buffer.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(("item", item)):
                    return
            offer(("end", None))
        except BaseException as err:  # handed to the consumer, which re-raises it
            offer(("error", err))

    worker = threading.Thread(target=produce, name="actfusion-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            try:
                kind, payload = buffer.get(timeout=stall_seconds)
            except queue.Empty:
                raise SourceStalled(f"nothing arrived for {stall_seconds:g} s") from None
            if kind == "end":
                return
            if kind == "error":
                raise payload
            yield payload
    finally:
        stop.set()
        if stall_seconds is None:
            worker.join()
