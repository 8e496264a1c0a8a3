rule extract:
    input:
        unpack(extract_inputs),
    output:
        "results/activations/{model}/{variant}/{probe}.h5",
    params:
        model=model_spec,
        settings=as_json(config["extract"]),
        provenance=lambda wc: provenance("activations", model=wc.model, variant=wc.variant, probe=wc.probe),
    threads: res("extract", "threads")
    resources:
        mem_mb=res("extract", "mem_mb"),
        runtime=res("extract", "runtime"),
        gpu=res("extract", "gpu"),
    log:
        "logs/extract/{model}/{variant}/{probe}.log",
    shell:
        "{REPSHIFT} extract --model {params.model:q} --probe {input.probe:q} --out {output:q}"
        " --threads {threads} --settings {params.settings:q} --provenance {params.provenance:q} > {log} 2>&1"
