"""Synthetic training photos: white-background product shots composited onto gym interiors.

Pillow + NumPy only; imports nothing else of ours. Modules: `synth.alpha` (cut-out by border flood fill,
mask reliability), `synth.composite` (pure compositing with an explicit random.Random), `synth.generate`
(files, manifest, progress), `synth.preview` (contact sheet), `synth.topup` (the measured top-up rule).
CLI: ``python -m synth {generate,preview}``.
"""
