"""`python -m classifier`: predict JSON contract, versions, promote, evaluate outputs, scratch baseline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from classifier.__main__ import main
from classifier.registry import Registry
from tests.classifier.helpers import TINY_LABELS

ROOT = Path(__file__).resolve().parents[2]


def test_predict_json_contract_via_subprocess(tiny_env, tmp_path: Path) -> None:
    good = tiny_env.dataset / "red_thing" / "red_thing_0.png"
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    missing = tmp_path / "missing.png"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "classifier",
            *tiny_env.argv("predict", "--json", str(good), str(broken), str(missing), str(good)),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["path"] for line in lines] == [str(good), str(broken), str(missing), str(good)]
    ok = lines[0]
    contract = {"path", "label", "confidence", "decision", "top_k", "model_version", "other_probability"}
    assert set(ok) == contract
    assert ok["label"] in TINY_LABELS and ok["model_version"] == "v0001"
    assert ok["decision"] in ("confident", "unsure", "not_equipment")
    assert 0.0 <= ok["confidence"] <= 1.0 and ok["top_k"][0] == [ok["label"], ok["confidence"]]
    assert all(isinstance(p, list) and len(p) == 2 for p in ok["top_k"])
    probs = [p for _, p in ok["top_k"]]
    assert probs == sorted(probs, reverse=True)
    # the tiny champion has 3 labels (all in the top 3) and an __other__ output: together they sum to 1
    assert len(ok["top_k"]) == len(TINY_LABELS) and 0.0 <= ok["other_probability"] <= 1.0
    assert sum(probs) + ok["other_probability"] == pytest.approx(1, abs=1e-4)
    assert "error" in lines[1] and "label" not in lines[1]
    assert "error" in lines[2] and "missing.png" in lines[2]["path"]
    assert lines[3] == ok


def test_versions_and_promote(tiny_env, tiny_models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--models-dir", str(tiny_models), "--weights", str(tiny_env.weights)]
    reg = Registry(tiny_models)
    # A second version: same files, new number (what a retrain would write).

    def copy(tmp: Path) -> None:
        for f in reg.version_dir("v0001").iterdir():
            (tmp / f.name).write_bytes(f.read_bytes())

    v2 = reg.create_version(copy)
    assert main([*argv, "promote", v2]) == 0
    assert reg.champion() == v2 and reg.previous_champion() == "v0001"
    assert main([*argv, "versions"]) == 0
    out = capsys.readouterr().out
    assert f"* {v2}" in out and "  v0001" in out
    assert main([*argv, "promote", "v0042"]) == 2  # unknown version: clear error, pointer unchanged
    assert reg.champion() == v2
    history = (tiny_models / "history.jsonl").read_text()
    capsys.readouterr()
    assert main([*argv, "promote", v2]) == 0  # already the champion: said, nothing written
    assert "already the champion" in capsys.readouterr().out
    assert (tiny_models / "history.jsonl").read_text() == history


def test_evaluate_writes_json_and_png(tiny_env, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "eval"
    assert main(tiny_env.argv("evaluate", "--data", str(tiny_env.dataset), "--out", str(out), "--json")) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"top1", "top3", "ece", "per_class", "confusion_matrix"} <= set(metrics)
    assert sum(map(sum, metrics["confusion_matrix"])) == metrics["n"] > 0
    # the decision as served, on the same held-out OOD photos the version was fitted with
    trained = Registry(tiny_env.models).read_json("v0001", "metrics.json")["decision"]
    assert metrics["decision"]["ood_n"] == trained["ood_n"] > 0
    assert metrics["decision"]["real_n"] == metrics["n"] and 0.0 <= metrics["two_pass_share"] <= 1.0
    assert json.loads((out / "metrics.json").read_text())["n"] == metrics["n"]
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the text report gives the same decision measures, saying what the second-pass share counts
    assert main(tiny_env.argv("evaluate", "--data", str(tiny_env.dataset))) == 0
    text = capsys.readouterr().out
    d = metrics["decision"]
    shares = f"unsure on real {d['real_unsure']:.3f}, not_equipment on real {d['real_not_equipment']:.3f}"
    assert shares in text
    assert f"(validation + held-out OOD) needing a second TTA pass {metrics['two_pass_share']:.3f}" in text


def test_shipped_version_files(tiny_env) -> None:
    reg = Registry(tiny_env.models)
    d = reg.version_dir("v0001")
    names = {p.name for p in d.iterdir()}
    assert {
        "labels.json",
        "metrics.json",
        "model_card.md",
        "confusion_matrix.png",
        "head.json",
        "head.npz",
    } <= names
    card = (d / "model_card.md").read_text()
    assert "SHA-256" in card and "| red_thing |" in card and "Confusion matrix" in card
    metrics = reg.read_json("v0001", "metrics.json")
    assert metrics["backbone"]["file_sha256"] and metrics["train_counts"]["red_thing"] > 0
    assert reg.labels("v0001") == sorted(TINY_LABELS)
    # the recorded recipe is the head as fitted, not the requested default width
    outputs = reg.read_json("v0001", "head.json")["outputs"]
    assert metrics["config"]["head"]["n_outputs"] == len(outputs) == len(TINY_LABELS) + 1
    (config_line,) = [line for line in card.splitlines() if line.startswith("- Training config:")]
    assert f'"n_outputs":{len(outputs)}' in config_line


@pytest.mark.slow
def test_scratch_baseline_trains_and_predicts(tiny_env, tiny_models: Path, capsys) -> None:
    argv = ["--models-dir", str(tiny_models), "--weights", str(tiny_env.weights), "-q"]
    assert main([*argv, "train", "--model", "scratch", "--data", str(tiny_env.dataset), "--epochs", "2"]) == 0
    reg = Registry(tiny_models)
    assert reg.versions() == ["v0001", "v0002"]
    assert reg.read_json("v0002", "head.json")["input"] == {"size": 150, "normalisation": "gray"}
    capsys.readouterr()
    photo = tiny_env.dataset / "blue_thing" / "blue_thing_1.jpeg"
    assert main([*argv, "predict", "--json", "--version", "v0002", str(photo)]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert line["model_version"] == "v0002" and line["label"] in TINY_LABELS


def test_tiny_champion_is_an_ensemble_with_thin_views(tiny_env) -> None:
    reg = Registry(tiny_env.models)
    cfg = reg.read_json("v0001", "head.json")
    assert cfg["head"]["ensemble"] == 2 and cfg["tta"] == ["orig", "flip"]
    assert reg.read_json("v0001", "metrics.json")["config"]["thin_views"] == ["flip"]


def test_int8_precision_in_predict_and_evaluate(
    tiny_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        *tiny_env.argv()[: tiny_env.argv().index("--data-dir")],
        "--data-dir",
        str(tmp_path / "data"),
        "-q",
    ]
    photo = tiny_env.dataset / "red_thing" / "red_thing_2.png"
    int8_dir = tmp_path / "data" / "cache" / "int8"
    monkeypatch.delenv("TRAINING_DATA_DIR", raising=False)
    # no calibration photos: the dynamic-range recipe
    assert main([*argv, "predict", "--json", "--precision", "int8", str(photo)]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert line["label"] == "red_thing" and line["model_version"] == "v0001"
    (dynamic,) = int8_dir.glob("*.tflite")
    assert json.loads(dynamic.with_suffix(".json").read_text())["recipe"] == "drq-int8-v1"
    assert main([*argv, "predict", "--json", "--no-calibration", str(photo)]) == 2
    assert "--no-calibration applies to --precision int8" in capsys.readouterr().err
    assert main([*argv, "predict", "--precision", "int8", "--bfloat16", str(photo)]) == 2
    assert "--bfloat16 contradicts --precision int8" in capsys.readouterr().err

    monkeypatch.setenv("TRAINING_DATA_DIR", str(tmp_path / "typo"))
    assert main([*argv, "predict", "--json", "--precision", "int8", str(photo)]) == 2
    assert f"TRAINING_DATA_DIR={tmp_path / 'typo'} is not a directory" in capsys.readouterr().err
    malformed = tmp_path / "malformed"
    malformed.mkdir()
    (malformed / "x.png").write_bytes(photo.read_bytes())
    (malformed / "MANIFEST.tsv").write_text("path\tno_kind_column\nx.png\t1\n")
    monkeypatch.setenv("TRAINING_DATA_DIR", str(malformed))
    assert main([*argv, "predict", "--json", "--precision", "int8", str(photo)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot read calibration photos in {malformed}" in err[0]  # not a traceback

    junk = tmp_path / "junk"
    (junk / "a").mkdir(parents=True)
    (junk / "a" / "x.png").write_bytes(b"not an image")
    monkeypatch.setenv("TRAINING_DATA_DIR", str(junk))
    # a message, not a traceback
    assert main([*argv, "predict", "--json", "--precision", "int8", str(photo)]) == 2
    message = capsys.readouterr().err
    assert "no readable calibration photo" in message and "--no-calibration" in message

    monkeypatch.setenv("TRAINING_DATA_DIR", str(tiny_env.dataset))
    assert main([*argv, "predict", "--json", "--precision", "int8", str(photo)]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert line["label"] == "red_thing" and line["model_version"] == "v0001"
    assert len(list(int8_dir.glob("*.tflite"))) == 2  # the calibrated model is another one

    monkeypatch.delenv("TRAINING_DATA_DIR")  # evaluate calibrates on --data's training photos
    evaluate = [*argv, "evaluate", "--data", str(tiny_env.dataset), "--json", "--precision", "int8"]
    assert main(evaluate) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["precision"] == "int8" and metrics["top1"] >= 0.8
    assert metrics["precision_detail"].startswith("int8, calibrated on ")
    assert main([*evaluate, "--no-calibration"]) == 0  # as the bot serves without TRAINING_DATA_DIR
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["precision_detail"] == "int8, dynamic range" and metrics["top1"] >= 0.8
    assert len(list(int8_dir.glob("*.tflite"))) == 2  # predict's dynamic-range model, from the cache
