"""Messy input: each bad file is skipped with a reason, convertible ones are converted."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from medprobe.datasets import image_folder
from medprobe.datasets.inspect import inspect_dataset
from medprobe.datasets.io import open_image
from medprobe.errors import BadImageError
from medprobe.study import run_grid


def huge_png(path, side=20000):
    """A valid 1-bit PNG of side x side pixels (tiny on disk, 400 megapixels when decoded)."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    row = b"\0" + b"\0" * ((side + 7) // 8)
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * side, 9))
        + chunk(b"IEND", b"")
    )


def make_bad_files(folder):
    """One file of each awkward kind; returns {name: expected reason fragment or None}."""
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    (folder / "zero.png").write_bytes(b"")
    photo.save(folder / "full.jpg", quality=90)
    data = (folder / "full.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "full.jpg").unlink()
    (folder / "notes.png").write_text("this is a text file, not a PNG\n")
    photo.convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray((rng.integers(0, 65535, (30, 30))).astype(np.uint16)).save(
        folder / "grey16.png"
    )
    photo.convert("RGBA").save(folder / "rgba.png")
    photo.convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "palette.gif")
    huge_png(folder / "huge.png")
    return {
        "zero.png": "empty file",
        "truncated.jpg": "truncated",
        "notes.png": "not an image",
        "huge.png": "too large",
        "cmyk.jpg": None,
        "grey16.png": None,
        "rgba.png": None,
        "palette.gif": None,
    }


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    root = tmp_path_factory.mktemp("messy")
    expected = {}
    for cls, colour in (("benign", (220, 170, 140)), ("malignant", (60, 30, 20))):
        folder = root / cls
        folder.mkdir()
        for i in range(8):
            Image.new("RGB", (48, 48), colour).save(folder / f"good{i}.png")
        expected.update({f"{cls}/{k}": v for k, v in make_bad_files(folder).items()})
    return root, expected


def test_each_kind_is_converted_or_explained(messy):
    root, expected = messy
    for rel, reason in expected.items():
        if reason is None:
            image = open_image(root / rel)
            assert image.mode == "RGB" and image.size[0] > 0
        else:
            with pytest.raises(BadImageError, match=reason):
                open_image(root / rel)


def test_sixteen_bit_keeps_its_contrast(tmp_path):
    ramp = np.tile(np.linspace(1000, 60000, 32).astype(np.uint16), (4, 1))
    Image.fromarray(ramp).save(tmp_path / "r.png")
    grey = np.asarray(open_image(tmp_path / "r.png"))[..., 0]
    assert grey[0, 0] == 0 and grey[0, -1] == 255 and (np.diff(grey[0].astype(int)) >= 0).all()


def test_rgba_is_composited_on_black(tmp_path):
    Image.new("RGBA", (4, 4), (255, 255, 255, 0)).save(tmp_path / "clear.png")
    assert not np.asarray(open_image(tmp_path / "clear.png")).any()


def test_a_run_over_messy_data_completes_and_reports_every_bad_file(messy):
    root, expected = messy
    ds = image_folder(root, modality="dermoscopy")
    outcome = run_grid(["pixels", "handcrafted"], [ds], show_progress=False)
    bad = {rel for rel, reason in expected.items() if reason}
    for encoder in ("pixels", "handcrafted"):
        skipped = {s["id"]: s["reason"] for s in outcome.skipped if s["encoder"] == encoder}
        assert set(skipped) == bad
        for rel in bad:
            assert expected[rel] in skipped[rel]
        data = outcome.results.query("encoder == @encoder and analysis == 'data'")
        counts = dict(zip(data.metric, data.value, strict=True))
        assert counts == {"n_images": 32, "n_used": 24, "n_skipped": 8}
    # The run completed: probes were scored on the usable images.
    assert (outcome.results.analysis == "linear_probe").any()


def test_inspect_lists_problems_and_modes(messy):
    root, expected = messy
    found = inspect_dataset(image_folder(root), show_progress=False)
    reasons = dict(found.problems)
    assert {rel for rel, r in expected.items() if r} == set(reasons)
    assert found.modes["CMYK"] == 2 and found.modes["P"] == 2
    assert sum(found.sizes.values()) == 24  # 16 good + 8 converted
