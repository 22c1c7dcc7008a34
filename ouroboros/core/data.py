"""Loading documents and packing them into fixed-length token windows, with Hugging Face ``datasets``.

A *spec* names where documents come from, tried in this order:

1. an embedded corpus (:data:`ouroboros.core.corpora.EMBEDDED_CORPORA`, e.g. ``shakespeare:val``);
2. an existing local path: a ``.txt`` file (the whole file is ONE document), a ``.jsonl``/``.json``, ``.parquet`` or
   ``.csv`` file with a ``text`` field (one document per row), a folder of such files (searched recursively, hidden
   files skipped), or a folder written by ``Dataset.save_to_disk``;
3. otherwise a Hugging Face Hub dataset, ``name``, ``name:split`` or ``name:config:split`` (split defaults to
   ``train``).

Packed windows are cached under ``cache_dir`` (default ``$OUROBOROS_CACHE/data``, else ``~/.cache/ouroboros/data``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ouroboros.core.corpora import EMBEDDED_CORPORA, corpus_version, load_corpus
from ouroboros.core.errors import DataError

if TYPE_CHECKING:
    import datasets
    import torch

FORMAT_VERSION = 1
"""Bumped whenever packing changes, so that older cache files are not reused."""

BUILDERS = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
"""Local file suffix -> ``datasets`` packaged builder used to read it."""

_SAVED_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_PROBE = "Hello, world! The quick brown fox -- 42 times.\n\tÜnïcødé 東京 🙂 def f(x): return x**2"


def load_documents(spec: str) -> datasets.Dataset:
    """Load the documents named by ``spec`` (see the module docstring) as a Dataset with one ``text`` column.

    Rows whose text is empty or whitespace are dropped. Raises DataError for a missing path, an unreadable or empty
    file, a missing ``text`` field (naming the fields present), zero documents, or a name that is neither an embedded
    corpus, nor a local path, nor reachable on the Hub.
    """
    import datasets

    if spec in EMBEDDED_CORPORA:
        ds = datasets.Dataset.from_dict({"text": load_corpus(spec)})
    else:
        path = Path(spec).expanduser()
        if path.exists():
            ds = _load_local(path)
        elif path.suffix.lower() in BUILDERS or spec.startswith(("/", "./", "../", "~")):
            raise DataError(f"data file or folder {spec!r} does not exist")
        else:
            ds = _load_hub(spec)
    ds = _require_text(ds, spec).filter(_non_empty, batched=True)
    if len(ds) == 0:
        raise DataError(f"{spec!r} holds zero non-empty documents")
    return ds


def _non_empty(batch: dict[str, list]) -> list[bool]:
    """Batched filter: keep rows whose text has a non-whitespace character."""
    return [bool(text and text.strip()) for text in batch["text"]]


def _require_text(ds: datasets.Dataset, label: str) -> datasets.Dataset:
    """Keep only the ``text`` column; DataError naming the fields present if it is missing or not a string."""
    if "text" not in ds.column_names:
        raise DataError(f"{label!r} has no 'text' field; fields present: {', '.join(ds.column_names) or '(none)'}")
    feature = ds.features["text"]
    if getattr(feature, "dtype", None) not in ("string", "large_string"):
        raise DataError(f"the 'text' field of {label!r} must hold strings, not {feature}")
    return ds.select_columns(["text"])


def _load_local(path: Path) -> datasets.Dataset:
    """Load a local file, a folder of files or a ``save_to_disk`` folder."""
    import datasets

    if path.is_dir():
        if any((path / marker).exists() for marker in _SAVED_MARKERS):
            return _load_saved(path)
        files = sorted(
            p for p in path.rglob("*")
            if p.is_file() and p.suffix.lower() in BUILDERS and not any(part.startswith(".") for part in p.parts)
        )
        if not files:
            raise DataError(f"folder {str(path)!r} holds no data files; valid suffixes: {', '.join(BUILDERS)}")
        groups: dict[str, list[Path]] = {}
        for file in files:
            groups.setdefault(BUILDERS[file.suffix.lower()], []).append(file)
        parts = [_require_text(_load_files(builder, group), str(group[0])) for builder, group in groups.items()]
        return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    if path.suffix.lower() not in BUILDERS:
        raise DataError(f"unsupported data file suffix {path.suffix!r} for {str(path)!r}; valid: {', '.join(BUILDERS)}")
    return _load_files(BUILDERS[path.suffix.lower()], [path])


def _load_files(builder: str, files: list[Path]) -> datasets.Dataset:
    """Read local files with a packaged ``datasets`` builder; DataError if one is empty or unreadable."""
    import datasets

    for file in files:
        if file.stat().st_size == 0:
            raise DataError(f"data file {str(file)!r} is empty")
    options = {"sample_by": "document"} if builder == "text" else {}
    try:
        return datasets.load_dataset(builder, data_files=[str(f) for f in files], split="train", **options)
    except Exception as err:  # datasets raises many types (even StopIteration) for malformed files
        names = ", ".join(str(f) for f in files[:3]) + (", ..." if len(files) > 3 else "")
        raise DataError(f"could not read {names} as {builder}: {type(err).__name__}: {err}") from err


def _load_saved(path: Path) -> datasets.Dataset:
    """Load a ``save_to_disk`` folder; a DatasetDict yields its ``train`` split (or its only split)."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as err:
        raise DataError(f"could not load the saved dataset {str(path)!r}: {type(err).__name__}: {err}") from err
    if isinstance(loaded, datasets.DatasetDict):
        if "train" in loaded:
            return loaded["train"]
        if len(loaded) == 1:
            return next(iter(loaded.values()))
        raise DataError(f"saved dataset {str(path)!r} has splits {list(loaded)}, none named 'train'; save one split")
    return loaded


