"""The BLAS kernel is chosen, not guessed (model/blas.h): through
`streamrec blas`, which runs the same blas_choose() as the daemon, eval and
the benchmarks. Every kernel family the CPU runs must compute the engine's
products within float tolerance of a double-precision reference."""
import os
import re
import subprocess

import pytest

from harness import BUILD

STREAMREC = BUILD / "streamrec"
RANKED = ["Prescott", "Nehalem", "Sandybridge", "Haswell", "SkylakeX", "Cooperlake"]


def blas(**env):
    full = {k: v for k, v in os.environ.items()
            if k not in ("OPENBLAS_CORETYPE", "STREAMREC_BLAS_KERNEL", "STREAMREC_BLAS_FAULT")}
    full.update(env)
    result = subprocess.run([STREAMREC, "blas"], env=full, capture_output=True, text=True,
                            timeout=120)
    fields = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    return result, fields


def runnable_kernels():
    _, fields = blas()
    best = fields["cpu_best"]
    return RANKED[:RANKED.index(best) + 1] if best in RANKED else RANKED[:1]


def test_default_kernel_is_at_least_the_cpus_best():
    result, fields = blas()
    assert result.returncode == 0, result.stderr
    assert fields["self_check"] == "ok"
    rank = {k: i for i, k in enumerate(RANKED)}
    # the library's pick or a raise to the best the CPU supports, never lower
    if fields["kernel"] in rank and fields["cpu_best"] in rank:
        assert rank[fields["kernel"]] >= rank[fields["cpu_best"]], fields
    assert fields["chosen_by"] in ("library", "auto")


@pytest.mark.parametrize("kernel", RANKED)
def test_every_runnable_kernel_passes_the_self_check_when_requested(kernel):
    if kernel not in runnable_kernels():
        pytest.skip(f"this CPU does not run {kernel}")
    result, fields = blas(STREAMREC_BLAS_KERNEL=kernel)
    assert result.returncode == 0, result.stderr
    assert fields["kernel"] == kernel, fields
    assert fields["chosen_by"] == "request"
    assert fields["self_check"] == "ok"
    assert float(fields["self_check_max_relative_error"]) < 1e-4


def test_operator_environment_is_honoured():
    result, fields = blas(OPENBLAS_CORETYPE="Prescott")
    assert result.returncode == 0, result.stderr
    assert fields["kernel"] == "Prescott" and fields["chosen_by"] == "environment"


def test_a_kernel_failing_the_self_check_is_refused_with_a_log_line():
    result, fields = blas(STREAMREC_BLAS_KERNEL="Prescott", STREAMREC_BLAS_FAULT="Prescott")
    assert result.returncode == 0, result.stderr
    assert "kernel Prescott refused by the self-check" in result.stderr
    assert fields["kernel"] != "Prescott"
    assert fields["chosen_by"] == "fallback" and fields["refused"] == "Prescott"
    assert fields["self_check"] == "ok"


def test_an_unknown_kernel_is_an_error_naming_it():
    result, _ = blas(STREAMREC_BLAS_KERNEL="Pentium9")
    assert result.returncode != 0
    assert 'unknown kernel "Pentium9"' in result.stderr


def test_a_kernel_below_the_cpus_best_is_flagged_and_the_daemon_warns(tmp_path):
    _, fields = blas()
    assert fields["below_cpu_best"] == "no", fields
    if fields["cpu_best"] == "Prescott":
        pytest.skip("this CPU's best is the lowest kernel")
    _, fields = blas(OPENBLAS_CORETYPE="Prescott")
    assert fields["below_cpu_best"] == "yes", fields

    config = tmp_path / "streamrecd.conf"
    config.write_text(f"[state]\ndir = {tmp_path / 'state'}\n"
                      "[kafka]\nbootstrap.servers = 127.0.0.1:9\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_CORETYPE", "STREAMREC_BLAS_KERNEL", "STREAMREC_BLAS_FAULT")}
    check = [BUILD / "streamrecd", "--config", config, "--check"]
    out = subprocess.run(check, env={**env, "OPENBLAS_CORETYPE": "Prescott"},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    # a warning (priority 4), naming the CPU's best and the reason
    assert re.search(r"^<4>streamrecd: OpenBLAS kernel Prescott \(.*below this CPU's best, "
                     + re.escape(fields["cpu_best"])
                     + r", because OPENBLAS_CORETYPE in the environment names it",
                     out.stderr, re.M), out.stderr
    out = subprocess.run(check, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert re.search(r"^<6>streamrecd: OpenBLAS kernel \w+ \(", out.stderr, re.M), out.stderr
    assert "below this CPU's best" not in out.stderr
