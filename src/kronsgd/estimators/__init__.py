"""scikit-learn estimators over the engine (scikit-learn is an optional extra)."""
