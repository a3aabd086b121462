"""Source generators (DESIGN §4.3): kernel against the naive row-by-row reference,
chunk and thread invariance, distribution checks, plan sampling, argument errors.

Statistical tests use fixed seeds, so they are deterministic; thresholds are
five standard errors or p > 1e-4, i.e. a correct implementation would fail
them for fewer than about 1 random seed in 10^4 per check.
"""

from __future__ import annotations

import hashlib
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from plurel_fast.config import Choices
from plurel_fast.kernels.sources import BLOCK_ROWS, source_values
from plurel_fast.plan import sources as ps
from plurel_fast.plan.rng import plan_rng, stream_key

sys.path.insert(0, str(Path(__file__).resolve().parent))
import naive  # noqa: E402  (tests/naive.py, not part of the package)
from conftest import digest_in_subprocess, thread_counts  # noqa: E402

P_MIN = 1e-4

# Duck-typed stand-in for SCMParams with the reference defaults of the source fields.
SCM_DEFAULTS = types.SimpleNamespace(
    source_gen_type_choices=Choices("set", ["ts", "uniform", "gaussian", "beta", "mixed"]),
    ts_value_scale_choices=Choices("set", [0.01, 0.1, 1, 10, 100]),
    ts_trend_alpha_choices=Choices("range", [0.0, 2.0]),
    activity_table_ts_trend_scale_choices=Choices("set", [-1, 1]),
    entity_table_ts_trend_scale=0.0,
    ts_cycle_freq_perc_choices=Choices("set", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]),
    activity_table_ts_cycle_scale_choices=Choices("set", [-1, 1]),
    entity_table_ts_cycle_scale=0.0,
    activity_table_ts_noise_scale=0.05,
    entity_table_ts_noise_scale=1.0,
    ts_ar_rho_choices=Choices("range", [0.0, 0.9]),
    source_beta_alpha_choices=Choices("range", [0.5, 5.0]),
    source_beta_beta_choices=Choices("range", [0.5, 5.0]),
)


def with_types(*gen_types):
    return types.SimpleNamespace(
        **{**vars(SCM_DEFAULTS), "source_gen_type_choices": Choices("set", list(gen_types))}
    )


def key(*path):
    return stream_key(2024, "test", *path)


def numerical(gen_type, num_rows, *gens):
    return ps.NumericalSource(gen_type=gen_type, num_rows=num_rows, gens=np.stack(gens))


def run(sources, num_rows, keys=None, start=0, stop=None):
    keys = [key(i) for i in range(len(sources))] if keys is None else keys
    bank = ps.SourceBank.from_sources(num_rows, sources, keys)
    return source_values(bank, num_rows, start, stop)


def mixed_bank(n):
    """One source of every kind, with a few ts blocks and warm-ups to cross."""
    sources = [
        numerical(
            "ts", n, ps.ts_generator(0.5, 30.0, 1.3, 1.0, math.ceil(0.3 * n), -1.0, 2.0, 0.9)
        ),
        numerical("ts", n, ps.ts_generator(0.0, 1.0, 0.0, -1.0, n, 1.0, 0.05, 0.0)),
        numerical("uniform", n, ps.uniform_generator(1.0, 3.0)),
        numerical("gaussian", n, ps.gaussian_generator(-1.0, 5.0)),
        numerical("beta", n, ps.beta_generator(2.0, 4.0, 0.7, 3.0)),
        numerical(
            "mixed",
            n,
            ps.uniform_generator(0.0, 1.0),
            ps.beta_generator(0.0, 1.0, 2.0, 2.0),
            ps.gaussian_generator(0.0, 1.0),
        ),
        ps.CategoricalSource(
            gen_type="ts",
            num_rows=n,
            num_categories=3,
            gens=np.stack(
                [ps.ts_generator(0.0, 2.0, 1.0, 1.0, 50, 1.0, 1.0, rho) for rho in (0.5, 0.9, 0.0)]
            ),
            probs=np.zeros(0),
        ),
        ps.CategoricalSource(
            gen_type="gaussian",
            num_rows=n,
            num_categories=4,
            gens=np.zeros((0, ps.GEN_WIDTH)),
            probs=np.array([0.1, 0.2, 0.3, 0.4]),
        ),
    ]
    keys = [key("mixed_bank", i) for i in range(len(sources))]
    return ps.SourceBank.from_sources(n, sources, keys)


