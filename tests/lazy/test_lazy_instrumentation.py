"""Lazy instrumentation, end to end: real agent runs, real libraries, a real receiver."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from support.apps import BIN, Proc, run
from support.otlp import exporter_env, running_receiver

KEY = "lazy-test-key"
# Installed in the test venv, instrumented by an installed contrib package, never imported by
# the agent itself.
HEAVY = ("flask", "django", "fastapi", "starlette", "aiohttp", "httpx", "celery")


def _run(code: str, receiver: object, tmp_path: Path, *, agent: bool = True, **env: str) -> Proc:
    script = tmp_path / "program.py"
    script.write_text(textwrap.dedent(code))
    full_env = exporter_env(receiver, api_key=KEY)  # type: ignore[arg-type]
    full_env["OTEL_SERVICE_NAME"] = "lazy"
    full_env.update(env)
    argv = [sys.executable, str(script)]
    if agent:
        argv = [str(BIN / "opentelemetry-instrument"), *argv]
    with run(argv, full_env, tmp_path, name="program") as proc:
        proc.wait(60)
    assert proc.returncode == 0, proc.stderr
    return proc


def _last_json(proc: Proc) -> dict:  # type: ignore[type-arg]
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])


def test_a_script_that_imports_nothing_instrumented_loads_no_library(tmp_path: Path) -> None:
    code = f"""
        import json, sys
        from hyperdx.opentelemetry import import_hook
        heavy = {HEAVY!r}
        print(json.dumps({{
            "libraries": sorted(m for m in sys.modules if m.split(".")[0] in heavy),
            "instrumentations": sorted(
                m for m in sys.modules
                if m.startswith("opentelemetry.instrumentation.") and m.split(".")[2] in heavy
            ),
            "pending": import_hook.pending(),
        }}))
    """
    with running_receiver(api_keys=[KEY]) as (receiver, _sink):
        out = _last_json(_run(code, receiver, tmp_path))
    assert out["libraries"] == []
    assert out["instrumentations"] == []
    # They are installed and waiting: the hook knows them by their import names.
    assert set(HEAVY) <= set(out["pending"]), out["pending"]


@pytest.mark.parametrize("mode", ["lean", "contrib"])
def test_flask_imported_later_is_instrumented(tmp_path: Path, mode: str) -> None:
    code = """
        import json, sys
        before = "flask" in sys.modules
        from flask import Flask
        app = Flask("late")

        @app.route("/late/<int:n>")
        def late(n):
            return str(n)

        statuses = [app.test_client().get(f"/late/{i}").status_code for i in range(3)]
        from hyperdx.opentelemetry import force_flush, import_hook
        force_flush()
        print(json.dumps({"before": before, "statuses": statuses,
                          "pending": import_hook.pending()}))
    """
    with running_receiver(api_keys=[KEY]) as (receiver, sink):
        out = _last_json(_run(code, receiver, tmp_path, HYPERDX_SERVER_INSTRUMENTATION=mode))
        spans = sink.wait_for(
            "otel_traces", 3, where=lambda r: r["SpanName"] == "GET /late/<int:n>"
        )
    assert out["before"] is False
    assert out["statuses"] == [200, 200, 200]
    assert "flask" not in out["pending"]
    assert len(spans) == 3
    assert {s["SpanKind"] for s in spans} == {"Server"}
    assert {s["ServiceName"] for s in spans} == {"lazy"}


def test_a_library_imported_before_configure_is_instrumented_at_once(tmp_path: Path) -> None:
    """No agent: the app imports Flask and requests, then calls configure_opentelemetry()."""
    code = """
        import json, sys, threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        import flask
        import requests
        from hyperdx.opentelemetry import configure_opentelemetry, force_flush, import_hook

        class Ok(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        configure_opentelemetry()
        app = flask.Flask("early")

        @app.route("/early")
        def early():
            return "ok"

        status = app.test_client().get("/early").status_code
        client = requests.get(f"http://127.0.0.1:{server.server_port}/ping").status_code
        force_flush()
        print(json.dumps({"status": status, "client": client, "pending": import_hook.pending()}))
    """
    with running_receiver(api_keys=[KEY]) as (receiver, sink):
        out = _last_json(_run(code, receiver, tmp_path, agent=False))
        [server] = sink.wait_for("otel_traces", where=lambda r: r["SpanName"] == "GET /early")
        [client] = sink.wait_for(
            "otel_traces", where=lambda r: r["SpanKind"] == "Client" and r["SpanName"] == "GET"
        )
    assert (out["status"], out["client"]) == (200, 204)
    assert server["SpanKind"] == "Server"
    assert client["SpanAttributes"].get("http.response.status_code", "204") == "204"
    assert "flask" not in out["pending"] and "requests" not in out["pending"]


def test_disabled_instrumentations_stay_off(tmp_path: Path) -> None:
    code = """
        import json, sys
        from flask import Flask
        from opentelemetry import trace
        app = Flask("off")

        @app.route("/off")
        def off():
            return "ok"

        status = app.test_client().get("/off").status_code
        with trace.get_tracer("t").start_as_current_span("marker"):
            pass
        from hyperdx.opentelemetry import force_flush, import_hook
        force_flush()
        print(json.dumps({
            "status": status,
            "contrib_loaded": "opentelemetry.instrumentation.flask" in sys.modules,
            "pending": import_hook.pending(),
        }))
    """
    with running_receiver(api_keys=[KEY]) as (receiver, sink):
        out = _last_json(
            _run(code, receiver, tmp_path, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="flask, django")
        )
        sink.wait_for("otel_traces", where=lambda r: r["SpanName"] == "marker")
        names = [r["SpanName"] for r in sink.rows("otel_traces")]
    assert out["status"] == 200
    assert names == ["marker"]  # no server span for /off
    assert out["contrib_loaded"] is False
    assert "flask" not in out["pending"] and "django" not in out["pending"]
    assert "fastapi" in out["pending"]  # the others still wait


def _broken_instrumentation(root: Path) -> None:
    """A real installed distribution whose instrumentor raises when it starts."""
    (root / "fragile").mkdir()
    (root / "fragile" / "__init__.py").write_text("VALUE = 42\n")
    (root / "fragile-1.0.dist-info").mkdir()
    (root / "fragile-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fragile\nVersion: 1.0\n"
    )
    (root / "otel_fragile").mkdir()
    (root / "otel_fragile" / "__init__.py").write_text(
        textwrap.dedent(
            """
            from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

            class FragileInstrumentor(BaseInstrumentor):
                def instrumentation_dependencies(self):
                    return ("fragile >= 1.0",)

                def _instrument(self, **kwargs):
                    raise RuntimeError("fragile instrumentor exploded")

                def _uninstrument(self, **kwargs):
                    pass
            """
        )
    )
    info = root / "otel_fragile-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: otel-fragile\nVersion: 1.0\n"
        'Requires-Dist: fragile>=1.0; extra == "instruments"\n'
    )
    (info / "entry_points.txt").write_text(
        "[opentelemetry_instrumentor]\nfragile = otel_fragile:FragileInstrumentor\n"
    )


def test_an_instrumentor_that_raises_is_reported_once_and_the_app_keeps_running(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    _broken_instrumentation(site)
    code = """
        import importlib, json, sys
        from hyperdx.opentelemetry import import_hook, instrumentation
        waiting = "fragile" in import_hook.pending()
        import fragile
        importlib.reload(fragile)
        import fragile as again
        print(json.dumps({"waiting": waiting, "value": again.VALUE,
                          "failures": instrumentation.failures()}))
    """
    with running_receiver(api_keys=[KEY]) as (receiver, _sink):
        proc = _run(code, receiver, tmp_path, PYTHONPATH=str(site))
    out = _last_json(proc)
    assert out["waiting"] is True
    assert out["value"] == 42
    assert list(out["failures"]) == ["fragile"]
    assert "fragile instrumentor exploded" in out["failures"]["fragile"]
    reports = [line for line in proc.stderr.splitlines() if "instrumentation fragile" in line]
    assert len(reports) == 1, proc.stderr
    assert "fragile instrumentor exploded" in reports[0]


@pytest.mark.parametrize("mode", ["lean", "contrib"])
def test_django_stock_wsgi_module_imports_django_before_its_settings(
    tmp_path: Path, mode: str
) -> None:
    """Django's wsgi.py template imports Django, then sets DJANGO_SETTINGS_MODULE."""
    (tmp_path / "shop_settings.py").write_text(
        textwrap.dedent(
            """
            SECRET_KEY = "not-secret"
            DEBUG = False
            ALLOWED_HOSTS = ["*"]
            ROOT_URLCONF = "shop_urls"
            INSTALLED_APPS = []
            MIDDLEWARE = []
            """
        )
    )
    (tmp_path / "shop_urls.py").write_text(
        textwrap.dedent(
            """
            from django.http import HttpResponse
            from django.urls import path

            urlpatterns = [path("items/<int:n>", lambda request, n: HttpResponse(str(n)))]
            """
        )
    )
    code = """
        import io, json, os, sys
        from wsgiref.util import setup_testing_defaults
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from django.core.wsgi import get_wsgi_application
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_settings")
        application = get_wsgi_application()
        statuses = []
        for n in range(2):
            environ = {"PATH_INFO": f"/items/{n}", "REQUEST_METHOD": "GET"}
            setup_testing_defaults(environ)
            body = b"".join(application(environ, lambda s, h, e=None: statuses.append(s)))
        from django.conf import settings
        from hyperdx.opentelemetry import force_flush
        force_flush()
        print(json.dumps({"statuses": statuses, "body": body.decode(),
                          "root_urlconf": settings.ROOT_URLCONF}))
    """
    with running_receiver(api_keys=[KEY]) as (receiver, sink):
        out = _last_json(_run(code, receiver, tmp_path, HYPERDX_SERVER_INSTRUMENTATION=mode))
        spans = sink.wait_for("otel_traces", 2, where=lambda r: r["SpanKind"] == "Server")
    assert out["root_urlconf"] == "shop_urls"  # the app's settings, not empty ones
    assert out["statuses"] == ["200 OK", "200 OK"] and out["body"] == "1"
    assert len(spans) == 2
    assert {s["SpanName"] for s in spans} == {"GET items/<int:n>"}
