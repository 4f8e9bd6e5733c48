"""The rules of what the host reads in Keras files (AL950-AL954: Lambda layers that ship code,
configs naming functions outside Keras's modelling code or that run code, configs that could not
be read, torch modules pickled into a config), as rows the rule table (runner.rules.catalog)
splices in: id, RuleName member, title, Severity member, evidence; and SIGNS, the TamperKind
each static finding carries, with its rule and message. Plain data: this module imports nothing
of Airlock."""

from __future__ import annotations

Row = tuple[str, str, str, str, str]

ROWS: tuple[Row, ...] = (
    (
        "AL950",
        "KERAS_LAMBDA",
        "Keras Lambda layer ships code",
        "MEDIUM",
        "static: a Lambda layer in config.json (or an .h5 file's model_config), with its "
        "function's kind: marshalled Python bytecode (run by loading with safe_mode=False; the "
        "names its bytecode holds are shown), source, or a named function",
    ),
    (
        "AL951",
        "KERAS_FOREIGN_FUNCTION",
        "Keras config names a callable outside Keras's modelling code",
        "HIGH",
        "static: a module, class or function the config names (module, class_name, "
        "registered_name, fn, a Lambda's function) that is no Keras layer, model, op, "
        "initializer, activation, loss, metric, optimizer, regularizer or constraint: another "
        "package, a Keras utility or a module name that is no importable name (the shape of "
        "CVE-2025-1550)",
    ),
    (
        "AL952",
        "KERAS_CONFIG_UNREADABLE",
        "Keras config could not be read",
        "MEDIUM",
        "static: config.json or model_config that is missing, over its size bound, not JSON, "
        "nested too deep or too large to walk, or stored where the host does not read it (an "
        "HDF5 attribute in dense storage, a shared message or datatype): what it holds was "
        "not checked",
    ),
    (
        "AL953",
        "KERAS_DANGEROUS_FUNCTION",
        "Keras config names a function that runs code or reaches outside",
        "CRITICAL",
        "static: a name in the config that passes through os, subprocess, builtins.eval/exec, "
        "importlib and the like (judged as pickle globals are), or a Keras function that is no "
        "modelling code and loads, fetches or unlocks (keras.utils.get_file, "
        "keras.config.enable_unsafe_deserialization, keras.models.load_model, "
        "keras.datasets.*.load_data; CVE-2025-8747, CVE-2025-9906), or a Lambda whose "
        "bytecode names such a module or function",
    ),
    (
        "AL954",
        "KERAS_PICKLED_MODULE",
        "Keras config holds a pickled torch module",
        "MEDIUM",
        "static: a TorchModuleWrapper layer whose config holds a torch.save stream (base64): "
        "loading with safe_mode=False unpickles it with torch.load(weights_only=False); its "
        "pickle's imports are judged as any pickle's",
    ),
)
# TamperKind value: (RuleName member, the finding's message)
SIGNS: dict[str, tuple[str, str]] = {
    "keras-lambda": (
        "KERAS_LAMBDA",
        "a Keras Lambda layer ships code that runs when the model loads",
    ),
    "keras-foreign-function": (
        "KERAS_FOREIGN_FUNCTION",
        "the Keras config names a callable outside Keras's modelling code",
    ),
    "keras-config-unreadable": (
        "KERAS_CONFIG_UNREADABLE",
        "the Keras config could not be read: what it holds was not checked",
    ),
    "keras-dangerous-function": (
        "KERAS_DANGEROUS_FUNCTION",
        "the Keras config names a function that runs code or reaches outside the model",
    ),
    "keras-pickled-module": (
        "KERAS_PICKLED_MODULE",
        "the Keras config holds a pickled torch module that loading unpickles",
    ),
}
