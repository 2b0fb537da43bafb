"""The unpacked LSTM / BLSTM that ONNX export traces (``ops.recurrent``): known answers of the
within-length reversal, the unpacked formulation against the packed one that training runs (float64,
equal and unequal lengths, an empty utterance, garbage in the padding, two layers stacked), and the
exported op alone in onnxruntime against PyTorch on other batch sizes and lengths than traced."""

from __future__ import annotations

import pytest
import torch

import ops
from ops.base import mask_padding
from ops.recurrent import LSTM, reverse_within

LENGTHS = {"equal": [9, 9, 9], "unequal": [9, 4, 1], "empty": [6, 0, 9]}


def valid(y: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    return mask_padding(y, lengths)


def test_reverse_within_known_answer():
    x = torch.arange(8.0).reshape(2, 4, 1)  # rows 0 1 2 3 and 4 5 6 7
    out = reverse_within(x, torch.tensor([3, 1]))[..., 0]
    assert out.tolist() == [[2.0, 1.0, 0.0, 3.0], [4.0, 5.0, 6.0, 7.0]]  # padding left in place
    assert reverse_within(x, torch.tensor([4, 0]))[..., 0].tolist() == [
        [3.0, 2.0, 1.0, 0.0],
        [4.0, 5.0, 6.0, 7.0],
    ]
    y = torch.randn(3, 7, 5)
    lengths = torch.tensor([7, 3, 5])
    assert torch.equal(reverse_within(reverse_within(y, lengths), lengths), y)  # its own inverse


@pytest.mark.parametrize("lengths", LENGTHS.values(), ids=LENGTHS.keys())
@pytest.mark.parametrize("name", ["lstm", "blstm"])
def test_unpacked_matches_packed_in_float64(name, lengths):
    """What export traces = what training runs, on the valid frames, to 1e-10; padding junk in the
    input changes nothing (the packed path never reads it, the unpacked one must not either)."""
    torch.manual_seed(0)
    layers = [
        ops.build(name, 12, 16, dropout=0.0).double().eval(),
        ops.build(name, 16, 10, dropout=0.0).double().eval(),
    ]
    lengths = torch.tensor(lengths)
    x = torch.randn(3, 9, 12, dtype=torch.float64)
    junk = x.clone()
    junk[torch.arange(9)[None, :] >= lengths[:, None]] = 1e3  # other padding
    packed, unpacked, unpacked_junk = x, x, junk
    for layer in layers:  # two layers stacked, each one's masked output feeding the next
        assert isinstance(layer, LSTM)
        packed = valid(layer.packed(packed, lengths), lengths)
        unpacked = valid(layer.unpacked(unpacked, lengths), lengths)
        unpacked_junk = valid(layer.unpacked(unpacked_junk, lengths), lengths)
    assert packed.abs().max() > 0.01
    assert (unpacked - packed).abs().max() <= 1e-10
    assert (unpacked_junk - packed).abs().max() <= 1e-10


def test_blstm_backward_direction_starts_at_each_utterance_end():
    """The backward half of a short utterance's output is that of the utterance alone, not of it
    followed by padding (which an unpacked bidirectional nn.LSTM would give)."""
    torch.manual_seed(1)
    op = ops.build("blstm", 6, 8, dropout=0.0).double().eval()
    x = torch.randn(2, 7, 6, dtype=torch.float64)
    lengths = torch.tensor([7, 3])
    alone = op.packed(x[1:, :3], torch.tensor([3]))
    assert (op.unpacked(x, lengths)[1, :3] - alone[0]).abs().max() <= 1e-10
    naive = op.rnn(x)[0][1, :3]  # padding read by the backward direction
    assert (naive[:, 4:] - alone[0, :, 4:]).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["lstm", "blstm"])
def test_exported_op_matches_pytorch_in_onnxruntime(name, tmp_path):
    """The op alone through the project's exporter (torch.export, then the dynamo ONNX exporter),
    run by onnxruntime on another batch size and other lengths than traced."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from supernet.deploy.onnx_export import export_module, save

    torch.manual_seed(2)
    op = ops.build(name, 12, 16, dropout=0.0).eval()
    example = (torch.randn(2, 20, 12), torch.tensor([20, 13]))
    proto, shortest = export_module(op, example, ("x", "lengths"), ("y", "y_lengths"), 18)
    assert "LSTM" in {node.op_type for node in proto.graph.node}
    save(proto, tmp_path / "op.onnx")
    session = ort.InferenceSession(str(tmp_path / "op.onnx"), providers=["CPUExecutionProvider"])
    x, lengths = torch.randn(3, 31, 12), torch.tensor([31, 7, 18])
    assert shortest <= 7
    y, y_lengths = session.run(None, {"x": x.numpy(), "lengths": lengths.numpy()})
    with torch.no_grad():
        reference = op(x, lengths)[0]
    assert y.shape == (3, 31, 16) and y_lengths.tolist() == lengths.tolist()
    assert (torch.from_numpy(y) - reference).abs().max() <= 1e-5
