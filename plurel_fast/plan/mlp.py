"""Planning the MLPs and embedding tables of one SCM (DESIGN §4.2).

Every encoder, decoder and collation encoder of an SCM is an MLP (and the
categorical ones an embedding table too). All their parameters are drawn once
per table from the planning ``numpy.random.Generator``: an :class:`MlpBank`
collects them and :meth:`MlpBank.freeze` packs them into one
:class:`MlpBankArrays`, a handful of flat numpy arrays that the kernels of
``plurel_fast.kernels.mlp`` walk (layout in that module's docstring).

A default database has thousands of MLPs, tens of thousands of weight
matrices and ~10^7 weights, so the bank works in bulk:
:meth:`MlpBank.add_mlps` and :meth:`MlpBank.add_embeddings` make the scalar
decisions of many MLPs / tables with a few vectorised draws, and
:meth:`MlpBank.freeze` draws every pending scale with one call and every
weight with one 64-bit key handed to the counter-based kernel
``plurel_fast.kernels.weights`` (law and counters in its docstring).

Order of the draws (it fixes the distribution, not the bytes, but stays fixed
so a seed keeps its meaning):

- :meth:`MlpBank.add_mlps` of n MLPs: one uniform per MLP for the layer
  counts ``L_i`` (``mlp_num_layers_choices``); then, over the T = ΣL_i weight
  matrices in order, one uniform each for the init (``initialization_choices``),
  then one each for the density ``d`` (``mlp_weight_density_choices``); one
  each for the activations of the T - n hidden layers
  (``activation_choices``); then the parameters of the S ``random_sine``
  layers among them (:func:`random_sine_params_many`).
  :meth:`MlpBank.add_mlp` is ``add_mlps`` of one MLP.
- :meth:`MlpBank.add_embeddings`: one uniform per table for its init.
- :meth:`MlpBank.freeze`, for each generator in order of first use, over what
  was added with it since the last freeze: one ``rng.uniform(-1, 1, H)`` for
  the scales ``s = exp(u)`` of the H hidden layers; then one 64-bit key
  (:func:`weight_key`) from which the kernel draws the weight matrices and
  then the embedding tables, in order of addition.

Each matrix has the law of the per-matrix reference :func:`init_matrix`
followed by :func:`apply_density` (the tests compare the two).

A bank made with ``MlpBank(lazy=True)`` (what ``plan_scm`` uses) records the
key and the draw index of every weight matrix instead of drawing it: the SCM
kernels draw each node's matrices when they reach the node (``weights_of``,
``kernels.weights.draw_layers``), so a wide SCM never holds all its weights
at once (tens of MB on a default database), and the bytes are those an eager
bank stores. Embedding tables are always drawn at freeze.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np

from plurel_fast.kernels.mlp import ACTIVATION_NAMES, LINEAR, RANDOM_SINE
from plurel_fast.kernels.weights import (
    INIT_NAMES,
    SPARSE_STD,
    SPARSITY,
    TRUNC_BOUND,
    draw_layers,
    draw_weights,
)

ACTIVATION_CODES: dict[str, int] = {name: code for code, name in enumerate(ACTIVATION_NAMES)}
INIT_CODES: dict[str, int] = {name: code for code, name in enumerate(INIT_NAMES)}

_LOG_SINE_FREQ = (math.log(0.1), math.log(10.0))


def init_matrix(rng: np.random.Generator, name: str, rows: int, cols: int) -> np.ndarray:
    """A weight matrix stored as (in=rows, out=cols), initialised like torch.

    torch reads a 2-D tensor's fan_in as ``size(1)`` and fan_out as
    ``size(0)``, so here fan_in = ``cols`` and fan_out = ``rows`` (DESIGN §4.2).
    Embedding tables (categories × dim) pass rows=categories, cols=dim.

    This is the simple per-matrix version: :class:`MlpBank` draws all its
    matrices at once with :func:`draw_matrices`, with the same law.

    Parameters
    ----------
    rng : np.random.Generator
        Planning generator. Draws: one array of ``rows * cols`` normals or
        uniforms; ``trunc_normal`` then redraws the entries outside ±2 until
        none is left; ``sparse`` then draws ``rows * cols`` uniforms whose
        per-column order picks the zeroed rows.
    name : str
        One of ``INIT_NAMES``: ``kaiming_normal`` N(0, 2/fan_in),
        ``kaiming_uniform`` U(±sqrt(6/fan_in)), ``xavier_normal``
        N(0, 2/(fan_in+fan_out)), ``xavier_uniform``
        U(±sqrt(6/(fan_in+fan_out))), ``trunc_normal`` N(0, 1) cut at ±2,
        ``sparse`` N(0, 0.01²) with ceil(0.5 · rows) entries of every column
        set to zero.
    rows, cols : int
        Shape, both >= 1.

    Returns
    -------
    np.ndarray of float32, shape (rows, cols)
    """
    rows, cols = _dim("rows", rows), _dim("cols", cols)
    fan_in, fan_out = cols, rows
    shape = (rows, cols)
    if name == "kaiming_normal":
        w = rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)
    elif name == "kaiming_uniform":
        bound = math.sqrt(6.0 / fan_in)
        w = rng.uniform(-bound, bound, shape)
    elif name == "xavier_normal":
        w = rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), shape)
    elif name == "xavier_uniform":
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-bound, bound, shape)
    elif name == "trunc_normal":
        w = rng.standard_normal(shape)
        outside = np.abs(w) > TRUNC_BOUND
        while outside.any():
            w[outside] = rng.standard_normal(int(outside.sum()))
            outside = np.abs(w) > TRUNC_BOUND
    elif name == "sparse":
        w = rng.normal(0.0, SPARSE_STD, shape)
        num_zeros = math.ceil(SPARSITY * rows)
        # the first num_zeros rows of a random order, independently per column
        zero_rows = np.argsort(rng.random(shape), axis=0, kind="stable")[:num_zeros]
        w[zero_rows, np.arange(cols)[None, :]] = 0.0
    else:
        raise ValueError(f"unknown initialization {name!r}; known: {', '.join(INIT_NAMES)}")
    return w.astype(np.float32)


def apply_density(rng: np.random.Generator, w: np.ndarray, density: float) -> np.ndarray:
    """``w * Bernoulli(density) / density`` (variance-keeping sparsification, DESIGN §4.2).

    Draws ``w.size`` uniforms; an entry is kept when its uniform is below
    ``density``. Returns a new float32 array. (Per-matrix reference, like
    :func:`init_matrix`.)
    """
    density = float(density)
    if not 0.0 < density <= 1.0:
        raise ValueError(f"mlp weight density must be in (0, 1], got {density}")
    keep = rng.random(w.shape) < density
    return (np.where(keep, w.astype(np.float64), 0.0) / density).astype(np.float32)


def random_sine_params(rng: np.random.Generator) -> np.ndarray:
    """Frozen parameters of one ``random_sine`` activation, packed ``[m, a, f, phi]``.

    Draws, in order: ``m`` uniform in {3..7}; ``a`` (m standard normals);
    ``f = exp(U[ln 0.1, ln 10))`` (m draws); ``phi ~ U[0, 2π)`` (m draws).
    """
    m = int(rng.integers(3, 8))
    amplitudes = rng.standard_normal(m)
    freqs = np.exp(rng.uniform(math.log(0.1), math.log(10.0), m))
    phases = rng.uniform(0.0, 2.0 * math.pi, m)
    return np.concatenate([[m], amplitudes, freqs, phases]).astype(np.float32)


def random_sine_params_many(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The parameters of ``count`` ``random_sine`` activations, packed one after another.

    Each layer's block is ``[m, a[m], f[m], phi[m]]`` with the law of
    :func:`random_sine_params`. Draws, in order: the ``count`` values of m;
    then the a, the f and the phi of all layers (Σm draws each).

    Returns
    -------
    params : float32 (Σ(1 + 3 m),)
    offsets : int64 (count,)
        Start of each layer's block in ``params``.
    """
    ms = rng.integers(3, 8, count)
    total = int(ms.sum())
    amplitudes = rng.standard_normal(total)
    freqs = np.exp(rng.uniform(*_LOG_SINE_FREQ, total))
    phases = rng.uniform(0.0, 2.0 * math.pi, total)
    sizes = 1 + 3 * ms
    offsets = _exclusive_cumsum(sizes)
    params = np.empty(int(sizes.sum()), dtype=np.float32)
    params[offsets] = ms
    # position of the k-th parameter of layer l inside its block: 1 + k
    within = np.arange(total) - np.repeat(_exclusive_cumsum(ms), ms)
    base = np.repeat(offsets, ms) + 1 + within
    m_of = np.repeat(ms, ms)
    params[base] = amplitudes
    params[base + m_of] = freqs
    params[base + 2 * m_of] = phases
    return params, offsets


