"""The op library: shapes and lengths, padding invariance, declared look-ahead vs the real one,
spec errors, and a few known answers (rel-shift, masks, flops, a 1 kHz tone through the front-ends)."""

import math

import pytest
import torch

import ops
from ops.attention import attention_mask, rel_shift
from ops.base import UNBOUNDED

FRAME_SPECS = [
    "tdnn-k3-d1",
    "tdnn-k3-d2",
    "tdnn-k5-d1",
    "tdnn-k5-d2",
    "tdnn-k3-d1-s3",
    "tdnn-k4-d1-bn",
    "tdnn-k3-d2-causal",
    "septdnn-k5-d2",
    "conformer-k15-f4-abs",
    "conformer-k31-f2-rel",
    "conformer-k15-f4-local-w16",
    "conformer-k5-f2-local-w4-l1-ln",
    "conformer-k15-f4-chunk-c16",
    "transformer-f4-abs",
    "transformer-f4-rel",
    "transformer-f2-local-w3",
    "transformer-f4-chunk-c16",
    "mhsa-h2-chunk-c4",
    "lstm",
    "blstm",
    "skip",
    "zero",
    "linear",
    "conv2d4x",
    "res-tdnn-k3-d2",
    "res-tdnn-k3-d1-causal",
    "tdnn-k3-d1-e4",
    "tdnn-k3-d1-s3-e4",
    "res-tdnn-k5-d2-e4",
    "res-conformer-k3-f2-local-w2-e4",
    "ebranchformer-k3-f2-abs",
    "ebranchformer-k15-f2-rel",
    "ebranchformer-k5-f2-local-w4-l2",
    "ebranchformer-k7-f2-local-w4-l1",
    "ebranchformer-k5-f2-chunk-c16",
    "ebranchformer-k5-f2-m5-local-w2-l0-causal",
    "down2-tdnn-k3-d1",
    "down2-tdnn-k3-d2-causal",
    "down4-conformer-k3-f2-local-w2",
    "res-down2-conformer-k5-f2-rel-e4",
    "res-down2-ebranchformer-k5-f2-local-w4-l2",
    "conformer-k15-f4-rel-open",
    "ebranchformer-k5-f2-local-w4-l2-open",
    "norm-linear",
    "norm-tdnn-k3-d2",
]
WAVE_SPECS = ["fbank", "mfcc", "learnfb"]
DIM = 8


def make(spec: str) -> ops.Op:
    torch.manual_seed(0)
    return ops.build(spec, 1 if spec in WAVE_SPECS else DIM).double().eval()


def inputs(spec: str, frames: int, batch: int = 1) -> torch.Tensor:
    torch.manual_seed(1)
    if spec in WAVE_SPECS:
        return torch.randn(batch, frames * 160, 1, dtype=torch.float64)
    return torch.randn(batch, frames, DIM, dtype=torch.float64)


@pytest.mark.parametrize("spec", FRAME_SPECS + WAVE_SPECS)
def test_shapes_lengths_and_attributes(spec):
    op = make(spec)
    x = inputs(spec, 23, batch=3)
    T = x.shape[1]
    lengths = torch.tensor([T, T - 7, 1])
    y, out_lengths = op(x, lengths)
    assert y.shape[:2] == (3, math.ceil(T / op.stride))
    assert out_lengths.tolist() == [math.ceil(n / op.stride) for n in lengths.tolist()]
    assert torch.isfinite(y).all()
    for row, n in zip(y, out_lengths.tolist()):
        assert torch.equal(row[n:], torch.zeros_like(row[n:]))
    assert op.spec == spec and op.flops(100) >= 0
    assert op.streamable == (op.lookahead < UNBOUNDED)
    assert op.parameter_free == (sum(p.numel() for p in op.parameters()) == 0)


@pytest.mark.parametrize("spec", FRAME_SPECS + WAVE_SPECS)
def test_padding_is_invisible(spec):
    """One utterance alone == the same utterance padded with garbage in a batch; padding -> 0."""
    op = make(spec)
    x = inputs(spec, 21, batch=2)
    n = 13 * (160 if spec in WAVE_SPECS else 1)
    alone, _ = op(x[:1, :n], torch.tensor([n]))
    garbage = x.clone()
    garbage[0, n:] = 1e3 * torch.randn_like(garbage[0, n:])
    batched, out_lengths = op(garbage, torch.tensor([n, x.shape[1]]))
    m = out_lengths[0]
    assert m == alone.shape[1]
    assert torch.allclose(batched[0, :m], alone[0], rtol=0, atol=1e-9)
    assert torch.equal(batched[0, m:], torch.zeros_like(batched[0, m:]))


