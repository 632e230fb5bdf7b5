#!/usr/bin/env bash
# Regenerate tests/fixtures/graphs/*.tflite with litert-torch (needs a Python with litert-torch
# 0.10, tensorflow and torch==2.13.0: PYTHON=/path/to/that/python bash scripts/make_graphs.sh).
# ~30 s a graph. Stress checkpoint (vocab 1000, so each graph is small) at seq_len 64.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=tests/fixtures/graphs
mkdir -p "$OUT"
S=tests/fixtures/stress-checkpoint
export_graph() { "$PY" scripts/export_tflite.py "$@" --seq-len 64 2>&1 | grep '^wrote'; }
export_graph $S $OUT/stress_fp32.tflite
export_graph $S $OUT/stress_dynamic_int8.tflite --quant dynamic_int8
export_graph $S $OUT/stress_fp16.tflite --quant fp16
export_graph $S $OUT/stress_weight_only_int8.tflite --quant weight_only_int8
export_graph $S $OUT/defect_rope_base.tflite --defect rope_base
export_graph $S $OUT/defect_q_norm_ones_1.tflite --defect q_norm_ones:1
export_graph $S $OUT/defect_gate_up_swap_2.tflite --defect gate_up_swap:2
export_graph $S $OUT/defect_first_token_pool.tflite --defect first_token_pool
export_graph $S $OUT/defect_final_norm_scale.tflite --defect final_norm_scale
export_graph $S $OUT/defect_q_norm_ones_1_int8.tflite --defect q_norm_ones:1 --quant dynamic_int8
export_graph $S $OUT/defect_gate_up_swap_2_int8.tflite --defect gate_up_swap:2 --quant dynamic_int8
# The bundled checkpoint (real tokenizer, so text works in the README's example): int8 only,
# since its 151669 x 16 embedding table is 9.7 MB in fp32 and 2.4 MB in int8.
export_graph weights/q3ref-tiny $OUT/tiny_dynamic_int8.tflite --quant dynamic_int8
# int4 needs widths that are multiples of the block (128): a small checkpoint of its own,
# made by q3ref's deterministic generator (committed; this line remakes it bit for bit).
python -c "from q3ref.checkpoint import make_checkpoint, preset_config; make_checkpoint('tests/fixtures/int4-checkpoint', preset_config('tiny', hidden_size=128, num_attention_heads=4, num_key_value_heads=2, head_dim=32, intermediate_size=256, vocab_size=1000), 11)"
export_graph tests/fixtures/int4-checkpoint $OUT/int4_dynamic_int4_block32.tflite --quant dynamic_int4_block32
export_graph tests/fixtures/int4-checkpoint $OUT/int4_dynamic_int4_block128.tflite --quant dynamic_int4_block128
# The same graphs without tensor names, for diff's numeric fallback (no litert-torch needed).
python scripts/strip_names.py $OUT/stress_dynamic_int8.tflite $OUT/nonames_stress_dynamic_int8.tflite
python scripts/strip_names.py $OUT/defect_q_norm_ones_1.tflite $OUT/nonames_defect_q_norm_ones_1.tflite
