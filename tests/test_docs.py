"""The docs: ``mkdocs build --strict`` passes, and every command they show runs on the demo fixtures.

Every ```bash block of README.md and of each page under docs/ (pages added later included) runs, page by page and in
page order, in one bash script (``set -euo pipefail``) in a fresh folder holding the demo fixtures as ``fx/``
(``minimonkey-eval make-fixtures --out fx``: ``fx/checkpoint`` and ``fx/LMUData``, also ``$LMUData``); each
```python block of a page runs in that folder too, after the bash blocks before it. ```console blocks (GPU, cluster,
network, the whole suite) and ```text blocks are shown, never run. ``minimonkey-eval`` in those scripts is this
checkout's CLI: a real process forked from the session's preloaded forkserver (``tests/helpers/warm_cli.py``: the
imports are paid once, not ~10 s per command); ``MINIMONKEY_DOCS_FRESH=1`` starts a fresh interpreter per command
instead.
"""
from __future__ import annotations

import json
import os
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from helpers.runner_utils import cli_env
from markdown_it import MarkdownIt

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
RUN = {"bash", "python"}                    # fences that run
SHOWN = {"console", "text", "toml", "yaml"}  # fences that are only shown
PAGE_TIMEOUT_S = 600
MARK = "@@ docs block"                       # printed before each block: where a failure happened, how many ran

# ``minimonkey-eval`` (and ``docs-python FILE``, a python block) as the scripts find them first on PATH: asks the
# test's server to fork the command from the warm forkserver and prints its output, or (no server) runs this
# interpreter's CLI (or the file) afresh.
SHIM = '''#!{python}
import json, os, socket, sys
address = os.environ.get("MINIMONKEY_DOCS_SOCKET")
block = os.path.basename(sys.argv[0]) == "docs-python"
if not address:
    os.execv(sys.executable, [sys.executable, *([] if block else ["-m", "minimonkey_eval.cli"]), *sys.argv[1:]])
with socket.socket(socket.AF_UNIX) as conn:
    conn.connect(address)
    ask = {{"argv": sys.argv[1:], "python": block, "cwd": os.getcwd(), "env": dict(os.environ)}}
    conn.sendall(json.dumps(ask).encode() + b"\\n")
    reply = json.loads(conn.makefile().readline())
with open(reply["log"], encoding="utf-8", errors="replace") as log:
    sys.stdout.write(log.read())
sys.exit(reply["rc"])
'''


def fences(page: Path) -> list[tuple[str, str, int]]:
    """(language, code, first line) of every fenced code block of ``page``."""
    tokens = MarkdownIt("commonmark").parse(page.read_text(encoding="utf-8"))
    return [(t.info.strip().split(" ")[0], t.content, t.map[0] + 1) for t in tokens if t.type == "fence"]


def page_id(page: Path) -> str:
    return str(page.relative_to(REPO))


def page_script(page: Path, folder: Path) -> str:
    """The bash script of ``page``'s runnable blocks (a python block is written to a file and run from there)."""
    lines = ["set -euo pipefail", "PS4='+ [$EPOCHREALTIME] '", "set -x"]    # the trace times every command
    for number, (lang, code, line) in enumerate(fences(page)):
        if lang not in RUN:
            continue
        lines.append(f"echo \"{MARK} {page_id(page)}:{line} ({lang}) at $EPOCHREALTIME\"")
        if lang == "bash":
            lines.append(code)
        else:
            script = folder / f".block{number}.py"
            script.write_text(code, encoding="utf-8")
            lines.append(f"docs-python {script}")
    return "\n".join(lines) + "\n"


def test_every_fence_says_whether_it_runs():
    """A shell block fenced as ``sh`` or left untagged would escape this test: every fence names a known language."""
    odd = [f"{page_id(page)}:{line} '{lang}'" for page in PAGES for lang, _, line in fences(page)
           if lang not in RUN | SHOWN]
    assert not odd, f"fence these as bash (runs here) or console (shown only): {odd}"