def _perturbed(op, x, frames):
    """Output after adding noise to `frames` (noise, not a constant: LayerNorm ignores offsets)."""
    x = x.clone()
    torch.manual_seed(2)
    x[:, frames] += torch.randn_like(x[:, frames])
    return op(x, torch.tensor([x.shape[1]]))[0]


@pytest.mark.parametrize("spec", [s for s in FRAME_SPECS + WAVE_SPECS if s != "zero"])
def test_declared_lookahead_is_exact(spec):
    """Output j (input frame t = j * stride) ignores frames past t + lookahead and reads t + lookahead."""
    op = make(spec)
    x = inputs(spec, 64)
    T = x.shape[1]
    y = op(x, torch.tensor([T]))[0]
    if op.lookahead >= UNBOUNDED:  # full-utterance ops: output 0 sees far frames (a BLSTM forgets
        assert (_perturbed(op, x, [24])[0, 0] - y[0, 0]).abs().max() > 1e-9  # by ~2x a step)
        return
    # Chunked attention reaches its full look-ahead from a chunk's first frame (c16: t = 0, 16, 32...).
    for t in (0, math.lcm(16 * (160 if spec in WAVE_SPECS else 1), op.stride)):
        j = t // op.stride
        assert j * op.stride == t and t + op.lookahead + 1 < T
        beyond = _perturbed(op, x, slice(t + op.lookahead + 1, None))
        assert torch.allclose(beyond[0, : j + 1], y[0, : j + 1], rtol=0, atol=1e-12), (
            "reads past its look-ahead"
        )
        edge = _perturbed(op, x, [t + op.lookahead])
        assert (edge[0, j] - y[0, j]).abs().max() > 1e-9, f"look-ahead {op.lookahead} is not tight at t={t}"


def test_lookahead_declarations():
    expected = {
        "tdnn-k3-d2": 2,
        "tdnn-k5-d2": 4,
        "tdnn-k4-d1": 2,
        "tdnn-k5-d2-causal": 0,
        "tdnn-k3-d1-s3": 1,
        "conformer-k15-f4-local-w16": 16 + 7,
        "conformer-k15-f4-local-w16-causal": 16,
        "conformer-k15-f4-chunk-c16": 15,
        "transformer-f4-chunk-c16": 15,
        "conv2d4x": 3,
        "lstm": 0,
        "fbank": 199,
        "res-tdnn-k5-d2": 4,
        "res-tdnn-k5-d2-causal": 0,
        "tdnn-k3-d1-s3-e4": 1,
        "ebranchformer-k15-f4-local-w16": 16 + 1,  # max(attention 16, cgMLP 7) + merge 1
        "ebranchformer-k31-f4-local-w4-m5": 15 + 2,  # the cgMLP conv reads further than attention
        "ebranchformer-k15-f4-chunk-c16": 15,  # chunk: both convs causal
        "ebranchformer-k15-f4-local-w16-l0-causal": 0,
        "down2-tdnn-k3-d2": 2 * 2 + 1,  # the op's look-ahead in slow frames, and the last pair's rest
        "down2-tdnn-k5-d2-causal": 1,
        "down4-tdnn-k3-d1": 4 * 1 + 3,
        "res-down2-tdnn-k3-d1-e4": 3,
    }
    for spec, lookahead in expected.items():
        assert make(spec).lookahead == lookahead, spec
    for spec in [
        "conformer-k15-f4-abs",
        "conformer-k31-f2-rel",
        "transformer-f4-rel",
        "blstm",
        "ebranchformer-k31-f4-rel",
        "ebranchformer-k31-f4-abs",
        "res-conformer-k15-f4-rel-e4",
        "down2-conformer-k15-f4-rel",
    ]:
        op = make(spec)
        assert op.lookahead == UNBOUNDED and not op.streamable, spec


def test_rel_shift_matches_gather():
    B, H, T = 2, 3, 5
    scores = torch.randn(B, H, T, 2 * T - 1)
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    index = (T - 1 - i + j).expand(B, H, T, T)  # column of relative position i - j
    assert torch.equal(rel_shift(scores), scores.gather(-1, index))


