"""Zero-shot prompt templates per modality (``{}`` is replaced by a class name).

Ensembles of several phrasings are averaged per class, as CLIP's evaluation does; users can pass
their own templates to any dataset loader.
"""

from __future__ import annotations

from collections.abc import Sequence

MODALITY_PROMPTS: dict[str, tuple[str, ...]] = {
    "dermoscopy": (
        "a dermoscopy image of {}.",
        "a dermoscopic image of a {} skin lesion.",
        "a dermatoscopy photo showing {}.",
        "a close-up photo of a skin lesion: {}.",
    ),
    "breast ultrasound": (
        "an ultrasound image of a {} breast lesion.",
        "a breast ultrasound image showing a {} finding.",
        "a B-mode ultrasound of the breast: {}.",
    ),
    "chest x-ray": (
        "a chest X-ray showing {}.",
        "a chest radiograph with {}.",
        "a frontal chest X-ray image: {}.",
    ),
    "brain mri": (
        "a brain MRI showing {}.",
        "an axial MRI slice of the brain with {}.",
        "a magnetic resonance image of a brain: {}.",
    ),
    "histopathology": (
        "an H&E stained histopathology image of {}.",
        "a histopathology slide showing {} tissue.",
        "a microscopy image of {}.",
    ),
    "fundus": (
        "a retinal fundus photograph showing {}.",
        "a fundus image of an eye with {}.",
        "a color fundus photo: {}.",
    ),
    "colonoscopy": (
        "a colonoscopy image showing {}.",
        "an endoscopic image of the colon with {}.",
        "a colonoscopy frame: {}.",
    ),
}
GENERIC_PROMPTS: tuple[str, ...] = ("a medical image of {}.", "an image showing {}.")
#: Modality-free phrasings that prompt-sensitivity measures besides a dataset's own templates.
NEUTRAL_PROMPTS: tuple[str, ...] = ("{}.", "a photo of {}.", *GENERIC_PROMPTS)

_ALIASES = {
    "ultrasound": "breast ultrasound",
    "x-ray": "chest x-ray",
    "xray": "chest x-ray",
    "chest xray": "chest x-ray",
    "cxr": "chest x-ray",
    "mri": "brain mri",
    "histopathology (h&e)": "histopathology",
    "pathology": "histopathology",
    "retinal fundus": "fundus",
    "endoscopy": "colonoscopy",
}


def canonical_modality(modality: str) -> str:
    """``"Chest_XRay"`` -> ``"chest x-ray"``: one spelling per modality, so prompts and reports
    agree whatever the source called it. Unknown modalities are kept (lower-cased)."""
    key = " ".join(modality.strip().lower().replace("_", " ").split())
    return _ALIASES.get(key, key)


def fill(template: str, name: str) -> str:
    """``template`` with every ``{}`` replaced by ``name`` (a template may name the class more
    than once; no other brace is interpreted, unlike ``str.format``)."""
    return template.replace("{}", name)


def prompts_for(modality: str, override: Sequence[str] | None = None) -> list[str]:
    """The templates for ``modality`` (or the user's ``override``), each containing ``{}``."""
    if override is not None:
        templates = list(override)
        bad = [t for t in templates if "{}" not in t]
        if not templates or bad:
            raise ValueError(f"prompt templates must each contain '{{}}'; got {bad or templates}")
        return templates
    return list(MODALITY_PROMPTS.get(canonical_modality(modality), GENERIC_PROMPTS))
