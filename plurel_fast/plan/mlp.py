"""Planning the MLPs and embedding tables of one SCM (SPEC §4.2).

Every encoder, decoder and collation encoder of an SCM is an MLP (and the
categorical ones an embedding table too). All their parameters are drawn once
per table from the planning ``numpy.random.Generator``: an :class:`MlpBank`
collects them and :meth:`MlpBank.freeze` packs them into one
:class:`MlpBankArrays`, a handful of flat numpy arrays that the kernels of
``plurel_fast.kernels.mlp`` walk (layout in that module's docstring).

Order of the draws of :meth:`MlpBank.add_mlp` (it fixes the distribution, not
the bytes, but stays fixed so a seed keeps its meaning):

1. ``L = mlp_num_layers_choices.sample(rng)``;
2. for each of the L weight matrices, in order: the init name
   (``initialization_choices.sample``), the matrix (:func:`init_matrix`), the
   density ``d`` (``mlp_weight_density_choices.sample``), then the Bernoulli
   mask (:func:`apply_density`);
3. for each of the L - 1 hidden layers, in order: the activation name
   (``activation_choices.sample``); for ``random_sine`` then ``m``, ``a``,
   ``f``, ``phi`` (:func:`random_sine_params`); then the scale
   ``s = exp(rng.uniform(-1, 1))``.

:meth:`MlpBank.add_embedding` draws the init name, then the table.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np

from plurel_fast.kernels.mlp import ACTIVATION_NAMES, LINEAR, RANDOM_SINE

ACTIVATION_CODES: dict[str, int] = {name: code for code, name in enumerate(ACTIVATION_NAMES)}

INIT_NAMES = (
    "kaiming_normal",
    "kaiming_uniform",
    "xavier_normal",
    "xavier_uniform",
    "trunc_normal",
    "sparse",
)
INIT_CODES: dict[str, int] = {name: code for code, name in enumerate(INIT_NAMES)}

SPARSE_STD = 0.01
SPARSITY = 0.5
TRUNC_BOUND = 2.0


def init_matrix(rng: np.random.Generator, name: str, rows: int, cols: int) -> np.ndarray:
    """A weight matrix stored as (in=rows, out=cols), initialised like torch.

    torch reads a 2-D tensor's fan_in as ``size(1)`` and fan_out as
    ``size(0)``, so here fan_in = ``cols`` and fan_out = ``rows`` (SPEC §4.2).
    Embedding tables (categories × dim) pass rows=categories, cols=dim.

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
    ``density``. Returns a new float32 array.
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
    """

    def __init__(self):
        self._matrices: list[np.ndarray] = []
        self._layer_rows: list[list[int]] = []  # [in, out, code, p_off] per layer
        self._scales: list[float] = []
        self._inits: list[int] = []
        self._densities: list[float] = []
        self._act_params: list[np.ndarray] = []
        self._num_act_params = 0
        self._mlps: list[tuple[int, int]] = []
        self._tables: list[np.ndarray] = []
        self._table_inits: list[int] = []

    @property
    def num_mlps(self) -> int:
        return len(self._mlps)

    @property
    def num_embeddings(self) -> int:
        return len(self._tables)

    def add_mlp(self, rng: np.random.Generator, in_dim: int, hid_dim: int, out_dim: int, scm_params) -> int:
        """Draw one MLP ``in_dim → hid_dim → … → hid_dim → out_dim`` (SPEC §4.2).

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
        in_dim, hid_dim, out_dim = _dim("in_dim", in_dim), _dim("hid_dim", hid_dim), _dim("out_dim", out_dim)
        num_layers = scm_params.mlp_num_layers_choices.sample(rng)
        if isinstance(num_layers, bool) or int(num_layers) != num_layers or num_layers < 1:
            raise ValueError(
                f"mlp_num_layers_choices produced {num_layers!r}; an MLP needs an integer >= 1 layers"
            )
        num_layers = int(num_layers)
        widths = [in_dim] + [hid_dim] * (num_layers - 1) + [out_dim]
        matrices, inits, densities = [], [], []
        for layer in range(num_layers):
            name = _init_name(scm_params.initialization_choices.sample(rng))
            w = init_matrix(rng, name, widths[layer], widths[layer + 1])
            density = float(scm_params.mlp_weight_density_choices.sample(rng))
            if not 0.0 < density <= 1.0:
                raise ValueError(
                    f"mlp_weight_density_choices produced {density}; a density must be in (0, 1]"
                )
            matrices.append(apply_density(rng, w, density))
            inits.append(INIT_CODES[name])
            densities.append(density)
        activations, scales, params = [], [], []
        for _ in range(num_layers - 1):
            name = scm_params.activation_choices.sample(rng)
            if name not in ACTIVATION_CODES:
                raise ValueError(
                    f"activation_choices produced {name!r}; known activations: "
                    f"{', '.join(ACTIVATION_NAMES)}"
                )
            activations.append(name)
            params.append(random_sine_params(rng) if name == "random_sine" else None)
            scales.append(math.exp(rng.uniform(-1.0, 1.0)))
        return self._add_layers(matrices, activations, scales, params, inits, densities)

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
        return self._add_layers(
            matrices, activations, scales, act_params, [-1] * num_layers, [1.0] * num_layers
        )

    def _add_layers(self, matrices, activations, scales, params, inits, densities) -> int:
        first = len(self._layer_rows)
        for layer, w in enumerate(matrices):
            code, p_off, scale = LINEAR, -1, 1.0
            if layer < len(activations):
                code = ACTIVATION_CODES[activations[layer]]
                scale = scales[layer]
                if code == RANDOM_SINE:
                    p_off = self._num_act_params
                    self._act_params.append(params[layer])
                    self._num_act_params += params[layer].size
            self._matrices.append(np.ascontiguousarray(w, dtype=np.float32))
            self._layer_rows.append([w.shape[0], w.shape[1], code, p_off])
            self._scales.append(scale)
            self._inits.append(inits[layer])
            self._densities.append(densities[layer])
        self._mlps.append((first, len(matrices)))
        return len(self._mlps) - 1

    def add_embedding(self, rng: np.random.Generator, num_categories: int, dim: int, scm_params) -> int:
        """Draw one embedding table (num_categories × dim) (SPEC §4.2).

        The init is picked from ``scm_params.initialization_choices`` and applied
        with fan_in = ``dim``, fan_out = ``num_categories``; no density mask.

        Returns
        -------
        int
            The embedding table id.
        """
        num_categories, dim = _dim("num_categories", num_categories), _dim("dim", dim)
        name = _init_name(scm_params.initialization_choices.sample(rng))
        self._tables.append(init_matrix(rng, name, num_categories, dim))
        self._table_inits.append(INIT_CODES[name])
        return len(self._tables) - 1

    def add_embedding_table(self, table) -> int:
        """Add a given embedding table, shape (num_categories, dim); returns its id."""
        table = np.ascontiguousarray(table, dtype=np.float32)
        if table.ndim != 2 or min(table.shape) < 1:
            raise ValueError(f"an embedding table must be 2-D and non-empty, got shape {table.shape}")
        self._tables.append(table)
        self._table_inits.append(-1)
        return len(self._tables) - 1

    def freeze(self) -> MlpBankArrays:
        """Pack everything added so far into an :class:`MlpBankArrays`."""
        sizes = [w.size for w in self._matrices]
        offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])[:-1].astype(np.int64)
        layers = np.zeros((len(self._layer_rows), 5), dtype=np.int64)
        if self._layer_rows:
            layers[:, 0] = offsets
            layers[:, 1:] = np.asarray(self._layer_rows, dtype=np.int64)
        table_sizes = [t.size for t in self._tables]
        emb_offsets = np.zeros((len(self._tables), 3), dtype=np.int64)
        if self._tables:
            emb_offsets[:, 0] = np.concatenate([[0], np.cumsum(table_sizes)])[:-1]
            emb_offsets[:, 1:] = [t.shape for t in self._tables]
        widths = [1] + [int(v) for v in layers[:, 1:3].ravel()]
        return MlpBankArrays(
            weights=_flat(self._matrices),
            layers=layers,
            layer_scale=np.asarray(self._scales, dtype=np.float32).reshape(-1),
            act_params=_flat(self._act_params),
            mlps=np.asarray(self._mlps, dtype=np.int64).reshape(-1, 2),
            emb_offsets=emb_offsets,
            emb_weights=_flat(self._tables),
            layer_init=np.asarray(self._inits, dtype=np.int64).reshape(-1),
            layer_density=np.asarray(self._densities, dtype=np.float32).reshape(-1),
            emb_init=np.asarray(self._table_inits, dtype=np.int64).reshape(-1),
            max_width=max(widths),
        )

    def __repr__(self) -> str:
        return (
            f"MlpBank({self.num_mlps} mlps, {len(self._layer_rows)} layers, "
            f"{self.num_embeddings} embedding tables; not frozen)"
        )


def _flat(arrays) -> np.ndarray:
    if not arrays:
        return np.zeros(0, dtype=np.float32)
    return np.ascontiguousarray(np.concatenate([a.ravel() for a in arrays]), dtype=np.float32)


def _dim(name: str, value) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _init_name(name) -> str:
    if name not in INIT_CODES:
        raise ValueError(
            f"initialization_choices produced {name!r}; known initializations: {', '.join(INIT_NAMES)}"
        )
    return name
