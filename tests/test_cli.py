"""The `plurel-fast generate` command."""

from __future__ import annotations

import relbench

from plurel_fast import Choices, Config, Database, DatabaseParams
from plurel_fast.cli import main

SMALL = Config(
    database_params=DatabaseParams(
        num_tables_choices=Choices("range", [2, 3]),
        num_rows_entity_table_choices=Choices("range", [30, 60]),
        num_rows_activity_table_choices=Choices("range", [60, 90]),
        num_cols_choices=Choices("range", [2, 5]),
    )
)


def test_generate_writes_a_relbench_folder(tmp_path, capsys):
    config = SMALL.save(tmp_path / "small.toml")
    out = tmp_path / "plurel-4"
    assert main(["generate", "--seed", "4", "--out", str(out), "--config", str(config)]) == 0
    captured = capsys.readouterr()
    assert "plurel-4" in captured.out and "[1/" in captured.err  # summary and progress
    db = Database.load(out)
    assert db.name == "plurel-4" and db.metadata["config_hash"] == SMALL.config_hash
    relbench.load_dataset(str(out)).get_db()
    # The manifest is named after the folder, whatever the seed.
    other = tmp_path / "mine"
    assert main(["generate", "--seed", "4", "--out", str(other), "--config", str(config),
                 "--quiet"]) == 0
    assert Database.load(other).name == "mine"


def test_existing_output_is_refused_then_replaced(tmp_path, capsys):
    config = SMALL.save(tmp_path / "small.json")
    out = tmp_path / "db"
    args = ["generate", "--seed", "1", "--out", str(out), "--config", str(config), "--quiet"]
    assert main(args) == 0
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert capsys.readouterr().err == ""  # --quiet: no progress lines


def test_bad_input_gives_a_clear_error(tmp_path, capsys):
    out = str(tmp_path / "db")
    assert main(["generate", "--seed", "0", "--out", out, "--preset", "nope"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
    assert main(["generate", "--seed", "-3", "--out", out]) == 2
    assert "--seed must be >= 0" in capsys.readouterr().err
    assert main(["generate", "--seed", "0", "--out", out, "--config", str(tmp_path / "x.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"val_split": 0.95}')
    assert main(["generate", "--seed", "0", "--out", out, "--config", str(bad)]) == 2
    assert "val_split" in capsys.readouterr().err
    assert not (tmp_path / "db").exists()


def test_minor_input_errors_are_named(tmp_path, capsys):
    # issue 17 item 7: each of these used to be silent or worded for another case
    out = tmp_path / "db"
    base = ["generate", "--seed", "0", "--out", str(out), "--quiet"]
    for rows in ("0", "-5"):
        assert main([*base, "--chunk-rows", rows]) == 2
        assert f"--chunk-rows must be a positive number of rows, got {rows}" in capsys.readouterr().err
    folder = tmp_path / "configs.json"
    folder.mkdir()
    assert main([*base, "--config", str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"--config {folder} is a folder; give a config file" in err and "does not exist" not in err
    dup = tmp_path / "dup.json"
    dup.write_text('{"scm_params": {"mlp_emb_dim": 8, "mlp_emb_dim": 16}}')
    assert main([*base, "--config", str(dup)]) == 2
    assert "key `$.scm_params.mlp_emb_dim` is given more than once" in capsys.readouterr().err
    assert not out.exists() and not out.is_symlink()


def test_dangling_symlink_out_is_refused_before_generating(tmp_path, capsys, monkeypatch):
    import sys

    def no_generation(*args, **kwargs):
        raise AssertionError("generated although --out is refused")

    monkeypatch.setattr(sys.modules["plurel_fast.generate"], "generate", no_generation)
    out = tmp_path / "db"
    out.symlink_to(tmp_path / "gone")
    for extra in ([], ["--overwrite"]):  # saving replaces folders only, never a link
        assert main(["generate", "--seed", "1", "--out", str(out), "--quiet", *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("plurel-fast: error: ") and len(err.strip().splitlines()) == 1
        assert f"--out {out} is a symbolic link to {tmp_path / 'gone'}, which does not exist" in err
        assert "overwrite=True" not in err
        assert out.is_symlink()


def test_chunk_rows_is_passed_on(tmp_path, capsys):
    config = SMALL.save(tmp_path / "small.toml")
    a, b = tmp_path / "a" / "db", tmp_path / "b" / "db"  # the manifest carries the folder name
    common = ["generate", "--seed", "2", "--config", str(config), "--quiet"]
    assert main([*common, "--out", str(a)]) == 0
    assert main([*common, "--out", str(b), "--chunk-rows", "1"]) == 0
    assert Database.load(a).equals(Database.load(b))


def test_progress_counts_the_columns_the_tables_hold(tmp_path, capsys):
    # Post-processing drops single-valued boolean columns; progress must not count them.
    import re

    import plurel_fast
    from plurel_fast.generate import generate

    from plurel_fast.plan.schema import plan_schema

    seen = {}
    db = generate(1, SMALL, on_table=lambda t, done, total: seen.update({t.name: len(t.features)}))
    planned = {t.name: len(t.features) for t in plan_schema(1, SMALL).tables}
    assert any(planned[n] > len(t.feature_cols) for n, t in db.table_dict.items())  # seed 1 drops some
    for name, table in db.table_dict.items():
        assert seen[name] == len(table.feature_cols)
    config = SMALL.save(tmp_path / "small.toml")
    assert main(["generate", "--seed", "1", "--out", str(tmp_path / "o"), "--config", str(config)]) == 0
    err = capsys.readouterr().err
    for name, table in plurel_fast.Database.load(tmp_path / "o").table_dict.items():
        assert re.search(rf"\] {name}: {len(table)} rows, {len(table.feature_cols)} features", err)
