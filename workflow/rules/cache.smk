# Stage 1b: each teacher runs once per (corpus, view, shard); students are cached the same way for
# downstream evaluation. A (corpus, view) no student distils from is extracted for the utterances evaluation reads
# (Layout.extraction_subset): those labelled for the tasks scored on it, and its test split alone where only scored.
# One writer per zarr store; an index TSV per (upstream, corpus, view).


rule extract_teacher:
    input:
        audio=L.view_store("{corpus}", "{view}", "{shard}"),
        manifest=subset_manifest,  # which utterances evaluation reads, where no student distils from the view
        features=precomputed_features,  # kind precomputed: the HDF5 features it copies
        model=lambda w: L.teacher_files(w.teacher),  # a student's export as teacher: wait for it
    output:
        directory(L.feature_store("{teacher}", "{corpus}", "{view}", "{shard}")),
    log:
        f"{L.root}/logs/extract/{{teacher}}-{{corpus}}-{{view}}-{{shard}}.log",
    benchmark:
        f"{L.root}/benchmarks/extract/{{teacher}}-{{corpus}}-{{view}}-{{shard}}.tsv"
    threads: 1  # one thread per job, jobs side by side: ~1.4x the throughput of two threads per job (bench/)
    resources:
        mem_mb=6000,
        runtime=240,
    params:
        config=CONFIG_FILE,
        spec=lambda w: canonical(L.extraction_spec(w.teacher)),  # editing the teacher's entry reruns its extraction
        subset=subset_flags,
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline extract --config {params.config} --upstream {wildcards.teacher} --audio {input.audio} "
        "--out {output} --threads {threads} {params.subset} 2> {log}"


# A student's forward over a shard costs about what starting Python and importing torch does, so one job per
# student writes every store and index its evaluation reads (pipeline.upstream_features.extract_upstream).
for _student in [s for s in config["students"] if s in L.evaluations()]:

    rule:
        name:
            f"extract_student_{_student}"
        input:
            audio=[L.view_store(*s) for s in L.feature_shards(_student)],
            manifests=sorted({L.manifest(c) for c, _ in L.feature_sources(_student)}),  # test splits
            model=L.student(_student),
        output:
            stores=[directory(L.feature_store(_student, *s)) for s in L.feature_shards(_student)],
            indexes=[L.feature_index(_student, c, v) for c, v in L.feature_sources(_student)],
        log:
            f"{L.root}/logs/extract/{_student}.log",
        benchmark:
            f"{L.root}/benchmarks/extract/{_student}.tsv"
        params:
            config=CONFIG_FILE,
            upstream=_student,
            checkpoint=lambda w, input: os.path.dirname(input.model),
            # which utterances each source holds: when the tasks scored on it change, the student is re-extracted
            subset=canonical([L.extraction_subset(_student, *s) for s in L.feature_sources(_student)]),
        threads: 1
        resources:
            mem_mb=4000,
            runtime=120,
        conda:
            "../../envs/pipeline.yaml"
        shell:
            "python -m pipeline extract-upstream --config {params.config} --upstream {params.upstream} "
            "--checkpoint {params.checkpoint} --threads {threads} 2> {log}"


rule index_features:
    localrule: True
    input:
        lambda w: [L.feature_store(w.teacher, w.corpus, w.view, i) for i in range(L.num_shards(w.corpus))],
    output:
        L.feature_index("{teacher}", "{corpus}", "{view}"),
    log:
        f"{L.root}/logs/index_features/{{teacher}}-{{corpus}}-{{view}}.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline index --stores {input} --out {output} 2> {log}"
