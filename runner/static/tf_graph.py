"""TensorFlow SavedModel graphs read on the host: the ops of every meta graph's GraphDef and of
every FunctionDef in its function library (where tf.function bodies live), by the protobuf wire
format, bounded (MAX_GRAPH_BYTES read, MAX_FIELDS fields, MAX_ATTR_DEPTH nested attributes),
never executing or deserialising anything.

What is judged (the op tables below; runner.static.tflite judges Flex ops with them):
- ops that touch files (AL970), call Python (AL971) or the network (AL974), wherever they are;
  the checkpoint ops every model saves and restores its variables with (SaveV2, RestoreV2,
  MergeV2Checkpoints, ...) only where something other than the saver reaches them: the saver's
  own nodes in the main graph (ancestors of saver_def's save and restore targets that no
  signature and no collection needs) and the functions only they call (by an attribute or as
  a node's op) are the model's own checkpointing. TensorFlow's v1 loader runs the restore
  target when it loads (the save target never runs there), so on the restore side only the
  restore ops are the saver's own: a SaveV2 or MergeV2Checkpoints the restore target reaches
  writes files at load;
- ops that run a graph or program held as data (DatasetFromGraph's serialized GraphDef, an
  MLIR module in an attribute), which the host does not read: AL972;
- function references (an attribute's func, a PartitionedCall's f) that name no function of the
  library name a primitive op (TensorFlow runs it as one): judged as that op;
- asset file names that are absolute or climb out of assets/ (AL975);
- what cannot be read (a broken wire format, a bound reached, a text-format graph) is AL972.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import untrusted_text
from runner.static.signs import Signs
from runner.static.tamper import Tamper, TamperKind

MAX_GRAPH_BYTES = 256 << 20  # saved_model.pb bytes read (the pre-flight child has 1 GiB)
MAX_FIELDS = 5_000_000  # protobuf fields read in one file, every message together
MAX_ATTR_DEPTH = 8  # NameAttrList inside AttrValue inside NameAttrList ...
MAX_SHOWN = 8  # findings of one kind shown (the rest counted)
MAX_KEPT = 10_000  # evidence lines of one kind kept while reading (the rest not counted)


class Unreadable(Exception):
    """The bytes stop being the protobuf they should be, or a bound was reached."""


class Wire:
    """Fields of protobuf messages in a buffer, with one field budget for all of them."""

    def __init__(self, buf: bytes | mmap.mmap | memoryview, budget: int = MAX_FIELDS) -> None:
        self.buf, self.left = buf, budget

    def fields(self, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
        """(field number, wire type, value or payload offset, payload length) in [start, end)."""
        buf, at = self.buf, start
        if end > len(buf) or start > end:
            raise Unreadable(f"a message at {start} runs past the end of the data")
        while at < end:
            self.left -= 1
            if self.left < 0:
                raise Unreadable(f"more than {MAX_FIELDS} protobuf fields (the read bound)")
            key, at = self._varint(at, end)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise Unreadable(f"field number 0 at offset {at}")
            if wire == 0:
                value, at = self._varint(at, end)
                yield number, 0, value, 0
            elif wire == 2:
                length, at = self._varint(at, end)
                if length > end - at:
                    raise Unreadable(f"a field of {length} bytes at {at} runs past its message")
                yield number, 2, at, length
                at += length
            elif wire in (1, 5):
                size = 8 if wire == 1 else 4
                if size > end - at:
                    raise Unreadable(f"a fixed field at {at} runs past its message")
                yield number, wire, int.from_bytes(buf[at : at + size], "little"), size
                at += size
            else:  # groups (3, 4) and 6, 7: nothing TensorFlow writes
                raise Unreadable(f"wire type {wire} at offset {at}")

    def _varint(self, at: int, end: int) -> tuple[int, int]:
        result = shift = 0
        buf = self.buf
        while shift < 70:
            if at >= end:
                raise Unreadable(f"a varint at {at} runs past its message")
            b = buf[at]
            at += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result & ((1 << 64) - 1), at
            shift += 7
        raise Unreadable(f"a varint longer than ten bytes at {at}")

    def text(self, start: int, length: int, limit: int = 4096) -> str:
        return bytes(self.buf[start : start + min(length, limit)]).decode("utf-8", "replace")

    def sub(self, start: int, length: int, *numbers: int) -> Iterator[tuple[int, int, int]]:
        """(number, payload offset, length) of the length-delimited fields named."""
        for number, wire, value, size in self.fields(start, start + length):
            if wire == 2 and number in numbers:
                yield number, value, size


@dataclass
class Node:
    name: str = ""
    ops: list[str] = field(default_factory=list)  # every op value (the last one wins in TF)
    inputs: list[str] = field(default_factory=list)
    funcs: list[str] = field(default_factory=list)  # function (or primitive op) names it calls
    # (its ops may name a function too: TensorFlow runs a node whose op is a function's name)
    strings: dict[str, str] = field(default_factory=dict)  # attr name -> its string value


def node_def(w: Wire, start: int, length: int, keep_inputs: bool = True) -> Node:
    """NodeDef: name 1, op 2, input 3, attr 5 (map<string, AttrValue>)."""
    node = Node()
    for number, at, size in w.sub(start, length, 1, 2, 3, 5):
        if number == 1:
            node.name = w.text(at, size, 1024)
        elif number == 2:
            node.ops.append(w.text(at, size, 1024))
        elif number == 3 and keep_inputs:
            node.inputs.append(w.text(at, size, 1024))
        elif number == 5:
            _attr_entry(w, at, size, node, 0)
    return node


def _attr_entry(w: Wire, start: int, length: int, node: Node, depth: int) -> None:
    """A map entry: key 1, AttrValue 2 (list 1, s 2, func 10)."""
    key = ""
    for number, at, size in w.sub(start, length, 1, 2):
        if number == 1:
            key = w.text(at, size, 256)
            continue
        for a_number, a_at, a_size in w.sub(at, size, 1, 2, 10):
            if a_number == 2 and depth == 0:
                node.strings[key] = w.text(a_at, a_size, 1024)
            elif a_number == 10:
                _name_attr_list(w, a_at, a_size, node, depth)
            elif a_number == 1:  # ListValue: func 9
                for _, l_at, l_size in w.sub(a_at, a_size, 9):
                    _name_attr_list(w, l_at, l_size, node, depth)


def _name_attr_list(w: Wire, start: int, length: int, node: Node, depth: int) -> None:
    """NameAttrList: name 1, attr 2 (map<string, AttrValue>, which may hold more of them)."""
    if depth >= MAX_ATTR_DEPTH:
        raise Unreadable(f"function attributes nested more than {MAX_ATTR_DEPTH} deep")
    for number, at, size in w.sub(start, length, 1, 2):
        if number == 1:
            node.funcs.append(w.text(at, size, 1024))
        else:
            _attr_entry(w, at, size, node, depth + 1)


@dataclass
class MetaGraph:
    nodes: list[Node] = field(default_factory=list)  # the main graph's
    functions: dict[str, list[Node]] = field(default_factory=dict)
    save_targets: list[str] = field(default_factory=list)  # saver_def's save tensor
    restore_targets: list[str] = field(default_factory=list)  # its restore op (v1 load runs it)
    run_targets: list[str] = field(default_factory=list)  # signature tensors, collections
    concrete: list[str] = field(default_factory=list)  # the object graph's functions
    gradients: list[str] = field(default_factory=list)
    assets: list[str] = field(default_factory=list)


def saved_model(w: Wire, size: int) -> Iterator[MetaGraph]:
    """SavedModel: meta_graphs 2."""
    for _, at, length in w.sub(0, size, 2):
        yield meta_graph(w, at, length)


def meta_graph(w: Wire, start: int, length: int) -> MetaGraph:
    """MetaGraphDef: graph_def 2, saver_def 3, collection_def 4, signature_def 5,
    asset_file_def 6, object_graph_def 7."""
    mg = MetaGraph()
    for number, at, size in w.sub(start, length, 2, 3, 4, 5, 6, 7):
        if number == 2:  # GraphDef: node 1, library 2
            for g_number, g_at, g_size in w.sub(at, size, 1, 2):
                if g_number == 1:
                    mg.nodes.append(node_def(w, g_at, g_size))
                else:
                    _library(w, g_at, g_size, mg)
        elif number == 3:  # SaverDef: save_tensor_name 2, restore_op_name 3
            for s_number, a, n in w.sub(at, size, 2, 3):
                targets = mg.save_targets if s_number == 2 else mg.restore_targets
                targets.append(w.text(a, n, 1024))
        elif number == 4:  # map entry: CollectionDef 2: node_list 1 (value 1)
            for _, c_at, c_size in w.sub(at, size, 2):
                for _, l_at, l_size in w.sub(c_at, c_size, 1):
                    mg.run_targets += [w.text(a, n, 1024) for _, a, n in w.sub(l_at, l_size, 1)]
        elif number == 5:  # map entry: SignatureDef 2: inputs 1, outputs 2 (map entry: value 2)
            for _, s_at, s_size in w.sub(at, size, 2):
                for _, e_at, e_size in w.sub(s_at, s_size, 1, 2):
                    for _, t_at, t_size in w.sub(e_at, e_size, 2):
                        mg.run_targets += _tensor_names(w, t_at, t_size, 0)
        elif number == 6:  # AssetFileDef: filename 2
            mg.assets += [w.text(a, n, 1024) for _, a, n in w.sub(at, size, 2)]
        else:  # SavedObjectGraph: concrete_functions 2 (map entry: key 1)
            for _, e_at, e_size in w.sub(at, size, 2):
                mg.concrete += [w.text(a, n, 1024) for _, a, n in w.sub(e_at, e_size, 1)]
    return mg


def _tensor_names(w: Wire, start: int, length: int, depth: int) -> list[str]:
    """TensorInfo: name 1, coo_sparse 4 (values 1, indices 2, dense shape 3 tensor names),
    composite_tensor 5 (components 2, TensorInfos): every tensor a signature names."""
    if depth >= MAX_ATTR_DEPTH:
        raise Unreadable(f"signature tensors nested more than {MAX_ATTR_DEPTH} deep")
    names: list[str] = []
    for number, at, size in w.sub(start, length, 1, 4, 5):
        if number == 1:
            names.append(w.text(at, size, 1024))
        elif number == 4:
            names += [w.text(a, n, 1024) for _, a, n in w.sub(at, size, 1, 2, 3)]
        else:
            for _, c_at, c_size in w.sub(at, size, 2):
                names += _tensor_names(w, c_at, c_size, depth + 1)
    return names


def _library(w: Wire, start: int, length: int, mg: MetaGraph) -> None:
    """FunctionDefLibrary: function 1 (FunctionDef: signature 1 (OpDef: name 1), node_def 3),
    gradient 2 (GradientDef: gradient_func 2)."""
    for number, at, size in w.sub(start, length, 1, 2):
        if number == 2:
            mg.gradients += [w.text(a, n, 1024) for _, a, n in w.sub(at, size, 2)]
            continue
        name = ""  # signature messages merge and OpDef's name is singular: the last one wins
        body: list[Node] = []
        for f_number, f_at, f_size in w.sub(at, size, 1, 3):
            if f_number == 1:
                for _, a, n in w.sub(f_at, f_size, 1):
                    name = w.text(a, n, 1024)
            else:
                body.append(node_def(w, f_at, f_size, keep_inputs=False))
        mg.functions.setdefault(name, []).extend(body)


# --- the ops judged ---------------------------------------------------------------------------

FILE_OPS = frozenset(
    {
        "ReadFile", "WriteFile", "MatchingFiles", "MatchingFilesDataset",
        "ExperimentalMatchingFilesDataset", "FileSystemSetConfiguration", "ImmutableConst",
        "ImportEvent", "CreateSummaryFileWriter", "CreateSummaryDbWriter", "WriteSummary",
        "WriteAudioSummary", "WriteGraphSummary", "WriteHistogramSummary", "WriteImageSummary",
        "WriteRawProtoSummary", "WriteScalarSummary", "TFRecordDataset", "TFRecordDatasetV2",
        "FixedLengthRecordDataset", "FixedLengthRecordDatasetV2", "TextLineDataset",
        "CSVDataset", "CSVDatasetV2", "ExperimentalCSVDataset", "LMDBDataset",
        "ExperimentalLMDBDataset", "SqlDataset", "ExperimentalSqlDataset", "CacheDataset",
        "CacheDatasetV2", "SnapshotDataset", "SnapshotDatasetV2", "SnapshotDatasetReader",
        "SnapshotNestedDatasetReader", "SnapshotChunkDataset", "ListSnapshotChunksDataset",
        "SaveDataset", "SaveDatasetV2", "LoadDataset", "DatasetToTFRecord",
        "ExperimentalDatasetToTFRecord", "TFRecordReader", "TFRecordReaderV2", "TextLineReader",
        "TextLineReaderV2", "WholeFileReader", "WholeFileReaderV2", "FixedLengthRecordReader",
        "FixedLengthRecordReaderV2", "LMDBReader", "RecordInput", "LoadAndRemapMatrix",
        "GenerateVocabRemapping", "DebugIdentity", "DebugIdentityV2", "DebugIdentityV3",
        "DebugNanCount", "DebugNumericSummary", "DebugNumericSummaryV2",
        # registered in tensorflow-cpu 2.21 beside tf.raw_ops: a tensor dump to
        # log_dir_path/file_name, calibration statistics to output_file_path, word2vec's
        # corpus file (attributes)
        "DumpTensor", "CalibrationStatisticsSaver", "Skipgram",
    }
)  # fmt: skip
# How every model saves and restores its variables: judged only outside the saver's own reach
RESTORE_OPS = frozenset({"Restore", "RestoreV2", "RestoreSlice", "DTensorRestoreV2"})
CHECKPOINT_OPS = RESTORE_OPS | {"Save", "SaveV2", "SaveSlices", "MergeV2Checkpoints"}
# Ops that run a graph or a program they are given as data (a tensor, a string attribute)
DATA_GRAPH_OPS = frozenset(
    {"DatasetFromGraph", "MlirPassthroughOp", "_XlaHostComputeMlir", "_TPUCompileMlir"}
)
PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})
NETWORK_OPS = frozenset(
    {
        "DataServiceDataset", "DataServiceDatasetV2", "DataServiceDatasetV3",
        "DataServiceDatasetV4", "RegisterDataset", "RegisterDatasetV2", "DistributedSave",
        "Rpc", "TryRpc", "RpcServer", "RpcClient", "RpcCall", "RpcServerStart",
        "RpcServerRegister", "CollectiveBcastSend", "CollectiveBcastRecv",
        "CollectiveBcastSendV2", "CollectiveBcastRecvV2", "CollectiveGather",
        "CollectiveGatherV2", "CollectiveReduce", "CollectiveReduceV2", "CollectiveReduceV3",
        "CollectiveAllToAllV2", "CollectiveAllToAllV3", "CollectiveReduceScatterV2",
        "CollectivePermute", "CollectiveInitializeCommunicator", "CollectiveAssignGroupV2",
    }
)  # fmt: skip
# Ops whose attributes decide whether they touch files: attr -> values that keep them in memory
_ATTR_FILE_OPS = {
    "PrintV2": ("output_stream", ("", "stderr", "stdout", "log(info)", "log(warning)",
                                  "log(error)")),
    "DecodeProtoV2": ("descriptor_source", ("", "local://")),
    "EncodeProto": ("descriptor_source", ("", "local://")),
    "FixedUnigramCandidateSampler": ("vocab_file", ("",)),  # else its unigrams attribute
}  # fmt: skip


SAVE, RESTORE = "save", "restore"  # the saver's reaches (checkpointing=)


def judge_op(
    op: str, strings: dict[str, str], checkpointing: str = ""
) -> tuple[TamperKind, str] | None:
    """(kind, what it does) for an op that touches files, Python or the network; None for the
    rest. Checkpoint ops are the model's own checkpointing where only the saver reaches them:
    every one on its save side (SAVE), the restore ops on its restore side (RESTORE)."""
    if op in PYTHON_OPS:
        return TamperKind.GRAPH_PYTHON_OP, "calls back into Python"
    if op in NETWORK_OPS:
        return TamperKind.GRAPH_NETWORK_OP, "talks to other hosts"
    if op in FILE_OPS:
        return TamperKind.GRAPH_FILE_OP, "reads or writes files"
    if op in DATA_GRAPH_OPS:
        return TamperKind.GRAPH_UNREADABLE, "runs a graph held as data (the host does not read it)"
    if op in CHECKPOINT_OPS and checkpointing != SAVE:
        if checkpointing != RESTORE:
            return TamperKind.GRAPH_FILE_OP, "saves or restores a checkpoint outside the saver"
        if op not in RESTORE_OPS:
            return TamperKind.GRAPH_FILE_OP, "writes a checkpoint when the saver restores (at load)"
    if op in _ATTR_FILE_OPS:
        attr, quiet = _ATTR_FILE_OPS[op]
        value = strings.get(attr, "")
        if value not in quiet:
            return TamperKind.GRAPH_FILE_OP, f"{attr} {untrusted_text(value, 80)!r}"
    return None


def asset_escapes(name: str) -> bool:
    """An asset file name TensorFlow would join with assets/ to a path outside it."""
    parts = name.replace("\\", "/").split("/")
    return not name or name.startswith("/") or ".." in parts or "\x00" in name or ":" in parts[0]


# --- judgement --------------------------------------------------------------------------------


def _base(tensor: str) -> str:
    return tensor.lstrip("^").split(":", 1)[0]


def _ancestors(nodes: dict[str, Node], targets: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    todo = [_base(t) for t in targets]
    while todo:
        name = todo.pop()
        if name in seen or name not in nodes:
            continue
        seen.add(name)
        todo += [_base(i) for i in nodes[name].inputs]
    return seen


def _closure(functions: dict[str, list[Node]], roots: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        todo += [f for n in functions[name] for f in (*n.funcs, *n.ops)]
    return seen


def saver_only(mg: MetaGraph) -> tuple[dict[str, str], dict[str, str]]:
    """The main-graph nodes and the functions that only the saver reaches (the model's
    checkpointing), each with its side: RESTORE for what the restore target reaches (also when
    the save target reaches it too), SAVE for the rest."""
    by_name = {n.name: n for n in mg.nodes}
    run = _ancestors(by_name, mg.run_targets)
    restore = _ancestors(by_name, mg.restore_targets) - run
    save = _ancestors(by_name, mg.save_targets) - run - restore

    def calls(names: Iterable[str]) -> list[str]:
        return [f for name in names for f in (*by_name[name].funcs, *by_name[name].ops)]

    others = set(by_name) - save - restore
    restore_fns = _closure(mg.functions, calls(restore))
    save_fns = _closure(mg.functions, calls(save)) - restore_fns
    orphans = set(mg.functions) - restore_fns - save_fns
    run_fns = _closure(mg.functions, [*calls(others), *mg.concrete, *mg.gradients, *orphans])
    nodes = {n: SAVE for n in save} | {n: RESTORE for n in restore}
    fns = {f: SAVE for f in save_fns - run_fns} | {f: RESTORE for f in restore_fns - run_fns}
    return nodes, fns


def judge(mg: MetaGraph, found: dict[TamperKind, list[str]]) -> None:
    """Add each judged op of the meta graph to found (kind -> evidence)."""
    saver_nodes, saver_fns = saver_only(mg)
    bodies: list[tuple[str, list[Node], str]] = [("the main graph", mg.nodes, "")]
    for name, body in mg.functions.items():
        bodies.append((f"function {name!r}", body, saver_fns.get(name, "")))
    for where, body, side in bodies:
        for node in body:
            own = side or (saver_nodes.get(node.name, "") if where == "the main graph" else "")
            called = [f for f in node.funcs if f not in mg.functions]  # primitive ops by name
            for op in [*node.ops, *called]:
                verdict = judge_op(op, node.strings, checkpointing=own)
                if verdict is not None:
                    kind, what = verdict
                    evidence = (
                        f"{what}: op {untrusted_text(op, 80)} (node "
                        f"{untrusted_text(node.name, 80)!r} in {untrusted_text(where, 120)})"
                    )
                    kept = found.setdefault(kind, [])
                    if len(kept) < MAX_KEPT:
                        kept.append(evidence)
    for name in mg.assets:
        if asset_escapes(name):
            found.setdefault(TamperKind.ASSET_ESCAPE, []).append(
                f"asset file {untrusted_text(name, 160)!r} is not a plain name under assets/"
            )


def examine(primary: Path) -> Signs:
    """The judged ops of a SavedModel's graph; never raises for a hostile file."""
    found: dict[TamperKind, list[str]] = {}
    if primary.name.endswith(".pbtxt"):
        why = f"{primary.name} is a text-format graph, which the host does not read"
        return Signs(tamper=[Tamper(TamperKind.GRAPH_UNREADABLE, why)])
    try:
        with primary.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_GRAPH_BYTES:
                raise Unreadable(f"{size} bytes, more than the {MAX_GRAPH_BYTES} the host reads")
            if size == 0:
                raise Unreadable("an empty file")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                w = Wire(buf)
                graphs = 0
                for mg in saved_model(w, size):
                    graphs += 1
                    judge(mg, found)
                if not graphs:
                    raise Unreadable("no meta graph in it")
    except Unreadable as e:
        found.setdefault(TamperKind.GRAPH_UNREADABLE, []).append(
            f"{primary.name}: {untrusted_text(str(e), 200)}"
        )
    except (OSError, ValueError, MemoryError) as e:
        why = f"{primary.name} could not be read: {untrusted_text(str(e), 160)}"
        found.setdefault(TamperKind.GRAPH_UNREADABLE, []).append(why)
    return Signs(tamper=tampers(found))


def tampers(found: dict[TamperKind, list[str]]) -> list[Tamper]:
    out: list[Tamper] = []
    for kind, evidence in found.items():
        unique = list(dict.fromkeys(evidence))
        out += [Tamper(kind, e) for e in unique[:MAX_SHOWN]]
        if len(unique) > MAX_SHOWN:
            out.append(Tamper(kind, f"and {len(unique) - MAX_SHOWN} more of the same kind"))
    return out
