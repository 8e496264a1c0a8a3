rule figures:
    input:
        unpack(lambda wc: task_inputs(wc.model, wc.task)),
    output:
        **{
            f"{name}_png": report(
                f"results/figures/{{model}}/{{task}}/{name}.png",
                caption=f"../report/{name}.rst",
                category="Figures",
                subcategory="{model} / {task}",
                labels={"model": "{model}", "task": "{task}", "figure": name},
            )
            for name in FIGURES
        },
        **{f"{name}_pdf": f"results/figures/{{model}}/{{task}}/{name}.pdf" for name in FIGURES},
    params:
        title=lambda wc: f"{wc.model} ({Path(MODELS[wc.model]['id']).name}) fine-tuned on {wc.task}",
        out_dir=lambda wc: f"results/figures/{wc.model}/{wc.task}",
        code=code_version("figures"),
    threads: res("figures", "threads")
    resources:
        mem_mb=res("figures", "mem_mb"),
        runtime=res("figures", "runtime"),
    log:
        "logs/figures/{model}/{task}.log",
    shell:
        "{REPSHIFT} figures --tables {input.tables:q} --comparisons {input.comparisons:q}"
        " --layerdrop {input.layerdrop:q} --training {input.training:q} --baselines {input.baselines:q}"
        " --dest {params.out_dir:q}"
        " --title {params.title:q} > {log} 2>&1"


rule dynamics:
    input:
        unpack(lambda wc: dynamics_inputs(wc.model, wc.task)),
    output:
        png=report(
            f"results/figures/{{model}}/{{task}}/{DYNAMICS}.png",
            caption=f"../report/{DYNAMICS}.rst",
            category="Figures",
            subcategory="{model} / {task}",
            labels={"model": "{model}", "task": "{task}", "figure": DYNAMICS},
        ),
        pdf=f"results/figures/{{model}}/{{task}}/{DYNAMICS}.pdf",
    params:
        title=lambda wc: f"{wc.model} ({Path(MODELS[wc.model]['id']).name}) fine-tuned on {wc.task}",
        out_dir=lambda wc: f"results/figures/{wc.model}/{wc.task}",
        code=code_version("figures"),
    threads: res("figures", "threads")
    resources:
        mem_mb=res("figures", "mem_mb"),
        runtime=res("figures", "runtime"),
    log:
        "logs/figures/{model}/{task}-dynamics.log",
    shell:
        "{REPSHIFT} dynamics --tables {input.tables:q} --comparisons {input.comparisons:q}"
        " --training {input.snapshots:q} --dest {params.out_dir:q} --title {params.title:q} > {log} 2>&1"


rule compared:
    input:
        between=lambda wc: between_tables(wc.model),
        floors=lambda wc: [path for task in TASKS for path in floor_tables(wc.model, task)],
    output:
        png=report(
            f"results/figures/{{model}}/{COMPARED}.png",
            caption=f"../report/{COMPARED}.rst",
            category="Figures",
            subcategory="{model}",
            labels={"model": "{model}", "figure": COMPARED},
        ),
        pdf=f"results/figures/{{model}}/{COMPARED}.pdf",
    params:
        title=lambda wc: f"{wc.model} ({Path(MODELS[wc.model]['id']).name})",
        out_dir=lambda wc: f"results/figures/{wc.model}",
        code=code_version("figures"),
    threads: res("figures", "threads")
    resources:
        mem_mb=res("figures", "mem_mb"),
        runtime=res("figures", "runtime"),
    log:
        "logs/figures/{model}/comparisons.log",
    shell:
        "{REPSHIFT} compared --comparisons {input.between:q} {input.floors:q} --dest {params.out_dir:q}"
        " --title {params.title:q} > {log} 2>&1"


rule table:
    input:
        tables=lambda wc: sorted(set(all_inputs("tables"))),
        comparisons=lambda wc: sorted(set(all_inputs("comparisons") + [t for m in MODELS for t in between_tables(m)])),
    output:
        report("results/tables/metrics.csv", caption="../report/table.rst", category="Tables"),
    params:
        code=code_version("tables"),
    threads: res("table", "threads")
    resources:
        mem_mb=res("table", "mem_mb"),
        runtime=res("table", "runtime"),
    log:
        "logs/table.log",
    shell:
        "{REPSHIFT} table --tables {input:q} --out {output:q} > {log} 2>&1"


rule claims:
    input:
        tables="results/tables/metrics.csv",
        layerdrop=lambda wc: all_inputs("layerdrop"),
        training=lambda wc: all_inputs("training"),
        baselines=lambda wc: all_inputs("baselines"),
    output:
        table=report("results/tables/claims.csv", caption="../report/claims.rst", category="Claims"),
        summary="results/tables/claims.rst",
    params:
        code=code_version("claims"),
        settings=as_json(config["claims"]),
    threads: res("claims", "threads")
    resources:
        mem_mb=res("claims", "mem_mb"),
        runtime=res("claims", "runtime"),
    log:
        "logs/claims.log",
    shell:
        "{REPSHIFT} claims --tables {input.tables:q} --layerdrop {input.layerdrop:q}"
        " --training {input.training:q} --baselines {input.baselines:q} --out {output.table:q}"
        " --summary {output.summary:q} --settings {params.settings:q} > {log} 2>&1"
