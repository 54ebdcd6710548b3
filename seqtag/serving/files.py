"""The names and versions of the files seqtag exports: what each format writes to say what it is,
and where. Plain Python, so that the torch-free ONNX runner reads the same names the exporters
write.

Each exported file carries a JSON object named :data:`METADATA_NAME` (an ``_extra_files`` entry of
a TorchScript file, the manifest file of a ``torch.export`` directory, a ``metadata_props`` entry
of an ONNX model) with ``format`` (one of the ``*_FORMAT`` names) and ``format_version``
(:data:`FORMAT_VERSION`, the version this seqtag writes and reads).
"""

METADATA_NAME = "seqtag.json"
FORMAT_VERSION = 1
TORCHSCRIPT_FORMAT = "seqtag.torchscript"
TORCH_EXPORT_FORMAT = "seqtag.torch_export"
ONNX_FORMAT = "seqtag.onnx"
WITH_MARGINALS = "with_marginals"
"""The ONNX graph's optional boolean input (default true): false skips the CRF's
forward-backward, and ``confidence``, ``marginals`` and ``log_partition`` are then 0."""
