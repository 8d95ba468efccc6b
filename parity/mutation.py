"""Mutation check: plant plausible bugs in tinynn one at a time and prove the parity suite's ``ci`` run
catches each one.

``python -m parity.mutation`` (``make mutation``) copies the ``tinynn`` and ``parity`` packages into a
temporary folder (the working tree is never touched), runs the mutants' tests once on the unmutated copy
(they must pass; this also fills the copy's numba caches), then for each mutant: a fresh copy of that
folder, the one edit applied, the numba caches of the copy cleared when the edit is in a kernel module
(``tinynn/kernels/``: a cached kernel is checked only against its own file, and kernels import shared
helpers), and the mutant's relevant parity tests run under the ``ci`` hypothesis profile (what ``make
test`` runs). A mutant is *killed* when a test fails; the report lists the tests that failed.

Each mutant is ``(file, original snippet, replacement)``: the snippet must occur exactly once in the file
(``tests/parity/test_mutation_snippets.py`` checks this on every ``make test``, so a refactor that moves
code fails loudly instead of silently disabling a mutant; refresh the snippet then).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

CASES = "parity/cases/"


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str  # relative to the folder holding the tinynn and parity packages
    original: str
    replacement: str
    tests: tuple[str, ...]  # pytest node ids (files or functions) relative to that folder
    bug: str  # what a real bug of this kind would look like


def _t(*names: str) -> tuple[str, ...]:
    return tuple(CASES + n for n in names)


DENSE = "test_dense_parity.py::test_dense_parity"
ACT = "test_dense_parity.py::test_activation_layer_parity"
RNN = "test_recurrent_parity.py::test_rnn_parity"
BIDI = "test_recurrent_parity.py::test_bidirectional_parity"
STATEFUL = "test_recurrent_parity.py::test_stateful_parity"
WIDE = "test_recurrent_parity.py::test_wide_lstm_inference_parity"
MERGE = "test_merge_parity.py::test_elementwise_merge_parity"
GRAPH_SHARED = "test_graph_parity.py::test_two_input_two_output_model_with_shared_layer"
GRAPH_VJP = "test_graph_parity.py::test_vjp_matches_keras_gradients"
REF_RNN = "tinynn/kernels/reference/recurrent.py"

MUTANTS: tuple[Mutant, ...] = (
    Mutant("hard_sigmoid_keras2_layer", "tinynn/activations.py",
           "lambda z: np.clip(z / _cast(6, z) + _cast(0.5, z), 0, 1).astype(z.dtype),",
           "lambda z: np.clip(z * _cast(0.2, z) + _cast(0.5, z), 0, 1).astype(z.dtype),",
           _t(DENSE, ACT), "hard_sigmoid with Keras 2's slope 0.2 instead of Keras 3's 1/6"),
    Mutant("hard_sigmoid_keras2_kernel", "tinynn/kernels/fastmath.py",
           "x = v[j] / type(v[j])(6.0) + type(v[j])(0.5)",
           "x = v[j] * type(v[j])(0.2) + type(v[j])(0.5)",
           _t(RNN), "the numba kernels' hard_sigmoid with Keras 2's formula"),
    Mutant("softplus_derivative_sign", "tinynn/activations.py",
           '"softplus", lambda z: np.logaddexp(_cast(0, z), z), lambda z, a, da: da * expit(z)',
           '"softplus", lambda z: np.logaddexp(_cast(0, z), z), lambda z, a, da: da * expit(-z)',
           _t(DENSE, ACT), "softplus' derivative σ(-z) instead of σ(z)"),
    Mutant("softmax_backward_without_a", "tinynn/activations.py",
           "return a * (da - np.sum(da * a, axis=axis, keepdims=True))",
           "return a * (da - np.sum(da, axis=axis, keepdims=True))",
           _t(DENSE, ACT), "softmax's Jacobian-vector product missing the ⟨δa, a⟩ weighting"),
    Mutant("gelu_tanh_approximation", "tinynn/activations.py",
           "return 0.5 * z * special.erfc(-z * _GELU_C)",
           "return 0.5 * z * (1.0 + np.tanh(0.7978845608028654 * (z + 0.044715 * z**3)))",
           _t(DENSE, ACT), "gelu's tanh approximation where Keras's default is the exact erf form"),
    Mutant("lstm_gate_order", "tinynn/kernels/recurrent.py",
           "i, f, g, o = zb[:u], zb[u:2 * u], zb[2 * u:3 * u], zb[3 * u:]",
           "f, i, g, o = zb[:u], zb[u:2 * u], zb[2 * u:3 * u], zb[3 * u:]",
           _t(RNN, BIDI), "the numba LSTM reads its gates in the order f, i, c, o instead of Keras's i, f, c, o"),
    Mutant("lstm_fused_gate_order", "tinynn/kernels/recurrent.py",
           "zi, zf, zg, zo = zb[:u], zb[u:2 * u], zb[2 * u:3 * u], zb[3 * u:]",
           "zf, zi, zg, zo = zb[:u], zb[u:2 * u], zb[2 * u:3 * u], zb[3 * u:]",
           _t(RNN, BIDI), "the fused numba LSTM (tanh/sigmoid, Keras's default) reads its gates as f, i, c, o"),
    Mutant("lstm_inference_gate_order", "tinynn/kernels/recurrent.py",
           "zi, zf, zg, zo = z[:n], z[n:2 * n], z[2 * n:3 * n], z[3 * n:]",
           "zf, zi, zg, zo = z[:n], z[n:2 * n], z[2 * n:3 * n], z[3 * n:]",
           _t(RNN, BIDI), "the numba LSTM inference loop (feature-major, Keras's activations) reads f, i, c, o"),
    Mutant("lstm_inference_units_gate_order", "tinynn/kernels/recurrent.py",
           "zi, zf = z[:n], z[n:2 * n]  # this thread's units of each gate",
           "zf, zi = z[:n], z[n:2 * n]  # this thread's units of each gate",
           _t(WIDE), "the numba LSTM inference loop that splits the hidden units between threads reads f, i, c, o"),
    Mutant("lstm_gate_order_reference", REF_RNN,
           "i, f = rec_act(z[:, :u]), rec_act(z[:, u:2 * u])",
           "f, i = rec_act(z[:, :u]), rec_act(z[:, u:2 * u])",
           _t(RNN, BIDI), "the NumPy LSTM (activations without a numba kernel, study mode) reads f, i, c, o"),
    Mutant("gru_update_convention", "tinynn/kernels/recurrent.py",
           "hn[j] = z_j * h[j] + (type(z_j)(1.0) - z_j) * hh[j]",
           "hn[j] = (type(z_j)(1.0) - z_j) * h[j] + z_j * hh[j]",
           _t(RNN, BIDI), "numba GRU update h' = (1-z) h + z ĥ (PyTorch's) instead of Keras's z h + (1-z) ĥ"),
    Mutant("gru_inference_update_convention", "tinynn/kernels/recurrent.py",
           "hnf[k] = z_k * hf[k] + (type(z_k)(1.0) - z_k) * hh[k]",
           "hnf[k] = (type(z_k)(1.0) - z_k) * hf[k] + z_k * hh[k]",
           _t(RNN, BIDI), "the numba GRU inference loop (feature-major) with PyTorch's update convention"),
    Mutant("gru_update_convention_reference", REF_RNN,
           "h_new = z * h + (1 - z) * hh",
           "h_new = (1 - z) * h + z * hh",
           _t(RNN, BIDI), "the NumPy GRU with PyTorch's update convention"),
    Mutant("gru_reset_after_bias_outside", "tinynn/kernels/recurrent.py",
           "hh[j] += b_h[j] + r[j] * auxb[j]  # a_h = xp_h + b_h + r ⊙ hz_h",
           "hh[j] += b_h[j] + r[j] * hz_h[j] + b_rh[j]",
           _t(RNN, BIDI), "numba reset_after GRU: r ⊙ (h U) + b_rh instead of r ⊙ (h U + b_rh)"),
    Mutant("gru_reset_after_bias_outside_reference", REF_RNN,
           "a_h = xp_t[:, 2 * u:] + r * aux",
           "a_h = xp_t[:, 2 * u:] + r * (aux - b_rec[2 * u:]) + b_rec[2 * u:]",
           _t(RNN, BIDI), "the NumPy reset_after GRU with b_rh outside the reset gate"),
    Mutant("lstm_masked_step_resets_cell", "tinynn/kernels/recurrent.py",
           "                cnb[j] = cb[j]\n            for j in range(u):\n                hnb[j] = hb[j]",
           "                cnb[j] = 0 * cb[j]\n            for j in range(u):\n                hnb[j] = hb[j]",
           _t(RNN, BIDI), "a masked LSTM step zeroes the cell state instead of carrying it (numba)"),
    Mutant("lstm_inference_masked_step_resets_cell", "tinynn/kernels/recurrent.py",
           "cnr[b] = cr[b]",
           "cnr[b] = 0 * cr[b]",
           _t(RNN, BIDI), "a masked step of the numba LSTM inference loop zeroes the cell state (not carried)"),
    Mutant("lstm_inference_units_masked_step_resets_cell", "tinynn/kernels/recurrent.py",
           "cn_j[b] = c_j[b]",
           "cn_j[b] = 0 * c_j[b]",
           _t(WIDE), "a masked step of the unit-split LSTM inference loop zeroes the cell state (not carried)"),
    Mutant("lstm_masked_step_resets_cell_reference", REF_RNN,
           "cs.append(np.where(keep, c_new, c))",
           "cs.append(np.where(keep, c_new, 0 * c))",
           _t(RNN, BIDI), "a masked LSTM step zeroes the cell state (NumPy twin)"),
    Mutant("zero_output_for_mask_ignored", "tinynn/layers/recurrent/base.py",
           "return mask_t if self.zero_output_for_mask else np.logical_or.accumulate(mask_t, axis=0)",
           "return np.logical_or.accumulate(mask_t, axis=0)",
           _t(RNN, BIDI), "zero_output_for_mask ignored: masked steps repeat the last output"),
    Mutant("go_backwards_mask_not_reversed", "tinynn/layers/recurrent/base.py",
           "np.ascontiguousarray(mask.T[::-1] if self.go_backwards else mask.T)",
           "np.ascontiguousarray(mask.T)",
           _t(RNN, BIDI), "go_backwards reverses the steps but not the mask"),
    Mutant("stateful_states_not_carried", "tinynn/layers/recurrent/base.py",
           "self.states = [f.copy() for f in finals]",
           "self.states = [0 * f for f in finals]",
           _t(STATEFUL), "a stateful layer forgets its final states between calls"),
    Mutant("bidirectional_ave_gradient", "tinynn/layers/recurrent/bidirectional.py",
           "d_yf = d_yb = d / np.asarray(2, self.dtype)",
           "d_yf = d_yb = d",
           _t(BIDI), "merge_mode='ave' averages forward but passes the full gradient back"),
    Mutant("same_padding_extra_on_left", "tinynn/kernels/reference/conv.py",
           "return total // 2, total - total // 2, l_out",
           "return total - total // 2, total // 2, l_out",
           _t("test_conv_parity.py::test_conv1d_parity", "test_pooling_parity.py::test_pooling1d_parity"),
           "'same' padding puts the odd extra zero on the left (TF puts it on the right)"),
    Mutant("causal_padding_ignores_dilation", "tinynn/kernels/reference/conv.py",
           "left = (kernel_size - 1) * dilation",
           "left = kernel_size - 1",
           _t("test_conv_parity.py::test_conv1d_parity"), "causal padding (K-1) instead of (K-1)·d"),
    Mutant("channels_first_not_transposed", "tinynn/layers/conv.py",
           'return a if self.data_format == "channels_last" else a.transpose(0, 2, 1)',
           "return a",
           _t("test_conv_parity.py::test_conv1d_parity", "test_conv_parity.py::test_depthwise_conv1d_parity"),
           "channels_first inputs read as channels_last"),
    Mutant("max_pool_last_maximum", "tinynn/kernels/pooling.py",
           "better = (v > yt[c]) | ((v != v) & (yt[c] == yt[c]))",
           "better = (v >= yt[c]) | ((v != v) & (yt[c] == yt[c]))",
           _t("test_pooling_parity.py::test_pooling1d_parity"),
           "a tied max-pool window routes its gradient to the last maximum (TF: the first), numba"),
    Mutant("max_pool_last_maximum_reference", "tinynn/kernels/reference/pooling.py",
           "a[:, t] = lo + x[:, lo:hi].argmax(axis=1)",
           "a[:, t] = hi - 1 - x[:, lo:hi][:, ::-1].argmax(axis=1)",
           _t("test_pooling_parity.py::test_pooling1d_parity"),
           "the NumPy max pooling (study mode) routes a tied window's gradient to the last maximum"),
    Mutant("global_max_pool_tie_not_split", "tinynn/kernels/pooling.py",
           "n[c] = n.dtype.type(1) / n[c]",
           "n[c] = n.dtype.type(1)",
           _t("test_pooling_parity.py::test_global_max_pooling1d_parity"),
           "GlobalMaxPooling1D gives each tied maximum the whole gradient (Keras splits it)"),
    Mutant("global_max_pool_tie_not_split_reference", "tinynn/kernels/reference/pooling.py",
           "share = e / e.sum(axis=1, keepdims=True)",
           "share = e",
           _t("test_pooling_parity.py::test_global_max_pooling1d_parity"),
           "the NumPy GlobalMaxPooling1D gives each tied maximum the whole gradient"),
    Mutant("average_pool_counts_padding", "tinynn/kernels/pooling.py",
           "            n = hi - lo\n            for c in range(C):\n                y[b, t, c] /= n",
           "            n = P\n            for c in range(C):\n                y[b, t, c] /= n",
           _t("test_pooling_parity.py::test_pooling1d_parity"),
           "'same' average pooling divides by the pool size, padding included (numba)"),
    Mutant("average_pool_counts_padding_reference", "tinynn/kernels/reference/pooling.py",
           "y[:, t] = x[:, lo:hi].sum(axis=1) / (hi - lo)",
           "y[:, t] = x[:, lo:hi].sum(axis=1) / pool_size",
           _t("test_pooling_parity.py::test_pooling1d_parity"),
           "the NumPy 'same' average pooling divides by the pool size"),
    Mutant("sparse_square_after_sum", "tinynn/sparse.py",
           "return g._then(squared=True) if isinstance(g, IndexedSlices) else np.square(g)",
           "return np.square(g.to_dense()) if isinstance(g, IndexedSlices) else np.square(g)",
           _t("test_embedding_parity.py::test_optimizer_steps_on_embedding_match_keras",
              "test_conv_training.py::test_text_cnn_with_embedding_rmsprop_trains_like_keras"),
           "an Embedding's repeated ids: (Σ g)² in RMSprop/Adam/Adagrad where Keras's IndexedSlices give Σ g²"),
    Mutant("adam_epsilon_inside_sqrt", "tinynn/optimizers/adam.py",
           "w -= (m * alpha) / (np.sqrt(v) + weak(self.epsilon, dt))",
           "w -= (m * alpha) / np.sqrt(v + weak(self.epsilon, dt))",
           _t("test_optimizer_parity.py::test_adam_parity"), "Adam's ε inside the square root"),
    Mutant("rmsprop_epsilon_outside_sqrt", "tinynn/optimizers/rmsprop.py",
           "increment = divide(scale(lr, g), np.sqrt(d))",
           "increment = divide(scale(lr, g), np.sqrt(d - eps) + eps)",
           _t("test_optimizer_parity.py::test_rmsprop_parity"), "RMSprop's ε outside the square root"),
    Mutant("nesterov_without_gradient_term", "tinynn/optimizers/sgd.py",
           "w += m * mu - step",
           "w += m * mu",
           _t("test_optimizer_parity.py::test_sgd_parity"), "Nesterov momentum missing the -η·g look-ahead term"),
    Mutant("huber_delta_ignored", "tinynn/losses.py",
           "d = y_pred.dtype.type(self.delta)",
           "d = y_pred.dtype.type(1.0)",
           _t("test_loss_parity.py::test_huber_delta_matches_keras"), "Huber's delta not wired (always 1)"),
    Mutant("loss_reduction_sum_is_mean", "tinynn/losses.py",
           'if self.reduction == "sum":\n            return total_loss, weight',
           'if self.reduction == "sum":\n            return total_loss / dtype.type(values.size), weight / '
           "dtype.type(values.size)",
           _t("test_loss_parity.py::test_loss_reduction_matches_keras"), "reduction='sum' computing the mean"),
    Mutant("masked_loss_not_rescaled", "tinynn/losses.py",
           "mask_weight = dtype.type(values.size) / n_valid if n_valid else dtype.type(0)",
           "mask_weight = dtype.type(1)",
           _t("test_recurrent_training.py::test_recurrent_model_trains_like_keras"),
           "a masked loss averaged over every step (Keras 3: over the valid steps)"),
    Mutant("binary_accuracy_threshold_inclusive", "tinynn/metrics.py",
           "return (y_true == (y_pred > self.threshold)).astype(np.float64)",
           "return (y_true == (y_pred >= self.threshold)).astype(np.float64)",
           _t("test_metric_parity.py::test_binary_accuracy_threshold_matches_keras"),
           "BinaryAccuracy counting a prediction equal to the threshold as 1"),
    Mutant("embedding_mask_only_positive_ids", "tinynn/layers/embedding.py",
           "return np.asarray(x) != 0",
           "return np.asarray(x) > 0",
           _t("test_embedding_parity.py::test_embedding_parity"),
           "mask_zero masking negative ids too (Keras masks id 0 only)"),
    Mutant("early_stopping_does_not_restore", "tinynn/callbacks.py",
           "            if self.restore_best_weights and self.best_weights is not None:\n"
           "                self.model.set_weights(self.best_weights)",
           "            if self.restore_best_weights and self.best_weights is not None:\n"
           "                pass",
           _t("test_dense_training.py::test_early_stopping_stops_and_restores_like_keras"),
           "EarlyStopping(restore_best_weights=True) keeping the last weights"),
    Mutant("checkpoint_best_reversed", "tinynn/callbacks.py",
           'better = self.best is None or (value > self.best if self.mode == "max" else value < self.best)',
           'better = self.best is None or (value < self.best if self.mode == "max" else value > self.best)',
           _t("test_dense_training.py::test_model_checkpoint_saves_what_keras_saves"),
           "ModelCheckpoint(save_best_only=True) keeping the worst epoch"),
    Mutant("maximum_tie_goes_to_later", "tinynn/layers/merge.py",
           "    def _select(self, a, b):\n        return a >= b",
           "    def _select(self, a, b):\n        return a > b",
           _t(MERGE), "Maximum sends a tie's gradient to the later input (TensorFlow: the earlier)"),
    Mutant("minimum_tie_goes_to_later", "tinynn/layers/merge.py",
           "    def _select(self, a, b):\n        return a <= b",
           "    def _select(self, a, b):\n        return a < b",
           _t(MERGE), "Minimum sends a tie's gradient to the later input"),
    Mutant("multiply_mask_ignored", "tinynn/layers/merge.py",
           "factors = [f if m is None else np.where(m, f, f.dtype.type(1)) for f, m in zip(full, masks)]",
           "factors = list(full)",
           _t(MERGE), "Multiply multiplies masked entries in (Keras replaces a masked input by 1)"),
    Mutant("merge_output_mask_and", "tinynn/layers/merge.py",
           "                out_mask = out_mask | m",
           "                out_mask = out_mask & m",
           _t(MERGE), "Multiply's output mask ANDs the input masks (Keras ORs them)"),
    Mutant("graph_branch_gradient_overwritten", "tinynn/graph.py",
           "    grads[slot] = g if grads[slot] is None else grads[slot] + g",
           "    grads[slot] = g",
           _t(GRAPH_SHARED, GRAPH_VJP),
           "a tensor read by several layers keeps the last gradient instead of the sum (multi-input steps)"),
    Mutant("graph_simple_branch_gradient_overwritten", "tinynn/graph.py",
           "grads[st.arg] = dx if g is None else g + dx",
           "grads[st.arg] = dx",
           _t(GRAPH_SHARED, GRAPH_VJP),
           "a tensor read by several single-input layers keeps the last gradient instead of the sum"),
    Mutant("shared_layer_gradient_not_summed", "tinynn/graph.py",
           "summed[lid] = ([add_gradients(a, b) for a, b in zip(summed[lid], layer.gradients)]\n"
           "                                   if lid in summed else list(layer.gradients))",
           "summed[lid] = list(layer.gradients)",
           _t(GRAPH_SHARED), "a shared layer's weight gradient from its last call only (Keras sums over calls)"),
)


# ---------------------------------------------------------------------------------------------- applying
def apply(source: str, mutant: Mutant) -> str:
    """``source`` with the mutant's snippet replaced; ValueError unless the snippet occurs exactly once."""
    count = source.count(mutant.original)
    if count != 1:
        raise ValueError(f"mutant {mutant.name}: the snippet occurs {count} times in {mutant.file} (expected once); "
                         f"refresh it in parity/mutation.py")
    return source.replace(mutant.original, mutant.replacement)


