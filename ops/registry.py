"""Spec parsing and the family registry: `ops.build("tdnn-k3-d2", 256)`.

A spec is `family-token-token...`. Number tokens are a letter and an integer (`k3` kernel,
`d2` dilation, `s3` stride, `f4` FFN ratio, `h4` heads, `w16` window (or chunk's left context),
`l0` right window, `c16` chunk, `m3` merge kernel, `e96` inner width); word tokens are bare
(`abs|rel|local|chunk`, `bn|ln`, `causal`, `open`: a conformer or E-Branchformer without its final
LayerNorm). Each family registers the tokens it accepts with their defaults, so a typo fails
loudly with the valid list.

Forms apply to every family (``ops.wrappers``, ``ops.downsampled``): prefix wrappers, `res-<spec>`
(the layer `x + op(x)`), `norm-<spec>` (a LayerNorm before the op) and `down2-` / `down4-`, and
the inner width `e<int>` (`tdnn-k3-d1-e96`: the op at 96 channels between a Linear in and a Linear
out), so a width or a residual needs no change in any family.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ops.base import Op

NUMBER_TOKENS = {
    "k": "kernel",
    "d": "dilation",
    "s": "stride",
    "f": "FFN ratio",
    "h": "heads",
    "w": "window (frames: each side for local attention, before the chunk for chunk attention)",
    "l": "right window (frames)",
    "c": "chunk (frames)",
    "m": "merge kernel",
    "e": "inner width (channels)",
}
WORD_TOKENS = ("abs", "rel", "local", "chunk", "bn", "ln", "causal", "open")
_NUMBER = re.compile(r"^([a-z])(\d+)$")


@dataclass(frozen=True)
class Spec:
    """A parsed spec: `numbers` holds the given number tokens merged over the family defaults."""

    text: str
    family: str
    numbers: dict[str, int] = field(default_factory=dict)
    words: frozenset[str] = frozenset()

    def word(self, choices: tuple[str, ...], default: str) -> str:
        """The one word of `choices` in the spec (or `default`); two of them is an error."""
        given = [w for w in choices if w in self.words]
        if len(given) > 1:
            raise ValueError(f"op spec {self.text!r}: choose one of {'|'.join(choices)}, got {given}")
        return given[0] if given else default


@dataclass(frozen=True)
class Family:
    builder: Callable[..., Op]
    numbers: dict[str, int | None]
    words: frozenset[str]


FAMILIES: dict[str, Family] = {}
# prefix -> builder(inner spec text, in_dim, out_dim, **kwargs): `res-tdnn-k3-d1`
WRAPPERS: dict[str, Callable[..., Op]] = {}
# builder(op built at the inner width, spec, in_dim, out_dim, width) for the `e<int>` token
_WIDTH: list[Callable[..., Op]] = []


def register(family: str, numbers: dict[str, int | None] | None = None, words: tuple[str, ...] = ()):
    """Decorator: `builder(spec: Spec, in_dim, out_dim, **kwargs) -> Op` builds `family` specs."""

    def decorate(builder: Callable[..., Op]) -> Callable[..., Op]:
        if family in FAMILIES:
            raise ValueError(f"op family {family!r} registered twice")
        FAMILIES[family] = Family(builder, dict(numbers or {}), frozenset(words))
        return builder

    return decorate


def register_wrapper(prefix: str):
    """Decorator: `builder(inner: str, in_dim, out_dim, **kwargs) -> Op` builds `prefix-<inner>`."""

    def decorate(builder: Callable[..., Op]) -> Callable[..., Op]:
        if prefix in WRAPPERS or prefix in FAMILIES:
            raise ValueError(f"op prefix {prefix!r} registered twice")
        WRAPPERS[prefix] = builder
        return builder

    return decorate


def register_width(builder: Callable[..., Op]) -> Callable[..., Op]:
    """Decorator: `builder(inner_op, spec, in_dim, out_dim, width) -> Op` for the `e<int>` token."""
    _WIDTH[:] = [builder]
    return builder


def available() -> list[str]:
    """The registered family names."""
    return sorted(FAMILIES)


def parse_spec(spec: str) -> Spec:
    """Split `spec` into family, number tokens and word tokens (syntax only; see `build`)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"op spec {spec!r}: must be a non-empty string like 'tdnn-k3-d2'")
    family, *tokens = spec.strip().split("-")
    numbers: dict[str, int] = {}
    words: set[str] = set()
    for token in tokens:
        match = _NUMBER.match(token)
        if match and match.group(1) in NUMBER_TOKENS:
            key, value = match.group(1), int(match.group(2))
            if key in numbers:
                raise ValueError(f"op spec {spec!r}: token {key!r} given twice")
            numbers[key] = value
        elif token in WORD_TOKENS:
            if token in words:
                raise ValueError(f"op spec {spec!r}: token {token!r} given twice")
            words.add(token)
        else:
            valid = ", ".join(f"{k}<int> ({v})" for k, v in NUMBER_TOKENS.items())
            raise ValueError(
                f"op spec {spec!r}: unknown token {token!r}; valid tokens: {valid}; words: {', '.join(WORD_TOKENS)}"
            )
    return Spec(spec.strip(), family, numbers, frozenset(words))


