"""Exporters: ONNX (`onnx.export_onnx`)."""
