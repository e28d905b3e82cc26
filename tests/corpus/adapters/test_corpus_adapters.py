"""Every corpus adapter on a fixture in the real corpus's layout: rows, splits, labels, durations, errors."""

from __future__ import annotations

import json
import logging
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from adapter_fixtures import (
    LEXICON,
    SC_BACKGROUND,
    SC_SPEECH,
    make_fsc,
    make_iemocap,
    make_librispeech,
    make_musan,
    make_sc_test_set,
    make_speech_commands,
    make_voxceleb1,
    write_audio,
    write_lexicon,
)

from pipeline.audio.io import AudioError, load_audio
from pipeline.cli import main as cli_main
from pipeline.corpus.adapters import ADAPTERS, adapter_options, check_options, get_adapter, run_adapter
from pipeline.corpus.adapters.common import CorpusError
from pipeline.corpus.adapters.g2p import espeak_phones
from pipeline.corpus.manifest import read_manifest
from pipeline.corpus.screen import rejects_path
from pipeline.corpus.text import ipa_phones

ALL_SPLITS = {"train": ["train-clean-100", "train-clean-360", "train-other-500"], "dev": ["dev-clean"],
              "test": ["test-clean"]}


def _check_audio_columns(df: pd.DataFrame, n: int = 4) -> None:
    """num_samples is what load_audio returns; every row is listed at 16 kHz."""
    assert (df["sample_rate"] == 16000).all()
    for row in df.head(n).itertuples():
        assert row.num_samples == len(load_audio(row.path))


# ------------------------------------------------------------------ registry
def test_registry_and_option_check():
    assert set(ADAPTERS) == {"librispeech", "speech_commands", "fluent_speech_commands", "voxceleb1", "iemocap",
                             "musan", "tsv"}
    for name in ADAPTERS:
        func = get_adapter(name)
        assert func.__name__ == f"prepare_{name}" and func.__doc__
        assert "on_bad_audio" in adapter_options(name)
    with pytest.raises(KeyError, match="known: .*librispeech"):
        get_adapter("timit")
    with pytest.raises(ValueError, match=r"\['lexicn'\].*allowed: .*lexicon"):
        check_options("librispeech", {"lexicn": "x"})


# ------------------------------------------------------------------ LibriSpeech
def test_librispeech_lexicon(tmp_path):
    facts = make_librispeech(tmp_path / "data")
    out = tmp_path / "m.tsv"
    df = run_adapter("librispeech", str(tmp_path / "data"), str(out),
                     {"subsets": ALL_SPLITS, "lexicon": str(write_lexicon(tmp_path / "lex.txt"))})
    assert df.equals(read_manifest(out))
    assert set(df["utt_id"]) == set(facts)
    split_of = {s: k for k, names in ALL_SPLITS.items() for s in names}
    for row in df.itertuples():
        f = facts[row.utt_id]
        assert row.split == split_of[f["subset"]] and row.subset == f["subset"] and row.speaker == f["speaker"]
        assert row.text == " ".join(f["words"]).lower()
        want = [re.sub(r"\d", "", p) for w in f["words"] for p in LEXICON[w].split()]
        assert row.phones.split() == want
        assert row.num_samples == f["num_samples"] and row.source_rate == 16000
    _check_audio_columns(df)


def test_librispeech_cmudict_stress_and_default_subsets(tmp_path):
    make_librispeech(tmp_path)
    lex = write_lexicon(tmp_path / "cmudict.dict", style="cmudict")
    df = run_adapter("librispeech", str(tmp_path / "LibriSpeech"), str(tmp_path / "m.tsv"),
                     {"lexicon": str(lex), "keep_stress": True})
    assert set(df["subset"]) == {"train-clean-100", "dev-clean", "test-clean"}  # the default subsets
    assert df["text"].str.contains("the").any()  # THE has a second pronunciation THE(1) in the file
    for row in df.itertuples():  # first pronunciation, stress digits kept
        assert row.phones == " ".join(LEXICON[w.upper()] for w in row.text.split())


