r"""The readable statement of every layer's math, in plain NumPy: read these first.

One module per family, mirroring the fast modules of :mod:`tinynn.kernels` (numba loops, threads, fused special
cases); the symbols of the equations are the variable names, and each docstring carries the math:

=====================  ===================================================  =================================
module                 functions                                            fast counterpart
=====================  ===================================================  =================================
``dense``              ``dense_forward``, ``dense_backward``                (the same: NumPy's BLAS matmul)
``bias_activation``    ``bias_activation_forward``, ``_backward``           ``kernels.bias_activation``
``conv``               ``conv1d_forward``, ``conv1d_backward_data``,        ``kernels.conv``,
                       ``conv1d_backward_filter``, ``conv_padding``,        ``kernels.winograd1d``
                       ``winograd1d_*`` transforms
``pooling``            ``max_pool1d_*``, ``avg_pool1d_*``                   ``kernels.pooling``
``conv2d``             ``conv2d_forward``, ``conv2d_backward_data``,        ``kernels.conv2d``,
                       ``conv2d_backward_filter``, ``depthwise_conv2d_*``,  ``kernels.winograd``,
                       ``winograd_*`` and ``winograd_width_*`` transforms,  ``kernels.winograd_width``
                       ``conv_output_size``
``pooling2d``          ``max_pool2d_*``, ``avg_pool2d_*``                   ``kernels.pooling2d``
``embedding``          ``embedding_forward``, ``scatter_add``               ``kernels.embedding``
``windows``            ``share_identical_windows`` (``row_ids``,          ``kernels.windows``
                       ``window_ids``): identical conv windows, one output;
                       ``distinct_rows``: a conv's distinct steps;
                       ``first_positions``: an Embedding's distinct ids
``sparse``             ``scatter_chain``, ``chain_values``: optimizer      ``kernels.sparse``
                       steps on an Embedding's per-occurrence rows
``recurrent``          ``simple_rnn_*``, ``lstm_*``, ``gru_*`` (BPTT)       ``kernels.recurrent``
``layout``             ``to_time_major``, ``to_batch_major``                ``kernels.layout``
=====================  ===================================================  =================================

The optimizers' fused dense steps (``kernels.optimizer_steps``: RMSprop, Adam) have no module here: their NumPy
twin is the optimizer's own ``update_step`` (:mod:`tinynn.optimizers`), which the reference mode runs.

``tinynn.config.set_kernels("reference")`` (or ``with tinynn.config.kernels("reference"): ...``) makes every
layer compute through these functions only: no numba, no threads, no fused special cases, so a debugger can step
through them inside ``fit``, and ``backward`` may be called repeatedly after one ``forward``. Both modes
compute the same numbers (float64 training runs agree to 1e-12 relative: ``tests/test_kernel_modes.py``).
"""
