"""The names and versions of the files seqtag exports: what each format writes to say what it is,
and where. Plain Python, so that the torch-free ONNX runner reads the same names the exporters
write.

Each exported file carries a JSON object named :data:`METADATA_NAME` (an ``_extra_files`` entry of
a TorchScript file, the manifest file of a ``torch.export`` directory, a ``metadata_props`` entry
of an ONNX model) with ``format`` (one of the ``*_FORMAT`` names) and ``format_version``
(:data:`FORMAT_VERSIONS`: per format, the version this seqtag writes and the newest it reads;
:func:`check_format` refuses the rest).
"""

from __future__ import annotations

from seqtag.errors import SeqtagError

METADATA_NAME = "seqtag.json"
TORCHSCRIPT_FORMAT = "seqtag.torchscript"
TORCH_EXPORT_FORMAT = "seqtag.torch_export"
ONNX_FORMAT = "seqtag.onnx"
FORMAT_VERSIONS = {TORCHSCRIPT_FORMAT: 1, TORCH_EXPORT_FORMAT: 1, ONNX_FORMAT: 2}
"""Per format, the version this seqtag writes and the newest it reads (every older one too).
ONNX 2: ``with_marginals`` is a required input; in version 1 it was an input with a default,
which some bindings of ONNX Runtime (Node.js) do not take as an input."""

ONNX_INPUTS = ("words", "cases", "chars", "lengths")
"""The ONNX graph's id inputs, in order (a model with a pretrained encoder takes the encoder's too)."""
WITH_MARGINALS = "with_marginals"
"""The ONNX graph's required boolean scalar input: false skips the marginals (the CRF's
forward-backward, the softmax), and ``confidence``, ``marginals`` and ``log_partition`` are then 0."""
ONNX_OUTPUTS = ("tags", "confidence", "marginals", "emissions", "log_partition")
"""The ONNX graph's outputs, in order."""
CASE_RULE = "seqtag.vocab.case_id/1"  # the name of the case rule (docs/serving.md) since 0.2.0
"""The case feature: 1 when lowercasing changes nothing, 2 when it changes only the first
character, 3 otherwise (0 is padding); the ONNX metadata names the rule it was trained with."""


def check_format(meta: dict, expected: str, where: str) -> int:
    """The ``format_version`` of an exported file's metadata ``meta`` (a dict), once its
    ``format`` is ``expected`` and its version one this seqtag reads.

    Raises:
        SeqtagError: another format, a version that is not a positive integer, or one newer
            than :data:`FORMAT_VERSIONS` (one line naming ``where``, the file).

    >>> check_format({"format": ONNX_FORMAT, "format_version": 1}, ONNX_FORMAT, "t.onnx")
    1
    >>> check_format({"format": ONNX_FORMAT, "format_version": 99}, ONNX_FORMAT, "t.onnx")
    Traceback (most recent call last):
    ...
    seqtag.errors.SeqtagError: t.onnx: format_version 99 of seqtag.onnx, newer than this seqtag reads (2): export it again with this seqtag, or upgrade seqtag
    """
    if meta.get("format") != expected:
        raise SeqtagError(
            f"{where}: {METADATA_NAME} says format {meta.get('format')!r}, expected {expected!r}"
        )
    version, newest = meta.get("format_version"), FORMAT_VERSIONS[expected]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise SeqtagError(
            f"{where}: {METADATA_NAME}: expected a positive integer format_version, got {version!r}"
        )
    if version > newest:
        raise SeqtagError(
            f"{where}: format_version {version} of {expected}, newer than this seqtag reads ({newest}): "
            "export it again with this seqtag, or upgrade seqtag"
        )
    return version