def source_root() -> pathlib.Path:
    """The folder holding the ``tinynn`` and ``parity`` packages in use (a checkout or site-packages)."""
    import tinynn

    root = pathlib.Path(tinynn.__file__).resolve().parent.parent
    here = pathlib.Path(__file__).resolve().parent.parent
    if root != here:
        raise RuntimeError(f"parity.mutation: tinynn ({root}) and parity ({here}) come from different folders")
    return root


def _copy_packages(src: pathlib.Path, dst: pathlib.Path, with_caches: bool) -> None:
    ignore = None if with_caches else shutil.ignore_patterns("__pycache__")
    for package in ("tinynn", "parity"):
        shutil.copytree(src / package, dst / package, ignore=ignore)


def clear_numba_caches(folder: pathlib.Path) -> int:
    removed = 0
    for path in folder.rglob("*"):
        if path.suffix in (".nbi", ".nbc"):
            path.unlink()
            removed += 1
    return removed


def _env(folder: pathlib.Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("TINYNN_PARITY_CLI", "PARITY_KEEP_GOING")}
    env.update(HYPOTHESIS_PROFILE="ci", PYTHONPATH=str(folder), PYTHONDONTWRITEBYTECODE="1")
    return env


def _pytest(folder: pathlib.Path, tests: list[str], timeout: float) -> tuple[int, list[str], float, str]:
    """(exit code, failed node ids, seconds, output tail) of the tests run in ``folder``."""
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", "--tb=no", "-o", "addopts=",
           "-W", "ignore::DeprecationWarning", *tests]
    try:
        out = subprocess.run(cmd, cwd=folder, env=_env(folder), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, [], time.perf_counter() - start, "timeout"
    failed = sorted({m.group(1).split("[", 1)[0].split(" ", 1)[0]
                     for m in re.finditer(r"^(?:FAILED|ERROR) (\S+)", out.stdout, re.MULTILINE)})
    return out.returncode, failed, time.perf_counter() - start, (out.stdout + out.stderr)[-1500:]


def _check_imports(folder: pathlib.Path) -> None:
    code = "import tinynn, parity; print(tinynn.__file__); print(parity.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=folder, env=_env(folder), capture_output=True, text=True)
    paths = out.stdout.split()
    if out.returncode or len(paths) != 2 or not all(pathlib.Path(p).is_relative_to(folder) for p in paths):
        raise RuntimeError(f"parity.mutation: the copy in {folder} does not import its own packages: {out}")


@dataclass
class Result:
    name: str
    bug: str
    file: str
    killed: bool
    killed_by: list = field(default_factory=list)
    seconds: float = 0.0
    status: str = ""


def run(mutants: list[Mutant], timeout: float = 1800, keep: bool = False, log=print) -> dict:
    """Run each mutant in its own copy; returns the report (see :func:`main`)."""
    src = source_root()
    for m in mutants:  # every snippet must still be there before anything runs
        apply((src / m.file).read_text(), m)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="tinynn-mutation-"))
    try:
        base = tmp / "base"
        _copy_packages(src, base, with_caches=False)
        _check_imports(base)
        tests = sorted({t for m in mutants for t in m.tests})
        log(f"mutation: baseline: {len(tests)} test functions on the unmutated copy in {base}")
        code, failed, baseline_seconds, tail = _pytest(base, tests, timeout)
        if code != 0:
            raise RuntimeError(f"parity.mutation: the baseline fails ({failed}); fix it first:\n{tail}")
        log(f"mutation: baseline passes ({baseline_seconds:.0f} s)")
        results = []
        for k, m in enumerate(mutants, 1):
            folder = tmp / f"m{k:02d}"
            shutil.copytree(base, folder)
            target = folder / m.file
            target.write_text(apply(target.read_text(), m))
            if m.file.startswith("tinynn/kernels/"):
                clear_numba_caches(folder)
            code, failed, seconds, tail = _pytest(folder, list(m.tests), timeout)
            if code == -1:
                result = Result(m.name, m.bug, m.file, True, [], seconds, "timeout")
            else:
                killed = code != 0 and bool(failed)
                status = "killed" if killed else ("error" if code not in (0, 1) else "SURVIVED")
                result = Result(m.name, m.bug, m.file, killed, failed, seconds, status)
            results.append(result)
            by = ", ".join(t.removeprefix(CASES) for t in result.killed_by) or "-"
            log(f"mutation {k:2d}/{len(mutants)} {m.name:<36} {result.status:<8} {seconds:5.0f} s  by {by}")
            if result.status == "error":
                log("  " + tail.replace("\n", "\n  "))
            if not keep:
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    killed = sum(r.killed for r in results)
    return {"killed": killed, "total": len(results), "kill_rate": killed / len(results) if results else None,
            "baseline_seconds": round(baseline_seconds, 1), "mutants": [asdict(r) for r in results]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m parity.mutation", description=__doc__.split("\n\n")[0])
    p.add_argument("--list", action="store_true", help="list the mutants and exit")
    p.add_argument("--only", action="append", default=[], metavar="NAME", help="run only this mutant (repeatable)")
    p.add_argument("--json", metavar="FILE", help="write the report as JSON")
    p.add_argument("--keep", action="store_true", help="keep the temporary copies (to inspect a mutant)")
    args = p.parse_args(argv)
    mutants = [m for m in MUTANTS if not args.only or m.name in args.only]
    if args.list or not mutants:
        for m in MUTANTS:
            print(f"{m.name:<36} {m.file:<38} {m.bug}")
        return 0 if args.list else 2
    start = time.perf_counter()
    report = run(mutants, keep=args.keep)
    report["seconds"] = round(time.perf_counter() - start, 1)
    survivors = [r["name"] for r in report["mutants"] if not r["killed"]]
    print(f"\nmutation: {report['killed']}/{report['total']} mutants killed (kill rate {report['kill_rate']:.0%}) "
          f"in {report['seconds']:.0f} s" + (f"; SURVIVED: {', '.join(survivors)}" if survivors else ""))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=1))
    return 0 if not survivors else 1


if __name__ == "__main__":
    sys.exit(main())
