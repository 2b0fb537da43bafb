"""Streaming inference of ops: a chunk in, the output frames now complete out, state in between.

``op.stream(x, state, final) -> (y, state)`` takes the next frames of one stream (``x (B, n, C)``,
``state`` None on the first chunk) and returns the output frames whose receptive field has now
arrived, in order, and the state to pass with the next chunk. With ``final`` the stream ends: the
op then emits the rest, reading zeros past the end as the full-utterance forward does. Over a whole
stream the outputs are the full-utterance outputs (float rounding apart) for any chunk sizes: an op
with look-ahead holds its last outputs back until their right context comes, so its latency is its
declared look-ahead, never a different answer. Eval mode only (dropout off, BatchNorm's running
statistics); every row of the batch is one stream of the same length, no padding.

What an op keeps is bounded by its receptive field, never by the prefix: a convolution keeps the
frames its next window still reads (``Window``), attention the keys and values of its left window
(``ops.attention``), a residual the inputs of the outputs its branch holds back (``Delay``). The one
exception is chunked attention with no left bound (``chunk`` without ``w``), which reads every
earlier chunk: its key cache grows with the stream.

These helpers hold only the bookkeeping; each op computes with its own layers, as in ``forward``.
"""

from __future__ import annotations

import torch


class NotStreamable(ValueError):
    """An op that reads the whole utterance (or has no streaming path); the message names it."""


def stream_state(state: dict | None) -> dict:
    """The op's state dict, made on the first chunk."""
    return {} if state is None else state


def no_frames(x: torch.Tensor, channels: int) -> torch.Tensor:
    """``(B, 0, channels)``: what an op emits while it waits for its look-ahead."""
    return x.new_zeros(x.shape[0], 0, channels)


class Window:
    """The frames a "same"-padded window over time still needs, for a streaming convolution.

    Output ``j`` of the full-utterance op reads padded frames ``j * stride .. j * stride + span``,
    padded frame ``p`` being input frame ``p - left`` (zeros outside the utterance). ``step`` keeps
    the frames from the next output's first on, adds the new ones, and returns the window of the
    outputs now complete: a convolution without time padding (the op's own layer) over it gives
    exactly those outputs. What is kept is under ``span + stride`` frames.
    """

    def __init__(self, span: int, stride: int = 1, left: int = 0, dim: int = -1):
        self.span, self.stride, self.left, self.dim = span, stride, left, dim

    def step(self, state: dict, x: torch.Tensor, final: bool) -> tuple[torch.Tensor | None, int]:
        """``(window or None, outputs it gives)`` after the frames ``x`` (along ``dim``)."""
        dim = self.dim % x.dim()
        if "frames" not in state:  # the left padding of the full-utterance op
            shape = list(x.shape)
            shape[dim] = self.left
            state.update(frames=x.new_zeros(shape), seen=0, done=0)
        frames = torch.cat([state["frames"], x], dim)
        state["seen"] += x.shape[dim]
        have = frames.shape[dim]
        if final:  # every output of the utterance, reading zeros past its end
            count = -(-state["seen"] // self.stride) - state["done"]
            need = (count - 1) * self.stride + self.span + 1
            if count > 0 and need > have:
                pad = list(frames.shape)
                pad[dim] = need - have
                frames = torch.cat([frames, frames.new_zeros(pad)], dim)
        else:
            count = (have - self.span - 1) // self.stride + 1 if have > self.span else 0
        state["done"] += max(count, 0)
        if count <= 0:
            state["frames"] = frames
            return None, 0
        window = frames.narrow(dim, 0, (count - 1) * self.stride + self.span + 1)
        used = min(count * self.stride, frames.shape[dim])
        state["frames"] = frames.narrow(dim, used, frames.shape[dim] - used)
        return window, count


class Delay:
    """A first-in first-out line of frames (time is dim 1) under ``key`` of a state dict: a
    residual's input waits here while its branch holds outputs back for their look-ahead."""

    def __init__(self, key: str):
        self.key = key

    def push(self, state: dict, x: torch.Tensor) -> int:
        """Queue ``x``'s frames; how many are queued now."""
        state[self.key] = torch.cat([state[self.key], x], 1) if self.key in state else x
        return state[self.key].shape[1]

    def pop(self, state: dict, count: int) -> torch.Tensor:
        """The ``count`` oldest queued frames, removed."""
        queue = state[self.key]
        state[self.key] = queue[:, count:]
        return queue[:, :count]

    def __call__(self, state: dict, x: torch.Tensor, count: int) -> torch.Tensor:
        """Queue ``x`` and return the ``count`` oldest frames: ``x`` delayed to match a branch that
        emitted ``count`` frames."""
        self.push(state, x)
        return self.pop(state, count)


def state_tensors(state) -> list[torch.Tensor]:
    """Every tensor a (nested) stream state holds: what a stream keeps between chunks."""
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for value in state.values() for t in state_tensors(value)]
    if isinstance(state, (list, tuple)):
        return [t for value in state for t in state_tensors(value)]
    return []
