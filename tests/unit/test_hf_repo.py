"""runner.hf.repo: what the host reads of a Hugging Face repository, on repositories built in
tmp_path (configs, indexes, auto_maps, code files, adapters), with hostile JSON and code."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest

from runner.errors import UsageError
from runner.hf import repo
from runner.hf.repo import describe_repo, imports_of, parse_json, read_json, require_trust
from runner.report import HfInfo


def safetensors_bytes() -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\0\0\0\0"


def make_repo(root: Path, config: dict[str, Any] | None = None, **files: str | bytes) -> Path:
    """A repository: config.json (unless None), model.safetensors, and `files` by name
    ('__' in a name is a '/')."""
    root.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (root / "config.json").write_text(json.dumps(config))
    (root / "model.safetensors").write_bytes(safetensors_bytes())
    for name, body in files.items():
        f = root / name.replace("__", "/")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(body if isinstance(body, bytes) else body.encode())
    return root


def described(root: Path) -> HfInfo:
    info = describe_repo(root)
    assert info is not None
    return info


# --- what a repository is -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("architectures", "extra", "task"),
    [
        (["BertForSequenceClassification"], {}, "classification"),
        (["LlamaForCausalLM"], {}, "causal-lm"),
        (["GPT2LMHeadModel"], {}, "causal-lm"),
        (["BertModel"], {}, "embedding"),
        (["BertForMaskedLM"], {"modules.json": "[]"}, "embedding"),
        (["BertForMaskedLM"], {}, "hidden-states"),
        (None, {}, "hidden-states"),
    ],
)
def test_the_task_comes_from_the_first_architecture(
    tmp_path: Path, architectures: list[str] | None, extra: dict[str, str], task: str
) -> None:
    config: dict[str, Any] = {"model_type": "bert"}
    if architectures is not None:
        config["architectures"] = [*architectures, "OtherForCausalLM"]
    info = described(make_repo(tmp_path / "r", config, **extra))
    assert info.task == task
    assert info.model_type == "bert"
    assert info.architectures == ([*architectures, "OtherForCausalLM"] if architectures else [])
    assert info.weights == ["model.safetensors"]
    assert not info.remote_code and info.problems == [] and info.index_problems == []


def test_not_a_repository(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07")
    assert describe_repo(tmp_path) is None
    assert describe_repo(tmp_path / "model.onnx") is None
    assert describe_repo(tmp_path / "missing") is None


def test_tokenizer_files_are_seen(tmp_path: Path) -> None:
    assert not described(make_repo(tmp_path / "a", {})).tokenizer
    assert described(make_repo(tmp_path / "b", {}, **{"vocab.txt": "a\n"})).tokenizer
    assert described(make_repo(tmp_path / "c", {}, **{"tokenizer.json": "{}"})).tokenizer


def test_a_sharded_index_names_its_shards(tmp_path: Path) -> None:
    shards = ["model-00001-of-00002.safetensors", "sub/model-00002-of-00002.safetensors"]
    index = {"metadata": {}, "weight_map": {"a": shards[0], "b": shards[1], "c": shards[0]}}
    root = make_repo(tmp_path / "r", {}, **{"model.safetensors.index.json": json.dumps(index)})
    (root / "model.safetensors").unlink()
    for s in shards:
        (root / s).parent.mkdir(exist_ok=True)
        (root / s).write_bytes(safetensors_bytes())
    info = described(root)
    assert info.weights == sorted(shards)
    assert info.index_problems == [] and info.problems == []


def test_pytorch_weights_and_their_index(tmp_path: Path) -> None:
    index = {"weight_map": {"a": "pytorch_model-00001-of-00001.bin"}}
    root = make_repo(
        tmp_path / "r",
        {},
        **{
            "pytorch_model.bin": b"PK",
            "pytorch_model-00001-of-00001.bin": b"PK",
            "pytorch_model.bin.index.json": json.dumps(index),
        },
    )
    assert described(root).weights == [
        "model.safetensors",
        "pytorch_model-00001-of-00001.bin",
        "pytorch_model.bin",
    ]


def test_a_hostile_weight_map_is_an_index_problem(tmp_path: Path) -> None:
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(safetensors_bytes())
    weight_map = {
        "a": "../outside.safetensors",
        "b": "/etc/passwd",
        "c": "missing.safetensors",
        "d": "sub",
        "e": "link.safetensors",
        "f": "sub/../../outside.safetensors",
        "g": "model.safetensors",
        "h": "back\\slash",
    }
    root = make_repo(
        tmp_path / "r",
        {},
        **{"model.safetensors.index.json": json.dumps({"weight_map": weight_map})},
    )
    (root / "sub").mkdir()
    (root / "link.safetensors").symlink_to(outside)
    info = described(root)
    assert info.weights == ["model.safetensors"]
    bad = "\n".join(info.index_problems)
    assert len(info.index_problems) == 7, bad
    assert "'../outside.safetensors' points outside the repository" in bad
    assert "'/etc/passwd' is an absolute path" in bad
    assert "'missing.safetensors' is not in the repository" in bad
    assert "'sub' is a directory, not a regular file" in bad
    assert "'link.safetensors' is a symlink, not a regular file" in bad
    assert "'sub/../../outside.safetensors' points outside" in bad
    assert "is not a file name" in bad


def test_a_shard_through_a_linked_directory_resolves_outside(tmp_path: Path) -> None:
    away = tmp_path / "away"
    away.mkdir()
    (away / "model-00001-of-00001.safetensors").write_bytes(safetensors_bytes())
    index = {"weight_map": {"a": "d/model-00001-of-00001.safetensors"}}
    root = make_repo(tmp_path / "r", {}, **{"model.safetensors.index.json": json.dumps(index)})
    (root / "d").symlink_to(away)
    assert described(root).index_problems == [
        "model.safetensors.index.json: weight_map entry 'd/model-00001-of-00001.safetensors' "
        "resolves outside the repository"
    ]


@pytest.mark.parametrize(
    "index",
    [{"weight_map": []}, {"weight_map": {"a": 3}}, {"nothing": 1}, {"weight_map": {}}],
)
def test_an_index_of_another_shape_is_a_problem(tmp_path: Path, index: dict[str, Any]) -> None:
    root = make_repo(tmp_path / "r", {}, **{"model.safetensors.index.json": json.dumps(index)})
    info = described(root)
    assert len(info.problems) == 1 and info.problems[0].startswith("model.safetensors.index.json")


# --- remote code ----------------------------------------------------------------------------


def test_auto_map_in_config(tmp_path: Path) -> None:
    config = {
        "architectures": ["XForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_x.XConfig", "AutoModel": "modeling_x.X"},
    }
    code = "import os\nfrom torch import nn\nfrom .utils import helper\nfrom . import layers\n"
    root = make_repo(tmp_path / "r", config, **{"modeling_x.py": code, "utils.py": "x = 1\n"})
    info = described(root)
    assert info.remote_code
    assert info.auto_map == {"config.json": ["configuration_x.py", "modeling_x.py"]}
    files = {c.path: c for c in info.code_files}
    assert set(files) == {"modeling_x.py", "utils.py"}
    assert files["modeling_x.py"].imports == [".layers", ".utils", "os", "torch"]
    assert files["modeling_x.py"].sha256 == hashlib.sha256(code.encode()).hexdigest()
    assert files["utils.py"].imports == [] and files["utils.py"].problem == ""


def test_auto_map_in_tokenizer_config(tmp_path: Path) -> None:
    tok = {"auto_map": {"AutoTokenizer": ["tokenization_x.XTokenizer", None]}}
    root = make_repo(tmp_path / "r", {}, **{"tokenizer_config.json": json.dumps(tok)})
    info = described(root)
    assert info.remote_code and info.tokenizer
    assert info.auto_map == {"tokenizer_config.json": ["tokenization_x.py"]}


def test_auto_map_naming_another_repository_or_of_no_shape(tmp_path: Path) -> None:
    config = {"auto_map": {"AutoModel": "evil/other--modeling.M", "AutoConfig": 7}}
    info = described(make_repo(tmp_path / "r", config))
    assert info.auto_map == {"config.json": ["?", "evil/other--modeling.py"]}
    info = described(make_repo(tmp_path / "s", {"auto_map": "nonsense"}))
    assert info.remote_code and info.auto_map == {"config.json": ["?"]}


def test_an_unreadable_config_that_may_hold_an_auto_map_counts_as_remote_code(
    tmp_path: Path,
) -> None:
    bad = '{"auto_map": {"AutoModel": "m.M"}, "a": 1, "a": 2}'  # duplicate keys: refused
    info = described(make_repo(tmp_path / "r", None, **{"config.json": bad}))
    assert info.remote_code and info.problems[0].startswith("config.json: refused: duplicate key")
    escaped = '{"auto\\u005fmap": {"AutoModel": "m.M"}, "x": NaN}'
    info = described(make_repo(tmp_path / "s", None, **{"config.json": escaped}))
    assert info.remote_code


def test_code_files_that_cannot_be_read(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "r",
        {"auto_map": {"AutoModel": "m.M"}},
        **{
            "bad.py": "def (:\n",
            "nul.py": b"import os\0\n",
            "deep.py": "x = " + "-" * 200_000 + "1\n",
            "chain.py": "a" + ".b" * 300_000 + "\n",
            "big.py": b"#" * (repo.MAX_CODE_BYTES + 1),
            "latin.py": b"s = '\xff'\n",
            "sub__dyn.py": "import importlib\nimportlib.import_module(n)\n__import__('socket')\n",
        },
    )
    (root / "link.py").symlink_to(root / "bad.py")
    files = {c.path: c for c in described(root).code_files}
    assert files["bad.py"].problem.startswith("does not parse: ")
    assert files["bad.py"].sha256 == hashlib.sha256(b"def (:\n").hexdigest()
    assert files["nul.py"].problem and files["latin.py"].problem
    assert files["deep.py"].problem == "could not be parsed (MemoryError)"
    assert files["chain.py"].problem == "could not be parsed (RecursionError)"
    assert files["big.py"].problem == "larger than 1 MiB: its imports were not read"
    assert files["big.py"].sha256 == hashlib.sha256(b"#" * (repo.MAX_CODE_BYTES + 1)).hexdigest()
    huge = root / "huge.py"
    with huge.open("wb") as f:
        f.truncate(repo.MAX_CODE_HASHED + 1)  # sparse: never read
    huge_file = {c.path: c for c in described(root).code_files}["huge.py"]
    assert (huge_file.sha256, huge_file.problem) == ("", "larger than 1 MiB: not read")
    assert files["link.py"].problem == "a symlink: not followed" and files["link.py"].sha256 == ""
    assert files["sub/dyn.py"].imports == ["?", "importlib", "socket"]


def test_code_files_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(repo, "MAX_CODE_FILES", 3)
    monkeypatch.setattr(repo, "MAX_CODE_TOTAL", 25)
    root = make_repo(tmp_path / "r", {}, **{f"m{i}.py": "import os\n" for i in range(5)})
    info = described(root)
    assert [c.path for c in info.code_files] == ["m0.py", "m1.py", "m2.py"]
    assert [c.problem for c in info.code_files] == [
        "",
        "",
        "past the 8 MiB read: its imports were not read",
    ]
    assert info.problems == ["5 .py files: only the first 3 were read"]


def test_require_trust(tmp_path: Path) -> None:
    info = described(make_repo(tmp_path / "r", {"auto_map": {"AutoModel": "modeling_x.X"}}))
    with pytest.raises(UsageError) as e:
        require_trust(info, "acme/tiny", False)
    assert e.value.diagnostics() == (
        "acme/tiny ships its own code (auto_map in config.json: modeling_x.py); pass "
        "--trust-remote-code to run it in the sandbox, or use `airlock scan` to see what it does"
    )
    require_trust(info, "acme/tiny", True)
    require_trust(None, "x", False)
    require_trust(described(make_repo(tmp_path / "s", {})), "x", False)


# --- adapters -------------------------------------------------------------------------------


def test_a_peft_adapter_is_described(tmp_path: Path) -> None:
    adapter = {
        "peft_type": "LORA",
        "base_model_name_or_path": "acme/base",
        "task_type": "SEQ_CLS",
        "r": 8,
    }
    root = make_repo(tmp_path / "r", None, **{"adapter_config.json": json.dumps(adapter)})
    (root / "model.safetensors").rename(root / "adapter_model.safetensors")
    info = described(root)
    assert info.adapter == {
        "peft_type": "LORA",
        "base_model_name_or_path": "acme/base",
        "task_type": "SEQ_CLS",
    }
    assert info.weights == ["adapter_model.safetensors"] and info.task == "classification"
    assert info.problems == []


# --- bounded JSON ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"a": ' * 40 + b"1" + b"}" * 40, "nested deeper than 32 levels"),
        (b"[" * 100_000 + b"]" * 100_000, "could not be parsed (RecursionError)"),
        (b'{"a": 1', "not valid JSON (cut short): Expecting ',' delimiter at line 1 column 8"),
        (b'{"a": tru}', "not valid JSON: Expecting value at line 1 column 7"),
        (b'{"a": 1, "a": 2}', "refused: duplicate key 'a'"),
        (b'{"a": NaN}', "refused: NaN is not JSON"),
        (b'{"a": -Infinity}', "refused: -Infinity is not JSON"),
        (b'{"a": 1e999}', "refused: a number out of range (1e999)"),
        (b'{"a": ' + b"9" * 41 + b"}", "refused: a number of 41 digits"),
        (b'{"a": "\xff"}', "not UTF-8 (at byte 7)"),
        (b"[1, 2]", "not a JSON object (a list)"),
        (b"", "not valid JSON (cut short): Expecting value at line 1 column 1"),
        (b"[" + b"0," * 1_000_000 + b"0]", "more than 1000000 elements: not parsed"),
    ],
)
def test_json_that_is_refused(tmp_path: Path, body: bytes, problem: str) -> None:
    f = tmp_path / "x.json"
    f.write_bytes(body)
    assert read_json(f, max_bytes=1 << 24) == problem


def test_json_that_is_read(tmp_path: Path) -> None:
    f = tmp_path / "x.json"
    f.write_bytes(b'\xef\xbb\xbf{"a": [1, 2.5, "\\ud800", {"b": null}], "c": true}')
    assert read_json(f) == {"a": [1, 2.5, "\ud800", {"b": None}], "c": True}
    assert repo.text("\ud800x") == "?x"


def test_json_files_that_are_not_opened(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_bytes(b" " * 101 + b"{}")
    assert read_json(big, max_bytes=100) == "larger than 100 bytes: not read"
    link = tmp_path / "link.json"
    link.symlink_to(big)
    assert read_json(link).startswith("cannot be read (")
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    assert read_json(fifo) == "cannot be read (not a regular file (FIFO))"
    assert read_json(tmp_path).startswith("cannot be read (")
    assert read_json(tmp_path / "none.json").startswith("cannot be read (")


def test_repository_json_problems_are_listed(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "r",
        None,
        **{
            "config.json": '{"architectures": "Bert", "model_type": 3}',
            "tokenizer_config.json": "{",
            "adapter_config.json": b"\xff",
        },
    )
    info = described(root)
    assert info.problems == [
        "tokenizer_config.json: not valid JSON (cut short): Expecting property name enclosed "
        "in double quotes at line 1 column 2",
        "adapter_config.json: not UTF-8 (at byte 0)",
        "config.json: architectures is not a list of strings",
        "config.json: model_type is not a string",
    ]
    (root / "config.json").unlink()
    (root / "config.json").symlink_to(root / "adapter_config.json")
    assert described(root).problems[0].startswith("config.json: cannot be read (")


def test_parse_json_and_imports_of_take_bytes() -> None:
    assert parse_json(b'{"x": 1}') == {"x": 1}
    assert imports_of(b"import a.b as c, d\nfrom ..e import f\n") == ["..e", "a.b", "d"]
