"""Checkpoints, architecture files and adapters, with no Docker: the worker's key finding and
prefix stripping (run in-process on tensors made here), the architecture file's blame, the
LoRA merge's checks, the host's static read of a safetensors header, and the usage errors caught
before a sandbox starts."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.cli import main
from runner.static import weights
from runner.worker.loaders import LoadError

torch = pytest.importorskip("torch")

from runner.worker import checkpoints, loaders_peft  # noqa: E402  (imports torch lazily)


def _sd(*names: str) -> dict[str, object]:
    return {n: torch.zeros(2) for n in names}


def test_the_common_keys_are_found_and_the_state_key_names_one() -> None:
    state = {"epoch": 1, "state_dict": _sd("a.w"), "ema": _sd("b.w"), "optimizer": {"lr": 1}}
    got, note = checkpoints.select(state, "")
    assert set(got) == {"a.w"} and "'state_dict'" in note and "found by itself" in note
    got, note = checkpoints.select(state, "ema")
    assert set(got) == {"b.w"} and "'ema'" in note
    flat = _sd("x.w", "y.w")
    assert checkpoints.select(flat, "") == (flat, "")
    assert set(checkpoints.select(_sd("model.w", "other.w"), "model")[0]) == {"w"}  # a prefix
    nested = {"outer": {"inner": _sd("w")}}
    assert set(checkpoints.select(nested, "outer/inner")[0]) == {"w"}
    module = torch.nn.Linear(2, 2)
    assert checkpoints.select({"model": module, "epoch": 2}, "")[0] is module
    assert checkpoints.select({"epoch": 1}, "") == (None, "")


def test_a_state_key_that_is_not_there_says_which_keys_are() -> None:
    with pytest.raises(LoadError, match=r"--state-key 'nope'.*no such key.*'epoch'"):
        checkpoints.select({"epoch": 1, "state_dict": _sd("w")}, "nope")
    with pytest.raises(LoadError, match="holds a int there, not weights"):
        checkpoints.select({"epoch": 1}, "epoch")


def test_a_wrapper_prefix_is_stripped_only_when_it_fits_better() -> None:
    expected = {"fc.weight", "fc.bias"}
    state = _sd("model.fc.weight", "model.fc.bias", "loss.pos_weight")
    fitted, note = checkpoints.fit_keys(state, expected)
    assert set(fitted) == expected and "'model.'" in note and "1 keys without it" in note
    fitted, note = checkpoints.fit_keys(
        _sd("module.model.fc.weight", "module.model.fc.bias"), expected
    )
    assert set(fitted) == expected and "'module.model.'" in note
    exact = _sd("fc.weight", "fc.bias")
    assert checkpoints.fit_keys(exact, expected) == (exact, "")
    other = _sd("x.a", "x.b")
    assert checkpoints.fit_keys(other, expected) == (other, "")


def test_config_json_is_read_bounded_and_never_through_a_symlink(tmp_path: Path) -> None:
    assert checkpoints.read_config(tmp_path) == (None, "")
    (tmp_path / "config.json").write_text(json.dumps({"n": 4}))
    assert checkpoints.read_config(tmp_path) == ({"n": 4}, "")
    (tmp_path / "config.json").write_text("[1, 2]")
    assert checkpoints.read_config(tmp_path)[0] is None
    (tmp_path / "config.json").write_text("[" * 100_000)
    assert "not JSON" in checkpoints.read_config(tmp_path)[1]
    (tmp_path / "config.json").unlink()
    (tmp_path / "elsewhere.json").write_text("{}")
    (tmp_path / "config.json").symlink_to(tmp_path / "elsewhere.json")
    assert checkpoints.read_config(tmp_path)[0] is None


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("import torch\n\ndef build_model(config):\n    return nope\n", "NameError.*at line 4"),
        ("def build_model(:\n", "SyntaxError.*at line 1"),
        ("x = 1\n", "defines no build_model"),
        ("def build_model():\n    return 3\n", "returned a int, not a torch.nn.Module"),
        ("import sys\nsys.exit(3)\n", "SystemExit.*at line 2"),
    ],
)
def test_what_the_architecture_file_does_wrong_is_blamed_on_it(
    tmp_path: Path, source: str, message: str
) -> None:
    arch = tmp_path / "arch.py"
    arch.write_text(source)
    with pytest.raises(checkpoints.ArchitectureError, match=message) as e:
        checkpoints.build(arch, _sd("weight"), tmp_path, non_strict=False)
    assert str(e.value).startswith(checkpoints.ARCH_BLAME)


def test_build_model_gets_the_config_or_none_and_non_strict_lists_keys(tmp_path: Path) -> None:
    arch = tmp_path / "arch.py"
    arch.write_text(
        "import torch\n\ndef build_model(config):\n"
        "    return torch.nn.Linear(config['n'] if config else 3, 2)\n"
    )
    net = torch.nn.Linear(3, 2)
    module, notes = checkpoints.build(arch, dict(net.state_dict()), tmp_path, non_strict=False)
    assert module.in_features == 3 and notes == []
    (tmp_path / "config.json").write_text(json.dumps({"n": 3}))
    only = {"weight": net.weight.detach(), "extra.w": torch.zeros(1)}
    _module, notes = checkpoints.build(arch, only, tmp_path, non_strict=True)
    assert "build_model got config.json" in notes
    assert "1 missing keys ('bias'), 1 unexpected ('extra.w')" in notes[-1]
    with pytest.raises(LoadError, match="--non-strict loads the weights that fit"):
        checkpoints.build(arch, only, tmp_path, non_strict=False)


def test_lora_pairs_must_fit_the_base_before_anything_is_multiplied() -> None:
    base = torch.nn.Sequential(torch.nn.Linear(4, 3))
    ok = {
        "base_model.model.0.lora_A.weight": torch.ones(2, 4),
        "base_model.model.0.lora_B.weight": torch.ones(3, 2),
    }
    before = base[0].weight.detach().clone()
    note = loaders_peft.apply_lora(base, ok, {"lora_alpha": 4})
    assert note == "1 LoRA pairs merged"
    assert torch.allclose(base[0].weight, before + 2 * 2.0)  # (B @ A) = 2, alpha / r = 2
    wrong = {
        "base_model.model.0.lora_A.weight": torch.ones(2, 5),
        "base_model.model.0.lora_B.weight": torch.ones(3, 2),
    }
    with pytest.raises(LoadError, match=r"make \[3, 5\], the base's weight is \[3, 4\]"):
        loaders_peft.apply_lora(base, wrong, {})
    with pytest.raises(LoadError, match="no B matrix"):
        loaders_peft.apply_lora(base, {"base_model.model.0.lora_A.weight": torch.ones(2, 4)}, {})
    with pytest.raises(LoadError, match="a module the base does not have"):
        loaders_peft.apply_lora(base, {k.replace(".0.", ".9."): v for k, v in ok.items()}, {})


def _safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> Path:
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = int(np.prod(shape)) * 4
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)
    return path


def test_a_safetensors_header_is_read_for_names_and_shapes(tmp_path: Path) -> None:
    many = {f"layer{i}.weight": ("F32", [2, i + 1]) for i in range(30)}
    found = weights.safetensors_tensors(_safetensors(tmp_path / "w.safetensors", many))
    assert found is not None and found.count == 30 and len(found.listed) == weights.MAX_LISTED
    assert found.listed[1] == ("layer1.weight", "F32", [2, 2])
    assert (
        found.summary(2)
        == "30 tensors: layer0.weight F32 [2, 1], layer1.weight F32 [2, 2] and 28 more"
    )


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_the_header_reader_never_raises(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path = tmp_path_factory.mktemp("h") / "w.safetensors"
    path.write_bytes(struct.pack("<Q", len(data)) + data)
    found = weights.safetensors_tensors(path)
    assert found is None or found.count >= 0


@pytest.fixture
def no_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/airlock-test-checkpoints.sock")


@pytest.mark.usefixtures("no_docker")
def test_weights_with_no_architecture_are_a_usage_error_before_a_sandbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _safetensors(tmp_path / "w.safetensors", {"fc.weight": ("F32", [2, 2])})
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 2), np.float32))
    assert main(["run", str(model), "--input", str(x)]) == 2
    err = capsys.readouterr().err
    assert "w.safetensors holds only weights (1 tensors) and no architecture" in err
    assert "pass --arch FILE that defines build_model(config)" in err
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    _safetensors(adapter / "adapter_model.safetensors", {"a": ("F32", [1])})
    assert main(["run", str(adapter), "--input", str(x)]) == 2
    assert "is a PEFT adapter" in capsys.readouterr().err
    # with an architecture, or with no inputs (describe), it goes on to the engine
    arch = tmp_path / "arch.py"
    arch.write_text("def build_model():\n    pass\n")
    for argv in (
        ["run", str(model), "--input", str(x), "--arch", str(arch)],
        ["describe", str(model)],
    ):
        code = main(argv)
        err = capsys.readouterr().err
        assert code != 0 and "holds only weights" not in err, err


def _deflated(src: Path, dst: Path) -> Path:
    """src's archive again with every record compressed: torch.load reads it, and a mapping of
    the file would see the compressed bytes."""
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    return dst


def test_a_state_dict_is_mapped_only_when_no_architecture_computes_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner.worker import loaders_torch
    from runner.worker.loaders import Options

    mapped: list[bool] = []  # whether each torch.load that returned mapped the file
    load = torch.load

    def recorded(*args: object, **kwargs: object) -> object:
        out = load(*args, **kwargs)  # type: ignore[arg-type]
        mapped.append(bool(kwargs.get("mmap")))
        return out

    monkeypatch.setattr(torch, "load", recorded)
    weight = torch.rand(64, 64)
    plain = tmp_path / "plain.pt"
    torch.save({"weight": weight, "bias": torch.zeros(64)}, plain)
    described = loaders_torch._load_torch(plain, None, 1, Options())
    assert described.run is None and "'weight' [64, 64]" in described.note
    assert mapped == [True]

    packed = _deflated(plain, tmp_path / "packed.pt")
    assert "'weight' [64, 64]" in loaders_torch._load_torch(packed, None, 1, Options()).note
    assert mapped == [True, False]  # torch refuses to map it: read the usual way
    arch = tmp_path / "arch.py"
    arch.write_text(
        "import torch\n\ndef build_model(config):\n    return torch.nn.Linear(64, 64)\n"
    )
    x = np.ones((1, 64), dtype=np.float32)
    for path in (plain, packed):  # an architecture computes with the values: never mapped
        loaded = loaders_torch._load_torch(path, arch, 1, Options())
        assert loaded.run is not None
        (out,) = loaded.run({"input": x}).values()
        np.testing.assert_allclose(out, x @ weight.numpy().T, rtol=1e-5)  # torch.load's values
    assert mapped == [True, False, False, False]
