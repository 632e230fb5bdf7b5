"""check-embeddings: which bridge bug explains the vectors a user's stack produced?

Each hypothesis is a way the user's stack could have computed its vectors from the same model:
q3ref computes what that stack would give and the hypothesis that lands on the user's vectors is
the finding. Two independent questions are asked:

- direction: which tokens and which pooling (last token, mean, first token, no EOS, double EOS,
  <|im_end|> as EOS, instruction missing or added), judged by cosine, so a quantized export's
  small noise does not hide the answer;
- length: unit norm, raw pooled norm (never normalized), or the norm of a normalized vector cut to
  its first `dim` values (MRL truncation without renormalizing).

The model is causal, so appending a token changes no earlier hidden state: one forward of
`expected + [EOS]` (T+1 tokens) gives the last-token (position T-1), no-EOS (T-2), double-EOS (T),
first-token (0) and mean (0..T-1) hypotheses at once. <|im_end|> and the other prompt need one forward each.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import model as M
from .api import pad
from .errors import Q3RefError
from .tokenizer import EOS_ID, IM_END_ID

EXPECTED = "last token"
# hypothesis -> (what the vectors look like, the fix in one sentence)
DIRECTIONS = {
    EXPECTED: ("last-token pooled, as the model expects", ""),
    "mean pooling": ("mean-pooled over the tokens",
                     "Pool the hidden state of the last real token (the <|endoftext|>), not the mean over tokens."),
    "first token": ("pooled at the first token",
                    "Pool the last real token (attention_mask.flip(1).argmax(1)), not position 0."),
    "no EOS": ("computed without the trailing <|endoftext|>",
               "Append <|endoftext|> (151643) to every input, so the pooled token is the EOS."),
    "double EOS": ("computed with <|endoftext|> appended twice",
                   "Append 151643 only once (the published tokenizer.json already appends it)."),
    "<|im_end|> as EOS": ("computed with <|im_end|> (151645) as the last token",
                          "End every input with <|endoftext|> (151643), not tokenizer_config's eos_token 151645."),
    "no instruction": ("computed without the query instruction",
                       "Prepend 'Instruct: {task}\\nQuery:' to queries (as the index expects)."),
    "instruction added": ("computed with the query instruction prepended",
                          "Give documents no prompt; only queries get 'Instruct: {task}\\nQuery:'."),
    "whitespace stripped": ("computed on prompt + text stripped of outer whitespace (sentence-transformers <= 5.x)",
                            "Keep the texts' whitespace, as sentence-transformers 6 and transformers do, or "
                            "compare with q3ref --strip if the index was built with sentence-transformers 5."),
    "whitespace kept": ("computed with the outer whitespace kept (sentence-transformers 6, transformers)",
                        "Strip prompt + text as the index's sentence-transformers 5 did, or drop --strip."),
}
NORM_TOL = 2e-3  # |norm - 1| of a normalized fp16 output stays well inside this
NORM_REL = 2e-2  # relative match of a norm to a hypothesis's norm


def load_vectors(path) -> np.ndarray:
    """.npy, or JSON: a list of vectors, {"embeddings": [...]} (q3ref embed --json) or
    {"data": [{"embedding": [...]}, ...]} (OpenAI-style servers)."""
    path = Path(path)
    if not path.is_file():
        raise Q3RefError(f"vectors file {path} does not exist")
    try:
        if path.suffix == ".npy":
            v = np.load(path, allow_pickle=False)
        else:
            raw = json.loads(path.read_text())
            if isinstance(raw, dict) and "embeddings" in raw:
                raw = raw["embeddings"]
            elif isinstance(raw, dict) and "data" in raw:
                raw = [row["embedding"] for row in raw["data"]]
            elif isinstance(raw, dict):
                raise Q3RefError(f"{path}: a JSON object needs an \"embeddings\" or a \"data\" key, "
                                 f"found {sorted(raw)[:5]}")
            v = np.asarray(raw, dtype=np.float64)
    except (ValueError, KeyError, TypeError, OSError) as e:
        raise Q3RefError(f"{path}: cannot read vectors ({str(e).splitlines()[0]})") from None
    read = f"shape {list(v.shape)}, dtype {v.dtype}"  # as stored, before one vector becomes [1, dim]
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2 or v.shape[0] == 0 or v.shape[1] == 0 or not np.issubdtype(v.dtype, np.number):
        raise Q3RefError(f"{path}: expected a (texts, dim) array of numbers, got {read}")
    return v.astype(np.float64)


def load_texts(path) -> list[str]:
    """One text per line, or a JSON list of strings (for texts with newlines)."""
    path = Path(path)
    if not path.is_file():
        raise Q3RefError(f"texts file {path} does not exist")
    try:
        body = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as e:
        raise Q3RefError(f"{path}: cannot read texts ({e})") from None
    if path.suffix == ".json":
        try:
            texts = json.loads(body)
        except ValueError as e:
            raise Q3RefError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise Q3RefError(f"{path}: expected a JSON list of strings")
    else:
        texts = body.split("\n")
        if texts and texts[-1] == "":
            texts.pop()
    empty = [i + 1 for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise Q3RefError(f"{path}: text {empty[0]} is empty")
    if not texts:
        raise Q3RefError(f"{path}: no texts")
    return texts


def _hidden(model, seqs):
    """Final hidden states of each id list, one forward per batch: list of [T_i, D] float64."""
    out = []
    for start in range(0, len(seqs), 8):
        batch = seqs[start:start + 8]
        ids, mask = pad([np.asarray(s) for s in batch], pad_id=0)  # [B, T] each
        h = M.forward(model.compute[0], model.cfg, ids, mask, model.compute[1])  # [B, T, D]
        out += [h[b, :len(s)].astype(np.float64) for b, s in enumerate(batch)]  # [T_i, D] each
    return out


def candidates(model, texts, prompt_name=None, instruction=None, max_length=None, strip=False) -> dict:
    """{hypothesis: pooled, un-normalized vectors [N, D]}; NaN rows where a hypothesis does not
    apply (no-EOS on a text that is only the EOS). strip: the expected convention strips
    (sentence-transformers <= 5.x); the other convention is a hypothesis either way."""
    expected = model.tokenize(texts, prompt_name, instruction, max_length, strip)  # N lists ending in EOS
    D = model.cfg.hidden_size
    cands = {name: np.full((len(texts), D), np.nan) for name in DIRECTIONS}
    for i, h in enumerate(_hidden(model, [s + [EOS_ID] for s in expected])):  # h: [T+1, D]
        T = len(expected[i])
        cands[EXPECTED][i] = h[T - 1]
        cands["double EOS"][i] = h[T]
        cands["mean pooling"][i] = h[:T].mean(axis=0)
        cands["first token"][i] = h[0]
        if T >= 2:
            cands["no EOS"][i] = h[T - 2]
    for i, h in enumerate(_hidden(model, [s[:-1] + [IM_END_ID] for s in expected])):
        cands["<|im_end|> as EOS"][i] = h[-1]
    # The other prompt: a query embedded as a document, or a document embedded as a query.
    is_query = prompt_name == "query" or instruction is not None
    other = model.tokenize(texts, None if is_query else "query", None, max_length, strip)
    for i, h in enumerate(_hidden(model, other)):
        cands["no instruction" if is_query else "instruction added"][i] = h[-1]
    del cands["instruction added" if is_query else "no instruction"]
    # The other whitespace convention; texts without outer whitespace give the expected ids again.
    flipped = "whitespace kept" if strip else "whitespace stripped"
    for i, h in enumerate(_hidden(model, model.tokenize(texts, prompt_name, instruction, max_length, not strip))):
        cands[flipped][i] = h[-1]
    del cands["whitespace stripped" if strip else "whitespace kept"]
    return cands


def _cosines(u, c):  # [N, d], [N, d] -> [N]
    return np.einsum("nd,nd->n", u, c) / (np.linalg.norm(u, axis=1) * np.linalg.norm(c, axis=1))


def judge(vectors, cands, min_cosine=0.99) -> dict:
    """Test each hypothesis against the user's vectors [N, d]; the report as a plain dict."""
    N, d = vectors.shape
    cos = {name: _cosines(vectors, c[:, :d]) for name, c in cands.items()}  # name -> [N]
    score = {name: float(np.nanmean(c)) if np.isfinite(c).any() else float("nan") for name, c in cos.items()}
    # The expected hypothesis wins ties: a one-token text makes some hypotheses coincide.
    best = max(score, key=lambda n: (np.nan_to_num(score[n], nan=-2.0), n == EXPECTED))
    per_text_best = [max(cos, key=lambda n: (np.nan_to_num(cos[n][i], nan=-2.0), n == EXPECTED)) for i in range(N)]
    findings, fit = [], None
    if not np.isfinite(vectors).all():
        rows = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
        findings.append((f"the vectors hold NaN or Inf (rows {rows[:5].tolist()})",
                         "Check the runtime's precision: fp16 overflows in Qwen3-Embedding's residual stream; "
                         "run in fp32 or bf16."))
    # Ranked by the mean cosine; a hypothesis fits only if it fits every text.
    elif np.nanmin(cos[EXPECTED]) >= min_cosine and score[best] - score[EXPECTED] < 1e-4:
        fit = EXPECTED
    elif np.nanmin(cos[best]) >= min_cosine:
        fit = best
        what, fix = DIRECTIONS[best]
        findings.append((f"the vectors look {what}: cosine {score[best]:.5f} to q3ref's {best} hypothesis, "
                         f"{score[EXPECTED]:.5f} to the expected embeddings", fix))
    else:
        mixed = [i for i in range(N) if cos[EXPECTED][i] >= min_cosine]
        if mixed:
            bad = [i for i in range(N) if cos[EXPECTED][i] < min_cosine]
            fits = "; ".join(f"{i}: {per_text_best[i]}" for i in bad[:8])
            findings.append((f"texts {bad[:8]} differ (cosine down to {np.nanmin(cos[EXPECTED]):.4f}) while "
                             f"{len(mixed)} others match; best fit per text: {fits}",
                             "Embed the failing texts one at a time: if they then match, the batch's padding "
                             "or mask is handled wrongly; otherwise fix what their best fit names."))
        else:
            findings.append((f"no hypothesis explains the vectors: best {best} at cosine {score[best]:.4f}, "
                             f"expected {score[EXPECTED]:.4f}", "Check that the same checkpoint is used, then run "
                             "`q3ref diff` on the exported graph to find the layer where it departs."))
    norms = np.linalg.norm(vectors, axis=1)  # [N]
    if fit is not None and np.isfinite(norms).all():
        findings += _length_findings(norms, cands[fit], d)
    return {"n": N, "dim": d, "min_cosine": min_cosine, "scores": score, "best": best, "fit": fit,
            "cosine_expected": cos[EXPECTED].tolist(), "per_text_best": per_text_best, "norms": norms.tolist(),
            "findings": findings}


def _length_findings(norms, pooled, d):
    """Unit length, or which un-normalized vector the norms are those of."""
    if np.all(np.abs(norms - 1) < NORM_TOL):
        return []
    raw = np.linalg.norm(pooled[:, :d], axis=1)  # [N]: pooled, never normalized
    cut = raw / np.linalg.norm(pooled, axis=1)  # [N]: normalized at full size, then cut to d
    span = f"norms {norms.min():.4f}..{norms.max():.4f}"
    if d < pooled.shape[1] and np.allclose(norms, cut, rtol=NORM_REL):
        return [(f"MRL truncated without renormalizing: {span}, those of unit vectors cut to {d} dims",
                 "L2-normalize again after keeping the first dims (sentence-transformers' truncate_dim alone does not).")]
    if np.allclose(norms, raw, rtol=NORM_REL):
        return [(f"not normalized: {span}, those of the pooled hidden states",
                 "L2-normalize the pooled vector (normalize=True in sentence-transformers).")]
    return [(f"not unit length: {span}",
             "L2-normalize the final vectors; similarity scores between un-normalized vectors are not cosines.")]