def test_librispeech_espeak_g2p_matches_per_utterance_call(tmp_path):
    make_librispeech(tmp_path)
    df = run_adapter("librispeech", str(tmp_path), str(tmp_path / "m.tsv"), {"jobs": 2})
    assert (df["phones"] != "").all()
    for row in df.itertuples():
        assert row.phones == ipa_phones(row.text)


def test_espeak_batches_long_lines_like_single_calls():
    long = " ".join(["the old man found a red box near the river"] * 8)  # 80 words: chunked
    texts = ["hello world", "", long, "don't stop"]
    got = espeak_phones(texts)
    assert got[1] == "" and got[0] == ipa_phones("hello world") and got[3] == ipa_phones("don't stop")
    assert got[2].split() == (ipa_phones(" ".join(long.split()[:60])) + " "
                              + ipa_phones(" ".join(long.split()[60:]))).split()


def test_librispeech_oov(tmp_path):
    make_librispeech(tmp_path)
    lex = tmp_path / "lex.txt"
    lex.write_text("".join(f"{w}\t{p}\n" for w, p in LEXICON.items() if w != "DON'T"))
    with pytest.raises(CorpusError, match=r"not in the lexicon.*\"DON'T\""):
        run_adapter("librispeech", str(tmp_path), str(tmp_path / "m.tsv"), {"lexicon": str(lex)})
    df = run_adapter("librispeech", str(tmp_path), str(tmp_path / "m.tsv"), {"lexicon": str(lex), "oov": "empty"})
    has = df["text"].str.split().apply(lambda ws: "don't" in ws)
    assert has.any() and (df.loc[has, "phones"] == "").all() and (df.loc[~has, "phones"] != "").all()


def test_librispeech_layout_errors(tmp_path):
    facts = make_librispeech(tmp_path)
    out = str(tmp_path / "m.tsv")
    with pytest.raises(CorpusError, match="train-clean-360.*not found"):
        run_adapter("librispeech", str(tmp_path), out, {"subsets": {"train": ["train-clean-360x"]}})
    utt = next(u for u, f in facts.items() if f["subset"] == "dev-clean")
    flac = facts[utt]["path"]
    flac.rename(flac.with_suffix(".bak"))
    with pytest.raises(CorpusError, match=f"{utt}.flac: audio not found"):
        run_adapter("librispeech", str(tmp_path), out, {"phones": "none"})
    flac.with_suffix(".bak").rename(flac)
    shutil.copy(flac, flac.with_name("84-121123-0099.flac"))
    with pytest.raises(CorpusError, match="without a line in 84-121123.trans.txt.*0099"):
        run_adapter("librispeech", str(tmp_path), out, {"phones": "none"})
    flac.with_name("84-121123-0099.flac").unlink()
    (flac.parent / "84-121123.trans.txt").unlink()
    with pytest.raises(CorpusError, match="84-121123.trans.txt: transcript file not found"):
        run_adapter("librispeech", str(tmp_path), out, {"phones": "none"})
    with pytest.raises(ValueError, match="more than one split"):
        run_adapter("librispeech", str(tmp_path), out, {"subsets": {"train": ["dev-clean"], "dev": ["dev-clean"]}})
    assert not (tmp_path / "m.tsv").exists()  # nothing half-written


