"""JupyterLab as a person uses it: notebook 01 run through the UI in a real browser.

The test starts JupyterLab (this interpreter's, so the kernel is the project environment's
``python3``) on 127.0.0.1 with a random port and token, opens
``notebooks/01_data_preparation.ipynb`` in headless Chromium (Debian's ``/usr/bin/chromium``
driven by Playwright), clears the outputs and runs all cells from the menus (Edit > Clear
Outputs of All Cells, Run > Run All Cells), then checks that

- every code cell ran (each prompt shows an execution count), no cell shows an error, and
- the figures render: as many ``<img>`` outputs, each decoded (naturalWidth > 0), as the
  run produced image outputs, and at least as many as the committed notebook holds.

A screenshot of the whole executed notebook is saved to
``results/jupyterlab_01_data_preparation.png`` (also when the test fails, to show why).

The notebook on disk is never touched: JupyterLab serves a throw-away copy of the project
(a temporary folder whose ``notebooks/`` holds a copy of the notebook and whose other entries,
``configs/``, ``data/``..., are symbolic links to this checkout; ``runs/`` and ``results/`` are
empty folders of its own), so the notebook's relative paths (``../configs/...``) work as from
``notebooks/``; autosave is off and nothing is saved (the test checks that the copy is unchanged).
JupyterLab's settings, workspaces, configuration and runtime folders are temporary too, so
neither a user's setup nor news/update pop-ups get in the way.

Requirements: ``jupyterlab`` and ``playwright`` (the dev extra) and Debian's Chromium
(``scripts/install_browser_test_deps.sh``, which needs root; ``SRLIB_CHROMIUM`` names another
path). Playwright's own browser download (``playwright install``) is not used. Without a
Chromium the test is skipped, with the command that enables it, except under ``CI=true``
(CI runs as root and installs it), where a missing browser fails the test. A missing
jupyterlab or playwright always fails it (the dev extra installs both).
``SRLIB_UI_TIMEOUT`` (seconds, default 900) bounds the notebook's run.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "01_data_preparation.ipynb"
SCREENSHOT = ROOT / "results" / "jupyterlab_01_data_preparation.png"
CHROMIUM = os.environ.get("SRLIB_CHROMIUM") or "/usr/bin/chromium"
CHROMIUM_ARGS = [  # Playwright adds --headless and an empty, temporary --user-data-dir
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-proxy-server",
]
# Loopback needs no proxy, whatever the environment's http_proxy says.
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
INSTALL_HINT = ('install the dev extra (pip install -c constraints.txt -e ".[dev]": jupyterlab '
                "and playwright; do not run `playwright install`) and Debian's Chromium "
                "(sudo bash scripts/install_browser_test_deps.sh)")
CHROMIUM_HINT = ("to run it, install Debian's Chromium: sudo apt-get install chromium "
                 "(or: sudo bash scripts/install_browser_test_deps.sh), or set SRLIB_CHROMIUM "
                 "to a Chromium binary")

SERVER_START_TIMEOUT = 120   # s: JupyterLab answers /api/status
PAGE_TIMEOUT = 180           # s: the notebook is open and its kernel idle
RUN_TIMEOUT = float(os.environ.get("SRLIB_UI_TIMEOUT", "900"))  # s: Run All Cells finishes
IMAGE_TIMEOUT = 60           # s: the figures are decoded
MAX_SCREENSHOT_HEIGHT = 16000  # px: Chromium's limit for one capture is 16384

# JupyterLab user settings for the run (written to a temporary settings folder).
LAB_SETTINGS = {
    # Never write the document: no autosave (and the test never saves).
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    # Render every cell (no virtual scrolling), so all outputs are in the page and in the
    # screenshot; no blank space after the last cell.
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none", "scrollPastEnd": False},
    # No "news?" question and no update check.
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false",
                                                    "checkForUpdates": False},
}

# The state of the notebook tab, read in the page. The prompts are what a person sees
# ("[ ]:", "[*]:", "[3]:"); the kernel status, open dialogs and the notebook's content
# (nbformat JSON, with its outputs) come from JupyterLab's own objects
# (window.jupyterapp, exposed by --LabApp.expose_app_in_browser).
JS_STATE = """(name) => {
  const app = window.jupyterapp;
  const panel = app ? Array.from(app.shell.widgets('main')).find(
      w => w.context && w.context.path === name) : undefined;
  const node = panel ? panel.node : null;
  const cells = node ? Array.from(node.querySelectorAll('.jp-Notebook .jp-Cell')) : [];
  return {
    app: !!app,
    panel: !!panel,
    ready: !!(panel && panel.context.isReady),
    kernel: panel ? panel.sessionContext.kernelDisplayStatus : null,
    kernelName: panel && panel.sessionContext.session && panel.sessionContext.session.kernel
        ? panel.sessionContext.session.kernel.name : null,
    cells: cells.length,
    prompts: cells.filter(c => c.classList.contains('jp-CodeCell')).map(c => {
      const p = c.querySelector('.jp-InputArea-prompt');
      return p ? p.textContent.trim() : '';
    }),
    dialogs: Array.from(document.querySelectorAll('.jp-Dialog')).map(d => d.innerText),
  };
}"""
JS_MODEL = """(name) => Array.from(window.jupyterapp.shell.widgets('main')).find(
    w => w.context && w.context.path === name).content.model.toJSON()"""
JS_IMAGES = """(name) => {
  const panel = Array.from(window.jupyterapp.shell.widgets('main')).find(
      w => w.context && w.context.path === name);
  return Array.from(panel.node.querySelectorAll('.jp-OutputArea-output img')).map(
      i => ({complete: i.complete, width: i.naturalWidth, height: i.naturalHeight}));
}"""
JS_TEXT_OUTPUTS = """(name) => {
  const panel = Array.from(window.jupyterapp.shell.widgets('main')).find(
      w => w.context && w.context.path === name);
  return Array.from(panel.node.querySelectorAll('.jp-OutputArea-output')).map(o => o.innerText);
}"""
JS_OVERFLOW = """() => {
  const outer = document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer')
      || document.querySelector('.jp-NotebookPanel .jp-Notebook');
  return outer ? outer.scrollHeight - outer.clientHeight : 0;
}"""


# ------------------------------------------------------------------------------ helpers
def _fail(message: str) -> None:
    pytest.fail(message, pytrace=False)


def in_ci() -> bool:
    """CI=true (or 1), as CI sets it: there a missing browser is an error, not a skip.
    scripts/install_browser_test_deps.sh reads CI the same way."""
    return os.environ.get("CI", "").lower() in ("true", "1")


def _chromium_missing() -> None:
    """No Chromium: skip, saying how to enable the test; under CI=true, fail."""
    if in_ci():
        _fail(f"{CHROMIUM} is missing and CI=true: CI must run the JupyterLab browser test; "
              f"{INSTALL_HINT}")
    pytest.skip(f"{CHROMIUM} is missing: {CHROMIUM_HINT}")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _image_outputs(nb: dict) -> int:
    """How many image outputs (figures) a notebook's code cells hold."""
    return sum(1 for cell in nb.get("cells", []) if cell.get("cell_type") == "code"
               for out in cell.get("outputs", [])
               if any(mime.startswith("image/") for mime in out.get("data", {})))


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


