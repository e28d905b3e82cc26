"""The recipe benchmark's read-out: CPU seconds to reach a target cosine, interpolated between evaluations."""

from bench.student_recipe import cpu_to_reach


def test_cpu_to_reach_interpolates_between_evaluations():
    points = [{"cpu_seconds": 0.0, "dev_cos": 0.0}, {"cpu_seconds": 10.0, "dev_cos": 0.5},
              {"cpu_seconds": 20.0, "dev_cos": 0.7}]
    assert cpu_to_reach(points, 0.6) == 15.0
    assert cpu_to_reach(points, 0.5) == 10.0
    assert cpu_to_reach(points, 0.0) == 0.0
    assert cpu_to_reach(points, 0.71) is None
