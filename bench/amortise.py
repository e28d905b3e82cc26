"""Benchmark 5: teacher CPU-seconds for N students with the cache vs without, from measured per-second costs.

    without cache: T_without(N) = N * E * A * c_online    (every student runs the teacher on every crop)
    with cache:    T_with(N)    = A * c_extract           (one extraction pass, whatever N)
                   R_with(N)    = N * E * A * r_read      (cache reads by the students: not teacher time)
    ratio(N) = T_without / T_with = N * E * c_online / c_extract

c_online: teacher CPU-s per second of audio when it runs on the training crops inside the step
(benchmark 1's headline side, as an online run pays it; on whole utterances it would cost more);
c_extract: CPU-s per second of audio of the full extraction (teacher forward + store write, benchmark 2
or the cache build); r_read: data-loader CPU-s per second of cropped audio (benchmark 3b). E (epochs each
student trains) and A (seconds of audio) are inputs; the ratio does not depend on A.
"""

from __future__ import annotations

from typing import Any


def table(c_online: float, c_extract: float, r_read: float, epochs: float, audio_seconds: float,
          students: int = 10) -> dict[str, Any]:
    """Teacher CPU-seconds with and without the cache for N = 1..students."""
    rows = []
    for n in range(1, students + 1):
        without = n * epochs * audio_seconds * c_online
        with_cache = audio_seconds * c_extract
        rows.append({"students": n, "teacher_cpu_s_without_cache": without, "teacher_cpu_s_with_cache": with_cache,
                     "cache_read_cpu_s": n * epochs * audio_seconds * r_read, "ratio": without / with_cache})
    return {"formula": {"without": "N * E * A * c_online", "with": "A * c_extract",
                        "cache_reads": "N * E * A * r_read", "ratio": "N * E * c_online / c_extract"},
            "inputs": {"c_online_cpu_s_per_audio_s": c_online, "c_extract_cpu_s_per_audio_s": c_extract,
                       "r_read_cpu_s_per_audio_s": r_read, "epochs_per_student": epochs,
                       "audio_seconds": audio_seconds},
            "rows": rows}
