"""Every name table, integer code and packed-array column of plurel_fast, in one place.

A leaf module: it imports nothing, so the configuration, the planners and the kernels
all import it and agree by construction (kernels import nothing else from the front
end). A code is an index into its name table; a column is the position of a field in
a packed int64 / float64 row that a planner writes and a kernel reads.
"""

# ------------------------------------------------------------------ names a config uses

# DAG layouts of the table graph and of every SCM graph (DESIGN §2).
LAYOUTS = (
    "ErdosRenyi",
    "BarabasiAlbert",
    "RandomTree",
    "ReverseRandomTree",
    "WattsStrogatz",
    "RandomCauchy",
    "Layered",
)
# Hidden-layer activations; an activation's code is its index here (DESIGN §4.2).
ACTIVATIONS = (
    "relu",
    "elu",
    "selu",
    "silu",
    "softsign",
    "tanh",
    "sigmoid",
    "hardswish",
    "mish",
    "leaky_relu",
    "gelu",
    "softplus",
    "hardsigmoid",
    "hardtanh",
    "celu",
    "tanhshrink",
    "rrelu",
    "logsigmoid",
    "softshrink",
    "hardshrink",
    "identity",
    "abs",
    "sin",
    "cos",
    "sign",
    "clamp",
    "signed_log1p",
    "bent_identity",
    "random_sine",
)
# Weight initialisations; a layer's init code is its index here.
INITIALIZATIONS = (
    "kaiming_normal",
    "kaiming_uniform",
    "xavier_normal",
    "xavier_uniform",
    "trunc_normal",
    "sparse",
)
# Aggregations of an inner node's inputs; the code is the index (AGG_* below).
AGGREGATIONS = ("sum", "max", "product", "logexp")
STYPES = ("categorical", "numerical")
# Source generators a config may name ("mixed" picks one of MIXED_SUB_TYPES per source).
SOURCE_TYPES = ("ts", "uniform", "gaussian", "beta", "mixed")
MIXED_SUB_TYPES = ("uniform", "gaussian", "beta")
PROPAGATION_MODES = ("type_eager", "type_lazy")
# Column transforms of post-processing, applied by name (DESIGN §5.1).
COL_TRANSFORMS = ("identity", "rank_uniform", "log", "sqrt", "standardize")
EDGE_WEIGHT_DISTS = ("gaussian", "lognormal", "cauchy", "uniform")
SQL_DIALECTS = ("sqlite", "postgres", "mysql", "duckdb")

# ------------------------------------------------------------------ aggregation codes

AGG_SUM, AGG_MAX, AGG_PRODUCT, AGG_LOGEXP = range(len(AGGREGATIONS))
AGG_CODES = {name: code for code, name in enumerate(AGGREGATIONS)}
# The folding blocks of kernels.simd fold with the first three aggregations.
FOLD_SUM, FOLD_MAX, FOLD_PRODUCT = AGG_SUM, AGG_MAX, AGG_PRODUCT

# ------------------------------------------------------------------ sources (SourceBank)

# Generator type codes (column SRC_TYPE of a generator row).
GEN_TS, GEN_UNIFORM, GEN_GAUSSIAN, GEN_BETA = range(4)
GEN_TYPE_CODES = {"ts": GEN_TS, "uniform": GEN_UNIFORM, "gaussian": GEN_GAUSSIAN, "beta": GEN_BETA}

# Columns of a generator row (float64, GEN_WIDTH wide); the fields after COL_HI depend
# on the type: a time series has trend, cycle, noise and AR(1) fields, a Gaussian its
# mean and std, a Beta its shapes.
COL_TYPE = 0
COL_LO = 1
COL_HI = 2
COL_TREND_ALPHA = 3
COL_TREND_SCALE = 4
COL_CYCLE_FREQ = 5
COL_CYCLE_SCALE = 6
COL_NOISE_SCALE = 7
COL_AR_RHO = 8
COL_AR_WINDOW = 9
COL_MEAN = 3
COL_STD = 4
COL_BETA_A = 3
COL_BETA_B = 4
GEN_WIDTH = 10

# Source kinds (SourceBank.kind).
NUMERICAL = 0
CATEGORICAL_TS = 1
CATEGORICAL_IID = 2

# ------------------------------------------------------------------ MLP bank layouts

# Columns of MlpBankArrays.layers (int64, one row per layer).
LAYER_WEIGHT_OFFSET = 0  # where the (in_dim, out_dim) matrix starts in the flat weights
LAYER_IN = 1
LAYER_OUT = 2
LAYER_ACT = 3  # index in ACTIVATIONS, -1 on an MLP's last (linear) layer
LAYER_ACT_PARAMS = 4  # offset of random_sine's parameters in act_params, else -1
LAYER_COLUMNS = 5

# Columns of MlpBankArrays.mlps (int64, one row per MLP): its layers are consecutive.
MLP_FIRST_LAYER = 0
MLP_NUM_LAYERS = 1

# Columns of MlpBankArrays.emb_offsets (int64, one row per embedding table).
EMB_OFFSET = 0
EMB_CATEGORIES = 1
EMB_DIM = 2

# Columns of a categorical encoder to evaluate (ScmPlan.cat_encoders' first two).
PENDING_EMB = 0
PENDING_MLP = 1