def build(spec: str, in_dim: int, out_dim: int | None = None, **kwargs) -> Op:
    """Build the op named by `spec` mapping `in_dim` to `out_dim` channels.

    `kwargs` go to the family builder (for example `dropout=0.1`); `dropout` is accepted by every
    family (ignored where meaningless) so that a network can pass one value to all of its ops.
    """
    prefix, _, inner = spec.strip().partition("-") if isinstance(spec, str) else ("", "", "")
    if prefix in WRAPPERS and inner:
        return _build_wrapped(spec.strip(), prefix, inner, in_dim, out_dim, kwargs)
    parsed = parse_spec(spec)
    if "e" in parsed.numbers and parsed.family in FAMILIES and "e" not in FAMILIES[parsed.family].numbers:
        return _build_width(parsed, in_dim, out_dim, kwargs)
    if parsed.family not in FAMILIES:
        raise ValueError(f"op spec {spec!r}: unknown family {parsed.family!r}; valid families: {available()}")
    family = FAMILIES[parsed.family]
    allowed = [f"{k}<int>" for k in family.numbers] + sorted(family.words)
    for key in parsed.numbers:
        if key not in family.numbers:
            raise ValueError(
                f"op spec {spec!r}: {parsed.family} takes no {key!r} token; valid: {allowed or 'none'}"
            )
    for key, value in parsed.numbers.items():
        if value < (0 if key in "wl" else 1):
            raise ValueError(f"op spec {spec!r}: {NUMBER_TOKENS[key]} {key}{value} is out of range")
    for word in parsed.words - family.words:
        raise ValueError(
            f"op spec {spec!r}: {parsed.family} takes no {word!r} token; valid: {allowed or 'none'}"
        )
    if in_dim is None or int(in_dim) < 1:
        raise ValueError(f"op spec {spec!r}: in_dim must be a positive int, got {in_dim!r}")
    params = inspect.signature(family.builder).parameters
    if "dropout" not in params:
        kwargs.pop("dropout", None)
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ValueError(f"op spec {spec!r}: unknown build options {unknown} for family {parsed.family!r}")
    numbers = {**{k: v for k, v in family.numbers.items() if v is not None}, **parsed.numbers}
    parsed = Spec(parsed.text, parsed.family, numbers, parsed.words)
    try:
        op = family.builder(parsed, int(in_dim), None if out_dim is None else int(out_dim), **kwargs)
    except ValueError as error:
        if repr(parsed.text) in str(error):
            raise
        raise ValueError(f"op spec {parsed.text!r}: {error}") from error
    op.spec = parsed.text
    return op


def _build_wrapped(text: str, prefix: str, inner: str, in_dim, out_dim, kwargs) -> Op:
    """`prefix-inner`: the wrapper builds its inner op (through `build`); errors name `text`."""
    if in_dim is None or int(in_dim) < 1:
        raise ValueError(f"op spec {text!r}: in_dim must be a positive int, got {in_dim!r}")
    try:
        op = WRAPPERS[prefix](inner, int(in_dim), None if out_dim is None else int(out_dim), **kwargs)
    except ValueError as error:
        raise ValueError(f"op spec {text!r}: {error}") from error
    op.spec = text
    return op


def _build_width(parsed: Spec, in_dim, out_dim, kwargs) -> Op:
    """`family-...-e<int>`: the op without the token, built at that width between two Linears."""
    width = parsed.numbers["e"]
    inner = "-".join(t for t in parsed.text.split("-") if t != f"e{width}")
    if in_dim is None or int(in_dim) < 1:
        raise ValueError(f"op spec {parsed.text!r}: in_dim must be a positive int, got {in_dim!r}")
    try:
        core = build(inner, width, width, **kwargs)
        op = _WIDTH[0](core, parsed, int(in_dim), int(in_dim if out_dim is None else out_dim), width)
    except ValueError as error:
        raise ValueError(f"op spec {parsed.text!r}: {error}") from error
    op.spec = parsed.text
    return op
