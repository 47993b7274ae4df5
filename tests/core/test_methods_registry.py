"""Pruning methods are registered objects (core.methods): every method runs end to end on a small sample
model (config round-trip, estimate against the cut model, the CLI), each refuses the criteria it cannot
rank by in config validation, the CLI and the dashboard alike, and a new method defined only in this file
registers and runs through the CLI, the estimate and the Tune page without touching any other file."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator

import pytest
from torch import nn

from core import methods
from core.cli import main
from core.config import PruneConfig
from core.errors import PruneLabError
from core.estimate import build_cost_model
from core.graph import Unit
from core.importance import REGISTRY as CRITERIA
from core.methods.unstructured import Unstructured
from core.metrics import count_nonzero, count_params
from core.plan import plan
from core.prune import apply
from tests.conftest import get_spec
from tests.dashboard.nav import goto
from tests.dashboard.test_app import open_app

# the smallest trained sample that has units for each method (digits-mlp has no heads nor residual blocks)
MODEL_FOR = {"head": "mnist-vit", "layer": "mnist-vit"}
RATIO = 0.5  # share removed per unit (layer: of the removable blocks)


def _call(*argv: str) -> tuple[int, str, str]:
    """main(argv) with stdout/stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def _model(method: str) -> str:
    return MODEL_FOR.get(method, "digits-mlp")


def _ratio(method: methods.Method) -> float | None:
    return None if method.name == "nm" else RATIO  # N:M's share is fixed by the pattern


# --- the criteria a method accepts: one declaration read by the config, the CLI and the dashboard ---------


def test_config_refuses_a_criterion_the_method_cannot_rank_by():
    """Heads are ranked by gate gradients, weight norms or at random: a Fisher head config is refused."""
    with pytest.raises(PruneLabError, match="the head method ranks by taylor, l1, l2, random"):
        PruneConfig(model="mnist-vit", method="head", ratios={}, criterion="fisher")
    with pytest.raises(PruneLabError, match="the unstructured method ranks by"):
        PruneConfig(model="digits-mlp", method="unstructured", ratios={}, criterion="bn_scale")


