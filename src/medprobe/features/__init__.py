"""Feature extraction and the FeatureSet container."""

from medprobe.features.extract import extract
from medprobe.features.featureset import FeatureSet, SkippedRecord

__all__ = ["FeatureSet", "SkippedRecord", "extract"]