# ---------------------------------------------------------------------------
# (a) kernel == naive reference
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
@pytest.mark.parametrize(
    "n, perc, s_t, s_c, sigma, lo, hi, alpha",
    [
        (9000, 0.1, 1.0, -1.0, 0.05, 0.2, 0.9, 0.0),  # alpha = 0: 0^0 = 1 at row 0
        (5000, 0.7, -1.0, 1.0, 1.0, 0.0, 60.0, 1.7),
        (300, 1.0, 0.0, 0.0, 1.0, 0.003, 0.004, 0.5),  # entity-like, tight clip
    ],
)
def test_ts_matches_naive(rho, n, perc, s_t, s_c, sigma, lo, hi, alpha):
    gen = ps.ts_generator(lo, hi, alpha, s_t, math.ceil(n * perc), s_c, sigma, rho)
    got = run([numerical("ts", n, gen)], n)[:, 0]
    want = naive.naive_ts_values(gen, naive.naive_gen_key(key(0), 0), n)
    # Block 0 runs the exact recursion: identical. Later blocks start their
    # warm-up from state 0, off by < 1e-18 relative (module docstring).
    first = min(n, BLOCK_ROWS)
    assert np.array_equal(got[:first], want[:first])
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("gen_type", ["uniform", "gaussian", "beta"])
def test_iid_generators_match_naive(gen_type):
    n = 6000
    gen = {
        "uniform": ps.uniform_generator(2.0, 7.5),
        "gaussian": ps.gaussian_generator(0.3, 0.35),
        "beta": ps.beta_generator(10.0, 90.0, 0.6, 4.2),
    }[gen_type]
    got = run([numerical(gen_type, n, gen)], n)[:, 0]
    want = naive.naive_iid_values(gen, naive.naive_gen_key(key(0), 0), n)
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=0)


def test_mixed_matches_naive():
    n = 5000
    src = numerical(
        "mixed",
        n,
        ps.beta_generator(0.0, 5.0, 2.0, 0.5),
        ps.uniform_generator(3.0, 4.0),
        ps.beta_generator(0.0, 5.0, 2.0, 0.5),  # drawn with replacement: a repeat is allowed
    )
    got = run([src], n)[:, 0]
    np.testing.assert_allclose(got, naive.naive_numerical_source(src, key(0), n), rtol=1e-14)


def test_categorical_matches_naive():
    n = 4500
    cat_ts = ps.CategoricalSource(
        gen_type="ts",
        num_rows=n,
        num_categories=4,
        gens=np.stack(
            [
                ps.ts_generator(0.0, 3.0, 1.0, 1.0, 900, -1.0, 0.5, 0.9),
                ps.ts_generator(0.5, 2.0, 0.3, -1.0, 4500, 1.0, 0.5, 0.5),
                ps.ts_generator(0.0, 1.0, 2.0, 1.0, 450, 1.0, 0.05, 0.0),
                ps.ts_generator(1.0, 1.5, 0.0, 0.0, 3, 0.0, 1.0, 0.2),
            ]
        ),
        probs=np.zeros(0),
    )
    cat_iid = ps.CategoricalSource(
        gen_type="beta",
        num_rows=n,
        num_categories=5,
        gens=np.zeros((0, ps.GEN_WIDTH)),
        probs=np.array([0.05, 0.0, 0.5, 0.25, 0.2]),
    )
    got = run([cat_ts, cat_iid], n)
    for s, src in enumerate([cat_ts, cat_iid]):
        want = naive.naive_categorical_source(src, key(s), n)
        assert np.array_equal(got[:, s], want.astype(np.float64))
        assert np.array_equal(got[:, s], np.floor(got[:, s]))
    assert not (got[:, 1] == 1).any()  # the zero-probability category never appears


