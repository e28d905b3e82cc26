# Stage 1a: noise and room banks, per-view distortion plans, and the rendered view audio shards.


rule rir_bank:
    output:
        L.bank("rir"),
    log:
        f"{L.root}/logs/rir_bank.log",
    benchmark:
        f"{L.root}/benchmarks/rir_bank.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        config=CONFIG_FILE,
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline rir-bank --config {params.config} --out {output} 2> {log}"


rule noise_bank:
    input:
        **L.noise_inputs(),
    output:
        L.bank("noise"),
    log:
        f"{L.root}/logs/noise_bank.log",
    benchmark:
        f"{L.root}/benchmarks/noise_bank.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        config=CONFIG_FILE,
        musan=lambda w, input: f"--musan {input.musan}" if "musan" in input.keys() else "",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline noise-bank --config {params.config} --manifest {input.babble} {params.musan} "
        "--out {output} 2> {log}"


rule view_plan:
    localrule: True
    input:
        lambda w: L.manifest(w.corpus),
    output:
        L.view_plan("{corpus}", "{view}"),
    log:
        f"{L.root}/logs/view_plan/{{corpus}}-{{view}}.log",
    params:
        config=CONFIG_FILE,
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline view-plan --config {params.config} --manifest {input} --view {wildcards.view} "
        "--out {output} 2> {log}"


rule render_view:
    input:
        manifest=lambda w: L.manifest(w.corpus),
        plan=L.view_plan("{corpus}", "{view}"),
        banks=view_banks,
    output:
        directory(L.view_store("{corpus}", "{view}", "{shard}")),
    log:
        f"{L.root}/logs/render_view/{{corpus}}-{{view}}-{{shard}}.log",
    benchmark:
        f"{L.root}/benchmarks/render_view/{{corpus}}-{{view}}-{{shard}}.tsv"
    params:
        config=CONFIG_FILE,
        shards=lambda w: L.num_shards(w.corpus),
        banks=lambda w: "" if w.view == "clean" else f"--rir-bank {L.bank('rir')} --noise-bank {L.bank('noise')}",
    threads: 1
    resources:
        mem_mb=3000,
        runtime=60,
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline render-view --config {params.config} --manifest {input.manifest} --plan {input.plan} "
        "--shard {wildcards.shard} --shards {params.shards} {params.banks} --out {output} 2> {log}"


rule index_view:
    localrule: True
    input:
        lambda w: [L.view_store(w.corpus, w.view, i) for i in range(L.num_shards(w.corpus))],
    output:
        L.view_index("{corpus}", "{view}"),
    log:
        f"{L.root}/logs/index_view/{{corpus}}-{{view}}.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline index --stores {input} --out {output} 2> {log}"
