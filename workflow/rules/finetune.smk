rule finetune:
    input:
        task=lambda wc: f"results/data/tasks/{rc.parse_variant(wc.finetuned).task}.json",
        pretrained=lambda wc: pretrained_files(wc.model),
    output:
        weights="results/models/{model}/{finetuned}/model.safetensors",
        config="results/models/{model}/{finetuned}/config.json",
        tokenizer="results/models/{model}/{finetuned}/tokenizer.json",
        metrics="results/models/{model}/{finetuned}/train_metrics.json",
    params:
        model=lambda wc: as_json(MODELS[wc.model]),
        settings=lambda wc: as_json(rc.finetune_settings(config, rc.parse_variant(wc.finetuned))),
        seed=lambda wc: rc.parse_variant(wc.finetuned).seed,
        provenance=lambda wc: identity("finetune", wc, wc.finetuned),
        out=lambda wc, output: Path(output.weights).parent,
    threads: res("finetune", "threads")
    resources:
        mem_mb=res("finetune", "mem_mb"),
        runtime=res("finetune", "runtime"),
        gpu=res("finetune", "gpu"),
    log:
        "logs/finetune/{model}/{finetuned}.log",
    wildcard_constraints:
        finetuned=FINETUNED,
    shell:
        "{REPSHIFT} finetune --model {params.model:q} --task {input.task:q} --out {params.out:q}"
        " --seed {params.seed} --threads {threads} --settings {params.settings:q}"
        " --provenance {params.provenance:q} > {log} 2>&1"


# A followed fine-tune replayed up to a fraction of its planned steps (config dynamics): its weights live only until
# every job that reads them is done; its training record (step, dev metric), config and tokenizer stay.
use rule finetune as snapshot with:
    output:
        weights=temp("results/models/{model}/{finetuned}/model.safetensors"),
        config="results/models/{model}/{finetuned}/config.json",
        tokenizer="results/models/{model}/{finetuned}/tokenizer.json",
        metrics="results/models/{model}/{finetuned}/train_metrics.json",
    wildcard_constraints:
        finetuned=SNAPSHOT,


rule layer_drop:
    input:
        task=lambda wc: f"results/data/tasks/{rc.parse_variant(wc.finetuned).task}.json",
        weights="results/models/{model}/{finetuned}/model.safetensors",
    output:
        "results/layerdrop/{model}/{finetuned}.csv",
    params:
        model=lambda wc: as_json({"id": finetuned_dir(wc.model, wc.finetuned)}),
        settings=lambda wc: as_json(rc.finetune_settings(config, rc.parse_variant(wc.finetuned))),
        provenance=lambda wc: identity("finetune", wc, wc.finetuned),
    threads: res("layer_drop", "threads")
    resources:
        mem_mb=res("layer_drop", "mem_mb"),
        runtime=res("layer_drop", "runtime"),
        gpu=res("layer_drop", "gpu"),
    log:
        "logs/layer_drop/{model}/{finetuned}.log",
    shell:
        "{REPSHIFT} layer-drop --model {params.model:q} --task {input.task:q} --out {output:q}"
        " --threads {threads} --settings {params.settings:q} --provenance {params.provenance:q} > {log} 2>&1"


rule baseline:
    input:
        task="results/data/tasks/{task}.json",
        pretrained=lambda wc: pretrained_files(wc.model),
    output:
        "results/baselines/{model}/{task}.json",
    params:
        model=lambda wc: as_json(MODELS[wc.model]),
        settings=lambda wc: as_json(rc.baseline_settings(config, wc.task)),
        provenance=lambda wc: provenance("baselines", model=wc.model, task=wc.task),
    threads: res("baseline", "threads")
    resources:
        mem_mb=res("baseline", "mem_mb"),
        runtime=res("baseline", "runtime"),
        gpu=res("baseline", "gpu"),
    log:
        "logs/baseline/{model}/{task}.log",
    shell:
        "{REPSHIFT} baseline --model {params.model:q} --task {input.task:q} --out {output:q}"
        " --threads {threads} --settings {params.settings:q} --provenance {params.provenance:q} > {log} 2>&1"
