"""The toy editing benchmark's pairs and configurations (the GPU run itself is benchmarks/toy_edit.py)."""
import sys
from pathlib import Path

from ieadapt_jax.editing.toy_scores import edit_kind
from ieadapt_jax.toy import world

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import toy_edit  # noqa: E402


def test_pairs_are_balanced_single_attribute_edits_of_training_combinations():
    pairs = toy_edit.edit_pairs(60, seed=0)
    kinds = [edit_kind(source, target) for source, target in pairs]
    assert {k: kinds.count(k) for k in set(kinds)} == {"colour": 20, "shape": 20, "background": 20}
    assert len(set(pairs)) == 60
    for source, target in pairs:
        for caption in (source, target):
            a = world.parse(caption)
            assert not world.is_heldout(int(a.shape[0]), int(a.colour[0]), int(a.motion[0]))
    assert toy_edit.edit_pairs(60, seed=0) == pairs


def test_configurations_cover_table_3_and_the_ratio_sweep():
    names = [toy_edit.config_name(m, r) for m, r in toy_edit.configs()]
    assert names == ["none", "all", "tokenflow", "kv", "v", "p2p", "ieadapt ρ=0.5", "ieadapt ρ=0.25",
                     "ieadapt ρ=0.65", "ieadapt ρ=0.75", "ieadapt ρ=1"]
