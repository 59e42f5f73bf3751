"""Every zoo spec against the model reference table in ../shared/models.md, and zoo coverage."""

from __future__ import annotations

import re

import pytest

from medprobe.encoders import list_specs
from medprobe.encoders.spec import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    INCEPTION_MEAN,
    INCEPTION_STD,
    OPENAI_MEAN,
    OPENAI_STD,
)

CONSTANTS = {
    "OPENAI": (OPENAI_MEAN, OPENAI_STD),
    "IMAGENET": (IMAGENET_MEAN, IMAGENET_STD),
    "INCEPTION": (INCEPTION_MEAN, INCEPTION_STD),
}
# spec name prefix -> the first cell of its row in models.md
ROWS = {
    "biomedclip": "BiomedCLIP",
    "pubmedclip": "PubMedCLIP",
    "quiltnet-": "QuiltNet-B-32 / B-16",
    "plip": "PLIP",
    "medsiglip-448": "MedSigLIP",
    "monet": "MONET",
    "dermlip-b16": "DermLIP",
    "rad-dino": "RAD-DINO (vision only)",
    "clip-vit-": "OpenAI CLIP B/32, B/16, L/14 (L/14-336)",
    "laion-vit-": "OpenCLIP LAION-2B",
    "datacomp-vit-b16": "DataComp",
    "eva02-clip-b16": "EVA02-CLIP",
    "siglip-": "SigLIP",
    "siglip2-": "SigLIP2",
    "dinov2-": "DINOv2 (vision only)",
    "llm2clip-": "LLM2CLIP",
    "tinyclip-8m": "TinyCLIP (tiny, CPU)",
    "unimed-clip-": "UniMed-CLIP",
    "flair": "FLAIR",
    "medclip-": "MedCLIP",
    "biovil-t": "BioViL-T",
    "biovil": "BioViL",
    "pmc-clip": "PMC-CLIP",
    "conch": "CONCH",
    "conceptclip": "ConceptCLIP",
    "bmca-clip": "BMCA-CLIP",
}
#: Specs whose embedding size the table does not state for that variant.
_EMB_UNSTATED = ("llm2clip-openai-b", "unimed-clip-l14-336")


def _table_rows(text: str) -> dict[str, dict[str, str]]:
    rows: dict[str, dict[str, str]] = {}
    header: list[str] = []
    for line in text.splitlines():
        if not line.startswith("|"):
            header = []
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not header:
            header = cells
        elif not set(cells[0]) <= {"-", ":"}:
            rows[cells[0]] = dict(zip(header, cells, strict=False))
    return rows


@pytest.fixture(scope="module")
def reference(shared_data):
    return _table_rows((shared_data.parent / "models.md").read_text())


def _row_for(name: str) -> str | None:
    return next((row for prefix, row in ROWS.items() if name.startswith(prefix)), None)


def _declared_norm(cell: str, spec) -> tuple | None:
    """The constant a Mean/std cell names for this spec, or None when the table does not know."""
    if "except" in cell:  # "OPENAI, **except L-14 laion2b_s32b_b82k = INCEPTION (0.5)**"
        if "L-14-laion2B-s32B-b82K" in (spec.hub_id or ""):
            return CONSTANTS["INCEPTION"]
        return CONSTANTS[cell.split(",")[0].strip()]
    if cell.startswith("processor config (SigLIP: 0.5/0.5"):
        return CONSTANTS["INCEPTION"]
    first = re.match(r"\W*([A-Z]+)", cell)
    return CONSTANTS.get(first.group(1)) if first else None


def test_every_referenced_spec_matches_models_md(reference):
    checked = 0
    for spec in list_specs():
        row_name = _row_for(spec.name)
        if row_name is None:
            continue
        row = reference[row_name]
        sizes = {int(n) for n in re.findall(r"\d+", row["Res"])}
        if spec.name == "llm2clip-openai-b16":  # models.md section 4: B/16 uses CLIP B/16's 224
            sizes.add(224)
        if row["Res"] != "unknown":
            assert spec.preprocessing.image_size in sizes, (spec.name, row["Res"])
        norm = _declared_norm(row["Mean/std"], spec)
        if norm is not None:
            assert (spec.preprocessing.mean, spec.preprocessing.std) == norm, spec.name
        if "squash" in row["Mean/std"]:
            assert spec.preprocessing.resize_mode == "squash", spec.name
        if row["Emb dim"] != "unknown" and not spec.name.startswith(_EMB_UNSTATED):
            assert str(spec.embed_dim) in row["Emb dim"], (spec.name, row["Emb dim"])
        checked += 1
    assert checked >= 25


def test_hub_ids_match_models_md(reference):
    text = " ".join(" ".join(r.values()) for r in reference.values())
    for spec in list_specs():
        # The table names EVA02 by its timm id and BMCA-CLIP only by its hub organisation.
        if _row_for(spec.name) is None or spec.name in {"eva02-clip-b16", "bmca-clip"}:
            continue
        if spec.hub_id is None:  # MedCLIP: weights outside the hub, named in the table
            assert (
                "storage.googleapis.com/pytrial"
                in reference[_row_for(spec.name)]["Hub id(s) / source"]
            )
            continue
        # The table abbreviates sibling ids: `openai/clip-vit-base-patch32`, `-base-patch16`.
        tail = "-" + spec.hub_id.split("/")[1].split("-", 2)[-1]
        assert spec.hub_id in text or tail in text, spec.name


def test_dinov2_processor_geometry(reference):
    assert "resize 256, crop 224" in reference["DINOv2 (vision only)"]["Res"]
    for spec in list_specs("general"):
        if spec.name.startswith("dinov2-"):
            assert (spec.preprocessing.resize_size, spec.preprocessing.image_size) == (256, 224)


def test_zoo_coverage():
    medical, general = list_specs("medical"), list_specs("general")
    assert len(medical) >= 12 and len(general) >= 10
    libraries = {s.library for s in medical + general}
    assert libraries == {"open_clip", "transformers", "timm", "custom", "hi-ml-multimodal", "conch"}
    for spec in medical + general:
        assert (spec.hub_id or spec.options["download"]) and spec.license and spec.subdomain
        assert spec.embedding in {"projected", "cls", "pooled"}
        assert (spec.text is None) == (spec.embedding != "projected")
    remote = {s.name for s in medical + general if s.trust_remote_code}
    assert remote == {"llm2clip-openai-l14-336", "llm2clip-openai-b16", "conceptclip"}


def test_issue_16_models_are_in_the_zoo():
    names = {s.name for s in list_specs("medical")}
    assert names >= {
        "unimed-clip-b16",
        "unimed-clip-l14-336",
        "conceptclip",
        "bmca-clip",
        "flair",
        "medclip-vit",
        "medclip-resnet50",
        "biovil",
        "biovil-t",
        "pmc-clip",
        "keep",
        "conch",
    }
