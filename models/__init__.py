"""Spinal's reference models: data preparation, training, evaluation and model cards.

Not part of the installed distribution: the training scripts under ``models/<name>/train.py``
and the tests under ``tests/models/`` import these helpers from a source checkout.
"""
