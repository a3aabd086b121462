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
