"""Models that live outside the package: a learner's script, an ONNX file, and the one place a model spec
(a registry name, `file.py[:Name]` or `model.onnx`) is resolved. Imports cnnlab.models, never engine or above."""
