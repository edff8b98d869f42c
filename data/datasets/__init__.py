"""Datasets: readers (CDVAE CSV, structure folders, extxyz), seeded splits, an on-disk cache and
the shipped development splits of perov_5 and carbon_24."""

from crystaloop.data.datasets.base import PROPERTY_UNITS, CrystalDataset, RowError
from crystaloop.data.datasets.loading import SHIPPED_DATASETS, load_dataset, resolve_dataset_path, shipped_path
from crystaloop.data.datasets.readers import detect_format, parse_structure_text
from crystaloop.data.datasets.splits import parse_fractions, split_indices, write_split_csv

__all__ = [
    "PROPERTY_UNITS",
    "CrystalDataset",
    "RowError",
    "SHIPPED_DATASETS",
    "load_dataset",
    "resolve_dataset_path",
    "shipped_path",
    "detect_format",
    "parse_structure_text",
    "parse_fractions",
    "split_indices",
    "write_split_csv",
]
