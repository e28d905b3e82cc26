"""Tiny corpora in the exact layouts and file formats of the real ones, written with soundfile.

Each builder returns what a correct adapter must find, so tests compare against the fixture's own record
rather than against hard-coded counts.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def write_audio(path: Path, seconds: float, sr: int = SR, channels: int = 1, fmt: str = "WAV") -> Path:
    """A short noise burst (seeded by the path) as 16-bit PCM WAV or FLAC."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(str(path.name).encode()))
    data = (rng.standard_normal((int(seconds * sr), channels)) * 0.1).astype(np.float32)
    sf.write(str(path), data if channels > 1 else data[:, 0], sr, subtype="PCM_16", format=fmt)
    return path


# ---------------------------------------------------------------- LibriSpeech
LS_WORDS = ["HELLO", "WORLD", "GO", "DO", "YOU", "HEAR", "THE", "RED", "BOX", "DON'T", "STOP"]
LEXICON = {"HELLO": "HH AH0 L OW1", "WORLD": "W ER1 L D", "GO": "G OW1", "DO": "D UW1", "YOU": "Y UW1",
           "HEAR": "HH IY1 R", "THE": "DH AH0", "RED": "R EH1 D", "BOX": "B AA1 K S", "DON'T": "D OW1 N T",
           "STOP": "S T AA1 P"}
LS_SUBSETS = {"train-clean-100": [("19", "198", 2), ("28", "495", 1)], "train-clean-360": [("100", "121669", 2)],
              "train-other-500": [("1006", "135212", 1)], "dev-clean": [("84", "121123", 2)],
              "test-clean": [("1089", "134686", 1)]}


def make_librispeech(root: Path, subsets: dict | None = None) -> dict[str, dict]:
    """<root>/LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac + .trans.txt; utt -> facts."""
    out = {}
    for subset, chapters in (subsets or LS_SUBSETS).items():
        for spk, chapter, n in chapters:
            folder = root / "LibriSpeech" / subset / spk / chapter
            lines = []
            for i in range(n):
                utt = f"{spk}-{chapter}-{i:04d}"
                words = [LS_WORDS[(int(spk) + i + k) % len(LS_WORDS)] for k in range(2 + i)]
                seconds = 0.3 + 0.1 * i
                write_audio(folder / f"{utt}.flac", seconds, fmt="FLAC")
                lines.append(f"{utt} {' '.join(words)}")
                out[utt] = {"subset": subset, "speaker": spk, "words": words, "num_samples": int(seconds * SR),
                            "path": folder / f"{utt}.flac"}
            (folder / f"{spk}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return out


def write_lexicon(path: Path, style: str = "librispeech") -> Path:
    """librispeech-lexicon.txt (WORD<TAB>phones) or CMUdict (comments, two spaces, WORD(1) variants)."""
    if style == "librispeech":
        text = "".join(f"{w}\t{p}\n" for w, p in LEXICON.items())
    else:
        text = ";;; # CMUdict -- Major Version: 0.07\n" + "".join(
            f"{w}  {p}\n" + (f"{w}(1)  AH0 AH0\n" if w == "THE" else "") for w, p in LEXICON.items())
    path.write_text(text)
    return path


# ---------------------------------------------------------------- Speech Commands v0.01
SC_SPEECH = {w: ["0a7c2a8d", "0c40e715", "1b4c9b89"] for w in
             ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "bed", "marvin"]}
SC_BACKGROUND = {"white_noise.wav": 5.5, "running_tap.wav": 3.2}


def make_speech_commands(root: Path) -> dict[str, str]:
    """speech_commands_v0.01 layout; returns relative path -> split by the lists ('train' otherwise)."""
    splits = {}
    for word, hashes in SC_SPEECH.items():
        for k, h in enumerate(hashes):
            rel = f"{word}/{h}_nohash_{k % 2}.wav"
            write_audio(root / rel, 1.0 if k else 0.8)
            splits[rel] = ["train", "dev", "test"][k]
    (root / "validation_list.txt").write_text("".join(r + "\n" for r, s in splits.items() if s == "dev"))
    (root / "testing_list.txt").write_text("".join(r + "\n" for r, s in splits.items() if s == "test"))
    for name, seconds in SC_BACKGROUND.items():
        write_audio(root / "_background_noise_" / name, seconds)
    (root / "_background_noise_" / "README.md").write_text("background noise files\n")
    (root / "LICENSE").write_text("CC-BY-4.0\n")
    return splits


def make_sc_test_set(root: Path) -> dict[str, str]:
    """speech_commands_test_set_v0.01 layout; returns relative path -> keyword class."""
    labels = {}
    for word in ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]:
        rel = f"{word}/9f1ac2b4_nohash_0.wav"
        labels[rel] = word
    labels["_unknown_/bed_9f1ac2b4_nohash_1.wav"] = "_unknown_"
    labels["_unknown_/tree_3c8f1ad0_nohash_0.wav"] = "_unknown_"
    labels["_silence_/1a2b3c4d_nohash_0.wav"] = "_silence_"
    for rel in labels:
        write_audio(root / rel, 1.0)
    return labels


# ---------------------------------------------------------------- Fluent Speech Commands
FSC_ROWS = [
    ("train", "2BqVo8kVB2Skwgyb", "Turn on the lights in the kitchen.", "activate", "lights", "kitchen"),
    ("train", "2BqVo8kVB2Skwgyb", "Switch to Chinese", "change language", "Chinese", "none"),
    ("train", "4aGjX3AG5xcxeL7a", "Volume up", "increase", "volume", "none"),
    ("dev", "7B4XmNppyrCK977p", "Bring me my socks", "bring", "socks", "none"),
    ("test", "Ze7YenyZvxiB4MYZ", "Turn the heat down in the bedroom", "decrease", "heat", "bedroom"),
    ("test", "Ze7YenyZvxiB4MYZ", "Lights off", "deactivate", "lights", "none"),
]


