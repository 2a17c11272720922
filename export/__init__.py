"""Export: ONNX step graphs (``llmcodec.export.onnx_export``), their metadata
(``llmcodec.export.metadata``, torch-free) and TensorRT engines (``llmcodec.export.tensorrt_build``).

Nothing is imported here, so runtimes can read ``llmcodec.export.metadata`` without torch.
"""
