"""Serving: TorchScript, torch.export, the ONNX exporter and its torch-free runner, the any-format predictor, calibration."""
