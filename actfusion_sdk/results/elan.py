"""ELAN export: a result as an ``.eaf`` annotation document (EAF 3.0), one tier per part of the result.

A segmentation has one tier, "prediction"; an anticipation has "observed" and "anticipated". Times are whole
milliseconds (ELAN's time slots); the video is linked as the document's media, so ELAN opens both together.
Written with the standard library; `pympi-ling` (the library ELAN users script with) reads it back.
"""

from __future__ import annotations

import mimetypes
import xml.etree.ElementTree as ET
from collections.abc import Collection
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ..metrics import DEFAULT_BG_CLASSES

if TYPE_CHECKING:
    from .types import Result

LINGUISTIC_TYPE = "actfusion-segment"
TIER_NAMES = {"segments": "prediction"}  # part name -> tier name; other parts keep their names


def to_eaf(result: Result, *, exclude: Collection[str] = DEFAULT_BG_CLASSES) -> str:
    """The EAF document of `result`; segments labelled with a name in `exclude` are left out (ELAN gaps)."""
    document = ET.Element(
        "ANNOTATION_DOCUMENT",
        {
            "AUTHOR": result.model or "actfusion",
            "DATE": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
            "FORMAT": "3.0",
            "VERSION": "3.0",
            "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
            "xsi:noNamespaceSchemaLocation": "http://www.mpi.nl/tools/elan/EAFv3.0.xsd",
        },
    )
    header = ET.SubElement(document, "HEADER", {"MEDIA_FILE": "", "TIME_UNITS": "milliseconds"})
    if result.video:
        video = Path(result.video)
        mime = mimetypes.guess_type(video.name)[0] or "video/*"
        ET.SubElement(
            header,
            "MEDIA_DESCRIPTOR",
            {
                "MEDIA_URL": video.resolve().as_uri(),
                "MIME_TYPE": mime,
                "RELATIVE_MEDIA_URL": f"./{video.name}",
            },
        )
    time_order = ET.SubElement(document, "TIME_ORDER")
    tiers = []
    slot = annotation = 0
    for part, segments in result.parts():
        tier = ET.Element(
            "TIER", {"LINGUISTIC_TYPE_REF": LINGUISTIC_TYPE, "TIER_ID": TIER_NAMES.get(part, part)}
        )
        for segment in segments:
            if segment.label in exclude:
                continue
            slots = []
            for seconds in (segment.start, segment.end):
                slot += 1
                slots.append(f"ts{slot}")
                ET.SubElement(
                    time_order,
                    "TIME_SLOT",
                    {"TIME_SLOT_ID": slots[-1], "TIME_VALUE": str(round(seconds * 1000))},
                )
            annotation += 1
            aligned = ET.SubElement(
                ET.SubElement(tier, "ANNOTATION"),
                "ALIGNABLE_ANNOTATION",
                {"ANNOTATION_ID": f"a{annotation}", "TIME_SLOT_REF1": slots[0], "TIME_SLOT_REF2": slots[1]},
            )
            ET.SubElement(aligned, "ANNOTATION_VALUE").text = segment.label
        tiers.append(tier)
    document.extend(tiers)
    # ELAN numbers the annotations a user adds from here (as ELAN itself writes it).
    ET.SubElement(header, "PROPERTY", {"NAME": "lastUsedAnnotationId"}).text = str(annotation)
    ET.SubElement(
        document,
        "LINGUISTIC_TYPE",
        {"GRAPHIC_REFERENCES": "false", "LINGUISTIC_TYPE_ID": LINGUISTIC_TYPE, "TIME_ALIGNABLE": "true"},
    )
    ET.indent(document)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(document, encoding="unicode") + "\n"
