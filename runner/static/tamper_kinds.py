"""What the static checks report: a Tamper entry (its kind and evidence). Kept apart from the
checks (runner.static.tamper) so the formats' readers can import them without the checks."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class TamperKind(StrEnum):
    """What a sign of tampering is about; the rules tell path escapes from the rest."""

    ONNX_EXTERNAL_DATA = "onnx-external-data"
    PICKLE_TRAILING_DATA = "pickle-trailing-data"
    PICKLE_TRUNCATED = "pickle-truncated"
    # what the pickle walk could not see (runner.static.pickles.Issue, the same values)
    PICKLE_EXTENSION_CODE = "pickle-extension-code"
    PICKLE_OPCODE_CAP = "pickle-opcode-cap"
    PICKLE_IMPORT_CAP = "pickle-import-cap"
    PICKLE_UNREAD = "pickle-unread"
    POLYGLOT = "polyglot"
    SAFETENSORS_HEADER = "safetensors-header"
    SAFETENSORS_OFFSETS = "safetensors-offsets"
    SYMLINK_ESCAPE = "symlink-escape"
    # what the walk of the model's tree found (runner.static.walking), and detection's bound
    SPECIAL_FILE = "special-file"
    SYMLINK_LOOP = "symlink-loop"
    WALK_LIMIT = "walk-limit"
    SPARSE_FILE = "sparse-file"
    DETECT_LIMIT = "detect-limit"
    # parser abuse, code in metadata and torch.package code (runner.static.signs)
    PARSER_ABUSE = "parser-abuse"
    PICKLE_ALLOCATION = "pickle-allocation"
    METADATA_CODE = "metadata-code"
    PACKAGE_DANGEROUS_CODE = "package-dangerous-code"
    PACKAGE_DYNAMIC_CODE = "package-dynamic-code"
    PACKAGE_UNREADABLE = "package-unreadable"
    UNREADABLE = "unreadable"
    ZIP_BOMB = "zip-bomb"
    ZIP_CRC = "zip-crc"
    ZIP_HEADER = "zip-header"
    ZIP_HIDDEN_DATA = "zip-hidden-data"
    ZIP_TRAILING_DATA = "zip-trailing-data"
    ZIP_UNREFERENCED = "zip-unreferenced"
    # the formats' own static findings (runner.rules.catalog.FORMAT_SIGNS gives their rules)
    NUMPY_OBJECT_ARRAY = "numpy-object-array"
    ARRAY_HEADER_MALFORMED = "array-header-malformed"
    SKOPS_UNTRUSTED_TYPE = "skops-untrusted-type"
    KERAS_LAMBDA = "keras-lambda"
    KERAS_FOREIGN_FUNCTION = "keras-foreign-function"
    KERAS_CONFIG_UNREADABLE = "keras-config-unreadable"
    KERAS_DANGEROUS_FUNCTION = "keras-dangerous-function"
    KERAS_PICKLED_MODULE = "keras-pickled-module"
    TEMPLATE_OBJECT_ACCESS = "template-object-access"
    GGUF_MALFORMED = "gguf-malformed"
    TEMPLATE_UNREADABLE = "template-unreadable"
    TEMPLATE_DYNAMIC = "template-dynamic"
    GRAPH_FILE_OP = "graph-file-op"
    GRAPH_PYTHON_OP = "graph-python-op"
    GRAPH_UNREADABLE = "graph-unreadable"
    TFLITE_CUSTOM_OP = "tflite-custom-op"
    GRAPH_NETWORK_OP = "graph-network-op"
    ASSET_ESCAPE = "asset-escape"


@dataclass(frozen=True)
class Tamper:
    check: TamperKind
    evidence: str