def test_attention_masks():
    valid = torch.tensor([[True, True, True, False]])
    local = attention_mask("local", valid, window=1, right=0)[0, 0].int()
    assert local.tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]  # padded query sees all
    chunk = attention_mask("chunk", valid[:, :3], chunk=2)[0, 0].int()
    assert chunk.tolist() == [[1, 1, 0], [1, 1, 0], [1, 1, 1]]


@pytest.mark.parametrize(
    "spec",
    [
        "conformer-k3-f2-rel",
        "transformer-f2-local-w2",
        "lstm",
        "blstm",
        "tdnn-k3-d1-bn",
        "conv2d4x",
        "res-tdnn-k3-d1-e4",
        "ebranchformer-k3-f2-rel",
        "ebranchformer-k3-f2-chunk-c4",
    ],
)
def test_training_with_empty_and_short_utterances(spec):
    """Train mode (dropout, batch norm stats): padded outputs stay zero and gradients stay finite."""
    op = ops.build(spec, DIM, dropout=0.1).train()
    x = torch.randn(3, 12, DIM, requires_grad=True)
    y, out_lengths = op(x, torch.tensor([12, 5, 0]))
    assert torch.equal(y[1, out_lengths[1] :], torch.zeros_like(y[1, out_lengths[1] :]))
    assert torch.equal(y[2], torch.zeros_like(y[2]))
    y.pow(2).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in op.parameters() if p.grad is not None)
    assert torch.isfinite(x.grad).all()


def test_flops_known_answers():
    assert ops.build("linear", 8, 5).flops(10) == 10 * 8 * 5
    assert ops.build("tdnn-k3-d2-s3", 8, 6).flops(10) == 4 * 3 * 8 * 6
    assert ops.build("septdnn-k5-d1", 8, 6).flops(10) == 10 * (5 * 8 + 8 * 6)
    assert ops.build("lstm", 8, 6).flops(10) == 10 * 4 * 6 * (8 + 6)
    assert ops.build("skip", 8).flops(10) == 0
    # local attention costs O(T * window), full attention O(T^2)
    local, full = ops.build("transformer-f4-local-w4", 16), ops.build("transformer-f4-abs", 16)
    assert local.flops(2000) < full.flops(2000) / 10


def test_tone_peaks_in_the_same_mel_band():
    """A 1 kHz tone: fbank and the (untrained) learnable filterbank peak in the mel band of 1 kHz."""
    t = torch.arange(16000, dtype=torch.float64) / 16000
    wav = torch.sin(2 * math.pi * 1000 * t)[None, :, None]
    band = round(1000 / (2595 * math.log10(1 + 8000 / 700) / 81)) - 1  # HTK mel(1000 Hz) = 1000
    for spec in ["fbank", "learnfb"]:
        y, _ = make(spec)(wav, torch.tensor([16000]))
        assert abs(int(y[0, 50].argmax()) - band) <= 1, spec


def test_conformer_and_lstm_map_dims():
    x = torch.randn(2, 7, 12)
    for spec in [
        "conformer-k3-f2-chunk-c4",
        "transformer-f2-rel",
        "lstm",
        "blstm",
        "conv2d4x",
        "linear",
        "zero",
        "ebranchformer-k3-f2-rel",
        "tdnn-k3-d1-e8",
    ]:
        y, _ = ops.build(spec, 12, 16).eval()(x, torch.tensor([7, 4]))
        assert y.shape[-1] == 16, spec


def test_residual_is_x_plus_the_op_and_forwards_its_declarations():
    torch.manual_seed(0)
    x, lengths = inputs("linear", 11, batch=2), torch.tensor([11, 6])
    for spec in ["res-tdnn-k5-d2", "res-tdnn-k3-d1-e4", "res-ebranchformer-k3-f2-chunk-c4", "res-lstm"]:
        res = make(spec)
        inner = res.op
        y, out_lengths = res(x, lengths)
        expected = ops.mask_padding(x, lengths) + inner(x, lengths)[0]
        assert torch.equal(y, expected) and out_lengths is lengths, spec
        for name in ("stride", "lookahead", "streamable", "graph_safe", "parameter_free"):
            assert getattr(res, name) == getattr(inner, name), (spec, name)
        assert res.flops(50) == inner.flops(50)
        res.input_masked = True  # the network's mark reaches the op that reads the same input
        assert inner.input_masked
    assert not make("res-lstm").graph_safe and make("res-tdnn-k3-d1").graph_safe


