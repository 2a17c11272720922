"""Export: ONNX step graphs (``export.onnx_export``), their metadata
(``export.metadata``, torch-free) and TensorRT engines (``export.tensorrt_build``).

Nothing is imported here, so runtimes can read ``export.metadata`` without torch.
"""
