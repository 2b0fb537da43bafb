"""Deployment of a retrained model: ONNX export with its metadata, a parity check against PyTorch,
int8 dynamic quantisation, and greedy transcription with onnxruntime or the checkpoint.

The modules import onnx / onnxruntime only where they are used (the ``deploy`` extra:
``pip install supernet[deploy]``), so the rest of supernet runs without them.
"""
