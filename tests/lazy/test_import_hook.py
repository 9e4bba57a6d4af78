"""The import hook on its own, in fresh interpreters (it edits sys.meta_path)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from opentelemetry.util._importlib_metadata import entry_points

from hyperdx.opentelemetry.instrumentation import trigger_modules


def _python(code: str, tmp_path: Path) -> dict:  # type: ignore[type-arg]
    (tmp_path / "late_lib").mkdir(exist_ok=True)
    (tmp_path / "late_lib" / "__init__.py").write_text(
        "import time\nclass Thing:\n    pass\ntime.sleep(0.2)\nLAST_LINE_RAN = True\n"
    )
    (tmp_path / "late_lib" / "part.py").write_text("X = 1\n")
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_callback_runs_after_the_module_executed_and_before_the_importer_sees_it(
    tmp_path: Path,
) -> None:
    code = """
        import json, sys
        from hyperdx.opentelemetry import import_hook
        seen = []

        def patch():
            mod = sys.modules["late_lib"]
            seen.append(getattr(mod, "LAST_LINE_RAN", False))
            mod.Thing = type("Patched", (), {})

        deferred = not import_hook.when_imported(["late_lib"], patch)
        from late_lib import Thing
        import late_lib.part
        import late_lib
        print(json.dumps({
            "deferred": deferred, "seen": seen, "thing": Thing.__name__,
            "loader": type(late_lib.__loader__).__name__,
            "spec_loader": type(late_lib.__spec__.loader).__name__,
            "pending": import_hook.pending(),
        }))
    """
    out = _python(code, tmp_path)
    assert out["deferred"] is True
    assert out["seen"] == [True]  # once, after the module's last line
    assert out["thing"] == "Patched"  # `from late_lib import Thing` got the patched one
    assert out["loader"] == out["spec_loader"] == "SourceFileLoader"  # no wrapper left behind
    assert out["pending"] == []


def test_an_imported_module_fires_at_once_and_a_submodule_fires_its_parent(
    tmp_path: Path,
) -> None:
    code = """
        import json, sys
        import late_lib
        from hyperdx.opentelemetry import import_hook
        fired = []
        now = import_hook.when_imported(["late_lib"], lambda: fired.append("now"))
        later = import_hook.when_imported(["late_lib.part", "nothing_here"],
                                          lambda: fired.append("part"))
        import late_lib.part
        print(json.dumps({"now": now, "later": later, "fired": fired,
                          "pending": import_hook.pending()}))
    """
    out = _python(code, tmp_path)
    assert out["now"] is True and out["later"] is False
    assert out["fired"] == ["now", "part"]
    assert out["pending"] == []  # the other name of a fired watch is dropped too


def test_threads_importing_at_once_fire_once_and_all_see_the_patch(tmp_path: Path) -> None:
    code = """
        import json, sys, threading
        from hyperdx.opentelemetry import import_hook
        calls = []

        def patch():
            calls.append(threading.get_ident())
            sys.modules["late_lib"].Thing.patched = True

        import_hook.when_imported(["late_lib"], patch)
        results = []
        start = threading.Barrier(8)

        def worker():
            start.wait()
            import late_lib
            results.append(getattr(late_lib.Thing, "patched", False))

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(json.dumps({"calls": len(calls), "results": results}))
    """
    out = _python(code, tmp_path)
    assert out["calls"] == 1
    assert out["results"] == [True] * 8


def test_a_raising_callback_does_not_break_the_import(tmp_path: Path) -> None:
    code = """
        import json
        from hyperdx.opentelemetry import import_hook

        def boom():
            raise RuntimeError("callback failed")

        import_hook.when_imported(["late_lib"], boom)
        import late_lib
        print(json.dumps({"ok": late_lib.LAST_LINE_RAN}))
    """
    assert _python(code, tmp_path) == {"ok": True}


def _entry_point(name: str):  # type: ignore[no-untyped-def]
    [ep] = [e for e in entry_points(group="opentelemetry_instrumentor") if e.name == name]
    return ep


def test_trigger_modules_come_from_package_metadata() -> None:
    assert trigger_modules(_entry_point("flask")) == ("flask",)
    assert trigger_modules(_entry_point("django")) == ("django",)
    assert trigger_modules(_entry_point("aiohttp-client")) == ("aiohttp",)
    assert trigger_modules(_entry_point("celery")) == ("celery",)
    assert trigger_modules(_entry_point("urllib")) == ("urllib.request",)
    assert trigger_modules(_entry_point("logging")) == ("logging",)
