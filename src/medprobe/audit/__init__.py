"""Burned-in text audit: find the text and marks already in a dataset's images, tell whether
they leak the label, and whether a model's features rely on them (masking)."""

from medprobe.audit.boxes import TextBox
from medprobe.audit.detect import TextDetections, detect_text
from medprobe.audit.detector import LearnedDetector, TextDetector
from medprobe.audit.leakage import TextLeakage, text_prevalence, token_table
from medprobe.audit.marks import MarkFinder
from medprobe.audit.mask import TextMask
from medprobe.audit.registry import DEFAULT_DETECTOR, create_detector, detector_names
from medprobe.audit.reliance import text_reliance
from medprobe.audit.run import TextAudit, audit_text

__all__ = [
    "DEFAULT_DETECTOR",
    "LearnedDetector",
    "MarkFinder",
    "TextAudit",
    "TextBox",
    "TextDetections",
    "TextDetector",
    "TextLeakage",
    "TextMask",
    "audit_text",
    "create_detector",
    "detect_text",
    "detector_names",
    "text_prevalence",
    "text_reliance",
    "token_table",
]
