"""Latency benchmark: image bytes -> ranked labels on this CPU, vs the original experiment's serving path.

    nice .venv/bin/python -m scripts.benchmark_classifier --n 60 --out data/runs/benchmark.json

What it measures (one process per variant, so environment variables such as TF_ENABLE_ONEDNN_OPTS take
effect before TensorFlow is imported):

* machine: the FLOP/s of a large float32 (and bfloat16) matmul (4096 x 4096, 2 n^3 FLOPs each) and the
  compute floor of one VGG16 224x224 forward pass = 15.5 GFLOPs (multiply-adds counted as 2 FLOPs; the
  13 conv layers of Simonyan & Zisserman 2014) / measured FLOP/s;
* ours: `classifier.predictor.Predictor` (one fused Keras model in a ``tf.function`` with a fixed input
  signature): model load time, then p50/p95 latency over ``--n`` real validation photos (after warm-up) from
  encoded bytes to ranked labels (decode + preprocess + forward + decision), peak RSS;
* original: the experiment's serving path per image: ``vgg16.predict(x)`` for bottleneck features, then a
  separately loaded top model's ``predict`` (Flatten -> Dense(256, relu) -> Dropout(0.5) -> softmax), on the
  same photos with the same preprocessing; its speed ratio to ours.

Variants (``--variants``): ``fp32`` (default oneDNN), ``xla`` (``jit_compile=True``), ``bf16`` (Keras
mixed_bfloat16: AVX512_BF16 kernels through oneDNN), ``xla-bf16``, ``onednn-off`` (TF_ENABLE_ONEDNN_OPTS=0),
``threads1`` (one intra-op thread), ``int8`` (the backbone quantized to int8 and run with LiteRT, the
head in float32, `classifier.quantize`; calibrated on ``--data``'s photos, converted once and cached under
``--cache``; ``int8_converted_in_load`` says whether ``load_s`` includes that conversion), ``int8dyn``
(the same with the dynamic-range recipe, no calibration photos: what the bot serves without
TRAINING_DATA_DIR); a ``-tta``
suffix always adds the flip view; a ``-served`` suffix
serves the version as the bot does: its test-time views with its fitted early exit (the flip view only
when the original view is not already confident enough; `classifier.predictor.combine_views`). The share
of photos that needed the second pass is reported as ``two_pass_share``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

VGG16_GFLOPS = 15.5
ROOT = Path(__file__).resolve().parents[1]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of a non-empty list (q in [0, 100])."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(q / 100 * len(s) + 0.5) - 1))
    return s[k]


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_flops(dtype: str, n: int = 4096, reps: int = 5) -> float:
    """Measured FLOP/s of an n x n matmul in ``dtype`` (best of ``reps``)."""
    import tensorflow as tf

    a = tf.random.uniform((n, n), dtype=tf.float32)
    b = tf.random.uniform((n, n), dtype=tf.float32)
    if dtype == "bfloat16":
        a, b = tf.cast(a, tf.bfloat16), tf.cast(b, tf.bfloat16)
    f = tf.function(lambda x, y: tf.matmul(x, y))
    f(a, b).numpy()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f(a, b).numpy()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def photos(data: Path, n: int) -> list[Path]:
    """``n`` validation photos from MANIFEST.tsv, spread over classes (deterministic)."""
    from classifier.dataset import load_manifest_dataset

    val = [it for it in load_manifest_dataset(data) if it.split == "val"]
    step = max(1, len(val) // n)
    return [it.path for it in val[::step][:n]]


def original_path(args: argparse.Namespace, predictor: Any) -> Any:
    """The original experiment's serving path: ``vgg16.predict`` then a separately loaded top model's
    ``predict`` (Flatten -> Dense(256, relu) -> Dropout(0.5) -> softmax), float32, per image, at the
    experiment's 224x224 input whatever size the benchmarked version uses."""
    import keras
    from keras import layers

    from classifier.model import load_backbone
    from classifier.preprocess import VGG16_224, preprocess

    vgg = load_backbone(args.weights, VGG16_224.size).model
    top = keras.Sequential(
        [
            keras.Input(shape=vgg.output_shape[1:]),
            layers.Flatten(),
            layers.Dense(256, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(len(predictor.outputs), activation="softmax"),
        ]
    )
    top_path = Path(args.tmp) / "original_top.keras"
    top_path.parent.mkdir(parents=True, exist_ok=True)
    top.save(top_path)
    top = keras.models.load_model(top_path)  # "a separately loaded top model"

    def run(b: bytes) -> Any:
        x = preprocess(b, VGG16_224)[None]
        feats = vgg.predict(x, verbose=0)
        return top.predict(feats, verbose=0)[0]

    return run


BASE_VARIANTS = ("fp32", "xla", "bf16", "xla-bf16", "onednn-off", "threads1", "int8", "int8dyn")
VARIANTS = (
    BASE_VARIANTS + tuple(f"{v}-tta" for v in BASE_VARIANTS) + tuple(f"{v}-served" for v in BASE_VARIANTS)
)


def run_variant(args: argparse.Namespace, variant: str) -> dict[str, Any]:
    """Runs inside a fresh process (see main)."""
    import numpy as np

    from classifier.predictor import Predictor
    from classifier.preprocess import preprocess
    from classifier.registry import Registry

    if variant == "threads1":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
    registry = Registry(Path(args.models_dir))
    version = args.version or registry.champion()
    assert version, "no champion"
    files = photos(Path(args.data), args.n)
    blobs = [f.read_bytes() for f in files]
    out: dict[str, Any] = {"variant": variant, "version": version, "n": len(blobs)}

    int8 = None
    if variant.startswith("int8"):
        from classifier.quantize import Int8Source

        if variant.startswith("int8dyn"):
            int8 = Int8Source.dynamic(Path(args.cache))
        else:
            int8 = Int8Source.from_data_set(Path(args.data), Path(args.cache))
            assert int8 is not None, f"no calibration photos in {args.data}"
        cached = set((Path(args.cache) / "int8").glob("*.tflite"))
    t = time.perf_counter()
    predictor = Predictor.load(
        registry.version_dir(version),
        args.weights,
        tta=None
        if variant.endswith("-served")
        else ["orig", "flip"]
        if variant.endswith("-tta")
        else ["orig"],
        tta_exit="version" if variant.endswith("-served") else None,
        jit_compile=variant.startswith("xla"),
        bfloat16="bf16" in variant,
        int8=int8,
    )
    out["load_s"] = round(time.perf_counter() - t, 2)
    if int8 is not None:  # a first load converts (once per version and machine); later loads read the cache
        out["int8_converted_in_load"] = set((Path(args.cache) / "int8").glob("*.tflite")) != cached
    original = None if args.skip_original else original_path(args, predictor)
    t = time.perf_counter()
    for b in blobs[: args.warmup]:
        predictor.classify_bytes(b)
        if original is not None:
            original(b)
    out["warmup_s"] = round(time.perf_counter() - t, 2)
    lat, olat, labels, passes = [], [], [], []
    for b in blobs:  # ours and the original path interleaved, so both see the same load on a shared CPU
        t = time.perf_counter()
        p = predictor.classify_bytes(b)
        lat.append((time.perf_counter() - t) * 1000)
        passes.append(predictor.last_views)
        labels.append(p.label)
        if original is not None:
            t = time.perf_counter()
            probs = original(b)
            olat.append((time.perf_counter() - t) * 1000)
            assert np.isfinite(probs).all()
    out["p50_ms"] = round(statistics.median(lat), 1)
    out["p95_ms"] = round(percentile(lat, 95), 1)
    out["mean_ms"] = round(statistics.fmean(lat), 1)
    out["peak_rss_mb"] = round(peak_rss_mb(), 0)
    out["two_pass_share"] = round(sum(n > 1 for n in passes) / len(passes), 3)
    out["labels"] = labels
    if olat:
        out["original_p50_ms"] = round(statistics.median(olat), 1)
        out["original_p95_ms"] = round(percentile(olat, 95), 1)
        out["speedup_p50"] = round(out["original_p50_ms"] / out["p50_ms"], 2)
        out["speedup_median_per_photo"] = round(
            statistics.median(o / m for o, m in zip(olat, lat, strict=True)), 2
        )
    # Preprocessing alone (decode + resize + preprocess_input), for the breakdown.
    pre = []
    for b in blobs:
        t = time.perf_counter()
        preprocess(b, predictor.spec)
        pre.append((time.perf_counter() - t) * 1000)
    out["preprocess_p50_ms"] = round(statistics.median(pre), 1)
    if variant == "fp32":
        out["matmul_fp32_gflops"] = round(matmul_flops("float32") / 1e9, 1)
        out["matmul_bf16_gflops"] = round(matmul_flops("bfloat16") / 1e9, 1)
        floor = VGG16_GFLOPS / out["matmul_fp32_gflops"] * 1000
        out["compute_floor_fp32_ms"] = round(floor, 1)
        out["compute_floor_bf16_ms"] = round(VGG16_GFLOPS / out["matmul_bf16_gflops"] * 1000, 1)
        out["p50_over_floor"] = round(out["p50_ms"] / floor, 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--models-dir", default="models")
    p.add_argument("--version")
    p.add_argument("--weights", default=str(ROOT.parent / "shared/weights/vgg16_notop.weights.h5"))
    p.add_argument("--data", default=str(ROOT.parent / "shared/data"))
    p.add_argument("--n", type=int, default=60)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--variants", default="fp32,fp32-tta,bf16,bf16-tta,xla,xla-bf16,onednn-off,threads1")
    p.add_argument("--skip-original", action="store_true")
    p.add_argument("--tmp", default="data/runs/benchmark_tmp")
    p.add_argument("--cache", default="data/cache", help="int8 model cache (DATA_DIR/cache)")
    p.add_argument("--out", default="")
    p.add_argument("--variant", help=argparse.SUPPRESS)
    args = p.parse_args()
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if args.variant:
        print(json.dumps(run_variant(args, args.variant)))
        return
    results = []
    for variant in args.variants.split(","):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
        if variant == "onednn-off":
            env["TF_ENABLE_ONEDNN_OPTS"] = "0"
        argv = []
        skip = False
        for a in sys.argv[1:]:
            if skip:
                skip = False
                continue
            if a.startswith("--variants"):
                skip = a == "--variants"
                continue
            argv.append(a)
        proc = subprocess.run(
            [sys.executable, "-m", "scripts.benchmark_classifier", *argv, "--variant", variant],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            check=False,
        )
        if proc.returncode != 0:
            print(f"{variant}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        shown = {k: v for k, v in r.items() if k != "labels"}
        print(json.dumps(shown), flush=True)
    base = next((r for r in results if r["variant"] == "fp32"), None)
    if base:
        for r in results:
            agree = sum(a == b for a, b in zip(r["labels"], base["labels"], strict=True)) / max(
                len(r["labels"]), 1
            )
            r["top1_agreement_with_fp32"] = round(agree, 4)
            print(f"{r['variant']:10s} p50 {r['p50_ms']} ms  p95 {r['p95_ms']} ms  agreement {agree:.3f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
