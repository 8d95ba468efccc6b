"""Optimizer state in Keras's variable order, shared by ``.keras`` archives and legacy ``.h5`` files.

Keras 3 stores ``optimizer.variables``: ``iterations``, ``learning_rate`` (unless it is a schedule), then the
slots. Slots are created group by group (``add_optimizer_variables`` calls), each group for every variable in
turn: Adam ``[m_0, v_0, m_1, v_1, ...]`` then ``[vhat_0, vhat_1, ...]``; RMSprop all velocities, then all
momentums, then all average gradients. Keras 2.11+ (``tf.keras`` optimizers, saved in ``.h5``) use the same
slot order but store no learning rate: ``iteration`` then the slots. Keras 2's older ``OptimizerV2`` stored its
hyper-parameters among the variables; that layout is not recognised and the optimizer starts fresh, as Keras 3
does with it.
"""

from __future__ import annotations

import numpy as np

_SLOT_GROUPS = {
    "SGD": (("momentum",),),
    "RMSprop": (("velocity",), ("momentum",), ("average_gradient",)),
    "Adam": (("momentum", "velocity"), ("velocity_hat",)),
    "AdamW": (("momentum", "velocity"), ("velocity_hat",)),
    "Adagrad": (("accumulator",),),
}


def slot_order(optimizer, n_variables: int) -> list[tuple[str, int]] | None:
    """``[(slot, variable index)]`` in Keras's variable order; None for an optimizer whose layout is unknown."""
    names = optimizer.slot_names
    groups = _SLOT_GROUPS.get(type(optimizer).__name__)
    if groups is None or set(names) - {n for g in groups for n in g}:
        return None
    order = []
    for group in groups:
        present = [n for n in group if n in names]
        for i in range(n_variables):
            order.extend((n, i) for n in present)
    return order


def state_arrays(optimizer, variables: list[np.ndarray]) -> list[np.ndarray] | None:
    """The optimizer's state as Keras 3 stores it (see the module docstring). An optimizer that has not stepped
    yet gets its initial slot values, as a Keras optimizer built by ``compile`` has. None if the layout is
    unknown."""
    order = slot_order(optimizer, len(variables))
    if order is None:
        return None
    state = optimizer.get_state()
    arrays = [np.asarray(state["iterations"], dtype=np.int64)]
    if "learning_rate" in state:
        arrays.append(np.asarray(state["learning_rate"]))
    for slot, i in order:
        key = f"{slot}_{i}"
        if key in state:
            arrays.append(state[key])
        else:
            w = variables[i]
            arrays.append(np.full(w.shape, optimizer.slot_initial_value(slot, w.dtype), dtype=w.dtype))
    return arrays


def state_from_arrays(optimizer, variables: list[np.ndarray], arrays: list[np.ndarray]) -> tuple[dict | None, str]:
    """tinynn's ``optimizer.set_state`` dict from Keras's arrays: ``(state, '')`` or ``(None, why not)``.

    Accepts Keras 3's layout (iterations, learning rate, slots) and Keras 2.11+'s (iterations, slots); checks
    every slot's shape against its variable before anything is returned."""
    order = slot_order(optimizer, len(variables))
    if order is None:
        return None, f"tinynn does not know Keras's variable layout of {type(optimizer).__name__}"
    has_lr = "learning_rate" in optimizer.get_state()
    if len(arrays) == 2 + len(order) and has_lr:
        head = 2
    elif len(arrays) == 1 + len(order):
        head = 1
    elif len(arrays) in (1, 2) and (len(arrays) == 1 or has_lr):
        head, order = len(arrays), []  # the optimizer had not built its slots when it was saved
    else:
        return None, (f"the file stores {len(arrays)} optimizer arrays, tinynn's {type(optimizer).__name__} expects "
                      f"{1 + has_lr + len(order)}")
    iterations = np.asarray(arrays[0])
    if iterations.shape != () or iterations.dtype.kind not in "iu" or int(iterations) < 0:
        return None, f"the iteration count is {iterations.dtype} {iterations.shape}, expected a non-negative integer"
    state = {"iterations": iterations}
    if head == 2:
        lr = np.asarray(arrays[1])
        if lr.shape != () or lr.dtype.kind != "f":
            return None, f"the learning rate is {lr.dtype} {lr.shape}, expected a float scalar"
        state["learning_rate"] = lr
    for (slot, i), value in zip(order, arrays[head:]):
        value = np.asarray(value)
        if value.shape != variables[i].shape or value.dtype.kind != "f":
            return None, (f"slot {slot!r} of variable {i} is {value.dtype} {value.shape}, the variable is "
                          f"{variables[i].dtype} {variables[i].shape}")
        state[f"{slot}_{i}"] = value.astype(variables[i].dtype, copy=False)
    return state, ""
