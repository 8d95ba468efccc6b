"""tinynn.memory: importing tinynn keeps freed memory for reuse (glibc), and the opt-out works."""

import os
import subprocess
import sys
import textwrap

import pytest

from tinynn import memory

pytestmark = pytest.mark.skipif(memory._glibc() is None, reason="malloc tuning applies to Linux with glibc only")

# A training step's pattern: a dozen 3 MB arrays (below NumPy's 4 MB huge-page advice) allocated, written,
# then all freed; repeated. Prints the minor page faults of the repeats after a warm-up.
CHURN = textwrap.dedent("""
    import resource, numpy as np, tinynn
    def step():
        arrays = [np.empty(3 << 18, np.float32) for _ in range(12)]
        for a in arrays:
            a.fill(1.0)
    for _ in range(3):
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        step()
    print(tinynn.memory.malloc_tuned(), (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
""")


def _faults_per_step(tuning: str) -> tuple[bool, float]:
    env = {**os.environ, "TINYNN_MALLOC_TUNING": tuning}
    out = subprocess.run([sys.executable, "-c", CHURN], env=env, capture_output=True, text=True, check=True)
    tuned, faults = out.stdout.split()
    return tuned == "True", float(faults)


def test_import_keeps_freed_memory_so_repeated_steps_do_not_fault_pages_in_again():
    tuned, faults_tuned = _faults_per_step("1")
    untuned, faults_untuned = _faults_per_step("0")
    assert tuned and not untuned
    # untuned, glibc trims the 36 MB back to the OS after each step and faults it in again (~9,000 pages)
    assert faults_untuned > 1000, faults_untuned
    assert faults_tuned < faults_untuned / 10, (faults_tuned, faults_untuned)


def test_tune_malloc_reports_success_in_this_process():
    assert memory.tune_malloc() is True
    assert memory.malloc_tuned()
