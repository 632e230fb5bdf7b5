"""Qwen3.5 (the hybrid GatedDeltaNet decoder of Qwen3.5-0.8B), text side: a NumPy reference in
the style of q3ref/model.py. config.py reads config.json (text-only or the VLM's text_config),
weights.py the checkpoint under either naming scheme, delta.py the gated delta rule in its two
forms, model.py the forward pass with its taps."""