def test_cli_refuses_a_bad_pair_before_any_work(tmp_path):
    """One line, exit 2, no output folder: bn_scale scores channels only, never single weights."""
    out = tmp_path / "run"
    code, stdout, stderr = _call("prune", "digits-mlp", "--method", "unstructured", "--criterion", "bn_scale",
                                 "--ratio", "0.5", "--out", out)
    assert code == 2 and stdout == ""
    assert stderr.startswith("prunelab: error: the unstructured method ranks by") and len(stderr.splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("name", methods.names())
def test_every_method_accepts_only_registered_criteria(name):
    method = methods.get(name)
    assert method.criteria() and set(method.criteria()) <= set(CRITERIA)
    for criterion in CRITERIA:
        make = lambda c=criterion: PruneConfig(model="m", method=name, ratios={}, criterion=c)  # noqa: E731
        if criterion in method.criteria():
            assert make().criterion == criterion
        else:
            with pytest.raises(PruneLabError, match=f"the {name} method ranks by"):
                make()


# --- each method end to end on a small sample model ----------------------------------------------------


def _planned_config(name: str) -> PruneConfig:
    method, spec = methods.get(name), get_spec(_model(name))
    ratios, blocks = plan(spec, name, _ratio(method))
    return PruneConfig(model=spec.name, method=name, ratios=ratios, remove_blocks=blocks,
                       model_fingerprint=spec.fingerprint)


@pytest.mark.parametrize("name", methods.names())
def test_method_config_round_trip_and_estimate(name):
    """The planned config survives JSON; the estimate equals the count on the model actually cut."""
    config = _planned_config(name)
    assert PruneConfig.from_json(config.to_json()) == config
    assert config.ratios or config.remove_blocks
    spec = get_spec(config.model)
    cost = build_cost_model(spec.model, spec.example_input, name)
    est = cost.estimate({**config.ratios, **dict.fromkeys(config.remove_blocks, 1.0)})
    pruned = apply(spec, config).model
    assert est["params"] == count_params(pruned)
    # N:M groups and blocks cut short by a layer's border make mask estimates of non-zeros approximate by a
    # few weights per layer (core.estimate's docstring); everything else is exact
    slack = 16 * len(config.ratios) if methods.get(name).mask else 0
    assert abs(est["nonzero_params"] - count_nonzero(pruned)) <= slack
    assert est["nonzero_params"] < count_nonzero(spec.model)
    assert (est["params"] == count_params(spec.model)) == methods.get(name).mask  # masks keep dense tensors


@pytest.mark.slow  # 10-25 s each on this 2-core machine (a full prune, export and measure)
@pytest.mark.parametrize("name", methods.names())
def test_method_runs_through_the_cli(name, tmp_path):
    """`prunelab prune --method NAME` writes a config of that method that reads back."""
    method = methods.get(name)
    ratio = [] if _ratio(method) is None else ["--ratio", str(RATIO)]
    out = tmp_path / "run"
    code, _, stderr = _call("prune", _model(name), "--method", name, *ratio, "--out", out)
    assert code == 0, stderr
    config = PruneConfig.load(out / "config.json")
    assert config.method == name and (config.ratios or config.remove_blocks)


# --- a method defined only here ----------------------------------------------------------------------


class EveryOther(Unstructured):
    """Unstructured masks on every other Conv2d/Linear layer only (the first, the third, ...)."""

    name = "every-other"
    help = "zeroes single weights of every other layer · mask: same dense size and speed"
    swept = solved = global_scope = False  # no sensitivity sweep runner of its own, so no solver either

    def units(self, model: nn.Module, example_input) -> list[Unit]:
        return super().units(model, example_input)[::2]


@pytest.fixture
def toy() -> Iterator[methods.Method]:
    method = EveryOther()
    methods.register(method)
    try:
        yield method
    finally:
        methods.unregister(method.name)


def test_toy_method_registers_and_runs_through_cli_and_estimate(toy, tmp_path):
    spec = get_spec("digits-mlp")
    assert toy.name in methods.names()
    layers = [u.name for u in toy.units(spec.model, spec.example_input)]
    assert layers == ["fc1", "fc3"]  # three Linear layers: the first and the third
    out = tmp_path / "run"
    code, _, stderr = _call("prune", "digits-mlp", "--method", toy.name, "--ratio", "0.5", "--out", out)
    assert code == 0, stderr
    config = PruneConfig.load(out / "config.json")
    assert config.method == toy.name and sorted(config.ratios) == sorted(layers)
    metrics = json.loads((out / "metrics.json").read_text())
    est = build_cost_model(spec.model, spec.example_input, toy.name).estimate(config.ratios)
    assert metrics["pruned"]["nonzero_params"] == est["nonzero_params"] < metrics["baseline"]["nonzero_params"]
    with pytest.raises(PruneLabError, match=f"the {toy.name} method ranks by"):
        PruneConfig(model="digits-mlp", method=toy.name, ratios={}, criterion="bn_scale")


@pytest.mark.slow  # 35-75 s: the whole app loads in AppTest
def test_toy_method_is_offered_on_the_tune_page(toy, monkeypatch, tmp_path):
    """The Tune page offers the new method, with its help and the criteria it accepts, and draws its sliders."""
    at = open_app(monkeypatch, "digits-mlp", tmp_path)
    if "method" not in [r.key for r in at.radio]:  # pages under st.navigation: Tune is a page of its own
        at = goto(at, "tune")
    radio = at.radio(key="method")
    assert toy.name in radio.options
    radio.set_value(toy.name).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="criterion").options == [CRITERIA[c].label for c in toy.criteria()]
    assert any(toy.help in c.value for c in at.caption)
    sliders = {s.key for s in at.slider}
    assert {f"ratio|digits-mlp|{toy.name}|fc1", f"ratio|digits-mlp|{toy.name}|fc3"} <= sliders
    assert f"ratio|digits-mlp|{toy.name}|fc2" not in sliders  # every other layer only


def test_registry_refuses_a_second_method_of_the_same_name():
    with pytest.raises(PruneLabError, match="already registered"):
        methods.register(Unstructured())