# ------------------------------------------------------------------ Speech Commands
def test_speech_commands_superb_classes_and_silence(tmp_path):
    root = tmp_path / "speech_commands_v0.01"
    splits = make_speech_commands(root)
    df = run_adapter("speech_commands", str(root), str(tmp_path / "ks" / "manifest.tsv"))
    speech = df[df["keyword"] != "_silence_"]
    assert len(speech) == len(splits)
    by_path = {r.path.split("speech_commands_v0.01/")[1]: r for r in speech.itertuples()}
    for rel, split in splits.items():
        row = by_path[rel]
        word = rel.split("/")[0]
        assert row.split == split and row.text == word and row.speaker == rel.split("/")[1].split("_")[0]
        assert row.keyword == (word if word not in ("bed", "marvin") else "_unknown_")
    assert sorted(set(df["keyword"])) == sorted([*SC_SPEECH][:10] + ["_unknown_", "_silence_"])
    silence = df[df["keyword"] == "_silence_"]
    assert (silence["path"].str.startswith(str(tmp_path / "ks" / "wav" / "_silence_"))).all()
    order = {"train": 0, "dev": 1, "test": 2}
    for name, seconds in SC_BACKGROUND.items():
        stem = name[:-4]
        rows = silence[silence["utt_id"].str.startswith(f"sc-silence-{stem}-")].sort_values("utt_id")
        assert len(rows) == int(seconds) and (rows["num_samples"] == 16000).all()
        ranks = [order[s] for s in rows["split"]]
        assert ranks == sorted(ranks) and ranks[0] == 0  # contiguous by position: no second in two splits
        source = load_audio(root / "_background_noise_" / name)
        k = 1
        np.testing.assert_allclose(load_audio(rows["path"].iloc[k]), source[k * 16000:(k + 1) * 16000], atol=1e-4)
    _check_audio_columns(df)


def test_speech_commands_separate_test_set(tmp_path, caplog):
    root = tmp_path / "train"
    splits = make_speech_commands(root)
    labels = make_sc_test_set(tmp_path / "test")
    with caplog.at_level(logging.INFO):
        df = run_adapter("speech_commands", str(root), str(tmp_path / "m.tsv"),
                         {"test_dir": str(tmp_path / "test"), "output_dir": str(tmp_path / "slices")})
    assert f"{sum(s == 'test' for s in splits.values())} testing_list.txt clips left out" in caplog.text
    test = df[df["split"] == "test"]
    assert len(test) == len(labels) and test["path"].str.startswith(str(tmp_path / "test")).all()
    got = {p.split("/test/")[1]: k for p, k in zip(test["path"], test["keyword"], strict=True)}
    assert got == labels
    unknown = test[test["keyword"] == "_unknown_"]
    assert set(unknown["text"]) == {"bed", "tree"} and set(unknown["speaker"]) == {"9f1ac2b4", "3c8f1ad0"}
    assert not df[(df["keyword"] == "_silence_") & (df["split"] != "test")]["path"].str.contains("/test/").any()


def test_speech_commands_errors(tmp_path):
    root = tmp_path / "sc"
    make_speech_commands(root)
    (root / "validation_list.txt").write_text("yes/ffffffff_nohash_0.wav\n")
    with pytest.raises(CorpusError, match="validation_list.txt: 1 listed file.*yes/ffffffff_nohash_0.wav"):
        run_adapter("speech_commands", str(root), str(tmp_path / "m.tsv"))
    (root / "validation_list.txt").unlink()
    with pytest.raises(CorpusError, match="validation_list.txt: file not found"):
        run_adapter("speech_commands", str(root), str(tmp_path / "m.tsv"))


# ------------------------------------------------------------------ Fluent Speech Commands
def test_fluent_speech_commands(tmp_path):
    rows = make_fsc(tmp_path)
    df = run_adapter("fluent_speech_commands", str(tmp_path), str(tmp_path / "m.tsv"))
    assert len(df) == len(rows)
    got = {r.path: r for r in df.itertuples()}
    for want in rows:
        row = got[str(want["path"])]
        assert (row.split, row.speaker, row.intent) == (want["split"], want["speaker"], want["intent"])
    assert got[str(rows[0]["path"])].text == "turn on the lights in the kitchen"
    assert "change language|Chinese|none" in set(df["intent"])  # the synthetic corpus's INTENTS format
    _check_audio_columns(df)


