# Stage 0: the synthetic TTS corpus (sharded across jobs), the real-speech test corpus, and real corpora
# (corpus.datasets) turned into manifests by their adapters.

if "synthetic" in config["corpus"]:

    rule synthesize:
        output:
            L.synth_shard("{shard}"),
        log:
            f"{L.root}/logs/synthesize/{{shard}}.log",
        benchmark:
            f"{L.root}/benchmarks/synthesize/{{shard}}.tsv"
        params:
            config=CONFIG_FILE,
            shards=config["corpus"]["synthetic"]["shards"],
            wav_dir=f"{L.root}/corpus/synthetic/wav",
        threads: 1
        resources:
            mem_mb=2000,
            runtime=60,
        conda:
            "../../envs/pipeline.yaml"
        shell:
            "python -m pipeline synthesize --config {params.config} --shard {wildcards.shard} "
            "--shards {params.shards} --out-dir {params.wav_dir} --manifest-out {output} 2> {log}"


    rule merge_manifests:
        localrule: True
        input:
            [L.synth_shard(i) for i in range(config["corpus"]["synthetic"]["shards"])],
        output:
            L.manifest("synthetic"),
        log:
            f"{L.root}/logs/merge_manifests.log",
        conda:
            "../../envs/pipeline.yaml"
        shell:
            "python -m pipeline merge-manifests --inputs {input} --output {output} 2> {log}"


rule prepare_asterisk:
    output:
        L.manifest("asterisk"),
    log:
        f"{L.root}/logs/prepare_asterisk.log",
    benchmark:
        f"{L.root}/benchmarks/prepare_asterisk.tsv"
    params:
        config=CONFIG_FILE,
        wav_dir=f"{L.root}/corpus/asterisk/wav",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline prepare-asterisk --config {params.config} --out-dir {params.wav_dir} "
        "--manifest-out {output} 2> {log}"


rule prepare_corpus:
    output:
        L.manifest("{corpus}"),
    log:
        f"{L.root}/logs/prepare_corpus/{{corpus}}.log",
    benchmark:
        f"{L.root}/benchmarks/prepare_corpus/{{corpus}}.tsv"
    wildcard_constraints:
        corpus=L.regex(L.datasets),
    params:
        config=CONFIG_FILE,
        spec=lambda w: canonical(L.datasets[w.corpus]),  # a changed root or option prepares the corpus again
    threads: 1
    resources:
        mem_mb=4000,
        runtime=720,
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline prepare-corpus --config {params.config} --corpus {wildcards.corpus} "
        "--manifest-out {output} 2> {log}"
