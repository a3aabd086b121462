"""`plurel-fast inspect`, `plurel-fast report` and the dataset card, on a small database
(3-6 tables of 40-400 rows) and a corpus folder of three of them with a hand-written
index (one seed recorded as failed)."""

from __future__ import annotations

import base64
import json
import re
import os
import shutil

import numpy as np
import pytest
import relbench

from plurel_fast import Choices, Config, Database, DatabaseParams, generate
from plurel_fast.cli import main
from plurel_fast.corpus import INDEX_FIELDS
from plurel_fast.inspect import inspect_path

SMALL = Config(
    database_params=DatabaseParams(
        num_tables_choices=Choices("range", [3, 6]),
        num_rows_entity_table_choices=Choices("range", [40, 200]),
        num_rows_activity_table_choices=Choices("range", [100, 400]),
    )
)
IMAGE = re.compile(r"src='data:(image/[a-z+]+);base64,([A-Za-z0-9+/=]+)'")


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    out = tmp_path_factory.mktemp("db") / "plurel-0"
    generate(seed=0, config=SMALL).save(out)
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus") / "corpus"
    out.mkdir()
    lines = []
    for seed in (0, 1, 2):
        db = generate(seed=seed, config=SMALL)
        db.save(out / f"plurel-{seed}")
        values = (seed, f"plurel-{seed}", SMALL.config_hash, "0.1.0", len(db.table_dict),
                  db.num_rows, db.num_tokens, 0.1 + seed, 0, "ok", None)
        lines.append(dict(zip(INDEX_FIELDS, values)))
    failed = (3, "plurel-3", SMALL.config_hash, "0.1.0", None, None, None, 0.2, 1, "failed",
              "Traceback ...\nMemoryError: out of memory")
    lines.append(dict(zip(INDEX_FIELDS, failed)))
    (out / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return out


def images(page: str) -> list[tuple[str, bytes]]:
    """Every embedded image of a page, decoded, after checking it is what it says."""
    found = [(mime, base64.b64decode(data, validate=True)) for mime, data in IMAGE.findall(page)]
    for mime, data in found:
        if mime == "image/png":
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000, len(data)
        else:
            assert mime == "image/svg+xml" and b"<svg" in data[:200] and len(data) > 2000
    return found


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def no_dot(monkeypatch, tmp_path):
    empty = tmp_path / "empty-path"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("PATH", str(empty))
    assert shutil.which("dot") is None


def need_dot():
    # These tests are about the card. CI installs graphviz (.ci/run), so there a
    # missing `dot` fails; on a developer's machine without it they are skipped with
    # the install command (the no-dot path is tested either way).
    if shutil.which("dot") is None:
        if os.environ.get("CI"):
            raise AssertionError("graphviz's dot is needed here: apt-get install graphviz")
        pytest.skip("graphviz's dot is not installed (apt-get install graphviz)")


# ----------------------------------------------------------------------------- inspect


def test_inspect_database_text_and_json(database, capsys):
    db = Database.load(database)
    assert main(["inspect", str(database)]) == 0
    text = capsys.readouterr().out
    assert f"{len(db.table_dict)} tables" in text and f"{db.num_tokens:,} tokens" in text
    for name in db.table_dict:
        assert name in text
    assert main(["inspect", str(database), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kind"] == "database" and summary["seed"] == 0
    assert summary["rows"] == db.num_rows and summary["tokens"] == db.num_tokens
    referenced = {p for t in db.table_dict.values() for p in t.fkey_col_to_pkey_table.values()}
    for t in summary["tables"]:
        table = db.table_dict[t["name"]]
        assert t["role"] == ("entity" if t["name"] in referenced else "activity")
        assert t["rows"] == len(table) and t["tokens"] == table.num_tokens
        assert sum(t["feature_types"].values()) == len(table.feature_cols)
        assert t["nulls"] == {c: table.df[c].null_count() for c in table.df.columns}
        if table.time_col is not None:
            assert t["time_range"][0] == table.df[table.time_col].min().isoformat()
    edges = summary["edges"]
    assert len(edges) == sum(len(t.fkey_col_to_pkey_table) for t in db.table_dict.values()) > 0
    for e in edges:  # in-degrees against a plain bincount
        parent_rows = len(db.table_dict[e["parent"]])
        deg = np.bincount(db.table_dict[e["child"]].df[e["column"]].drop_nulls().to_numpy(),
                          minlength=parent_rows)
        assert e["mean"] == pytest.approx(deg.mean()) and e["max"] == deg.max()
        assert e["unreferenced_share"] == pytest.approx((deg == 0).mean())


def test_mermaid_has_one_entity_per_table_and_one_relation_per_foreign_key(database, capsys):
    db = Database.load(database)
    assert main(["inspect", str(database), "--mermaid"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "erDiagram"
    entities = [line.split()[0] for line in out if re.fullmatch(r"    \w+ \{", line)]
    relations = [line for line in out if "||--o{" in line]
    assert sorted(entities) == sorted(db.table_dict)
    assert len(relations) == sum(len(t.fkey_col_to_pkey_table) for t in db.table_dict.values())
    for name, table in db.table_dict.items():
        for col, parent in table.fkey_col_to_pkey_table.items():
            assert f'    {parent} ||--o{{ {name} : "{col}"' in relations
        assert f"        int {table.pkey_col} PK" in out


def test_inspect_corpus(corpus, capsys):
    assert main(["inspect", str(corpus), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    dbs = [Database.load(corpus / f"plurel-{s}") for s in range(3)]
    assert summary["kind"] == "corpus"
    assert summary["totals"]["databases"] == 3
    assert summary["totals"]["rows"] == sum(d.num_rows for d in dbs)
    assert summary["totals"]["tokens"] == sum(d.num_tokens for d in dbs)
    assert summary["distributions"]["tables"]["max"] == max(len(d.table_dict) for d in dbs)
    assert summary["distributions"]["seconds"]["min"] == pytest.approx(0.1)
    assert sum(summary["feature_types"].values()) == sum(
        len(t.feature_cols) for d in dbs for t in d.table_dict.values())
    assert [f["seed"] for f in summary["failed"]] == [3]
    assert main(["inspect", str(corpus)]) == 0
    text = capsys.readouterr().out
    assert "3 databases" in text and "seed 3 (plurel-3): MemoryError: out of memory" in text
    assert main(["inspect", str(corpus), "--mermaid"]) == 2
    assert "give a database folder" in one_line_error(capsys)


def test_inspect_refuses_what_is_not_a_database_or_corpus(tmp_path, database, capsys):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("hello")
    (tmp_path / "file.txt").write_text("hello")
    cases = {
        tmp_path / "notes": "is neither a database folder",
        tmp_path / "file.txt": "is a file",
        tmp_path / "missing": "does not exist",
    }
    for path, message in cases.items():
        for command in (["inspect", str(path)], ["report", str(path), "--out",
                                                  str(tmp_path / "r.html")]):
            assert main(command) == 2
            err = one_line_error(capsys)
            assert message in err and str(path) in err
    broken = tmp_path / "broken"
    shutil.copytree(database, broken)
    victim = sorted((broken / "db").glob("*.parquet"))[0]
    victim.unlink()
    for command in (["inspect", str(broken)], ["inspect", str(broken), "--mermaid"],
                    ["report", str(broken), "--out", str(tmp_path / "r.html")]):
        assert main(command) == 2
        err = one_line_error(capsys)
        assert str(victim) in err and "is missing" in err
    assert not (tmp_path / "r.html").exists()
    # In a corpus, the broken database is reported, the others still summarised; with
    # no readable database at all, the corpus is refused naming the first problem.
    with pytest.raises(ValueError, match="no readable database inside"):
        inspect_path(tmp_path)
    shutil.copytree(database, tmp_path / "plurel-0")
    summary = inspect_path(tmp_path)
    assert summary.totals["databases"] == 1 and summary.unreadable[0]["name"] == "broken"


# ----------------------------------------------------------------------------- report


def test_report_on_a_database(database, tmp_path, capsys):
    need_dot()
    db = Database.load(database)
    out = tmp_path / "report.html"
    assert main(["report", str(database), "--out", str(out)]) == 0
    assert "report written" in capsys.readouterr().out
    page = out.read_text()
    assert page.count("<figure class='schema'>") == 1
    sections = re.findall(r"<section class='table' id='table-(\w+)'>", page)
    assert sections == list(db.table_dict)
    found = images(page)
    assert found[0][0] == "image/svg+xml"  # RelBench's diagram, inline
    activity = [n for n, t in db.table_dict.items() if t.time_col is not None and not any(
        n in o.fkey_col_to_pkey_table.values() for o in db.table_dict.values())]
    with_fkeys = [t for t in db.table_dict.values() if t.fkey_col_to_pkey_table]
    # schema + one column figure per table + one in-degree figure per table with foreign
    # keys + one over-time figure per activity table with a time column
    assert len(found) == 1 + len(db.table_dict) + len(with_fkeys) + len(activity)
    assert (database / "schema.svg").is_file() and (database / "README.md").is_file()
    assert "![schema diagram](schema.svg)" in (database / "README.md").read_text()
    relbench.load_dataset(str(database)).get_db()  # the card leaves a readable folder


def test_report_without_dot_draws_the_schema_with_matplotlib(database, tmp_path, monkeypatch, capsys):
    copy = tmp_path / "plurel-0"
    shutil.copytree(database, copy)
    for name in ("schema.svg", "README.md"):
        (copy / name).unlink(missing_ok=True)
    no_dot(monkeypatch, tmp_path)
    out = tmp_path / "report.html"
    assert main(["report", str(copy), "--out", str(out)]) == 0
    assert "apt-get install graphviz" in one_line_error(capsys)
    page = out.read_text()
    found = images(page)
    assert page.count("<figure class='schema'>") == 1 and found[0][0] == "image/png"
    assert not (copy / "schema.svg").exists() and not (copy / "README.md").exists()


def test_report_on_a_corpus(corpus, tmp_path, capsys):
    out = tmp_path / "corpus.html"
    assert main(["report", str(corpus), "--out", str(out)]) == 0
    page = out.read_text()
    assert "seed 3 (plurel-3)" in page and "3 databases" in page
    assert len(images(page)) == 2
    assert not (corpus / "plurel-0" / "schema.svg").exists()  # no cards written into a corpus


def test_report_without_matplotlib_says_how_to_install_it(database, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    monkeypatch.setitem(__import__("sys").modules, "matplotlib.figure", None)
    assert main(["report", str(database), "--out", str(tmp_path / "r.html")]) == 2
    assert "pip install 'plurel-fast[report]'" in one_line_error(capsys)
    assert not (tmp_path / "r.html").exists()


# ----------------------------------------------------------------------------- card


def test_generate_card(tmp_path, monkeypatch, capsys):
    config = SMALL.save(tmp_path / "small.toml")
    out = tmp_path / "plurel-5"
    args = ["generate", "--seed", "5", "--config", str(config), "--quiet", "--card"]
    need_dot()
    assert main([*args, "--out", str(out)]) == 0
    assert "dataset card" in capsys.readouterr().out
    assert (out / "schema.svg").stat().st_size > 2000
    assert (out / "README.md").read_text().startswith("# plurel-5\n")
    Database.load(out)
    no_dot(monkeypatch, tmp_path)
    bare = tmp_path / "plurel-6"
    assert main([*args, "--out", str(bare)]) == 0
    assert "no dataset card: graphviz's `dot` binary is not installed (apt-get install graphviz)" \
        in capsys.readouterr().out
    assert (bare / "manifest.yaml").is_file() and not (bare / "schema.svg").exists()
