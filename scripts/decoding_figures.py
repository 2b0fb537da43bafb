"""The figures of docs/decoding.md from one checkpoint: the LM's dev grid and test table, the
trailing-boundary check, and what each decoder costs, on the CPU.

    python scripts/decoding_figures.py CKPT --data MARKOV_CORPUS --lm lm_markov.arpa \
        [--boundary-data RANDOM_CORPUS] [--json out.json]

The network runs once per split (as ``supernet evaluate`` runs it: features, ``module.net``);
every decoder then reads the same log-probs, so the decoders differ and nothing else.

- grid: ``BeamSearchDecoder`` with the LM at each ``--lm-weights`` x ``--word-scores`` on the dev
  split, ranked by dev score = mean of WER and CER; the test split with greedy, beam without LM,
  the best LM-weight-0 point (the lexicon alone), the best point and the defaults.
- boundary: on ``--boundary-data``'s dev split, a lexicon of its training words, no LM (LM weight
  0): spellings with the trailing boundary and its extra frame (as shipped), and without both
  (``spell_words(trailing_boundary=False)``, what the decoder did before).
- cost: decoding the test split's log-probs, one thread, best of ``--rounds``, in ms per second of
  audio (the network not counted).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

from supernet.data.audio import TARGET_SAMPLE_RATE
from supernet.data.datamodule import SpeechDataset, collate_speech
from supernet.data.manifest import read_manifest
from supernet.data.tokenizer import normalize_text
from supernet.decoding import GreedyDecoder
from supernet.deploy.checkpoint import load_module
from supernet.deploy.graph import feature_pipeline
from supernet.lm import beam
from supernet.lm.beam import BeamSearchDecoder


@torch.no_grad()
def network_outputs(module, utterances: list) -> dict:
    """Log-probs, lengths and normalised references of ``utterances``, batches of 8 by duration."""
    pipeline = feature_pipeline(module)
    utterances = sorted(utterances, key=lambda u: u.duration)
    dataset = SpeechDataset(utterances, module.tokenizer, TARGET_SAMPLE_RATE)
    batches, refs = [], []
    for batch in torch.utils.data.DataLoader(dataset, batch_size=8, collate_fn=collate_speech):
        features, lengths = pipeline(batch["audio"], batch["audio_lengths"])
        batches.append(module.net(features, lengths))
        refs += [normalize_text(t) for t in batch["texts"]]
    return {"batches": batches, "refs": refs, "seconds": sum(u.duration for u in utterances)}


def scores(decode, outputs: dict) -> dict[str, float]:
    import jiwer

    hyps = [text for log_probs, lengths in outputs["batches"] for text in decode(log_probs, lengths)]
    wer = jiwer.wer(outputs["refs"], hyps)
    cer = jiwer.cer(outputs["refs"], hyps)
    return {"wer": wer, "cer": cer, "score": (wer + cer) / 2}


@contextlib.contextmanager
def without_trailing_boundary():
    """The decoder as before the fix: spellings end at the word's last letter, no extra frame."""
    spell = beam.spell_words
    with mock.patch.object(
        beam, "spell_words", lambda *a, **k: spell(*a, **{**k, "trailing_boundary": False})
    ):
        yield


def grid(module, lm: Path, dev: dict, test: dict, weights, word_scores, beam_size: int) -> dict:
    tokenizer = module.tokenizer
    points = []
    for w, s in itertools.product(weights, word_scores):
        decoder = BeamSearchDecoder(tokenizer, beam_size, lm=lm, lm_weight=w, word_score=s)
        points.append({"lm_weight": w, "word_score": s, **scores(decoder, dev)})
    best = min(points, key=lambda p: p["score"])
    best0 = min((p for p in points if p["lm_weight"] == 0), key=lambda p: p["score"], default=None)
    rows = {
        "greedy": GreedyDecoder(tokenizer),
        f"beam {beam_size}, no LM": BeamSearchDecoder(tokenizer, beam_size),
    }
    if best0 is not None:
        name = f"beam, lexicon of the LM's words, LM weight 0, word score {best0['word_score']:g}"
        rows[name] = BeamSearchDecoder(
            tokenizer, beam_size, lm=lm, lm_weight=0.0, word_score=best0["word_score"]
        )
    name = f"beam + LM, LM weight {best['lm_weight']:g}, word score {best['word_score']:g} (best dev score)"
    rows[name] = BeamSearchDecoder(
        tokenizer, beam_size, lm=lm, lm_weight=best["lm_weight"], word_score=best["word_score"]
    )
    rows["beam + LM, defaults (LM weight 1, word score 0)"] = BeamSearchDecoder(tokenizer, beam_size, lm=lm)
    return {"dev_grid": points, "best": best, "test": {k: scores(d, test) for k, d in rows.items()}}


