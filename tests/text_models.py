"""Tiny real CLIP-style models for the text-side tests: open_clip and transformers CLIP with
random weights, saved in their on-disk layouts and loaded through ``create_encoder``; and the
"constructed" variant whose text tower maps every prompt of a class to the class mean of the
image features (only the text projection is solved for; the image tower is untouched)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

#: the char-level CLIP BPE vocabulary's special tokens (ids after the 512 byte symbols)
BOS, EOS = 512, 513


def _byte_symbols() -> list[str]:
    """GPT-2 / CLIP byte-to-unicode table (every byte gets a printable symbol)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    codes, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def save_char_clip_tokenizer(folder: Path) -> None:
    """A real ``CLIPTokenizer`` whose BPE has no merges (one token per character), so it needs
    no download; ``AutoTokenizer.from_pretrained(folder)`` loads it."""
    from transformers import CLIPTokenizer

    symbols = _byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({f"{s}</w>": len(symbols) + i for i, s in enumerate(symbols)})
    vocab.update({"<|startoftext|>": BOS, "<|endoftext|>": EOS})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt")).save_pretrained(folder)


def open_clip_model(folder: Path, seed: int = 0, text_width: int = 192):
    """A tiny open_clip CLIP (32 px ViT, one text layer) as ``open_clip_config.json`` +
    ``open_clip_pytorch_model.bin``; returns the model."""
    import open_clip

    config = {
        "model_cfg": {
            "embed_dim": 32,
            "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
            "text_cfg": {
                "context_length": 77,
                "vocab_size": 49408,
                "width": text_width,
                "heads": 4,
                "layers": 1,
            },
        },
        "preprocess_cfg": {},
    }
    folder.mkdir(parents=True)
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    torch.manual_seed(seed)
    model = open_clip.create_model(f"local-dir:{folder}", load_weights=False).eval()
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return model


def transformers_clip_model(folder: Path, seed: int = 0, hidden: int = 192):
    """A tiny transformers ``CLIPModel`` (32 px ViT) with a char-level CLIP tokenizer and an
    image processor, as ``save_pretrained`` leaves it; returns the model."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from medprobe.encoders.spec import OPENAI_MEAN, OPENAI_STD

    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config={
            "hidden_size": hidden,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "vocab_size": EOS + 1,
            "max_position_embeddings": 128,
            "bos_token_id": BOS,
            "eos_token_id": EOS,
            "pad_token_id": EOS,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=32,
    )
    model = CLIPModel(config).eval()
    model.save_pretrained(folder)
    CLIPImageProcessor(
        size={"shortest_edge": 32},
        crop_size={"height": 32, "width": 32},
        image_mean=list(OPENAI_MEAN),
        image_std=list(OPENAI_STD),
    ).save_pretrained(folder)
    save_char_clip_tokenizer(folder)
    return model


ARCHITECTURES = {"open_clip": open_clip_model, "transformers": transformers_clip_model}


def _pooled_text(model, folder: Path, prompts: Sequence[str]) -> np.ndarray:
    """The text tower's output before its projection, per prompt (float64)."""
    with torch.inference_mode():
        if hasattr(model, "get_text_features"):
            from transformers import AutoTokenizer

            tokens = AutoTokenizer.from_pretrained(folder)(
                list(prompts), padding=True, truncation=True, max_length=128, return_tensors="pt"
            )
            return model.text_model(**tokens).pooler_output.double().numpy()
        import open_clip

        tokens = open_clip.get_tokenizer(f"local-dir:{folder}")(list(prompts))
        saved = model.text_projection.data.clone()
        model.text_projection.data = torch.eye(saved.shape[0])
        try:
            return model.encode_text(tokens).double().numpy()
        finally:
            model.text_projection.data = saved


def align_text_to(model, folder: Path, prompts: Sequence[str], targets: np.ndarray) -> float:
    """Solve the text projection so that prompt ``i`` embeds to ``targets[i]`` exactly (needs
    at most text-width distinct prompts) and save the model again; returns the largest error."""
    pooled = _pooled_text(model, folder, prompts)
    projection = np.linalg.lstsq(pooled, np.asarray(targets, np.float64), rcond=None)[0]
    weight = torch.tensor(projection, dtype=torch.float32)
    with torch.no_grad():
        if hasattr(model, "get_text_features"):
            model.text_projection.weight.copy_(weight.T)
            model.save_pretrained(folder)
        else:
            model.text_projection.copy_(weight)
            torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return float(np.abs(pooled @ projection - targets).max())


def with_new_text_tower(kind: str, base, folder: Path, seed: int):
    """A model in ``folder`` with ``base``'s image tower and a freshly random text tower
    (``seed``): a new draw of random text weights over the same image features."""
    model = ARCHITECTURES[kind](folder, seed=seed)
    with torch.no_grad():
        if kind == "transformers":
            model.vision_model.load_state_dict(base.vision_model.state_dict())
            model.visual_projection.load_state_dict(base.visual_projection.state_dict())
            model.save_pretrained(folder)
        else:
            model.visual.load_state_dict(base.visual.state_dict())
            torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return model