def weight_key(rng: np.random.Generator) -> np.uint64:
    """One 64-bit key for ``kernels.weights.draw_weights``, from the planning generator."""
    return rng.integers(0, 1 << 64, dtype=np.uint64)


def draw_matrices(rng: np.random.Generator, rows, cols, inits, densities=None) -> np.ndarray:
    """Many weight matrices at once, each with the law of :func:`init_matrix` then :func:`apply_density`.

    Draws one key (:func:`weight_key`) from the planning generator ``rng`` and
    hands it, with the other arguments unchanged, to the counter-based kernel
    ``plurel_fast.kernels.weights.draw_weights`` (arguments, result, law and
    counters in its docstring): the result is a function of the generator's
    state alone, whatever the thread count.
    """
    return draw_weights(weight_key(rng), rows, cols, inits, densities)


def _exclusive_cumsum(values, total: bool = False) -> np.ndarray:
    """``[0, v0, v0+v1, …]`` (int64), with the grand total at the end if ``total``."""
    out = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(values, out=out[1:])
    return out if total else out[:-1]


def _ranges(starts, lengths) -> np.ndarray:
    """``concatenate([arange(s, s + n) for s, n in zip(starts, lengths)])``, vectorised."""
    lengths = np.asarray(lengths, dtype=np.int64)
    shift = np.asarray(starts, dtype=np.int64) - _exclusive_cumsum(lengths)
    return np.repeat(shift, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)