def test_fluent_speech_commands_errors(tmp_path):
    rows = make_fsc(tmp_path)
    rows[3]["path"].unlink()
    with pytest.raises(CorpusError, match=rf"{rows[3]['path'].name}: audio not found .*valid_data.csv"):
        run_adapter("fluent_speech_commands", str(tmp_path), str(tmp_path / "m.tsv"))
    write_audio(rows[3]["path"], 0.5)
    csv = tmp_path / "fluent_speech_commands_dataset" / "data" / "test_data.csv"
    csv.write_text(csv.read_text().replace(",location", ",place"))
    with pytest.raises(CorpusError, match=r"test_data.csv: missing column\(s\) \['location'\]"):
        run_adapter("fluent_speech_commands", str(tmp_path / "fluent_speech_commands_dataset"), str(tmp_path / "m"))


# ------------------------------------------------------------------ VoxCeleb1
def test_voxceleb1_identification_split(tmp_path, caplog):
    lines = make_voxceleb1(tmp_path)
    write_audio(tmp_path / "wav" / "id10003" / "abc" / "00001.wav", 0.5)  # on disk, not in the split file
    with caplog.at_level(logging.WARNING):
        df = run_adapter("voxceleb1", str(tmp_path), str(tmp_path / "m.tsv"))
    assert "1 WAV file(s)" in caplog.text and "id10003/abc/00001.wav" in caplog.text
    assert len(df) == len(lines)
    code = {"1": "train", "2": "dev", "3": "test"}
    got = {r.path: r for r in df.itertuples()}
    for c, rel in lines:
        row = got[str(tmp_path / "wav" / rel)]
        assert row.split == code[c] and row.speaker == rel.split("/")[0]
    (tmp_path / "wav" / lines[2][1]).unlink()
    with pytest.raises(CorpusError, match="7gWzIy6yIIk/00001.wav: audio not found .*line 3"):
        run_adapter("voxceleb1", str(tmp_path), str(tmp_path / "m.tsv"))


# ------------------------------------------------------------------ IEMOCAP
@pytest.mark.parametrize("test_session", [1, 4])
def test_iemocap_leave_one_session_out(tmp_path, test_session):
    facts = make_iemocap(tmp_path)
    df = run_adapter("iemocap", str(tmp_path), str(tmp_path / "m.tsv"), {"test_session": test_session})
    kept = {u: f for u, f in facts.items() if f["label"] in ("neu", "hap", "exc", "ang", "sad")}
    assert set(df["utt_id"]) == set(kept)
    assert set(df["style"]) == {"neu", "hap", "ang", "sad"}
    for row in df.itertuples():
        f = kept[row.utt_id]
        assert row.style == ("hap" if f["label"] == "exc" else f["label"])
        assert row.speaker == f["speaker"] and row.text == f["text"]
        assert (row.split == "test") == (f["session"] == test_session)
    train_pool = df[df["split"] != "test"]
    for label, group in train_pool.groupby("style"):
        assert (group["split"] == "dev").sum() == round(0.2 * len(group)), label
    again = run_adapter("iemocap", str(tmp_path), str(tmp_path / "m2.tsv"), {"test_session": test_session})
    assert again.equals(df)
    other = run_adapter("iemocap", str(tmp_path), str(tmp_path / "m3.tsv"), {"test_session": test_session, "seed": 5})
    assert set(other[other.split == "dev"]["utt_id"]) != set(df[df.split == "dev"]["utt_id"])


def test_iemocap_errors(tmp_path):
    facts = make_iemocap(tmp_path)
    with pytest.raises(ValueError, match="test_session must be 1..5"):
        run_adapter("iemocap", str(tmp_path), str(tmp_path / "m.tsv"), {"test_session": 6})
    utt = next(u for u, f in facts.items() if f["label"] == "sad" and f["session"] == 3)
    wav = next((tmp_path / "IEMOCAP_full_release" / "Session3").rglob(f"{utt}.wav"))
    wav.unlink()
    with pytest.raises(CorpusError, match=f"{utt}.wav: audio not found"):
        run_adapter("iemocap", str(tmp_path), str(tmp_path / "m.tsv"))
    shutil.rmtree(tmp_path / "IEMOCAP_full_release" / "Session5")
    with pytest.raises(CorpusError, match="Session5: directory not found"):
        run_adapter("iemocap", str(tmp_path), str(tmp_path / "m.tsv"))


