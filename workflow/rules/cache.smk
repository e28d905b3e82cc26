# Stage 1b: each teacher runs once per (corpus, view, shard); students are cached the same way for
# downstream evaluation. One writer per zarr shard; an index TSV per (upstream, corpus, view).


rule extract_teacher:
    input:
        L.view_store("{corpus}", "{view}", "{shard}"),
    output:
        directory(L.feature_store("{teacher}", "{corpus}", "{view}", "{shard}")),
    log:
        f"{L.root}/logs/extract/{{teacher}}-{{corpus}}-{{view}}-{{shard}}.log",
    benchmark:
        f"{L.root}/benchmarks/extract/{{teacher}}-{{corpus}}-{{view}}-{{shard}}.tsv"
    threads: 2
    resources:
        mem_mb=6000,
        runtime=240,
    params:
        config=CONFIG_FILE,
        spec=lambda w: config["teachers"][w.teacher],  # editing the teacher's entry reruns its extraction
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline extract --config {params.config} --upstream {wildcards.teacher} --audio {input} "
        "--out {output} --threads {threads} 2> {log}"


rule extract_student:
    input:
        audio=L.view_store("{corpus}", "{view}", "{shard}"),
        model=L.student("{student}"),
    output:
        directory(L.feature_store("{student}", "{corpus}", "{view}", "{shard}")),
    log:
        f"{L.root}/logs/extract/{{student}}-{{corpus}}-{{view}}-{{shard}}.log",
    benchmark:
        f"{L.root}/benchmarks/extract/{{student}}-{{corpus}}-{{view}}-{{shard}}.tsv"
    params:
        config=CONFIG_FILE,
        checkpoint=lambda w: L.student(w.student, ""),
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline extract --config {params.config} --upstream {wildcards.student} "
        "--audio {input.audio} --checkpoint {params.checkpoint} --out {output} --threads {threads} 2> {log}"


rule index_features:
    localrule: True
    input:
        lambda w: [L.feature_store(w.upstream, w.corpus, w.view, i) for i in range(L.num_shards(w.corpus))],
    output:
        L.feature_index("{upstream}", "{corpus}", "{view}"),
    log:
        f"{L.root}/logs/index_features/{{upstream}}-{{corpus}}-{{view}}.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline index --stores {input} --out {output} 2> {log}"