def _load_hub(spec: str) -> datasets.Dataset:
    """Load ``name``, ``name:split`` or ``name:config:split`` from the Hub; DataError explaining every option."""
    import datasets

    parts = spec.split(":")
    if len(parts) > 3 or not all(parts):
        raise DataError(f"bad dataset spec {spec!r}; expected name, name:split or name:config:split")
    name, config, split = parts[0], (parts[1] if len(parts) == 3 else None), (parts[-1] if len(parts) > 1 else "train")
    try:
        return datasets.load_dataset(name, config, split=split)
    except Exception as err:
        raise DataError(
            f"{spec!r} is neither an embedded corpus ({', '.join(EMBEDDED_CORPORA)}), nor an existing local path, "
            f"nor a dataset reachable on the Hugging Face Hub ({type(err).__name__}: {err})"
        ) from err


def source_key(spec: str) -> str | None:
    """Cheap identity of a spec for cache keys, or None for Hub datasets (then the content is hashed instead).

    Embedded corpora: name, conversion format and package version. Local paths: resolved path, size and mtime of
    every file (recursively for folders).
    """
    if spec in EMBEDDED_CORPORA:
        return corpus_version(spec)
    path = Path(spec).expanduser()
    if not path.exists():
        return None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return "local:" + hashlib.sha256(json.dumps(stats).encode()).hexdigest()


def content_key(docs: datasets.Dataset) -> str:
    """Hash of the documents' texts (used when no cheaper source identity is known)."""
    digest = hashlib.sha256()
    for batch in docs.select_columns(["text"]).iter(batch_size=4096):
        for text in batch["text"]:
            data = (text or "").encode("utf-8")
            digest.update(len(data).to_bytes(8, "little") + data)
    return "content:" + digest.hexdigest()


def tokenizer_key(tokenizer: Any) -> str:
    """Identity of a tokenizer: class, ``name_or_path``, vocabulary size, EOS id and a probe tokenisation."""
    probe = tokenizer(_PROBE, add_special_tokens=False)["input_ids"]
    fields = [type(tokenizer).__name__, getattr(tokenizer, "name_or_path", ""), len(tokenizer),
              tokenizer.eos_token_id, hashlib.sha256(json.dumps(list(probe)).encode()).hexdigest()]
    return json.dumps(fields)


