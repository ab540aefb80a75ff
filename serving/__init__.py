"""The serving API: FastAPI on :8080, one ONNX model in memory, feedback and retraining."""
