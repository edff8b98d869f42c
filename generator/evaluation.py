"""Generator quality under the reference protocols of DESIGN.md.

Structure prediction (CSP): one sample per test composition, pymatgen ``StructureMatcher``
(stol=0.5, angle_tol=10, ltol=0.3); a match is ``get_rms_dist`` returning a value (the criterion
behind published numbers; ``fit`` is reported too); match rate over all test items (a failed
sample counts as a miss); RMSE is the matcher's RMS displacement normalised by (V/N)^(1/3),
averaged over matches.

De novo (DNG): structural and compositional validity as the protocol defines them
(:func:`crystaloop.data.validity.structural_validity`: all pair distances incl. periodic images
> 0.5 Å and volume > 0.1 Å³; :func:`~crystaloop.data.validity.compositional_validity`: SMACT
charge neutrality + Pauling electronegativity test, as in CDVAE's protocol; single-element
crystals count as valid), coverage COV-R / COV-P from CrystalNN site fingerprints (matminer)
and Magpie composition fingerprints with the cutoffs of the dataset's card
(:mod:`crystaloop.data.datasets.cards`; CDVAE's, Xie et al., ICLR 2022: perov_5 and carbon_24
struc 0.2 / comp 4, MP-20 0.4 / 10), and Wasserstein distances of density (g/cm³) and number of
elements against the test set.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets.cards import CoverageCutoffs, card_for_spec, dataset_card
from crystaloop.data.validity import compositional_validity, structural_validity

__all__ = ["csp_metrics", "csp_metrics_at_k", "dng_metrics", "coverage_cutoffs", "UNCARDED_COVERAGE", "markdown_table"]

logger = logging.getLogger(__name__)

UNCARDED_COVERAGE = "mp_20"
"""Whose cutoffs a dataset without a card (a user's file) is scored with: MP-20's, the
broadest of the protocol (CDVAE uses them for its general-chemistry benchmark)."""


def _matcher():  # noqa: ANN202 - a pymatgen StructureMatcher
    from crystaloop.data.matching import structure_matcher

    return structure_matcher("csp")


def coverage_cutoffs(dataset: str | None) -> tuple[CoverageCutoffs, str]:
    """The coverage cutoffs for ``dataset`` and where they come from.

    A carded dataset (``"perov_5/val"``) gives its card's; ``None``, ``""`` or an existing path
    without a card (a user's own file) gives :data:`UNCARDED_COVERAGE`'s, logged and named in
    the basis.

    Raises:
        UnknownComponentError: ``dataset`` is neither a carded name nor an existing path.
    """
    card = card_for_spec(dataset) if dataset else None
    if card is not None:
        return card.coverage, f"{card.name} card"
    fallback = dataset_card(UNCARDED_COVERAGE)
    logger.info("no dataset card for %r: coverage with the %s cutoffs", dataset, fallback.name)
    return fallback.coverage, f"{fallback.name} card (no card for {dataset!r})"


def csp_metrics(references: Sequence[Crystal], predictions: Sequence[Crystal | None],
                progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Match rate (%), strict-fit rate (%) and normalised RMSE of predictions vs references."""
    matcher = _matcher()
    rms, fits = [], 0
    for i, (reference, predicted) in enumerate(zip(references, predictions, strict=True)):
        if predicted is not None and structural_validity(predicted):
            a, b = predicted.to_pymatgen(), reference.to_pymatgen()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    result = matcher.get_rms_dist(a, b)
                    fits += bool(matcher.fit(a, b))
                except Exception:  # pymatgen raises on some pathological cells; count as a miss
                    result = None
            if result is not None:
                rms.append(float(result[0]))
        if progress is not None:
            progress(i + 1, len(references))
    n = len(references)
    return {
        "n": n,
        "match_rate": 100.0 * len(rms) / n if n else 0.0,
        "fit_rate": 100.0 * fits / n if n else 0.0,
        "rmse": float(np.mean(rms)) if rms else None,
        "invalid_samples": sum(p is None for p in predictions),
    }


def csp_metrics_at_k(references: Sequence[Crystal], candidates: Sequence[Sequence[Crystal | None]],
                     progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Match and strict-fit rates (%) with up to k candidates per reference (DiffCSP's k = 20 protocol).

    A reference counts as matched when any of its candidates matches (``get_rms_dist`` returns
    a value) and as fitted when any fits; ``k`` is the longest candidate list. Candidates are
    tried in order and a reference stops at its first strict fit (which implies a match), so
    no RMSE is reported here (:func:`csp_metrics` gives it for one sample).
    """
    matcher = _matcher()
    matched = fitted = 0
    for i, (reference, options) in enumerate(zip(references, candidates, strict=True)):
        b = reference.to_pymatgen()
        hit = fit = False
        for predicted in options:
            if predicted is None or not structural_validity(predicted):
                continue
            a = predicted.to_pymatgen()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    if matcher.get_rms_dist(a, b) is not None:
                        hit = True
                        fit = bool(matcher.fit(a, b))
                except Exception:  # pymatgen raises on some pathological cells; count as a miss
                    continue
            if fit:
                break
        matched += hit
        fitted += fit
        if progress is not None:
            progress(i + 1, len(references))
    n = len(references)
    return {"n": n, "k": max((len(c) for c in candidates), default=0),
            "match_rate": 100.0 * matched / n if n else 0.0, "fit_rate": 100.0 * fitted / n if n else 0.0}


def _fingerprints(crystals: Sequence[Crystal], progress: Callable[[int, int], None] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(structure fp (n, 61), composition fp (n, 132), ok mask (n,)) with CrystalNN + Magpie."""
    from matminer.featurizers.composition.composite import ElementProperty
    from matminer.featurizers.site.fingerprint import CrystalNNFingerprint

    site_fp = CrystalNNFingerprint.from_preset("ops")
    comp_fp = ElementProperty.from_preset("magpie", impute_nan=True)
    structure, composition, ok = [], [], []
    for i, crystal in enumerate(crystals):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                pmg = crystal.to_pymatgen()
                sites = np.array([site_fp.featurize(pmg, j) for j in range(len(pmg))])
                structure.append(sites.mean(0))
                composition.append(np.asarray(comp_fp.featurize(pmg.composition), dtype=np.float64))
                ok.append(True)
            except Exception:  # CrystalNN fails on some unphysical samples
                structure.append(np.zeros(61))
                composition.append(np.zeros(132))
                ok.append(False)
        if progress is not None:
            progress(i + 1, len(crystals))
    return np.array(structure), np.nan_to_num(np.array(composition)), np.array(ok)


def dng_metrics(samples: Sequence[Crystal | None], references: Sequence[Crystal], *, dataset: str = "",
                coverage_limit: int | None = 1000, seed: int = 0,
                progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Validity, coverage and distribution distances of de novo samples vs a reference set.

    Coverage uses at most ``coverage_limit`` valid samples and references (seeded subsample),
    since CrystalNN fingerprints cost ~0.1 s per structure.
    """
    from scipy.stats import wasserstein_distance

    n = len(samples)
    crystals = [c for c in samples if c is not None]
    struct_ok = [structural_validity(c) for c in crystals]
    comp_ok = [compositional_validity(c) for c in crystals]
    valid = [c for c, a, b in zip(crystals, struct_ok, comp_ok, strict=True) if a and b]
    result: dict[str, Any] = {
        "n": n,
        "structural_validity": 100.0 * sum(struct_ok) / n if n else 0.0,
        "compositional_validity": 100.0 * sum(comp_ok) / n if n else 0.0,
        "valid": 100.0 * len(valid) / n if n else 0.0,
    }
    if valid:
        result["wasserstein_density"] = float(wasserstein_distance([c.density for c in valid], [c.density for c in references]))
        result["wasserstein_num_elements"] = float(wasserstein_distance([len(c.elements) for c in valid], [len(c.elements) for c in references]))
    if coverage_limit and valid:
        rng = np.random.default_rng(seed)
        chosen = [valid[i] for i in sorted(rng.permutation(len(valid))[:coverage_limit])]
        refs = [references[i] for i in sorted(rng.permutation(len(references))[:coverage_limit])]
        cutoffs, basis = coverage_cutoffs(dataset)
        struc_cut, comp_cut = cutoffs.structure, cutoffs.composition
        total = len(chosen) + len(refs)
        gen_s, gen_c, gen_ok = _fingerprints(chosen, (lambda d, t: progress(d, total)) if progress else None)
        ref_s, ref_c, ref_ok = _fingerprints(refs, (lambda d, t: progress(len(chosen) + d, total)) if progress else None)
        gen_s, gen_c, ref_s, ref_c = gen_s[gen_ok], gen_c[gen_ok], ref_s[ref_ok], ref_c[ref_ok]
        # Magpie features are standardised with the reference statistics before distances
        mean, std = ref_c.mean(0), ref_c.std(0) + 1e-8
        gen_c, ref_c = (gen_c - mean) / std, (ref_c - mean) / std
        d_struc = np.linalg.norm(ref_s[:, None] - gen_s[None], axis=-1)
        d_comp = np.linalg.norm(ref_c[:, None] - gen_c[None], axis=-1)
        close = (d_struc <= struc_cut) & (d_comp <= comp_cut)
        result["cov_recall"] = 100.0 * float(close.any(1).mean())
        result["cov_precision"] = 100.0 * float(close.any(0).mean())
        result["coverage_cutoffs"] = {"structure": struc_cut, "composition": comp_cut, "basis": basis}
    import smact

    result["smact_version"] = smact.__version__
    return result


def markdown_table(metrics: dict[str, Any], title: str) -> str:
    """A two-column markdown table of the scalar metrics."""
    lines = [f"### {title}", "", "| metric | value |", "|---|---|"]
    for key, value in metrics.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        if isinstance(value, (int, float, str)) or value is None:
            lines.append(f"| {key} | {value} |")
    return "\n".join(lines) + "\n"