def _errors(nb: dict) -> list[str]:
    """'cell N: traceback' for every error output of the notebook's code cells."""
    found = []
    for index, cell in enumerate(nb.get("cells", [])):
        for out in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            if out.get("output_type") == "error":
                tb = _strip_ansi("\n".join(out.get("traceback", [])))
                found.append(f"cell {index}: {out.get('ename')}: {out.get('evalue')}\n{tb}")
    return found


def _log_tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def lab_project():
    """A throw-away project folder: notebooks/<copy of the notebook>, the rest linked."""
    source = ROOT / "notebooks" / NOTEBOOK
    if not source.is_file():
        _fail(f"{source.relative_to(ROOT)} does not exist")
    tmp = Path(tempfile.mkdtemp(prefix="srlib-lab-"))
    try:
        project = tmp / "project"
        (project / "notebooks").mkdir(parents=True)
        for entry in ROOT.iterdir():
            if entry.name in ("notebooks", ".git", "runs", "results", ".pytest_cache"):
                continue
            (project / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
        for name in ("runs", "results"):
            (project / name).mkdir()
        # Files beside the notebooks (helpers, images) are linked; the notebook is copied.
        for entry in (ROOT / "notebooks").iterdir():
            if entry.name == NOTEBOOK:
                shutil.copy2(entry, project / "notebooks" / entry.name)
            elif entry.suffix != ".ipynb" and entry.name != ".ipynb_checkpoints":
                (project / "notebooks" / entry.name).symlink_to(
                    entry, target_is_directory=entry.is_dir())
        # JupyterLab's own folders, empty or holding only LAB_SETTINGS.
        for name in ("settings", "workspaces", "config", "runtime"):
            (tmp / name).mkdir()
        for plugin, values in LAB_SETTINGS.items():
            path = tmp / "settings" / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        yield tmp
    finally:
        # Links are removed, never followed: the checkout's files stay.
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def lab_server(lab_project):
    """JupyterLab on 127.0.0.1 serving lab_project/project/notebooks; yields (base_url, token)."""
    if importlib.util.find_spec("jupyterlab") is None:
        _fail(f"jupyterlab is not installed for {sys.executable}: {INSTALL_HINT}")
    port, token = _free_port(), secrets.token_hex(24)
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)   # the kernel must use matplotlib's inline backend
    env.update(
        JUPYTERLAB_SETTINGS_DIR=str(lab_project / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(lab_project / "workspaces"),
        JUPYTER_CONFIG_DIR=str(lab_project / "config"),
        JUPYTER_RUNTIME_DIR=str(lab_project / "runtime"),
        PYTHONUNBUFFERED="1",
    )
    cmd = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
        "--ip", "127.0.0.1", "--port", str(port), "--ServerApp.port_retries=0",
        f"--ServerApp.token={token}",
        f"--ServerApp.root_dir={lab_project / 'project' / 'notebooks'}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.expose_app_in_browser=True",
    ]
    log_path = lab_project / "jupyterlab.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=lab_project / "project" / "notebooks",
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if proc.poll() is not None:
                _fail(f"JupyterLab exited with {proc.returncode}:\n{_log_tail(log_path)}")
            try:
                req = urllib.request.Request(f"{base}/api/status",
                                             headers={"Authorization": f"token {token}"})
                with NO_PROXY.open(req, timeout=5) as resp:
                    json.load(resp)
                break
            except (OSError, ValueError):
                if time.monotonic() > deadline:
                    _fail(f"JupyterLab did not answer {base}/api/status within "
                          f"{SERVER_START_TIMEOUT} s:\n{_log_tail(log_path)}")
                time.sleep(0.5)
        yield base, token
    finally:
        _stop_server(proc, lab_project / "runtime")


