from service_runtime.gunicorn_app import GunicornApplication


def unused_factory():
    raise AssertionError("gunicorn builds the application only when it loads it")


def test_gunicorn_application_is_configured_for_the_container():
    application = GunicornApplication(unused_factory, bind="127.0.0.1:9000", workers=3)

    assert application.cfg.bind == ["127.0.0.1:9000"]
    assert application.cfg.workers == 3
    assert application.cfg.accesslog == "-"
    assert application.cfg.worker_tmp_dir is None


def test_control_socket_is_disabled_where_gunicorn_has_one():
    application = GunicornApplication(unused_factory, bind="127.0.0.1:9000", workers=1)

    if "control_socket_disable" in application.cfg.settings:
        assert application.cfg.control_socket_disable is True


def test_the_application_is_built_by_the_factory_when_gunicorn_loads_it():
    built = []

    def factory():
        built.append(object())
        return built[-1]

    application = GunicornApplication(factory, bind="127.0.0.1:9000", workers=1)
    assert built == []

    assert application.load() is built[0]