def test_width_projects_to_the_inner_width_and_back():
    op = ops.build("tdnn-k3-d2-s3-e4", 8, 6)
    assert (op.proj_in.out_features, op.op.conv.in_channels, op.op.conv.out_channels) == (4, 4, 4)
    assert op.proj_out.out_features == 6 and op.op.spec == "tdnn-k3-d2-s3"
    assert (op.stride, op.lookahead) == (3, 2)
    assert op.flops(10) == 10 * 8 * 4 + 4 * 3 * 4 * 4 + 4 * 4 * 6
    narrow = ops.build("conformer-k15-f4-rel-e4", 8)
    assert narrow.op.attention.dim == 4 and narrow.lookahead == UNBOUNDED and not narrow.streamable
    params = sum(p.numel() for p in ops.build("tdnn-k3-d1-e4", 8).parameters())
    assert params == (8 * 4 + 4) + (3 * 4 * 4 + 4 + 2 * 4) + (4 * 8 + 8)  # in, TDNN (+ BatchNorm), out


def test_skip_in_a_residual_edge_drops_the_layer():
    """A residual edge whose skip is chosen is the network without that layer, output for output."""
    from supernet.derived import Encoder
    from supernet.search.mixed_op import EdgePlan, MixedOp

    torch.manual_seed(0)
    first, middle, last = (ops.build(s, DIM) for s in ["res-tdnn-k3-d1", "res-tdnn-k5-d2", "res-tdnn-k3-d2"])
    edge = MixedOp("e", [middle, ops.build("skip", DIM)], ["res-tdnn-k5-d2", "skip"])
    head = ops.build("linear", DIM, 5)
    net = Encoder(ops.build("linear", DIM, DIM), [first, edge, last], head).double().eval()
    shallow = Encoder(net.input, [first, last], head).eval()
    x, lengths = inputs("linear", 17, batch=2), torch.tensor([17, 9])
    edge.plan = EdgePlan("single", index=1)
    assert torch.equal(net(x, lengths)[0], shallow(x, lengths)[0])
    edge.plan = EdgePlan("single", index=0)
    assert not torch.allclose(net(x, lengths)[0], shallow(x, lengths)[0])


def test_ebranchformer_merges_two_branches_and_starts_with_an_open_gate():
    op = make("ebranchformer-k5-f2-m3-rel")
    assert op.cgmlp.conv.weight.abs().max() < 1e-4 and torch.equal(op.cgmlp.conv.bias, torch.ones(8))
    assert (op.merge_conv.in_channels, op.merge_conv.groups, op.merge_proj.in_features) == (16, 16, 16)
    assert op.cgmlp.proj_in.out_features == 16 and op.cgmlp.proj_out.in_features == 8
    x = inputs("linear", 9, batch=2).requires_grad_()
    y, _ = ops.build("ebranchformer-k5-f2-rel", DIM, dropout=0.1).double().train()(x, torch.tensor([9, 4]))
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[1, 4:].abs().max() == 0  # padding gets no gradient


@pytest.mark.parametrize("family", ["conformer-k5-f2-rel", "ebranchformer-k5-f2-local-w4-l2"])
def test_an_open_block_is_the_closed_one_without_its_final_layernorm(family):
    """`-open` drops only the final LayerNorm: the closed block's output is LayerNorm of the open
    one's, weight for weight, so the open block leaves `x + g(x)` on the residual stream."""
    closed, opened = make(family), make(f"{family}-open")
    assert isinstance(opened.norm_out, torch.nn.Identity)
    opened.load_state_dict({k: v for k, v in closed.state_dict().items() if not k.startswith("norm_out.")})
    x, lengths = inputs("linear", 13, batch=2) * 4, torch.tensor([13, 7])
    y_open, y_closed = opened(x, lengths)[0], closed(x, lengths)[0]
    expected = ops.mask_padding(torch.nn.functional.layer_norm(y_open, (DIM,)), lengths)
    assert torch.allclose(y_closed, expected, atol=1e-10)
    assert y_open[0].std() > 2  # not normalised: the stream keeps the input's scale
    assert (
        sum(p.numel() for p in closed.parameters()) - sum(p.numel() for p in opened.parameters()) == 2 * DIM
    )


