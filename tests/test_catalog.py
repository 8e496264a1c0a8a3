"""The catalog is the single list of measures: what reads measures names them through it, the config is checked
against it, and every pair measure keeps the invariances the catalog states."""

import ast
import copy
from pathlib import Path

import numpy as np
import pytest

from repshift import catalog
from repshift import config as rc
from repshift.errors import UserError

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
SHARED = {"seed": 0, "probe_test_fraction": 0.25, "probe_l2": 1e-3, "probe_iterations": 50}
# The argument that names a measure, by the function that takes it, in the modules that read measures.
MEASURE_ARGUMENT = {"named": 0, "get": 0, "versus": 0, "seed_floor": 0, "select": 1, "per_layer": 1,
                    "layer_rows": 1, "top_values": 0, "_before_after": 2, "floor_lines": 2, "pre_and_fine": 2}


def named_measures(module: str) -> list[str]:
    tree = ast.parse((REPO / "src/repshift" / f"{module}.py").read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            if name == "get" and not isinstance(node.func, ast.Name):
                continue
            index = MEASURE_ARGUMENT.get(name)
            if index is not None and len(node.args) > index and isinstance(node.args[index], ast.Constant):
                found.append(node.args[index].value)
    return found


@pytest.mark.parametrize("module", ["metrics", "figures", "claims"])
def test_modules_name_only_catalog_measures(module):
    names = named_measures(module)
    known = catalog.table_names() | set(catalog.CATALOG)
    assert not set(names) - known, f"{module}.py names measures the catalog lacks: {set(names) - known}"
    if module != "metrics":
        assert len(names) >= 8, "the scan found the measure names"


def test_an_unknown_name_fails_loudly():
    with pytest.raises(KeyError, match="unknown measure 'isotropy_rawr'"):
        catalog.named("isotropy_rawr")
    with pytest.raises(KeyError, match="unknown measure"):
        catalog.versus("isoscore")


def test_every_row_is_complete():
    for measure in catalog.MEASURES:
        assert measure.label and measure.family and callable(measure.function), measure.name
        if measure.takes == "pair":
            assert measure.kind in ("similarity", "distance") and measure.unit, measure.name
        if measure.takes in ("derived", "matrix"):
            assert all(i in catalog.CATALOG for i in measure.inputs), measure.name
        if measure.takes == "labelled":
            assert measure.target, measure.name
    assert len(catalog.table_names()) > len(catalog.MEASURES)


@pytest.fixture(scope="module")
def tiny_config_checked(tiny_assets):
    from conftest import tiny_config

    return tiny_config(*tiny_assets)


def checked(config):
    return rc.check_config(copy.deepcopy(config), SCHEMA)


@pytest.mark.parametrize("measures, message", [
    ({"svcca2": {}}, "config key measures.svcca2: unknown measure; known: isotropy_raw, "),
    ({"svcca": {"k": 3}}, "config key measures.svcca.k: svcca takes no setting 'k'; its settings: max_rows, keep"),
    ({"isoscore": {"pairs": 3}}, "isoscore takes no setting 'pairs'; its settings: none"),
    ({"mutual_knn": {"k": 2.5}}, "config key measures.mutual_knn.k: 2.5 is not valid; give an integer"),
    ({"linear_cka": {"all_tokens": "yes"}}, "config key measures.linear_cka.all_tokens: 'yes' is not valid"),
    ({"linear_cka": False}, "config key metrics.layer_by_layer: linear_cka is turned off in measures"),
    ({"svcca": 3}, "config key measures.svcca: 3 is not of type 'object', 'boolean', 'null'"),
])
def test_bad_measures_stop_at_config_check(tiny_config_checked, measures, message):
    with pytest.raises(UserError) as caught:
        checked({**tiny_config_checked, "measures": measures})
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_measure_that_another_reads_cannot_be_left_out_alone(tiny_config_checked):
    config = {**tiny_config_checked, "metrics": {"layer_by_layer": ["debiased_cka"]}, "measures": {"linear_cka": False}}
    with pytest.raises(UserError, match="config key measures.linear_cka: block_diagonality_linear_cka needs it"):
        checked(config)


def test_layer_by_layer_names_are_checked(tiny_config_checked):
    config = {**tiny_config_checked, "metrics": {"layer_by_layer": ["pwcca"]}}
    with pytest.raises(UserError, match="metrics.layer_by_layer: pwcca has no layer x layer form; known: linear_cka"):
        checked(config)
    config = {**tiny_config_checked, "metrics": {"layer_by_layer": ["svcca"]}, "measures": {"svcca": False}}
    with pytest.raises(UserError, match="svcca is turned off in measures"):
        checked(config)


def test_measures_settings_override_and_leave_out(tiny_config_checked):
    config = checked({**tiny_config_checked, "metrics": {"layer_by_layer": ["linear_cka", "debiased_cka"]},
                      "measures": {"svcca": {"keep": 0.9}, "cknna": False}})
    resolved = rc.metric_settings(config)["measures"]
    assert resolved["svcca"] == {"max_rows": 2000, "keep": 0.9}
    assert "cknna" not in resolved and resolved["mutual_knn"] == {"max_rows": 1000, "k": 10}


def test_probe_roles(tiny_config_checked):
    config = checked(tiny_config_checked)
    assert [rc.probe_role(config, p) for p in ("dev-sent", "pos", "ood")] == ["dev", "tagged", "out_of_domain"]
    both = copy.deepcopy(tiny_config_checked)
    both["probes"]["ood"]["role"] = "tagged"
    with pytest.raises(UserError, match="config key probes: pos and ood both have role tagged"):
        checked(both)
    missing = copy.deepcopy(tiny_config_checked)
    del missing["probes"]["ood"]["role"]
    with pytest.raises(UserError, match="probes.ood: 'role' is a required property"):
        checked(missing)


def related(n=300, d1=12, d2=9, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d1)) * rng.exponential(size=d1) + rng.normal(size=d1)
    return X, np.tanh(X @ rng.normal(size=(d1, d2)) / 3) + 0.3 * rng.normal(size=(n, d2))


