# Stage 3: SUPERB-style heads on frozen, cached upstream features; one JSON per score, and beside it the per-item
# predictions (`.pred.tsv`) that the claims table's bootstrap resamples.
# One job per upstream trains every task's heads (all seeds) and scores every condition: features are read
# once per (corpus, view) and shared by the tasks, and ~20 jobs pay Python start-up instead of ~300.


for _upstream, _tasks in L.evaluations().items():

    rule:
        name:
            f"evaluate_{_upstream}"
        input:
            unpack(partial(evaluate_inputs, _upstream)),
        output:
            heads=[L.head(_upstream, t) for t in _tasks],
            scores=L.scores(_upstream),
            predictions=L.prediction_files(_upstream),
        log:
            f"{L.root}/logs/evaluate/{_upstream}.log",
        benchmark:
            f"{L.root}/benchmarks/evaluate/{_upstream}.tsv"
        params:
            config=CONFIG_FILE,
            upstream=_upstream,
            tasks=_tasks,
            settings=[config["downstream"]["tasks"][t] for t in _tasks],  # edits to a task's settings rerun it
        threads: 1
        resources:
            mem_mb=6000,
            runtime=60,
        conda:
            "../../envs/pipeline.yaml"
        shell:
            "python -m pipeline evaluate --config {params.config} --upstream {params.upstream} "
            "--tasks {params.tasks} --threads {threads} 2> {log}"
