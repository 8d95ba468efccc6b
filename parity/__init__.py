"""The parity suite: proves tinynn computes what Keras 3 computes.

This package imports Keras and TensorFlow (``pip install -e .[test]``); ``tinynn`` never imports it.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # oneDNN reorders float sums; keep TF's reference kernels
