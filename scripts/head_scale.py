"""Is the supernet's ranking spoiled by the scale of what reaches its head? (issue 16: tau 0.13)

A plain conformer block ends with its own LayerNorm, so a network whose last block is one hands
the shared CTC head a stream of another scale than residual blocks do. For each retrained network
of a report this prints the RMS of every layer's output on one dev batch, and its dev loss three
ways, each with BatchNorm re-estimated as the study scores: as the study measures it; with the
head's input multiplied by the gain, and with the logits divided by the temperature, that gives
the lowest loss on the re-estimation's train batches (a grid). Then each measure's Kendall tau
against the stand-alone dev CER. If scale were the fault, the calibrated losses would rank better.

    python scripts/head_scale.py CKPT docs/study/h200_route/study.json --data data/study_h200

CKPT: the route's supernet (``scripts/device/train_supernet.py``). Under 5 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent / "device"))
from study_pieces import retrained  # noqa: E402  (scripts/device)

from supernet.select.score import SupernetScorer  # noqa: E402
from supernet.study.rank import kendall_tau  # noqa: E402

GRID = (0.4, 0.5, 0.6, 0.7, 0.85, 1.0, 1.2, 1.4, 1.7, 2.0, 2.5, 3.0)


class CachedBody:
    """The network with its body's outputs replayed: the head alone runs, on ``gain`` times its
    cached input, and the logits are divided by ``temperature`` (what ``ctc_loss`` calls as ``net``)."""

    def __init__(self, net, inputs: list, gain: float, temperature: float):
        self.net, self.inputs, self.gain, self.temperature = net, iter(inputs), gain, temperature

    def __call__(self, features, lengths):
        x, lengths = next(self.inputs)
        logits, lengths = self.net.head(x * self.gain, lengths)
        return (logits.float() / self.temperature).log_softmax(-1), lengths

    def host_out_lengths(self, lengths):
        return self.net.host_out_lengths(lengths)


def replay(net, inputs: list, kind: str, value: float) -> CachedBody:
    """The head on ``inputs`` with ``value`` as its input's gain (``kind`` gain) or temperature."""
    return CachedBody(net, inputs, value, 1.0) if kind == "gain" else CachedBody(net, inputs, 1.0, value)


def mean_loss(module, batches: list[dict], head: CachedBody) -> float:
    """The CTC loss per target token over ``batches``, averaged over utterances (as the study's)."""
    total, count = 0.0, 0
    for batch in batches:
        loss, _, _ = module.ctc_loss(batch, head)
        total, count = total + float(loss) * len(batch["texts"]), count + len(batch["texts"])
    return total / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt", type=Path)
    parser.add_argument("report", type=Path, help="a study.json or retrain_archs.py JSON")
    parser.add_argument("--data", type=Path, default=Path("data/study_h200"))
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--out", type=Path, help="also write the measures here (JSON)")
    args = parser.parse_args()
    specs, cer, _ = retrained(args.report)
    scorer = SupernetScorer(args.ckpt, args.data, args.batches, split="dev", arch_fraction=0.0,
                            metric="loss", device="cpu", weights="trained")  # fmt: skip
    net, module = scorer.module.net, scorer.module
    head_inputs, layer_rms = [], []
    net.head.register_forward_hook(lambda m, i, o: head_inputs.append((i[0].detach(), i[1])))
    for layer in net.layers:
        layer.register_forward_hook(
            lambda m, i, o: layer_rms.append(o[0].float().pow(2).mean().sqrt().item())
        )
    measures = {}
    with torch.no_grad():
        for name, spec in sorted(specs.items(), key=lambda item: cer[item[0]]):
            loss = scorer.measure(scorer.space.index_of(spec))["loss"]  # BatchNorm re-estimated
            cached = {}
            for split in ("train", "dev"):
                head_inputs.clear(), layer_rms.clear()
                for batch in scorer.batches_of(split):
                    net(batch["features"], batch["feature_lengths"])
                cached[split] = list(head_inputs)
            rms = layer_rms[: len(spec.layers)]  # each layer's on the first dev batch
            row = {"loss": loss, "rms": rms}
            for kind in ("gain", "temperature"):
                train = scorer.batches_of("train")
                fitted = min(
                    GRID, key=lambda v: mean_loss(module, train, replay(net, cached["train"], kind, v))
                )
                row[kind] = fitted
                row[f"loss_{kind}"] = mean_loss(
                    module, scorer.batches_of("dev"), replay(net, cached["dev"], kind, fitted)
                )
            measures[name] = row
            stream = " ".join(f"{layer}:{value:.1f}" for layer, value in zip(spec.layers, rms))
            print(f"dev CER {100 * cer[name]:4.1f}  loss {loss:.3f}  gain {row['gain']} -> {row['loss_gain']:.3f}  "
                  f"temperature {row['temperature']} -> {row['loss_temperature']:.3f}  RMS {stream}", flush=True)  # fmt: skip
    names = list(measures)
    taus = {
        key: kendall_tau([measures[n][key] for n in names], [cer[n] for n in names])
        for key in ("loss", "loss_gain", "loss_temperature")
    }
    print("Kendall tau against dev CER: " + ", ".join(f"{k} {v:+.3f}" for k, v in taus.items()))
    if args.out:
        args.out.write_text(
            json.dumps({"ckpt": str(args.ckpt), "taus": taus, "measures": measures}, indent=1)
        )


if __name__ == "__main__":
    main()
