"""XRD- and text-conditioned structure prediction vs unconditioned CSP on held-out perov_5/val (same compositions, seeds and sampler), one run.

For the first ``limit`` structures of ``perov_5/val`` (never seen by the generators nor by the
fusion model), in one process with torch on one thread:

* a powder pattern is simulated from each held-out structure (Cu Kα, the shared 2θ grid) and
  made measurement-like with :func:`crystaloop.multimodal.xrd.augment_patterns` (default
  strengths: strain, zero shift, intensity jitter, background, counting noise; seed fixed);
* its description comes from the project's describer (:func:`crystaloop.multimodal.describe.describe`);
* the shipped fusion model embeds both into its 64-wide latent.

Rows, all with the same compositions (species fixed: structure prediction), the same seed and the
same sampler (default: 1000 predictor-corrector steps, batches of 512, guidance 1):

* ``perov_5`` unconditioned: the shipped teacher, the reference CSP sampler;
* ``perov_5_multimodal`` unconditioned: the fine-tuned model without an embedding (did the
  fine-tune keep the teacher's unconditional quality?);
* ``perov_5_multimodal`` | XRD latent: the amortised XRD → structure route (``generate --xrd``);
* ``perov_5_multimodal`` | text latent (``generate --text``);
* ``perov_5_multimodal`` | structure latent of the true structure: an upper bound of what the
  latent can carry (not available in practice).

CSP protocol of DESIGN.md (pymatgen StructureMatcher stol=0.5, angle_tol=10, ltol=0.3; match =
``get_rms_dist`` returns a value; failures count as misses), plus the strict ``fit`` rate and,
per conditioned row, the paired counts against the unconditioned teacher: items only it
matched (``gained``) and items only the teacher matched (``lost``).

    python -m benchmarks.bench_xrd_conditioned --limit 200
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

DATA = "perov_5/val"
TEACHER = "perov_5"
MULTIMODAL = "perov_5_multimodal"
LIMIT = 200  # 13.3 min on one shared core with 1000 pc steps (five sampling runs + matching), 2026-11-28


def _score(references: list, samples: list) -> tuple[dict[str, float], np.ndarray]:
    """CSP figures (match %, fit %, mean normalised RMSE) and (n,) bool of matched items."""
    from crystaloop.generator.evaluation import csp_metrics

    per_item = [csp_metrics([r], [s]) for r, s in zip(references, samples, strict=True)]
    matched = np.array([m["match_rate"] > 0 for m in per_item])
    rms = [m["rmse"] for m in per_item if m["rmse"] is not None]
    figures = {"match_rate": 100.0 * float(matched.mean()), "fit_rate": 100.0 * float(np.mean([m["fit_rate"] > 0 for m in per_item])),
               "rmse": float(np.mean(rms)) if rms else float("nan")}
    return figures, matched


def _latents(references: list, seed: int) -> dict[str, np.ndarray]:
    """(n, d) fusion latents of each held-out structure's augmented pattern, description and structure."""
    from crystaloop.multimodal.describe import describe
    from crystaloop.multimodal.fusion import load_checkpoint
    from crystaloop.multimodal.pretrained import shipped_checkpoint
    from crystaloop.multimodal.xrd import augment_patterns, simulate_patterns

    fusion, _ = load_checkpoint(shipped_checkpoint())
    grid = fusion.config.grid
    patterns = augment_patterns(simulate_patterns(references, grid), np.random.default_rng(seed), grid=grid)
    return {
        "xrd": fusion.embed("xrd", patterns),
        "text": fusion.embed("text", [describe(c) for c in references]),
        "structure": fusion.embed("structure", references),
    }


def compare(limit: int = LIMIT, *, steps: int = 1000, method: str = "pc", guidance: float = 1.0, seed: int = 0,
            data: str = DATA, with_structure: bool = True, teacher: str = TEACHER,
            multimodal: str = MULTIMODAL) -> list[dict[str, Any]]:
    """One row per (model, condition) on the first ``limit`` items of ``data`` (models: shipped names or files)."""
    import torch

    from crystaloop.data.datasets import load_dataset
    from crystaloop.generator.config import SamplerConfig
    from crystaloop.generator.diffusion.generator import DiffusionGenerator, crystal_from_sample
    from crystaloop.generator.diffusion.sampling import SampleRequest
    from crystaloop.generator.shipped import resolve_generator_checkpoint

    references = load_dataset(data, max_rows=limit).crystals
    started = time.perf_counter()
    latents = _latents(references, seed)
    embed_seconds = time.perf_counter() - started
    sampler = SamplerConfig(method=method, steps=steps)
    models = {name: DiffusionGenerator.from_checkpoint(resolve_generator_checkpoint(name), sampler) for name in (teacher, multimodal)}
    runs = [(teacher, "none"), (multimodal, "none"), (multimodal, "xrd"), (multimodal, "text")]
    if with_structure:
        runs.append((multimodal, "structure"))
    rows, baseline = [], None
    for name, condition in runs:
        generator = models[name]
        norm = generator.model.normalisation
        tokens = torch.cat([norm.tokens(c.numbers, where=f"{data} item {i}") for i, c in enumerate(references)])
        request = SampleRequest(num_atoms=torch.tensor([c.n_sites for c in references]), tokens=tokens,
                                embeddings=None if condition == "none" else latents[condition], guidance_scale=guidance)
        logger.info("%s | %s on %d items (%s %d)", name, condition, len(references), method, steps)
        raw = generator.sample_raw(request, seed=seed)
        samples = [crystal_from_sample(*parts) for parts in raw.split()]
        figures, matched = _score(references, samples)
        row = {"model": name, "condition": condition, "n": len(references), "sampler": f"{method} {steps}",
               "guidance": guidance, **figures, "sampling_s": raw.seconds}
        if baseline is None:
            baseline = matched
        else:
            row.update({"gained": int((matched & ~baseline).sum()), "lost": int((baseline & ~matched).sum())})
        rows.append(row)
    rows[0]["embed_s"] = embed_seconds
    return rows


def run(quick: bool = False) -> list[dict]:
    """``make bench``: the first :data:`LIMIT` items (``quick``: 20 items, 100 ddim steps)."""
    import torch

    torch.set_num_threads(1)
    if quick:
        return compare(20, steps=100, method="ddim")
    return compare(LIMIT)


def main() -> None:
    from benchmarks.run_all import machine_description, to_markdown

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--limit", type=int, default=LIMIT, help="first N held-out structures")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--method", default="pc", choices=("pc", "ddim"))
    parser.add_argument("--guidance", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-structure", action="store_true", help="skip the structure-latent upper bound")
    parser.add_argument("--data", default=DATA, help="held-out split (e.g. carbon_24/val with --teacher carbon_24 --multimodal carbon_24_multimodal)")
    parser.add_argument("--teacher", default=TEACHER, help="unconditioned generator (shipped name or checkpoint)")
    parser.add_argument("--multimodal", default=MULTIMODAL, help="embedding-conditioned generator (shipped name or checkpoint)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    rows = compare(args.limit, steps=args.steps, method=args.method, guidance=args.guidance, seed=args.seed,
                   with_structure=not args.no_structure, data=args.data, teacher=args.teacher, multimodal=args.multimodal)
    logger.info("machine: %s\n\n%s", machine_description(), to_markdown(rows))


if __name__ == "__main__":
    main()
