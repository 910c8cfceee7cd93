"""What ships: the pipeline runs without devorg's dependencies (the `devorg` extra), the commands that need them
say which extra to install, and the command line hides Dagster's lifecycle warnings (tests still see them).

Each case runs a real Python process with the extra's modules blocked (`sys.modules[name] = None` makes their
import fail as if they were not installed), so nothing here depends on what the test process imported.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sf_pipeline.cli import DEVORG_EXTRA

ROOT = Path(__file__).resolve().parents[1]
BLOCK = f"import sys\nfor _name in {sorted(DEVORG_EXTRA)!r}:\n    sys.modules[_name] = None\n"


def _python(code: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_the_pipeline_imports_without_the_devorg_extra() -> None:
    # Every module but devorg's and the demo's: the code location, its stages, the command line, the libraries.
    done = _python(
        BLOCK
        + textwrap.dedent("""
        import importlib
        from pathlib import Path
        skipped = ("sf_pipeline.devorg", "sf_pipeline.demo", "sf_pipeline.definitions")
        paths = sorted(Path("sf_pipeline").rglob("*.py"))  # by file: pkgutil.walk_packages imports every package
        names = [".".join(p.with_suffix("").parts).removesuffix(".__init__") for p in paths]
        names = [n for n in names if not n.startswith(skipped)]
        for name in names:
            importlib.import_module(name)
        loaded = sorted(m for m in sys.modules if m.startswith("sf_pipeline.devorg"))
        print(len(names), "modules imported; devorg modules loaded:", loaded)
    """)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    count = int(done.stdout.split()[0])
    assert count > 50 and "devorg modules loaded: []" in done.stdout, done.stdout
    # sf_pipeline.definitions builds the code location when imported: its own imports are the stages above
    definitions = (ROOT / "sf_pipeline" / "definitions.py").read_text()
    assert "devorg" not in definitions and "demo" not in definitions


@pytest.mark.parametrize("command", [["devorg", "serve"], ["demo", "--size", "10"]])
def test_devorg_and_demo_name_the_extra_to_install_when_it_is_missing(command, tmp_path) -> None:
    done = _python(
        BLOCK + "from sf_pipeline.cli import main\nmain()\n",
        *command,
        "--data-dir" if command[0] == "demo" else "--data",
        str(tmp_path / "data"),
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "pip install 'sf-pipeline[devorg]'" in done.stderr, done.stderr
    assert (
        f"`sf-pipeline {' '.join(command[: 1 if command[0] == 'demo' else 2])}` needs devorg's dependencies"
        in done.stderr
    )
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()  # stopped before doing anything


def test_devorg_imports_with_the_extra_installed() -> None:
    # the other side of the test above: scripts/setup.sh installs the extra, so the same import succeeds
    done = _python("from sf_pipeline.cli import require_devorg\nrequire_devorg('devorg serve')\nprint('ok')\n")
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


LIFECYCLE = """
    import warnings
    import dagster
    warnings.simplefilter("always")
    {install}
    warnings.warn("a beta API", dagster.BetaWarning)
    warnings.warn("a preview API", dagster.PreviewWarning)
    warnings.warn("a superseded API", dagster.SupersessionWarning)
    warnings.warn("something the user must read", UserWarning)
"""


def test_the_command_line_hides_dagsters_lifecycle_warnings_and_nothing_else() -> None:
    # through the command group itself: any sf-pipeline command installs the filter before it runs
    install = (
        "import sys\nfrom sf_pipeline.cli import main\nsys.argv = ['sf-pipeline', 'incidents', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass"
    )
    done = _python(LIFECYCLE.replace("    {install}", textwrap.indent(install, "    ")))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "something the user must read" in done.stderr
    for hidden in ("a beta API", "a preview API", "a superseded API"):
        assert hidden not in done.stderr, done.stderr


def test_outside_the_command_line_the_lifecycle_warnings_stay_visible() -> None:
    done = _python(LIFECYCLE.replace("{install}", "pass"))
    assert done.returncode == 0, done.stderr[-3000:]
    for shown in ("a beta API", "a preview API", "a superseded API", "something the user must read"):
        assert shown in done.stderr, done.stderr
