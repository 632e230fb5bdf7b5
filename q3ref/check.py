"""check-ids: name, in words, how a bridge's token ids differ from what Qwen3-Embedding expects,
or (check_rerank_ids) what a Qwen3-Reranker expects for a (query, document) pair.

Each finding is (what, fix): the fix in one sentence. The expected ids come from q3ref's
tokenizer (exactly one trailing <|endoftext|>, sentence-transformers' prompts) or from the
reranker card's recipe (rerank.pair_ids).
"""

from __future__ import annotations

from .tokenizer import EOS_ID, IM_END_ID


def check_ids(tokenizer, text, given, prompt_name=None, instruction=None, max_length=None,
              strip=False) -> list[tuple[str, str]]:
    """strip: the expected ids strip prompt + text (sentence-transformers <= 5.x); by default they
    keep the whitespace (sentence-transformers 6, transformers)."""
    expected = tokenizer.encode(text, prompt_name, instruction, strip=strip)
    given = [int(i) for i in given]
    findings = []
    if given == expected:
        return findings
    if (text.strip() or strip) and given == tokenizer.encode(text, prompt_name, instruction, strip=not strip):
        return [("whitespace stripped: the ids are of prompt + text without outer whitespace, as "
                 "sentence-transformers up to 5.x made them" if not strip else
                 "whitespace kept: the ids keep the text's outer whitespace (sentence-transformers 6, transformers)",
                 "Keep the whitespace, as sentence-transformers 6 and transformers do (or check with --strip if the "
                 "index was built by sentence-transformers 5)." if not strip else
                 "Strip prompt + text as sentence-transformers 5 did, or check without --strip.")]
    body = given
    # The end of the sequence first: the most common bridge bugs live there.
    if given[-2:] == [EOS_ID, EOS_ID]:
        findings.append(("double EOS: the sequence ends with <|endoftext|> (151643) twice",
                         "Append 151643 only when the tokenizer's post-processor does not (the published tokenizer.json already does)."))
        body = given[:-1]
    elif given[-1:] == [IM_END_ID]:
        findings.append(("<|im_end|> (151645) used as EOS: the model was trained with <|endoftext|> (151643) last",
                         "End every input with 151643, not tokenizer_config's eos_token 151645."))
        body = given[:-1] + [EOS_ID]
    elif given[-1:] != [EOS_ID]:
        content = expected[:-1]
        if len(given) < len(content) and given == content[:len(given)]:
            findings.append((f"truncation dropped the EOS: the ids stop after {len(given)} of {len(content)} text tokens "
                             "with no <|endoftext|>",
                             "Truncate the text to max_length - 1 tokens and then append 151643, so the EOS stays last."))
            return findings
        findings.append(("missing EOS: the sequence does not end with <|endoftext|> (151643)",
                         "Append 151643 (or use the embedding tokenizer, whose template appends it)."))
        body = given + [EOS_ID]
    inner = [k for k, i in enumerate(body[:-1]) if i == EOS_ID]
    if inner:
        findings.append((f"padding or EOS ids inside the sequence at positions {inner[:5]}",
                         "Strip padding before embedding, or pass an attention mask that excludes it."))
        body = [i for k, i in enumerate(body) if k not in set(inner)]
    if body != expected:
        findings.append(_text_difference(tokenizer, body, expected, prompt_name, instruction))
    return findings


