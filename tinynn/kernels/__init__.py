"""Pure array kernels (no layer objects): a readable NumPy reference and a numba twin for each.

Modules: ``conv`` (1-D convolution forward / backward-data / backward-filter), ``pooling`` (1-D max and
average pooling forward / backward), ``recurrent`` (the SimpleRNN / LSTM / GRU time loops and their BPTT;
NumPy twins in ``recurrent_reference``), ``embedding`` (the table gradient's scatter-add), ``fastmath``
(vectorisable tanh/sigmoid and single-threaded GEMM helpers for the recurrent loops). numba does the index
work (``@numba.njit(cache=True)``), BLAS does the FLOPs (NumPy matmul called from Python).
"""
