# Stage 2: students trained from the cache only (the teacher is never loaded here).


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
        out_dir=lambda w: L.student(w.student, ""),
        resume_dir=f"{L.root}/.resume",
    threads: 2
    resources:
        mem_mb=6000,
        runtime=720,
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline train-student --config {params.config} --student {wildcards.student} "
        "--manifest {input.manifest} --audio {input.audio} --targets {input.targets} "
        "--out-dir {params.out_dir} --resume-dir {params.resume_dir} --threads {threads} 2> {log}"
