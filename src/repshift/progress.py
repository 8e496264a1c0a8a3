"""Progress bars that read well both on a terminal and in a rule's log file."""

import sys


class _Lines:
    """A stream that turns tqdm's carriage-return redraws into one line per update."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        if line := text.replace("\r", "").strip():
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress(stream=None, **settings):
    """tqdm(**settings) on `stream` (stderr): redrawn in place on a terminal, else a line every 30 s at most."""
    from tqdm import tqdm

    stream = sys.stderr if stream is None else stream
    if stream.isatty():
        return tqdm(file=stream, **settings)
    every = max(settings.get("mininterval", 0), 30)
    return tqdm(file=_Lines(stream), ascii=True, **{**settings, "mininterval": every, "maxinterval": every})
