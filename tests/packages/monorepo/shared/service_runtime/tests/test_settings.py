import pytest

from service_runtime import read_host, read_port, read_workers


def test_port_defaults_to_the_declared_port(spec):
    assert read_port(spec) == spec.default_port


@pytest.mark.parametrize(("raw", "port"), [("1", 1), ("8080", 8080), ("65535", 65535)])
def test_port_is_read_from_the_declared_variable(monkeypatch, spec, raw, port):
    monkeypatch.setenv(spec.port_env, raw)

    assert read_port(spec) == port


def assert_one_line_usage_error(excinfo, capsys, prog, name, raw):
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"{prog}: error: {name} ")
    assert repr(raw) in err


@pytest.mark.parametrize("raw", ["", "abc", "80.5", "0", "-1", "65536"])
def test_bad_port_exits_2_naming_the_variable(monkeypatch, capsys, spec, raw):
    monkeypatch.setenv(spec.port_env, raw)

    with pytest.raises(SystemExit) as excinfo:
        read_port(spec)

    assert_one_line_usage_error(excinfo, capsys, spec.prog, spec.port_env, raw)


def test_workers_default_to_2(spec):
    assert read_workers(spec) == 2


@pytest.mark.parametrize(("raw", "workers"), [("1", 1), ("3", 3), ("1024", 1024)])
def test_workers_are_read_from_web_concurrency(monkeypatch, spec, raw, workers):
    monkeypatch.setenv("WEB_CONCURRENCY", raw)

    assert read_workers(spec) == workers


@pytest.mark.parametrize("raw", ["", "0", "1025", "many"])
def test_bad_worker_count_exits_2_naming_the_variable(monkeypatch, capsys, spec, raw):
    monkeypatch.setenv("WEB_CONCURRENCY", raw)

    with pytest.raises(SystemExit) as excinfo:
        read_workers(spec)

    assert_one_line_usage_error(excinfo, capsys, spec.prog, "WEB_CONCURRENCY", raw)


@pytest.mark.parametrize(
    ("raw", "host"),
    [(None, "0.0.0.0"), ("127.0.0.1", "127.0.0.1"), ("::", "[::]"), ("::1", "[::1]"), ("[::1]", "[::1]")],
)
def test_host_is_read_from_the_declared_variable_and_ipv6_is_bracketed(monkeypatch, spec, raw, host):
    if raw is not None:
        monkeypatch.setenv(spec.host_env, raw)

    assert read_host(spec) == host
