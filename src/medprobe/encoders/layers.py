"""Named layer taps of an encoder: where in the network features can be read, and how pooled.

A :class:`Tap` is one place features are read: ``final`` (the encoder's embedding, exactly what
``encode_images`` returns) or the output of one transformer block / CNN stage, pooled to one
vector per image as it declares (``cls``: the class token; ``mean``: the mean of the patch
tokens, prefix tokens left out; ``gap``: global average over a CNN stage's feature map). The
tap's name, module path, pooling and width are part of the feature-store key of its features.

Taps are found from the module tree by a small table of rules (:data:`RULES`), one per
layout of the field's libraries: timm ViTs (``blocks``), open_clip's ``VisionTransformer``
(``transformer.resblocks``), transformers vision encoders (``encoder.layer(s)``), ResNets
(``layer1..layer4``: torchvision, timm, open_clip's ``ModifiedResNet``) and timm CNNs with
``stages``. The search starts at the image tower (``visual`` / ``vision_model`` / ...), so a
text tower is never tapped. All taps come from one forward pass (forward hooks; each hook
pools its block's output at once, so no token map outlives its block).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from medprobe.errors import MedprobeError
from medprobe.fingerprint import fingerprint

Pooling = Literal["embedding", "cls", "mean", "gap"]
FINAL = "final"

#: what each pooling means, for ``medprobe layers`` and the report
POOLINGS: dict[str, str] = {
    "embedding": "the encoder's own embedding (what encode_images returns)",
    "cls": "the class token of the block's output",
    "mean": "the mean of the block's patch tokens (class / register tokens left out)",
    "gap": "global average of the stage's feature map over its height and width",
}


@dataclass(frozen=True)
class Tap:
    """One named place features are read. ``depth`` is the relative depth in (0, 1]: block
    ``i`` of ``N`` is ``i / N``, ``final`` is 1."""

    name: str
    pooling: Pooling
    dim: int
    depth: float
    module: str = ""
    #: tokens before the patch tokens (class, registers) that ``mean`` pooling leaves out
    prefix: int = 0
    #: whether a token output is [tokens, batch, width] (open_clip with batch_first=False)
    tokens_first: bool = False

    def fingerprint(self) -> str:
        """What changes the tap's numbers: where it reads, how it pools, its width."""
        return fingerprint(self.name, self.module, self.pooling, self.prefix, self.dim)

    def pool(self, output: Any) -> torch.Tensor:
        """A block's output -> ``[N, dim]`` as the tap declares."""
        x = _tensor(output)
        if self.pooling == "gap":
            return x.mean(dim=(2, 3))
        if self.tokens_first:
            x = x.transpose(0, 1)
        if self.pooling == "cls":  # a copy: a view would keep the block's token map alive
            return x[:, 0].clone()
        return x[:, self.prefix :].mean(dim=1)


def _tensor(output: Any) -> torch.Tensor:
    """A block's output tensor (blocks that return a tuple put it first)."""
    return output[0] if isinstance(output, tuple | list) else output


def final_tap(dim: int) -> Tap:
    """The encoder's embedding as a tap."""
    return Tap(FINAL, "embedding", dim, 1.0)


@dataclass(frozen=True)
class Blocks:
    """What a rule found: the block modules in order, how to name them, their token layout."""

    paths: tuple[str, ...]
    kind: Literal["block", "stage"]
    has_class_token: bool = False
    prefix: int = 0
    tokens_first: bool = False


def _has(module: nn.Module, name: str) -> bool:
    return isinstance(getattr(module, name, None), nn.Module)


def _children(module: nn.Module, name: str, at: str) -> tuple[str, ...] | None:
    container = module.get_submodule(name) if _path_exists(module, name) else None
    if not isinstance(container, nn.ModuleList | nn.Sequential) or len(container) == 0:
        return None
    return tuple(f"{at}{name}.{i}" for i in range(len(container)))


def _path_exists(module: nn.Module, path: str) -> bool:
    try:
        module.get_submodule(path)
    except AttributeError:
        return False
    return True


def _timm_vit(module: nn.Module, at: str) -> Blocks | None:
    if not hasattr(module, "num_prefix_tokens"):
        return None
    paths = _children(module, "blocks", at)
    if paths is None:
        return None
    has_cls = getattr(module, "cls_token", None) is not None
    return Blocks(paths, "block", has_cls, int(module.num_prefix_tokens))


def _open_clip_vit(module: nn.Module, at: str) -> Blocks | None:
    if not (_has(module, "transformer") and hasattr(module, "class_embedding")):
        return None
    paths = _children(module, "transformer.resblocks", at)
    if paths is None:
        return None
    first = not getattr(module.transformer, "batch_first", True)
    return Blocks(paths, "block", True, 1, tokens_first=first)


def _transformers(module: nn.Module, at: str) -> Blocks | None:
    if not (_has(module, "encoder") and _has(module, "embeddings")):
        return None
    name = "encoder.layer" if _path_exists(module, "encoder.layer") else "encoder.layers"
    paths = _children(module, name, at)
    if paths is None:
        return None
    embeddings = module.embeddings
    has_cls = getattr(embeddings, "cls_token", None) is not None or hasattr(
        embeddings, "class_embedding"
    )
    # a model with a class token is read at it; one without (SigLIP, Swin) has no prefix
    return Blocks(paths, "block", has_cls)


