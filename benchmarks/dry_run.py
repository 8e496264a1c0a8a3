"""Reading `snakemake -n` output: shared by the workflow benchmark and the workflow tests."""


def parse_dry_run(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(rule, wildcards) of every planned job, and every output path, from a `snakemake -n` log."""
    jobs, outputs, rule = [], [], None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("rule ") and stripped.endswith(":"):
            if rule is not None:
                jobs.append((rule, ""))
            rule = stripped[5:-1]
        elif stripped.startswith("output:"):
            outputs += [p.strip() for p in stripped.removeprefix("output:").split(",") if p.strip()]
        elif stripped.startswith("wildcards:") and rule is not None:
            jobs.append((rule, stripped.removeprefix("wildcards:").strip()))
            rule = None
    if rule is not None:
        jobs.append((rule, ""))
    return jobs, outputs
