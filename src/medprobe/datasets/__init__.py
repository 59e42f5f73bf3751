"""Datasets: labelled images with a modality, class names and zero-shot prompts."""

from medprobe.datasets.base import Dataset, Record
from medprobe.datasets.synthetic import SyntheticConfig, TextNuisance, synthetic

__all__ = ["Dataset", "Record", "SyntheticConfig", "TextNuisance", "synthetic"]
