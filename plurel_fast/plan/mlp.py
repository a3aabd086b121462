"""Planning the MLPs and embedding tables of one SCM (SPEC §4.2).

Every encoder, decoder and collation encoder of an SCM is an MLP (and the
categorical ones an embedding table too). All their parameters are drawn once
per table from the planning ``numpy.random.Generator``: an :class:`MlpBank`
collects them and :meth:`MlpBank.freeze` packs them into one
:class:`MlpBankArrays`, a handful of flat numpy arrays that the kernels of
``plurel_fast.kernels.mlp`` walk (layout in that module's docstring).

A default database has thousands of MLPs, tens of thousands of weight
matrices and ~10^7 weights, so the bank draws in two phases:
:meth:`MlpBank.add_mlp` and :meth:`MlpBank.add_embedding` only make the few
scalar decisions of each MLP and remember the generator; :meth:`MlpBank.freeze`
then draws every pending scale and weight with a handful of vectorised calls
per chunk of ~10^5 weights (:func:`draw_matrices`).

Order of the draws (it fixes the distribution, not the bytes, but stays fixed
so a seed keeps its meaning):

- :meth:`MlpBank.add_mlp`: ``L = mlp_num_layers_choices.sample(rng)``; for each
  of the L weight matrices, in order, the init name
  (``initialization_choices.sample``) then the density ``d``
  (``mlp_weight_density_choices.sample``); for each of the L - 1 hidden layers,
  in order, the activation name (``activation_choices.sample``), and for
  ``random_sine`` then its ``m``, ``a``, ``f``, ``phi``
  (:func:`random_sine_params`).
- :meth:`MlpBank.add_embedding`: the init name.
- :meth:`MlpBank.freeze`, for each generator in order of first use, over what
  was added with it since the last freeze, in order of addition: one
  ``rng.uniform(-1, 1, H)`` for the scales ``s = exp(u)`` of the H hidden
  layers; then the weight matrices, then the embedding tables, each in chunks
  of whole matrices of about ``CHUNK_WEIGHTS`` weights (:func:`draw_matrices`).

Each matrix is a deterministic function of the generator's state, drawn with
the same law as the per-matrix reference :func:`init_matrix` followed by
:func:`apply_density` (the tests compare the two).
"""

from __future__ import annotations

import math

import msgspec
import numpy as np

from plurel_fast.config import INITIALIZATIONS
from plurel_fast.kernels.mlp import ACTIVATION_NAMES, LINEAR, RANDOM_SINE

ACTIVATION_CODES: dict[str, int] = {name: code for code, name in enumerate(ACTIVATION_NAMES)}

INIT_NAMES = INITIALIZATIONS
INIT_CODES: dict[str, int] = {name: code for code, name in enumerate(INIT_NAMES)}
_TRUNC_NORMAL = INIT_CODES["trunc_normal"]
_SPARSE = INIT_CODES["sparse"]

SPARSE_STD = 0.01
SPARSITY = 0.5
TRUNC_BOUND = 2.0

# Per init code: whether its entries are scaled normals (else scaled U(-1, 1)),
# and its scale sqrt(numerator / fan) with fan = fan_in·[uses fan_in] +
# fan_out·[uses fan_out] (1 when neither): the std of the normal inits, the
# bound of the uniform ones.
_INIT_IS_NORMAL = np.array([True, False, True, False, True, True])
_INIT_NUMERATOR = np.array([2.0, 6.0, 2.0, 6.0, 1.0, SPARSE_STD**2])
_INIT_USES_FAN_IN = np.array([1, 1, 1, 1, 0, 0])
_INIT_USES_FAN_OUT = np.array([0, 0, 1, 1, 0, 0])

# Weights per chunk of :func:`draw_matrices`: bounds its temporaries (~30 bytes
# a weight) to a few MB while the ~60 numpy calls of a chunk stay cheap.
CHUNK_WEIGHTS = 1 << 18


