# Stage 3: SUPERB-style heads on frozen, cached upstream features; one JSON per score.


rule train_head:
    input:
        features=L.feature_index("{upstream}", "synthetic", "clean"),
        manifest=L.manifest("synthetic"),
    output:
        L.head("{upstream}", "{task}"),
    log:
        f"{L.root}/logs/train_head/{{upstream}}-{{task}}.log",
    benchmark:
        f"{L.root}/benchmarks/train_head/{{upstream}}-{{task}}.tsv"
    params:
        config=CONFIG_FILE,
        seed=lambda w: config["downstream"]["tasks"][w.task].get("seeds", [0])[0],
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline train-head --config {params.config} --task {wildcards.task} "
        "--upstream {wildcards.upstream} --features {input.features} --manifest {input.manifest} "
        "--out {output} --seed {params.seed} 2> {log}"


rule score:
    input:
        unpack(condition_index),
        head=L.head("{upstream}", "{task}"),
    output:
        L.score("{upstream}", "{task}", "{condition}"),
    log:
        f"{L.root}/logs/score/{{upstream}}-{{task}}-{{condition}}.log",
    params:
        config=CONFIG_FILE,
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline score --config {params.config} --task {wildcards.task} "
        "--upstream {wildcards.upstream} --condition {wildcards.condition} --head {input.head} "
        "--features {input.features} --manifest {input.manifest} --out {output} 2> {log}"
