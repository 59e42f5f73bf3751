"""transformers encoders: CLIP, SigLIP/SigLIP2, DINOv2/ViT, and remote-code models (LLM2CLIP)."""

from __future__ import annotations

from pathlib import Path

import torch

from medprobe.encoders.base import TorchEncoder
from medprobe.encoders.loading import checked_load, weights_digest, weights_folder
from medprobe.encoders.options import BuildOptions, WeightsRef
from medprobe.encoders.spec import EncoderSpec
from medprobe.errors import MedprobeError


def hf_tokens(tokenizer, spec: EncoderSpec, texts: list[str], device: torch.device):
    """``texts`` tokenised as the spec's text tower was trained (padding, context length),
    on ``device``."""
    text = spec.text
    return tokenizer(
        texts,
        padding="max_length" if text.padding == "max_length" else True,
        truncation=True,
        max_length=text.context_length,
        return_tensors="pt",
    ).to(device)


class HFTokenizedEncoder(TorchEncoder):
    """An encoder whose text side is a Hugging Face tokenizer saved in ``tokenizer_folder``
    (loaded on the first text analysis only)."""

    def __init__(
        self,
        spec: EncoderSpec,
        module: torch.nn.Module,
        tokenizer_folder: Path,
        options: BuildOptions,
        weights: WeightsRef,
    ) -> None:
        super().__init__(spec, module, options, weights)
        self.tokenizer_folder = tokenizer_folder
        self._tokenizer = None

    def tokens(self, texts: list[str]):
        """``texts`` through :func:`hf_tokens` with the folder's ``AutoTokenizer``."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer  # heavy: only when text is encoded

            self._tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_folder)
        return hf_tokens(self._tokenizer, self.spec, texts, self.device)


class HFEncoder(HFTokenizedEncoder):
    """``projected``: ``get_image_features`` (CLIP-style); ``cls``: the final CLS token;
    ``pooled``: the model's ``pooler_output``."""

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        if self.spec.embedding == "projected":
            out = self.module.get_image_features(pixel_values=batch)
            return getattr(out, "pooler_output", out)  # transformers 5 returns an output object
        out = self.module(pixel_values=batch)
        if self.spec.embedding == "cls":
            return out.last_hidden_state[:, 0]
        return out.pooler_output

    def text_forward(self, texts: list[str]) -> torch.Tensor:
        out = self.module.get_text_features(**self.tokens(texts))
        return getattr(out, "pooler_output", out)


class LLM2CLIPEncoder(HFEncoder):
    """LLM2CLIP: a CLIP image tower whose text side is an 8B LLM (via ``llm2vec``).

    Image-only analyses never touch the LLM; it is loaded on the first :meth:`encode_texts`.
    """

    def text_forward(self, texts: list[str]) -> torch.Tensor:
        import importlib.util

        if importlib.util.find_spec("llm2vec") is None:
            raise MedprobeError(
                f"{self.spec.name}: its text side needs the llm2vec package and the 8B LLM "
                f"{self.spec.options['text_llm']}; `pip install llm2vec` and download that model"
            )
        from llm2vec import LLM2Vec
        from transformers import AutoModel, AutoTokenizer

        if self._tokenizer is None:  # the LLM and its tokenizer, once
            llm_id = self.spec.options["text_llm"]
            llm = AutoModel.from_pretrained(llm_id, trust_remote_code=True, dtype=torch.bfloat16)
            llm.config._name_or_path = self.spec.options.get("text_llm_base", llm_id)
            self._tokenizer = LLM2Vec(
                llm, AutoTokenizer.from_pretrained(llm_id), pooling_mode="mean", max_length=512
            )
        embeddings = self._tokenizer.encode(texts, convert_to_tensor=True).to(self.device)
        return self.module.get_text_features(embeddings.float())


class ConceptCLIPEncoder(HFEncoder):
    """ConceptCLIP's remote code: ``model(pixel_values=...)["image_features"]`` for images and
    ``model.text(input_ids)[0]`` for texts (the calls of JerrryNie/ConceptCLIP's own evaluation
    code, downstream_evaluation/medical_image_diagnosis)."""

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.module(pixel_values=batch)["image_features"]

    def text_forward(self, texts: list[str]) -> torch.Tensor:
        return self.module.text(self.tokens(texts)["input_ids"])[0]


#: Remote-code models whose calls differ from CLIP's (``options['interface']``).
_INTERFACES: dict[str, type[HFEncoder]] = {
    "hf": HFEncoder,
    "llm2clip": LLM2CLIPEncoder,
    "conceptclip": ConceptCLIPEncoder,
}


def load_transformers(spec: EncoderSpec, options: BuildOptions) -> HFEncoder:
    """Loader for ``library == "transformers"`` specs (safetensors; remote code only on opt-in)."""
    weights = options.weights
    if spec.trust_remote_code:
        if not options.trust_remote_code:
            raise MedprobeError(
                f"{spec.name} runs code from its hub repository; allow it explicitly with "
                "trust_remote_code=True (CLI: --trust-remote-code)"
            )
        if weights is None and not spec.revision:
            raise MedprobeError(
                f"{spec.name}: remote code is only run at a pinned revision; pass "
                f"revision='<commit hash of {spec.hub_id}>'"
            )
    from transformers import AutoModel

    folder, source = weights_folder(spec, weights)
    module = checked_load(
        spec,
        folder,
        lambda: AutoModel.from_pretrained(
            folder,
            trust_remote_code=spec.trust_remote_code,
            dtype=torch.float32,
            **spec.options.get("model_args", {}),
        ),
    )
    kind = _INTERFACES[
        spec.options.get("interface", "llm2clip" if "text_llm" in spec.options else "hf")
    ]
    return kind(spec, module, folder, options, WeightsRef(source, weights_digest(folder)))
