# Stage 2: students trained from the cache only (the teacher is never loaded here), plus what some methods
# read besides teacher features: a k-means codebook with cluster ids (KD / DKD) and transcript embeddings
# of a text teacher (PAD-style students). One thread per training job: on a shared 2-core machine two
# single-threaded jobs side by side beat one two-threaded job.


rule train_student:
    input:
        unpack(student_inputs),
    output:
        model=L.student("{student}"),
        config=L.student("{student}", "config.json"),
        curve=L.student("{student}", "curve.tsv"),
        figure=L.student("{student}", "curve.png"),
    log:
        f"{L.root}/logs/train_student/{{student}}.log",
    benchmark:
        f"{L.root}/benchmarks/train_student/{{student}}.tsv"
    params:
        config=CONFIG_FILE,
        inputs=student_flags,
        spec=lambda w: canonical(config["students"][w.student]),  # editing the student's entry retrains it
        out_dir=lambda w: L.student(w.student, ""),
        resume_dir=f"{L.root}/.resume",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=720,
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline train-student --config {params.config} --student {wildcards.student} "
        "{params.inputs} --out-dir {params.out_dir} --resume-dir {params.resume_dir} --threads {threads} 2> {log}"


rule codebook:
    input:
        features=L.feature_index("{teacher}", L.distill_corpus, "{view}"),
        manifest=L.manifest(L.distill_corpus),
    output:
        L.codebook("{teacher}", "{view}", "{k}"),
    log:
        f"{L.root}/logs/codebook/{{teacher}}-{{view}}-k{{k}}.log",
    benchmark:
        f"{L.root}/benchmarks/codebook/{{teacher}}-{{view}}-k{{k}}.tsv"
    wildcard_constraints:
        k=r"\d+",
    params:
        config=CONFIG_FILE,
    threads: 1
    resources:
        mem_mb=3000,
        runtime=30,
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline codebook --config {params.config} --teacher {wildcards.teacher} "
        "--features {input.features} --manifest {input.manifest} --k {wildcards.k} --out {output} "
        "--threads {threads} 2> {log}"


rule embed_text:
    input:
        L.manifest("{corpus}"),
    output:
        L.text_embeddings("{teacher}", "{corpus}"),
    log:
        f"{L.root}/logs/embed_text/{{teacher}}-{{corpus}}.log",
    benchmark:
        f"{L.root}/benchmarks/embed_text/{{teacher}}-{{corpus}}.tsv"
    params:
        config=CONFIG_FILE,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline embed-text --config {params.config} --teacher {wildcards.teacher} "
        "--manifest {input} --out {output} --threads {threads} 2> {log}"
