"""A per-video cache of the flow stream's input (TV-L1, the expensive part of the MS-TCN features).

``<dir>/<stem>.<fingerprint>.flow`` holds the prepared flow fields [N − 1, 224, 224, 2] float32 (raw,
little endian), ``<dir>/<stem>.<fingerprint>.flow.json`` the record that proves it finished: the video's
identity, the settings that made it (TV-L1 parameters, decode rate, OpenCV version), the data's sha256 and
the field count. The fields stream into a temporary file while the video is decoded; only a whole video's flow
is published, then its record (`actfusion_sdk.outputs.write_outputs`), so a stale or partial entry is never
read, and an interrupted extraction leaves none.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..fileio import staged_files
from ..outputs import InputIdentity, output_is_finished, output_record, write_outputs
from .flow import FLOW_DTYPE
from .mstcn_frames import CROP

FIELD_SHAPE = (CROP, CROP, 2)


class FlowCache:
    """Prepared flow of whole videos in ``directory``, keyed by the video's identity and ``settings``."""

    def __init__(self, directory: str | Path, settings: Mapping[str, Any]) -> None:
        self.directory = Path(directory)
        self.settings = dict(settings)

    def files(self, identity: InputIdentity) -> tuple[Path, Path]:
        """(flow data, record) of the video ``identity``."""
        stem = f"{Path(identity.path).stem}.{identity.fingerprint[:16]}.flow"
        return self.directory / stem, self.directory / f"{stem}.json"

    def load(self, identity: InputIdentity) -> np.ndarray | None:
        """The cached flow [N − 1, 224, 224, 2] (a read-only memory map), or None when there is none for this
        very video and these settings."""
        data, record = self.files(identity)
        if not output_is_finished(record, identity, self.settings):
            return None
        count = json.loads(record.read_text()).get("fields")
        expected = int(count) * int(np.prod(FIELD_SHAPE)) * np.dtype(FLOW_DTYPE).itemsize
        if data.stat().st_size != expected:
            raise InputError(
                f"the flow cache '{data}' holds {data.stat().st_size} bytes, its record says {count} fields "
                f"({expected} bytes); delete both files and run again"
            )
        if count == 0:
            return np.zeros((0, *FIELD_SHAPE), FLOW_DTYPE)
        return np.memmap(data, dtype=np.dtype(FLOW_DTYPE).newbyteorder("<"), mode="r").reshape(
            count, *FIELD_SHAPE
        )

    @contextmanager
    def writer(self, identity: InputIdentity) -> Iterator[Callable[[np.ndarray], None]]:
        """Yield ``append(field)``; the entry is published only when the block ends without an exception."""
        data, record = self.files(identity)
        count = 0
        with staged_files([data]) as (partial,):
            with open(partial, "wb") as handle:

                def append(field: np.ndarray) -> None:
                    nonlocal count
                    little_endian = np.dtype(FLOW_DTYPE).newbyteorder("<")
                    handle.write(np.ascontiguousarray(field, dtype=little_endian).tobytes())
                    count += 1

                yield append
            write_outputs(
                record,
                {data: lambda temporary: os.replace(partial, temporary)},
                lambda digests: {**output_record(identity, self.settings, digests), "fields": count},
            )
