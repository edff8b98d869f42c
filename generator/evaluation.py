"""Generator quality under the reference protocols of DESIGN.md.

Structure prediction (CSP): one sample per test composition, pymatgen ``StructureMatcher``
(stol=0.5, angle_tol=10, ltol=0.3); a match is ``get_rms_dist`` returning a value (the criterion
behind published numbers; ``fit`` is reported too); match rate over all test items (a failed
sample counts as a miss); RMSE is the matcher's RMS displacement normalised by (V/N)^(1/3),
averaged over matches.

De novo (DNG): structural validity (all pair distances incl. periodic images > 0.5 Å and volume
> 0.1 Å³), compositional validity (SMACT charge neutrality + Pauling electronegativity test, as
in CDVAE's protocol; single-element crystals count as valid), coverage COV-R / COV-P from
CrystalNN site fingerprints (matminer) and Magpie composition fingerprints with the CDVAE
thresholds (Xie et al., ICLR 2022: perov_5 and carbon_24 struc 0.2 / comp 4, MP-20 0.4 / 10),
and Wasserstein distances of density (g/cm³) and number of elements against the test set.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

import numpy as np

from crystaloop.data.crystal import Crystal

__all__ = ["csp_metrics", "dng_metrics", "structural_validity", "compositional_validity", "COVERAGE_CUTOFFS", "markdown_table"]

logger = logging.getLogger(__name__)

COVERAGE_CUTOFFS = {"perov_5": (0.2, 4.0), "carbon_24": (0.2, 4.0), "mp_20": (0.4, 10.0)}
_DEFAULT_CUTOFFS = (0.4, 10.0)


def _matcher():  # noqa: ANN202 - a pymatgen StructureMatcher
    from crystaloop.data.matching import structure_matcher

    return structure_matcher()


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


def structural_validity(crystal: Crystal, cutoff: float = 0.5) -> bool:
    """All interatomic distances (incl. periodic images) above ``cutoff`` Å and volume > 0.1 Å³."""
    if crystal.volume <= 0.1:
        return False
    if crystal.n_sites == 1:
        return bool(np.min(np.linalg.norm(crystal.lattice, axis=1)) > cutoff)
    return crystal.min_pair_distance() > cutoff


@cache
def _smact_tables() -> tuple[dict, dict]:
    from smact import Element

    oxidation, electronegativity = {}, {}
    for z in range(1, 104):
        from crystaloop.data.crystal import element_symbol

        symbol = element_symbol(z)
        try:
            element = Element(symbol)
        except Exception:  # SMACT has no data for some heavy elements
            continue
        oxidation[symbol] = tuple(element.oxidation_states or ())
        electronegativity[symbol] = element.pauling_eneg
    return oxidation, electronegativity


def compositional_validity(crystal: Crystal) -> bool:
    """SMACT charge neutrality with the Pauling electronegativity order test (CDVAE's rule).

    Single-element crystals are valid; compositions of SMACT metals only are valid (alloys).
    """
    from smact.screening import pauling_test

    counts = crystal.composition
    symbols = list(counts)
    if len(symbols) == 1:
        return True
    oxidation, electronegativity = _smact_tables()
    if any(s not in oxidation for s in symbols):
        return False
    import smact

    if all(s in smact.metals for s in symbols):
        return True
    gcd = np.gcd.reduce(list(counts.values()))
    stoichiometry = [counts[s] // gcd for s in symbols]
    for states in itertools.product(*(oxidation[s] for s in symbols)):
        if sum(q * n for q, n in zip(states, stoichiometry, strict=True)) != 0:
            continue
        enegs = [electronegativity[s] for s in symbols]
        if any(e is None for e in enegs):
            return True
        if pauling_test(states, enegs):
            return True
    return False


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
        struc_cut, comp_cut = COVERAGE_CUTOFFS.get(dataset.split("/")[0], _DEFAULT_CUTOFFS)
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
        result["coverage_cutoffs"] = {"structure": struc_cut, "composition": comp_cut}
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
