# Config validation, wildcard constraints and input functions shared by the stage files.
import os

from pipeline.config import validate_config
from pipeline.workflow import CONDITIONS, REPORT_FILES, Layout

validate_config(config)
L = Layout(config)
CONFIG_FILE = L.write_resolved()


wildcard_constraints:
    corpus=L.regex(L.corpora),
    view="clean|indomain|ood",
    teacher=L.regex(config["teachers"]),
    student=L.regex(config["students"]),
    upstream=L.regex([*config["teachers"], *config["students"]]),
    task=L.regex(config["downstream"]["tasks"]),
    condition="clean|indomain|ood|real",
    shard=r"\d+",


def all_outputs():
    return L.all_outputs()


def condition_index(wildcards):
    corpus, view = CONDITIONS[wildcards.condition]
    return {"features": L.feature_index(wildcards.upstream, corpus, view), "manifest": L.manifest(corpus)}


def student_inputs(wildcards):
    spec = config["students"][wildcards.student]
    return {
        "manifest": L.manifest("synthetic"),
        "audio": L.view_index("synthetic", spec["input_view"]),
        "targets": L.feature_index(spec["teacher"], "synthetic", spec["target_view"]),
    }


def view_banks(wildcards):
    return [] if wildcards.view == "clean" else [L.bank("rir"), L.bank("noise")]
