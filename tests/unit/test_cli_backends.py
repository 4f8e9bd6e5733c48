"""eval's backend options: which backend, its options checked against it, and the Kubernetes
dry-run printing manifests without any cluster (the CLI's own process, no engine)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ENV = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/airlock-test.sock"}


def _airlock(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner.cli", *args],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=cwd,
        timeout=120,
    )


def _models(tmp_path: Path) -> Path:
    d = tmp_path / "vol" / "models"
    d.mkdir(parents=True)
    tiny = (Path(__file__).parents[2] / "examples" / "tiny.onnx").read_bytes()
    (d / "a.onnx").write_bytes(tiny)
    (d / "B model \x1b[31m.onnx").write_bytes(tiny)
    return d


def test_an_unknown_backend_is_one_line(tmp_path: Path) -> None:
    p = _airlock("eval", str(tmp_path), "--backend", "slurm")
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "airlock: error: backend 'slurm': not one Airlock has; choose one of local, ray, kubernetes"
    ]


def test_options_of_another_backend_are_refused(tmp_path: Path) -> None:
    p = _airlock("eval", str(tmp_path), "--address", "127.0.0.1:1")
    assert p.returncode == 2 and "--address is for the ray backend" in p.stderr
    p = _airlock("eval", str(tmp_path), "--namespace", "x", "--backend", "ray")
    assert p.returncode == 2 and "--namespace: for the kubernetes backend" in p.stderr
    p = _airlock("eval", str(tmp_path), "--dry-run")
    assert p.returncode == 2 and "--dry-run: for the kubernetes backend" in p.stderr
    assert "Traceback" not in p.stderr


def test_the_kubernetes_dry_run_prints_a_policy_and_a_job_per_model(tmp_path: Path) -> None:
    models = _models(tmp_path)
    p = _airlock(
        "eval",
        str(models),
        "--backend",
        "kubernetes",
        "--dry-run",
        "--model-root",
        str(tmp_path / "vol"),
        "--namespace",
        "vetting",
        "--memory",
        "1g",
    )
    assert p.returncode == 0, p.stderr
    docs = list(yaml.safe_load_all(p.stdout))
    assert [d["kind"] for d in docs] == ["NetworkPolicy", "Job", "Job"]
    assert {d["metadata"]["namespace"] for d in docs} == {"vetting"}
    for job in docs[1:]:
        pod = job["spec"]["template"]["spec"]
        sandbox = next(c for c in pod["containers"] if c["name"] == "sandbox")
        assert sandbox["resources"]["limits"]["memory"] == str(1 << 30)
    assert "\x1b" not in p.stdout
    assert not (tmp_path / "airlock-results").exists()  # nothing was made


def test_a_model_outside_the_model_volume_is_one_line(tmp_path: Path) -> None:
    models = _models(tmp_path)
    p = _airlock(
        "eval", str(models), "--backend", "kubernetes", "--dry-run", "--model-root", "/nonexistent"
    )
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1 and "model volume" in p.stderr


def test_a_model_needing_a_framework_image_gets_it(tmp_path: Path) -> None:
    models = _models(tmp_path)
    (models / "sm").mkdir()
    (models / "sm" / "saved_model.pb").write_bytes(b"\x08\x01")
    args = ["eval", str(models), "--backend", "kubernetes", "--dry-run"]
    args += ["--model-root", str(tmp_path / "vol"), "--image", "reg.invalid/airlock-sandbox:1"]
    p = _airlock(*args, "--framework-image", "tensorflow=reg.invalid/airlock-tf:1")
    assert p.returncode == 0, p.stderr
    images = {}
    for doc in yaml.safe_load_all(p.stdout):
        if doc["kind"] == "Job":
            pod = doc["spec"]["template"]["spec"]
            model = doc["metadata"]["labels"]["airlock.model"]
            images[model] = {c["image"] for c in pod["containers"] + pod["initContainers"]} - {
                "airlock-controller:latest"
            }
    assert images == {
        "a.onnx": {"reg.invalid/airlock-sandbox:1"},
        "B_model_31m.onnx": {"reg.invalid/airlock-sandbox:1"},
        "sm": {"reg.invalid/airlock-tf:1"},
    }, images


def test_a_bad_framework_image_is_one_line(tmp_path: Path) -> None:
    models = _models(tmp_path)
    base = ["eval", str(models), "--backend", "kubernetes", "--dry-run"]
    base += ["--model-root", str(tmp_path / "vol")]
    for value, says in (("tensorflow", "not KEY=VALUE"), ("jax=reg/x:1", "not a framework")):
        p = _airlock(*base, "--framework-image", value)
        assert p.returncode == 2, p.stdout
        assert len(p.stderr.strip().splitlines()) == 1 and says in p.stderr, p.stderr
