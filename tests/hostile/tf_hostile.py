"""Hostile TensorFlow models, built at test time by TensorFlow itself (tests.fixtures.tf_models
runs the builds in a child process), each through the format's own code path: a graph op, not
a pickle. Harmless outside the sandbox: each writes one marker file under a temp path the test
chose, and nothing else.

- savedmodel_write: the serving function calls tf.io.write_file(marker) (a WriteFile op);
- savedmodel_save: the serving function saves a checkpoint at marker (tf.raw_ops.SaveV2),
  the op every model's saver uses, outside the saver;
- savedmodel_pyfunc: the serving function calls tf.py_function (an EagerPyFunc op);
- savedmodel_dump: the serving function calls DumpTensor (registered in tensorflow-cpu, no
  tf.raw_ops wrapper), which writes marker/dump.pb: the host's op list missed it;
- savedmodel_v1_restore: a TF1 SavedModel whose saver's restore op (which TensorFlow's v1
  loader runs at load) also depends on a SaveV2 of a constant to marker: the host took every
  checkpoint op the saver reaches for its own;
- tflite_flex_write: a TFLite model with TensorFlow's WriteFile as a Flex op.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Hostile:
    kind: str  # a tests.fixtures.tf_models kind
    static: frozenset[str]  # the host's findings
    dynamic: frozenset[str] = frozenset()  # the sandbox's, when the model loads and is called
    image: str = "tensorflow"  # the image it runs in ("default" for TFLite)
    where: str = "__inference_serve"  # what the host's AL970 evidence names


HOSTILE = (
    Hostile("savedmodel_write", frozenset({"AL970"}), frozenset({"AL302"})),
    Hostile("savedmodel_save", frozenset({"AL970"}), frozenset({"AL302"})),
    Hostile("savedmodel_pyfunc", frozenset({"AL971"})),
    # each was clean before the host knew it (the sandbox's AL302 alone is low)
    Hostile("savedmodel_dump", frozenset({"AL970"}), frozenset({"AL302"}), where="DumpTensor"),
    Hostile(
        "savedmodel_v1_restore",
        frozenset({"AL970"}),
        frozenset({"AL302"}),
        where="when the saver restores (at load): op SaveV2",
    ),
    Hostile("tflite_flex_write", frozenset({"AL970", "AL973"}), image="default"),
)
