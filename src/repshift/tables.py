"""Tidy CSV tables: atomic writing and reading many as one."""

import pandas as pd

from .provenance import atomic_path


def write_csv(frame: pd.DataFrame, out) -> None:
    with atomic_path(out) as tmp:
        frame.to_csv(tmp, index=False)


IDENTIFIERS = {"model": str, "variant": str, "task": str, "probe": str, "model_id": str, "weights_sha256": str,
               "code_version": str}


def read_tables(paths) -> pd.DataFrame:
    """Tidy tables as one frame; identifier columns stay strings (a hex hash can look like a number)."""
    frames = [pd.read_csv(p, dtype=IDENTIFIERS) for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def merge_tables(paths, out) -> None:
    """Every tidy table in `paths` as one CSV at `out`, with what it holds in the log."""
    frame = read_tables(paths)
    write_csv(frame, out)
    print(f"wrote {out}: {len(paths)} tables, {len(frame)} rows, {frame['measure'].nunique()} measures, "
          f"{frame['variant'].nunique()} variants, {frame['value'].isna().sum()} values recorded as NaN (each with "
          "its reason in its metrics or compare log)", flush=True)