def _stop_server(proc: subprocess.Popen, runtime_dir: Path) -> None:
    """SIGTERM (JupyterLab then shuts its kernels down), SIGKILL if it hangs; then kill any
    kernel still running on a connection file of this server's runtime folder."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
    marker = str(runtime_dir).encode()
    for pid_dir in Path("/proc").glob("[0-9]*"):
        try:
            if marker in (pid_dir / "cmdline").read_bytes():
                os.kill(int(pid_dir.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium driven by Playwright."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is None:
        _fail(f"playwright is not installed for {sys.executable}: {INSTALL_HINT}")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _chromium_missing()
    playwright = sync_playwright().start()
    chromium = None
    try:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=CHROMIUM_ARGS, timeout=60_000)
        yield chromium
    finally:
        if chromium is not None:
            try:
                chromium.close()
            except Exception:  # the browser may already be gone
                pass
        playwright.stop()


# --------------------------------------------------------------------------------- test
def test_notebook_01_runs_in_jupyterlab(browser, lab_project, lab_server):
    # (browser first: a missing Chromium skips, or Playwright fails, before JupyterLab starts)
    base, token = lab_server
    served = lab_project / "project" / "notebooks" / NOTEBOOK
    served_hash = _sha256(served)
    committed = json.loads(served.read_text())
    committed_figures = _image_outputs(committed)
    n_cells = len(committed["cells"])

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console_errors.append(str(e)))

    def state() -> dict:
        return page.evaluate(JS_STATE, NOTEBOOK)

    def wait_for(predicate, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            current = state()
            if current["dialogs"]:
                _fail(f"JupyterLab shows a dialog while {what}: {current['dialogs']}")
            if predicate(current):
                return current
            if time.monotonic() > deadline:
                _fail(f"timed out after {timeout:.0f} s {what}; state: {current}; "
                      f"browser console errors: {console_errors[-5:]}")
            time.sleep(1)

    def menu(top: str, item: str) -> None:
        """Click a main-menu entry, as a person does."""
        page.locator("#jp-MainMenu").get_by_role("menuitem", name=top, exact=True).click()
        page.locator(".lm-Menu").get_by_role("menuitem", name=item, exact=True).click()

    try:
        page.goto(f"{base}/lab/tree/{NOTEBOOK}?token={token}", timeout=PAGE_TIMEOUT * 1000)
        wait_for(lambda s: s["ready"] and s["cells"] == n_cells and s["kernel"] == "idle",
                 PAGE_TIMEOUT, "opening the notebook and starting its kernel")

        # Start from a blank notebook, as a reader who wants to run it all themselves.
        menu("Edit", "Clear Outputs of All Cells")
        wait_for(lambda s: all(p in ("[ ]:", "") for p in s["prompts"]), 30,
                 "clearing the outputs")
        assert page.evaluate(JS_IMAGES, NOTEBOOK) == [], "outputs were not cleared"

        started = time.monotonic()
        menu("Run", "Run All Cells")
        # Running: queued and running cells show [*]. Finished: no [*] left, kernel idle
        # (a cell that raises stops the run; the cells after it keep "[ ]").
        wait_for(lambda s: any(p not in ("[ ]:", "") for p in s["prompts"]), 60,
                 "starting Run All Cells")
        final = wait_for(lambda s: "[*]:" not in s["prompts"] and s["kernel"] == "idle",
                         RUN_TIMEOUT, "running all cells")
        run_seconds = time.monotonic() - started
        print(f"\nRun All Cells took {run_seconds:.0f} s; kernel {final['kernelName']}")

        # What the UI now holds: the notebook's content with the outputs just produced.
        executed = page.evaluate(JS_MODEL, NOTEBOOK)
        errors = _errors(executed)
        produced_figures = _image_outputs(executed)

        # Figures: every image output is in the page and decoded.
        deadline = time.monotonic() + IMAGE_TIMEOUT
        while True:
            images = page.evaluate(JS_IMAGES, NOTEBOOK)
            rendered = [i for i in images if i["complete"] and i["width"] > 0]
            if len(rendered) >= produced_figures or time.monotonic() > deadline:
                break
            time.sleep(1)
        shown_text = page.evaluate(JS_TEXT_OUTPUTS, NOTEBOOK)
    finally:
        _screenshot(page)

    assert final["kernelName"] == "python3", f"unexpected kernel {final['kernelName']}"
    assert not errors, "cells show errors:\n\n" + "\n\n".join(errors)
    tracebacks = [t for t in shown_text if "Traceback (most recent call last)" in t]
    assert not tracebacks, "outputs show tracebacks:\n\n" + "\n\n".join(tracebacks)
    not_run = [i for i, p in enumerate(final["prompts"]) if not re.fullmatch(r"\[\d+\]:", p)]
    assert not not_run, (f"code cells {not_run} did not run (prompts {final['prompts']}); "
                         f"browser console errors: {console_errors[-5:]}")
    assert produced_figures >= max(1, committed_figures), (
        f"the run produced {produced_figures} figures; the committed notebook holds "
        f"{committed_figures} (and at least one is expected)")
    assert len(rendered) == produced_figures, (
        f"{len(rendered)} of {produced_figures} figures rendered: {images}")
    assert _sha256(served) == served_hash, "JupyterLab saved the notebook"
    assert SCREENSHOT.is_file() and SCREENSHOT.stat().st_size > 0


def _screenshot(page) -> None:
    """The whole notebook in one picture: file browser closed, the window as tall as the
    notebook (up to MAX_SCREENSHOT_HEIGHT). Best effort: it documents the run, and must not
    hide the test's own failure."""
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    try:
        tab = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
        if tab.count():
            tab.first.click(timeout=10_000)   # collapses the file browser
        overflow = page.evaluate(JS_OVERFLOW)
        size = page.viewport_size
        height = min(MAX_SCREENSHOT_HEIGHT, size["height"] + max(0, overflow))
        page.set_viewport_size({"width": size["width"], "height": height})
        page.wait_for_timeout(1000)   # relayout
    except Exception as exc:
        print(f"screenshot: could not enlarge the window: {exc!r}")
    try:
        page.screenshot(path=str(SCREENSHOT), full_page=True, timeout=60_000)
    except Exception as exc:
        print(f"screenshot failed: {exc!r}")
