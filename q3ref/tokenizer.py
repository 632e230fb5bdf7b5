"""Text -> token ids exactly as Qwen3-Embedding expects them.

- Exactly one trailing <|endoftext|> (151643). The published tokenizer.json appends it through
  a TemplateProcessing post-processor; older copies do not. q3ref encodes without the
  post-processor and appends the EOS itself, so both files give the same ids, and never a
  double EOS. <|im_end|> (151645, tokenizer_config's eos_token) is the chat EOS, not this one.
- Prompts as sentence-transformers applies them: the prompt is prepended to the text. Queries
  get `Instruct: {task}\\nQuery:{text}`, no space after `Query:`; documents get nothing.
- Whitespace as sentence-transformers 6 and transformers treat it: kept. sentence-transformers up
  to 5.x stripped prompt + text together; strip=True gives that older behaviour.
- Truncation keeps the EOS as the last token (as the template tokenizer's truncation does).
"""

from __future__ import annotations

import gzip
from pathlib import Path

from .errors import Q3RefError

EOS_TOKEN, EOS_ID = "<|endoftext|>", 151643
IM_END_ID = 151645  # <|im_end|>: a common wrong choice of EOS for this model
DEFAULT_TASK = "Given a web search query, retrieve relevant passages that answer the query"


def prompt_for(prompt_name=None, instruction=None) -> str:
    """The prefix for a text: '' (document) or 'Instruct: {task}\\nQuery:' (query)."""
    if instruction is not None:
        if not str(instruction).strip():
            raise Q3RefError("--instruction needs a non-empty task description")
        return f"Instruct: {instruction}\nQuery:"
    if prompt_name in (None, "document"):
        return ""
    if prompt_name == "query":
        return f"Instruct: {DEFAULT_TASK}\nQuery:"
    raise Q3RefError(f"unknown prompt_name {prompt_name!r}; use 'query' or 'document'")


def find_tokenizer_file(path: Path) -> Path | None:
    for name in ("tokenizer.json", "tokenizer.json.gz"):
        if (path / name).is_file():
            return path / name
    return None


def load_hf(file: Path):
    """tokenizer.json (or .json.gz) -> the tokenizers library's Tokenizer, unchecked."""
    from tokenizers import Tokenizer as HFTokenizer

    try:
        raw = Path(file).read_bytes()
        text = gzip.decompress(raw).decode() if Path(file).suffix == ".gz" else raw.decode()
        hf = HFTokenizer.from_str(text)
    except Exception as e:  # tokenizers raises plain Exception subclasses on bad JSON
        raise Q3RefError(f"{file}: cannot load tokenizer ({str(e).splitlines()[0]})") from None
    hf.no_truncation()  # a file's own truncation or padding settings would cut or pad what q3ref encodes
    hf.no_padding()
    return hf


class Tokenizer:
    def __init__(self, file: Path):
        self.file = Path(file)
        self.hf = load_hf(self.file)
        eos = self.hf.token_to_id(EOS_TOKEN)
        if eos != EOS_ID:
            raise Q3RefError(f"{self.file}: {EOS_TOKEN} has id {eos}, Qwen3 uses {EOS_ID}; "
                             "this is not a Qwen3 tokenizer")
        # Does the file's own post-processor append the EOS? Reported, never relied on.
        self.template_appends_eos = self.hf.encode("a").ids[-1:] == [EOS_ID]

    def encode(self, text: str, prompt_name=None, instruction=None, max_length=None, strip=False) -> list[int]:
        if not isinstance(text, str):
            raise Q3RefError(f"text must be a string, got {type(text).__name__}")
        if not (text.strip() if strip else text):
            raise Q3RefError("empty text: nothing to embed" + (" once stripped" if strip and text else ""))
        full = prompt_for(prompt_name, instruction) + text
        full = full.strip() if strip else full
        ids = self.hf.encode(full, add_special_tokens=False).ids
        if max_length is not None:
            if max_length < 2:
                raise Q3RefError(f"max_length must be at least 2 (one token and the EOS), got {max_length}")
            ids = ids[: max_length - 1]
        return ids + [EOS_ID]

    def decode(self, ids) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=False)
