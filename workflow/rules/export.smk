# Students leave the pipeline (pipeline/export/): a transformers folder (transformer students), model.onnx (every
# student) and a model card per student in results/export/<student>/. The weights depend on the checkpoint alone, so
# new scores rewrite only the card. An export's hf/ folder can be a `kind: hf` teacher (a student as teacher): its
# extraction, and a student starting from it, wait for the export.


rule export_student:
    input:
        model=L.student("{student}"),
        config=L.student("{student}", "config.json"),
    output:
        hf=[L.export("{student}", f"hf/{f}") for f in HF_FILES],
        onnx=L.export("{student}", ONNX_FILE),
        runtime=L.export_runtime("{student}"),
    wildcard_constraints:
        student=L.regex(L.students_of_kind("transformer")),
    log:
        f"{L.root}/logs/export/{{student}}.log",
    benchmark:
        f"{L.root}/benchmarks/export/{{student}}.tsv"
    params:
        config=CONFIG_FILE,
        checkpoint=lambda w, input: os.path.dirname(input.model),
        out_dir=lambda w: L.export(w.student),
    threads: 1
    resources:
        mem_mb=3000,
        runtime=30,
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline export --config {params.config} --student {wildcards.student} "
        "--checkpoint {params.checkpoint} --out {params.out_dir} --no-card --runtime {output.runtime} "
        "--threads {threads} 2> {log}"


# Students without a transformers layout (LSTMs): model.onnx alone, the card beside it.
use rule export_student as export_student_onnx with:
    output:
        onnx=L.export("{student}", ONNX_FILE),
        runtime=L.export_runtime("{student}"),
    wildcard_constraints:
        student=L.regex(L.students_of_kind("lstm")),


rule model_card:
    localrule: True
    input:
        config=L.student("{student}", "config.json"),
        scores=lambda w: L.scores(w.student),
    output:
        L.export("{student}", "hf/README.md"),
    wildcard_constraints:
        student=L.regex(L.students_of_kind("transformer")),
    log:
        f"{L.root}/logs/model_card/{{student}}.log",
    params:
        config=CONFIG_FILE,
        checkpoint=lambda w, input: os.path.dirname(input.config),
        teachers=card_teachers,  # the teachers' entries (hub ids) are in the card: editing them rewrites it
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline model-card --config {params.config} --student {wildcards.student} "
        "--checkpoint {params.checkpoint} --scores {input.scores} --out {output} 2> {log}"


use rule model_card as model_card_onnx with:
    output:
        L.export("{student}", "README.md"),
    wildcard_constraints:
        student=L.regex(L.students_of_kind("lstm")),