def init_matrix(rng: np.random.Generator, name: str, rows: int, cols: int) -> np.ndarray:
    """A weight matrix stored as (in=rows, out=cols), initialised like torch.

    torch reads a 2-D tensor's fan_in as ``size(1)`` and fan_out as
    ``size(0)``, so here fan_in = ``cols`` and fan_out = ``rows`` (SPEC §4.2).
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
    """``w * Bernoulli(density) / density`` (variance-keeping sparsification, SPEC §4.2).

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


def draw_matrices(rng: np.random.Generator, rows, cols, inits, densities=None) -> np.ndarray:
    """Many weight matrices at once, each as :func:`init_matrix` then :func:`apply_density`.

    The bulk path of :meth:`MlpBank.freeze`: the same law as the per-matrix
    reference, with a handful of vectorised calls per chunk of matrices.

    Parameters
    ----------
    rng : np.random.Generator
        Planning generator. The matrices are cut into chunks of whole
        matrices, a new chunk at the first matrix starting at or after each
        multiple of ``CHUNK_WEIGHTS`` weights; per chunk it draws, in order:
        one uniform per weight for the mask (if ``densities`` is given); for
        each distinct row count R of the chunk's ``sparse`` matrices, in
        increasing order, R rounds of one uniform per column that pick its
        ceil(0.5 · R) zero rows (selection sampling); one array of float32
        standard normals for the kept weights of the normal-type inits, then
        redraws of the ``trunc_normal`` ones outside ±2 until none is left;
        one array of float32 uniforms for the kept weights of the uniform-type
        inits. Masked and sparse-zeroed weights draw no value.
    rows, cols : int array (K,)
        Shapes, all >= 1; fan_in = cols, fan_out = rows (see :func:`init_matrix`).
    inits : int array (K,)
        Codes in ``INIT_NAMES``.
    densities : float array (K,), optional
        Mask densities in (0, 1]; None: no mask (embedding tables).

    Returns
    -------
    np.ndarray of float32, shape (sum(rows * cols),)
        The matrices one after another, each row-major (in, out).
    """
    rows, cols, inits = (np.asarray(a, dtype=np.int64).reshape(-1) for a in (rows, cols, inits))
    if not rows.shape == cols.shape == inits.shape:
        raise ValueError(
            f"rows, cols and inits need one entry per matrix, got {rows.size}, {cols.size}, {inits.size}"
        )
    if rows.size and min(rows.min(), cols.min()) < 1:
        raise ValueError(f"matrix shapes must be >= 1, got rows >= {rows.min()}, cols >= {cols.min()}")
    if rows.size and not 0 <= inits.min() <= inits.max() < len(INIT_NAMES):
        raise ValueError(
            f"init codes must index INIT_NAMES (0..{len(INIT_NAMES) - 1}), got {inits.min()}..{inits.max()}"
        )
    if densities is not None:
        densities = np.asarray(densities, dtype=np.float64).reshape(-1)
        if densities.shape != rows.shape or not np.all((densities > 0.0) & (densities <= 1.0)):
            raise ValueError(f"densities need one value in (0, 1] per matrix, got {densities!r}")
    starts = _exclusive_cumsum(rows * cols, total=True)
    out = np.empty(int(starts[-1]), dtype=np.float32)
    cuts = np.searchsorted(starts[:-1], np.arange(0, out.size, CHUNK_WEIGHTS))
    bounds = np.unique(np.append(cuts, rows.size)).tolist()
    for a, b in zip(bounds[:-1], bounds[1:]):
        _draw_chunk(
            rng, rows[a:b], cols[a:b], inits[a:b], None if densities is None else densities[a:b],
            out[starts[a] : starts[b]],
        )  # fmt: skip
    return out


