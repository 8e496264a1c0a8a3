"""Tidy CSV tables: atomic writing and reading many as one."""

import pandas as pd

from .provenance import atomic_path


def write_csv(frame: pd.DataFrame, out) -> None:
    with atomic_path(out) as tmp:
        frame.to_csv(tmp, index=False)


def read_tables(paths) -> pd.DataFrame:
    frames = [pd.read_csv(p) for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
