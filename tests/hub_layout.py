"""Write model folders in the exact on-disk layout of the Hugging Face cache.

``models--ORG--NAME/blobs/<sha256>``, ``snapshots/<commit>/<file>`` as relative symlinks to the
blobs, and ``refs/main`` holding the commit: what ``hf download`` leaves behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path


def put_in_hf_cache(
    cache: Path,
    repo_id: str,
    folder: Path,
    commit: str | None = None,
    ref: str = "main",
    repo_type: str = "model",
) -> Path:
    """Copy every file of ``folder`` into the cache as ``repo_id`` at ``commit`` (named by
    ``refs/<ref>``, e.g. a release tag); returns the snapshot folder."""
    commit = commit or hashlib.sha1(repo_id.encode()).hexdigest()
    repo = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        if not blob.exists():
            shutil.copyfile(path, blob)
        target = snapshot / path.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            target.unlink()
        target.symlink_to(os.path.relpath(blob, target.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    return snapshot


def remove_from_hf_cache(cache: Path, repo_id: str, repo_type: str = "model") -> None:
    shutil.rmtree(cache / f"{repo_type}s--{repo_id.replace('/', '--')}", ignore_errors=True)


WORDS = [
    *("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "an", "of", "the", "image", "photo"),
    *("dermoscopy", "chest", "x-ray", "fundus", "benign", "malignant", "lesion", "normal"),
    *("tissue", "pneumonia", "."),
]


def tiny_bert_repo(folder: Path, config_class=None, vocab_size: int = 64, **extra) -> Path:
    """A small BERT-family repository (config + WordPiece tokenizer files), as the text towers of
    BiomedCLIP, UniMed-CLIP, PMC-CLIP, FLAIR, MedCLIP, KEEP or CXR-BERT ship it."""
    from transformers import BertConfig, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (config_class or BertConfig)(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=vocab_size,
        **extra,
    ).save_pretrained(folder)
    words = list(WORDS) + [f"w{i}" for i in range(vocab_size - len(WORDS))]
    BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}).save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(words))  # what BERT repositories ship too
    return folder
