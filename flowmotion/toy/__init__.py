"""The embedded model's world: procedural videos of shapes moving over backgrounds, and the
script that trains a small Wan-architecture text-to-video model on them (see train.py)."""