class MlpBankArrays(msgspec.Struct, frozen=True):
    """The MLPs and embedding tables of one SCM as flat arrays (DESIGN §4.2).

    Built by :meth:`MlpBank.freeze`; read by ``plurel_fast.kernels.mlp``.

    Attributes
    ----------
    weights : float32 (W,)
        Every weight matrix, row-major with shape (in_dim, out_dim); empty
        when ``lazy`` (the offsets in ``layers`` still place each matrix in
        the flat array :meth:`materialise` would fill).
    layers : int64 (num_layers, 5)
        ``[weight_offset, in_dim, out_dim, act_code, act_param_offset]``;
        ``act_code`` indexes ``ACTIVATION_NAMES`` and is -1 on the last
        (linear) layer of each MLP; ``act_param_offset`` is -1 unless the
        activation is ``random_sine``.
    layer_scale : float32 (num_layers,)
        Scale ``s = exp(U[-1, 1])`` of each hidden layer, 1 on last layers.
    act_params : float32 (P,)
        Per ``random_sine`` layer: ``m``, then ``a[m]``, ``f[m]``, ``phi[m]``.
    mlps : int64 (num_mlps, 2)
        ``[first_layer, num_layers]``; an MLP's layers are consecutive.
    emb_offsets : int64 (num_tables, 3)
        ``[offset, num_categories, dim]`` of each embedding table.
    emb_weights : float32 (E,)
        Every embedding table, row-major with shape (num_categories, dim).
    layer_init, emb_init : int64 (num_layers,), (num_tables,)
        Index in ``INIT_NAMES`` of the init used (-1: weights given as is);
        for inspection only.
    layer_density : float64 (num_layers,)
        Density ``d`` of the Bernoulli mask (1: no mask).
    max_width : int
        Largest in/out width of any layer (scratch buffer width).
    layer_key : uint64 (num_layers,)
        Key of the ``kernels.weights.draw_weights`` call that draws each
        matrix (0 for a given matrix).
    layer_draw : int64 (num_layers,)
        Index of each matrix in that call (-1 for a given matrix).
    lazy : bool
        True when ``weights`` is not stored: matrices are drawn on demand
        from ``layer_key`` / ``layer_draw`` (:meth:`weights_of`).
    """

    weights: np.ndarray
    layers: np.ndarray
    layer_scale: np.ndarray
    act_params: np.ndarray
    mlps: np.ndarray
    emb_offsets: np.ndarray
    emb_weights: np.ndarray
    layer_init: np.ndarray
    layer_density: np.ndarray
    emb_init: np.ndarray
    max_width: int
    layer_key: np.ndarray
    layer_draw: np.ndarray
    lazy: bool = False

    @property
    def num_mlps(self) -> int:
        return int(self.mlps.shape[0])

    @property
    def num_embeddings(self) -> int:
        return int(self.emb_offsets.shape[0])

    def mlp_dims(self, mlp_id: int) -> tuple[int, int]:
        """``(in_dim, out_dim)`` of an MLP."""
        first, count = (int(v) for v in self.mlps[mlp_id])
        return int(self.layers[first, 1]), int(self.layers[first + count - 1, 2])

    def weight_matrix(self, layer: int) -> np.ndarray:
        """One layer's weight matrix, shape (in_dim, out_dim): a view, or drawn when lazy."""
        off, rows, cols = (int(v) for v in self.layers[layer, :3])
        if self.lazy:
            local = self.layers.copy()
            local[layer, 0] = 0
            out = np.empty(rows * cols, dtype=np.float32)
            self._draw(np.array([layer], dtype=np.int64), local, out)
            return out.reshape(rows, cols)
        return self.weights[off : off + rows * cols].reshape(rows, cols)

    def weights_of(self, mlp_ids) -> tuple[np.ndarray, np.ndarray]:
        """``(layers, weights)`` that hold at least the MLPs ``mlp_ids`` (ids < 0 ignored).

        The bank's own arrays when it stores its weights; when lazy, a copy of
        ``layers`` whose offsets point into a new array holding just those
        MLPs' matrices, drawn now. Either pair goes to the kernels of
        ``plurel_fast.kernels.mlp`` in place of ``(layers, weights)``.
        """
        if not self.lazy:
            return self.layers, self.weights
        ids = np.unique(np.asarray(mlp_ids, dtype=np.int64).reshape(-1))
        ids = ids[ids >= 0]
        first, count = self.mlps[ids, 0], self.mlps[ids, 1]
        chosen = _ranges(first, count)
        sizes = self.layers[chosen, 1] * self.layers[chosen, 2]
        local = self.layers.copy()
        local[chosen, 0] = np.cumsum(sizes) - sizes
        out = np.empty(int(sizes.sum()), dtype=np.float32)
        self._draw(chosen, local, out)
        return local, out

    def materialise(self) -> MlpBankArrays:
        """The same bank with every weight drawn and stored (itself if not lazy)."""
        if not self.lazy:
            return self
        total = int((self.layers[:, 1] * self.layers[:, 2]).sum())
        out = np.empty(total, dtype=np.float32)
        self._draw(np.arange(self.layers.shape[0], dtype=np.int64), self.layers, out)
        return msgspec.structs.replace(self, weights=out, lazy=False)

    def _draw(self, layer_ids: np.ndarray, layers: np.ndarray, out: np.ndarray) -> None:
        if layer_ids.size:
            draw_layers(layer_ids, layers, self.layer_key, self.layer_draw, self.layer_init,
                        self.layer_density, out)

    def embedding_table(self, emb_id: int) -> np.ndarray:
        """View of one embedding table, shape (num_categories, dim)."""
        off, rows, cols = (int(v) for v in self.emb_offsets[emb_id])
        return self.emb_weights[off : off + rows * cols].reshape(rows, cols)

    def describe(self, mlp_id: int) -> str:
        """One line per layer: widths, activation, scale, init and density."""
        first, count = (int(v) for v in self.mlps[mlp_id])
        lines = [f"mlp {mlp_id}: {count} layer(s)"]
        for layer in range(first, first + count):
            _, rows, cols, code, _ = (int(v) for v in self.layers[layer])
            act = "linear" if code == LINEAR else ACTIVATION_NAMES[code]
            init = INIT_NAMES[self.layer_init[layer]] if self.layer_init[layer] >= 0 else "given"
            lines.append(
                f"  {rows:>3} -> {cols:<3} {act:<13} s={float(self.layer_scale[layer]):.3f} "
                f"init={init} d={float(self.layer_density[layer]):.2f}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"MlpBankArrays({self.num_mlps} mlps, {self.layers.shape[0]} layers, "
            f"{'lazy' if self.lazy else self.weights.size} weights, {self.num_embeddings} embedding tables "
            f"({self.emb_weights.size} weights), {self.act_params.size} act params, "
            f"max_width={self.max_width})"
        )


class MlpBank:
    """Accumulates the MLPs and embedding tables of one SCM, then packs them.

    Ids are consecutive from 0 in order of addition (separately for MLPs and
    embedding tables). Call :meth:`freeze` once everything is added.

    The bank keeps a reference to every generator given to :meth:`add_mlp` and
    :meth:`add_embedding`, and :meth:`freeze` draws the weights and scales from
    it (draw order in the module docstring), after whatever the caller drew
    from it in between: a deterministic function of the generator's state
    either way. Usually all calls share one generator; with several, the
    weights of each MLP and table come from its own generator alone.

    With ``lazy=True`` :meth:`freeze` draws the scales, keys and embedding
    tables but no weight matrix (see the module docstring); such a bank takes
    no given matrices (:meth:`add_mlp_layers`).
    """

    def __init__(self, lazy: bool = False):
        self._lazy = bool(lazy)
        # one entry per layer; init -1 and rng -1 mark a given matrix, scale
        # NaN one drawn by freeze
        self._layers = _Columns(
            rows=np.int64, cols=np.int64, act=np.int64, act_offset=np.int64, scale=np.float64,
            init=np.int64, density=np.float64, rng=np.int64, key=np.uint64, draw=np.int64,
        )  # fmt: skip
        self._given: dict[int, np.ndarray] = {}
        self._mlps = _Columns(first=np.int64, count=np.int64)
        self._act_params: list[np.ndarray] = []
        self._num_act_params = 0
        # one entry per embedding table
        self._tables = _Columns(rows=np.int64, cols=np.int64, init=np.int64, rng=np.int64)
        self._given_tables: dict[int, np.ndarray] = {}
        # generators in order of first use, and the last one (the usual case)
        self._rngs: list[np.random.Generator] = []
        self._last_rng: np.random.Generator | None = None
        self._last_rng_id = -1
        # drawn by earlier freezes: layers [0, _layers_drawn), tables [0, _tables_drawn)
        self._weight_blocks: list[np.ndarray] = []
        self._table_blocks: list[np.ndarray] = []
        self._layers_drawn = 0
        self._tables_drawn = 0

    @property
    def num_mlps(self) -> int:
        return self._mlps.size

    @property
    def num_embeddings(self) -> int:
        return self._tables.size

    def add_mlp(self, rng: np.random.Generator, in_dim: int, hid_dim: int, out_dim: int, scm_params) -> int:
        """Plan one MLP ``in_dim → hid_dim → … → hid_dim → out_dim`` (DESIGN §4.2).

        :meth:`add_mlps` of a single MLP; returns its id.
        """
        in_dim, out_dim = _dim("in_dim", in_dim), _dim("out_dim", out_dim)
        return int(self.add_mlps(rng, [in_dim], hid_dim, [out_dim], scm_params)[0])

    def add_mlps(self, rng: np.random.Generator, in_dims, hid_dim: int, out_dims, scm_params) -> np.ndarray:
        """Plan n MLPs ``in_dims[i] → hid_dim → … → hid_dim → out_dims[i]`` (DESIGN §4.2).

        Draws the layer count, the init and density of every weight matrix and
        the activation (and ``random_sine`` parameters) of every hidden layer
        now, a few vectorised calls for all n; :meth:`freeze` draws the scales
        and weights from the same ``rng``. Nothing is added if anything fails.

        Parameters
        ----------
        rng : np.random.Generator
            Planning generator; draw order in the module docstring.
        in_dims, out_dims : int array (n,)
            First and last widths, each >= 1.
        hid_dim : int
            Hidden width, >= 1.
        scm_params : SCMParams-like
            Reads the :class:`~plurel_fast.config.Choices`
            ``mlp_num_layers_choices``, ``initialization_choices``,
            ``mlp_weight_density_choices`` and ``activation_choices`` (the
            last two sets of names).

        Returns
        -------
        int64 array (n,)
            The MLP ids, consecutive.
        """
        in_dims, out_dims = _dims("in_dims", in_dims), _dims("out_dims", out_dims)
        if in_dims.shape != out_dims.shape:
            raise ValueError(
                f"in_dims and out_dims need one entry per MLP, got {in_dims.size} and {out_dims.size}"
            )
        hid_dim = _dim("hid_dim", hid_dim)
        n = in_dims.size
        first_id = self._mlps.size
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        rng_id = self._use_rng(rng)
        num_layers = _num_layers(scm_params.mlp_num_layers_choices.sample_many(rng, n))
        total = int(num_layers.sum())
        inits = _codes(scm_params.initialization_choices, "initialization_choices", INIT_CODES, rng, total)
        densities = _densities(scm_params.mlp_weight_density_choices.sample_many(rng, total))
        ends = np.cumsum(num_layers)
        starts = ends - num_layers
        last = np.zeros(total, dtype=bool)
        last[ends - 1] = True
        hidden = ~last
        acts = _codes(scm_params.activation_choices, "activation_choices", ACTIVATION_CODES, rng, total - n)
        sine = np.flatnonzero(acts == RANDOM_SINE)
        params, offsets = random_sine_params_many(rng, sine.size)
        # nothing below can fail: the bank changes only now
        rows = np.full(total, hid_dim, dtype=np.int64)
        rows[starts] = in_dims
        cols = np.full(total, hid_dim, dtype=np.int64)
        cols[ends - 1] = out_dims
        act = np.full(total, LINEAR, dtype=np.int64)
        act[hidden] = acts
        act_offset = np.full(total, -1, dtype=np.int64)
        if sine.size:
            hidden_offset = np.full(total - n, -1, dtype=np.int64)
            hidden_offset[sine] = self._num_act_params + offsets
            act_offset[hidden] = hidden_offset
            self._act_params.append(params)
            self._num_act_params += params.size
        first_layer = self._layers.size
        self._layers.append(
            total, rows=rows, cols=cols, act=act, act_offset=act_offset,
            scale=np.where(last, 1.0, math.nan), init=inits, density=densities, rng=rng_id,
            key=0, draw=-1,
        )  # fmt: skip
        self._mlps.append(n, first=first_layer + starts, count=num_layers)
        return np.arange(first_id, first_id + n, dtype=np.int64)

    def add_mlp_layers(self, matrices, activations, scales=None, act_params=None) -> int:
        """Add an MLP with given weights (tests, benchmarks, hand-built SCMs).

        Parameters
        ----------
        matrices : sequence of L arrays
            Weight matrices, shape (in, out), consecutive widths agreeing.
        activations : sequence of L - 1 str
            Activation name of each hidden layer.
        scales : sequence of L - 1 float, optional
            Hidden-layer scales (default 1).
        act_params : sequence of L - 1 (array or None), optional
            ``[m, a[m], f[m], phi[m]]`` for ``random_sine`` layers.

        Returns
        -------
        int
            The MLP id.
        """
        if self._lazy:
            raise ValueError("a lazy MlpBank draws every weight matrix; given matrices need MlpBank()")
        matrices = [np.asarray(w, dtype=np.float32) for w in matrices]
        num_layers = len(matrices)
        if num_layers < 1:
            raise ValueError("an MLP needs at least one weight matrix")
        activations = list(activations)
        if len(activations) != num_layers - 1:
            raise ValueError(
                f"{num_layers} weight matrices need {num_layers - 1} activations, got {len(activations)}"
            )
        scales = [1.0] * (num_layers - 1) if scales is None else [float(s) for s in scales]
        act_params = [None] * (num_layers - 1) if act_params is None else list(act_params)
        if len(scales) != num_layers - 1 or len(act_params) != num_layers - 1:
            raise ValueError(f"scales and act_params need {num_layers - 1} entries each")
        for layer, w in enumerate(matrices):
            if w.ndim != 2 or min(w.shape) < 1:
                raise ValueError(f"weight matrix {layer} must be 2-D and non-empty, got shape {w.shape}")
            if layer and w.shape[0] != matrices[layer - 1].shape[1]:
                raise ValueError(
                    f"weight matrix {layer} has {w.shape[0]} input rows but the previous "
                    f"layer outputs {matrices[layer - 1].shape[1]}"
                )
        for layer, name in enumerate(activations):
            if name not in ACTIVATION_CODES:
                raise ValueError(f"unknown activation {name!r} for hidden layer {layer}")
            if name == "random_sine":
                p = act_params[layer]
                if p is None:
                    raise ValueError(f"hidden layer {layer} is random_sine but has no act_params")
                p = np.asarray(p, dtype=np.float32)
                m = int(p[0]) if p.size else 0
                if m < 1 or p.shape != (1 + 3 * m,):
                    raise ValueError(
                        f"random_sine params of hidden layer {layer} must be [m, a[m], f[m], phi[m]], "
                        f"got shape {p.shape}"
                    )
                act_params[layer] = p
        first = self._layers.size
        codes, offsets = [], []
        for layer, w in enumerate(matrices):
            code, offset = LINEAR, -1
            if layer < num_layers - 1:
                code = ACTIVATION_CODES[activations[layer]]
                if code == RANDOM_SINE:
                    offset = self._num_act_params
                    self._act_params.append(act_params[layer])
                    self._num_act_params += act_params[layer].size
            self._given[first + layer] = w
            codes.append(code)
            offsets.append(offset)
        self._layers.append(
            num_layers, rows=[w.shape[0] for w in matrices], cols=[w.shape[1] for w in matrices],
            act=codes, act_offset=offsets, scale=scales + [1.0], init=-1, density=1.0, rng=-1,
            key=0, draw=-1,
        )  # fmt: skip
        self._mlps.append(1, first=first, count=num_layers)
        return self._mlps.size - 1

    def add_embedding(self, rng: np.random.Generator, num_categories: int, dim: int, scm_params) -> int:
        """Plan one embedding table (num_categories × dim): :meth:`add_embeddings` of one."""
        num_categories = _dim("num_categories", num_categories)
        return int(self.add_embeddings(rng, [num_categories], dim, scm_params)[0])

    def add_embeddings(self, rng: np.random.Generator, num_categories, dim: int, scm_params) -> np.ndarray:
        """Plan n embedding tables (num_categories[i] × dim) (DESIGN §4.2).

        The inits are picked from ``scm_params.initialization_choices`` now
        (one uniform each) and applied by :meth:`freeze` (same ``rng``) with
        fan_in = ``dim``, fan_out = ``num_categories[i]``; no density mask.

        Returns
        -------
        int64 array (n,)
            The embedding table ids, consecutive.
        """
        num_categories = _dims("num_categories", num_categories)
        dim = _dim("dim", dim)
        n = num_categories.size
        first_id = self._tables.size
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        rng_id = self._use_rng(rng)
        inits = _codes(scm_params.initialization_choices, "initialization_choices", INIT_CODES, rng, n)
        self._tables.append(n, rows=num_categories, cols=dim, init=inits, rng=rng_id)
        return np.arange(first_id, first_id + n, dtype=np.int64)

    def add_embedding_table(self, table) -> int:
        """Add a given embedding table, shape (num_categories, dim); returns its id."""
        table = np.ascontiguousarray(table, dtype=np.float32)
        if table.ndim != 2 or min(table.shape) < 1:
            raise ValueError(f"an embedding table must be 2-D and non-empty, got shape {table.shape}")
        self._given_tables[self._tables.size] = table
        self._tables.append(1, rows=table.shape[0], cols=table.shape[1], init=-1, rng=-1)
        return self._tables.size - 1

    def freeze(self) -> MlpBankArrays:
        """Draw what is pending, then pack everything into an :class:`MlpBankArrays`.

        Draws the scales and weights of everything added since the last call
        (order in the module docstring); calling it again without adding
        anything returns equal arrays.
        """
        self._draw_pending()
        column, t_column = self._layers.column, self._tables.column
        layers = np.zeros((self._layers.size, 5), dtype=np.int64)
        layers[:, 1] = column("rows")
        layers[:, 2] = column("cols")
        layers[:, 3] = column("act")
        layers[:, 4] = column("act_offset")
        sizes = layers[:, 1] * layers[:, 2]
        np.cumsum(sizes[:-1], out=layers[1:, 0])
        emb_offsets = np.zeros((self._tables.size, 3), dtype=np.int64)
        emb_offsets[:, 1] = t_column("rows")
        emb_offsets[:, 2] = t_column("cols")
        np.cumsum(emb_offsets[:-1, 1] * emb_offsets[:-1, 2], out=emb_offsets[1:, 0])
        return MlpBankArrays(
            weights=np.zeros(0, dtype=np.float32) if self._lazy else _flat(self._weight_blocks),
            layers=layers,
            layer_scale=column("scale").astype(np.float32),
            act_params=_flat(self._act_params),
            mlps=np.column_stack([self._mlps.column("first"), self._mlps.column("count")]),
            emb_offsets=emb_offsets,
            emb_weights=_flat(self._table_blocks),
            layer_init=column("init").copy(),
            layer_density=column("density").copy(),
            emb_init=t_column("init").copy(),
            max_width=int(layers[:, 1:3].max(initial=1)),
            layer_key=column("key").copy(),
            layer_draw=column("draw").copy(),
            lazy=self._lazy,
        )

    def _use_rng(self, rng) -> int:
        """Id of a generator in ``_rngs`` (registered on first use); sets the last one."""
        if rng is self._last_rng:  # the common case: the same generator again
            return self._last_rng_id
        for rng_id, known in enumerate(self._rngs):
            if known is rng:
                break
        else:
            if not isinstance(rng, np.random.Generator):
                raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
            self._rngs.append(rng)
            rng_id = len(self._rngs) - 1
        self._last_rng, self._last_rng_id = rng, rng_id
        return rng_id

    def _draw_pending(self) -> None:
        """Draw the scales and matrices added since the last freeze, per generator."""
        first_layer, first_table = self._layers_drawn, self._tables_drawn
        if first_layer == self._layers.size and first_table == self._tables.size:
            return
        column, t_column = self._layers.column, self._tables.column
        rows, cols = column("rows")[first_layer:], column("cols")[first_layer:]
        inits, densities = column("init")[first_layer:], column("density")[first_layer:]
        scales = column("scale")[first_layer:]  # a view: the scales are drawn in place
        layer_rng = column("rng")[first_layer:]
        layer_key, layer_draw = column("key")[first_layer:], column("draw")[first_layer:]  # views
        t_rows, t_cols = t_column("rows")[first_table:], t_column("cols")[first_table:]
        t_inits, t_rng = t_column("init")[first_table:], t_column("rng")[first_table:]
        sizes, t_sizes = rows * cols, t_rows * t_cols
        weights = np.empty(0 if self._lazy else int(sizes.sum()), dtype=np.float32)
        tables = np.empty(int(t_sizes.sum()), dtype=np.float32)
        for rng_id, rng in enumerate(self._rngs):
            mine, t_mine = layer_rng == rng_id, t_rng == rng_id
            num_mine, num_t_mine = int(mine.sum()), int(t_mine.sum())
            if not num_mine + num_t_mine:
                continue
            hidden = mine & np.isnan(scales)
            if hidden.any():
                scales[hidden] = np.exp(rng.uniform(-1.0, 1.0, int(hidden.sum())))
            # layers then tables, as matrices 0, 1, ... of one kernel call (tables: no mask)
            key = weight_key(rng)
            layer_key[mine] = key
            layer_draw[mine] = np.arange(num_mine)
            if self._lazy:  # the tables alone, as those same matrices of that call
                t_layers = np.zeros((num_t_mine, 3), dtype=np.int64)
                t_layers[:, 1], t_layers[:, 2] = t_rows[t_mine], t_cols[t_mine]
                t_layers[1:, 0] = np.cumsum(t_sizes[t_mine])[:-1]
                drawn = np.empty(int(t_sizes[t_mine].sum()), dtype=np.float32)
                draw_layers(
                    np.arange(num_t_mine, dtype=np.int64), t_layers,
                    np.full(num_t_mine, key, dtype=np.uint64),
                    np.arange(num_mine, num_mine + num_t_mine, dtype=np.int64),
                    t_inits[t_mine], np.ones(num_t_mine), drawn,
                )  # fmt: skip
                tables = _place(tables, drawn, t_sizes, t_mine)
                continue
            drawn = draw_weights(
                key,
                np.concatenate([rows[mine], t_rows[t_mine]]),
                np.concatenate([cols[mine], t_cols[t_mine]]),
                np.concatenate([inits[mine], t_inits[t_mine]]),
                np.concatenate([densities[mine], np.ones(num_t_mine)]),
            )
            split = int(sizes[mine].sum())
            weights = _place(weights, drawn[:split], sizes, mine)
            tables = _place(tables, drawn[split:], t_sizes, t_mine)
        if not self._lazy:
            _place_given(weights, sizes, self._given, first_layer)
        _place_given(tables, t_sizes, self._given_tables, first_table)
        self._weight_blocks.append(weights)
        self._table_blocks.append(tables)
        self._layers_drawn, self._tables_drawn = self._layers.size, self._tables.size

    def __repr__(self) -> str:
        return (
            f"MlpBank({self.num_mlps} mlps, {self._layers.size} layers, "
            f"{self.num_embeddings} embedding tables; "
            f"{self._layers.size - self._layers_drawn} layers not drawn yet)"
        )


class _Columns:
    """A table of named numpy columns grown by whole blocks of rows.

    Appending keeps each block as given (no per-row Python objects); reading
    a column joins its blocks once, in place, and returns the stored array.
    """

    def __init__(self, **dtypes):
        self._dtypes = dtypes
        self._blocks: dict[str, list[np.ndarray]] = {name: [] for name in dtypes}
        self.size = 0

    def append(self, n: int, **columns) -> None:
        """Append n rows; each column is given as n values or one scalar for all."""
        for name, dtype in self._dtypes.items():
            values = np.array(columns[name], dtype=dtype)  # a copy: the caller keeps its array
            self._blocks[name].append(np.full(n, values) if values.ndim == 0 else values.reshape(n))
        self.size += n

    def column(self, name: str) -> np.ndarray:
        blocks = self._blocks[name]
        if len(blocks) != 1:
            blocks[:] = [np.concatenate(blocks) if blocks else np.zeros(0, self._dtypes[name])]
        return blocks[0]


def _place(out: np.ndarray, drawn: np.ndarray, sizes: np.ndarray, mine: np.ndarray) -> np.ndarray:
    """Write the matrices ``mine`` (drawn one after another) to their places in ``out``.

    Returns ``drawn`` itself when it is all of them (one generator, nothing given).
    """
    if mine.all():
        return drawn
    out[_ranges(_exclusive_cumsum(sizes)[mine], sizes[mine])] = drawn
    return out


def _place_given(out: np.ndarray, sizes: np.ndarray, given: dict, first: int) -> None:
    """Copy the given matrices of index >= first into ``out`` (index first at 0)."""
    if not given:
        return
    offsets = _exclusive_cumsum(sizes)
    for index, w in given.items():
        if index >= first:
            offset = int(offsets[index - first])
            out[offset : offset + w.size] = w.ravel()


def _flat(arrays) -> np.ndarray:
    if not arrays:
        return np.zeros(0, dtype=np.float32)
    if len(arrays) == 1:
        return np.ascontiguousarray(arrays[0].ravel(), dtype=np.float32)
    return np.ascontiguousarray(np.concatenate([a.ravel() for a in arrays]), dtype=np.float32)


def _dim(name: str, value) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _dims(name: str, values) -> np.ndarray:
    """``values`` as an int64 array (n,) of integers >= 1, or a ValueError naming ``name``."""
    array = np.asarray(values)
    if array.ndim != 1 or not (array.dtype.kind in "iu" or array.size == 0) or (
        array.size and array.min() < 1
    ):
        bad = [
            v for v in np.ravel(array).tolist() if isinstance(v, bool) or not isinstance(v, int) or v < 1
        ]
        raise ValueError(f"{name} must be integers >= 1, got {bad[0] if bad else values!r}")
    return array.astype(np.int64, copy=False)


def _num_layers(values: np.ndarray) -> np.ndarray:
    """Layer counts drawn from ``mlp_num_layers_choices`` as int64, checked."""
    if values.dtype.kind in "iu" and (values.size == 0 or values.min() >= 1):
        return values.astype(np.int64, copy=False)
    for value in values.tolist():
        if (
            isinstance(value, (bool, np.bool_))
            or not isinstance(value, (int, float, np.number))
            or not math.isfinite(value)
            or int(value) != value
            or value < 1
        ):
            raise ValueError(
                f"mlp_num_layers_choices produced {value!r}; an MLP needs an integer >= 1 layers"
            )
    return values.astype(np.int64)


def _densities(values: np.ndarray) -> np.ndarray:
    """Densities drawn from ``mlp_weight_density_choices`` as float64, checked."""
    try:
        densities = values.astype(np.float64)
    except (TypeError, ValueError):
        densities = np.full(values.size, math.nan)
    bad = ~((densities > 0.0) & (densities <= 1.0))
    if bad.any():
        value = values.tolist()[int(np.argmax(bad))]
        raise ValueError(
            f"mlp_weight_density_choices produced {value!r}; a density must be in (0, 1]"
        )
    return densities


def _codes(choices, field: str, codes: dict[str, int], rng: np.random.Generator, n: int) -> np.ndarray:
    """n names drawn from the set ``choices``, as their codes (int64).

    Every name of the set is looked up once per call, not once per draw; a
    name outside ``codes`` is an error only once drawn.
    """
    if getattr(choices, "kind", None) != "set":
        raise ValueError(f"{field} must be Choices(kind='set', value=[...]) of names, got {choices!r}")
    lookup = np.array(
        [codes.get(v, -1) if isinstance(v, str) else -1 for v in choices.value], dtype=np.int64
    )
    drawn = choices.sample_indices(rng, n)
    out = lookup[drawn]
    if out.size and out.min() < 0:
        name = choices.value[drawn[np.argmax(out < 0)]]
        known = "initializations" if codes is INIT_CODES else "activations"
        raise ValueError(f"{field} produced {name!r}; known {known}: {', '.join(codes)}")
    return out
