"""Hypothesis strategies for Flue/pi-shaped agent sessions, for fuzzing eventlog and
your own code.

Requires ``hypothesis`` (the ``test`` extra).  The main entry points:

* :func:`sessions` draws one ``SessionData``-shaped dict: a tree of entries of every
  kind (user, assistant with tool calls, tool results with images, compaction,
  branch summaries, unknown ``type``\\ s), multi-byte text, base64 images, huge
  strings, rewound leaves;
* :func:`histories` draws the list of states a runtime would save one after another,
  each derived from the last by what runtimes (and hostile callers) do: append
  entries, edit or remove one in place, rewind the leaf, change metadata, reorder
  keys, swap ``1`` for ``1.0`` or ``True``;
* :func:`json_values` draws arbitrary storable values.

Large values are built from a drawn seed and size rather than drawn byte by byte, so
multi-megabyte images stay cheap to generate and shrink well.
"""

from __future__ import annotations

import base64
import random
from typing import Any

from hypothesis import strategies as st

__all__ = [
    "BASE64_FORMS",
    "base64_text",
    "big_strings",
    "entries",
    "histories",
    "images",
    "json_values",
    "mutate",
    "sessions",
]

_IDS = st.text("0123456789abcdef", min_size=8, max_size=8)
_TEXT = st.text(
    st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs", "Mn")) | st.sampled_from('é日本🚀\n\t"\\'),
    max_size=40,
)
_TS = st.builds(
    lambda s: f"2026-11-{1 + s // 86400 % 28:02d}T{s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}.000Z",
    st.integers(0, 10**7),
)


def json_values(max_leaves: int = 12, *, allow_bytes: bool = True) -> st.SearchStrategy[Any]:
    """Storable values: JSON plus (optionally) bytes, with the numbers that trip
    loose equality (``0``, ``0.0``, ``-0.0``, ``False``, huge ints)."""
    leaves: st.SearchStrategy[Any] = (
        st.none()
        | st.booleans()
        | st.integers(-(2**70), 2**70)
        | st.sampled_from([0, 1, -1, 0.0, -0.0, 1.0, True, False])
        | st.floats(allow_nan=False)
        | _TEXT
    )
    if allow_bytes:
        leaves = leaves | st.binary(max_size=24)
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
        max_leaves=max_leaves,
    )


