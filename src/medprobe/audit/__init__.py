"""Burned-in text audit: find text already in a dataset's images (OCR), tell whether it leaks
the label, and whether a model's features rely on it (masking)."""

from medprobe.audit.detect import TextBox, TextDetections, TextDetector, detect_text
from medprobe.audit.leakage import TextLeakage, text_prevalence, token_table
from medprobe.audit.mask import TextMask
from medprobe.audit.reliance import text_reliance
from medprobe.audit.run import TextAudit, audit_text

__all__ = [
    "TextAudit",
    "TextBox",
    "TextDetections",
    "TextDetector",
    "TextLeakage",
    "TextMask",
    "audit_text",
    "detect_text",
    "text_prevalence",
    "text_reliance",
    "token_table",
]