def _draw_chunk(rng, rows, cols, inits, densities, out):
    """:func:`draw_matrices` for one chunk, written into ``out``."""
    sizes = rows * cols
    starts = _exclusive_cumsum(sizes, total=True)
    fan = cols * _INIT_USES_FAN_IN[inits] + rows * _INIT_USES_FAN_OUT[inits]
    scale = np.sqrt(_INIT_NUMERATOR[inits] / np.maximum(fan, 1))
    if densities is None:
        keep = np.ones(out.size, dtype=bool)
    else:
        keep = rng.random(out.size) < np.repeat(densities, sizes)
        scale = scale / densities
    sparse = np.flatnonzero(inits == _SPARSE)
    for num_rows in np.unique(rows[sparse]).tolist():
        group = sparse[rows[sparse] == num_rows]
        _drop_sparse_zeros(rng, keep, num_rows, cols[group], starts[group])
    # Only the kept weights need a value (the normals are most of the cost):
    # the others are 0 whatever it would be. float32 from here: the result is.
    kept = np.flatnonzero(keep)
    counts = np.diff(np.searchsorted(kept, starts))
    is_normal = _INIT_IS_NORMAL[inits]
    normal_entry = np.repeat(is_normal, counts)
    values = np.empty(kept.size, dtype=np.float32)
    normal_counts = counts[is_normal]
    num_normal = int(normal_counts.sum())
    if num_normal:
        z = rng.standard_normal(num_normal, dtype=np.float32)
        is_trunc = inits[is_normal] == _TRUNC_NORMAL
        if is_trunc.any():
            trunc = _ranges(_exclusive_cumsum(normal_counts)[is_trunc], normal_counts[is_trunc])
            outside = trunc[np.abs(z[trunc]) > TRUNC_BOUND]
            while outside.size:
                z[outside] = rng.standard_normal(outside.size, dtype=np.float32)
                outside = outside[np.abs(z[outside]) > TRUNC_BOUND]
        values[normal_entry] = z
    if num_normal < values.size:
        u = rng.random(values.size - num_normal, dtype=np.float32)
        values[~normal_entry] = u * np.float32(2.0) - np.float32(1.0)
    values *= np.repeat(scale.astype(np.float32), counts)
    out[:] = 0.0
    out[kept] = values