def check_rerank_ids(tokenizer, query, document, given, instruction=None, max_length=None) -> list[tuple[str, str]]:
    """How a reranker bridge's ids for one pair differ from the card's (rerank.pair_ids): the
    template's pieces (system turn, empty thinking block), an appended EOS, swapped or
    re-instructed pairs, truncation that cut the suffix; else the first differing character."""
    from .rerank import MAX_LENGTH, PREFIX, SUFFIX, format_pair, pair_ids

    max_length = max_length or MAX_LENGTH
    expected = pair_ids(tokenizer, query, document, instruction, max_length)
    given = [int(i) for i in given]
    if given == expected:
        return []
    encode = lambda s: tokenizer.hf.encode(s, add_special_tokens=False).ids  # noqa: E731
    body = expected[len(encode(PREFIX)):len(expected) - len(encode(SUFFIX))]
    think = "<think>\n\n</think>\n\n"
    pads = next((k for k, i in enumerate(given) if i != EOS_ID), len(given))  # leading <|endoftext|> ids
    known = [
        (given[:-1] == expected and given[-1] in (EOS_ID, IM_END_ID),
         f"an EOS ({given[-1]}) appended after the template: the score is read at it, not after the empty thinking block",
         "Tokenize the reranker's pairs without the embedding tokenizer's post-processor; nothing follows '</think>\\n\\n'."),
        (given == expected[:len(expected) - len(encode(think))],
         "the empty thinking block '<think>\\n\\n</think>\\n\\n' is missing after '<|im_start|>assistant\\n'",
         "End every pair with the card's suffix, '<|im_end|>\\n<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n'."),
        (given == body,
         "the chat template is missing: the ids are the '<Instruct>: ...<Query>: ...<Document>: ...' text alone",
         "Wrap the pair in the card's system turn and user turn, and end it with the assistant turn's empty thinking block."),
        (given == encode(format_pair(query, document, instruction)) and given != body,
         "the chat template is missing (and the text is not truncated as the card truncates it)",
         "Wrap the pair in the card's system turn and user turn, and end it with the assistant turn's empty thinking block."),
        (given == pair_ids(tokenizer, document, query, instruction, max_length),
         "query and document are swapped",
         "Put the query after '<Query>: ' and the document after '<Document>: '."),
        (instruction is not None and given == pair_ids(tokenizer, query, document, None, max_length),
         "the default instruction was used, not the one given",
         "Pass the task's instruction into '<Instruct>: ...'."),
        (len(given) < len(expected) and given == expected[:len(given)],
         f"truncated from the right: {len(given)} of {len(expected)} ids, the template's end (and the thinking block) cut",
         "Truncate the pair's text only (the card cuts '<Instruct>...<Document>: ...' to max_length less the template) "
         "and keep the suffix."),
        (0 < pads < len(given) and given[pads:] == expected,
         f"left padding inside the ids: {pads} <|endoftext|> (151643) before the template",
         "Pass the pads as masked positions (attention_mask 0), not as ids of the pair."),
    ]
    for hit, what, fix in known:
        if hit:
            return [(what, fix)]
    got, want = tokenizer.decode(given), tokenizer.decode(expected)
    at = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    return [(f"the pair's ids differ from the card's at character {at}: ids give {got[max(0, at - 16):at + 16]!r}, "
             f"expected {want[max(0, at - 16):at + 16]!r}",
             "Build the ids as the card does: prefix + tokens('<Instruct>: {task}\\n<Query>: {query}\\n<Document>: {doc}') + suffix.")]


def _text_difference(tokenizer, body, expected, prompt_name, instruction):
    got, want = tokenizer.decode(body), tokenizer.decode(expected)
    at = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    where = f"at character {at}: ids give {got[max(0, at - 12):at + 12]!r}, expected {want[max(0, at - 12):at + 12]!r}"
    if "Query: " in got and "Query:" in want and "Query: " not in want:
        return (f"a space after 'Query:' ({where})",
                "Write the prompt as 'Instruct: {task}\\nQuery:{text}' with no space after 'Query:'.")
    if want.startswith("Instruct:") and not got.startswith("Instruct:"):
        return (f"the query instruction is missing ({where})",
                "Prepend 'Instruct: {task}\\nQuery:' to queries (documents get no prompt).")
    if got.startswith("Instruct:") and not want.startswith("Instruct:"):
        return (f"an instruction was prepended to a document ({where})",
                "Give documents no prompt; only queries get 'Instruct: ...\\nQuery:'.")
    if got.startswith("Instruct:"):
        return (f"the instruction text differs ({where})",
                "Use exactly the instruction the index was built with; the default is sentence-transformers' 'query' prompt.")
    return (f"the text tokenizes differently ({where})",
            "Tokenize with Qwen3's own tokenizer.json (ByteLevel BPE, NFC), on the text stripped of outer spaces.")