def test_norm_wrapper_is_the_op_after_a_layernorm_and_forwards_its_declarations():
    head = make("norm-linear")
    x, lengths = inputs("linear", 9, batch=2) * 3, torch.tensor([9, 5])
    y, out_lengths = head(x, lengths)
    expected = ops.mask_padding(head.op.proj(torch.nn.functional.layer_norm(x, (DIM,))), lengths)
    assert torch.allclose(y, expected, atol=1e-12) and torch.equal(out_lengths, lengths)
    inner = make("norm-tdnn-k3-d2-causal")
    for name in ("stride", "lookahead", "streamable", "graph_safe"):
        assert getattr(inner, name) == getattr(inner.op, name), name
    assert inner.flops(20) == inner.op.flops(20)


def test_parse_spec():
    parsed = ops.parse_spec("conformer-k15-f4-local-w16")
    assert parsed.family == "conformer" and parsed.numbers == {"k": 15, "f": 4, "w": 16}
    assert parsed.words == {"local"}


@pytest.mark.parametrize(
    "spec, in_dim, out_dim, message",
    [
        ("tdnn-k3-x2", 8, None, "unknown token 'x2'"),
        ("resnet-k3", 8, None, "valid families: ['blstm', 'conformer'"),
        ("", 8, None, "non-empty string"),
        ("tdnn-k3-k5", 8, None, "given twice"),
        ("tdnn-k3-abs", 8, None, "tdnn takes no 'abs' token; valid: ['k<int>'"),
        ("lstm-k3", 8, None, "lstm takes no 'k' token; valid: none"),
        ("tdnn-k0", 8, None, "kernel k0 is out of range"),
        ("conformer-k15-abs-rel", 8, None, "choose one of abs|rel|local|chunk"),
        ("conformer-k15-f4-w16", 8, None, "w16 only applies to 'local'"),
        ("transformer-f4-h3", 8, None, "not divisible by 3 heads"),
        ("skip", 8, 4, "skip needs in_dim == out_dim"),
        ("blstm", 8, 5, "even out_dim"),
        ("fbank", 80, None, "needs in_dim 1"),
        ("res-tdnn-k3-d1-s3", 8, None, "a residual layer needs stride 1"),
        ("res-conv2d4x", 8, None, "has stride 4"),
        ("res-tdnn-k3", 8, 4, "a residual layer needs in_dim == out_dim"),
        ("res-skip", 8, None, "use 'skip' to drop a layer"),
        ("res-zero", 8, None, "no branch to add"),
        ("down2-tdnn-k3-d1-s3", 8, None, "has stride 3"),
        ("down4-skip", 8, None, "no branch to add: down4- needs an op"),
        ("res-tdnn-q3", 8, None, "unknown token 'q3'"),
        ("skip-e4", 8, None, "no inner width"),
        ("tdnn-k3-e0", 8, None, "in_dim must be a positive int"),
        ("ebranchformer-k3-f2-c4", 8, None, "c4 only applies to 'chunk'"),
        ("ebranchformer-k3-bn", 8, None, "ebranchformer takes no 'bn' token"),
        ("tdnn-k3-open", 8, None, "tdnn takes no 'open' token"),
        ("norm-skip", 8, None, "norm- would add a LayerNorm with nothing to feed"),
    ],
)
def test_bad_specs_raise_clear_errors(spec, in_dim, out_dim, message):
    with pytest.raises(ValueError) as error:
        ops.build(spec, in_dim, out_dim)
    assert message in str(error.value)
    assert repr(spec) in str(error.value)  # every error names the spec


def test_build_options():
    assert ops.build("tdnn-k3-d1", 8, dropout=0.3).dropout.p == 0.3
    assert ops.build("skip", 8, dropout=0.3).parameter_free  # dropout accepted by every family
    assert ops.build("conv2d4x", 20, 8, channels=4).conv1.out_channels == 4
    with pytest.raises(ValueError, match="unknown build options"):
        ops.build("tdnn-k3-d1", 8, heads=2)


