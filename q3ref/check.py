"""check-ids: name, in words, how a bridge's token ids differ from what Qwen3-Embedding expects.

Each finding is (what, fix): the fix in one sentence. The expected ids come from q3ref's
tokenizer (exactly one trailing <|endoftext|>, sentence-transformers' prompts).
"""

from __future__ import annotations

from .tokenizer import EOS_ID, IM_END_ID


def check_ids(tokenizer, text, given, prompt_name=None, instruction=None, max_length=None) -> list[tuple[str, str]]:
    expected = tokenizer.encode(text, prompt_name, instruction)
    given = [int(i) for i in given]
    findings = []
    if given == expected:
        return findings
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