def _seeded_bytes(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def base64_text(
    raw: bytes,
    *,
    urlsafe: bool = False,
    padded: bool = True,
    line: int = 0,
    crlf: bool = False,
    final_break: bool = False,
) -> str:
    """Base64 of ``raw`` as it is sent in the wild: the URL-safe alphabet (``-_``),
    without ``=`` padding, cut into lines of ``line`` characters (0: one line)
    ending with ``\\r\\n`` or ``\\n``, with or without a line break at the end."""
    text = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(raw).decode("ascii")
    if not padded:
        text = text.rstrip("=")
    sep = "\r\n" if crlf else "\n"
    if line:
        text = sep.join(text[i : i + line] for i in range(0, len(text), line))
    return text + sep if final_break else text


#: Forms of base64 common in the wild, as :func:`base64_text` arguments.
BASE64_FORMS: dict[str, dict[str, Any]] = {
    "canonical": {},  # base64.b64encode, JSON APIs
    "mime": {"line": 76, "final_break": True},  # base64.encodebytes, the base64 command
    "mime-crlf": {"line": 76, "crlf": True},  # an e-mail body (RFC 2045)
    "pem": {"line": 64, "final_break": True},  # openssl base64, PEM
    "urlsafe": {"urlsafe": True, "padded": False},  # base64url (RFC 4648 section 5), JWT
    "final-newline": {"final_break": True},  # base64 -w0 in a shell's $(...) then echo
}


def images(max_bytes: int = 3_000_000) -> st.SearchStrategy[str]:
    """Base64 text of random "image" bytes (incompressible, like PNG), mostly small,
    sometimes several MB; a few seeds so identical images recur, mostly canonical
    and sometimes in another of the :data:`BASE64_FORMS`."""
    sizes = st.one_of(st.integers(0, 3000), st.integers(0, max_bytes), st.sampled_from([max_bytes]))
    forms = st.just("canonical") | st.sampled_from(sorted(BASE64_FORMS))
    return st.builds(
        lambda seed, n, form: base64_text(_seeded_bytes(seed, n), **BASE64_FORMS[form]),
        st.integers(0, 3),
        sizes,
        forms,
    )


def big_strings(max_bytes: int = 5_000_000) -> st.SearchStrategy[str]:
    """Long text (a huge tool output), multi-byte UTF-8 included, up to ``max_bytes``."""
    alphabet = 'abc xyz\n é 日本語 🚀 {}[]":'

    def make(seed: int, n: int) -> str:
        rng = random.Random(seed)
        unit = "".join(rng.choice(alphabet) for _ in range(997))
        return (unit * (n // len(unit.encode()) + 1))[: max(0, n // 2)]

    return st.builds(make, st.integers(0, 3), st.integers(0, max_bytes))


def _usage() -> st.SearchStrategy[dict[str, Any]]:
    n = st.integers(0, 200_000)
    f = st.floats(0, 10, allow_nan=False)
    return st.fixed_dictionaries(
        {"input": n, "output": n, "cacheRead": n, "cacheWrite": n, "totalTokens": n,
         "cost": st.fixed_dictionaries({"input": f, "output": f, "cacheRead": f, "cacheWrite": f, "total": f})}
    )  # fmt: skip


def _content_blocks(image_size: int, big: int) -> st.SearchStrategy[list[dict[str, Any]]]:
    text = st.builds(lambda t: {"type": "text", "text": t}, _TEXT | big_strings(big))
    image = st.builds(lambda d, m: {"type": "image", "data": d, "mimeType": m},
                      images(image_size), st.sampled_from(["image/png", "image/jpeg"]))  # fmt: skip
    return st.lists(text | image, max_size=3)


def _message(image_size: int, big: int) -> st.SearchStrategy[dict[str, Any]]:
    ms = st.integers(1_700_000_000_000, 1_800_000_000_000)
    user = st.fixed_dictionaries(
        {"role": st.just("user"), "content": _TEXT | _content_blocks(image_size, big), "timestamp": ms}
    )
    call = st.fixed_dictionaries(
        {"type": st.just("toolCall"), "id": _IDS, "name": st.sampled_from(["bash", "read", "edit"]),
         "arguments": st.dictionaries(_TEXT, json_values(4, allow_bytes=False), max_size=3)}
    )  # fmt: skip
    thinking = st.fixed_dictionaries(
        {"type": st.just("thinking"), "thinking": _TEXT},
        optional={"thinkingSignature": _IDS, "redacted": st.booleans()},
    )
    assistant = st.fixed_dictionaries(
        {"role": st.just("assistant"),
         "content": st.lists(call | thinking | st.builds(lambda t: {"type": "text", "text": t}, _TEXT), max_size=4),
         "api": st.just("anthropic-messages"), "provider": st.just("anthropic"), "model": st.just("claude"),
         "usage": _usage(), "stopReason": st.sampled_from(["stop", "length", "toolUse", "error", "aborted"]),
         "timestamp": ms},
        optional={"errorMessage": _TEXT},
    )  # fmt: skip
    tool_result = st.fixed_dictionaries(
        {"role": st.just("toolResult"), "toolCallId": _IDS, "toolName": st.just("bash"),
         "content": _content_blocks(image_size, big), "isError": st.booleans(), "timestamp": ms},
        optional={"details": json_values(6) | st.builds(lambda s: {"blob": s}, big_strings(big))},
    )  # fmt: skip
    return st.one_of(user, assistant, tool_result)


def entries(*, image_size: int = 200_000, big: int = 100_000) -> st.SearchStrategy[dict[str, Any]]:
    """One SessionEntry of any kind (``parentId`` left ``None``: :func:`sessions`
    links entries into a tree)."""
    base = {"id": _IDS, "parentId": st.none(), "timestamp": _TS}
    message = st.fixed_dictionaries(
        {"type": st.just("message"), **base, "message": _message(image_size, big)},
        optional={"source": st.sampled_from(["prompt", "skill", "shell", "task", "retry", "dispatch"])},
    )
    compaction = st.fixed_dictionaries(
        {"type": st.just("compaction"), **base, "summary": _TEXT, "firstKeptEntryId": _IDS,
         "tokensBefore": st.integers(0, 10**6)},
        optional={"details": st.fixed_dictionaries({"readFiles": st.lists(_TEXT, max_size=3),
                                                     "modifiedFiles": st.lists(_TEXT, max_size=3)})},
    )  # fmt: skip
    branch = st.fixed_dictionaries({"type": st.just("branch_summary"), **base, "fromId": _IDS, "summary": _TEXT})
    unknown = st.fixed_dictionaries(
        {"type": st.sampled_from(["model_change", "custom", "label", "session_info", "x-future"]), **base},
        optional={"data": json_values(6)},
    )
    return st.one_of(message, message, compaction, branch, unknown)


@st.composite
def sessions(draw: st.DrawFn, /, max_entries: int = 12, **entry_options: Any) -> dict[str, Any]:
    """A ``SessionData`` (version 5) whose entries form a tree through ``parentId``;
    ``leafId`` is the last entry or, sometimes, an earlier one (a rewound leaf)."""
    es = draw(st.lists(entries(**entry_options), max_size=max_entries))
    for i, e in enumerate(es):
        e["parentId"] = (
            es[draw(st.integers(0, i - 1))]["id"] if i and draw(st.integers(0, 4)) else (es[i - 1]["id"] if i else None)
        )
    leaf = es[-1]["id"] if es else None
    if es and draw(st.integers(0, 5)) == 0:
        leaf = es[draw(st.integers(0, len(es) - 1))]["id"]
    ts = draw(_TS)
    return {
        "version": 5,
        "affinityKey": "aff_" + draw(st.text("0123456789ABCDEFGHJKMNPQRSTVWXYZ", min_size=26, max_size=26)),
        "entries": es,
        "leafId": leaf,
        "metadata": draw(st.dictionaries(_TEXT, json_values(4), max_size=3)),
        "createdAt": ts,
        "updatedAt": ts,
    }


_EDITS = ("append", "append", "append", "edit", "remove", "leaf", "meta", "reorder", "numeric", "rekey", "entries_type")


def mutate(draw: st.DrawFn, state: dict[str, Any]) -> dict[str, Any]:
    """Apply one edit a runtime (or a hostile caller) might make to ``state``, in
    place where it can; returns the state (a new dict when keys were reordered).

    Edits: append entries, replace or remove one, rewind the leaf, change metadata or
    add a field, reorder top-level keys, swap a number for an equal one of another
    type (``0``, ``0.0``, ``-0.0``, ``False``), move a key to the end of an entry
    (same keys, new order), or make ``entries`` something other than a list.
    """
    kind = draw(st.sampled_from(_EDITS))
    es = state.get("entries")
    if kind == "append" and isinstance(es, list):
        es.extend(draw(st.lists(entries(image_size=50_000, big=50_000), min_size=1, max_size=3)))
        state["leafId"] = es[-1]["id"]
    elif kind == "edit" and isinstance(es, list) and es:
        es[draw(st.integers(0, len(es) - 1))] = draw(entries(image_size=50_000, big=50_000))
    elif kind == "remove" and isinstance(es, list) and es:
        del es[draw(st.integers(0, len(es) - 1))]
    elif kind == "leaf" and isinstance(es, list) and es:
        state["leafId"] = es[draw(st.integers(0, len(es) - 1))]["id"]
    elif kind == "meta":
        state["metadata"] = draw(st.dictionaries(_TEXT, json_values(4), max_size=3))
        state["updatedAt"] = draw(_TS)
        if draw(st.booleans()):
            state[draw(_TEXT)] = draw(json_values(3))
    elif kind == "reorder":
        keys = list(state)
        draw(st.randoms()).shuffle(keys)
        state = {k: state[k] for k in keys}
    elif kind == "numeric":
        target = es[draw(st.integers(0, len(es) - 1))] if isinstance(es, list) and es else state
        if not isinstance(target, dict):
            target = state
        if isinstance(target.get("message"), dict) and draw(st.booleans()):
            target = target["message"]  # deeper inside an entry
        target["n"] = draw(st.sampled_from([0, 0.0, -0.0, False, 1, 1.0, True]))
    elif kind == "rekey" and isinstance(es, list) and es:
        target = es[draw(st.integers(0, len(es) - 1))]
        if isinstance(target, dict) and target:
            key = draw(st.sampled_from(sorted(target)))
            target[key] = target.pop(key)
    elif kind == "entries_type" and draw(st.integers(0, 3)) == 0:
        state["entries"] = draw(st.sampled_from([None, "not a list", {"a": 1}, []]))
    return state


@st.composite
def histories(draw: st.DrawFn, /, max_steps: int = 8, **session_options: Any) -> list[dict[str, Any]]:
    """States a runtime saves one after another, each derived from the last by
    :func:`mutate`.  Each is a fresh deep copy (nothing shared between states)."""
    import copy

    state = draw(sessions(**session_options))
    out = [copy.deepcopy(state)]
    for _ in range(draw(st.integers(0, max_steps))):
        state = mutate(draw, state)
        out.append(copy.deepcopy(state))
    return out
