"""The network: ``TwoLayerNet`` (net), its checked file format (files) and PyTorch export (export)."""
