# Distill speech foundation models through a feature cache: corpus -> views -> teacher cache ->
# students -> downstream scores -> report. All logic lives in the `pipeline` package.
from snakemake.utils import min_version

min_version("9.0")


# `--configfile other.yaml` replaces the embedded default instead of merging into it, so a paper-scale
# config never inherits the default's teachers and students.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/corpus.smk"
include: "workflow/rules/views.smk"
include: "workflow/rules/cache.smk"
include: "workflow/rules/distill.smk"
include: "workflow/rules/downstream.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