def test_mkdocs_build_strict(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", REPO / "mkdocs.yml",
                           "--site-dir", tmp_path / "site"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").exists() and (tmp_path / "site" / "layout" / "index.html").exists()


def test_readme_is_short_and_links_every_page():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode()) < 6 * 1024, f"README.md is {len(readme.encode())} bytes; move detail into docs/"
    assert 'pip install -e ".[vlmeval,test]" && minimonkey-eval demo' in readme and "python -m pytest" in readme
    missing = [page.name for page in sorted((REPO / "docs").glob("*.md")) if f"docs/{page.name}" not in readme]
    assert not missing, f"README.md links no docs page named {missing}"


@pytest.fixture(scope="module")
def demo_fixtures(tmp_path_factory) -> Path:
    """``make-fixtures --out fx`` done once, in process: copied into each page's folder."""
    from minimonkey_eval.datasets.fixtures import write_sample_tsvs
    from minimonkey_eval.models.tiny_checkpoint import write_checkpoint

    fx = tmp_path_factory.mktemp("docs") / "fx"
    write_checkpoint(fx / "checkpoint")
    write_sample_tsvs(fx / "LMUData")
    return fx


@pytest.fixture(scope="module")
def cli_server(request):
    """A unix socket (None with MINIMONKEY_DOCS_FRESH=1) where the shim asks for a warm CLI process."""
    if os.environ.get("MINIMONKEY_DOCS_FRESH") == "1":
        yield None
        return
    warm = request.getfixturevalue("warm_cli")
    folder = Path(tempfile.mkdtemp(prefix="mmdocs"))       # short: a socket path has ~100 bytes
    counter = iter(range(10**6))

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            ask = json.loads(self.rfile.readline())
            log = folder / f"cli{next(counter)}.log"
            prelude = f"import os; os.chdir({ask['cwd']!r})"
            if ask["python"]:            # the block instead of the CLI, in the same preloaded process
                prelude += (f"; import runpy, sys; runpy.run_path({ask['argv'][0]!r}, run_name='__main__')"
                            "; sys.stdout.flush(); sys.stderr.flush(); os._exit(0)")
            child = warm.spawn(ask["argv"], ask["env"], log, prelude=prelude)
            rc = child.wait(timeout=PAGE_TIMEOUT_S)
            self.wfile.write(json.dumps({"rc": rc, "log": str(log)}).encode() + b"\n")

    server = socketserver.UnixStreamServer(str(folder / "cli.sock"), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield str(folder / "cli.sock")
    server.shutdown()
    server.server_close()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow          # ~10-60 s a page on 2 shared cores, plus the warm forkserver's imports once
@pytest.mark.parametrize("page", [p for p in PAGES if any(lang in RUN for lang, _, _ in fences(p))], ids=page_id)
def test_page_commands_run_on_the_demo_fixtures(page, tmp_path, demo_fixtures, cli_server):
    work = tmp_path / "work"
    shutil.copytree(demo_fixtures, work / "fx")
    shims = tmp_path / "bin"
    shims.mkdir()
    shim = shims / "minimonkey-eval"
    shim.write_text(SHIM.format(python=sys.executable), encoding="utf-8")
    shim.chmod(0o755)
    (shims / "docs-python").symlink_to(shim)
    (shims / "python").symlink_to(sys.executable)
    env = cli_env(PATH=f"{shims}{os.pathsep}{os.environ['PATH']}", LMUData=str(work / "fx" / "LMUData"))
    if cli_server:
        env["MINIMONKEY_DOCS_SOCKET"] = cli_server
    script = tmp_path / "page.sh"
    script.write_text(page_script(page, tmp_path), encoding="utf-8")
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(script)], cwd=work, env=env, capture_output=True, text=True,
                          timeout=PAGE_TIMEOUT_S)
    (tmp_path / "page.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")   # what a reader would see
    assert proc.returncode == 0, f"{page_id(page)}: a block failed (exit {proc.returncode}):\n" + (
        proc.stdout[-4000:] + proc.stderr[-4000:])
    ran = proc.stdout.count(MARK)
    assert ran == sum(lang in RUN for lang, _, _ in fences(page))
    print(f"{page_id(page)}: {ran} blocks in {time.monotonic() - t0:.1f} s")
    starts = [float(line.rsplit(" at ", 1)[1]) for line in proc.stdout.splitlines() if line.startswith(MARK)]
    print("  block seconds:", [round(b - a, 1) for a, b in zip(starts, starts[1:] + [time.time()])])
