"""Serving: TorchScript, ``torch.export``, the ONNX exporter and its torch-free runner, the
any-format predictor behind ``seqtag predict``, the HTTP server behind ``seqtag serve``, and
confidence calibration.

Each name below is imported from its module on first use (:func:`seqtag.lazy.attach`), so that
``OnnxTagger`` loads where torch cannot be imported.
"""

from seqtag.lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "torchscript": ["load_torchscript", "to_torchscript"],
    "torch_export": ["TorchExportTagger", "load_torch_export", "to_torch_export"],
    "onnx_export": ["to_onnx", "to_onnx_int8"],
    "onnx_runner": ["OnnxTagger"],
    "predictor": ["Predictor", "load_predictor", "model_kind"],
    "server": ["create_app"],
    "hf_tagging": ["tag_dataset"],
    "calibration": ["expected_calibration_error", "plot_reliability"],
})  # fmt: skip
