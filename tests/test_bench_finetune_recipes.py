"""bench.finetune_recipes keeps the recipes tried on a model (its grid) only while they describe the same weights."""
from bench.finetune_recipes import update


def _results(fingerprint: str | None) -> dict:
    model = {"baseline": 0.964, "runs": {}} | ({"fingerprint": fingerprint} if fingerprint else {})
    return {"models": {"unet": model}, "grid": {"unet": {"SGD 1e-2": {}}}}


def test_grid_of_other_weights_with_the_same_baseline_is_dropped():
    """Two trainings of the UNet-style net both scored 96.4%: the baseline cannot tell them apart."""
    results = _results("old-weights")
    update(results, "unet", {"baseline": 0.964, "fingerprint": "new-weights", "runs": {}})
    assert "unet" not in results["grid"]


def test_grid_without_a_fingerprint_is_dropped():
    results = _results(None)
    update(results, "unet", {"baseline": 0.964, "fingerprint": "new-weights", "runs": {}})
    assert "unet" not in results["grid"]


def test_grid_of_the_same_weights_is_kept():
    results = _results("same")
    entry = {"baseline": 0.5, "fingerprint": "same", "runs": {}}
    assert update(results, "unet", entry) is entry
    assert results["grid"] == {"unet": {"SGD 1e-2": {}}}