def transforms(X, rng):
    Q, _ = np.linalg.qr(rng.normal(size=(X.shape[1], X.shape[1])))
    A = rng.normal(size=(X.shape[1], X.shape[1])) + 3 * np.eye(X.shape[1])
    return {"orthogonal": X @ Q, "isotropic_scaling": 7.5 * X, "translation": X + 4.0 * rng.normal(size=X.shape[1]),
            "permutation": X[:, rng.permutation(X.shape[1])], "invertible_linear": X @ A}


PAIRS = [m for m in catalog.MEASURES if m.takes == "pair"]


@pytest.mark.parametrize("measure", PAIRS, ids=[m.name for m in PAIRS])
def test_pair_measures_keep_the_invariances_the_catalog_states(measure):
    """Each stated invariance, applied to the first argument; self-comparison gives the measure's identity value."""
    settings = catalog.resolve(None)[measure.name]
    compute = measure.bind(settings, SHARED)
    X, Y = related()
    value = compute(X, Y)
    for flag, moved in transforms(X, np.random.default_rng(1)).items():
        if flag in measure.invariances:
            assert compute(moved, Y) == pytest.approx(value, rel=1e-6, abs=1e-9), flag
    if measure.name != catalog.named("linear_cka_permuted"):
        identity = 1.0 if measure.kind == "similarity" else 0.0
        assert compute(X, X) == pytest.approx(identity, abs=1e-6)
        noise = np.random.default_rng(2).normal(size=X.shape)
        assert abs(compute(X, noise) - identity) > abs(value - identity), "unrelated data reads as less similar"


def test_compare_dispatches_by_name_with_checked_settings():
    X, Y = related()
    assert catalog.compare(X, Y, "cknna", k=20) == pytest.approx(catalog.get("cknna").function(X, Y, k=20))
    assert catalog.compare(X, Y, "cknna") != catalog.compare(X, Y, "cknna", k=20)
    assert catalog.compare(X, X, "procrustes") == pytest.approx(0, abs=1e-9)
    with pytest.raises(ValueError, match="mutual_knn takes no setting 'keep'"):
        catalog.compare(X, Y, "mutual_knn", keep=0.9)
    with pytest.raises(ValueError, match="isoscore is not a pair measure"):
        catalog.compare(X, Y, "isoscore")
    with pytest.raises(KeyError, match="unknown measure 'cka'"):
        catalog.compare(X, Y, "cka")