def test_planned_sources_match_naive():
    """Randomly planned sources of every type, activity and entity, in one bank."""
    n = 700
    rng = plan_rng(7, "sources")
    sources = []
    for i in range(40):
        is_activity = bool(i % 2)
        if i % 3 == 0:
            sources.append(ps.plan_categorical_source(rng, SCM_DEFAULTS, n, 2 + i % 5, is_activity))
        else:
            sources.append(ps.plan_numerical_source(rng, SCM_DEFAULTS, n, is_activity))
    keys = [key("planned", i) for i in range(len(sources))]
    got = run(sources, n, keys)
    for s, src in enumerate(sources):
        np.testing.assert_allclose(got[:, s], naive.naive_source(src, keys[s], n), rtol=1e-14)


# ---------------------------------------------------------------------------
# (b) chunk and thread invariance
# ---------------------------------------------------------------------------


def test_chunk_invariance():
    n = 3 * BLOCK_ROWS + 517
    bank = mixed_bank(n)
    whole = source_values(bank, n, 0, n)
    rng = np.random.default_rng(0)
    splits = [
        [0, n],
        [0, 1, 2, n],
        [0, BLOCK_ROWS - 1, BLOCK_ROWS, BLOCK_ROWS + 1, 2 * BLOCK_ROWS + 7, n],
        [0, *np.sort(rng.choice(np.arange(1, n), size=9, replace=False)).tolist(), n],
        list(range(0, n, 1000)) + [n],
    ]
    for cuts in splits:
        parts = [source_values(bank, n, a, b) for a, b in zip(cuts[:-1], cuts[1:])]
        assert np.concatenate(parts).tobytes() == whole.tobytes(), cuts
    # An empty range and the out= argument.
    assert source_values(bank, n, 5, 5).shape == (0, bank.num_sources)
    out = np.full((100, bank.num_sources), np.nan)
    assert source_values(bank, n, 4000, 4100, out=out) is out
    assert out.tobytes() == whole[4000:4100].tobytes()


_THREAD_SCRIPT = """
import hashlib, sys
sys.path.insert(0, {tests!r})
from test_kernels_sources import mixed_bank
from plurel_fast.kernels.sources import source_values
n = {n}
print(hashlib.sha256(source_values(mixed_bank(n), n).tobytes()).hexdigest())
"""


def test_thread_invariance():
    n = 2 * BLOCK_ROWS + 99
    here = source_values(mixed_bank(n), n)
    script = _THREAD_SCRIPT.format(tests=str(Path(__file__).resolve().parent), n=n)
    assert digest_in_subprocess(script) == hashlib.sha256(here.tobytes()).hexdigest()
    for _ in thread_counts():
        assert source_values(mixed_bank(n), n).tobytes() == here.tobytes()


# ---------------------------------------------------------------------------
# (c) distributions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("s_t, alpha", [(1.0, 0.0), (1.0, 0.6), (-1.0, 1.8), (1.0, 2.0)])
def test_ts_trend_shape(s_t, alpha):
    n, lo, hi = 10_000, 0.25, 0.9
    gen = ps.ts_generator(lo, hi, alpha, s_t, 1000, 0.0, 0.0, 0.3)
    got = run([numerical("ts", n, gen)], n)[:, 0]
    r = np.arange(n)
    trend = np.minimum(s_t * np.power(r / n, alpha) + lo, hi)
    # s_c = 0 and σ = 0: cycle and noise terms are clip(0, lo, hi) = lo.
    np.testing.assert_allclose(got, (trend + lo + lo) / 3.0, rtol=1e-15, atol=1e-15)
    steps = np.diff(got)
    assert (steps >= 0).all() if s_t > 0 else (steps <= 0).all()
    if s_t > 0 and alpha > 0:  # rises from lo until it saturates at hi
        assert got[0] == pytest.approx(lo) and got[-1] == pytest.approx((hi + 2 * lo) / 3)