# ------------------------------------------------------------------ MUSAN
def test_musan_noise_manifest(tmp_path):
    facts = make_musan(tmp_path)
    df = run_adapter("musan", str(tmp_path), str(tmp_path / "m.tsv"))
    assert len(df) == len(facts) and (df["split"] == "train").all()
    for row in df.itertuples():
        f = facts[row.utt_id.removeprefix("musan-")]
        assert (row.type, row.source) == (f["type"], f["source"])
        assert (row.genres, row.vocals) == (f.get("genres", ""), f.get("vocals", ""))
    only = run_adapter("musan", str(tmp_path / "musan"), str(tmp_path / "n.tsv"), {"parts": ["noise"]})
    assert set(only["type"]) == {"noise"}
    _check_audio_columns(df)


# ------------------------------------------------------------------ generic TSV
def test_tsv_import_resolves_paths_and_resamples(tmp_path):
    write_audio(tmp_path / "audio" / "a.wav", 0.5, sr=44100, channels=2)
    write_audio(tmp_path / "audio" / "sub" / "b.flac", 0.7, sr=8000, fmt="FLAC")
    absolute = write_audio(tmp_path / "elsewhere" / "c.wav", 0.4)
    (tmp_path / "list.tsv").write_text(
        "path\tsplit\tspeaker\tkeyword\tintent\n"
        "audio/a.wav\ttrain\tspk1\tyes\t\n"
        f"audio/sub/b.flac\tdev\tspk2\t\tbring|socks|none\n"
        f"{absolute}\ttest\tspk1\tno\t\n")
    df = run_adapter("tsv", str(tmp_path), str(tmp_path / "m.tsv"), {"tsv": "list.tsv"})
    got = {r.utt_id: r for r in df.itertuples()}
    assert set(got) >= {"audio-a", "audio-sub-b"}
    a, b = got["audio-a"], got["audio-sub-b"]
    assert a.path == str(tmp_path / "audio" / "a.wav") and a.source_rate == 44100 and a.keyword == "yes"
    assert b.source_rate == 8000 and b.intent == "bring|socks|none" and b.split == "dev"
    for row in df.itertuples():
        assert row.num_samples == len(load_audio(row.path))


def test_tsv_validation(tmp_path):
    write_audio(tmp_path / "x.wav", 0.5)
    table = tmp_path / "manifest.tsv"
    run = lambda **o: run_adapter("tsv", str(tmp_path), str(tmp_path / "out.tsv"), o)  # noqa: E731
    table.write_text("path\tsplit\temotion\nx.wav\ttrain\thap\n")
    with pytest.raises(CorpusError, match=r"unknown column\(s\) \['emotion'\]"):
        run()
    assert run(keep_extra=True)["emotion"].tolist() == ["hap"]
    table.write_text("path\nx.wav\n")
    with pytest.raises(CorpusError, match="no 'split' column"):
        run()
    assert run(split="test")["split"].tolist() == ["test"]
    table.write_text("path\tsplit\nx.wav\tvalid\n")
    with pytest.raises(CorpusError, match="line 2: split 'valid'"):
        run()
    table.write_text("path\tsplit\nx.wav\ttrain\nmissing.wav\ttrain\n")
    with pytest.raises(CorpusError, match="missing.wav: audio not found .line 3"):
        run()


