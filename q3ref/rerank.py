"""Qwen3-Reranker: P(yes) for a (query, document) pair, as the model card's transformers usage
computes it.

    ids   = prefix + tokens("<Instruct>: {instruction}\\n<Query>: {query}\\n<Document>: {doc}") + suffix
    score = softmax(logit[no], logit[yes])[yes]     at the last position

prefix: the chat template's system turn (the judge instruction) and `<|im_start|>user\\n`;
suffix: `<|im_end|>\\n<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n` (an empty thinking block).
The middle is tokenized without special tokens and truncated to max_length - len(prefix) -
len(suffix) tokens from the right, as the card's `truncation='longest_first'` does; the card pads
on the left and reads position -1: the last real token. Only the LM head's rows for "yes" and
"no" are read (Weights.head_rows): lm_head.weight (4B, 8B) or embed_tokens (tied, 0.6B).
"""

from __future__ import annotations

import numpy as np

from . import model as M
from .errors import Q3RefError

SYSTEM = ('Judge whether the Document meets the requirements based on the Query and the Instruct provided. '
          'Note that the answer can only be "yes" or "no".')
PREFIX = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n"
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
MAX_LENGTH = 8192  # the card's max_length


def format_pair(query: str, document: str, instruction=None) -> str:
    return f"<Instruct>: {instruction or DEFAULT_INSTRUCTION}\n<Query>: {query}\n<Document>: {document}"


def answer_ids(tokenizer) -> tuple[int, int]:
    """(yes, no): the ids of the single tokens "yes" and "no" in this tokenizer (9693 and 2152 in
    Qwen3's), looked up and checked, not assumed. (Its .hf and .file: Model.pair_vocabulary.)"""
    hf, file = tokenizer.hf, tokenizer.file
    ids = []
    for word in ("yes", "no"):
        i = hf.token_to_id(word)
        if i is None or hf.encode(word, add_special_tokens=False).ids != [i]:
            raise Q3RefError(f"{file}: {word!r} is not a single token; not a Qwen3 reranker tokenizer")
        ids.append(i)
    return ids[0], ids[1]


def pair_ids(tokenizer, query, document, instruction=None, max_length=MAX_LENGTH) -> list[int]:
    for name, text in (("query", query), ("document", document)):
        if not isinstance(text, str):
            raise Q3RefError(f"the {name} must be a string, got {type(text).__name__}")
    if instruction is not None and not str(instruction).strip():
        raise Q3RefError("--instruction needs a non-empty task description")
    encode = lambda s: tokenizer.hf.encode(s, add_special_tokens=False).ids  # noqa: E731
    prefix, suffix = encode(PREFIX), encode(SUFFIX)
    room = max_length - len(prefix) - len(suffix)
    head = encode(format_pair(query, "", instruction))  # everything before the document
    if len(head) >= room:
        raise Q3RefError(f"a max length of {max_length} tokens leaves no room for the document: the card's prompt "
                         f"around the pair takes {len(prefix) + len(suffix)} and the instruction and query "
                         f"{len(head)}")
    body = encode(format_pair(query, document, instruction))[:room]  # truncation='longest_first'
    return prefix + body + suffix


def scores(weights, cfg, kernels, seqs, yes_no, batch_size=8) -> np.ndarray:
    """Id lists -> P(yes) [N]: the final hidden state at each sequence's last token times the
    head's yes and no rows, then log_softmax over (no, yes), as the card computes it."""
    out = np.zeros(len(seqs))
    order = np.argsort([-len(s) for s in seqs], kind="stable")
    for start in range(0, len(seqs), batch_size):
        idx = order[start:start + batch_size]
        from .api import pad

        ids, mask = pad([seqs[i] for i in idx], pad_id=0)  # [B, T] each; masked, never read
        logits = M.rank(weights, cfg, ids, mask, yes_no, kernels)  # [B, 2]: yes, no
        pair = np.stack([logits[:, 1], logits[:, 0]], axis=1).astype(np.float64)  # [B, 2]: no, yes
        log_p = pair - np.logaddexp(pair[:, :1], pair[:, 1:])  # log_softmax
        out[idx] = np.exp(log_p[:, 1])
    return out
