# Stage 4: tables and figures regenerated from result files alone (score JSONs and the predictions beside them,
# student configs and curves, cache indexes and extraction benchmarks), then the self-contained HTML report
# (`snakemake --report`).


report: "../report/workflow.rst"


rule report:
    localrule: True
    input:
        **L.report_inputs(),
    output:
        [report_output(f) for f in REPORT_FILES],
    log:
        f"{L.root}/logs/report.log",
    params:
        config=CONFIG_FILE,
        out_dir=lambda w, output: os.path.dirname(output[0]),
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline report --scores {input.scores} --config {params.config} --out-dir {params.out_dir} "
        "2> {log}"


rule html_report:
    localrule: True
    input:
        [L.report(f) for f in REPORT_FILES],
    output:
        L.report("report.html"),
    log:
        f"{L.root}/logs/html_report.log",
    params:
        snakefile=workflow.main_snakefile,
        config=CONFIG_FILE,
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "snakemake -s {params.snakefile} --configfile {params.config} --replace-workflow-config --report {output} "
        "2> {log}"
