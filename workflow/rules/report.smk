# Stage 4: tables and figures regenerated from the score JSON files alone.


rule report:
    input:
        L.scores(),
    output:
        [L.report(f) for f in REPORT_FILES],
    log:
        f"{L.root}/logs/report.log",
    params:
        out_dir=lambda w, output: os.path.dirname(output[0]),
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline report --scores {input} --out-dir {params.out_dir} 2> {log}"
