"""A path's CER with a trained supernet's inherited weights (``supernet select``, ``supernet study``).

Inherited weights are shared by every path, so a path's BatchNorm running statistics are the mix
of all paths trained; they are reset and re-estimated on ``batches`` train batches of the path
alone (as single-path one-shot NAS does) before it is measured on one held-out split: ``arch``
(the search's held-out part of train) when the corpus gives one, else ``dev``. Test sets never
choose anything.

Two measures come from one pass: greedy CER, and the CTC loss per target token (averaged over utterances). A supernet early in
training decodes mostly blanks (CER near 100% for many paths), where CER ties and ranks nothing;
the loss still orders the paths.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path

import torch
from torch import nn

from supernet.data.tokenizer import normalize_text
from supernet.errors import UserError
from supernet.select.angle import init_cosine, require_initial_weights

METRICS = ("cer", "loss", "init_cosine")  # init_cosine: a search that kept its initial weights
WEIGHTS = ("average", "trained")  # a search's weight average (model.weight_average) when it kept one


class SupernetScorer:
    """``scorer(path) -> score`` (lower is better) of the search checkpoint ``ckpt`` on ``data``:
    ``metric`` ``cer``, ``loss`` (CTC loss per target token) or ``init_cosine`` (the ABS angle's
    cosine, ``supernet.select.angle``: a search that kept its initial weights);
    ``scorer.measure(path)`` gives every one it can.

    ``split``: ``"arch"`` or ``"dev"``; None picks ``arch`` when the corpus has a non-empty one
    (``arch_fraction`` of train, as the search held it out), else ``dev``.

    On several devices (``supernet.select.distributed``) each process keeps ``shard = (rank,
    world)``, every world-th batch, and ``reduce`` sums a tensor across the processes in place: the
    BatchNorm statistics and the error and loss sums are combined, so every process gets the score
    one process would have measured on all the batches (up to float rounding).

    ``weights``: ``average`` measures with the search's moving average of its weights when it kept
    one (``model.weight_average``), else with the trained weights; ``trained`` always with the
    trained ones. ``scorer.weights`` says which were used."""

    def __init__(
        self,
        ckpt: str | Path,
        data: str | Path,
        batches: int = 4,
        split: str | None = None,
        arch_fraction: float = 0.1,
        max_frames: int = 20000,
        device: str | torch.device | None = None,
        metric: str = "cer",
        shard: tuple[int, int] = (0, 1),
        reduce: Callable[[torch.Tensor], None] | None = None,
        weights: str = "average",
    ):
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
        self.metric = metric
        from supernet.data.datamodule import SpeechDataModule
        from supernet.search.module import SearchModule

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.module = SearchModule.load_from_checkpoint(ckpt, map_location=self.device).eval()
        if metric == "init_cosine":
            require_initial_weights(self.module.initial_weights is not None, ckpt, "metric init_cosine")
        averaged = weights == "average" and self.module.load_averaged_weights()
        self.weights = "average" if averaged else "trained"
        self.module.net_average = None  # copied into the network, or not used: free its memory
        self.space, fields = self.module.space, self.module.space.fields
        sizes = {"n_mels": fields["feature_dim"], "n_mfcc": fields["feature_dim"]}
        self.datamodule = SpeechDataModule(
            str(data), features=fields["features"], **sizes, arch_fraction=arch_fraction,
            max_frames=max_frames, spec_augment=False, num_workers=0, check_audio=False,
        )  # fmt: skip
        # the features at the FFT size the search's were made with (ASRModule.on_load_checkpoint)
        self.datamodule.feature_pipeline.use_recorded_n_fft(self.module.checkpoint_n_fft)
        self.datamodule.tokenizer = self.module.tokenizer  # the search's own symbols
        # the arch split as the search had it: without the utterances too short for CTC at the
        # space's largest stride. With stride edges this matters: kept, an utterance infeasible at
        # stride 4 would add a loss of 0 to every stride-4 path (zero_infinity) and favour it.
        self.datamodule.check_ctc(self.space.max_total_stride, f"space {self.space.name}")
        if split is None:
            split = "arch" if self.datamodule.splits["fit"]["arch"] else "dev"
        if split not in ("arch", "dev"):
            raise ValueError(f"split must be 'arch' or 'dev' (test sets never choose), got {split!r}")
        self.split, self.batches = split, batches
        self.rank, self.world = shard
        self.reduce = reduce
        self.norms = [m for m in self.module.net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        stale_statistics = self.weights == "average" and self.norms and not batches  # the trained weights'
        if stale_statistics:
            raise UserError(
                "averaged weights need their BatchNorm statistics re-estimated: --batches 1 or more "
                "(or --weights trained)"
            )
        self._batches: dict[str, list[dict]] = {}
        self._finetune: tuple[list[dict], Iterator[dict] | None] | None = None  # the fine-tunes' batches

    def batches_of(self, split: str) -> list[dict]:
        """The featurized batches on the device (``train``: the first ``batches`` of them), read
        once: every path is measured on the same ones, so reading and featurizing the audio again
        for each (most of a candidate's cost when scoring on a GPU) would only repeat work."""
        if split not in self._batches:
            from supernet.asr_module import move_batch

            limit = self.batches if split == "train" else None
            self._batches[split] = [
                self.datamodule.featurize(move_batch(batch, self.device), augment=False)
                for i, batch in enumerate(islice(self.datamodule.loader(split), limit))
                if i % self.world == self.rank
            ]
        return self._batches[split]

    def prepare(self) -> SupernetScorer:
        """Read and featurize the batches now: before a process group starts, since the bucket
        sampler takes a rank's share by itself once ``torch.distributed`` is initialised, and the
        shares here are the scorer's own (``shard``)."""
        self.batches_of("train")
        self.batches_of(self.split)
        return self

    def __call__(self, path: dict[str, int]) -> float:
        return self.measure(path)[self.metric]

    @torch.no_grad()
    def measure(self, path: dict[str, int], recalibrate: bool = True) -> dict[str, float]:
        """The path's CER and CTC loss per target token on the split, BatchNorm recalibrated; and
        ``init_cosine`` (``supernet.select.angle``) when the search kept its initial weights.
        ``recalibrate=False`` keeps the statistics as they are: the path's own, when the last
        measure was of the same path and only weights BatchNorm does not read changed since."""
        net = self.module.net
        net.fix_path({name: int(index) for name, index in path.items()})
        if recalibrate and self.norms and self.batches:
            self._recalibrate(net)
        sums = self._sums(net)
        if self.reduce is not None:
            self.reduce(sums)
        errors, chars, loss, utterances = sums.tolist()
        measures = {"cer": errors / chars if chars else 0.0, "loss": loss / max(utterances, 1.0)}
        if self.module.initial_weights is not None:  # the search kept them: the ABS angle too
            measures["init_cosine"] = init_cosine(net, self.module.initial_weights, path)
        return measures

    def finetuned(
        self,
        path: dict[str, int],
        steps: int,
        lr: float | None = None,
        seed: int = 0,
        state: dict | None = None,
    ) -> dict[str, float]:
        """The path's measures after ``steps`` weight steps on train batches of the path alone,
        from the supernet's weights (or, given a ``state``, from where its training stopped); the
        supernet's are restored afterwards (every path starts from the same ones). Why: the
        inherited weights are a compromise between every path that shares them, and the score
        favours paths that learn fast (docs/results.md, session 12); a short training of a few
        finalists alone is the usual correction. The search's AdamW (its peak
        ``lr`` unless given, fresh moments, no warm-up; decay on matrices only) and gradient
        clipping; the same batches in the same order, and dropout drawn from ``seed``, for every
        path, so a select run again picks the same. One process only.

        ``state`` (a dict, updated in place) carries one path's training across calls: its own
        weights, the network's buffers (BatchNorm's statistics, which ``measure`` uses as they are
        when it re-estimates nothing), AdamW's moments, the random state and the steps taken.
        Given one that holds ``n`` steps, the training goes on for ``steps`` more on the next
        batches of the same sequence, as one call of ``n + steps`` would: exactly on a CPU, up to
        the GPU's non-deterministic kernels (CTC's backward) on a GPU (successive halving's
        rungs, ``supernet select --halving``)."""
        if self.world > 1:
            raise UserError("fine-tuning finalists runs in one process: use --devices 1")
        state = {} if state is None else state
        net, done = self.module.net, state.get("steps", 0)
        saved = {name: tensor.clone() for name, tensor in net.state_dict().items()}
        net.fix_path({name: int(index) for name, index in path.items()})
        named = [(n, p) for n, p in net.named_parameters() if p.requires_grad]  # a path's own get gradients
        params = [p for _, p in named]
        optimizer = self.module.weight_adamw(params, lr)
        cuda = [self.device] if self.device.type == "cuda" else []
        batches = self._finetune_batches(done + steps, cuda)[done:]
        try:
            with torch.random.fork_rng(devices=cuda), torch.enable_grad():
                if done:
                    with torch.no_grad():
                        for name, param in named:
                            if name in state["weights"]:
                                param.copy_(state["weights"][name])
                        for name, buffer in net.named_buffers():
                            buffer.copy_(state["buffers"][name])
                    optimizer.load_state_dict(state["optimizer"])
                    torch.set_rng_state(state["rng"])
                    if cuda:
                        torch.cuda.set_rng_state(state["cuda_rng"], self.device)
                else:
                    torch.manual_seed(seed)
                net.train()
                for batch in batches:
                    self.weight_step(batch, optimizer, params)
                state.update(
                    steps=done + steps, optimizer=optimizer.state_dict(), rng=torch.get_rng_state(),
                    weights={n: p.detach().clone() for n, p in named if p in optimizer.state},  # the path's
                    buffers={n: b.clone() for n, b in net.named_buffers()},
                    cuda_rng=torch.cuda.get_rng_state(self.device) if cuda else None,
                )  # fmt: skip
            net.eval()
            return self.measure(path)
        finally:
            net.zero_grad(set_to_none=True)
            net.load_state_dict(saved)
            net.eval()

    def weight_step(self, batch: dict, optimizer: torch.optim.Optimizer, params: list) -> None:
        """One step of the network's fixed path on ``batch``: CTC loss, backward, the search's
        gradient clipping over the parameters that got a gradient, ``optimizer``'s step."""
        loss, _, _ = self.module.ctc_loss(batch, self.module.net)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.module.hparams.grad_clip
        if clip:
            torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], clip)
        optimizer.step()

    def _finetune_batches(self, count: int, cuda: list) -> list[dict]:
        """The first ``count`` batches of the fine-tunes' train sequence: one epoch of the train
        loader (shuffled with the corpus's seed, the same order every epoch), repeated. Each is
        read and featurized once, kept on the device without its audio, since every finalist
        trains on the same ones. Read under a random state of their own, so that reading can
        never shift the training's, whichever finalist reads a batch first."""
        from supernet.asr_module import move_batch

        if self._finetune is None:
            self._finetune = ([], iter(self.datamodule.loader("train", shuffle=True)))
        kept, stream = self._finetune
        with torch.random.fork_rng(devices=cuda):
            while stream is not None and len(kept) < count:
                batch = next(stream, None)
                if batch is None:  # the epoch is whole: it repeats
                    stream = None
                    break
                batch = self.datamodule.featurize(move_batch(batch, self.device), augment=False)
                kept.append({key: value for key, value in batch.items() if key != "audio"})
        self._finetune = (kept, stream)
        if not kept:
            raise UserError("the train split has no batch to fine-tune on")
        return [kept[i % len(kept)] for i in range(count)]

    def _recalibrate(self, net: nn.Module) -> None:
        """BatchNorm's running statistics re-estimated on this path alone: a plain average of the
        recalibration batches' statistics (momentum None), combined across processes by count."""
        for norm in self.norms:
            norm.reset_running_stats()
            norm.momentum = None
            norm.train()
        for batch in self.batches_of("train"):
            net(batch["features"], batch["feature_lengths"])
        net.eval()
        if self.reduce is None:
            return
        counts = [norm.num_batches_tracked.double() for norm in self.norms]
        flat = torch.cat(
            [
                t
                for norm, n in zip(self.norms, counts)
                for t in (norm.running_mean * n, norm.running_var * n, n[None])
            ]
        )
        self.reduce(flat)
        for norm in self.norms:
            size = norm.running_mean.numel()
            mean, var, count = flat[:size], flat[size : 2 * size], flat[2 * size]
            flat = flat[2 * size + 1 :]
            if count > 0:  # no process ran it: this path does not use it
                norm.running_mean.copy_(mean / count)
                norm.running_var.copy_(var / count)
                norm.num_batches_tracked.fill_(int(count))

    def _sums(self, net: nn.Module) -> torch.Tensor:
        """``[character errors, reference characters, sum of utterance losses, utterances]`` over
        this process's batches (float64: the sums of several processes add exactly enough)."""
        from torchmetrics.text import CharErrorRate

        cer, loss, utterances = CharErrorRate(), 0.0, 0
        for batch in self.batches_of(self.split):
            mean_loss, log_probs, lengths = self.module.ctc_loss(batch, net)
            count = len(batch["texts"])  # the loss is a mean over utterances of loss / target length
            loss, utterances = loss + float(mean_loss) * count, utterances + count
            cer.update(self.module.decode(log_probs, lengths), [normalize_text(t) for t in batch["texts"]])
        errors, chars = (float(cer.errors), float(cer.total)) if utterances else (0.0, 0.0)
        return torch.tensor([errors, chars, loss, float(utterances)], dtype=torch.float64, device=self.device)
