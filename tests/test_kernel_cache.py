"""Our numba settings stay ours: the kernel cache locator answers for our kernels only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap


def test_user_functions_keep_numbas_default_cache(tmp_path):
    (tmp_path / "usermod.py").write_text(textwrap.dedent("""\
        from numba import njit

        @njit(cache=True)
        def twice(x):
            return 2 * x
    """))
    script = textwrap.dedent("""\
        import json, sys
        import numba
        import plurel_fast
        from plurel_fast.kernels import CACHE_DIR
        import numpy as np
        from plurel_fast.kernels.rng import subkey
        import usermod
        assert usermod.twice(21) == 42
        subkey(np.uint64(1), np.uint64(2))  # loads (or compiles) one of our kernels through our locator
        print(json.dumps({"global": numba.config.CACHE_DIR, "ours": CACHE_DIR}))
    """)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["PYTHONPATH"] = str(tmp_path)
    res = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert not out["global"]  # numba's process-wide CACHE_DIR untouched
    user_cache = [p.name for p in (tmp_path / "__pycache__").iterdir()]
    assert any(n.startswith("usermod.twice") and n.endswith(".nbi") for n in user_cache)
    ours = os.listdir(out["ours"])
    assert any(n.startswith("rng.subkey") and n.endswith(".nbi") for n in ours)
    assert not any(n.startswith("usermod") for n in ours)