@pytest.mark.parametrize("f", [7, 100, 1234])
def test_ts_cycle_period(f):
    n, lo, hi = 5000, -2.0, 2.0  # lo < 0 < hi: neither half-wave is clipped
    gen = ps.ts_generator(lo, hi, 1.0, 0.0, f, 1.0, 0.0, 0.0)
    got = run([numerical("ts", n, gen)], n)[:, 0]
    cycle = 3.0 * got - lo  # trend = lo, noise = 0
    np.testing.assert_allclose(cycle, np.sin(np.arange(n) / f * np.pi), atol=1e-12)
    # sin(π r / f) has its zeros at multiples of f: signs flip every f rows.
    inside = np.arange(n) % f != 0
    sign = np.sign(cycle[inside])
    flips = np.nonzero(np.diff(sign))[0]
    spacing = np.diff(np.arange(n)[inside][flips])
    assert len(flips) == (n - 1) // f
    assert (spacing == f).all()


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_ts_ar_noise(rho):
    n, lo, hi, sigma = 200_000, -1e3, 1e3, 1.0
    gen = ps.ts_generator(lo, hi, 1.0, 0.0, n, 0.0, sigma, rho)
    got = run([numerical("ts", n, gen)], n)[:, 0]
    e = 3.0 * got - lo  # trend = lo, cycle = 0: the unclipped state
    lag1 = np.corrcoef(e[:-1], e[1:])[0, 1]
    assert abs(lag1 - rho) < 5 / math.sqrt(n)
    # Stationary variance σ²/(1-ρ²); relative SE of the sample variance of an
    # AR(1) is sqrt(2 (1+ρ²) / (n (1-ρ²))).
    se = math.sqrt(2 * (1 + rho**2) / (n * (1 - rho**2)))
    assert abs(e.var() / (sigma**2 / (1 - rho**2)) - 1) < 5 * se
    assert abs(e.mean()) < 5 * math.sqrt(sigma**2 / (1 - rho) ** 2 / n)


def test_ts_noise_is_clipped_not_the_state():
    n, lo, hi = 4000, 0.0, 0.2
    gen = ps.ts_generator(lo, hi, 1.0, 0.0, n, 0.0, 1.0, 0.9)
    got = run([numerical("ts", n, gen)], n)[:, 0]
    _, states = naive.naive_ts_values(gen, naive.naive_gen_key(key(0), 0), n, return_state=True)
    np.testing.assert_allclose(got, (lo + lo + np.clip(states, lo, hi)) / 3.0, atol=1e-15)
    assert (states < lo).any() and (states > hi).any()


def test_uniform_gaussian_beta_distributions():
    n = 100_000
    u_gen = ps.uniform_generator(2.0, 7.0)
    g_gen = ps.gaussian_generator(1.0, 3.0)
    b_gen = ps.beta_generator(-1.0, 4.0, 0.7, 2.5)
    got = run(
        [
            numerical("uniform", n, u_gen),
            numerical("gaussian", n, g_gen),
            numerical("beta", n, b_gen),
        ],
        n,
    )
    u, g, b = got.T
    # uniform on [2, 7): bounds, mean, KS
    assert u.min() >= 2.0 and u.max() < 7.0
    assert abs(u.mean() - 4.5) < 5 * 5.0 / math.sqrt(12 * n)
    assert stats.kstest(u, stats.uniform(loc=2.0, scale=5.0).cdf).pvalue > P_MIN
    # gaussian N(2, 0.5) clipped to [1, 3]: bounds, symmetric mean, clipped mass 2(1-Φ(2))
    assert g.min() >= 1.0 and g.max() <= 3.0
    assert abs(g.mean() - 2.0) < 5 * 0.5 / math.sqrt(n)
    p_clip = 2 * stats.norm.sf(2.0)
    clipped = np.mean((g == 1.0) | (g == 3.0))
    assert abs(clipped - p_clip) < 5 * math.sqrt(p_clip * (1 - p_clip) / n)
    inside = g[(g > 1.0) & (g < 3.0)]
    truncated = stats.truncnorm(-2.0, 2.0, loc=2.0, scale=0.5)
    assert stats.kstest(inside, truncated.cdf).pvalue > P_MIN
    # beta: -1 + 5 · Beta(0.7, 2.5)
    assert b.min() >= -1.0 and b.max() <= 4.0
    law = stats.beta(0.7, 2.5, loc=-1.0, scale=5.0)
    assert abs(b.mean() - law.mean()) < 5 * law.std() / math.sqrt(n)
    assert stats.kstest(b, law.cdf).pvalue > P_MIN


