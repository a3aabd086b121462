"""relational-transformer's own reader, loaded without installing RT (which pulls torch).

The wheel of ``relational-transformer`` ships its preprocessor compiled
(``rt/rustler.abi3.so``, the Rust reader of ``rustler/src/pre.rs``) and its PluRel task
lister (``rt/data/db_task_list.py``). We download the wheel once with
``pip download --no-deps`` into a cache folder, take those two files out of it and
load them: the extension module as ``rt.rustler``, the lister with a small stand-in for
the one helper it imports from ``rt.data.resolve`` (which imports torch): ``read_meta``,
which reads ``<pre_dir>/<db>/meta.json``.

A failed download is an error with the command to run, never a skip: the consumer is
what decides whether our output is right.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import types
import zipfile
from pathlib import Path

RT_VERSION = "1.10.0"
_CACHE = Path(
    os.environ.get("PLUREL_FAST_TEST_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "plurel_fast" / "test"
)


def rt_wheel() -> Path:
    """The cached ``relational-transformer`` wheel, downloaded on first use."""
    folder = _CACHE / f"relational-transformer-{RT_VERSION}"
    wheels = sorted(folder.glob("relational_transformer-*.whl"))
    if wheels:
        return wheels[0]
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
           f"relational-transformer=={RT_VERSION}", "-d", str(folder)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(folder.glob("relational_transformer-*.whl"))
    if res.returncode != 0 or not wheels:
        raise RuntimeError(
            f"could not download relational-transformer {RT_VERSION} (needed to check our "
            f"output with its reader): {' '.join(cmd)} said: {res.stderr.strip()[-500:]}"
        )
    return wheels[0]


def _extract(member: str) -> Path:
    wheel = rt_wheel()
    out = wheel.parent / "extracted" / member
    if not out.is_file():
        with zipfile.ZipFile(wheel) as z:
            z.extract(member, wheel.parent / "extracted")
    return out


_rustler = None


def rt_rustler() -> types.ModuleType:
    """RT's compiled preprocessor module (``rt.rustler``); loaded once per process."""
    global _rustler
    if _rustler is None:
        path = str(_extract("rt/rustler.abi3.so"))
        loader = importlib.machinery.ExtensionFileLoader("rt.rustler", path)
        spec = importlib.util.spec_from_file_location("rt.rustler", path, loader=loader)
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        _rustler = module
    return _rustler


def rt_preprocess(dataset_dir: Path, pre_dir: Path) -> dict:
    """Run RT's preprocessor on a database folder; its ``meta.json`` as a dict."""
    rt_rustler().preprocess(str(dataset_dir), str(pre_dir))
    from plurel_fast.io.parquet import MANIFEST_FILE  # the name RT writes under

    import yaml

    name = yaml.safe_load((Path(dataset_dir) / MANIFEST_FILE).read_text())["name"]
    return json.loads((Path(pre_dir) / name / "meta.json").read_text())


def rt_task_lister() -> types.ModuleType:
    """RT's ``rt.data.db_task_list`` module, its ``read_meta`` import stood in for."""
    resolve = types.ModuleType("rt.data.resolve")
    resolve.read_meta = lambda pre_dir, db: json.loads(
        (Path(pre_dir).expanduser() / db / "meta.json").read_text()
    )
    saved = {k: sys.modules.get(k) for k in ("rt", "rt.data", "rt.data.resolve")}
    sys.modules.setdefault("rt", types.ModuleType("rt"))
    sys.modules.setdefault("rt.data", types.ModuleType("rt.data"))
    sys.modules["rt.data.resolve"] = resolve
    try:
        path = _extract("rt/data/db_task_list.py")
        spec = importlib.util.spec_from_file_location("rt_db_task_list", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return module
