"""Config: defaults (DESIGN §1-4), validation, serialisation, hashing, sampling (DESIGN §0)."""

import copy
import datetime as dt
import json
import pickle
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from plurel_fast.config import (
    ACTIVATIONS,
    AGGREGATIONS,
    COL_TRANSFORMS,
    EDGE_WEIGHT_DISTS,
    INITIALIZATIONS,
    LAYOUTS,
    PRESETS,
    PROPAGATION_MODES,
    SOURCE_TYPES,
    STYPES,
    Choices,
    Config,
    ConfigError,
    DAGParams,
    DatabaseParams,
    FrozenList,
    SCMParams,
)


def R(lo, hi):
    return Choices("range", [lo, hi])


def S(*values):
    return Choices("set", list(values))


# ------------------------------------------------------------------------ defaults

DATABASE_DEFAULTS = {
    "table_layout_choices": S("BarabasiAlbert", "ReverseRandomTree", "WattsStrogatz"),
    "num_tables_choices": R(3, 20),
    "num_rows_entity_table_choices": R(500, 1000),
    "num_rows_activity_table_choices": R(2000, 5000),
    "num_cols_choices": R(3, 40),
    "min_timestamp": dt.datetime(1990, 1, 1),
    "max_timestamp": dt.datetime(2025, 1, 1),
    "column_nan_perc_choices": R(0.01, 0.1),
    "col_transform_choices": S("identity", "rank_uniform", "log", "sqrt", "standardize"),
}