# ---------------------------------------------------------------- check MODEL.tflite
def check_graph(g, cfg, probe=None, kind=None):
    """Run a suite of bridge checks against a graph; [(name, passed, figure, fix)].

    `probe` is a list of token ids (default: a few ids ending in the EOS, or 0 for tiny vocabularies);
    `kind` the checkpoint's ("reranker" or "embedding"), when one is given."""
    import numpy as np

    from .errors import Q3RefError

    results = list(g.bridge_checks(cfg, kind))  # what the file itself says (a GGUF's metadata)
    if results and (g.output_tap != "embedding" or cfg is None):
        return results  # running the file needs its runtime (llama.cpp): the metadata checks stand alone
    if g.output_tap != "embedding":
        return results + check_hidden_states(g, cfg, probe)
    S, out_t = g.seq_len, g.output
    eos = EOS_ID if EOS_ID < cfg.vocab_size else 0
    probe = list(probe or [min(11 + 7 * i, cfg.vocab_size - 1) for i in range(9)] + [eos])

    def embed(ids, padding="right", pad_id=eos):
        x, mask = g.place(ids, padding, pad_id)
        return g.run(x, mask)[out_t][0].astype(np.float64)

    def cos(a, b):
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    def record(name, ok, figure, fix):
        results.append((name, bool(ok), figure, fix))

    right, left = embed(probe, "right"), embed(probe, "left")
    c = cos(right, left)
    record("left vs right padding agree", c > 0.9999, f"cosine {c:.6f}",
           "Pool the last real token (attention_mask.flip(1).argmax(1)), not position -1 or a fixed index.")
    other_pad = embed(probe, "right", pad_id=1 if eos != 1 else 2)
    c = cos(right, other_pad)
    record("the mask is honored (pad ids change nothing)", c > 0.9999, f"cosine {c:.6f}",
           "Apply the attention mask in every layer so padded positions are never attended to.")
    longer = embed(probe[:-1] + probe[:3] + [eos], "right")
    first_changed = embed([probe[1]] + probe[1:], "right")
    c_last, c_first = cos(right, longer), cos(right, first_changed)
    record("the pooled token is the last real token", c_last < 0.9999 and c_first < 0.9999,
           f"cosine to a text differing only at the end {c_last:.6f}, only at the start {c_first:.6f}",
           "Pool the hidden state of the last real token (the EOS); first-token or fixed-index pooling ignores the text.")
    full = [probe[i % (len(probe) - 1)] for i in range(S - 1)] + [eos]
    try:
        v = embed(full, "right")
        record(f"a text of exactly seq_len ({S}) runs", np.isfinite(v).all(), f"finite: {bool(np.isfinite(v).all())}",
               "Let the last position hold the EOS; do not reserve it for padding.")
    except Q3RefError as e:
        record(f"a text of exactly seq_len ({S}) runs", False, str(e), "Accept inputs of exactly seq_len tokens.")
    dtypes = [i["dtype"] for i in g.describe()["inputs"]]
    record("inputs are integer ids and mask", all(d in ("int32", "int64") for d in dtypes), ", ".join(dtypes),
           "Feed the dtypes the graph declares (litert-torch downcasts int64 to int32 unless enable_x64).")
    n = float(np.linalg.norm(right))
    record("the output is unit norm", abs(n - 1) < 1e-3, f"norm {n:.6f}",
           "L2-normalize after pooling (and again after MRL truncation).")
    dim = g.describe()["hidden_size"]
    record("the output dim matches config.json", dim == cfg.hidden_size, f"{dim} vs hidden_size {cfg.hidden_size}",
           "Export the checkpoint's own config; MRL truncation belongs after the graph.")
    return results


