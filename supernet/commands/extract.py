"""`supernet extract CKPT -o ARCH.yaml`: the top-1 candidate of every edge, as an ArchSpec.

The architecture is ``supernet.search.extract.extract``'s; this writes it, prints each edge's
choice and its probability, and warns when the alphas never moved (a tie-break).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from supernet.latency.costs import PICK_RULES
from supernet.search.extract import NOT_MOVED_WARNING, extract, pick_rule, vocab_size
from supernet.space import SearchSpace


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "ckpt", help="a checkpoint written by `supernet search` (e.g. RUN/checkpoints/last.ckpt)"
    )
    parser.add_argument("-o", "--output", required=True, help="where to write the ArchSpec YAML")
    parser.add_argument("--name", default=None, help="the architecture's name (default SPACE-METHOD)")
    parser.add_argument(
        "--pick", default=None, choices=PICK_RULES,
        help="argmax: every edge's own; depth: keep a layer when its ops together outweigh skip, then "
        "its op (default: the search's model.pick)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Writes the YAML and prints the choices; a tie-break (``arch.moved()`` False) is warned about."""
    spec, arch, hparams = extract(args.ckpt, args.name, args.pick)
    moved = arch.moved()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    spec.to_yaml(args.output)
    probs = arch.probs()
    argmax = arch.argmax()
    for edge, index in SearchSpace(hparams["space"]).index_of(spec).items():
        note = (
            "" if index == argmax[edge] else f", not the argmax: {NOT_ARGMAX[pick_rule(hparams, args.pick)]}"
        )
        print(f"{edge}: {arch.labels[edge][index]}  (p={float(probs[edge].detach()[index]):.2f}{note})")
    vocab = vocab_size(hparams)
    print(f"parameter-free layers chosen: {spec.parameter_free_count} of {len(spec.layers)}")
    print(
        f"params: {spec.params(vocab):,}  total stride: {spec.total_stride}  look-ahead: {spec.total_lookahead} frames"
    )
    print(f"written: {args.output}")
    if not moved:
        print(NOT_MOVED_WARNING, file=sys.stderr)
    return 0


NOT_ARGMAX = {
    "argmax": "the argmax path is over the budget",
    "depth": "depth first (the layer's ops together outweigh skip, or skip theirs), or the budget",
}
