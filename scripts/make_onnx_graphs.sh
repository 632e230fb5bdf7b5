#!/usr/bin/env bash
# Regenerate tests/fixtures/onnx/*.onnx with torch's exporter and ONNX Runtime's quantizers
# (needs the reference environment: PYTHON=/path/to/that/python bash scripts/make_onnx_graphs.sh).
# Stress checkpoint (vocab 1000, 3 layers), a few seconds a graph.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=tests/fixtures/onnx
mkdir -p "$OUT"
S=tests/fixtures/stress-checkpoint
ex() { "$PY" scripts/export_onnx.py "$@" 2>&1 | grep -E '^(wrote|\{)'; }
ex $S $OUT --name stress --variants fp32,int8,uint8,int8_per_channel,q4,q4f16,q4_zp,q8,q2,fp16,bnb4,past,static24,int32,q4_opt,uint8_opt,fp16_opt
ex $S $OUT --name defect_q_norm_ones_1 --defect q_norm_ones:1 --variants fp32,int8,q4,q4f16,q8,bnb4
ex $S $OUT --name defect_gate_up_swap_2 --defect gate_up_swap:2 --variants fp32,int8
ex $S $OUT --name defect_rope_base --defect rope_base --variants fp32
ex $S $OUT --name defect_final_norm_scale --defect final_norm_scale --variants fp32
# a reranker (Qwen3ForCausalLM with past, logits out, as onnx-community's Qwen3-Reranker files): the
# GGUF tests' reranker checkpoint (D=64, tied, "yes"/"no" at 995/996)
R=tests/fixtures/gguf-reranker-checkpoint
ex $R $OUT --name rerank --causal-lm --variants fp32,int8,uint8,q4,q8,fp16,q4f16
ex $R $OUT --name defect_q_norm_ones_1_rerank --causal-lm --defect q_norm_ones:1 --variants int8
rm "$OUT/defect_q_norm_ones_1_rerank.onnx"  # the fp32 graph int8 is made from: not a test graph
# onnxruntime-genai's model builder (pip install onnxruntime-genai in the same environment)
"$PY" scripts/export_genai.py $S $OUT/genai_stress_fp32.onnx --precision fp32 2>&1 | grep -E '^(wrote|\{)'
"$PY" scripts/export_genai.py $S $OUT/genai_stress_int4.onnx --precision int4 2>&1 | grep -E '^(wrote|\{)'
"$PY" scripts/export_genai.py $S $OUT/genai_defect_q_norm_ones_1_int4.onnx --precision int4 --defect q_norm_ones:1 2>&1 | grep -E '^(wrote|\{)'
"$PY" scripts/export_genai.py $R $OUT/genai_rerank_int4.onnx --precision int4 --causal-lm 2>&1 | grep -E '^(wrote|\{)'