def _drop_sparse_zeros(rng, keep, num_rows: int, cols, starts) -> None:
    """Clear ``keep`` at the zeros of ``sparse`` matrices with ``num_rows`` rows.

    Every column gets its own uniform random set of ceil(0.5 · rows) zero
    rows, by selection sampling (Knuth's Algorithm S) run on all columns at
    once: row i is picked with probability (still to pick) / (rows - i),
    from one uniform per row and column.
    """
    num_zeros = math.ceil(SPARSITY * num_rows)
    num_cols = int(cols.sum())
    at = _ranges(starts, cols)  # flat position of (row, column), starting at row 0
    step = np.repeat(cols, cols)
    to_pick = np.full(num_cols, num_zeros, dtype=np.float64)
    for row in range(num_rows):
        # u · (rows left) < (zeros left): certain once every row left must be zero
        picked = rng.random(num_cols) * (num_rows - row) < to_pick
        to_pick -= picked
        keep[at[picked]] = False
        at += step


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
    """The MLPs and embedding tables of one SCM as flat arrays (SPEC §4.2).

    Built by :meth:`MlpBank.freeze`; read by ``plurel_fast.kernels.mlp``.

    Attributes
    ----------
    weights : float32 (W,)
        Every weight matrix, row-major with shape (in_dim, out_dim).
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
    layer_density : float32 (num_layers,)
        Density ``d`` of the Bernoulli mask (1: no mask); for inspection only.
    max_width : int
        Largest in/out width of any layer (scratch buffer width).
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
        """View of one layer's weight matrix, shape (in_dim, out_dim)."""
        off, rows, cols = (int(v) for v in self.layers[layer, :3])
        return self.weights[off : off + rows * cols].reshape(rows, cols)

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
            f"{self.weights.size} weights, {self.num_embeddings} embedding tables "
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
    """

    def __init__(self):
        # one entry per layer; init -1 and rng -1 mark a given matrix
        self._rows: list[int] = []
        self._cols: list[int] = []
        self._act: list[int] = []
        self._act_offset: list[int] = []
        self._scale: list[float] = []  # NaN: drawn by freeze
        self._init: list[int] = []
        self._density: list[float] = []
        self._layer_rng: list[int] = []
        self._given: dict[int, np.ndarray] = {}
        self._mlps: list[tuple[int, int]] = []
        self._act_params: list[np.ndarray] = []
        self._num_act_params = 0
        # one entry per embedding table
        self._table_rows: list[int] = []
        self._table_cols: list[int] = []
        self._table_init: list[int] = []
        self._table_rng: list[int] = []
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
        return len(self._mlps)

    @property
    def num_embeddings(self) -> int:
        return len(self._table_rows)

    def add_mlp(self, rng: np.random.Generator, in_dim: int, hid_dim: int, out_dim: int, scm_params) -> int:
        """Plan one MLP ``in_dim → hid_dim → … → hid_dim → out_dim`` (SPEC §4.2).

        Draws the layer count, the init and density of every weight matrix and
        the activation of every hidden layer now; :meth:`freeze` draws the
        scales and weights from the same ``rng``.

        Parameters
        ----------
        rng : np.random.Generator
            Planning generator; draw order in the module docstring.
        in_dim, hid_dim, out_dim : int
            Widths, each >= 1.
        scm_params : SCMParams-like
            Reads ``mlp_num_layers_choices``, ``initialization_choices``,
            ``mlp_weight_density_choices`` and ``activation_choices`` (each with
            ``.sample(rng)``); inits and activations are given by name.

        Returns
        -------
        int
            The MLP id.
        """
        if type(in_dim) is not int or type(hid_dim) is not int or type(out_dim) is not int or (
            min(in_dim, hid_dim, out_dim) < 1
        ):  # the slow path: accepts numpy integers, names what is wrong
            in_dim, hid_dim, out_dim = (
                _dim("in_dim", in_dim), _dim("hid_dim", hid_dim), _dim("out_dim", out_dim)
            )  # fmt: skip
        rng_id = self._last_rng_id if rng is self._last_rng else self._use_rng(rng)
        num_layers = scm_params.mlp_num_layers_choices.sample(rng)
        if type(num_layers) is not int or num_layers < 1:
            num_layers = _num_layers(num_layers)
        sample_init = scm_params.initialization_choices.sample
        sample_density = scm_params.mlp_weight_density_choices.sample
        inits, densities = [], []
        for _ in range(num_layers):
            name = sample_init(rng)
            code = INIT_CODES.get(name) if isinstance(name, str) else None
            if code is None:
                raise ValueError(
                    f"initialization_choices produced {name!r}; known initializations: "
                    f"{', '.join(INIT_NAMES)}"
                )
            density = float(sample_density(rng))
            if not 0.0 < density <= 1.0:
                raise ValueError(
                    f"mlp_weight_density_choices produced {density}; a density must be in (0, 1]"
                )
            inits.append(code)
            densities.append(density)
        sample_act = scm_params.activation_choices.sample
        acts, act_offsets, act_params = [], [], []
        num_act_params = self._num_act_params
        for _ in range(num_layers - 1):
            name = sample_act(rng)
            code = ACTIVATION_CODES.get(name) if isinstance(name, str) else None
            if code is None:
                raise ValueError(
                    f"activation_choices produced {name!r}; known activations: "
                    f"{', '.join(ACTIVATION_NAMES)}"
                )
            acts.append(code)
            if code == RANDOM_SINE:
                params = random_sine_params(rng)
                act_offsets.append(num_act_params)
                act_params.append(params)
                num_act_params += params.size
            else:
                act_offsets.append(-1)
        acts.append(LINEAR)
        act_offsets.append(-1)
        # nothing below can fail: the bank changes only now
        self._init.extend(inits)
        self._density.extend(densities)
        self._act.extend(acts)
        self._act_offset.extend(act_offsets)
        if act_params:
            self._act_params.extend(act_params)
            self._num_act_params = num_act_params
        first = len(self._rows)
        hidden = num_layers - 1
        self._rows.append(in_dim)
        self._rows.extend([hid_dim] * hidden)
        self._cols.extend([hid_dim] * hidden)
        self._cols.append(out_dim)
        self._scale.extend([math.nan] * hidden)
        self._scale.append(1.0)
        self._layer_rng.extend([rng_id] * num_layers)
        self._mlps.append((first, num_layers))
        return len(self._mlps) - 1

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
        first = len(self._rows)
        for layer, w in enumerate(matrices):
            code, offset, scale = LINEAR, -1, 1.0
            if layer < num_layers - 1:
                code, scale = ACTIVATION_CODES[activations[layer]], scales[layer]
                if code == RANDOM_SINE:
                    offset = self._num_act_params
                    self._act_params.append(act_params[layer])
                    self._num_act_params += act_params[layer].size
            self._given[first + layer] = w
            self._rows.append(w.shape[0])
            self._cols.append(w.shape[1])
            self._act.append(code)
            self._act_offset.append(offset)
            self._scale.append(scale)
            self._init.append(-1)
            self._density.append(1.0)
            self._layer_rng.append(-1)
        self._mlps.append((first, num_layers))
        return len(self._mlps) - 1

    def add_embedding(self, rng: np.random.Generator, num_categories: int, dim: int, scm_params) -> int:
        """Plan one embedding table (num_categories × dim) (SPEC §4.2).

        The init is picked from ``scm_params.initialization_choices`` now and
        applied by :meth:`freeze` (same ``rng``) with fan_in = ``dim``, fan_out =
        ``num_categories``; no density mask.

        Returns
        -------
        int
            The embedding table id.
        """
        if type(num_categories) is not int or type(dim) is not int or min(num_categories, dim) < 1:
            num_categories, dim = _dim("num_categories", num_categories), _dim("dim", dim)
        rng_id = self._last_rng_id if rng is self._last_rng else self._use_rng(rng)
        name = scm_params.initialization_choices.sample(rng)
        code = INIT_CODES.get(name) if isinstance(name, str) else None
        if code is None:
            raise ValueError(
                f"initialization_choices produced {name!r}; known initializations: {', '.join(INIT_NAMES)}"
            )
        self._table_rows.append(num_categories)
        self._table_cols.append(dim)
        self._table_init.append(code)
        self._table_rng.append(rng_id)
        return len(self._table_rows) - 1

    def add_embedding_table(self, table) -> int:
        """Add a given embedding table, shape (num_categories, dim); returns its id."""
        table = np.ascontiguousarray(table, dtype=np.float32)
        if table.ndim != 2 or min(table.shape) < 1:
            raise ValueError(f"an embedding table must be 2-D and non-empty, got shape {table.shape}")
        self._given_tables[len(self._table_rows)] = table
        self._table_rows.append(table.shape[0])
        self._table_cols.append(table.shape[1])
        self._table_init.append(-1)
        self._table_rng.append(-1)
        return len(self._table_rows) - 1

    def freeze(self) -> MlpBankArrays:
        """Draw what is pending, then pack everything into an :class:`MlpBankArrays`.

        Draws the scales and weights of everything added since the last call
        (order in the module docstring); calling it again without adding
        anything returns equal arrays.
        """
        self._draw_pending()
        layers = np.zeros((len(self._rows), 5), dtype=np.int64)
        layers[:, 1] = self._rows
        layers[:, 2] = self._cols
        layers[:, 3] = self._act
        layers[:, 4] = self._act_offset
        sizes = layers[:, 1] * layers[:, 2]
        np.cumsum(sizes[:-1], out=layers[1:, 0])
        emb_offsets = np.zeros((len(self._table_rows), 3), dtype=np.int64)
        emb_offsets[:, 1] = self._table_rows
        emb_offsets[:, 2] = self._table_cols
        np.cumsum(emb_offsets[:-1, 1] * emb_offsets[:-1, 2], out=emb_offsets[1:, 0])
        return MlpBankArrays(
            weights=_flat(self._weight_blocks),
            layers=layers,
            layer_scale=np.asarray(self._scale, dtype=np.float32).reshape(-1),
            act_params=_flat(self._act_params),
            mlps=np.asarray(self._mlps, dtype=np.int64).reshape(-1, 2),
            emb_offsets=emb_offsets,
            emb_weights=_flat(self._table_blocks),
            layer_init=np.asarray(self._init, dtype=np.int64).reshape(-1),
            layer_density=np.asarray(self._density, dtype=np.float32).reshape(-1),
            emb_init=np.asarray(self._table_init, dtype=np.int64).reshape(-1),
            max_width=int(layers[:, 1:3].max(initial=1)),
        )

    def _use_rng(self, rng) -> int:
        """Id of a generator in ``_rngs`` (registered on first use); sets the last one."""
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
        if first_layer == len(self._rows) and first_table == len(self._table_rows):
            return
        rows = np.asarray(self._rows[first_layer:], dtype=np.int64)
        cols = np.asarray(self._cols[first_layer:], dtype=np.int64)
        inits = np.asarray(self._init[first_layer:], dtype=np.int64)
        densities = np.asarray(self._density[first_layer:], dtype=np.float64)
        scales = np.asarray(self._scale[first_layer:], dtype=np.float64)
        layer_rng = np.asarray(self._layer_rng[first_layer:], dtype=np.int64)
        t_rows = np.asarray(self._table_rows[first_table:], dtype=np.int64)
        t_cols = np.asarray(self._table_cols[first_table:], dtype=np.int64)
        t_inits = np.asarray(self._table_init[first_table:], dtype=np.int64)
        t_rng = np.asarray(self._table_rng[first_table:], dtype=np.int64)
        sizes, t_sizes = rows * cols, t_rows * t_cols
        weights = np.empty(int(sizes.sum()), dtype=np.float32)
        tables = np.empty(int(t_sizes.sum()), dtype=np.float32)
        for rng_id, rng in enumerate(self._rngs):
            mine = layer_rng == rng_id
            hidden = mine & np.isnan(scales)
            if hidden.any():
                scales[hidden] = np.exp(rng.uniform(-1.0, 1.0, int(hidden.sum())))
            if mine.any():
                drawn = draw_matrices(rng, rows[mine], cols[mine], inits[mine], densities[mine])
                weights = _place(weights, drawn, sizes, mine)
            mine = t_rng == rng_id
            if mine.any():
                drawn = draw_matrices(rng, t_rows[mine], t_cols[mine], t_inits[mine])
                tables = _place(tables, drawn, t_sizes, mine)
        _place_given(weights, sizes, self._given, first_layer)
        _place_given(tables, t_sizes, self._given_tables, first_table)
        self._scale[first_layer:] = scales.tolist()
        self._weight_blocks.append(weights)
        self._table_blocks.append(tables)
        self._layers_drawn, self._tables_drawn = len(self._rows), len(self._table_rows)

    def __repr__(self) -> str:
        return (
            f"MlpBank({self.num_mlps} mlps, {len(self._rows)} layers, "
            f"{self.num_embeddings} embedding tables; "
            f"{len(self._rows) - self._layers_drawn} layers not drawn yet)"
        )


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


def _num_layers(value) -> int:
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, (int, float, np.number))
        or int(value) != value
        or value < 1
    ):
        raise ValueError(
            f"mlp_num_layers_choices produced {value!r}; an MLP needs an integer >= 1 layers"
        )
    return int(value)
