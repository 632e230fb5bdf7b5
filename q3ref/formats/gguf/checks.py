"""`check MODEL.gguf`: the metadata and bridge bugs GGUF users meet, each with its fix.

The known ones: files converted before the tokenizer carried its EOS template have no
add_eos_token, so llama.cpp never appends <|endoftext|>; servers run with --pooling mean;
<|im_end|> (tokenizer_config's eos_token) taken for the EOS. The EOS is found by its text in the
file's own vocabulary, so the check holds for any vocabulary size.

A reranker's file is checked for what llama.cpp's rank pooling needs instead: the rank head, rank
pooling, yes/no labels and the card's prompt as the rerank template. A reranker converted without
them (the converter did not recognize it) is a plain LM that says nothing of being a reranker: only
the checkpoint tells, so `check --weights RERANKER` runs the rank checks on any file.
"""

from __future__ import annotations

from .file import POOLING, POOLING_RANK, GGUFFile

ENDOFTEXT, IM_END = "<|endoftext|>", "<|im_end|>"


def rerank_template() -> str:
    """The Qwen3-Reranker card's prompt with llama-server's placeholders (format_prompt_rerank
    puts the query and document in; the instruction is the card's default)."""
    from ...rerank import PREFIX, SUFFIX, format_pair

    return PREFIX + format_pair("{query}", "{document}") + SUFFIX


def metadata_checks(f: GGUFFile, cfg=None, kind=None) -> list[tuple[str, bool, str, str]]:
    """[(name, passed, figure, fix)], like check.check_graph. A reranker's file (by what it says,
    or kind="reranker": the checkpoint's kind) gets the rank checks instead of the embedder's."""
    out = []

    def record(name, ok, figure, fix):
        out.append((name, bool(ok), figure, fix))

    if kind == "reranker" or f.is_reranker():
        rank_checks(f, record)
    else:
        embedding_checks(f, record)
    common_checks(f, cfg, record)
    return out


def rank_checks(f: GGUFFile, record):
    """What llama.cpp's rank pooling needs to compute the card's P(yes) (llama-graph.cpp
    build_pooling; llama-server's format_prompt_rerank), as convert_hf_to_gguf.py writes it when it
    recognizes a Qwen3-Reranker (README.md's heading, or the directory's name)."""
    reconvert = ("Re-convert with convert_hf_to_gguf.py from the reranker's own directory: the converter writes the "
                 "rank head, rank pooling and the rerank template only when README.md has the '# Qwen3-Reranker' "
                 "heading or the directory's name contains qwen3-reranker; otherwise it writes a plain LM.")
    head = f.rank_head()
    record("the file has a rank head (cls.output: the LM head's yes and no rows)",
           head is not None and int(head.shape[1]) == 2,
           "cls.output.weight " + (f"{[int(n) for n in head.shape[::-1]]}" if head is not None else "missing"),
           "Without it llama.cpp's rank pooling takes its softmax over the pooled hidden state itself, so every "
           "score is one of D softmax values, near 0, not P(yes). " + reconvert)
    pooling = f.key("pooling_type")
    record("pooling type is rank (4)", pooling == POOLING_RANK,
           f"{f.arch}.pooling_type = {pooling} ({POOLING.get(pooling, 'missing')})",
           "Run with --pooling rank (llama-server --reranking), or re-convert as the rank head's fix says.")
    labels, ids = list(f.meta(f"{f.arch}.classifier.output_labels") or []), f.label_ids()
    record("the labels are yes, no, one token each", labels == ["yes", "no"] and None not in ids,
           f"{f.arch}.classifier.output_labels = {labels or 'missing'}" + (f", ids {ids}" if labels else ""),
           "The score is the first label's share: the rows must be the LM head's rows for 'yes', then 'no'. "
           "Re-convert as the rank head's fix says.")
    template = f.meta("tokenizer.chat_template.rerank")
    record("the rerank template is the Qwen3-Reranker card's prompt", template == rerank_template(),
           "tokenizer.chat_template.rerank " + ("missing" if template is None else
                                                 "as the card's" if template == rerank_template() else "differs from the card's"),
           "Without it llama-server joins query and document with EOS/SEP tokens instead of the judge prompt. Set it to "
           "the card's prompt with gguf-py's gguf_new_metadata.py, or re-convert as the rank head's fix says.")


def embedding_checks(f: GGUFFile, record):
    d = f.describe()
    eot = f.token_id(ENDOFTEXT)
    eot_text = f"{ENDOFTEXT} ({eot})"
    pooling = f.key("pooling_type")
    record("pooling type is last-token (3)", pooling == 3,
           f"{f.arch}.pooling_type = {pooling} ({POOLING.get(pooling, 'missing')})",
           "Run with --pooling last (llama-server, llama-embedding) or pooling_type=LLAMA_POOLING_TYPE_LAST; "
           "Qwen3-Embedding pools the last token, never the mean."
           + (" (No pooling type at all is what a plain LM's conversion writes: if this file is a Qwen3-Reranker, "
              "check it with --weights RERANKER_DIR for the reranker's checks.)" if pooling is None else ""))
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


def common_checks(f: GGUFFile, cfg, record):
    d, vocab = f.describe(), f.vocab()
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
        shape = (d["hidden_size"], d["layers"])
        record("hidden size and layer count match config.json", shape == (cfg.hidden_size, cfg.num_hidden_layers),
               f"{shape[0]} hidden, {shape[1]} blocks vs config.json {cfg.hidden_size}, {cfg.num_hidden_layers}",
               "Convert the checkpoint this config belongs to.")