def make_fsc(root: Path) -> list[dict]:
    """fluent_speech_commands_dataset/{data/*_data.csv, wavs/speakers/<spk>/<uuid>.wav}; returns the rows."""
    ds = root / "fluent_speech_commands_dataset"
    files = {"train": "train_data.csv", "dev": "valid_data.csv", "test": "test_data.csv"}
    out, lines = [], {s: [",path,speakerId,transcription,action,object,location"] for s in files}
    for i, (split, spk, text, action, obj, loc) in enumerate(FSC_ROWS):
        rel = f"wavs/speakers/{spk}/{i:08x}-4474-11e9-a9a5-5dbec3b8816a.wav"
        write_audio(ds / rel, 0.5)
        quoted = f'"{text}"' if "," in text else text
        lines[split].append(f"{len(lines[split]) - 1},{rel},{spk},{quoted},{action},{obj},{loc}")
        out.append({"split": split, "path": ds / rel, "speaker": spk, "intent": f"{action}|{obj}|{loc}"})
    (ds / "data").mkdir(parents=True, exist_ok=True)
    for split, name in files.items():
        (ds / "data" / name).write_text("\n".join(lines[split]) + "\n")
    return out


# ---------------------------------------------------------------- VoxCeleb1
VOX = [("1", "id10001/1zcIwhmdeo4/00001.wav"), ("1", "id10001/1zcIwhmdeo4/00002.wav"),
       ("2", "id10001/7gWzIy6yIIk/00001.wav"), ("3", "id10001/J9lHsKG98U8/00001.wav"),
       ("1", "id10002/6WO410QOeuo/00001.wav"), ("2", "id10002/C7k7C-PDvAA/00001.wav"),
       ("3", "id10002/xTV-jFAUKcw/00001.wav")]


def make_voxceleb1(root: Path) -> list[tuple[str, str]]:
    """<root>/wav/<id>/<video>/<n>.wav + iden_split.txt; returns the (code, path) lines."""
    for _, rel in VOX:
        write_audio(root / "wav" / rel, 0.6)
    (root / "iden_split.txt").write_text("".join(f"{c} {r}\n" for c, r in VOX))
    return VOX


# ---------------------------------------------------------------- IEMOCAP
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
IEMO_LABELS = ["neu", "hap", "exc", "ang", "sad", "fru", "xxx", "neu", "sad", "ang"]


def make_iemocap(root: Path) -> dict[str, dict]:
    """IEMOCAP_full_release/Session1..5 with EmoEvaluation, transcriptions and sentences/wav; utt -> facts."""
    out = {}
    base = root / "IEMOCAP_full_release"
    for s in range(1, 6):
        session = base / f"Session{s}"
        for dialog in (f"Ses0{s}F_impro01", f"Ses0{s}M_script01_1"):
            turns, transcript = [], []
            for i, label in enumerate(IEMO_LABELS):
                gender = "FM"[i % 2]
                utt = f"{dialog}_{gender}{i:03d}"
                start, end = 1.5 * i + 0.25, 1.5 * i + 1.1
                turns.append(f"[{start:.4f} - {end:.4f}]\t{utt}\t{label}\t[2.5000, 3.0000, 2.5000]\n"
                             f"C-E2:\tNeutral;\t()\nA-E3:\tval 3; act 2; dom  2;\t()\n\n")
                transcript.append(f"{utt} [{start:08.4f}-{end:08.4f}]: Sentence {DIGITS[i]}, okay?")
                write_audio(session / "sentences" / "wav" / dialog / f"{utt}.wav", 0.3)
                out[utt] = {"session": s, "label": label, "speaker": f"Ses0{s}{gender}",
                            "text": f"sentence {DIGITS[i]} okay"}
            evaluation = session / "dialog" / "EmoEvaluation"
            evaluation.mkdir(parents=True, exist_ok=True)
            (evaluation / f"{dialog}.txt").write_text("% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
                                                     + "".join(turns))
            (evaluation / f"._{dialog}.txt").write_bytes(b"\x00\x05\x16\x07 mac resource fork")
            (evaluation / "Categorical").mkdir(exist_ok=True)
            trans = session / "dialog" / "transcriptions"
            trans.mkdir(parents=True, exist_ok=True)
            (trans / f"{dialog}.txt").write_text("\n".join(transcript) + "\n")
    return out


# ---------------------------------------------------------------- MUSAN
MUSAN = {"noise": {"free-sound": 3, "sound-bible": 2}, "music": {"fma": 2, "hd-classical": 1},
         "speech": {"librivox": 2}}


def make_musan(root: Path, counts: dict | None = None) -> dict[str, dict]:
    """musan/{noise,music,speech}/<source>/<type>-<source>-<nnnn>.wav + music ANNOTATIONS; stem -> facts."""
    out = {}
    for part, sources in (counts or MUSAN).items():
        for source, n in sources.items():
            notes = []
            for i in range(n):
                stem = f"{part}-{source}-{i:04d}"
                write_audio(root / "musan" / part / source / f"{stem}.wav", 1.5 + i % 3)
                out[stem] = {"type": part, "source": source}
                if part == "music":
                    notes.append(f"{stem} classical,romantic {'YN'[i % 2]} Frederic Chopin")
                    out[stem].update(genres="classical,romantic", vocals="YN"[i % 2])
            if notes:
                (root / "musan" / part / source / "ANNOTATIONS").write_text("\n".join(notes) + "\n")
    (root / "musan" / "README").write_text("MUSAN corpus\n")
    return out