def test_network_skips_remasking_clean_inputs_and_padding_stays_invisible():
    """Inside a network an op's input is another op's output (zero padding): the loop marks every
    op after the input op so TDNN and skip do not mask it again. The network output must not change,
    and garbage in the padding of the *features* must still be invisible."""
    from supernet.derived import Encoder
    from supernet.search.mixed_op import EdgePlan, MixedOp

    torch.manual_seed(0)
    layers = [
        "tdnn-k5-d2",
        "skip",
        "res-tdnn-k3-d1",
        "tdnn-k3-d1-s3",
        "skip-s2",
        "tdnn-k3-d2",
        "tdnn-k3-d1-e4",
    ]
    edge = MixedOp("e", [ops.build("skip", DIM), ops.build("tdnn-k3-d1", DIM)], ["skip", "tdnn-k3-d1"])
    net = Encoder(
        ops.build("linear", DIM, DIM),
        [*(ops.build(s, DIM) for s in layers), edge],
        ops.build("linear", DIM, 5),
    )
    net = net.double().eval()
    assert not net.input.input_masked
    assert all(op.input_masked for op in [*net.layers[:-1], *edge.candidates, net.head])
    x = inputs("linear", 21, batch=2)
    garbage = x.clone()
    garbage[0, 13:] = 1e3 * torch.randn_like(garbage[0, 13:])
    for index in range(2):
        edge.plan = EdgePlan("single", index=index)
        alone, _ = net(x[:1, :13], torch.tensor([13]))
        batched, _ = net(garbage, torch.tensor([13, 21]))
        assert torch.allclose(batched[0, : alone.shape[1]], alone[0], rtol=0, atol=1e-9)
        for op in [*net.layers[:-1], *edge.candidates, net.head]:
            op.input_masked = False
        remasked, _ = net(garbage, torch.tensor([13, 21]))
        for op in [*net.layers[:-1], *edge.candidates, net.head]:
            op.input_masked = True
        assert torch.equal(batched, remasked)


def test_masks_and_strided_lengths_are_shared_within_a_pass_and_follow_in_place_changes():
    """Ops of one pass reuse the lengths' masks (one launch, not one per candidate), yet an in-place
    change of the lengths, inference mode or a new lengths tensor never gets a stale mask."""
    from ops.base import lengths_to_mask, strided_lengths

    lengths = torch.tensor([5, 2])
    mask = lengths_to_mask(lengths, 6)
    assert lengths_to_mask(lengths, 6) is mask
    assert lengths_to_mask(lengths, 6, valid=False) is not mask
    assert torch.equal(lengths_to_mask(lengths, 6, valid=False), ~mask)
    assert strided_lengths(lengths, 2) is strided_lengths(lengths, 2)
    assert strided_lengths(lengths, 2).tolist() == [3, 1]
    lengths[1] = 4  # in place: a new version, so new masks and strided lengths
    assert lengths_to_mask(lengths, 6).tolist() == [[True] * 5 + [False], [True] * 4 + [False] * 2]
    assert strided_lengths(lengths, 2).tolist() == [3, 2]
    assert mask.tolist()[1] == [True] * 2 + [False] * 4  # the old mask is untouched
    from ops.base import _DERIVED

    assert _DERIVED[lengths][0] == lengths._version  # only the latest version's tensors are kept
    assert set(_DERIVED[lengths][1]) == {("valid", 6), ("stride", 2)}
    with torch.inference_mode():
        inference_lengths = torch.tensor([3])
        assert lengths_to_mask(inference_lengths, 4) is not lengths_to_mask(inference_lengths, 4)
    # an inference tensor used outside inference mode (it has no version counter): made, not kept
    assert lengths_to_mask(inference_lengths, 4).tolist() == [[True] * 3 + [False]]
    assert torch.equal(lengths_to_mask(torch.tensor([5, 2]), 6), mask)  # another tensor: its own mask


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the channels-last TDNN runs on a GPU")
@pytest.mark.parametrize(
    "spec", ["tdnn-k5-d2", "tdnn-k3-d1-s3", "tdnn-k4-d1-s2", "septdnn-k5-d2", "tdnn-k3-d2-causal"]
)
def test_gpu_tdnn_equals_the_cpu_path(spec):
    """The GPU's channels-last TDNN (shared masks, NHWC convolution) gives the CPU path's numbers,
    padding included, on a batch of unequal lengths whose padding holds garbage."""
    op = make(spec).cuda()
    x = inputs(spec, 23, batch=3).cuda()
    x[1, 9:] = 1e3
    lengths = torch.tensor([23, 9, 17], device="cuda")
    for masked_input in (False, True):
        op.input_masked = masked_input
        source = (
            x if not masked_input else torch.where(ops.base.lengths_to_mask(lengths, 23)[..., None], x, 0.0)
        )
        gpu, gpu_lengths = op(source, lengths)
        cpu, cpu_lengths = op.forward_channels_first(source, lengths)
        stride = op.stride
        assert gpu_lengths.tolist() == cpu_lengths.tolist() == [-(-n // stride) for n in (23, 9, 17)]
        assert torch.allclose(gpu, cpu, rtol=1e-9, atol=1e-9), (spec, masked_input)
