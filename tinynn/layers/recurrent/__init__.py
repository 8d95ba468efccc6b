"""Recurrent layers: SimpleRNN, LSTM, GRU and the Bidirectional wrapper (Keras 3 semantics).

``base`` holds what the three cells share (inputs, masks, states, dropout, outputs, input-side GEMMs);
the time loops and BPTT are in ``tinynn.kernels.reference.recurrent`` (plain NumPy, read first) and
``tinynn.kernels.recurrent`` (numba).
"""

from .base import RecurrentLayer
from .bidirectional import Bidirectional
from .gru import GRU
from .lstm import LSTM
from .simple_rnn import SimpleRNN

__all__ = ["GRU", "LSTM", "Bidirectional", "RecurrentLayer", "SimpleRNN"]
