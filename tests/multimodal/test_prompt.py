"""Words that constrain (``multimodal.prompt``): what a prompt names explicitly is enforced on every sample."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import CrystaloopError
from crystaloop.data.testing import permute_sites, random_rotation, random_translation
from crystaloop.multimodal.prompt import crystal_system_of, parse_prompt, sample_satisfying, snap_to_symmetry


def _perovskite(a: float = 3.9, c: float | None = None, b_site: str = "Ti") -> Crystal:
    """Ideal ABO3 perovskite (Pm-3m); ``c`` ≠ ``a`` strains it tetragonal (P4/mmm)."""
    lattice = np.diag([a, a, c if c is not None else a])
    frac = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    return Crystal.from_symbols(lattice, frac, ["Sr", b_site, "O", "O", "O"])


def _rutile() -> Crystal:
    u = 0.305
    frac = [[0, 0, 0], [0.5, 0.5, 0.5], [u, u, 0], [1 - u, 1 - u, 0], [0.5 + u, 0.5 - u, 0.5], [0.5 - u, 0.5 + u, 0.5]]
    return Crystal.from_symbols(np.diag([4.59, 4.59, 2.96]), frac, ["Ti", "Ti", "O", "O", "O", "O"])


@pytest.mark.parametrize(("text", "required", "excluded"), [
    ("cubic perovskite, Ti octahedrally coordinated by O", ("O", "Ti"), ()),
    ("a titanium oxide", ("O", "Ti"), ()),
    ("strontium titanate", ("O", "Ti", "Sr"), ()),
    ("an oxynitride in Ca-Ta-O-N", ("N", "O", "Ca", "Ta"), ()),
    ("lead-free piezoelectric niobate", ("O", "Nb"), ("Pb",)),
    ("a sulphide without Cd, free of mercury", ("S",), ("Cd", "Hg")),
    ("Pb free halide with no Tl", (), ("Tl", "Pb")),
])
def test_elements_named_and_excluded(text: str, required: tuple[str, ...], excluded: tuple[str, ...]) -> None:
    constraints = parse_prompt(text)
    assert constraints.required == required and set(constraints.excluded) == set(excluded)


def test_formula_oxidation_states_and_symmetry() -> None:
    constraints = parse_prompt("lead-free SrTiO3 in Pm-3m with Ti4+ and O2-")
    assert constraints.formula == {"O": 3, "Ti": 1, "Sr": 1} and constraints.formula_text == "SrTiO3"
    assert constraints.oxidation_states == {"O": -2, "Ti": 4} and constraints.space_group == 221
    assert parse_prompt("Fe(III) in P6_3/mmc").oxidation_states == {"Fe": 3}
    assert parse_prompt("hexagonal wurtzite, P6_3mc").space_group == 186
    assert parse_prompt("orthorhombic, space group No. 62").space_group == 62
    assert parse_prompt("a rhombohedral phase").crystal_system == "trigonal"
    assert parse_prompt("Pnma distortion").space_group == 62


def test_ambiguous_words_are_not_constraints_and_are_shown() -> None:
    constraints = parse_prompt("In this BCC metal at 300 K, I see As if He were cubic and hexagonal; it can lead to")
    assert constraints.required == () and constraints.crystal_system is None and constraints.formula is None
    for word in ("In", "BCC", "K", "I", "As", "He", "lead", "two crystal systems"):
        assert word in constraints.describe(), word
    assert parse_prompt("InP and GaAs").required == ("P", "Ga", "As", "In")  # in a formula they are elements
    assert parse_prompt("In3+ doped").required == ("In",)
    assert parse_prompt("lead titanate").required == ("O", "Ti", "Pb")
    assert parse_prompt("nothing explicit here").empty


def test_contradictions_are_refused() -> None:
    with pytest.raises(CrystaloopError, match="contradict"):
        parse_prompt("a cubic crystal in P6_3/mmc")
    with pytest.raises(CrystaloopError, match="outside 1..230"):
        parse_prompt("space group 231")
    constraints = parse_prompt("a titanate")
    with pytest.raises(CrystaloopError, match=r"names Ti.*Ba-O.*--no-prompt-constraints"):
        constraints.check_system(("Ba", "O"), None)
    with pytest.raises(CrystaloopError, match="excludes Pb"):
        parse_prompt("lead-free").check_system(None, {"Pb": 1, "Ti": 1, "O": 3})
    constraints.check_system(("Ba", "Ti", "O"), None)  # consistent: no error


def test_violations_judge_real_crystals_and_ignore_how_they_are_written() -> None:
    rng = np.random.default_rng(0)
    cubic = parse_prompt("cubic SrTiO3 with Ti4+, lead-free")
    ideal = _perovskite()
    copies = [ideal, random_rotation(ideal, rng), random_translation(ideal, rng), permute_sites(ideal, rng)[0]]
    assert all(cubic.violations(copy) == [] for copy in copies)
    assert cubic.violations(_perovskite(c=4.3)) == ["tetragonal, not cubic"]
    assert cubic.violations(_rutile()) == ["no Sr", "formula TiO2, not SrTiO3", "tetragonal, not cubic"]
    assert parse_prompt("Ti and Zr").violations(ideal) == ["no Zr"]
    assert parse_prompt("without Ti").violations(ideal) == ["contains Ti"]
    assert parse_prompt("SrTiO3 with Ti3+").violations(ideal) == ["no charge-balanced assignment with Ti+3"]
    assert parse_prompt("tetragonal, P4/mmm").violations(_perovskite(c=4.3)) == []
    assert crystal_system_of(221) == "cubic" and crystal_system_of(1) == "triclinic"


@dataclass(frozen=True)
class _Sample:
    crystal: Crystal


def test_sample_satisfying_never_returns_a_sample_without_a_named_element() -> None:
    """A generator that forgets titanium two times in three: every kept sample still has Ti."""
    drawn: list[tuple[int, int]] = []

    def draw(count: int, seed: int) -> list[_Sample]:
        drawn.append((count, seed))
        rng = np.random.default_rng(seed)
        return [_Sample(_perovskite(b_site="Ti" if rng.random() < 1 / 3 else "Zr")) for _ in range(count)]

    kept, reasons = sample_satisfying(draw, 8, parse_prompt("a Ti perovskite"), seed=5)
    assert len(kept) == 8 and all("Ti" in sample.crystal.composition for sample in kept)
    assert reasons["no Ti"] > 0 and set(reasons) == {"no Ti"}
    assert drawn[0] == (8, 5) and [seed for _, seed in drawn] == list(range(5, 5 + len(drawn)))
    again, _ = sample_satisfying(draw, 8, parse_prompt("a Ti perovskite"), seed=5)
    assert [s.crystal for s in again] == [s.crystal for s in kept]  # seeded: the same samples


def test_sample_satisfying_gives_up_after_its_rounds() -> None:
    calls = []

    def draw(count: int, seed: int) -> list[_Sample]:
        calls.append(count)
        return [_Sample(_perovskite(b_site="Zr")) for _ in range(count)]

    kept, reasons = sample_satisfying(draw, 4, parse_prompt("titanium"), max_rounds=3)
    assert kept == [] and calls == [4, 8, 16] and reasons == {"no Ti": 28}


def test_a_sample_near_the_asked_symmetry_is_symmetrised_onto_it() -> None:
    """A perovskite strained 5 % along c is tetragonal at 0.1 Å but within 0.2 Å of cubic: it is moved onto
    the cubic cell (same sites), while a 25 % strain stays out; symmetrising off keeps neither."""
    cubic = parse_prompt("a cubic SrTiO3")
    near, far = _perovskite(c=3.9 * 1.05), _perovskite(c=3.9 * 1.25)
    assert cubic.violations(near) == ["tetragonal, not cubic"]
    snapped = snap_to_symmetry(near, cubic)
    assert snapped is not None and cubic.violations(snapped) == [] and snapped.n_sites == near.n_sites
    assert snapped.composition == near.composition and abs(snapped.volume - near.volume) / near.volume < 0.05
    assert snap_to_symmetry(far, cubic) is None

    def draw(count: int, seed: int) -> list[_Sample]:
        return [_Sample(near if index % 2 else far) for index in range(count)]

    kept, reasons = sample_satisfying(draw, 3, cubic, max_rounds=2)
    assert len(kept) == 3 and all(cubic.violations(s.crystal) == [] for s in kept) and reasons["symmetrised"] == 3
    strict, reasons = sample_satisfying(draw, 3, cubic, max_rounds=2, snap_tolerances=())
    assert strict == [] and "symmetrised" not in reasons and reasons["tetragonal, not cubic"] == 3 + 6