def boundary(module, corpus: Path, beam_size: int) -> dict:
    """Dev WER with and without the trailing boundary, a lexicon of the training words, no LM."""
    words = sorted({w for u in read_manifest(corpus / "train.jsonl") for w in normalize_text(u.text).split()})
    dev = network_outputs(module, read_manifest(corpus / "dev.jsonl"))
    with tempfile.TemporaryDirectory() as tmp:
        lexicon = Path(tmp) / "words.txt"
        lexicon.write_text("\n".join(words) + "\n")
        with_it = BeamSearchDecoder(module.tokenizer, beam_size, lexicon=lexicon)
        with without_trailing_boundary():
            without = BeamSearchDecoder(module.tokenizer, beam_size, lexicon=lexicon)
        without.boundary_frame = False
        return {"words": len(words), "with": scores(with_it, dev), "without": scores(without, dev)}


def cost(module, lm: Path, test: dict, rounds: int) -> dict[str, float]:
    """ms per second of audio, best of ``rounds``, of decoding ``test``'s log-probs."""
    tokenizer = module.tokenizer
    decoders = {
        "greedy": GreedyDecoder(tokenizer),
        "beam 50, lexicon-free": BeamSearchDecoder(tokenizer, 50),
        "beam 50 + LM": BeamSearchDecoder(tokenizer, 50, lm=lm),
        "beam 10 + LM": BeamSearchDecoder(tokenizer, 10, lm=lm),
    }
    out = {}
    for name, decode in decoders.items():
        best = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            for log_probs, lengths in test["batches"]:
                decode(log_probs, lengths)
            best = min(best, time.perf_counter() - start)
        out[name] = 1000 * best / test["seconds"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="corpus of the grid and test table")
    parser.add_argument("--lm", type=Path, required=True, help="ARPA LM of --data's training text")
    parser.add_argument("--boundary-data", type=Path, help="corpus whose dev split checks the boundary")
    parser.add_argument("--lm-weights", type=float, nargs="+", default=[0, 0.5, 1, 2, 3])
    parser.add_argument("--word-scores", type=float, nargs="+", default=[-1, 0, 1, 2])
    parser.add_argument("--beam-size", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    module = load_module(args.checkpoint).eval()
    dev = network_outputs(module, read_manifest(args.data / "dev.jsonl"))
    test = network_outputs(module, read_manifest(args.data / "test.jsonl"))
    result = grid(module, args.lm, dev, test, args.lm_weights, args.word_scores, args.beam_size)
    result["cost_ms_per_audio_second"] = cost(module, args.lm, test, args.rounds)
    result["test_seconds"] = test["seconds"]
    if args.boundary_data:
        result["boundary"] = boundary(module, args.boundary_data, args.beam_size)
    print(f"dev grid (WER / CER, dev score), {len(dev['refs'])} utterances:")
    print("| LM weight | " + " | ".join(f"word score {s:g}" for s in args.word_scores) + " |")
    print("|---|" + "---|" * len(args.word_scores))
    for w in args.lm_weights:
        cells = [p for p in result["dev_grid"] if p["lm_weight"] == w]
        print(
            f"| {w:g} | "
            + " | ".join(
                f"{100 * p['wer']:.1f} / {100 * p['cer']:.1f} ({100 * p['score']:.1f})" for p in cells
            )
            + " |"
        )
    print(f"\ntest, {len(test['refs'])} utterances:\n| decoder | WER | CER |\n|---|---|---|")
    for name, s in result["test"].items():
        print(f"| {name} | {100 * s['wer']:.1f}% | {100 * s['cer']:.1f}% |")
    print(
        f"\ncost, {test['seconds']:.0f} s of audio, best of {args.rounds}:\n| decoder | ms per second of audio |\n|---|---|"
    )
    for name, ms in result["cost_ms_per_audio_second"].items():
        print(f"| {name} | {ms:.3g} |")
    if "boundary" in result:
        b = result["boundary"]
        print(
            f"\nboundary ({b['words']} training words, no LM): dev WER {b['without']['wer']:.2f} without, {b['with']['wer']:.2f} with"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
