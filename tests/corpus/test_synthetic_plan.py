"""The utterance plan: deterministic, balanced, every class and every voice in every split."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.corpus.synthetic import build_plan, split_counts
from pipeline.corpus.text import INTENTS, KS_CLASSES, STYLES, ipa_phones, sentence_pool

CONFIG = Path(__file__).resolve().parents[2] / "config.yaml"


@pytest.fixture(scope="module")
def config():
    return yaml.safe_load(CONFIG.read_text())


@pytest.fixture(scope="module")
def plan(config):
    return build_plan(config)


def test_plan_is_deterministic_and_seeded(config, plan):
    assert build_plan(config) == plan
    other = {**config, "seed": config["seed"] + 1}
    assert build_plan(other) != plan


def test_counts_and_ids(config, plan):
    syn = config["corpus"]["synthetic"]
    families = Counter(u.family for u in plan)
    assert families == {"keyword": syn["keyword"], "command": syn["command"], "sentence": syn["sentence"]}
    assert [u.utt_id for u in plan] == [f"syn-{i:06d}" for i in range(len(plan))]


def test_keyword_classes_balanced_in_every_split(plan):
    kw = [u for u in plan if u.family == "keyword"]
    assert set(u.keyword for u in kw) == set(KS_CLASSES) and len(KS_CLASSES) == 12
    per_class = Counter(u.keyword for u in kw)
    assert max(per_class.values()) - min(per_class.values()) <= 1
    for split in ("train", "dev", "test"):
        assert {u.keyword for u in kw if u.split == split} == set(KS_CLASSES)


def test_commands_and_styles_balanced(plan):
    cmd = Counter(u.intent for u in plan if u.family == "command")
    assert set(cmd) == set(INTENTS) and max(cmd.values()) - min(cmd.values()) <= 1
    styles = Counter(u.style for u in plan if u.speaker)
    assert set(styles) == set(STYLES) and max(styles.values()) - min(styles.values()) <= 4
    assert all(u.style == "" and u.speaker == "" for u in plan if u.keyword == "_silence_")


def test_every_speaker_in_every_split(config, plan):
    speakers = {u.speaker for u in plan if u.speaker}
    assert len(speakers) == config["corpus"]["synthetic"]["voices"]
    for split in ("train", "dev", "test"):
        assert {u.speaker for u in plan if u.split == split and u.speaker} == speakers
    split_share = Counter(u.split for u in plan)
    assert abs(split_share["train"] / len(plan) - 0.7) < 0.05


def test_split_counts_exact_and_nonempty():
    rng = np.random.default_rng(0)
    assert sum(split_counts(17, [0.7, 0.15, 0.15], rng)) == 17
    assert min(split_counts(3, [0.7, 0.15, 0.15], rng)) == 1
    assert split_counts(10, [1, 0, 0], rng) == [10, 0, 0]


def test_sentence_pool_and_phones():
    pool = sentence_pool()
    assert len(set(pool)) >= 300
    assert all(set(s) <= set("abcdefghijklmnopqrstuvwxyz' ") for s in pool)
    phones = ipa_phones("choose the cheap chair").split()
    assert "tʃ" in phones and "ˈ" not in "".join(phones)