def test_tsv_accepts_the_pipelines_own_manifest_columns_that_agree(tmp_path):
    """A manifest written by the pipeline (num_samples at 16 kHz, sample_rate 16000, source_rate) imports as itself;
    one written by another tool with each file's own rate and frame count is accepted too."""
    write_audio(tmp_path / "a.wav", 0.5, sr=44100, channels=2)
    write_audio(tmp_path / "b.flac", 0.7, sr=8000, fmt="FLAC")
    write_audio(tmp_path / "c.wav", 0.4)
    (tmp_path / "list.tsv").write_text("path\tsplit\tkeyword\na.wav\ttrain\tyes\nb.flac\tdev\t\nc.wav\ttest\tno\n")
    first = run_adapter("tsv", str(tmp_path), str(tmp_path / "m.tsv"), {"tsv": "list.tsv"})
    again = run_adapter("tsv", str(tmp_path), str(tmp_path / "again.tsv"), {"tsv": "m.tsv"})
    pd.testing.assert_frame_equal(again, first)
    (tmp_path / "other.tsv").write_text("path\tsplit\tnum_samples\tsample_rate\n"
                                        "a.wav\ttrain\t22050\t44100\nb.flac\tdev\t5600\t8000\nc.wav\ttest\t\t\n")
    other = run_adapter("tsv", str(tmp_path), str(tmp_path / "o.tsv"), {"tsv": "other.tsv"})
    assert other[["num_samples", "sample_rate", "source_rate"]].values.tolist() == \
        first[["num_samples", "sample_rate", "source_rate"]].values.tolist()


@pytest.mark.parametrize("columns, values, problem", [
    ("source_rate", "16000", "source_rate 16000, but the file is at 8000 Hz"),
    ("sample_rate", "22050", "sample_rate 22050, but the file is at 8000 Hz"),
    ("num_samples", "4000", "num_samples 4000, but the file holds 8000 samples at 16000 Hz"),
    ("num_samples\tsample_rate", "8000\t8000", "num_samples 8000, but the file holds 4000 samples at 8000 Hz"),
    ("sample_rate", "16 kHz", "sample_rate '16 kHz' is not a positive whole number"),
])
def test_tsv_stops_at_the_line_whose_listed_columns_disagree_with_the_header(tmp_path, columns, values, problem):
    write_audio(tmp_path / "ok.wav", 0.5)
    write_audio(tmp_path / "low.wav", 0.5, sr=8000)
    blank = "\t".join("" for _ in columns.split("\t"))
    (tmp_path / "manifest.tsv").write_text(f"path\tsplit\t{columns}\nok.wav\ttrain\t{blank}\n"
                                           f"low.wav\ttrain\t{values}\n")
    out = tmp_path / "out.tsv"
    with pytest.raises(CorpusError, match=rf"manifest.tsv: line 3: .*{re.escape(problem)}"):
        run_adapter("tsv", str(tmp_path), str(out))
    assert not out.exists()


def test_bad_audio_is_an_error_or_skipped_loudly(tmp_path):
    write_audio(tmp_path / "good.wav", 0.5)
    (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    write_audio(tmp_path / "short.wav", 0.01)  # 160 samples
    (tmp_path / "manifest.tsv").write_text("path\tsplit\ngood.wav\ttrain\nbroken.wav\ttrain\nshort.wav\ttrain\n")
    out = tmp_path / "out" / "m.tsv"
    with pytest.raises(AudioError, match="broken.wav: not readable"):
        run_adapter("tsv", str(tmp_path), str(out))
    assert not out.exists()
    df = run_adapter("tsv", str(tmp_path), str(out), {"on_bad_audio": "skip"})
    assert df["utt_id"].tolist() == ["good"]
    rejects = pd.read_csv(rejects_path(out), sep="\t")
    assert rejects.set_index("utt_id")["reason"].to_dict() == {"broken": "unreadable", "short": "too_short"}


def test_prepare_corpus_cli(tmp_path):
    make_voxceleb1(tmp_path / "vox")
    out = tmp_path / "m.tsv"
    assert cli_main(["prepare-corpus", "--adapter", "voxceleb1", "--corpus-dir", str(tmp_path / "vox"),
                     "--manifest-out", str(out), "--options", json.dumps({"on_bad_audio": "error"})]) == 0
    assert len(read_manifest(out)) == 7
    with pytest.raises(ValueError, match="unknown option"):
        cli_main(["prepare-corpus", "--adapter", "voxceleb1", "--corpus-dir", str(tmp_path / "vox"),
                  "--manifest-out", str(out), "--options", '{"splitfile": "x"}'])
