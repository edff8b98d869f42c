"""Datasets: readers (CDVAE CSV, structure folders, extxyz), seeded splits, an on-disk cache and
the shipped development splits of perov_5 and carbon_24; one card per dataset (:mod:`.cards`)."""

from crystaloop.data.datasets.base import PROPERTY_UNITS, CrystalDataset, RowError, property_unit
from crystaloop.data.datasets.cards import DATASET_CARDS, CoverageCutoffs, DatasetCard, card_for_spec, dataset_card
from crystaloop.data.datasets.loading import SHIPPED_DATASETS, load_dataset, resolve_dataset_path, shipped_path
from crystaloop.data.datasets.readers import detect_format, parse_structure_text
from crystaloop.data.datasets.splits import parse_fractions, split_indices, write_split_csv

__all__ = [
    "PROPERTY_UNITS",
    "property_unit",
    "DATASET_CARDS",
    "CoverageCutoffs",
    "DatasetCard",
    "card_for_spec",
    "dataset_card",
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
