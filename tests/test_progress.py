"""Progress written to a log file reads line by line."""

import io

from repshift.progress import progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_file_gets_one_line_per_update_and_no_carriage_returns():
    log = io.StringIO()
    with progress(stream=log, total=3, desc="extract", mininterval=0) as bar:
        for _ in range(3):
            bar.update()
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines and all(line.startswith("extract") for line in lines)
    assert "3/3" in lines[-1]


def test_a_terminal_keeps_the_bar_redrawn_in_place():
    screen = Terminal()
    with progress(stream=screen, total=2, desc="finetune", mininterval=0) as bar:
        bar.update(2)
    assert "\r" in screen.getvalue()
