"""ml_collections configs, one file per experiment (run command + expected result inside)."""
