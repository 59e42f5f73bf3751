"""Small images for the report: hover thumbnails, overlay examples, audit examples."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

from PIL import Image

from medprobe.datasets.base import Dataset
from medprobe.errors import BadImageError
from medprobe.overlay import OverlaySpec, TextOverlay


def data_uri(image: Image.Image, size: int) -> str:
    """``image`` shrunk to fit ``size`` px, as a JPEG data URI (the report is one file)."""
    image = image.copy()
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=75)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def thumbnails(dataset: Dataset, ids: Sequence[str], size: int = 64) -> dict[str, str]:
    """Small JPEG data URIs of the images ``ids`` (unreadable ones are left out)."""
    wanted = set(ids)
    out = {}
    for record in dataset.records:
        if record.id not in wanted:
            continue
        try:
            image = dataset.load_image(record, reduce_to=size)  # JPEGs decode small
        except BadImageError:
            continue
        out[record.id] = data_uri(image, size)
    return out


def overlay_examples(
    dataset: Dataset, overlays: Sequence[OverlaySpec], count: int = 4
) -> dict[str, list[str]]:
    """A few images of ``dataset`` with each overlay drawn, as data URIs (one per class first)."""
    picks, seen = [], set()
    for index, record in enumerate(dataset.records):
        if record.label not in seen or len(seen) == len(dataset.class_names):
            seen.add(record.label)
            picks.append(index)
        if len(picks) == count:
            break
    out = {}
    for spec in overlays:
        overlay = TextOverlay(spec, dataset.class_names)
        uris = []
        for index in picks:
            try:
                image = dataset.load_image(dataset.records[index])
            except BadImageError:
                continue
            uris.append(data_uri(overlay(image, dataset.records[index], index), 160))
        out[spec.label] = uris
    return out


def captioned(examples: Sequence[tuple[Image.Image, str]], size: int = 200) -> list[dict]:
    """``(image, caption)`` pairs (e.g. a text audit's boxed images) as report entries."""
    return [{"uri": data_uri(image, size), "caption": caption} for image, caption in examples]
