"""Kronecker-structured points: ``KroneckerData`` (kronecker), nearest-Kronecker structure
detection (structure) and contractions of the initial weights with points (contract)."""