@pytest.mark.parametrize("k", [2, 3])
def test_mixed_choice_frequencies(k):
    n = 60_000
    # Disjoint ranges reveal which generator made each row.
    gens = [
        ps.uniform_generator(0.0, 1.0),
        ps.gaussian_generator(10.0, 11.0),
        ps.beta_generator(20.0, 21.0, 1.5, 1.5),
    ][:k]
    got = run([numerical("mixed", n, *gens)], n)[:, 0]
    which = np.floor(got / 10.0).astype(np.int64)
    counts = np.bincount(which, minlength=k)
    assert counts.size == k
    assert stats.chisquare(counts).pvalue > P_MIN
    # Each generator's rows still follow its own law.
    assert stats.kstest(got[which == 0], stats.uniform(0.0, 1.0).cdf).pvalue > P_MIN
    if k == 3:
        assert stats.kstest(got[which == 2], stats.beta(1.5, 1.5, loc=20.0).cdf).pvalue > P_MIN


def test_categorical_iid_frequencies():
    n = 50_000
    rng = plan_rng(11, "iid")
    src = ps.plan_categorical_source(rng, with_types("uniform"), n, 6, True)
    got = run([src], n)[:, 0].astype(np.int64)
    counts = np.bincount(got, minlength=6)
    assert counts.size == 6
    assert stats.chisquare(counts, n * src.probs).pvalue > P_MIN


def test_categorical_ts_frequencies_deterministic():
    """σ = 0: every key sees the same softmax; labels at a row are multinomial."""
    n, k, keys = 40, 3, 3000
    gens = np.stack(
        [
            ps.ts_generator(0.0, 3.0, 1.0, 1.0, 10, 1.0, 0.0, 0.0),
            ps.ts_generator(0.0, 3.0, 1.0, -1.0, 40, 1.0, 0.0, 0.0),
            ps.ts_generator(1.0, 1.5, 0.0, 0.0, 7, 0.0, 0.0, 0.0),
        ]
    )
    src = ps.CategoricalSource("ts", n, k, gens, np.zeros(0))
    got = run([src] * keys, n, [key("cat_ts", i) for i in range(keys)]).astype(np.int64)
    probs = naive.naive_categorical_ts_probs(src, key("cat_ts", 0), n)
    for r in (0, 13, 39):
        counts = np.bincount(got[r], minlength=k)
        assert stats.chisquare(counts, keys * probs[r]).pvalue > P_MIN


def test_categorical_ts_frequencies_noisy():
    """σ = 1: each key has its own softmax; aggregate expected counts over keys."""
    n, keys = 25, 1000
    # Values stay in [0, 1.5]: every category keeps a fair share.
    gens = np.stack(
        [
            ps.ts_generator(0.0, 3.0, 0.5, 1.0, 5, -1.0, 1.0, 0.9),
            ps.ts_generator(0.0, 3.0, 1.0, 0.0, 25, 0.0, 1.0, 0.0),
            ps.ts_generator(0.5, 2.0, 2.0, -1.0, 9, 1.0, 1.0, 0.5),
        ]
    )
    src = ps.CategoricalSource("ts", n, 3, gens, np.zeros(0))
    key_list = [key("cat_ts_noisy", i) for i in range(keys)]
    got = run([src] * keys, n, key_list).astype(np.int64)
    expected = sum(naive.naive_categorical_ts_probs(src, kk, n) for kk in key_list)
    for r in (0, 11, 24):
        counts = np.bincount(got[r], minlength=3)
        assert expected[r].min() > 50
        # Sums of non-identical categoricals vary less than a multinomial: conservative.
        assert stats.chisquare(counts, expected[r] * keys / expected[r].sum()).pvalue > P_MIN


