"""Int8 serving (classifier.quantize): calibration photos, conversion, cache, Predictor and service wiring."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from classifier import model, quantize
from classifier.predictor import Int8Source, Predictor
from classifier.preprocess import preprocess
from classifier.quantize import Int8UnavailableError, calibration_photos
from classifier.registry import Registry
from classifier.serving import ClassifierService, resolve_precision


def _photos(dataset: Path) -> list[Path]:
    return sorted(p for p in dataset.rglob("*") if p.is_file())


def test_calibration_photos_round_robin_over_labels(tiny_env) -> None:
    picked = calibration_photos(tiny_env.dataset, n=8)
    assert len(picked) == 8
    labels = [it.label for it in picked]
    # One of each label (3 colours + __other__) before any label repeats.
    assert len(set(labels[:4])) == 4 and labels[:4] == labels[4:8]
    assert calibration_photos(tiny_env.dataset, n=8) == picked  # deterministic
    everything = calibration_photos(tiny_env.dataset, n=10_000)
    assert len(everything) == len({it.path for it in everything}) > 8
    assert calibration_photos(tiny_env.root / "missing") == []


@pytest.mark.parametrize(
    ("setting", "expected"),
    [("auto", "int8"), ("int8", "int8"), ("bfloat16", "bfloat16"), ("float32", "float32")],
)
def test_resolve_precision(setting, expected: str) -> None:
    assert resolve_precision(setting) == expected


@pytest.fixture(scope="module")
def int8_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("int8-cache")


def test_int8_predictor_matches_float_and_is_cached(tiny_env, int8_cache: Path, monkeypatch) -> None:
    version_dir = Registry(tiny_env.models).version_dir("v0001")
    photos = tuple(it.path for it in calibration_photos(tiny_env.dataset, n=12))
    int8 = Predictor.load(version_dir, str(tiny_env.weights), int8=Int8Source(photos, int8_cache))
    assert int8.precision == "int8"
    assert len(list((int8_cache / "int8").glob("*.tflite"))) == 1
    fp32 = Predictor.load(version_dir, str(tiny_env.weights))
    assert fp32.precision == "float32"

    agree, n = 0, 0
    for path in _photos(tiny_env.dataset):
        x = preprocess(path.read_bytes(), fp32.spec)
        p8, p32 = int8.probabilities(x), fp32.probabilities(x)
        assert p8.dtype == np.float32 and p8.shape == p32.shape == (len(fp32.outputs),)
        assert abs(float(p8.sum()) - 1.0) < 0.02
        assert np.abs(p8 - p32).max() < 0.1
        agree += int(np.argmax(p8) == np.argmax(p32))
        n += 1
    assert agree >= 0.9 * n  # random-weight tiny backbone: near ties; real photos in test_real_data

    # A second load reuses the cached model: converting again would fail here.
    def no_conversion(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("converted again")

    monkeypatch.setattr(quantize, "convert_int8", no_conversion)
    again = Predictor.load(version_dir, str(tiny_env.weights), int8=Int8Source(photos, int8_cache))
    x = preprocess(photos[0].read_bytes(), again.spec)
    assert np.array_equal(again.probabilities(x), int8.probabilities(x))
    # Other calibration photos are another model: the key covers them.
    with pytest.raises(Int8UnavailableError, match="converted again"):
        Predictor.load(version_dir, str(tiny_env.weights), int8=Int8Source(photos[:5], int8_cache))


def test_dynamic_range_int8_needs_no_photos_and_is_its_own_cached_model(
    tiny_env, int8_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version_dir = Registry(tiny_env.models).version_dir("v0001")
    before = set((int8_cache / "int8").glob("*.tflite"))
    source = Int8Source.dynamic(int8_cache)
    assert source.photos == () and source.recipe == quantize.DYNAMIC_RECIPE
    dynamic = Predictor.load(version_dir, str(tiny_env.weights), int8=source)
    assert dynamic.precision == "int8" and dynamic.precision_detail == "int8, dynamic range"
    added = set((int8_cache / "int8").glob("*.tflite")) - before
    assert len(added) == 1  # another key than any calibrated model in the same cache
    (note,) = [p.with_suffix(".json") for p in added]
    assert json.loads(note.read_text())["recipe"] == quantize.DYNAMIC_RECIPE

    fp32 = Predictor.load(version_dir, str(tiny_env.weights))
    agree, n = 0, 0
    for path in _photos(tiny_env.dataset):
        x = preprocess(path.read_bytes(), fp32.spec)
        pd, p32 = dynamic.probabilities(x), fp32.probabilities(x)
        assert pd.dtype == np.float32 and pd.shape == p32.shape
        assert np.abs(pd - p32).max() < 0.1
        agree += int(np.argmax(pd) == np.argmax(p32))
        n += 1
    assert agree >= 0.9 * n

    def no_conversion(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("converted again")

    monkeypatch.setattr(quantize, "convert_int8", no_conversion)
    again = Predictor.load(version_dir, str(tiny_env.weights), int8=Int8Source.dynamic(int8_cache))
    x = preprocess(_photos(tiny_env.dataset)[0].read_bytes(), again.spec)
    assert np.array_equal(again.probabilities(x), dynamic.probabilities(x))


def test_unreadable_calibration_photos(tiny_env, tmp_path: Path, caplog) -> None:
    version_dir = Registry(tiny_env.models).version_dir("v0001")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(Int8UnavailableError, match="no readable calibration photo"):
        Predictor.load(version_dir, str(tiny_env.weights), int8=Int8Source((junk,), tmp_path / "c"))
    assert not list((tmp_path / "c").rglob("*.tflite"))
    with caplog.at_level(logging.WARNING, logger="classifier.quantize"):
        spec = Predictor.load(version_dir, str(tiny_env.weights)).spec
        views = list(quantize.representative_views([junk, _photos(tiny_env.dataset)[0]], spec))
    assert len(views) == 1 and views[0][0].shape == (1, *spec.shape)
    assert "junk.png" in caplog.text


async def test_service_serves_int8_with_training_data(tiny_env, tiny_models: Path, tmp_path: Path) -> None:
    service = ClassifierService(
        tiny_models, str(tiny_env.weights), training_data_dir=tiny_env.dataset, cache_dir=tmp_path
    )
    await service.start()
    try:
        assert service.precision == "int8"
        photo = (tiny_env.dataset / "green_thing" / "green_thing_2.png").read_bytes()
        prediction = await service.classify(photo)
        assert prediction.label in service.labels and prediction.model_version == "v0001"
        assert list((tmp_path / "int8").glob("*.tflite"))
    finally:
        await service.close()


async def test_service_serves_dynamic_range_int8_without_training_data(
    tiny_env, tiny_models: Path, tmp_path: Path, caplog
) -> None:
    photo = (tiny_env.dataset / "green_thing" / "green_thing_2.png").read_bytes()
    for setting in ("auto", "int8"):
        caplog.clear()
        service = ClassifierService(
            tiny_models, str(tiny_env.weights), bfloat16=False, precision=setting, cache_dir=tmp_path
        )
        with caplog.at_level(logging.INFO, logger="classifier.serving"):
            await service.start()
        try:
            assert service.precision == "int8"
            assert "loaded model v0001 (int8, dynamic range)" in caplog.text
            assert (await service.classify(photo)).label in service.labels
        finally:
            await service.close()
    assert len(list((tmp_path / "int8").glob("*.tflite"))) == 1  # converted once, then read from the cache
    floats = ClassifierService(
        tiny_models, str(tiny_env.weights), bfloat16=False, precision="float32", cache_dir=tmp_path
    )
    await floats.start()
    assert floats.precision == "float32"
    await floats.close()


async def test_service_tries_dynamic_range_when_calibration_fails(
    tiny_env, tiny_models: Path, tmp_path: Path, caplog
) -> None:
    junk_data = tmp_path / "junk_data"
    (junk_data / "a").mkdir(parents=True)
    (junk_data / "a" / "x.png").write_bytes(b"not an image")
    for setting in ("auto", "int8"):
        caplog.clear()
        service = ClassifierService(
            tiny_models,
            str(tiny_env.weights),
            precision=setting,
            training_data_dir=junk_data,
            cache_dir=tmp_path / "cache",
        )
        with caplog.at_level(logging.INFO, logger="classifier.serving"):
            await service.start()
        assert "no readable calibration photo" in caplog.text
        assert service.precision == "int8" and "(int8, dynamic range)" in caplog.text
        await service.close()
        quantize.forget_failed_conversions()  # each setting goes through the whole chain


async def test_service_warns_when_training_data_has_no_photos(
    tiny_env, tiny_models: Path, tmp_path: Path, caplog
) -> None:
    service = ClassifierService(
        tiny_models, str(tiny_env.weights), training_data_dir=tmp_path / "typo", cache_dir=tmp_path
    )
    with caplog.at_level(logging.INFO):
        await service.start()
    assert "TRAINING_DATA_DIR=" in caplog.text and "has no photos" in caplog.text
    assert service.precision == "int8" and "(int8, dynamic range)" in caplog.text
    await service.close()


@pytest.mark.parametrize("bf16", [False, True])
async def test_service_falls_back_to_float_when_conversion_fails(
    tiny_env, tiny_models: Path, tmp_path: Path, caplog, monkeypatch: pytest.MonkeyPatch, bf16: bool
) -> None:
    calls: list[int] = []

    def broken(*args: object) -> bytes:
        calls.append(len(args[2]))  # type: ignore[arg-type]
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(quantize, "convert_int8", broken)
    loads: list[int] = []
    real_load_backbone = model.load_backbone

    def counted_load_backbone(*args: object, **kwargs: object) -> object:
        loads.append(1)
        return real_load_backbone(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(model, "load_backbone", counted_load_backbone)
    service = ClassifierService(
        tiny_models,
        str(tiny_env.weights),
        bfloat16=bf16,
        training_data_dir=tiny_env.dataset,
        cache_dir=tmp_path,
    )
    with caplog.at_level(logging.WARNING, logger="classifier.serving"):
        await service.start()
    assert calls[0] > 0 and calls[1:] == [0]  # calibrated, then dynamic range, then float
    assert service.precision == ("bfloat16" if bf16 else "float32")
    # VGG16 is loaded once for both int8 attempts (and the float32 fallback); bfloat16 needs its own trunk
    assert len(loads) == (2 if bf16 else 1)
    assert "int8 serving model unavailable" in caplog.text
    if bf16:  # the bfloat16 trunk is never kept for reuse by int8 or float32; the float32 one is
        assert service._predictor is not None and service._backbone is not None
        assert service._backbone is not service._predictor.backbone
    await service.close()
    quantize.forget_failed_conversions()
    calls.clear()
    strict = ClassifierService(
        tiny_models,
        str(tiny_env.weights),
        precision="int8",
        training_data_dir=tiny_env.dataset,
        cache_dir=tmp_path,
    )
    with pytest.raises(Int8UnavailableError, match="converter crashed"):
        await strict.start()
    assert calls[0] > 0 and calls[1:] == [0]  # calibrated, then dynamic range, then it stops
    await strict.close()


def test_a_damaged_cached_backbone_is_converted_again(tiny_env, tmp_path: Path, caplog) -> None:
    version_dir = Registry(tiny_env.models).version_dir("v0001")
    photos = tuple(it.path for it in calibration_photos(tiny_env.dataset, n=6))
    first = Predictor.load(version_dir, str(tiny_env.weights), int8=Int8Source(photos, tmp_path))
    (cached,) = (tmp_path / "int8").glob("*.tflite")
    x = preprocess(photos[0].read_bytes(), first.spec)
    expected = first.probabilities(x)
    cached.write_bytes(cached.read_bytes()[:1000])  # truncated, e.g. a full disk
    with caplog.at_level(logging.WARNING, logger="classifier.quantize"):
        again = Predictor.load(version_dir, str(tiny_env.weights), int8=Int8Source(photos, tmp_path))
    assert "unreadable" in caplog.text and again.precision == "int8"
    assert np.allclose(again.probabilities(x), expected, atol=1e-6)
    assert cached.stat().st_size > 1000
    assert not list((tmp_path / "int8").glob(".*.tmp"))


def test_an_unwritable_cache_serves_from_memory(tiny_env, tmp_path: Path, caplog) -> None:
    version_dir = Registry(tiny_env.models).version_dir("v0001")
    photos = tuple(it.path for it in calibration_photos(tiny_env.dataset, n=6))
    not_a_dir = tmp_path / "cache"
    not_a_dir.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="classifier.quantize"):
        predictor = Predictor.load(version_dir, str(tiny_env.weights), int8=Int8Source(photos, not_a_dir))
    assert predictor.precision == "int8" and "serving it from memory" in caplog.text
    x = preprocess(photos[0].read_bytes(), predictor.spec)
    assert abs(float(predictor.probabilities(x).sum()) - 1.0) < 0.02


async def test_a_malformed_training_data_set_falls_back_to_dynamic_range_int8(
    tiny_env, tiny_models: Path, tmp_path: Path, caplog
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.png").write_bytes((tiny_env.dataset / "red_thing" / "red_thing_2.png").read_bytes())
    (broken / "MANIFEST.tsv").write_text("path\tno_kind_column\nx.png\t1\n")  # no kind/class columns
    auto = ClassifierService(
        tiny_models, str(tiny_env.weights), bfloat16=True, training_data_dir=broken, cache_dir=tmp_path
    )
    with caplog.at_level(logging.INFO):
        await auto.start()
    assert f"TRAINING_DATA_DIR={broken} cannot be read" in caplog.text
    assert auto.precision == "int8" and "(int8, dynamic range)" in caplog.text
    await auto.close()


def test_a_failed_conversion_is_not_retried_in_the_same_process(
    tiny_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version_dir = Registry(tiny_env.models).version_dir("v0001")
    photos = tuple(it.path for it in calibration_photos(tiny_env.dataset, n=6))
    calls: list[int] = []

    def broken(*args: object) -> bytes:
        calls.append(1)
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(quantize, "convert_int8", broken)
    for _ in range(2):  # e.g. the bot's start, then a hot swap to a retrained version of the same size
        with pytest.raises(Int8UnavailableError, match="converter crashed"):
            Predictor.load(version_dir, str(tiny_env.weights), int8=Int8Source(photos, tmp_path))
    assert len(calls) == 1
    with pytest.raises(Int8UnavailableError, match="failed earlier in this process"):
        Predictor.load(version_dir, str(tiny_env.weights), int8=Int8Source(photos, tmp_path))
    monkeypatch.undo()  # the converter works again; a restart (here: forgetting) lets it try
    quantize.forget_failed_conversions()
    predictor = Predictor.load(version_dir, str(tiny_env.weights), int8=Int8Source(photos, tmp_path))
    assert predictor.precision == "int8" and list((tmp_path / "int8").glob("*.tflite"))


def test_out_of_memory_during_conversion_is_tried_again(
    tiny_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version_dir = Registry(tiny_env.models).version_dir("v0001")
    photos = tuple(it.path for it in calibration_photos(tiny_env.dataset, n=6))
    real_convert = quantize.convert_int8
    outcomes: list[str] = []

    def flaky(*args: object) -> bytes:
        if not outcomes:
            outcomes.append("oom")
            raise MemoryError("a memory spike")
        outcomes.append("ok")
        return real_convert(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(quantize, "convert_int8", flaky)
    with pytest.raises(Int8UnavailableError, match="memory spike"):
        Predictor.load(version_dir, str(tiny_env.weights), int8=Int8Source(photos, tmp_path))
    predictor = Predictor.load(version_dir, str(tiny_env.weights), int8=Int8Source(photos, tmp_path))
    assert outcomes == ["oom", "ok"] and predictor.precision == "int8"


def test_a_converted_backbone_that_cannot_be_opened_is_not_left_in_the_cache(
    tiny_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version_dir = Registry(tiny_env.models).version_dir("v0001")
    photos = tuple(it.path for it in calibration_photos(tiny_env.dataset, n=6))
    monkeypatch.setattr(quantize, "convert_int8", lambda *args: b"not a flatbuffer")
    with pytest.raises(Int8UnavailableError, match="cannot be opened"):
        Predictor.load(version_dir, str(tiny_env.weights), int8=Int8Source(photos, tmp_path))
    assert not list((tmp_path / "int8").glob("*.tflite"))
