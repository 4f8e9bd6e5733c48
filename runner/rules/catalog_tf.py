"""The rules of what the host reads in TensorFlow SavedModel graphs and TFLite flatbuffers
(AL970-AL975: file, Python and network ops in a graph, graphs that could not be read, custom
TFLite ops, assets outside the model's directory), as rows the rule table
(runner.rules.catalog) splices in: id, RuleName member, title, Severity member, evidence; and
SIGNS, the TamperKind each static finding carries, with its rule and message. Plain data: this
module imports nothing of Airlock."""

from __future__ import annotations

Row = tuple[str, str, str, str, str]

ROWS: tuple[Row, ...] = (
    (
        "AL970",
        "GRAPH_FILE_OP",
        "Graph reads or writes files",
        "HIGH",
        "static: ops in a SavedModel's graph or its functions, or Flex ops in a TFLite model, "
        "that touch files (ReadFile, WriteFile, MatchingFiles, file datasets and readers, "
        "summary writers, debug dumps such as DumpTensor, PrintV2 to a file, and checkpoint ops "
        "such as SaveV2 and RestoreV2 anywhere but the saver's own nodes and the functions only "
        "they call; on the saver's restore side, which TensorFlow's v1 loader runs at load, "
        "only the restore ops are its own)",
    ),
    (
        "AL971",
        "GRAPH_PYTHON_OP",
        "Graph calls Python",
        "CRITICAL",
        "static: ops that call back into the Python of the process that loads the model "
        "(PyFunc, EagerPyFunc, PyFuncStateless), in a SavedModel graph or as TFLite Flex ops",
    ),
    (
        "AL972",
        "GRAPH_UNREADABLE",
        "Graph could not be read",
        "MEDIUM",
        "static: a saved_model.pb or TFLite flatbuffer that does not parse or is past its read "
        "bound (256 MiB of graph, 5 million protobuf fields, offsets outside the file), a "
        "text-format saved_model.pbtxt, a Flex op whose NodeDef does not parse, or an op that "
        "runs a graph held as data (DatasetFromGraph, MlirPassthroughOp): what it holds was not "
        "checked",
    ),
    (
        "AL973",
        "TFLITE_CUSTOM_OP",
        "TFLite model uses custom ops",
        "LOW",
        "static: custom or Flex ops a TFLite model names (but the ones LiteRT itself ships: "
        "TFLite_Detection_PostProcess, Mfcc, AudioSpectrogram), which the interpreter resolves "
        "from code outside the model",
    ),
    (
        "AL974",
        "GRAPH_NETWORK_OP",
        "Graph talks to other hosts",
        "HIGH",
        "static: ops that reach other hosts (tf.data service datasets, RPC ops, collective "
        "ops), in a SavedModel graph or as TFLite Flex ops",
    ),
    (
        "AL975",
        "ASSET_ESCAPE",
        "SavedModel asset outside its directory",
        "HIGH",
        "static: an asset file name in a SavedModel's meta graph that is empty, absolute or "
        "climbs out of assets/ (TensorFlow joins it with the assets directory and opens it)",
    ),
)
# TamperKind value: (RuleName member, the finding's message)
SIGNS: dict[str, tuple[str, str]] = {
    "graph-file-op": ("GRAPH_FILE_OP", "the model's graph reads or writes files"),
    "graph-python-op": ("GRAPH_PYTHON_OP", "the model's graph calls back into Python"),
    "graph-unreadable": (
        "GRAPH_UNREADABLE",
        "the model's graph could not be read: what it holds was not checked",
    ),
    "tflite-custom-op": ("TFLITE_CUSTOM_OP", "the TFLite model uses custom ops"),
    "graph-network-op": ("GRAPH_NETWORK_OP", "the model's graph talks to other hosts"),
    "asset-escape": ("ASSET_ESCAPE", "the model names an asset outside its directory"),
}
