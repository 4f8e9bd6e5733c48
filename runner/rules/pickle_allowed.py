"""The pickle globals that benign checkpoints really import: full dotted paths, nothing by prefix.

Taken from what torch.save (state dicts, full torch.nn modules, optimizer state, legacy and zip
formats), numpy (arrays, scalars, dtypes, masked and record arrays, random generators) and the
standard library (collections, sets, bytes under protocol 2, copyreg's reconstructor) emit, and
from torch's own weights_only allow-list. A path outside this list is never ordinary: one under
torch or numpy that the list does not name is unusual, whatever its module looks like.
scikit-learn's classes come from a generated list (runner.rules.pickle_allowed_sklearn), and
joblib's array wrapper (a class whose constructor only stores its arguments) is listed here.
"""

from __future__ import annotations

from runner.rules.pickle_allowed_sklearn import SKLEARN_ALLOWED

_STORAGE_TYPES = (
    *("BFloat16", "Bool", "Byte", "Char", "ComplexDouble", "ComplexFloat", "Double", "Float"),
    *("Half", "Int", "Long", "Short"),
)
_QUANTIZED_STORAGE_TYPES = ("QInt32", "QInt8", "QUInt2x4", "QUInt4x2", "QUInt8")
_TENSOR_TYPES = ("BFloat16", "Bool", "Byte", "Char", "Double", "Float", "Half", "Int", "Long")
_SPARSE_TENSOR_TYPES = ("BFloat16", "Byte", "Char", "Double", "Float", "Half", "Int", "Long")
_DTYPES = (
    *("bfloat16", "bool", "complex128", "complex32", "complex64", "float16", "float32"),
    *("float64", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz"),
    *("float8_e8m0fnu", "float4_e2m1fn_x2", "qint32", "qint8", "quint2x4", "quint4x2", "quint8"),
    *("bits16", "bits1x8", "bits2x4", "bits4x2", "bits8"),
    *(f"int{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 16, 32, 64)),
    *(f"uint{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 16, 32, 64)),
)
_TORCH_CONSTANTS = (
    *("per_tensor_affine", "per_tensor_symmetric", "per_channel_affine"),
    *("per_channel_symmetric", "per_channel_affine_float_qparams"),
    *("contiguous_format", "channels_last", "channels_last_3d", "preserve_format"),
    *("strided", "sparse_coo", "sparse_csr", "sparse_csc", "sparse_bsr", "sparse_bsc"),
)
_REBUILD = (
    *("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter"),
    *("_rebuild_parameter_with_state", "_rebuild_qtensor", "_rebuild_sparse_tensor"),
    *("_rebuild_nested_tensor", "_rebuild_meta_tensor_no_storage", "_rebuild_wrapper_subclass"),
    *("_rebuild_device_tensor_from_cpu_tensor", "_rebuild_device_tensor_from_numpy"),
)
# torch.nn's module classes, by the module that defines them (what a full-module save names)
_NN_MODULES = {
    "activation": (
        *("CELU", "ELU", "GELU", "GLU", "Hardshrink", "Hardsigmoid", "Hardswish", "Hardtanh"),
        *("LeakyReLU", "LogSigmoid", "LogSoftmax", "Mish", "MultiheadAttention", "PReLU"),
        *("RReLU", "ReLU", "ReLU6", "SELU", "SiLU", "Sigmoid", "Softmax", "Softmax2d"),
        *("Softmin", "Softplus", "Softshrink", "Softsign", "Tanh", "Tanhshrink", "Threshold"),
    ),
    "adaptive": ("AdaptiveLogSoftmaxWithLoss",),
    "batchnorm": (
        *("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LazyBatchNorm1d", "LazyBatchNorm2d"),
        *("LazyBatchNorm3d", "SyncBatchNorm"),
    ),
    "channelshuffle": ("ChannelShuffle",),
    "container": (
        *("Container", "ModuleDict", "ModuleList", "ParameterDict", "ParameterList"),
        "Sequential",
    ),
    "conv": (
        *("Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"),
        *("LazyConv1d", "LazyConv2d", "LazyConv3d", "LazyConvTranspose1d"),
        *("LazyConvTranspose2d", "LazyConvTranspose3d"),
    ),
    "distance": ("CosineSimilarity", "PairwiseDistance"),
    "dropout": (
        *("AlphaDropout", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d"),
        "FeatureAlphaDropout",
    ),
    "flatten": ("Flatten", "Unflatten"),
    "fold": ("Fold", "Unfold"),
    "instancenorm": (
        *("InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "LazyInstanceNorm1d"),
        *("LazyInstanceNorm2d", "LazyInstanceNorm3d"),
    ),
    "linear": ("Bilinear", "Identity", "LazyLinear", "Linear", "NonDynamicallyQuantizableLinear"),
    "loss": (
        *("BCELoss", "BCEWithLogitsLoss", "CTCLoss", "CosineEmbeddingLoss", "CrossEntropyLoss"),
        *("GaussianNLLLoss", "HingeEmbeddingLoss", "HuberLoss", "KLDivLoss", "L1Loss"),
        *("MSELoss", "MarginRankingLoss", "MultiLabelMarginLoss", "MultiLabelSoftMarginLoss"),
        *("MultiMarginLoss", "NLLLoss", "NLLLoss2d", "PoissonNLLLoss", "SmoothL1Loss"),
        *("SoftMarginLoss", "TripletMarginLoss", "TripletMarginWithDistanceLoss"),
    ),
    "module": ("Module",),
    "normalization": ("CrossMapLRN2d", "GroupNorm", "LayerNorm", "LocalResponseNorm", "RMSNorm"),
    "padding": tuple(
        f"{kind}Pad{n}d"
        for kind in ("Circular", "Constant", "Reflection", "Replication", "Zero")
        for n in (1, 2, 3)
    ),
    "pixelshuffle": ("PixelShuffle", "PixelUnshuffle"),
    "pooling": (
        *(f"{kind}{n}d" for kind in ("AdaptiveAvgPool", "AdaptiveMaxPool") for n in (1, 2, 3)),
        *(
            f"{kind}{n}d"
            for kind in ("AvgPool", "LPPool", "MaxPool", "MaxUnpool")
            for n in (1, 2, 3)
        ),
        *("FractionalMaxPool2d", "FractionalMaxPool3d"),
    ),
    "rnn": ("GRU", "GRUCell", "LSTM", "LSTMCell", "RNN", "RNNBase", "RNNCell", "RNNCellBase"),
    "sparse": ("Embedding", "EmbeddingBag"),
    "transformer": (
        *("Transformer", "TransformerDecoder", "TransformerDecoderLayer"),
        *("TransformerEncoder", "TransformerEncoderLayer"),
    ),
    "upsampling": ("Upsample", "UpsamplingBilinear2d", "UpsamplingNearest2d"),
}
_NUMPY = (
    *("dtype", "ndarray", "record", "recarray", "rec.recarray", "ma.MaskedArray"),
    *("ma.core.MaskedArray", "ma.core._mareconstruct"),
    *(
        f"{core}.{path}"
        for core in ("core", "_core")
        for path in (
            *("multiarray._reconstruct", "multiarray.scalar", "numeric._frombuffer"),
            *("records.recarray", "records.record"),
        )
    ),
    *("random._pickle.__randomstate_ctor", "random._pickle.__generator_ctor"),
    *("random._pickle.__bit_generator_ctor", "random._mt19937.MT19937"),
    *("random._pcg64.PCG64", "random._pcg64.PCG64DXSM", "random._philox.Philox"),
    *("random._sfc64.SFC64", "random.bit_generator.SeedSequence"),
    "random.bit_generator.__pyx_unpickle_SeedSequence",
)
_BUILTINS = (
    *("set", "frozenset", "bytearray", "bytes", "slice", "complex", "object", "int", "float"),
    *("bool", "str", "tuple", "list", "dict", "range"),
)

BASE_ALLOWED: frozenset[str] = frozenset(
    (
        *(f"builtins.{n}" for n in _BUILTINS),
        *(f"collections.{n}" for n in ("OrderedDict", "Counter", "defaultdict", "deque")),
        *("_codecs.encode", "copyreg._reconstructor", "copyreg.__newobj__"),
        "copyreg.__newobj_ex__",
        *(f"numpy.{p}" for p in _NUMPY),
        *(f"torch.{n}Storage" for n in (*_STORAGE_TYPES, *_QUANTIZED_STORAGE_TYPES)),
        *(f"torch.cuda.{n}Storage" for n in _STORAGE_TYPES),
        *(f"torch.{n}Tensor" for n in (*_TENSOR_TYPES, "Short")),
        *(f"torch.cuda.{n}Tensor" for n in (*_TENSOR_TYPES, "Short")),
        *(f"torch.sparse.{n}Tensor" for n in (*_SPARSE_TENSOR_TYPES, "Short")),
        *(f"torch.cuda.sparse.{n}Tensor" for n in (*_SPARSE_TENSOR_TYPES, "Short")),
        *(f"torch.{n}" for n in (*_DTYPES, *_TORCH_CONSTANTS)),
        *("torch.Size", "torch.Tensor", "torch.device", "torch.storage.TypedStorage"),
        *("torch.storage.UntypedStorage", "torch.UntypedStorage", "torch.TypedStorage"),
        *(f"torch._utils.{n}" for n in _REBUILD),
        *("torch._tensor._rebuild_from_type", "torch._tensor._rebuild_from_type_v2"),
        *("torch.nn.parameter.Parameter", "torch.nn.parameter.Buffer"),
        "torch.serialization._get_layout",
        *(f"torch.nn.modules.{m}.{c}" for m, classes in _NN_MODULES.items() for c in classes),
    )
)
# joblib.numpy_pickle.NumpyArrayWrapper: what joblib.dump writes for each array (not its
# legacy NDArrayWrapper, which reads a file the pickle names)
ALLOWED: frozenset[str] = BASE_ALLOWED | SKLEARN_ALLOWED | {"joblib.numpy_pickle.NumpyArrayWrapper"}