# ---------------------------------------------------------------------------
# (d) plan sampling
# ---------------------------------------------------------------------------


def _check_common(gen, scales):
    lo, hi = gen[ps.COL_LO], gen[ps.COL_HI]
    assert 0.0 <= lo <= hi
    assert any(hi < s for s in scales)


def test_plan_numerical_sources():
    rng = plan_rng(3, "plan")
    scales = SCM_DEFAULTS.ts_value_scale_choices.value
    percs = SCM_DEFAULTS.ts_cycle_freq_perc_choices.value
    type_counts = dict.fromkeys(ps.SOURCE_GEN_TYPES, 0)
    sub_counts = {2: 0, 3: 0}
    for i in range(2000):
        n = int(rng.integers(1, 5000))
        is_activity = bool(i % 2)
        src = ps.plan_numerical_source(rng, SCM_DEFAULTS, n, is_activity)
        type_counts[src.gen_type] += 1
        assert src.num_rows == n
        if src.gen_type == "mixed":
            sub_counts[src.gens.shape[0]] += 1
            assert set(src.gens[:, ps.COL_TYPE].astype(int)) <= {
                ps.GEN_UNIFORM,
                ps.GEN_GAUSSIAN,
                ps.GEN_BETA,
            }
        else:
            assert src.gens.shape[0] == 1
        for gen in src.gens:
            _check_common(gen, scales)
            lo, hi = gen[ps.COL_LO], gen[ps.COL_HI]
            code = int(gen[ps.COL_TYPE])
            if code == ps.GEN_TS:
                s_t, s_c = gen[ps.COL_TREND_SCALE], gen[ps.COL_CYCLE_SCALE]
                if is_activity:
                    assert s_t in (-1.0, 1.0) and s_c in (-1.0, 1.0)
                    assert gen[ps.COL_NOISE_SCALE] == 0.05
                else:
                    assert s_t == 0.0 and s_c == 0.0 and gen[ps.COL_NOISE_SCALE] == 1.0
                assert 0.0 <= gen[ps.COL_TREND_ALPHA] < 2.0
                assert 0.0 <= gen[ps.COL_AR_RHO] < 0.9
                assert gen[ps.COL_CYCLE_FREQ] in {math.ceil(n * p) for p in percs}
                assert gen[ps.COL_AR_WINDOW] == ps.ar_window(gen[ps.COL_AR_RHO])
            elif code == ps.GEN_GAUSSIAN:
                assert gen[ps.COL_MEAN] == (lo + hi) / 2
                assert gen[ps.COL_STD] == max((hi - lo) / 4, 1e-6)
            elif code == ps.GEN_BETA:
                assert 0.5 <= gen[ps.COL_BETA_A] < 5.0 and 0.5 <= gen[ps.COL_BETA_B] < 5.0
    assert stats.chisquare(list(type_counts.values())).pvalue > P_MIN
    assert sub_counts[2] > 0 and sub_counts[3] > 0
    assert stats.chisquare(list(sub_counts.values())).pvalue > P_MIN


def test_plan_categorical_sources():
    rng = plan_rng(4, "plan")
    saw_ts = saw_iid = False
    for i in range(500):
        k = int(rng.integers(2, 11))
        src = ps.plan_categorical_source(rng, SCM_DEFAULTS, 100, k, bool(i % 2))
        assert src.num_categories == k
        if src.gen_type == "ts":
            saw_ts = True
            assert src.gens.shape == (k, ps.GEN_WIDTH) and src.probs.size == 0
            assert (src.gens[:, ps.COL_TYPE] == ps.GEN_TS).all()
        else:
            saw_iid = True
            assert src.gens.shape == (0, ps.GEN_WIDTH) and src.probs.shape == (k,)
            assert src.probs.sum() == pytest.approx(1.0, abs=1e-12)
            assert (src.probs >= 0).all()
    assert saw_ts and saw_iid


