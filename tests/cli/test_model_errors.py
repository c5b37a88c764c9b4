"""A model folder with a config.json of wrong value types is one ``error:`` line naming the file and the key, exit 2,
and nothing is written."""
import json

import diffusers
from support.tiny_diffusers import animatediff_parts

from ieadapt_jax.edit import main


def test_an_animatediff_config_with_a_wrong_value_type_names_the_file_and_the_key(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("IEADAPT_JAX_CACHE", str(tmp_path / "cache"))
    parts = animatediff_parts()
    diffusers.StableDiffusionPipeline(**{k: v for k, v in parts.items() if k != "motion_adapter"}, safety_checker=None,
                                      feature_extractor=None, requires_safety_checker=False).save_pretrained(
        tmp_path / "snapshot")
    parts["motion_adapter"].save_pretrained(tmp_path / "adapter")
    config_file = tmp_path / "snapshot" / "unet" / "config.json"
    config = json.loads(config_file.read_text())
    config["norm_num_groups"] = "eight"
    config_file.write_text(json.dumps(config))
    out = tmp_path / "out"
    capsys.readouterr()  # save_pretrained's progress bars
    code = main(["--model", "animatediff", "--pretrained", str(tmp_path / "snapshot"), "--motion-adapter",
                 str(tmp_path / "adapter"), "--source", "a cat", "--target", "a dog", "--frames", "2", "--height", "16",
                 "--width", "16", "--steps", "1", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert str(config_file) in err and "'norm_num_groups'" in err and "expected an integer" in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "snapshot"]
