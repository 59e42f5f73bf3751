"""MedMNIST v2 / MedMNIST+ ``.npz`` files (any size: 28, 64, 128, 224)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from medprobe.datasets.base import SPLITS, Dataset, Record
from medprobe.datasets.prompts import canonical_modality, prompts_for
from medprobe.errors import MedprobeError

#: Modality and class names of the single-label 2-D MedMNIST datasets (MedMNIST v2 INFO).
MEDMNIST_INFO: dict[str, tuple[str, tuple[str, ...]]] = {
    "pathmnist": (
        "histopathology",
        (
            "adipose",
            "background",
            "debris",
            "lymphocytes",
            "mucus",
            "smooth muscle",
            "normal colon mucosa",
            "cancer-associated stroma",
            "colorectal adenocarcinoma epithelium",
        ),
    ),
    "dermamnist": (
        "dermoscopy",
        (
            "actinic keratoses and intraepithelial carcinoma",
            "basal cell carcinoma",
            "benign keratosis-like lesions",
            "dermatofibroma",
            "melanoma",
            "melanocytic nevi",
            "vascular lesions",
        ),
    ),
    "octmnist": (
        "retinal oct",
        (
            "choroidal neovascularization",
            "diabetic macular edema",
            "drusen",
            "normal",
        ),
    ),
    "pneumoniamnist": ("chest x-ray", ("normal", "pneumonia")),
    "retinamnist": ("fundus", ("0", "1", "2", "3", "4")),
    "breastmnist": ("breast ultrasound", ("malignant", "normal, benign")),
    "bloodmnist": (
        "blood cell microscopy",
        (
            "basophil",
            "eosinophil",
            "erythroblast",
            "immature granulocytes",
            "lymphocyte",
            "monocyte",
            "neutrophil",
            "platelet",
        ),
    ),
}


def _known(path: Path) -> str | None:
    stem = path.stem.lower()
    return next((key for key in MEDMNIST_INFO if stem.startswith(key)), None)


class MedMNISTDataset(Dataset):
    """Images held in memory from the npz; ``mode`` decides how they meet a model's input size.

    ``"resize"`` hands the native image to the encoder, whose preprocessing resizes it (the
    MedMNIST v2 way). ``"pad"`` zero-pads it, centred, to ``pad_to`` pixels without resizing,
    as the MedMNIST+ benchmark does for small images.
    """

    def __init__(
        self,
        path: Path,
        images: np.ndarray,
        records: list[Record],
        *,
        mode: str,
        pad_to: int,
        **kwargs,
    ) -> None:
        super().__init__(records=records, **kwargs)
        self.path = path
        self.images = images
        self.mode = mode
        self.pad_to = pad_to

    def load_image(self, record: Record, reduce_to: int | None = None) -> Image.Image:
        image = Image.fromarray(self.images[int(record.source)]).convert("RGB")
        if self.mode == "pad" and max(image.size) < self.pad_to:
            canvas = Image.new("RGB", (self.pad_to, self.pad_to))
            canvas.paste(
                image, ((self.pad_to - image.width) // 2, (self.pad_to - image.height) // 2)
            )
            return canvas
        return image

    def image_content(self) -> Any:
        stat = self.path.stat()
        ids = [r.id for r in self.records]
        return [
            "medmnist-v1",
            self.path.name,
            stat.st_size,
            stat.st_mtime_ns,
            self.mode,
            self.pad_to,
            ids,
        ]


def medmnist(
    path: str | Path,
    *,
    mode: Literal["resize", "pad"] = "resize",
    pad_to: int = 224,
    splits: Sequence[str] = SPLITS,
    class_names: Sequence[str] | None = None,
    modality: str | None = None,
    name: str | None = None,
    prompts: Sequence[str] | None = None,
) -> MedMNISTDataset:
    """A MedMNIST ``.npz`` (``{split}_images`` / ``{split}_labels``, labels ``(N,)`` or ``(N, 1)``).

    Class names and modality are known for the single-label 2-D MedMNIST datasets (from the file
    name); for other files pass ``class_names`` or get ``"0"``, ``"1"``, ...
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise MedprobeError(f"MedMNIST file {path} does not exist")
    if mode not in {"resize", "pad"}:
        raise MedprobeError(f"MedMNIST mode must be 'resize' or 'pad', got {mode!r}")
    try:
        arrays = np.load(path)
    except (OSError, ValueError) as exc:
        raise MedprobeError(f"{path} is not a readable .npz file: {exc}") from None
    images, labels, split_names = [], [], []
    with arrays:
        for split in splits:
            if f"{split}_images" not in arrays.files:
                continue
            split_labels = np.asarray(arrays[f"{split}_labels"])
            if split_labels.ndim == 2 and split_labels.shape[1] > 1:
                raise MedprobeError(
                    f"{path.name} is multi-label; medprobe needs one label per image"
                )
            images.append(np.asarray(arrays[f"{split}_images"]))
            labels.append(split_labels.reshape(-1).astype(np.int64))
            split_names += [split] * len(split_labels)
    if not images:
        raise MedprobeError(
            f"{path} has none of the arrays {', '.join(f'{s}_images' for s in splits)}"
        )
    all_images, all_labels = np.concatenate(images), np.concatenate(labels)
    key = _known(path)
    known_modality, known_names = MEDMNIST_INFO.get(key, ("unknown", ()))
    names = list(class_names or known_names or map(str, range(int(all_labels.max()) + 1)))
    if all_labels.max() >= len(names):
        raise MedprobeError(
            f"{path.name} has label {all_labels.max()} but {len(names)} class names"
        )
    records = [
        Record(id=f"{split}-{i:06d}", label=int(label), split=split, source=i)
        for i, (label, split) in enumerate(zip(all_labels, split_names, strict=True))
    ]
    modality = canonical_modality(modality or known_modality)
    return MedMNISTDataset(
        path,
        all_images,
        records,
        mode=mode,
        pad_to=pad_to,
        name=name or path.stem,
        modality=modality,
        class_names=names,
        prompts=prompts_for(modality, prompts),
    )
