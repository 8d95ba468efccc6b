"""Pure array kernels (no layer objects): a readable NumPy reference and a fast twin for each.

``reference/`` holds the plain NumPy statement of each family's math (read it first); the modules here are the
fast versions the layers run by default (``tinynn.config.kernel_mode() == 'fast'``): ``conv`` (1-D convolution
forward / backward-data / backward-filter, depthwise as a direct loop), ``pooling`` (1-D max, average and
global pooling), ``recurrent`` (the
SimpleRNN / LSTM / GRU time loops and their BPTT), ``embedding`` (the table gradient's scatter-add),
``windows`` (bit-identical conv windows share one output), ``sparse`` (optimizer steps on per-occurrence rows),
``bias_activation`` (a layer's bias + activation tail in one pass), and their shared helpers: ``blas`` (every
matrix product: one single-threaded BLAS call per piece), ``cblas`` (numpy's own BLAS bound for numba, and its
thread count), ``fastmath`` (the activation codes and vectorisable tanh / sigmoid), ``layout`` (time-major and
grouped layouts), ``parallel`` (work split over cores, the scope every kernel call runs in), ``denormals``
(subnormals flushed to zero inside the kernels), ``warmup`` (the NumPy twins run while numba compiles in the
background). numba does the index work (``@numba.njit(cache=True)``), BLAS does the FLOPs.
"""
