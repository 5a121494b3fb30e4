"""Runs the C test programs (cmocka, built with ASan+UBSan) as pytest items.

Each tests/unit/NNN_name.c and tests/integration/NNN_name.c is one behaviour
and one program; integration programs get the session's real Kafka broker
(and, those named *registry*, the session's real schema registry).
tests/plain/NNN_name.c are built without a sanitizer: what they test (glibc's
allocator) a sanitizer's allocator would replace.
"""
import pytest

from harness import BUILD, ROOT, run_program

UNIT_SOURCES = sorted((ROOT / "tests" / "unit").glob("*.c"))
INTEGRATION_SOURCES = sorted((ROOT / "tests" / "integration").glob("*.c"))
PLAIN_SOURCES = sorted((ROOT / "tests" / "plain").glob("*.c"))


def binary_for(source, kind):
    binary = BUILD / "tests" / kind / source.stem
    if not binary.exists():
        pytest.fail(f"{binary} is missing: build it with 'make test-build'")
    return binary


def check(result, name):
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{name} failed (exit {result.returncode}):\n{output[-8000:]}"
    assert "PASSED" in output, f"{name} ran no cmocka test:\n{output[-4000:]}"
    assert "ERROR: AddressSanitizer" not in output and "runtime error:" not in output, output


@pytest.mark.parametrize("source", UNIT_SOURCES, ids=lambda s: s.stem)
def test_unit(source):
    check(run_program([binary_for(source, "unit")]), source.stem)


@pytest.mark.parametrize("source", PLAIN_SOURCES, ids=lambda s: s.stem)
def test_plain(source):
    check(run_program([binary_for(source, "plain")]), source.stem)


@pytest.mark.kafka
@pytest.mark.parametrize("source", INTEGRATION_SOURCES, ids=lambda s: s.stem)
def test_integration(source, kafka_broker, request):
    env = {"STREAMREC_TEST_BOOTSTRAP": kafka_broker.bootstrap}
    if "registry" in source.stem:  # the registry starts only for the tests that need it
        registry = request.getfixturevalue("schema_registry")
        env["STREAMREC_TEST_REGISTRY"] = registry.url
        env["STREAMREC_TEST_REGISTRY_AUTH"] = registry.auth_url
        env["STREAMREC_TEST_REGISTRY_TLS"] = registry.tls_url
        env["STREAMREC_TEST_REGISTRY_TLS_CA"] = registry.tls_ca
    result = run_program([binary_for(source, "integration")], env=env)
    check(result, source.stem)


def test_every_test_source_is_collected():
    assert UNIT_SOURCES, "no unit tests found"
    assert INTEGRATION_SOURCES, "no integration tests found"
    assert PLAIN_SOURCES, "no plain (unsanitized) tests found"
