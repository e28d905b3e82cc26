"""atomic_path: the target appears only when the write finished; a failed write leaves the old file and no temp."""

from __future__ import annotations

import pytest

from pipeline.atomic import atomic_path, write_text_atomic


def test_the_target_appears_only_after_the_block(tmp_path):
    out = tmp_path / "sub" / "score.json"
    with atomic_path(out) as tmp:
        tmp.write_text("{}")
        assert tmp.parent == out.parent and not out.exists()
    assert out.read_text() == "{}" and list(out.parent.iterdir()) == [out]


def test_a_failed_write_keeps_the_old_file_and_no_temp(tmp_path):
    out = tmp_path / "card.md"
    write_text_atomic(out, "old")
    with pytest.raises(OSError, match="disk full"), atomic_path(out, suffix=".npz") as tmp:
        assert tmp.name.endswith(".npz")
        tmp.write_text("half")
        raise OSError("disk full")
    assert out.read_text() == "old" and list(tmp_path.iterdir()) == [out]
