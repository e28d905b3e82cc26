# Config validation, wildcard constraints and input functions shared by the stage files.
import os
from functools import partial

from pipeline.checks import check_config
from pipeline.distill.inputs import student_input_files, teacher_list, train_flags
from pipeline.export import HF_FILES, ONNX_FILE
from pipeline.workflow import CONDITIONS, REPORT_FILES, Layout, canonical

check_config(config)
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


def evaluate_inputs(upstream, wildcards):
    """Each task corpus's clean features (training) and the features and manifest of every scored condition."""
    sources = L.feature_sources(upstream)
    return {"features": [L.feature_index(upstream, corpus, view) for corpus, view in sources],
            "manifests": sorted({L.manifest(corpus) for corpus, _ in sources})}


def subset_manifest(wildcards):
    """The corpus manifest that says which utterances a teacher's view is extracted for (Layout.extraction_subset);
    nothing where it is extracted in full."""
    if L.extraction_subset(wildcards.teacher, wildcards.corpus, wildcards.view) is None:
        return []
    return L.manifest(wildcards.corpus)


def subset_flags(wildcards, input):
    """`python -m pipeline extract` flags for that subset: --subset-of, --splits, --labels."""
    subset = L.extraction_subset(wildcards.teacher, wildcards.corpus, wildcards.view)
    if subset is None:
        return ""
    splits = f" --splits {' '.join(subset['splits'])}" if subset["splits"] else ""
    return f"--subset-of {input.manifest}{splits} --labels {' '.join(subset['labels'])}"


def precomputed_features(wildcards):
    """The HDF5 file (or folder) a teacher of kind precomputed copies its features from; else nothing."""
    spec = config["teachers"][wildcards.teacher]
    return spec["path"] if spec["kind"] == "precomputed" else []


def report_output(name):
    """A report file, flagged for `snakemake --report` (tables as HTML pages, figures as PNGs; captions in
    workflow/report/, paths relative to workflow/rules/report.smk)."""
    stem, ext = os.path.splitext(name)
    if ext == ".html":
        return report(L.report(name), caption=f"../report/{stem}.rst", category="Tables", labels={"table": stem})
    if ext == ".png":
        return report(L.report(name), caption=f"../report/figure_{stem}.rst", category="Figures",
                      labels={"figure": stem})
    return L.report(name)


def student_inputs(wildcards):
    """What train-student reads for this student, by its method's needs (pipeline/distill/inputs.py), and the
    export that the teacher it starts from is, if it is a student's (a student as teacher)."""
    files = student_input_files(config, L, wildcards.student)
    return files | {"init": L.teacher_files(config["students"][wildcards.student].get("init"))}


def card_teachers(wildcards):
    """The entries of a student's teachers, as the model card names them (base_model: their hub ids)."""
    return canonical({t: config["teachers"][t] for t in teacher_list(config["students"][wildcards.student]["teacher"])})


def student_flags(wildcards):
    """The train-student flags naming those files."""
    return train_flags(student_input_files(config, L, wildcards.student))


def view_banks(wildcards):
    return [] if wildcards.view == "clean" else [L.bank("rir"), L.bank("noise")]
