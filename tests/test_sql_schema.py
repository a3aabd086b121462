"""SQL schema input (DESIGN §7, issue 15): parse, plan, generate, refuse clearly."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import plurel_fast
from plurel_fast import Choices, Config, DatabaseParams
from plurel_fast.cli import main
from plurel_fast.plan.schema import ACTIVITY, ENTITY, plan_schema
from plurel_fast.plan.sql_schema import (
    DIALECTS,
    SchemaError,
    SchemaWarning,
    detect_dialect,
    parse_sql_schema,
)

SHOP_FILE = Path(__file__).resolve().parents[1] / "examples" / "shop.sql"
SHOP = SHOP_FILE.read_text()
SMALL = DatabaseParams(
    num_rows_entity_table_choices=Choices("range", [5, 30]),
    num_rows_activity_table_choices=Choices("range", [10, 60]),
    column_nan_perc_choices=Choices("range", [0.2, 0.4]),
)


def small(**fields) -> Config:
    return Config(database_params=SMALL, **fields)


def quiet_parse(sql, dialect=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SchemaWarning)
        return parse_sql_schema(sql, dialect)


# ------------------------------------------------------------------------ the shop


def test_shop_plan_keeps_names_keys_and_roles():
    plan = plan_schema(0, small(schema_file=str(SHOP_FILE)))
    assert [t.name for t in plan.tables] == ["users", "products", "orders", "order_items"]
    t = {t.name: t for t in plan.tables}
    # Roles follow the foreign keys: a table nobody references is an activity table.
    assert {n: x.kind for n, x in t.items()} == {
        "users": ENTITY, "products": ENTITY, "orders": ENTITY, "order_items": ACTIVITY,
    }
    assert t["orders"].fkey_col_to_pkey_table == {"user_id": "users"}
    assert t["order_items"].fkey_col_to_pkey_table == {
        "order_id": "orders", "product_id": "products",
    }
    assert t["users"].children == ("orders",)
    assert t["orders"].children == ("order_items",)
    assert (t["users"].pkey_col, t["users"].time_col) == ("user_id", "signup_date")
    assert (t["orders"].time_col, t["products"].time_col) == ("ordered_at", None)
    assert plan.order.index("users") < plan.order.index("orders") < plan.order.index("order_items")
    features = {c.name: c for c in t["orders"].features}
    assert features["status"].categories == ("placed", "Shipped", "delivered ", "returned")
    assert features["shipped_at"].dtype == "datetime"
    assert not features["status"].nullable and features["total"].nullable


@pytest.mark.parametrize("seed", range(20))
def test_shop_generates(seed):
    db = plurel_fast.generate(seed, small(schema_file=str(SHOP_FILE)))
    frames = {name: table.df for name, table in db.table_dict.items()}
    assert list(frames["users"].columns) == [
        "user_id", "country", "tier", "is_verified", "signup_date",
    ]
    assert list(frames["order_items"].columns) == [
        "item_id", "order_id", "product_id", "quantity", "discount",
    ]
    users, orders, items = frames["users"], frames["orders"], frames["order_items"]
    # Labels exactly as written, and nothing else.
    assert set(users["tier"].to_list()) <= {"Free", "Pro", "Enterprise"}
    assert set(orders["status"].to_list()) <= {"placed", "Shipped", "delivered ", "returned"}
    assert set(frames["products"]["category"].to_list()) <= {"Books", "Home & Garden", "toys"}
    assert all(re.fullmatch(r"country_\d", v) for v in users["country"].to_list())
    # Types: booleans kept, integers as Int64, dates as datetimes.
    assert users["is_verified"].dtype == pl.Boolean
    assert items["quantity"].dtype == pl.Int64
    assert orders["ordered_at"].dtype == orders["shipped_at"].dtype == pl.Datetime("ns")
    assert items["discount"].dtype == pl.Float64
    # NOT NULL columns never hold nulls; nullable numerical ones get the implanted share.
    for frame, cols in ((users, ["country", "is_verified", "signup_date"]),
                        (orders, ["user_id", "status", "ordered_at"]),
                        (items, ["quantity", "order_id", "product_id"]),
                        (frames["products"], ["price"])):
        for col in cols:
            assert frame[col].null_count() == 0, col
    assert items["discount"].null_count() == int(0.2 * len(items)) or items[
        "discount"
    ].null_count() > 0
    # A second date column never precedes the time column.
    both = orders.drop_nulls("shipped_at")
    assert (both["shipped_at"] >= both["ordered_at"]).all()
    # Keys: 0..n-1 primary keys, foreign keys in range of their parent.
    for name, frame in frames.items():
        table = db.table_dict[name]
        assert frame[table.pkey_col].to_list() == list(range(len(frame)))
        for col, parent in table.fkey_col_to_pkey_table.items():
            assert frame[col].min() >= 0 and frame[col].max() < len(frames[parent])


def test_shop_is_read_by_relbench(tmp_path):
    relbench = pytest.importorskip("relbench")
    db = plurel_fast.generate(3, small(schema_file=str(SHOP_FILE)))
    db.save(tmp_path / "shop")
    got = relbench.load_dataset(str(tmp_path / "shop")).get_db(upto_test_timestamp=False)
    assert set(got.table_dict) == {"users", "products", "orders", "order_items"}
    assert got.table_dict["order_items"].fkey_col_to_pkey_table == {
        "order_id": "orders", "product_id": "products",
    }
    assert got.table_dict["orders"].time_col == "ordered_at"
    assert got.table_dict["users"].pkey_col == "user_id"
    assert set(got.table_dict["orders"].df["status"]) <= {
        "placed", "Shipped", "delivered ", "returned",
    }


def test_generation_is_a_function_of_seed_and_schema_text(tmp_path):
    copy = tmp_path / "copy.sql"
    copy.write_text(SHOP)
    a = plurel_fast.generate(5, small(schema_file=str(SHOP_FILE)))
    b = plurel_fast.generate(5, small(schema_sql=SHOP))
    c = plurel_fast.generate(5, small(schema_file=str(copy)))
    for name in a.table_dict:
        assert a.table_dict[name].df.equals(b.table_dict[name].df)
        assert a.table_dict[name].df.equals(c.table_dict[name].df)
    assert small(schema_file=str(SHOP_FILE)).config_hash == small(schema_sql=SHOP).config_hash


# ------------------------------------------------------------------------ dialects

DIALECT_SCHEMAS = {
    "postgres": """
        CREATE TYPE mood AS ENUM ('Happy', 'so  sad', 'OK');
        CREATE TABLE people (id SERIAL PRIMARY KEY, name TEXT, joined DATE NOT NULL);
        CREATE TABLE posts (
            id BIGSERIAL PRIMARY KEY,
            author INTEGER NOT NULL REFERENCES people (id),
            feeling mood NOT NULL,
            at TIMESTAMPTZ,
            body VARCHAR(200),
            score DOUBLE PRECISION
        );""",
    "mysql": """
        CREATE TABLE `people` (
            `id` INT UNSIGNED NOT NULL AUTO_INCREMENT,
            `name` VARCHAR(40),
            `joined` DATETIME NOT NULL,
            PRIMARY KEY (`id`)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
        CREATE TABLE `posts` (
            `id` BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
            `author` INT UNSIGNED NOT NULL,
            `feeling` ENUM('Happy', 'so  sad', 'OK') NOT NULL,
            `at` TIMESTAMP NULL,
            `body` TEXT,
            `score` DECIMAL(8, 3),
            KEY `by_author` (`author`),
            CONSTRAINT `fk_author` FOREIGN KEY (`author`) REFERENCES `people` (`id`)
        ) ENGINE=InnoDB;""",
    "sqlite": """
        CREATE TABLE people (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, joined DATE NOT NULL);
        CREATE TABLE posts (
            id INTEGER PRIMARY KEY,
            author INTEGER NOT NULL REFERENCES people,
            feeling TEXT NOT NULL CHECK (feeling IN ('Happy', 'so  sad', 'OK')),
            at TIMESTAMP,
            body TEXT,
            score REAL
        ) STRICT;""",
    "duckdb": """
        CREATE TYPE mood AS ENUM ('Happy', 'so  sad', 'OK');
        CREATE OR REPLACE TABLE people (id UBIGINT PRIMARY KEY, name VARCHAR, joined DATE NOT NULL);
        CREATE OR REPLACE TABLE posts (
            id UBIGINT PRIMARY KEY,
            author UBIGINT NOT NULL REFERENCES people (id),
            feeling mood NOT NULL,
            at TIMESTAMP,
            body VARCHAR,
            score DOUBLE
        );""",
}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_one_schema_per_dialect(dialect):
    sql = DIALECT_SCHEMAS[dialect]
    assert detect_dialect(sql) == dialect
    schema = quiet_parse(sql)
    assert schema.dialect == dialect
    db = plurel_fast.generate(1, small(schema_sql=sql, schema_dialect=dialect))
    people, posts = db.table_dict["people"], db.table_dict["posts"]
    assert (people.pkey_col, people.time_col) == ("id", "joined")
    assert (posts.pkey_col, posts.time_col) == ("id", "at")
    assert posts.fkey_col_to_pkey_table == {"author": "people"}
    assert set(posts.df["feeling"].to_list()) <= {"Happy", "so  sad", "OK"}
    assert posts.df["feeling"].null_count() == 0
    assert all(re.fullmatch(r"body_\d", v) for v in posts.df["body"].to_list())
    assert all(re.fullmatch(r"name_\d", v) for v in people.df["name"].to_list())
    assert posts.df["at"].dtype == pl.Datetime("ns")
    assert posts.df["score"].dtype == pl.Float64


def test_check_in_with_numbers_keeps_the_numeric_type():
    sql = """CREATE TABLE r (id INT PRIMARY KEY,
                             stars INT NOT NULL CHECK (stars IN (1, 2, 3, -4)),
                             w REAL CHECK (w IN (0.5, 1.5)))"""
    df = plurel_fast.generate(0, small(schema_sql=sql)).table_dict["r"].df
    assert df["stars"].dtype == pl.Int64 and set(df["stars"].to_list()) <= {1, 2, 3, -4}
    assert df["w"].dtype == pl.Float64 and set(df["w"].to_list()) <= {0.5, 1.5}


def test_single_label_enum_and_key_only_tables():
    sql = """CREATE TABLE a (id INT PRIMARY KEY, only_one TEXT CHECK (only_one IN ('x')));
             CREATE TABLE link (a_id INT REFERENCES a (id), b_id INT REFERENCES a (id));"""
    db = plurel_fast.generate(2, small(schema_sql=sql))
    assert set(db.table_dict["a"].df["only_one"].to_list()) == {"x"}
    link = db.table_dict["link"]
    assert link.pkey_col is None and list(link.df.columns) == ["a_id", "b_id"]
    # Two foreign keys to one parent are sampled independently.
    assert not link.df["a_id"].equals(link.df["b_id"])


def test_ignored_statements_warn_and_other_checks_warn():
    sql = "PRAGMA foreign_keys = ON; CREATE TABLE t (id INT PRIMARY KEY, x REAL CHECK (x > 0));"
    with pytest.warns(SchemaWarning) as record:
        parse_sql_schema(sql)
    messages = [str(w.message) for w in record]
    assert any("PRAGMA" in m and "ignored" in m for m in messages)
    assert any("CHECK (x > 0) is not enforced" in m and "'t'" in m for m in messages)


# -------------------------------------------------------------------------- errors

ERRORS = [
    ("unparsable",
     "CREATE TABLE t (\n  id INT PRIMARY KEY,\n  x INT NOT,\n  y INT);",
     r"cannot parse the CREATE TABLE statement starting at line 1 .* at line 3, column 11 near .NOT."),
    ("unknown table",
     "CREATE TABLE a (id INT PRIMARY KEY);\nCREATE TABLE b (id INT, a_id INT REFERENCES nope (id));",
     r"table 'b', column 'a_id' \(line 2\): foreign key to unknown table 'nope'"),
    ("unknown column",
     "CREATE TABLE a (id INT PRIMARY KEY);\nCREATE TABLE b (a_id INT REFERENCES a (zzz));",
     r"table 'b', column 'a_id' \(line 2\): foreign key to column 'zzz' of table 'a', "
     r"which does not exist"),
    ("not the primary key",
     "CREATE TABLE a (id INT PRIMARY KEY, code INT);\nCREATE TABLE b (c INT REFERENCES a (code));",
     r"table 'b', column 'c' \(line 2\): .* column 'code' of table 'a', which is not its primary"),
    ("unknown fk column",
     "CREATE TABLE a (id INT PRIMARY KEY);\nCREATE TABLE b (x INT, FOREIGN KEY (y) REFERENCES a (id));",
     r"table 'b' \(line 2\): FOREIGN KEY names column 'y', which the table does not have"),
    ("composite primary key",
     "CREATE TABLE t (a INT, b INT, PRIMARY KEY (a, b));",
     r"table 't' \(line 1\): composite primary key \(a, b\) is not supported"),
    ("composite foreign key",
     "CREATE TABLE p (id INT PRIMARY KEY);\n"
     "CREATE TABLE c (a INT, b INT, FOREIGN KEY (a, b) REFERENCES p (id, id));",
     r"table 'c' \(line 2\): composite foreign key \(a, b\) -> p\(id, id\) is not supported"),
    ("cycle",
     "CREATE TABLE a (id INT PRIMARY KEY, b_id INT REFERENCES b (id));\n"
     "CREATE TABLE b (id INT PRIMARY KEY, c_id INT REFERENCES c (id));\n"
     "CREATE TABLE c (id INT PRIMARY KEY, a_id INT REFERENCES a (id));",
     r"foreign keys form a cycle: a -> b -> c -> a"),
    ("self reference",
     "CREATE TABLE emp (\n  id INT PRIMARY KEY,\n  manager_id INT REFERENCES emp (id));",
     r"table 'emp', column 'manager_id' \(line 3\): foreign key to its own table 'emp'; "
     r"self-references are not supported"),
    ("unsupported type",
     "CREATE TABLE t (\n  id INT PRIMARY KEY,\n  payload JSON);",
     r"table 't', column 'payload' \(line 3\): type JSON is not supported"),
    ("time of day",
     "CREATE TABLE t (id INT PRIMARY KEY, opens TIME);",
     r"table 't', column 'opens' \(line 1\): type TIME is not supported"),
    ("unknown user type",
     "CREATE TABLE t (id INT PRIMARY KEY, m mood);",
     r"table 't', column 'm' \(line 1\): type 'mood' is not supported \(no CREATE TYPE mood"),
    ("no type",
     "CREATE TABLE t (id INTEGER PRIMARY KEY, x);",
     r"table 't', column 'x' \(line 1\) has no type"),
    ("fk to a table without key",
     "CREATE TABLE a (x INT);\nCREATE TABLE b (a_x INT REFERENCES a);",
     r"table 'b', column 'a_x' \(line 2\): foreign key to table 'a', which has no primary key"),
    ("duplicate table",
     "CREATE TABLE a (id INT);\nCREATE TABLE A (id INT);",
     r"table 'A' \(line 2\) is defined twice \(first at line 1\)"),
    ("duplicate column",
     "CREATE TABLE a (id INT, ID REAL);",
     r"table 'a', column 'ID' \(line 1\): the column is defined twice"),
    ("no table", "DROP TABLE users;", r"no CREATE TABLE statement"),
    ("create as select", "CREATE TABLE t AS SELECT 1 AS x;",
     r"table 't' \(line 1\): CREATE TABLE without a column list"),
    ("empty enum", "CREATE TABLE t (id INT, c TEXT CHECK (c IN (NULL)));",
     r"table 't', column 'c' CHECK IN \(line 1\): the list of values is empty"),
    ("unterminated string", "CREATE TABLE t (c TEXT CHECK (c IN ('a)));",
     r"cannot read the SQL"),
]


@pytest.mark.parametrize("sql, message", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors_name_the_offending_object(sql, message):
    with pytest.raises(SchemaError, match=message):
        quiet_parse(sql, "postgres")


@pytest.mark.parametrize(
    "name, why",
    [
        ('"../evil"', "path separator"),
        ('"a\\b"', "path separator"),
        ('".."', "starts with '.'"),
        ('".hidden"', "starts with '.'"),
        ('"tab\tname"', "control character"),
        ("con", "reserved file name"),
        ('"LPT1.x"', "reserved file name"),
        ('"trailing."', "ends with a space or '.'"),
        ('"' + "x" * 201 + '"', "longer than 200 bytes"),
    ],
)
def test_unsafe_table_names_are_refused(name, why):
    with pytest.raises(SchemaError, match=re.escape(why)) as err:
        quiet_parse(f"CREATE TABLE {name} (id INT PRIMARY KEY, x REAL);", "postgres")
    assert "table " in str(err.value) and "(line 1)" in str(err.value)


def test_unsafe_column_names_are_refused():
    with pytest.raises(SchemaError, match=r"table 't', column '../x' \(line 1\).*separator"):
        quiet_parse('CREATE TABLE t (id INT PRIMARY KEY, "../x" REAL);', "postgres")


def test_config_errors_surface_as_schema_errors_from_generate():
    with pytest.raises(SchemaError, match="type JSON is not supported"):
        plurel_fast.generate(0, small(schema_sql="CREATE TABLE t (id INT, j JSON);"))


# ------------------------------------------------------------------------ security


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_attach_and_drop_create_no_file_and_change_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.db").write_bytes(b"")  # DROP must not touch this either
    sql = (
        "ATTACH DATABASE 'attached.db' AS x;\n"
        "CREATE TABLE x.t (id INTEGER PRIMARY KEY, v REAL);\n"
        "DROP TABLE t;\n"
        "DROP TABLE x;\n"
    )
    before = _tree(tmp_path)
    with pytest.warns(SchemaWarning) as record:
        schema = parse_sql_schema(sql, "sqlite")
    assert [str(w.message).split("'")[1] for w in record] == [
        "ATTACH DATABASE attached.db ...", "DROP TABLE t ...", "DROP TABLE x ...",
    ]
    assert [t.name for t in schema.tables] == ["t"]  # DROP dropped nothing
    with pytest.warns(SchemaWarning):
        db = plurel_fast.generate(0, small(schema_sql=sql, schema_dialect="sqlite"))
    assert list(db.table_dict) == ["t"]
    assert _tree(tmp_path) == before
    db.save(tmp_path / "out")
    assert _tree(tmp_path) - before == {
        "out", "out/db", "out/db/t.parquet", "out/manifest.yaml", "out/plurel_fast.json",
        "out/scores.json",
    }


def test_evil_table_name_writes_nothing_outside(tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    schema = tmp_path / "evil.sql"
    schema.write_text('CREATE TABLE "../evil" (id INT PRIMARY KEY, x REAL);')
    before = _tree(tmp_path)
    code = main(["generate", "--seed", "0", "--out", str(work / "out"), "--schema", str(schema),
                 "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "table '../evil' (line 1) cannot be used: it contains a path separator" in err
    assert _tree(tmp_path) == before


def test_cli_generates_from_a_schema(tmp_path, capsys):
    out = tmp_path / "shop"
    code = main(["generate", "--seed", "4", "--out", str(out), "--schema", str(SHOP_FILE),
                 "--quiet"])
    assert code == 0
    assert sorted(os.listdir(out / "db")) == [
        "order_items.parquet", "orders.parquet", "products.parquet", "users.parquet",
    ]
    text = capsys.readouterr().out
    assert re.search(r"order_items\s+activity", text) and re.search(r"users\s+entity", text)


# --------------------------------------------------------------------------- fuzz

# Bounded and seeded for CI; PLUREL_FUZZ_EXAMPLES=5000 runs a longer search.
_FUZZ = settings(max_examples=int(os.environ.get("PLUREL_FUZZ_EXAMPLES", 120)), deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow])
_PIECES = ["(", ")", ",", ";", "'", '"', "`", "PRIMARY KEY", "REFERENCES users (user_id)",
           "NOT NULL", "CHECK (x IN ('a'))", "CREATE TABLE t", "INT", "ENUM('q')", "--", "/*",
           "DROP TABLE users", "\n", "\x00", "..", "/", "users", "FOREIGN KEY (order_id)"]


def _plan_or_schema_error(sql, dialect):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            plan = plan_schema(0, small(schema_sql=sql, schema_dialect=dialect))
        except SchemaError:
            return
    assert plan.tables


@_FUZZ
@given(text=st.text(max_size=200), dialect=st.sampled_from((None, *DIALECTS)))
def test_fuzz_arbitrary_text(text, dialect):
    _plan_or_schema_error(text, dialect)


@_FUZZ
@given(
    edits=st.lists(
        st.tuples(st.sampled_from(["delete", "insert", "duplicate"]),
                  st.integers(0, len(SHOP)), st.integers(1, 40), st.sampled_from(_PIECES)),
        min_size=1, max_size=4,
    ),
    dialect=st.sampled_from((None, *DIALECTS)),
)
def test_fuzz_mutated_schema(edits, dialect):
    sql = SHOP
    for op, at, length, piece in edits:
        at = min(at, len(sql))
        if op == "delete":
            sql = sql[:at] + sql[at + length:]
        elif op == "insert":
            sql = sql[:at] + piece + sql[at:]
        else:
            sql = sql[:at] + sql[at:at + length] + sql[at:]
    _plan_or_schema_error(sql, dialect)


def test_fuzz_never_wraps_our_own_bugs():
    # The broad catch around the parser turns sqlglot's failures into SchemaError;
    # planning a valid schema must still go through (no error swallowed there).
    plan = plan_schema(0, small(schema_sql=SHOP))
    assert np.all([t.num_rows > 0 for t in plan.tables])
