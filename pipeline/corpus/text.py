"""Vocabularies, label sets and text templates of the synthetic corpus, plus espeak-ng IPA phones.

Phone tokenisation (`ipa_phones`): one token per espeak-ng phoneme as printed by
`espeak-ng -q --ipa --sep=_ -v en-us`, so multi-character phonemes (tʃ, dʒ, aɪ, oʊ, aɪə, ɜː) stay one
token; stress marks (ˈ ˌ) are dropped, length marks (ː) stay attached, word boundaries are not tokens.
"""

from __future__ import annotations

import functools
import itertools
import re
import shutil
import subprocess

import numpy as np

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
UNKNOWN, SILENCE = "_unknown_", "_silence_"
KS_CLASSES = [*DIGITS, UNKNOWN, SILENCE]
# Speech Commands' auxiliary words: what the SUPERB KS "_unknown_" class is made of.
UNKNOWN_WORDS = [
    "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "bed", "bird", "cat", "dog",
    "happy", "house", "marvin", "sheila", "tree", "wow", "backward", "forward", "follow", "learn", "visual",
]

# Prosody styles (emotion proxy): multipliers on speaking rate and pitch, and the top of the output
# peak-gain range (each clip draws 0.6-1.0 of it, so level alone overlaps between styles).
STYLES: dict[str, tuple[float, float, float]] = {
    "neutral": (1.00, 1.00, 0.55),
    "excited": (1.15, 1.20, 0.70),
    "sad": (0.80, 0.86, 0.40),
    "angry": (1.12, 1.05, 0.95),
}

# The 31 Fluent Speech Commands intents, "action|object|location".
INTENTS = [
    "activate|lamp|none", "activate|lights|bedroom", "activate|lights|kitchen", "activate|lights|none",
    "activate|lights|washroom", "activate|music|none", "bring|juice|none", "bring|newspaper|none",
    "bring|shoes|none", "bring|socks|none", "change language|Chinese|none", "change language|English|none",
    "change language|German|none", "change language|Korean|none", "change language|none|none",
    "deactivate|lamp|none", "deactivate|lights|bedroom", "deactivate|lights|kitchen",
    "deactivate|lights|none", "deactivate|lights|washroom", "deactivate|music|none",
    "decrease|heat|bedroom", "decrease|heat|kitchen", "decrease|heat|none", "decrease|heat|washroom",
    "decrease|volume|none", "increase|heat|bedroom", "increase|heat|kitchen", "increase|heat|none",
    "increase|heat|washroom", "increase|volume|none",
]
# Phrasings per action; {o} is the object, {l} " in the <location>" or "", {L} "<location> " or "".
_PHRASES = {
    "activate": ["turn on the {o}{l}", "switch on the {o}{l}", "switch the {L}{o} on", "{L}{o} on",
                 "please turn the {o} on{l}", "can you turn on the {L}{o}"],
    "deactivate": ["turn off the {o}{l}", "switch off the {o}{l}", "switch the {L}{o} off", "{L}{o} off",
                   "please turn the {o} off{l}", "can you turn off the {L}{o}"],
    "increase": ["turn up the {o}{l}", "increase the {o}{l}", "make it louder{l}", "more {o}{l}",
                 "turn the {L}{o} up", "i need more {o}{l}"],
    "decrease": ["turn down the {o}{l}", "decrease the {o}{l}", "lower the {L}{o}", "less {o}{l}",
                 "turn the {L}{o} down", "reduce the {o}{l}"],
    "bring": ["bring me the {o}", "get me the {o}", "fetch the {o}", "go get the {o}",
              "i need the {o}", "could you bring me my {o}"],
    "change language": ["change the language to {o}", "switch to {o}", "set the language to {o}",
                        "use {o}", "i want to use {o}", "language {o}"],
}
_NO_OBJECT_LANGUAGE = ["change the language", "switch the language", "change language",
                       "use a different language", "i want another language", "language settings"]

_SUBJECTS = ["the old man", "my sister", "a small dog", "the teacher", "our neighbour", "the children",
             "her friend", "the farmer", "a tall woman", "the driver", "his brother", "the doctor"]
_VERBS = ["found", "painted", "carried", "opened", "cleaned", "watched", "sold", "bought", "fixed",
          "dropped", "moved", "hid"]
_OBJECTS = ["the red box", "a wooden chair", "the front door", "an old map", "the blue car", "a heavy bag",
            "the kitchen window", "a new book", "the green bottle", "her sister's coat"]
_ENDINGS = ["", "yesterday", "this morning", "after lunch", "in the garden", "near the river",
            "before dinner", "last week", "at the station", "on sunday"]
_QUESTIONS = ["where did {s} put {o}", "why has {s} {v} {o}", "did {s} see {o} {e}", "who {v} {o} {e}"]


def command_text(intent: str, rng: np.random.Generator) -> str:
    """One spoken phrasing of a Fluent-Speech-Commands intent, chosen with `rng`."""
    action, obj, loc = intent.split("|")
    if action == "change language" and obj == "none":
        return str(rng.choice(_NO_OBJECT_LANGUAGE))
    phrases = _PHRASES[action]
    if obj not in ("volume", "music"):
        phrases = [p for p in phrases if p != "make it louder{l}"]
    template = str(rng.choice(phrases))
    where = "" if loc == "none" else f" in the {loc}"
    before = "" if loc == "none" else f"{loc} "
    return normalise_text(template.format(o=obj.lower(), l=where, L=before))


@functools.cache
def sentence_pool(size: int = 400) -> tuple[str, ...]:
    """A fixed pool of distinct short English sentences built from templates (seed-independent)."""
    out = [" ".join(p for p in (s, v, o, e) if p)
           for s, v, o, e in itertools.product(_SUBJECTS, _VERBS, _OBJECTS, _ENDINGS)]
    out += [q.format(s=s, v=v, o=o, e=e).strip()
            for q, s, v, o, e in itertools.product(_QUESTIONS, _SUBJECTS, _VERBS, _OBJECTS, _ENDINGS[:4])]
    order = np.random.default_rng(0).permutation(len(out))
    pool = list(dict.fromkeys(normalise_text(out[i]) for i in order))
    return tuple(pool[:size])


def normalise_text(text: str) -> str:
    """Lower-case; keep letters, apostrophes and single spaces (the ASR character set)."""
    text = re.sub(r"[^a-z' ]+", " ", text.lower())
    return re.sub(r" +", " ", text).strip()


@functools.lru_cache(maxsize=4096)
def ipa_phones(text: str) -> str:
    """Space-separated IPA phonemes of `text` from espeak-ng (en-us); tokenisation in the module doc."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng not found (needed for IPA phones): run scripts/bootstrap.sh")
    out = subprocess.run([exe, "-q", "--ipa", "--sep=_", "-v", "en-us", text],
                         capture_output=True, text=True, check=True).stdout
    tokens = re.split(r"[\s_]+", out.replace("ˈ", "").replace("ˌ", ""))
    return " ".join(t for t in tokens if t)
