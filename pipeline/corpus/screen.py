"""Where bad audio is caught, and what `corpus.on_bad_audio` (error | skip) does with it.

Audio is validated at two points, so every stage after a manifest can trust it:

1. When a manifest is prepared (the Asterisk preparation, a corpus adapter, or `screen-manifest`
   for a manifest written by hand): each file must be readable, non-empty, complete (not truncated),
   finite, and at least `pipeline.audio.io.MIN_SAMPLES` long at 16 kHz (the upstreams' receptive
   field). Adapters accept any rate and channel count (they record `source_rate`; audio is resampled
   and down-mixed on reading). With `error` the first bad file stops the preparation with a message
   naming it and the key; with `skip` the file is left out of the manifest and listed in
   `<manifest stem>.rejects.tsv` beside the manifest (utt_id, path, reason, detail). The rejects
   file is always written, header only when nothing was rejected, before the manifest.
2. Before extraction, when views are rendered (`pipeline.corpus.views.render_view_shard`): each file
   must be what its manifest row claims (rate, channels, length; `load_listed_audio`). A failure there
   is always an error whatever the policy: the manifest no longer describes its files, and dropping
   the utterance from one view would leave the other stages with a manifest they cannot satisfy.
   The message says to prepare (screen) the manifest again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from tqdm import tqdm

from pipeline.audio.io import AudioError, load_listed_audio
from pipeline.config import load_config
from pipeline.corpus.manifest import read_manifest, write_manifest

log = logging.getLogger(__name__)
POLICIES = ("error", "skip")
REJECT_COLUMNS = ["utt_id", "path", "reason", "detail"]
T = TypeVar("T")


def rejects_path(manifest: str | Path) -> Path:
    """The rejects list that belongs to a manifest: `<stem>.rejects.tsv` in the same directory."""
    manifest = Path(manifest)
    return manifest.with_name(f"{manifest.stem}.rejects.tsv")


class AudioScreen:
    """Apply the bad-audio policy while a manifest is prepared; collect what was left out."""

    def __init__(self, policy: str, manifest: str | Path) -> None:
        if policy not in POLICIES:
            raise ValueError(f"corpus.on_bad_audio: {policy!r} is not one of {POLICIES}")
        self.policy = policy
        self.manifest = Path(manifest)
        self.rejected: list[dict[str, str]] = []

    def admit(self, utt_id: str, path: str | Path, check: Callable[[], T]) -> T | None:
        """`check()`'s result, or None if it raised AudioError and the policy is skip (then recorded)."""
        try:
            return check()
        except AudioError as err:
            if self.policy == "error":
                raise AudioError(f"{err} [utterance {utt_id} of {self.manifest}; corpus.on_bad_audio is 'error': "
                                 f"set it to 'skip' to leave such files out and list them in "
                                 f"{rejects_path(self.manifest)}]", err.reason) from err
            log.warning("%s: left out %s: %s", self.manifest, utt_id, err)
            self.rejected.append({"utt_id": utt_id, "path": str(path), "reason": err.reason, "detail": str(err)})
            return None

    def write(self) -> Path:
        """Write the rejects list atomically (header only if nothing was rejected); returns its path."""
        out = rejects_path(self.manifest)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        try:
            pd.DataFrame(self.rejected, columns=REJECT_COLUMNS).to_csv(tmp, sep="\t", index=False)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
        if self.rejected:
            log.warning("%s: %d file(s) left out (corpus.on_bad_audio: skip), listed in %s",
                        self.manifest, len(self.rejected), out)
        return out


def read_rejects(manifest: str | Path) -> pd.DataFrame:
    """The rejects list of a manifest (empty frame if the manifest has none)."""
    path = rejects_path(manifest)
    if not path.exists():
        return pd.DataFrame(columns=REJECT_COLUMNS)
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def source_rate(row: Any) -> int | None:
    """A manifest row's `source_rate` (the file's own rate, recorded by adapters), or None if absent."""
    value = getattr(row, "source_rate", None) if not isinstance(row, dict) else row.get("source_rate")
    if value is None or (isinstance(value, str) and not value.strip()) or pd.isna(value):
        return None
    return int(value)


def screen_manifest(config: str, manifest: str, out: str) -> None:
    """Check every row's audio against the row (readable, complete, finite, long enough, rate and length as
    listed) and write the rows that pass to `out`, applying corpus.on_bad_audio; rejects beside `out`."""
    policy = load_config(config)["corpus"]["on_bad_audio"]
    df = read_manifest(manifest)
    screen = AudioScreen(policy, out)
    keep = []
    for row in tqdm(list(df.itertuples(index=False)), desc=f"screen {manifest}", unit="file", mininterval=5):
        ok = screen.admit(row.utt_id, row.path,
                          lambda r=row: load_listed_audio(r.path, int(r.num_samples), source_rate(r)))
        keep.append(ok is not None)
    screen.write()
    kept = df[keep]
    if kept.empty:
        raise AudioError(f"{manifest}: every one of its {len(df)} files was rejected (see {rejects_path(out)}); "
                         "check the paths and the audio", "empty")
    write_manifest(kept, out)
    log.info("%s: %d of %d rows kept -> %s", manifest, len(kept), len(df), out)
