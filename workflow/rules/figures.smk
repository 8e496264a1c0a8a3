rule figures:
    input:
        tables=lambda wc: metric_tables(wc.model, wc.task),
        comparisons=lambda wc: comparison_tables(wc.model, wc.task),
    output:
        isotropy_png=report(
            "results/figures/{model}/{task}/isotropy.png",
            caption="../report/isotropy.rst",
            category="Isotropy",
            subcategory="{model}",
            labels={"model": "{model}", "task": "{task}", "figure": "isotropy"},
        ),
        isotropy_pdf="results/figures/{model}/{task}/isotropy.pdf",
        cka_png=report(
            "results/figures/{model}/{task}/cka.png",
            caption="../report/cka.rst",
            category="CKA",
            subcategory="{model}",
            labels={"model": "{model}", "task": "{task}", "figure": "CKA"},
        ),
        cka_pdf="results/figures/{model}/{task}/cka.pdf",
    params:
        title=lambda wc: f"{wc.model} ({Path(MODELS[wc.model]['id']).name}) fine-tuned on {wc.task}",
        code=code_version("figures"),
    threads: res("figures", "threads")
    resources:
        mem_mb=res("figures", "mem_mb"),
        runtime=res("figures", "runtime"),
    log:
        "logs/figures/{model}/{task}.log",
    shell:
        "({REPSHIFT} figure-isotropy --tables {input.tables:q} --png {output.isotropy_png:q}"
        " --pdf {output.isotropy_pdf:q} --title {params.title:q} &&"
        " {REPSHIFT} figure-cka --tables {input.tables:q} --comparisons {input.comparisons:q}"
        " --png {output.cka_png:q} --pdf {output.cka_pdf:q} --title {params.title:q}) > {log} 2>&1"


rule table:
    input:
        all_tables(),
    output:
        report("results/tables/metrics.csv", caption="../report/table.rst", category="Tables"),
    params:
        code=code_version("figures"),
    threads: res("table", "threads")
    resources:
        mem_mb=res("table", "mem_mb"),
        runtime=res("table", "runtime"),
    log:
        "logs/table.log",
    shell:
        "{REPSHIFT} table --tables {input:q} --out {output:q} > {log} 2>&1"
