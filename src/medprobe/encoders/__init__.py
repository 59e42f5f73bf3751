"""Encoders: one factory over a registry of declarative specs."""

from medprobe.encoders.registry import (
    computes_in,
    create_encoder,
    get_spec,
    list_specs,
    register,
)
from medprobe.encoders.spec import EncoderSpec, Preprocessing, TextSide

__all__ = [
    "EncoderSpec",
    "Preprocessing",
    "TextSide",
    "computes_in",
    "create_encoder",
    "get_spec",
    "list_specs",
    "register",
]
