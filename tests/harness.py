"""Paths and process helpers shared by streamrec's Python tests."""
import os
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent.parent
BUILD = pathlib.Path(os.environ.get("STREAMREC_BUILD", ROOT / "build"))
BROKER = ROOT / "tools" / "kafka-broker"
SCHEMA_REGISTRY = ROOT / "tools" / "schema-registry"
SCHEMAS = ROOT / "schemas"

# Sanitizer settings for every C program a test runs: any report fails the test.
SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:halt_on_error=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
}
LSAN_SUPPRESSIONS = ROOT / "tests" / "lsan.supp"


def sanitized_env(extra=None):
    env = dict(os.environ)
    env.update(SANITIZER_ENV)
    env["STREAMREC_SRCDIR"] = str(ROOT)  # tests that read files of the tree find them
    if LSAN_SUPPRESSIONS.exists():
        env["LSAN_OPTIONS"] = f"suppressions={LSAN_SUPPRESSIONS}"
    if extra:
        env.update(extra)
    return env


def run_program(args, env=None, timeout=600, stdin=None):
    """Runs a sanitized C program; returns the CompletedProcess with text output."""
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          env=sanitized_env(env), timeout=timeout, input=stdin)
