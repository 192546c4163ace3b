"""The FlowMotion backend: a ZeroMQ job server around the flowmotion library (see backend.cli)."""
