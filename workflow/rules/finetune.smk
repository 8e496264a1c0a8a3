rule finetune:
    input:
        task="results/data/tasks/{task}.json",
    output:
        weights="results/models/{model}/{task}-s{seed}/model.safetensors",
        config="results/models/{model}/{task}-s{seed}/config.json",
        tokenizer="results/models/{model}/{task}-s{seed}/tokenizer.json",
        metrics="results/models/{model}/{task}-s{seed}/train_metrics.json",
    params:
        model=lambda wc: as_json(MODELS[wc.model]),
        settings=lambda wc: as_json(rc.finetune_settings(config, wc.task)),
        provenance=lambda wc: provenance("finetune", model=wc.model, task=wc.task),
        out=lambda wc, output: Path(output.weights).parent,
    threads: res("finetune", "threads")
    resources:
        mem_mb=res("finetune", "mem_mb"),
        runtime=res("finetune", "runtime"),
        gpu=res("finetune", "gpu"),
    log:
        "logs/finetune/{model}/{task}-s{seed}.log",
    shell:
        "{REPSHIFT} finetune --model {params.model:q} --task {input.task:q} --out {params.out:q}"
        " --seed {wildcards.seed} --threads {threads} --settings {params.settings:q}"
        " --provenance {params.provenance:q} > {log} 2>&1"
