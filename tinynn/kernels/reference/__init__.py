r"""The readable statement of every layer's math, in plain NumPy: read these first.

One module per family, mirroring the fast modules of :mod:`tinynn.kernels` (numba loops, threads, fused
special cases); the symbols of the equations are the variable names, and each docstring carries the math:

=====================  ===================================================  =================================
module                 functions                                            fast counterpart
=====================  ===================================================  =================================
``conv2d``             ``conv2d_forward``, ``conv2d_backward_data``,        ``kernels.conv2d``
                       ``conv2d_backward_filter``, ``depthwise_conv2d_*``,
                       ``im2col``, ``col2im``
``pooling2d``          ``max_pool2d_*``, ``avg_pool2d_*``                   ``kernels.pooling2d``
=====================  ===================================================  =================================

``tinynn.config.set_kernels("reference")`` (or ``with tinynn.config.kernels("reference"): ...``) makes a layer
compute through these functions only: no numba, no threads, no fused special cases.
"""