SCM_DEFAULTS = {
    "scm_layout_choices": S(
        "ErdosRenyi",
        "BarabasiAlbert",
        "RandomTree",
        "ReverseRandomTree",
        "Layered",
        "WattsStrogatz",
        "RandomCauchy",
    ),
    "scm_col_node_perc_choices": R(0.3, 0.9),
    "num_categories_choices": R(2, 10),
    "col_stype_choices": S("categorical", "numerical"),
    "initialization_choices": S(
        "kaiming_normal",
        "kaiming_uniform",
        "xavier_normal",
        "xavier_uniform",
        "trunc_normal",
        "sparse",
    ),
    "activation_choices": S(*ACTIVATIONS),
    "node_noise_alpha_choices": R(0.5, 5.0),
    "node_noise_beta_choices": R(0.5, 5.0),
    "bi_hsbm_levels_choices": R(1, 5),
    "bi_hsbm_clusters_per_level_choices": R(1, 3),
    "ts_trend_alpha_choices": R(0.0, 2.0),
    "activity_table_ts_trend_scale_choices": S(-1, 1),
    "entity_table_ts_trend_scale": 0.0,
    "ts_cycle_freq_perc_choices": S(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
    "activity_table_ts_cycle_scale_choices": S(-1, 1),
    "entity_table_ts_cycle_scale": 0.0,
    "activity_table_ts_noise_scale": 0.05,
    "entity_table_ts_noise_scale": 1.0,
    "ts_ar_rho_choices": R(0.0, 0.9),
    "ts_value_scale_choices": S(0.01, 0.1, 1, 10, 100),
    "propagation_agg_choices": S("sum", "max", "product", "logexp"),
    "mlp_in_dim": 1,
    "mlp_out_dim": 1,
    "mlp_emb_dim": 32,
    "mlp_num_layers_choices": R(2, 4),
    "mlp_weight_density_choices": R(0.3, 1.0),
    "source_gen_type_choices": S("ts", "uniform", "gaussian", "beta", "mixed"),
    "source_beta_alpha_choices": R(0.5, 5.0),
    "source_beta_beta_choices": R(0.5, 5.0),
    "propagation_mode_choices": S("type_eager", "type_lazy"),
    "cat_label_permute_prob_choices": R(0.3, 1.0),
    "cat_label_reverse_prob_choices": R(0.2, 0.8),
    "propagate_batch_size": 4096,
}

DAG_DEFAULTS = {
    "ba_sink_edge_dropout": 0.4,
    "ba_flip_leaf_edge_prob": 0.0,
    "ba_max_in_degree": 4,
    "ba_m": 2,
    "er_p_choices": R(0.3, 0.8),
    "ws_rewire_p_choices": R(0.1, 0.3),
    "layered_depth_choices": R(2, 8),
    "layered_edge_dropout_p": 0.1,
    "edge_weight_dist_choices": S("gaussian", "lognormal", "cauchy", "uniform"),
}


@pytest.mark.parametrize(
    "cls, expected",
    [(DatabaseParams, DATABASE_DEFAULTS), (SCMParams, SCM_DEFAULTS), (DAGParams, DAG_DEFAULTS)],
)
def test_defaults_match_spec(cls, expected):
    params = cls()
    assert [f.name for f in msgspec.structs.fields(cls)] == list(expected)
    for name, value in expected.items():
        got = getattr(params, name)
        assert got == value, name
        assert type(got) is type(value), name


def test_config_defaults():
    c = Config()
    assert c.database_params == DatabaseParams()
    assert c.scm_params == SCMParams()
    assert c.dag_params == DAGParams()
    assert (c.val_split, c.test_split, c.cache_dir, c.schema_file) == (0.8, 0.9, None, None)
    assert [f.name for f in msgspec.structs.fields(Config)] == [
        "database_params",
        "scm_params",
        "dag_params",
        "val_split",
        "test_split",
        "cache_dir",
        "schema_file",
        "schema_sql",
        "schema_dialect",
    ]
    assert (c.schema_sql, c.schema_dialect) == (None, None)


def test_name_constants():
    assert len(ACTIVATIONS) == 29 and len(set(ACTIVATIONS)) == 29
    assert ACTIVATIONS[:6] == ("relu", "elu", "selu", "silu", "softsign", "tanh")
    assert ACTIVATIONS[-1] == "random_sine"
    assert set(LAYOUTS) == set(SCM_DEFAULTS["scm_layout_choices"].value)
    assert len(INITIALIZATIONS) == 6
    assert AGGREGATIONS == ("sum", "max", "product", "logexp")
    assert STYPES == ("categorical", "numerical")
    assert SOURCE_TYPES == ("ts", "uniform", "gaussian", "beta", "mixed")
    assert PROPAGATION_MODES == ("type_eager", "type_lazy")
    assert COL_TRANSFORMS == ("identity", "rank_uniform", "log", "sqrt", "standardize")
    assert EDGE_WEIGHT_DISTS == ("gaussian", "lognormal", "cauchy", "uniform")


def test_defaults_are_not_shared():
    a, b = SCMParams(), SCMParams()
    assert a.activation_choices == b.activation_choices
    assert a.activation_choices.value is not b.activation_choices.value


def test_readme_style_construction():
    c = Config(
        database_params=DatabaseParams(num_tables_choices=Choices(kind="range", value=[5, 10])),
        cache_dir="~/.cache/plurel",
    )
    assert c.database_params.num_tables_choices == R(5, 10)
    assert c.cache_dir == "~/.cache/plurel"
    assert Choices("set", ["a"]) == Choices(kind="set", value=["a"])


# ---------------------------------------------------------------------- validation

# (struct, keyword arguments, text the message must contain)
INVALID = [
    # a field that is not a Choices
    (DatabaseParams, {"num_tables_choices": [3, 20]}, "DatabaseParams.num_tables_choices must be a Choices"),
    (SCMParams, {"activation_choices": "relu"}, "SCMParams.activation_choices must be a Choices"),
    # counts
    (DatabaseParams, {"num_tables_choices": R(0, 5)}, "DatabaseParams.num_tables_choices values must be >= 1"),
    (DatabaseParams, {"num_tables_choices": R(2.0, 5.0)}, "DatabaseParams.num_tables_choices values must be integers"),
    (DatabaseParams, {"num_rows_entity_table_choices": R(0, 10)}, "DatabaseParams.num_rows_entity_table_choices values must be >= 1"),
    (DatabaseParams, {"num_rows_activity_table_choices": R(-5, 10)}, "DatabaseParams.num_rows_activity_table_choices values must be >= 1"),
    (DatabaseParams, {"num_rows_activity_table_choices": S(100, 0)}, "num_rows_activity_table_choices values must be >= 1"),
    (DatabaseParams, {"num_cols_choices": R(0, 10)}, "DatabaseParams.num_cols_choices values must be >= 1"),
    (DatabaseParams, {"num_cols_choices": S(3, 4)}, "DatabaseParams.num_cols_choices must be Choices(kind='range'"),
    (SCMParams, {"num_categories_choices": R(1, 5)}, "SCMParams.num_categories_choices values must be >= 2"),
    # names
    (DatabaseParams, {"table_layout_choices": S("Grid")}, "DatabaseParams.table_layout_choices has unknown name(s) ['Grid']"),
    (DatabaseParams, {"table_layout_choices": R(1, 2)}, "DatabaseParams.table_layout_choices must be Choices(kind='set'"),
    (SCMParams, {"scm_layout_choices": S("ErdosRenyi", "erdosrenyi")}, "SCMParams.scm_layout_choices has unknown name(s) ['erdosrenyi']"),
    (SCMParams, {"activation_choices": S("relu", "swish")}, "SCMParams.activation_choices has unknown name(s) ['swish']"),
    (SCMParams, {"initialization_choices": S("orthogonal")}, "SCMParams.initialization_choices has unknown name(s) ['orthogonal']"),
    (SCMParams, {"propagation_agg_choices": S("mean")}, "SCMParams.propagation_agg_choices has unknown name(s) ['mean']"),
    (SCMParams, {"col_stype_choices": S("text")}, "SCMParams.col_stype_choices has unknown name(s) ['text']"),
    (SCMParams, {"source_gen_type_choices": S("poisson")}, "SCMParams.source_gen_type_choices has unknown name(s) ['poisson']"),
    (SCMParams, {"propagation_mode_choices": S("eager")}, "SCMParams.propagation_mode_choices has unknown name(s) ['eager']"),
    (DatabaseParams, {"col_transform_choices": S("exp")}, "DatabaseParams.col_transform_choices has unknown name(s) ['exp']"),
    (DAGParams, {"edge_weight_dist_choices": S("normal")}, "DAGParams.edge_weight_dist_choices has unknown name(s) ['normal']"),
    (SCMParams, {"activation_choices": S("relu", 3)}, "SCMParams.activation_choices has unknown name(s) [3]"),
    # probabilities and fractions
    (DAGParams, {"ba_sink_edge_dropout": 1.5}, "DAGParams.ba_sink_edge_dropout must be in [0, 1], got 1.5"),
    (DAGParams, {"ba_flip_leaf_edge_prob": -0.1}, "DAGParams.ba_flip_leaf_edge_prob must be in [0, 1]"),
    (DAGParams, {"layered_edge_dropout_p": 2}, "DAGParams.layered_edge_dropout_p must be in [0, 1]"),
    (DAGParams, {"er_p_choices": R(0.5, 1.2)}, "DAGParams.er_p_choices values must be in [0, 1], got 1.2"),
    (DAGParams, {"ws_rewire_p_choices": R(-0.1, 0.3)}, "DAGParams.ws_rewire_p_choices values must be in [0, 1]"),
    (DatabaseParams, {"column_nan_perc_choices": R(0.0, 1.0)}, "DatabaseParams.column_nan_perc_choices values must be in [0, 1), got 1.0"),
    (DatabaseParams, {"column_nan_perc_choices": R(-0.1, 0.1)}, "DatabaseParams.column_nan_perc_choices values must be in [0, 1)"),
    (SCMParams, {"cat_label_permute_prob_choices": R(0.3, 1.1)}, "SCMParams.cat_label_permute_prob_choices values must be in [0, 1]"),
    (SCMParams, {"cat_label_reverse_prob_choices": R(-0.2, 0.8)}, "SCMParams.cat_label_reverse_prob_choices values must be in [0, 1]"),
    (SCMParams, {"mlp_weight_density_choices": R(0.0, 1.0)}, "SCMParams.mlp_weight_density_choices values must be in (0, 1], got 0.0"),
    (SCMParams, {"mlp_weight_density_choices": R(0.5, 1.5)}, "SCMParams.mlp_weight_density_choices values must be in (0, 1]"),
    (SCMParams, {"scm_col_node_perc_choices": R(0.0, 0.5)}, "SCMParams.scm_col_node_perc_choices values must be in (0, 1]"),
    (SCMParams, {"ts_ar_rho_choices": R(0.0, 1.0)}, "SCMParams.ts_ar_rho_choices values must be in [0, 1)"),
    (SCMParams, {"ts_ar_rho_choices": R(-0.5, 0.5)}, "SCMParams.ts_ar_rho_choices values must be in [0, 1)"),
    (SCMParams, {"ts_cycle_freq_perc_choices": S(0.0, 0.5)}, "SCMParams.ts_cycle_freq_perc_choices values must be in (0, 1]"),
    (SCMParams, {"ts_cycle_freq_perc_choices": S(0.5, 1.5)}, "SCMParams.ts_cycle_freq_perc_choices values must be in (0, 1]"),
    # positive parameters
    (SCMParams, {"ts_value_scale_choices": S(0, 1)}, "SCMParams.ts_value_scale_choices values must be > 0, got 0"),
    (SCMParams, {"node_noise_alpha_choices": R(0.0, 1.0)}, "SCMParams.node_noise_alpha_choices values must be > 0"),
    (SCMParams, {"node_noise_beta_choices": R(-1.0, 1.0)}, "SCMParams.node_noise_beta_choices values must be > 0"),
    (SCMParams, {"source_beta_alpha_choices": R(0.0, 1.0)}, "SCMParams.source_beta_alpha_choices values must be > 0"),
    (SCMParams, {"source_beta_beta_choices": S(0.0)}, "SCMParams.source_beta_beta_choices values must be > 0"),
    (SCMParams, {"ts_trend_alpha_choices": R(-1.0, 1.0)}, "SCMParams.ts_trend_alpha_choices values must be >= 0"),
    (SCMParams, {"activity_table_ts_noise_scale": -0.1}, "SCMParams.activity_table_ts_noise_scale must be >= 0"),
    (SCMParams, {"entity_table_ts_noise_scale": -1}, "SCMParams.entity_table_ts_noise_scale must be >= 0"),
    (SCMParams, {"activity_table_ts_trend_scale_choices": S("up")}, "SCMParams.activity_table_ts_trend_scale_choices values must be finite numbers"),
    # integer structure parameters
    (DAGParams, {"ba_m": 0}, "DAGParams.ba_m must be >= 1, got 0"),
    (DAGParams, {"ba_m": 2.0}, "DAGParams.ba_m must be an integer"),
    (DAGParams, {"ba_max_in_degree": 0}, "DAGParams.ba_max_in_degree must be >= 1"),
    (DAGParams, {"layered_depth_choices": R(0, 3)}, "DAGParams.layered_depth_choices values must be >= 1"),
    (SCMParams, {"mlp_num_layers_choices": R(0, 3)}, "SCMParams.mlp_num_layers_choices values must be >= 1"),
    (SCMParams, {"mlp_emb_dim": 0}, "SCMParams.mlp_emb_dim must be >= 1"),
    (SCMParams, {"mlp_in_dim": 0}, "SCMParams.mlp_in_dim must be >= 1"),
    (SCMParams, {"mlp_out_dim": -1}, "SCMParams.mlp_out_dim must be >= 1"),
    # wider encoders/decoders are not implemented (issue 17 item 1: they broke determinism)
    (SCMParams, {"mlp_in_dim": 2}, "SCMParams.mlp_in_dim must be 1, got 2: a column node holds one value per row"),
    (SCMParams, {"mlp_out_dim": 3}, "SCMParams.mlp_out_dim must be 1, got 3: a column node holds one value per row"),
    (SCMParams, {"bi_hsbm_levels_choices": R(0, 3)}, "SCMParams.bi_hsbm_levels_choices values must be >= 1"),
    (SCMParams, {"bi_hsbm_clusters_per_level_choices": R(0, 3)}, "SCMParams.bi_hsbm_clusters_per_level_choices values must be >= 1"),
    (SCMParams, {"propagate_batch_size": 0}, "SCMParams.propagate_batch_size must be >= 1"),
    # timestamps
    (DatabaseParams, {"min_timestamp": "2020-01-01", "max_timestamp": "2019-01-01"}, "DatabaseParams.min_timestamp (2020-01-01 00:00:00) must be earlier than"),
    (DatabaseParams, {"min_timestamp": "2020-01-01", "max_timestamp": "2020-01-02"}, "at least 2 days apart"),
    (DatabaseParams, {"min_timestamp": "not a date"}, "DatabaseParams.min_timestamp must be a datetime"),
    (DatabaseParams, {"max_timestamp": 12345}, "DatabaseParams.max_timestamp must be a datetime"),
    (DatabaseParams, {"min_timestamp": "2020-01-01T00:00:00+02:00"}, "DatabaseParams.min_timestamp must be a naive time"),
    # out of what datetime64[ns] holds they wrapped around (issue 17)
    (DatabaseParams, {"min_timestamp": "1677-09-21T12:00:00"}, "DatabaseParams.min_timestamp must be 1677-09-22 or later, got 1677-09-21 12:00:00: the date columns are datetime64[ns]"),
    (DatabaseParams, {"min_timestamp": "1000-01-01"}, "DatabaseParams.min_timestamp must be 1677-09-22 or later, got 1000-01-01 00:00:00"),
    (DatabaseParams, {"max_timestamp": "2262-04-11T00:00:01"}, "DatabaseParams.max_timestamp must be 2262-04-11 or earlier, got 2262-04-11 00:00:01"),
    (DatabaseParams, {"max_timestamp": "3000-01-01"}, "DatabaseParams.max_timestamp must be 2262-04-11 or earlier"),
    # types
    (Config, {"val_split": "a"}, "Config.val_split must be a number, got str 'a'"),
    (Config, {"test_split": None}, "Config.test_split must be a number"),
    (Config, {"val_split": True}, "Config.val_split must be a number, got bool"),
    (DAGParams, {"ba_sink_edge_dropout": "0.4"}, "DAGParams.ba_sink_edge_dropout must be a number"),
    (Config, {"database_params": SCMParams()}, "Config.database_params must be a DatabaseParams, got SCMParams"),
    (Config, {"scm_params": {}}, "Config.scm_params must be a SCMParams"),
    (Config, {"dag_params": None}, "Config.dag_params must be a DAGParams"),
    (Config, {"cache_dir": 3}, "Config.cache_dir must be a path string or None"),
    (Config, {"schema_file": ["a.sql"]}, "Config.schema_file must be a path string or None"),
    # splits
    (Config, {"val_split": 0.0}, "Config.val_split must be in (0, 1), got 0.0"),
    (Config, {"val_split": 1.0, "test_split": 1.0}, "Config.val_split must be in (0, 1)"),
    (Config, {"test_split": 1.5}, "Config.test_split must be in (0, 1], got 1.5"),
    (Config, {"val_split": 0.9, "test_split": 0.8}, "Config.val_split (0.9) must be smaller than Config.test_split (0.8)"),
    (Config, {"val_split": 0.9, "test_split": 0.9}, "Config.val_split (0.9) must be smaller than"),
]


@pytest.mark.parametrize("cls, kwargs, message", INVALID, ids=[m[:60] for *_, m in INVALID])
def test_invalid_values_name_the_field(cls, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        cls(**kwargs)


def test_config_error_is_value_error():
    assert issubclass(ConfigError, ValueError)
    with pytest.raises(ConfigError):
        Config(val_split="a")


@pytest.mark.parametrize(
    "kind, value, message",
    [
        ("between", [1, 2], "Choices.kind must be 'range' or 'set', got 'between'"),
        ("range", [1, 2, 3], "needs value=[lo, hi], got 3 values [1, 2, 3]"),
        ("range", [5, 1], "needs lo <= hi, got value=[5, 1]"),
        ("range", ["a", "b"], "bounds must be numbers"),
        ("range", [0.0, float("inf")], "bounds must be finite"),
        ("range", 3, "Choices.value must be a list, got int 3"),
        ("set", [], "needs at least one value"),
    ],
)
def test_bad_choices(kind, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Choices(kind, value)


def test_bad_choices_name_the_field():
    # A Choices altered after construction is caught by the struct that holds it.
    broken = R(1, 5)
    msgspec.structs.force_setattr(broken, "value", [5, 1])
    with pytest.raises(ValueError, match=r"DatabaseParams\.num_tables_choices: .*lo <= hi"):
        DatabaseParams(num_tables_choices=broken)
    broken = R(1, 5)
    msgspec.structs.force_setattr(broken, "kind", "bogus")
    with pytest.raises(ValueError, match=r"SCMParams\.mlp_num_layers_choices: Choices\.kind"):
        SCMParams(mlp_num_layers_choices=broken)


@pytest.mark.parametrize(
    "doc, message",
    [
        (
            {"database_params": {"num_tables_choices": {"kind": "range", "value": [1, 2, 3]}}},
            "needs value=[lo, hi], got 3 values [1, 2, 3] - at `$.database_params.num_tables_choices`",
        ),
        (
            {"database_params": {"num_tables_choices": {"kind": "range", "value": [9, 3]}}},
            "lo <= hi, got value=[9, 3] - at `$.database_params.num_tables_choices`",
        ),
        (
            {"scm_params": {"mlp_num_layers_choices": {"kind": "bogus", "value": [1, 2]}}},
            "`$.scm_params.mlp_num_layers_choices.kind`",
        ),
        (
            {"dag_params": {"er_p_choices": {"kind": "range", "value": [0.5, 2.0]}}},
            "DAGParams.er_p_choices values must be in [0, 1], got 2.0",
        ),
        ({"val_split": "a"}, "Expected `float`, got `str` - at `$.val_split`"),
        ({"val_split": 0.95}, "Config.val_split (0.95) must be smaller than Config.test_split (0.9)"),
        ({"scm_params": {"activation": {}}}, "unknown field `activation` - at `$.scm_params`"),
        (
            {"dag_params": {"er_p_choices": {"kind": "set", "value": [0.5], "weights": [1]}}},
            "unknown field `weights` - at `$.dag_params.er_p_choices`",
        ),
        ({"seed": 3}, "unknown field `seed`"),
        ({"database_params": {"min_timestamp": "1990-01-01"}}, "min_timestamp"),
    ],
)
def test_decoding_validates_with_path(doc, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Config.from_json(json.dumps(doc))


def test_decoding_garbage():
    with pytest.raises(ConfigError, match="cannot parse JSON"):
        Config.from_json("{")
    with pytest.raises(ConfigError, match="cannot parse TOML"):
        Config.from_toml("val_split = = 1")
    with pytest.raises(ConfigError, match="unknown field `sede`"):
        Config.from_toml("sede = 1\n")


def test_replace_validates():
    c = Config()
    assert c.replace(val_split=0.5).val_split == 0.5
    with pytest.raises(ValueError, match=r"Config\.val_split \(0\.95\) must be smaller"):
        c.replace(val_split=0.95)
    with pytest.raises(ValueError, match=r"DAGParams\.ba_m must be >= 1"):
        c.dag_params.replace(ba_m=0)


# ---------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    "given",
    [
        dt.datetime(2000, 3, 4),
        pd.Timestamp("2000-03-04"),
        dt.date(2000, 3, 4),
        "2000-03-04",
        "2000-03-04T00:00:00",
        np.datetime64("2000-03-04"),
    ],
)
def test_timestamps_are_normalised(given):
    p = DatabaseParams(min_timestamp=given)
    assert type(p.min_timestamp) is dt.datetime
    assert p.min_timestamp == dt.datetime(2000, 3, 4)


def test_scalars_are_normalised():
    c = Config(val_split=np.float32(0.5), test_split=1, cache_dir=Path("/x"))
    assert type(c.val_split) is float and type(c.test_split) is float
    assert c.cache_dir == "/x"
    assert Config(test_split=1) == Config(test_split=1.0)
    assert Config(test_split=1).config_hash == Config(test_split=1.0).config_hash
    ch = Choices("range", (np.int64(1), np.int64(4)))
    assert ch.value == [1, 4] and type(ch.value[0]) is int and ch.is_int_range


def test_choices_copies_its_list():
    values = ["relu", "tanh"]
    ch = Choices("set", values)
    values.append("sin")
    assert ch.value == ["relu", "tanh"]


def test_choices_are_immutable():
    # issue 17: an in-place edit of value bypassed validation and changed config_hash
    c = Config()
    ch = c.database_params.num_rows_entity_table_choices
    before = c.config_hash
    edits = [
        lambda v: v.append(0), lambda v: v.extend([1]), lambda v: v.insert(0, 1),
        lambda v: v.remove(500), lambda v: v.pop(), lambda v: v.clear(), lambda v: v.sort(),
        lambda v: v.reverse(), lambda v: v.__setitem__(0, 10), lambda v: v.__delitem__(0),
        lambda v: v.__iadd__([1]), lambda v: v.__imul__(2),
    ]
    for edit in edits:
        with pytest.raises(TypeError, match="Choices.value cannot be changed in place"):
            edit(ch.value)
    ch.value.__init__([10, 5])  # a no-op, not a refill
    with pytest.raises(AttributeError):
        ch.value = [10, 5]
    assert ch.value == [500, 1000] and c.config_hash == before
    # a list everywhere else: equality, serialisation, pickling, copies
    assert isinstance(ch.value, list) and ch.value == [500, 1000] and ch.value + [1] == [500, 1000, 1]
    assert type(msgspec.to_builtins(ch)["value"]) is list
    assert pickle.loads(pickle.dumps(c)) == c and copy.deepcopy(c) == c
    assert type(copy.deepcopy(c).database_params.num_rows_entity_table_choices.value) is FrozenList
    # lists inside a value are frozen too; unhashable elements are refused
    nested = Choices("set", [[1, 2], (3, [4])])
    assert nested.value == [[1, 2], [3, [4]]] and type(nested.value[1][1]) is FrozenList
    assert repr(nested) == "Choices(kind='set', value=[[1, 2], [3, [4]]])"
    with pytest.raises(ConfigError, match=r"Choices.value elements must be numbers, strings or lists of them.*got dict"):
        Choices("set", [{"a": 1}])
    # lists and tuples give equal configs, hashes and serialisations
    a = DatabaseParams(num_tables_choices=Choices("range", [3, 7]))
    b = DatabaseParams(num_tables_choices=Choices("range", (3, 7)))
    assert a == b and hash(a) == hash(b)
    assert Config(database_params=a).config_hash == Config(database_params=b).config_hash
    assert Config(database_params=a).to_json() == Config(database_params=b).to_json()
    assert Config(database_params=a).to_toml() == Config(database_params=b).to_toml()


def test_choices_equality_is_type_aware():
    assert R(1, 5) != R(1.0, 5.0)
    assert not (R(1, 5) == R(1.0, 5.0))
    assert R(1, 5) == R(1, 5)
    assert S(1, True) != S(1, 1)
    assert hash(R(1, 5)) == hash(R(1, 5))
    assert DAGParams(layered_depth_choices=R(2, 8)) == DAGParams()


def test_configs_are_hashable_and_compare_by_value():
    assert Config() == Config() and hash(Config()) == hash(Config())
    assert Config() != Config(val_split=0.7)
    assert len({Config(), Config(), Config.preset("v1.0.0")}) == 2


# ------------------------------------------------------------------ serialisation


def _custom_config():
    return Config(
        database_params=DatabaseParams(
            num_tables_choices=S(2, 4, 8),
            num_cols_choices=R(1, 5),
            min_timestamp="2001-02-03T04:05:06",
            column_nan_perc_choices=R(0.0, 0.0),
        ),
        scm_params=SCMParams(
            node_noise_alpha_choices=R(1.0, 5.0),
            ts_value_scale_choices=S(1.0, 2, 0.5),
            mlp_num_layers_choices=R(1, 1),
            activation_choices=S("sin", "random_sine"),
        ),
        dag_params=DAGParams(ba_m=3, er_p_choices=S(0.25)),
        val_split=0.5,
        test_split=1.0,
        cache_dir="~/.cache/plurel",
        schema_sql="CREATE TABLE t (id INT PRIMARY KEY, x REAL);",
        schema_dialect="sqlite",
    )


CONFIGS = {
    "default": Config,
    "v1.0.0": lambda: Config.preset("v1.0.0"),
    "custom": _custom_config,
    "custom_no_paths": lambda: _custom_config().replace(
        cache_dir=None, schema_sql=None, schema_dialect=None
    ),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_json_round_trip(name):
    c = CONFIGS[name]()
    text = c.to_json()
    assert isinstance(text, str)
    assert Config.from_json(text) == c
    assert Config.from_json(text.encode()) == c
    assert Config.from_json(c.to_json(indent=0)) == c


@pytest.mark.parametrize("name", list(CONFIGS))
def test_toml_round_trip(name):
    c = CONFIGS[name]()
    text = c.to_toml()
    assert "null" not in text and "None" not in text
    back = Config.from_toml(text)
    assert back == c
    assert back.config_hash == c.config_hash


@pytest.mark.parametrize("fmt", ["json", "toml"])
def test_round_trip_keeps_ints_and_floats(fmt):
    c = _custom_config()
    back = Config.from_json(c.to_json()) if fmt == "json" else Config.from_toml(c.to_toml())
    assert back.scm_params.node_noise_alpha_choices.value == [1.0, 5.0]
    assert all(type(v) is float for v in back.scm_params.node_noise_alpha_choices.value)
    assert [type(v) for v in back.scm_params.ts_value_scale_choices.value] == [float, int, float]
    assert back.database_params.num_cols_choices.is_int_range
    assert type(back.database_params.column_nan_perc_choices.value[0]) is float
    assert [type(v) for v in back.scm_params.ts_value_scale_choices.value] == [
        type(v) for v in c.scm_params.ts_value_scale_choices.value
    ]
    d = Config.from_json(Config().to_json())
    assert d.database_params.column_nan_perc_choices.value == [0.01, 0.1]
    assert not d.database_params.column_nan_perc_choices.is_int_range
    assert d.database_params.num_tables_choices.is_int_range


def test_json_is_plain():
    doc = json.loads(Config().to_json())
    assert doc["database_params"]["num_tables_choices"] == {"kind": "range", "value": [3, 20]}
    assert doc["database_params"]["min_timestamp"] == "1990-01-01T00:00:00"
    assert doc["cache_dir"] is None


@pytest.mark.parametrize("suffix", [".json", ".toml", ".TOML"])
def test_save_load(tmp_path, suffix):
    c = _custom_config()
    path = c.save(tmp_path / f"cfg{suffix}")
    assert path.exists()
    assert Config.load(path) == c
    assert Config.load(str(path)) == c


def test_save_load_bad_suffix(tmp_path):
    with pytest.raises(ConfigError, match=r"use a \.json or \.toml file"):
        Config().save(tmp_path / "cfg.yaml")
    with pytest.raises(ConfigError, match=r"use a \.json or \.toml file"):
        Config.load(tmp_path / "cfg")


def test_load_error_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[dag_params]\nba_m = 0\n")
    with pytest.raises(ConfigError, match=re.escape(str(path)) + r".*DAGParams\.ba_m must be >= 1"):
        Config.load(path)


# --------------------------------------------------------------------------- hash


def test_hash_format_and_equality():
    h = Config().config_hash
    assert re.fullmatch(r"[0-9a-f]{16}", h)
    assert Config().config_hash == h
    assert Config.from_toml(Config().to_toml()).config_hash == h
    assert Config.preset("default").config_hash == h


def test_hash_of_presets_is_pinned():
    # recorded in every cached database's manifest: a change makes caches mismatch
    assert Config().config_hash == "4e28944eec1c957f"
    assert Config.preset("v1.0.0").config_hash == "8c1a7f978d3e6b75"


def test_hash_ignores_cache_dir_only():
    base = Config()
    assert base.replace(cache_dir="/somewhere/else").config_hash == base.config_hash
    assert base.replace(schema_sql="CREATE TABLE t (x INT);").config_hash != base.config_hash
    assert base.replace(val_split=0.7).config_hash != base.config_hash
    changed = base.replace(dag_params=DAGParams(ba_m=3))
    assert changed.config_hash != base.config_hash
    # Same numbers, different sampling rule: an int range is not a float range.
    ints = base.replace(scm_params=SCMParams(ts_value_scale_choices=S(1, 10)))
    floats = base.replace(scm_params=SCMParams(ts_value_scale_choices=S(1.0, 10.0)))
    assert ints.config_hash != floats.config_hash
    assert Config.preset("v1.0.0").config_hash != base.config_hash


def test_hash_is_stable_across_processes():
    code = (
        "from plurel_fast.config import Config;"
        "print(Config().config_hash, Config.preset('v1.0.0').config_hash)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [Config().config_hash, Config.preset("v1.0.0").config_hash]


# ------------------------------------------------------------------------ presets


def test_presets():
    assert set(PRESETS) == {"default", "v1.0.0"}
    assert Config.preset("default") == Config()
    v1 = Config.preset("v1.0.0")
    scm = v1.scm_params
    assert scm.scm_layout_choices == S(
        "ErdosRenyi", "BarabasiAlbert", "RandomTree", "ReverseRandomTree", "Layered"
    )
    assert scm.activation_choices == S("relu", "elu", "selu", "silu", "softsign", "tanh")
    assert scm.mlp_num_layers_choices == R(2, 2)
    assert scm.mlp_weight_density_choices == R(1.0, 1.0)
    assert scm.source_gen_type_choices == S("ts")
    assert scm.ts_ar_rho_choices == R(0.0, 0.0)
    assert scm.ts_value_scale_choices == S(1)
    assert scm.propagation_agg_choices == S("sum")
    assert scm.propagation_mode_choices == S("type_eager")
    assert v1.database_params.col_transform_choices == S("identity")
    assert v1.dag_params.edge_weight_dist_choices == S("gaussian")
    # Everything else is the default.
    assert v1.database_params.replace(col_transform_choices=S(*COL_TRANSFORMS)) == DatabaseParams()
    assert v1.dag_params.replace(edge_weight_dist_choices=S(*EDGE_WEIGHT_DISTS)) == DAGParams()
    assert scm.num_categories_choices == SCMParams().num_categories_choices
    assert (v1.val_split, v1.test_split) == (0.8, 0.9)


def test_presets_are_fresh():
    a, b = Config.preset("v1.0.0"), Config.preset("v1.0.0")
    assert a == b and a.scm_params.activation_choices.value is not b.scm_params.activation_choices.value


def test_unknown_preset():
    with pytest.raises(ValueError, match=r"unknown preset 'v2'; known presets: default, v1\.0\.0"):
        Config.preset("v2")


# ------------------------------------------------------------------------ sampling


def test_int_range_covers_both_ends():
    rng = np.random.default_rng(0)
    ch = R(3, 7)
    draws = [ch.sample(rng) for _ in range(2000)]
    assert all(type(x) is int for x in draws)
    assert set(draws) == {3, 4, 5, 6, 7}
    assert R(4, 4).sample(rng) == 4


def test_float_range_is_half_open():
    rng = np.random.default_rng(1)
    ch = R(0.25, 0.5)
    draws = np.array([ch.sample(rng) for _ in range(2000)])
    assert all(type(x) is float for x in draws.tolist())
    assert draws.min() >= 0.25 and draws.max() < 0.5
    assert draws.min() < 0.26 and draws.max() > 0.49
    assert R(1.0, 1.0).sample(rng) == 1.0
    assert not R(1.0, 5.0).is_int_range and R(1, 5).is_int_range


def test_set_is_uniform():
    rng = np.random.default_rng(2)
    values = ["a", "b", "c", "d", "e", "f"]
    ch = Choices("set", values)
    n = 12000
    counts = Counter(ch.sample(rng) for _ in range(n))
    assert set(counts) == set(values)
    observed = [counts[v] for v in values]
    assert stats.chisquare(observed).pvalue > 1e-4


@pytest.mark.parametrize(
    "ch",
    [R(3, 7), R(-2, 2), R(0.25, 0.5), R(1.0, 1.0), S("a", "b", "c"), S(0.01, 0.1, 1, 10, 100), S([1, 2], "x")],
    ids=["int", "negative-int", "float", "point", "names", "mixed-numbers", "lists"],
)
def test_sample_many_is_n_successive_samples(ch):
    # one rng.random(n) is the same stream as n rng.random(): the values and
    # the generator state after are exactly those of n sample calls
    one_by_one, at_once = np.random.default_rng(9), np.random.default_rng(9)
    want = [ch.sample(one_by_one) for _ in range(500)]
    got = ch.sample_many(at_once, 500)
    assert isinstance(got, np.ndarray) and got.shape == (500,)
    assert got.tolist() == want
    assert [type(v) for v in got.tolist()] == [type(v) for v in want]
    assert one_by_one.random() == at_once.random()
    if ch.kind == "set":
        again = np.random.default_rng(9)
        assert [ch.value[i] for i in ch.sample_indices(again, 500)] == want
    else:
        assert got.dtype == (np.int64 if ch.is_int_range else np.float64)
    assert ch.sample_many(np.random.default_rng(0), 0).shape == (0,)


def test_sample_indices_needs_a_set():
    with pytest.raises(ValueError, match="sample_indices needs Choices"):
        R(1, 3).sample_indices(np.random.default_rng(0), 3)


def test_sample_pl_follows_inverse_k():
    rng = np.random.default_rng(3)
    lo, hi = 1, 8
    ch = R(lo, hi)
    n = 8000
    counts = Counter(ch.sample_pl(rng) for _ in range(n))
    ks = np.arange(lo, hi + 1)
    assert set(counts) <= set(ks.tolist())
    p = 1.0 / ks
    p /= p.sum()
    observed = np.array([counts[k] for k in ks])
    assert stats.chisquare(observed, n * p).pvalue > 1e-4


def test_sample_pl_needs_int_range_from_one():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="power-law sampling needs Choices"):
        R(1.0, 3.0).sample_pl(rng)
    with pytest.raises(ValueError, match="power-law sampling needs Choices"):
        S(1, 2).sample_pl(rng)
    with pytest.raises(ValueError, match="lo >= 1"):
        R(0, 3).sample_pl(rng)


def test_low_high():
    assert (R(2, 9).low, R(2, 9).high) == (2, 9)
    assert (S(5, 1, 3).low, S(5, 1, 3).high) == (1, 5)


def test_hash_covers_schema_text_not_path(tmp_path):
    sql = "CREATE TABLE t (id INT PRIMARY KEY, x REAL);"
    a, b = tmp_path / "a.sql", tmp_path / "b.sql"
    a.write_text(sql)
    b.write_text(sql)
    base = Config()
    by_a = base.replace(schema_file=str(a)).config_hash
    assert by_a == base.replace(schema_file=str(b)).config_hash
    assert by_a == base.replace(schema_sql=sql).config_hash
    assert by_a != base.replace(schema_sql=sql, schema_dialect="sqlite").config_hash
    b.write_text(sql + "\nCREATE TABLE u (id INT);")
    assert base.replace(schema_file=str(b)).config_hash != by_a
    with pytest.raises(ConfigError, match="Config.schema_file .*missing.sql.* cannot be read"):
        _ = base.replace(schema_file=str(tmp_path / "missing.sql")).config_hash


def test_schema_fields_are_checked():
    with pytest.raises(ConfigError, match="schema_file and Config.schema_sql are both set"):
        Config(schema_file="a.sql", schema_sql="CREATE TABLE t (x INT);")
    with pytest.raises(ConfigError, match="Config.schema_dialect must be one of .* got 'oracle'"):
        Config(schema_dialect="oracle")
    with pytest.raises(ConfigError, match="Config.schema_sql must be SQL text"):
        Config(schema_sql=b"CREATE TABLE t (x INT);")


def test_json_duplicate_keys_are_refused(tmp_path):
    # JSON lets a key repeat (the last wins): a field given twice must not pass silently
    with pytest.raises(ConfigError, match=re.escape("invalid config in JSON: key `$.val_split` is given more than once")):
        Config.from_json('{"val_split": 0.5, "val_split": 0.7}')
    doc = '{"database_params": {"num_tables_choices": {"kind": "range", "value": [3, 4], "value": [5, 6]}}}'
    path = tmp_path / "dup.json"
    path.write_text(doc)
    with pytest.raises(ConfigError, match=re.escape(f"invalid config in {path}: key `$.database_params.num_tables_choices.value` is given more than once")):
        Config.load(path)
    # TOML refuses repeated keys by itself
    with pytest.raises(ConfigError, match="cannot parse TOML"):
        Config.from_toml("val_split = 0.5\nval_split = 0.7\n")
    assert Config.from_json(Config().to_json()) == Config()
