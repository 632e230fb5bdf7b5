"""`check MODEL.gguf`: the metadata and bridge bugs GGUF users meet, each with its fix.

The known ones: files converted before the tokenizer carried its EOS template have no
add_eos_token, so llama.cpp never appends <|endoftext|>; servers run with --pooling mean;
<|im_end|> (tokenizer_config's eos_token) taken for the EOS. The EOS is found by its text in the
file's own vocabulary, so the check holds for any vocabulary size.
"""

from __future__ import annotations

from .file import POOLING, GGUFFile

ENDOFTEXT, IM_END = "<|endoftext|>", "<|im_end|>"


def metadata_checks(f: GGUFFile, cfg=None) -> list[tuple[str, bool, str, str]]:
    """[(name, passed, figure, fix)], like check.check_graph."""
    d = f.describe()
    eot = f.token_id(ENDOFTEXT)
    eot_text = f"{ENDOFTEXT} ({eot})"
    out = []

    def record(name, ok, figure, fix):
        out.append((name, bool(ok), figure, fix))

    pooling = f.key("pooling_type")
    record("pooling type is last-token (3)", pooling == 3,
           f"{f.arch}.pooling_type = {pooling} ({POOLING.get(pooling, 'missing')})",
           "Run with --pooling last (llama-server, llama-embedding) or pooling_type=LLAMA_POOLING_TYPE_LAST; "
           "Qwen3-Embedding pools the last token, never the mean.")
    add_eos = d["add_eos"]
    record("the tokenizer appends the EOS (add_eos_token true)", add_eos is True,
           f"tokenizer.ggml.add_eos_token = {'missing' if add_eos is None else add_eos}",
           f"Append {eot_text} to every input by hand, or rewrite the flag (gguf-py's gguf_new_metadata.py); "
           "without it the last token is a text token and the vectors drift.")
    eos, eot_meta = d["eos_id"], f.meta("tokenizer.ggml.eot_token_id")
    vocab = f.vocab()
    eos_text = vocab[eos] if eos is not None and 0 <= eos < len(vocab) else "?"
    swapped = eot_meta == eot and eos != eot
    record(f"the EOS id is {eot_text}", eos == eot and eot is not None,
           f"tokenizer.ggml.eos_token_id = {eos} ({eos_text})" + (f"; eot_token_id = {eot_meta} ({ENDOFTEXT}): swapped" if swapped else ""),
           f"Set eos_token_id to {eot}; {IM_END} is the chat turn end, not the embedding model's EOS.")
    rows = d["vocab_size"]
    record("vocabulary and embedding table agree", len(vocab) == rows, f"{len(vocab)} tokens, token_embd {rows} rows",
           "Re-convert with the model's own tokenizer.json.")
    if cfg is not None:
        record("rope base matches config.json", d["rope_base"] == cfg.rope_theta,
               f"{f.arch}.rope.freq_base = {d['rope_base']}, config.json rope_theta {cfg.rope_theta}",
               f"Re-convert, or override at run time (--rope-freq-base {cfg.rope_theta:g}).")
        eps = d["rms_eps"]
        record("RMSNorm eps matches config.json", eps is not None and abs(eps - cfg.rms_norm_eps) <= 1e-6 * cfg.rms_norm_eps,
               f"layer_norm_rms_epsilon = {eps}, config.json rms_norm_eps {cfg.rms_norm_eps}",
               "Re-convert from the checkpoint's config.json.")
        record("vocab size matches config.json", rows == cfg.vocab_size, f"{rows} vs vocab_size {cfg.vocab_size}",
               "Convert the checkpoint this config belongs to.")
    return out