def default_cache_dir() -> Path:
    """``$OUROBOROS_CACHE/data`` if the variable is set, else ``~/.cache/ouroboros/data``."""
    root = os.environ.get("OUROBOROS_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "ouroboros") / "data"


def _check_args(tokenizer: Any, seq_len: int) -> None:
    """DataError for a window length below 2 or a tokenizer without an EOS token."""
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len <= 1:
        raise DataError(f"seq_len must be an integer >= 2, got {seq_len!r}")
    if getattr(tokenizer, "eos_token_id", None) is None:
        raise DataError(f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no EOS token to separate documents")


def _cache_file(cache_dir: Path | None, source: str, tokenizer: Any, seq_len: int) -> Path:
    """Cache file path for one (source, tokenizer, seq_len, format) combination."""
    key = json.dumps([FORMAT_VERSION, source, tokenizer_key(tokenizer), seq_len])
    name = hashlib.sha256(key.encode()).hexdigest()[:32]
    return Path(cache_dir or default_cache_dir()).expanduser() / f"windows-{name}.safetensors"


def _cached(path: Path, seq_len: int, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Return the tensor stored at ``path`` if readable and well-shaped, else compute it and store it atomically."""
    from safetensors.torch import load_file, save_file

    if path.is_file():
        try:
            windows = load_file(str(path))["windows"]
            if windows.ndim == 2 and windows.shape[1] == seq_len:
                return windows
        except Exception:  # a corrupt or foreign cache file is recomputed and overwritten
            pass
    windows = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(handle)
    try:
        save_file({"windows": windows}, tmp, metadata={"format": str(FORMAT_VERSION), "seq_len": str(seq_len)})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return windows


def _tokenize_batch(batch: dict[str, list], tokenizer: Any, eos_id: int) -> dict[str, list]:
    """Batched map: token ids of each document, without special tokens, followed by one EOS."""
    texts = [text or "" for text in batch["text"]]
    encoded = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    return {"input_ids": [list(ids) + [eos_id] if text else [] for ids, text in zip(encoded, texts)]}


def _pack(docs: datasets.Dataset, tokenizer: Any, seq_len: int, num_proc: int | None, key: str) -> torch.Tensor:
    """Tokenise ``docs``, concatenate them (EOS after each) and cut non-overlapping ``seq_len`` windows."""
    import numpy as np
    import pyarrow.compute as pc
    import torch

    environ = os.environ  # datasets' map(num_proc=N) rebinds os.environ to a copy: keep the real one
    try:
        tokens = docs.map(
            _tokenize_batch, batched=True, batch_size=1000, remove_columns=docs.column_names, num_proc=num_proc,
            fn_kwargs={"tokenizer": tokenizer, "eos_id": tokenizer.eos_token_id}, keep_in_memory=True,
            load_from_cache_file=False, new_fingerprint=hashlib.sha256(key.encode()).hexdigest()[:16],
            desc="Tokenizing",
        )
    finally:
        os.environ = environ
    flat = np.asarray(pc.list_flatten(tokens.data.column("input_ids")).to_numpy(), dtype=np.int64)
    count = len(flat) // seq_len
    if count == 0:
        raise DataError(f"the documents hold only {len(flat)} tokens (EOS included), fewer than one window of "
                        f"seq_len={seq_len}; use more text or a smaller seq_len")
    return torch.from_numpy(flat[: count * seq_len].copy()).view(count, seq_len)


def pack_windows(
    docs: datasets.Dataset, tokenizer: Any, seq_len: int, *, cache_dir: Path | None = None,
    num_proc: int | None = None, source: str | None = None,
) -> torch.LongTensor:
    """Tokenise documents and pack them into an ``(N, seq_len)`` int64 tensor of consecutive windows.

    Each document is tokenised with ``add_special_tokens=False`` (no BOS) and followed by ``tokenizer.eos_token_id``
    (the only special token); the stream is cut into non-overlapping windows and the remainder is dropped. No labels
    are produced: the model uses ``labels == input_ids`` and shifts them once inside its loss.

    The result is cached in ``cache_dir`` keyed by ``source`` (default: a hash of the texts), the tokenizer identity,
    ``seq_len`` and :data:`FORMAT_VERSION`; a second call with the same inputs reads the file and does not tokenise.
    DataError if ``seq_len <= 1``, the tokenizer has no EOS token, or there are fewer tokens than one window.
    """
    _check_args(tokenizer, seq_len)
    key = source or content_key(docs)
    path = _cache_file(cache_dir, key, tokenizer, seq_len)
    return _cached(path, seq_len, lambda: _pack(docs, tokenizer, seq_len, num_proc, key))


def load_windows(
    spec: str, tokenizer: Any, seq_len: int, *, cache_dir: Path | None = None, num_proc: int | None = None,
) -> torch.LongTensor:
    """:func:`load_documents` then :func:`pack_windows`, checking the cache before loading anything.

    Embedded corpora and local paths are keyed by :func:`source_key` (for files: resolved path, size and mtime), so
    a cache hit neither reads nor tokenises the documents. Hub datasets are loaded and keyed by their content.
    """
    _check_args(tokenizer, seq_len)
    source = source_key(spec)
    if source is None:
        return pack_windows(load_documents(spec), tokenizer, seq_len, cache_dir=cache_dir, num_proc=num_proc)
    path = _cache_file(cache_dir, source, tokenizer, seq_len)
    return _cached(path, seq_len, lambda: _pack(load_documents(spec), tokenizer, seq_len, num_proc, source))