def _resnet(module: nn.Module, at: str) -> Blocks | None:
    if not all(_has(module, f"layer{i}") for i in range(1, 5)):
        return None
    return Blocks(tuple(f"{at}layer{i}" for i in range(1, 5)), "stage")


def _timm_stages(module: nn.Module, at: str) -> Blocks | None:
    if not (hasattr(module, "feature_info") and _has(module, "stages")):
        return None
    paths = _children(module, "stages", at)
    return None if paths is None else Blocks(paths, "stage")


#: module layout -> its blocks; the first rule that matches the first module (breadth first
#: from the image tower) wins
RULES: tuple[Callable[[nn.Module, str], Blocks | None], ...] = (
    _timm_vit,
    _open_clip_vit,
    _transformers,
    _resnet,
    _timm_stages,
)
#: attributes that hold a model's image tower (the text tower is never searched)
_IMAGE_TOWERS = ("visual", "vision_model", "image_encoder", "vision_encoder")


def image_tower(module: nn.Module) -> tuple[nn.Module, str]:
    """The image tower of ``module`` and its path (the module itself when it has none)."""
    for name in _IMAGE_TOWERS:
        if _has(module, name):
            return getattr(module, name), f"{name}."
    return module, ""


def find_blocks(module: nn.Module) -> Blocks | None:
    """The blocks of the image tower (breadth first, first matching rule), or None."""
    tower, at = image_tower(module)
    queue: list[tuple[nn.Module, str]] = [(tower, at)]
    while queue:
        current, path = queue.pop(0)
        for rule in RULES:
            found = rule(current, path)
            if found is not None:
                return found
        queue += [(child, f"{path}{name}.") for name, child in current.named_children()]
    return None


def block_taps(blocks: Blocks, shapes: Sequence[torch.Size]) -> list[Tap]:
    """The taps of ``blocks`` given each block's output shape from one probe forward."""
    taps = []
    total = len(blocks.paths)
    for i, (path, shape) in enumerate(zip(blocks.paths, shapes, strict=True), start=1):
        if len(shape) == 4:
            pooling: Pooling = "gap"
            dim = int(shape[1])
        else:
            pooling = "cls" if blocks.has_class_token else "mean"
            dim = int(shape[-1])
        taps.append(
            Tap(
                f"{blocks.kind}_{i}",
                pooling,
                dim,
                round(i / total, 4),
                path,
                blocks.prefix if pooling == "mean" else 0,
                blocks.tokens_first and len(shape) == 3,
            )
        )
    return taps


@contextmanager
def capture(
    module: nn.Module, taps: Sequence[Tap], *, shapes: bool = False
) -> Iterator[dict[str, Any]]:
    """Forward hooks on the taps' modules: each block's output, pooled by its tap (or only
    its shape, ``shapes=True``), lands in the yielded dict under the tap's name."""
    found: dict[str, Any] = {}
    handles = []

    def hook(tap: Tap):
        def store(_module, _inputs, output):
            found[tap.name] = _tensor(output).shape if shapes else tap.pool(output)

        return store

    try:
        for tap in taps:
            handles.append(module.get_submodule(tap.module).register_forward_hook(hook(tap)))
        yield found
    finally:
        for handle in handles:
            handle.remove()


#: a study's ``layers:``: ``all``, a list of tap names, or ``{every: N}``
LayerSelection = str | Sequence[str] | Mapping[str, int]


def select_taps(taps: Sequence[Tap], selection: LayerSelection, encoder: str = "") -> list[Tap]:
    """The taps a selection names, in network order, ``final`` always included.

    ``"all"``: every tap; a list: those names; ``{"every": N}``: every N-th block (the last one
    included) and ``final``."""
    by_name = {t.name: t for t in taps}
    if isinstance(selection, str):
        if selection != "all":
            raise MedprobeError(
                f"layers must be 'all', a list of layer names or {{every: N}}; got {selection!r}"
            )
        return list(taps)
    if isinstance(selection, Mapping):
        every = int(selection.get("every", 0))
        if every <= 0 or set(selection) != {"every"}:
            raise MedprobeError(f"layers: {{every: N}} needs a positive N; got {dict(selection)}")
        blocks = [t for t in taps if t.name != FINAL]
        keep = {t.name for i, t in enumerate(blocks, start=1) if i % every == 0}
        keep |= {blocks[-1].name} if blocks else set()
        return [t for t in taps if t.name in keep or t.name == FINAL]
    unknown = [name for name in selection if name not in by_name]
    if unknown:
        raise MedprobeError(
            f"{encoder or 'the encoder'} has no layer {', '.join(map(repr, unknown))}; its "
            f"layers: {', '.join(by_name)} (`medprobe layers {encoder or 'MODEL'}` lists them)"
        )
    wanted = {*selection, FINAL}
    return [t for t in taps if t.name in wanted]