def check_hidden_states(g, cfg, probe=None, long=512):
    """Bridge checks for a graph that returns hidden states (ONNX): the bridge pools the last real
    token and normalizes, as diff does. Besides padding and masking, one check matters only for a
    graph whose activations are quantized with one scale per tensor (ONNX Runtime's
    DynamicQuantizeLinear in int8/uint8 graphs): a text's embedding then depends on its padding and
    on the other texts in its batch, because they all share that scale. Measured as cosines: the text
    alone against the same text padded to `long` positions, and batched with a long text."""
    import numpy as np

    from .api import pad

    eos = EOS_ID if EOS_ID < cfg.vocab_size else 0
    probe = list(probe or [min(11 + 7 * i, cfg.vocab_size - 1) for i in range(9)] + [eos])
    results = []

    fixed = g.seq_len  # a static-shape export: every input is padded to it, one text at a time

    def pooled(ids, padding="right", pad_id=eos, length=None, batch_with=None):
        texts = [list(ids)] + ([list(batch_with)] if batch_with is not None else [])
        x, mask = pad(texts, padding, pad_id, fixed or max(length or 0, max(map(len, texts))))
        h = g.run(x, mask)[g.output][0].astype(np.float64)  # [S, D]: the first text's hidden states
        last = int(np.nonzero(mask[0])[0][-1])  # the last real token, whichever side the padding is on
        v = h[last]
        return v / np.linalg.norm(v)

    def cos(a, b):
        return float(a @ b)

    def record(name, ok, figure, fix):
        results.append((name, bool(ok), figure, fix))

    # With one activation scale per tensor, pad rows move every text's scale: padding and mask checks
    # then allow what that explains (a masked-out pad changes the cosine by ~1e-4, an unmasked one by far more).
    per_tensor = g.per_tensor_activations()
    floor, why = (0.999, " (per-tensor activation scale: pad rows share it)") if per_tensor else (0.9999, "")
    alone = pooled(probe)
    c = cos(alone, pooled(probe, "left", length=len(probe) + 5))
    record("left vs right padding agree (bridge pools the last real token)", c > floor, f"cosine {c:.6f}{why}",
           g.padding_note() or "Pool the last real token (attention_mask.flip(1).argmax(1)) and pass position_ids that match.")
    c = cos(pooled(probe, length=len(probe) + 5), pooled(probe, pad_id=1 if eos != 1 else 2, length=len(probe) + 5))
    record("the mask is honored (pad ids change nothing)", c > floor, f"cosine {c:.6f}{why}",
           "Feed attention_mask so padded positions are never attended to.")
    long_text = [probe[i % (len(probe) - 1)] for i in range(long - 1)] + [eos]
    if not fixed:  # (a static-shape graph pads every text to its seq_len, alone: nothing to compare)
        padded, batched = cos(alone, pooled(probe, length=long)), cos(alone, pooled(probe, batch_with=long_text))
        worst = min(padded, batched)
        what = "a pair's last-token logits" if g.output_tap == "logits" else "a text's embedding"  # a reranker's: the card's
        record(f"{what} does not depend on its padding or batch ({'per-tensor' if per_tensor else 'no'} "
               "activation quantization)", worst > 0.9999,
               f"cosine alone vs padded to {long}: {padded:.6f}; alone vs batched with a {long}-token text: {batched:.6f}",
               "The graph quantizes each MatMul's input with one scale over the whole tensor (DynamicQuantizeLinear), "
               "so padding rows and the other texts of the batch set every text's scale. Run texts one at a time "
               "without padding, or batch texts of similar length; or use the q4/fp16 graph, whose activations stay float.")
    dtypes = [i["dtype"] for i in g.describe()["inputs"] if "role" not in i]  # (a KV cache is float, fed empty)
    record("inputs are integer ids, mask and positions", all(d in ("int32", "int64") for d in dtypes), ", ".join(dtypes),
           "Feed the dtypes the graph declares.")
    dim = g.describe()["hidden_size"]
    record("the hidden size matches config.json", dim == cfg.hidden_size, f"{dim} vs hidden_size {cfg.hidden_size}",
           "Export the checkpoint's own config; MRL truncation belongs after pooling.")
    return results