def test_plan_is_deterministic_and_bank_layout():
    def plan(seed):
        rng = plan_rng(seed, "det")
        return [
            ps.plan_numerical_source(rng, with_types("mixed"), 50, True),
            ps.plan_categorical_source(rng, with_types("ts"), 50, 3, True),
            ps.plan_categorical_source(rng, with_types("beta"), 50, 4, False),
            ps.plan_numerical_source(rng, with_types("ts"), 50, False),
        ]

    a, b = plan(1), plan(1)
    for x, y in zip(a, b):
        assert x.gens.tobytes() == y.gens.tobytes()
    assert a[2].probs.tobytes() == b[2].probs.tobytes()
    bank = ps.SourceBank.from_sources(50, a, [1, 2, 3, 4])
    m = a[0].gens.shape[0]
    assert bank.kind.tolist() == [ps.NUMERICAL, ps.CATEGORICAL_TS, ps.CATEGORICAL_IID, ps.NUMERICAL]
    assert bank.gen_start.tolist() == [0, m, m + 3, m + 3]
    assert bank.gen_stop.tolist() == [m, m + 3, m + 3, m + 4]
    assert bank.cdf_start.tolist() == [0, 0, 0, 4] and bank.cdf_stop.tolist() == [0, 0, 4, 4]
    assert bank.num_categories.tolist() == [0, 3, 4, 0]
    assert bank.cdfs.tobytes() == np.cumsum(a[2].probs).tobytes()
    assert bank.keys.dtype == np.uint64 and bank.keys.tolist() == [1, 2, 3, 4]
    assert bank.gens.shape == (m + 4, ps.GEN_WIDTH)


def test_ar_window():
    assert ps.ar_window(0.0) == 0
    for rho in (1e-300, 0.01, 0.5, 0.9, 0.9 - 1e-12, 0.99):
        w = ps.ar_window(rho)
        assert rho**w <= 1e-18 < rho ** (w - 1)
    assert ps.ar_window(0.9) == 394


# ---------------------------------------------------------------------------
# (e) edge cases and bad inputs
# ---------------------------------------------------------------------------


def test_empty_tables_and_banks():
    empty = ps.SourceBank.from_sources(10, [], [])
    assert source_values(empty, 10).shape == (10, 0)
    rng = plan_rng(0, "empty")
    src = ps.plan_numerical_source(rng, with_types("ts"), 0, True)
    assert run([src], 0).shape == (0, 1)


def test_bad_inputs():
    n = 100
    good = numerical("uniform", n, ps.uniform_generator(0.0, 1.0))
    bank = ps.SourceBank.from_sources(n, [good], [1])
    with pytest.raises(ValueError, match="num_rows"):
        source_values(bank, n + 1)
    with pytest.raises(ValueError, match="start"):
        source_values(bank, n, 5, 4)
    with pytest.raises(ValueError, match="stop"):
        source_values(bank, n, 0, n + 1)
    with pytest.raises(ValueError, match="out"):
        source_values(bank, n, 0, 10, out=np.empty((10, 2)))
    with pytest.raises(ValueError, match="one key per source"):
        ps.SourceBank.from_sources(n, [good], [])
    with pytest.raises(ValueError, match="planned for 100 rows"):
        ps.SourceBank.from_sources(50, [good], [1])
    with pytest.raises(ValueError, match="lo <= hi"):
        numerical("uniform", n, ps.uniform_generator(2.0, 1.0))
    with pytest.raises(ValueError, match="one ts generator"):
        numerical("ts", n, ps.uniform_generator(0.0, 1.0))
    with pytest.raises(ValueError, match="mixed"):
        ts = ps.ts_generator(0, 1, 1, 1, 10, 1, 1, 0.5)
        numerical("mixed", n, ts, ps.uniform_generator(0, 1))
    with pytest.raises(ValueError, match="rho"):
        ps.ts_generator(0, 1, 1, 1, 10, 1, 1, 1.0)
    with pytest.raises(ValueError, match="probs"):
        ps.CategoricalSource("uniform", n, 3, np.zeros((0, ps.GEN_WIDTH)), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="gen_type"):
        ps.plan_numerical_source(plan_rng(0), with_types("poisson"), n, True)
