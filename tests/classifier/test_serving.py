"""ClassifierService: import without TensorFlow, one worker thread, classify, hot swap, failed swap, close."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from classifier.registry import Registry
from classifier.serving import ClassifierNotReadyError, ClassifierService
from classifier.types import BackboneMismatchError, ImageDecodeError

ROOT = Path(__file__).resolve().parents[2]


def test_serving_imports_without_tensorflow() -> None:
    code = (
        "import sys, classifier, classifier.types, classifier.serving\n"
        "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env, timeout=60)


def _copy_version(reg: Registry, src: str) -> str:
    def write(tmp: Path) -> None:
        for f in reg.version_dir(src).iterdir():
            (tmp / f.name).write_bytes(f.read_bytes())

    return reg.create_version(write)


async def test_classify_hot_swap_and_close(tiny_env, tiny_models: Path) -> None:
    service = ClassifierService(tiny_models, str(tiny_env.weights))
    with pytest.raises(ClassifierNotReadyError):
        await service.classify(b"x")
    await service.start()
    assert service.model_version == "v0001" and service.labels == ["blue_thing", "green_thing", "red_thing"]
    photo = (tiny_env.dataset / "green_thing" / "green_thing_2.png").read_bytes()

    threads: set[str] = set()
    predictor = service._predictor
    assert predictor is not None
    original = predictor.classify_bytes

    def recording(data: bytes):
        threads.add(threading.current_thread().name)
        return original(data)

    predictor.classify_bytes = recording  # type: ignore[method-assign]
    results = await asyncio.gather(*(service.classify(photo) for _ in range(4)))
    assert {r.model_version for r in results} == {"v0001"}
    assert len(threads) == 1 and next(iter(threads)).startswith("classifier")
    assert threading.current_thread().name not in threads  # never on the event loop thread

    with pytest.raises(ImageDecodeError):
        await service.classify(b"definitely not an image")

    reg = Registry(tiny_models)
    assert await service.reload_if_changed() is False
    v2 = _copy_version(reg, "v0001")
    reg.promote(v2)
    in_flight = asyncio.ensure_future(service.classify(photo))  # queued before the swap
    assert await service.reload_if_changed() is True
    assert (await in_flight).model_version == "v0001"
    assert service.model_version == v2
    assert (await service.classify(photo)).model_version == v2

    # Rollback through load_version.
    await service.load_version("v0001")
    assert service.model_version == "v0001"
    await service.close()
    await service.close()
    with pytest.raises(ClassifierNotReadyError):
        await service.classify(photo)


async def test_failed_swap_keeps_old_model(tiny_env, tiny_models: Path) -> None:
    service = ClassifierService(tiny_models, str(tiny_env.weights))
    await service.start()
    reg = Registry(tiny_models)
    v2 = _copy_version(reg, "v0001")
    # Corrupt the new version's recorded backbone: loading must refuse it.
    head = reg.version_dir(v2) / "head.json"
    text = head.read_text()
    import json

    cfg = json.loads(text)
    cfg["backbone"] = {
        **cfg["backbone"],
        "file_sha256": "0" * 64,
        "tensor_sha256": "0" * 64,
        "probe": {k: v + 1.0 for k, v in cfg["backbone"]["probe"].items()},
    }
    head.write_text(json.dumps(cfg))
    reg.promote(v2)
    with pytest.raises(BackboneMismatchError):
        await service.reload_if_changed()
    assert service.model_version == "v0001"
    photo = (tiny_env.dataset / "red_thing" / "red_thing_3.jpeg").read_bytes()
    assert (await service.classify(photo)).model_version == "v0001"
    await service.close()


async def test_start_without_champion_is_a_clear_error(tmp_path: Path) -> None:
    from classifier.registry import RegistryError

    service = ClassifierService(tmp_path, "imagenet")
    with pytest.raises(RegistryError, match="no champion"):
        await service.start()
    await service.close()


async def test_tta_override_and_float32(tiny_env, tiny_models: Path) -> None:
    service = ClassifierService(tiny_models, str(tiny_env.weights), bfloat16=False, tta=["orig"])
    await service.start()
    assert service._predictor is not None and service._predictor.tta == ["orig"]
    photo = (tiny_env.dataset / "blue_thing" / "blue_thing_4.png").read_bytes()
    p = await service.classify(photo)
    assert p.model_version == "v0001" and p.label in service.labels and len(p.top_k) == 3
    await service.close()
