"""Datasets: labelled images with a modality, class names and zero-shot prompts."""

from medprobe.datasets.base import Dataset, Record, SkippedRecord
from medprobe.datasets.files import FileDataset, image_folder, manifest
from medprobe.datasets.hf import hf_dataset
from medprobe.datasets.medmnist import MedMNISTDataset, medmnist
from medprobe.datasets.prompts import prompts_for
from medprobe.datasets.shards import webdataset
from medprobe.datasets.sources import open_dataset, open_source, source_names
from medprobe.datasets.splits import assign_splits
from medprobe.datasets.synthetic import SyntheticConfig, TextNuisance, synthetic

__all__ = [
    "Dataset",
    "FileDataset",
    "MedMNISTDataset",
    "Record",
    "SkippedRecord",
    "SyntheticConfig",
    "TextNuisance",
    "assign_splits",
    "hf_dataset",
    "image_folder",
    "manifest",
    "medmnist",
    "open_dataset",
    "open_source",
    "prompts_for",
    "source_names",
    "synthetic",
    "webdataset",
]
