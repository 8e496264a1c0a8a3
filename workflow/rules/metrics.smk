rule metrics:
    input:
        activations="results/activations/{model}/{variant}/{probe}.h5",
        weights=lambda wc: finetuned_weights(wc.model, wc.variant),
    output:
        "results/metrics/{model}/{variant}/{probe}.csv",
    params:
        settings=as_json(rc.metric_settings(config)),
        provenance=lambda wc: identity("metrics", wc, wc.variant, probe=wc.probe,
                                       probe_role=rc.probe_role(config, wc.probe)),
    threads: res("metrics", "threads")
    resources:
        mem_mb=res("metrics", "mem_mb"),
        runtime=res("metrics", "runtime"),
    log:
        "logs/metrics/{model}/{variant}/{probe}.log",
    shell:
        "{REPSHIFT} metrics --activations {input.activations:q} --weights {input.weights:q} --out {output:q}"
        " --settings {params.settings:q}"
        " --provenance {params.provenance:q} > {log} 2>&1"


rule compare:
    input:
        base="results/activations/{model}/base/{probe}.h5",
        finetuned="results/activations/{model}/{finetuned}/{probe}.h5",
        weights=lambda wc: finetuned_weights(wc.model, wc.finetuned),
    output:
        "results/compare/{model}/{finetuned}/{probe}.csv",
    params:
        settings=as_json(rc.metric_settings(config)),
        provenance=lambda wc: identity("metrics", wc, wc.finetuned, probe=wc.probe,
                                       probe_role=rc.probe_role(config, wc.probe)),
    threads: res("compare", "threads")
    resources:
        mem_mb=res("compare", "mem_mb"),
        runtime=res("compare", "runtime"),
    log:
        "logs/compare/{model}/{finetuned}/{probe}.log",
    shell:
        "{REPSHIFT} compare --activations {input.base:q} {input.finetuned:q} --weights {input.weights:q}"
        " --out {output:q}"
        " --settings {params.settings:q} --provenance {params.provenance:q} > {log} 2>&1"


rule seed_floor:
    input:
        unpack(lambda wc: pair_inputs(wc.model, wc.probe, rc.pair_variants(wc.pair))),
    output:
        "results/floor/{model}/{pair}/{probe}.csv",
    params:
        settings=as_json(rc.metric_settings(config)),
        provenance=lambda wc: pair_provenance(wc.model, wc.probe, wc.pair, rc.pair_variants(wc.pair)),
    threads: res("seed_floor", "threads")
    resources:
        mem_mb=res("seed_floor", "mem_mb"),
        runtime=res("seed_floor", "runtime"),
    log:
        "logs/floor/{model}/{pair}/{probe}.log",
    shell:
        "{REPSHIFT} seed-floor --activations {input.activations:q} --pair-weights {input.weights:q}"
        " --out {output:q} --settings {params.settings:q} --provenance {params.provenance:q} > {log} 2>&1"


rule between:
    input:
        unpack(lambda wc: pair_inputs(wc.model, wc.probe, rc.comparison_variants(wc.comparison))),
    output:
        "results/between/{model}/{comparison}/{probe}.csv",
    params:
        settings=as_json(rc.metric_settings(config)),
        provenance=lambda wc: pair_provenance(wc.model, wc.probe, wc.comparison,
                                              rc.comparison_variants(wc.comparison)),
    threads: res("compare", "threads")
    resources:
        mem_mb=res("compare", "mem_mb"),
        runtime=res("compare", "runtime"),
    log:
        "logs/between/{model}/{comparison}/{probe}.log",
    shell:
        "{REPSHIFT} between --activations {input.activations:q} --pair-weights {input.weights:q}"
        " --out {output:q} --settings {params.settings:q} --provenance {params.provenance:q} > {log} 2>&1"
