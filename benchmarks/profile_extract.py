"""Where extract()'s time goes, beside the bare forward pass: the profile behind the extraction rows of run.py.

    python benchmarks/profile_extract.py [--sentences 1000]

Prints (1) bare-forward throughput per batch_tokens, (2) extract() as shipped, with its HDF5 writes done in
the main thread instead of the background writer, and with the writes dropped, each against the bare forward
measured just before it, and (3) cProfile's top entries for one extract() call with main-thread writes.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import pstats
import tempfile
import time
from pathlib import Path

import run  # benchmarks/run.py: sets the offline environment and sys.path

import torch  # noqa: E402

from repshift import activations  # noqa: E402
from repshift.models import load_encoder, load_tokenizer, resolve_model  # noqa: E402


class MainThreadWriter(activations._Writer):
    """The writes of extract(), done in the calling thread as each batch arrives."""

    def start(self):
        pass

    def put(self, job):
        self.jobs.put(job)
        self.jobs.put(None)
        self.run()

    def close(self):
        pass


class DroppingWriter(activations._Writer):
    """extract() with every write dropped: the forward passes and their post-processing alone."""

    def run(self):
        while self.jobs.get() is not None:
            pass


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(run.Sizes(quick=False).threads)
    settings = run.schema_defaults("extract")
    words, tags = run.probe_sentences(args.sentences)
    resolved = resolve_model(run.MODEL_ID)
    tokenizer, model = load_tokenizer(resolved.path), load_encoder(resolved.path).eval()
    ids, word_index, _, _ = activations.tokenize_probe(tokenizer, words, settings["max_length"])
    n_tokens = sum(len(x) for x in ids)
    print(f"{len(words)} sentences, {n_tokens} tokens, {torch.get_num_threads()} threads")

    print("\n1. bare forward, tok/s by batch_tokens")
    for batch_tokens in (512, 1024, 2048, 4096, 8192, 16384):
        batches = run.padded_batches(tokenizer, ids, word_index, batch_tokens)
        run.bare_forward(model, batches[:1])
        print(f"   {batch_tokens:>6}: {n_tokens / run.timed(lambda: run.bare_forward(model, batches), args.repeat)[0]:,.0f}")

    batches = run.padded_batches(tokenizer, ids, word_index, settings["batch_tokens"])
    with tempfile.TemporaryDirectory() as work:
        probe = run.write_probe(Path(work) / "probe.json", words, tags)
        out = Path(work) / "x.h5"

        def extract():
            with contextlib.redirect_stdout(io.StringIO()):
                activations.extract({"id": run.MODEL_ID}, probe, out, settings, torch.get_num_threads(), {})

        print(f"\n2. extract() / bare forward at batch_tokens={settings['batch_tokens']} (best of {args.repeat})")
        shipped = activations._Writer
        for name, writer in (("as shipped (background writer)", shipped), ("writes in the main thread",
                                                                           MainThreadWriter),
                             ("writes dropped", DroppingWriter)):
            activations._Writer = writer
            try:
                extract()
                bare = run.timed(lambda: run.bare_forward(model, batches), args.repeat)[0]
                ours = run.timed(extract, args.repeat)[0]
            finally:
                activations._Writer = shipped
            print(f"   {name:<32} {ours:5.2f} s / {bare:5.2f} s = {bare / ours:.3f}")

        print("\n3. cProfile of one extract() with the writes in the main thread, where the profiler sees them")
        profile = cProfile.Profile()
        activations._Writer = MainThreadWriter
        start = time.perf_counter()
        try:
            profile.runcall(extract)
        finally:
            activations._Writer = shipped
        print(f"   wall {time.perf_counter() - start:.2f} s")
        stream = io.StringIO()
        pstats.Stats(profile, stream=stream).sort_stats("tottime").print_stats(12)
        print("\n".join("   " + line for line in stream.getvalue().splitlines() if line.strip()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
