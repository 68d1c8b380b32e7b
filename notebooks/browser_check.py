"""Runs the notebooks in a real JupyterLab, driven through headless Chromium as a student would:
open the notebook (a fresh `rust` kernel), Run > Run All Cells, wait until every code cell has
finished. A notebook fails on any stderr output (evcxr reports panics and `?` errors there with
an "ok" status), any error output, a cell that never finishes (per-cell timeout) or never runs,
an <img> that does not load (naturalWidth 0) or an SVG output that does not render, and a bare
`()` output. Saves a full-page screenshot per notebook and a report.

Usage (through notebooks/browser-check, which installs what this needs):
    notebooks/browser-check [--full] [--parallel 2] [--timeout S] [--progress-shots S] [NOTEBOOK ...]

Quick mode (default) sets PALM_CNN_QUICK=1 in JupyterLab's (so the kernels') environment and
removes runs/notebooks/quick first, as notebooks/run does; --full leaves it unset. The notebooks
on disk are never written: autosave is off, the server refuses every save, and the files'
hashes are compared before and after (a change fails the run).

Timing: JupyterLab's `recordTiming` setting is on, so the frontend writes the kernel messages'
header dates into each cell's `execution` metadata (iopub.execute_input, shell.execute_reply);
the script reads them from the notebook model in the page. "first cell" is the first code cell's
shell.execute_reply minus the moment the script clicked Run All Cells; "notebook" is the last
code cell's shell.execute_reply minus that same moment. Both are wall-clock times on this machine.

Output: a table, target/browser-check/report.json, target/browser-check/NN_name.png (whole
notebook), jupyterlab.log. Exit status 1 when a notebook failed, 2 on a setup error.
"""

import argparse
import hashlib
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
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = REPO / "target" / "browser-check"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MARKER = "PALM_CNN_BROWSER_CHECK"  # in the environment of every process this run starts

# JupyterLab user settings for the run (a temporary settings folder, not the user's).
SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "recordTiming": True,
        # every cell attached to the DOM, so that images are loaded and checked wherever they are
        "windowingMode": "none",
    },
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/extensionmanager-extension/plugin.jupyterlab-settings": {"enabled": False},
}

SERVER_CONFIG = '''
import os
from tornado.web import HTTPError

def refuse_save(model, path, contents_manager, **kwargs):
    with open(os.environ["PALM_CNN_BROWSER_CHECK_SAVES"], "a") as f:
        f.write(path + "\\n")
    raise HTTPError(403, "the browser check never saves files")

c.FileContentsManager.pre_save_hook = refuse_save
c.LabApp.expose_app_in_browser = True
c.LabServerApp.news_url = None
'''

# The notebook panel for a path, and what the check needs from it. Runs in the page.
JS_STATE = """
([path, detail]) => {
  const app = window.jupyterapp;
  if (!app) return {ready: false, why: 'JupyterLab not loaded'};
  let panel = null;
  for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path === path) { panel = w; break; }
  }
  if (!panel) return {ready: false, why: 'notebook not open'};
  const sc = panel.sessionContext;
  const session = sc && sc.session;
  const kernel = session && session.kernel;
  const text = (el) => (el ? el.textContent : '');
  // the element that scrolls the cells (the notebook's windowed list)
  const scroller = (p) => {
    const el = p.content.outerNode || p.content.node.querySelector('.jp-WindowedPanel-outer')
      || p.content.node;
    // the cells' height, without the blank space JupyterLab adds after the last cell
    const cells = p.content.widgets;
    const last = cells.length ? cells[cells.length - 1].node : null;
    const content = last
      ? last.getBoundingClientRect().bottom - el.getBoundingClientRect().top + el.scrollTop
      : el.scrollHeight;
    return {content: Math.ceil(content), clientHeight: el.clientHeight};
  };
  const cells = panel.content.widgets.map((w, i) => {
    const m = w.model;
    const c = {i, type: m.type};
    if (m.type !== 'code') return c;
    const src = m.sharedModel.getSource();
    c.empty = src.trim() === '';
    c.first = (src.split('\\n').find((l) => l.trim()) || '').slice(0, 80);
    c.prompt = text(w.node.querySelector('.jp-InputPrompt')).trim();
    c.count = m.executionCount;
    c.timing = m.getMetadata('execution') || null;
    c.outLen = text(w.node.querySelector('.jp-OutputArea')).length;
    if (!detail) return c;
    const outs = m.outputs.toJSON();
    c.errors = outs.filter((o) => o.output_type === 'error')
      .map((o) => `${o.ename}: ${o.evalue}`);
    c.modelStderr = outs.filter((o) => o.output_type === 'stream' && o.name === 'stderr')
      .map((o) => [].concat(o.text).join(''));
    c.domStderr = [...w.node.querySelectorAll(
      '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')].map(text);
    c.bareUnit = outs.some((o) => o.output_type === 'execute_result' && o.data
      && Object.keys(o.data).length === 1 && 'text/plain' in o.data
      && [].concat(o.data['text/plain']).join('').trim() === '()')
      || [...w.node.querySelectorAll('.jp-OutputArea-executeResult')]
        .some((e) => e.textContent.replace(/^\\s*\\[\\d*\\]:/, '').trim() === '()');
    c.mimes = outs.flatMap((o) => Object.keys(o.data || {}));
    return c;
  });
  const imgs = [...panel.content.node.querySelectorAll('img')].map((img) => {
    const out = img.closest('.jp-OutputArea-output');
    const cell = img.closest('.jp-Cell');
    return {complete: img.complete, w: img.naturalWidth, h: img.naturalHeight,
            mime: out ? out.getAttribute('data-mime-type') : 'markdown',
            cell: cell ? panel.content.widgets.findIndex((x) => x.node === cell) : -1};
  });
  const svgs = [...panel.content.node.querySelectorAll(
    '.jp-OutputArea-output[data-mime-type="image/svg+xml"]')].map((e) => {
    const r = (e.querySelector('svg, img') || e).getBoundingClientRect();
    const cell = e.closest('.jp-Cell');
    return {rendered: !!e.querySelector('svg, img'), w: r.width, h: r.height,
            cell: cell ? panel.content.widgets.findIndex((x) => x.node === cell) : -1};
  });
  return {ready: panel.context.isReady, why: '',
          kernel: kernel ? {id: kernel.id, name: kernel.name, status: kernel.status} : null,
          sessionId: session ? session.id : null, dirty: panel.context.model.dirty,
          cells, imgs: detail ? imgs : [], svgs: detail ? svgs : [],
          scroll: scroller(panel)};
}
"""

JS_PREPARE_SHOT = """
() => { const app = window.jupyterapp; app.shell.collapseLeft(); app.shell.collapseRight(); }
"""

JS_SCROLL_TOP = """
(path) => {
  for (const w of window.jupyterapp.shell.widgets('main')) {
    if (w.context && w.context.path === path) {
      const el = w.content.outerNode || w.content.node;
      el.scrollTop = 0;
    }
  }
}
"""

JS_SCROLL_TO_CELL = """
([path, index]) => {
  for (const w of window.jupyterapp.shell.widgets('main')) {
    if (w.context && w.context.path === path) {
      const cell = w.content.widgets[index];
      if (cell) cell.node.scrollIntoView({block: 'end'});
    }
  }
}
"""


def parse_date(value):
    """An ISO date from a Jupyter message header, as seconds since the epoch."""
    if not value:
        return None
    v = value.replace("Z", "+00:00")
    v = re.sub(r"(\.\d{6})\d+", r"\1", v)
    try:
        return datetime.fromisoformat(v).timestamp()
    except ValueError:
        return None


def library_stamp():
    """The newest modification time among the library's sources (src/ but the binaries,
    Cargo.toml, Cargo.lock):
    an edit there makes the next cell of every kernel compile the library again."""
    src = REPO / "src"
    files = [REPO / "Cargo.toml", REPO / "Cargo.lock",
             *(f for f in src.rglob("*") if f != src / "main.rs" and src / "bin" not in f.parents)]
    return max((f.stat().st_mtime for f in files if f.is_file()), default=0.0)


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loadavg():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def marked_pids(tag):
    """Processes whose environment carries this run's marker (kernels, evcxr, cargo, Chromium)."""
    pids = []
    needle = f"{MARKER}={tag}".encode()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if needle in (d / "environ").read_bytes().split(b"\0"):
                pids.append(int(d.name))
        except OSError:
            pass
    return pids


def sweep(tag, grace=5.0):
    """Ends every process this run started that is still alive: SIGTERM, then SIGKILL."""
    pids = marked_pids(tag)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        time.sleep(0.2)
        pids = [p for p in pids if Path(f"/proc/{p}").exists() and not zombie(p)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return len(marked_pids(tag))


def zombie(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


class Lab:
    """A JupyterLab server on 127.0.0.1 with a token, its own settings, runtime and workspace
    folders, started from the repository's root."""

    def __init__(self, env, tmp, log_path):
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        settings = tmp / "settings"
        for name, value in SETTINGS.items():
            p = settings / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps(value))
        config = tmp / "jupyter_server_config.py"
        config.write_text(SERVER_CONFIG)
        self.saves = tmp / "refused-saves.txt"
        env = dict(env)
        env.update(
            JUPYTERLAB_SETTINGS_DIR=str(settings),
            JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
            JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
            PALM_CNN_BROWSER_CHECK_SAVES=str(self.saves),
        )
        jupyter = Path(sys.executable).parent / "jupyter"
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [str(jupyter), "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
             f"--port={self.port}", "--port-retries=0", f"--IdentityProvider.token={self.token}",
             f"--ServerApp.root_dir={REPO}", f"--config={config}"],
            cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited ({self.proc.returncode}); see {log_path}")
            try:
                self.api("GET", "/api/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not answer in 120 s; see {log_path}")
                time.sleep(0.5)

    def api(self, method, path, timeout=30):
        req = urllib.request.Request(f"{self.base}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
            return json.loads(body) if body else None

    def sessions(self):
        return self.api("GET", "/api/sessions")

    def shutdown_session(self, session_id):
        try:
            self.api("DELETE", f"/api/sessions/{session_id}", timeout=60)
        except OSError:
            pass

    def stop(self):
        if self.proc.poll() is None:
            try:
                for s in self.sessions():
                    self.shutdown_session(s["id"])
                self.api("POST", "/api/shutdown", timeout=10)
            except OSError:
                pass
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except OSError:
                    pass
        self.log.close()


class Run:
    """One notebook in its own browser tab and its own fresh kernel."""

    def __init__(self, lab, context, nb_path, number, timeout, progress_shots):
        self.lab = lab
        self.path = nb_path
        self.rel = nb_path.relative_to(REPO).as_posix()
        self.name = nb_path.stem
        self.timeout = timeout
        self.progress_shots = progress_shots
        self.problems = []
        self.page = context.new_page()
        self.page.set_default_timeout(60_000)
        self.opened = time.time()
        self.trigger = None
        self.kernel_ready = None
        self.session_id = None
        self.done = False
        self.last_progress = None
        self.done_cells = 0
        self.cells = []
        self.samples = {}  # cell index -> output lengths seen while it ran
        self.shots = []
        self.next_shot = None
        self.idle_since = None
        self.load_start = loadavg()
        self.load_end = None
        self.finished_at = None
        url = f"{lab.base}/lab/workspaces/check-{number}/tree/{self.rel}?reset&token={lab.token}"
        self.page.goto(url)

    def state(self, detail=False):
        return self.page.evaluate(JS_STATE, [self.rel, detail])

    def wait_kernel(self, limit=300):
        deadline = time.monotonic() + limit
        while True:
            s = self.state()
            k = s.get("kernel")
            if s.get("ready") and k and k["status"] == "idle":
                self.kernel_ready = time.time()
                self.session_id = s["sessionId"]
                self.kernel = k
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.rel}: no idle kernel after {limit} s ({s.get('why') or k})")
            time.sleep(0.3)

    def run_all(self):
        """Run > Run All Cells, through the menu bar as a user would."""
        self.page.locator(".jp-Notebook").first.click(position={"x": 5, "y": 5})
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        # "Run All Cells" is JupyterLab's runmenu:run-all, which runs notebook:run-all-cells
        item = self.page.locator('.lm-Menu-item[data-command="runmenu:run-all"], '
                                 '.lm-Menu-item[data-command="notebook:run-all-cells"]').first
        item.wait_for(state="visible")
        self.trigger = time.time()
        self.stamp_start = library_stamp()
        item.click()
        self.last_progress = time.monotonic()

    def finished(self, cell):
        reply = parse_date((cell.get("timing") or {}).get("shell.execute_reply"))
        return reply is not None and reply >= self.trigger - 1 and cell["prompt"] != "[*]:"

    def poll(self, out_dir):
        """One look at the page; returns True once this notebook is finished (or failed)."""
        if self.done:
            return True
        s = self.state()
        k = s.get("kernel") or {}
        code = [c for c in s["cells"] if c["type"] == "code" and not c["empty"]]
        done = [c for c in code if self.finished(c)]
        running = [c for c in code if not self.finished(c)]
        now = time.monotonic()
        if len(done) > self.done_cells:
            self.done_cells = len(done)
            self.last_progress = now
            self.next_shot = None
        if running:
            cur = running[0]
            self.samples.setdefault(cur["i"], [])
            seen = self.samples[cur["i"]]
            if not seen or seen[-1] != cur["outLen"]:
                seen.append(cur["outLen"])
            if self.progress_shots:
                self.maybe_progress_shot(cur, now, out_dir)
        if k.get("status") in ("dead", "unknown") or s.get("kernel") is None:
            self.problems.append(f"the kernel is {k.get('status', 'gone')}")
            return self.finish(out_dir)
        if not running:
            if k.get("status") == "idle":
                return self.finish(out_dir)
            return False
        if k.get("status") == "idle" and not any(c["prompt"] == "[*]:" for c in code):
            # nothing queued any more, yet cells have not run: JupyterLab stopped after an error
            self.idle_since = self.idle_since or now
            if now - self.idle_since > 5:
                for c in running:
                    self.problems.append(f"cell {c['i']} ({c['first']!r}) never ran")
                return self.finish(out_dir)
        else:
            self.idle_since = None
        if now - self.last_progress > self.timeout:
            c = running[0]
            self.problems.append(
                f"cell {c['i']} ({c['first']!r}) did not finish within {self.timeout} s")
            return self.finish(out_dir)
        return False

    def maybe_progress_shot(self, cur, now, out_dir):
        if now - self.last_progress < self.progress_shots:
            return
        if self.next_shot is None:
            self.next_shot = now
        if now < self.next_shot or len(self.shots) >= 40:
            return
        self.next_shot = now + self.progress_shots
        self.page.evaluate(JS_SCROLL_TO_CELL, [self.rel, cur["i"]])
        p = out_dir / f"{self.name}-progress-{len(self.shots) + 1:02d}.png"
        self.page.screenshot(path=str(p))
        self.shots.append({"file": str(p.relative_to(REPO)), "cell": cur["i"],
                           "t_s": round(time.time() - self.trigger, 1),
                           "output_chars": cur["outLen"], "prompt": cur["prompt"]})

    def finish(self, out_dir):
        self.done = True
        self.finished_at = time.time()
        self.stamp_end = library_stamp()
        self.load_end = loadavg()
        time.sleep(1.0)  # let images decode
        s = self.state(detail=True)
        self.cells = s["cells"]
        for c in s["cells"]:
            if c["type"] != "code" or c["empty"]:
                continue
            where = f"cell {c['i']} ({c['first']!r})"
            if c["count"] is None and self.finished(c):
                # the kernel answered without running it (aborted after an earlier error)
                self.problems.append(f"{where} never ran")
            for e in c["errors"]:
                self.problems.append(f"{where} shows an error: {e}")
            # JupyterLab renders error outputs as stderr too; those are reported above
            err = "".join(c["modelStderr"]) or ("" if c["errors"] else "".join(c["domStderr"]))
            if err.strip():
                self.problems.append(f"{where} wrote to stderr:\n{err.rstrip()}")
            if c["bareUnit"]:
                self.problems.append(f"{where} shows a bare `()`")
        for img in s["imgs"]:
            if not img["complete"] or img["w"] == 0:
                self.problems.append(f"cell {img['cell']}: an image ({img['mime']}) did not render")
        for svg in s["svgs"]:
            if not svg["rendered"] or svg["w"] == 0 or svg["h"] == 0:
                self.problems.append(f"cell {svg['cell']}: an SVG output did not render")
        self.images = len(s["imgs"]) + len(s["svgs"])
        self.screenshot(out_dir)
        if self.session_id:
            self.lab.shutdown_session(self.session_id)
        return True

    def screenshot(self, out_dir):
        self.page.evaluate(JS_PREPARE_SHOT)
        view = self.page.viewport_size
        # The notebook scrolls inside JupyterLab's fixed layout: grow the window by what is
        # hidden below the fold so that one screenshot shows every cell.
        for _ in range(3):  # the layout settles (images, line wrapping) after a resize
            sc = self.state()["scroll"]
            hidden = sc["content"] + 30 - sc["clientHeight"]
            if hidden <= 2:
                break
            height = min(self.page.viewport_size["height"] + hidden, 30000)
            self.page.set_viewport_size({"width": view["width"], "height": height})
            self.page.evaluate(JS_SCROLL_TOP, self.rel)
            time.sleep(1.0)
        self.page.evaluate(JS_SCROLL_TOP, self.rel)
        time.sleep(0.5)
        self.shot = out_dir / f"{self.name}.png"
        self.page.screenshot(path=str(self.shot), full_page=True)
        self.page.set_viewport_size(view)

    def report(self, previous_stamp=None):
        code = [c for c in self.cells if c.get("type") == "code" and not c.get("empty")]
        cells = []
        for c in code:
            t = c.get("timing") or {}
            start = parse_date(t.get("iopub.execute_input"))
            reply = parse_date(t.get("shell.execute_reply"))
            fresh = reply is not None and self.trigger is not None and reply >= self.trigger - 1
            seen = [n for n in self.samples.get(c["i"], []) if n > 0]
            cells.append({
                "cell": c["i"], "source": c["first"],
                "kernel_s": round(reply - start, 2) if fresh and start else None,
                "since_run_all_s": round(reply - self.trigger, 2) if fresh else None,
                "output_updates_while_running": len(seen),
            })
        first = cells[0] if cells else {}
        last = [c["since_run_all_s"] for c in cells if c["since_run_all_s"] is not None]
        return {
            "notebook": self.rel,
            "ok": not self.problems,
            "problems": self.problems,
            "kernel": getattr(self, "kernel", None),
            "kernel_start_s": round(self.kernel_ready - self.opened, 1) if self.kernel_ready else None,
            "first_cell_s": first.get("since_run_all_s"),
            "first_cell_kernel_s": first.get("kernel_s"),
            "notebook_s": round(max(last), 1) if last and len(last) == len(cells) else None,
            "wall_s": round(self.finished_at - self.trigger, 1) if self.finished_at and self.trigger else None,
            # the library's sources changed after the previous notebook finished or while this
            # one ran: its first cell (or a later one) compiled the library again
            "library_edited": ", ".join(w for w, changed in (
                ("before", previous_stamp is not None and getattr(self, "stamp_start", 0) > previous_stamp),
                ("during", getattr(self, "stamp_end", 0) > getattr(self, "stamp_start", 0)),
            ) if changed) or None,
            "load_average_start": self.load_start,
            "load_average_end": self.load_end,
            "images": getattr(self, "images", 0),
            "screenshot": str(self.shot.relative_to(REPO)) if getattr(self, "shot", None) else None,
            "progress_screenshots": self.shots,
            "cells": cells,
        }


def on_signal(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="the course's sizes (PALM_CNN_QUICK unset)")
    ap.add_argument("--timeout", type=int, default=None,
                    help="seconds a cell may run (quick 900, full 3600)")
    ap.add_argument("--parallel", type=int, default=1, metavar="N",
                    help="open N notebooks at once, each in its own tab, and run them together")
    ap.add_argument("--progress-shots", type=float, default=0, metavar="S",
                    help="while a cell runs longer than S s, screenshot it every S s")
    ap.add_argument("--out", type=Path, default=OUT, help=f"default: {OUT.relative_to(REPO)}")
    ap.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/[0-9]*.ipynb")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    timeout = args.timeout or (3600 if args.full else 900)
    paths = [p.resolve() for p in args.notebooks] or sorted(HERE.glob("[0-9]*.ipynb"))
    if not paths:
        print("no notebooks found", file=sys.stderr)
        return 2
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing (apt-get install chromium)", file=sys.stderr)
        return 2
    out_dir = args.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = secrets.token_hex(8)
    env = dict(os.environ)
    env[MARKER] = tag
    os.environ[MARKER] = tag  # Chromium and Playwright's driver inherit it too
    if args.full:
        env.pop("PALM_CNN_QUICK", None)
    else:
        env["PALM_CNN_QUICK"] = "1"
        shutil.rmtree(REPO / "runs" / "notebooks" / "quick", ignore_errors=True)
    hashes = {p: sha256(p) for p in paths}
    tmp = Path(tempfile.mkdtemp(prefix="palm-cnn-browser-check-"))
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    mode = "full" if args.full else "quick"
    print(f"== browser check, {mode} mode, {len(paths)} notebook(s), {args.parallel} at a time, "
          f"{timeout} s per cell; load average {loadavg()}", flush=True)
    results = []
    previous_stamp = None  # library_stamp() when the last notebook finished
    lab = None
    started = time.time()
    status = 0
    try:
        lab = Lab(env, tmp, out_dir / "jupyterlab.log")
        print(f"   JupyterLab on {lab.base} (log: {(out_dir / 'jupyterlab.log').relative_to(REPO)})",
              flush=True)
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                str(tmp / "chromium-profile"), executable_path=CHROMIUM, headless=True,
                args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900},
            )
            try:
                queue = list(enumerate(paths, 1))
                while queue:
                    batch, queue = queue[: args.parallel], queue[args.parallel:]
                    runs = []
                    for number, path in batch:
                        before = {s["id"] for s in lab.sessions()}
                        r = Run(lab, context, path, number, timeout, args.progress_shots)
                        r.wait_kernel()
                        if r.session_id in before:
                            raise RuntimeError(f"{r.rel}: JupyterLab reused a running kernel")
                        print(f"-- {r.rel}: kernel {r.kernel['id'][:8]} ready in "
                              f"{r.kernel_ready - r.opened:.1f} s", flush=True)
                        runs.append(r)
                    for r in runs:
                        r.run_all()
                        print(f"-- {r.rel}: Run All Cells (load average {loadavg()})", flush=True)
                    pending = list(runs)
                    while pending:
                        for r in list(pending):
                            if r.poll(out_dir):
                                pending.remove(r)
                                rep = r.report(previous_stamp)
                                previous_stamp = max(previous_stamp or 0, r.stamp_end)
                                results.append(rep)
                                verdict = "ok" if rep["ok"] else "FAILED"
                                edited = (f"; the library's sources were edited {rep['library_edited']} it"
                                          if rep["library_edited"] else "")
                                print(f"{verdict} {r.rel}: first cell {rep['first_cell_s']} s, "
                                      f"notebook {rep['notebook_s']} s "
                                      f"(load average {rep['load_average_end']}{edited})", flush=True)
                                for p in rep["problems"]:
                                    print("   " + p.replace("\n", "\n   "), flush=True)
                                r.page.close()
                        time.sleep(0.5)
            finally:
                context.close()
    except KeyboardInterrupt as e:
        print(f"interrupted ({e})", file=sys.stderr)
        status = 130
    except Exception as e:  # setup failures: no JupyterLab, no kernel, Playwright errors
        print(f"browser check failed: {type(e).__name__}: {e}", file=sys.stderr)
        status = 2
    finally:
        if lab:
            lab.stop()
        left = sweep(tag)
        shutil.rmtree(tmp, ignore_errors=True)
    total = time.time() - started

    changed = [p for p in paths if sha256(p) != hashes[p]]
    refused = lab.saves.read_text().split() if lab and lab.saves.exists() else []
    print()
    print(f"{'notebook':<28} {'result':<7} {'kernel':>7} {'first cell':>11} {'notebook':>9}  "
          f"load avg (start / end)  library edited")
    for r in results:
        fmt = lambda v: "-" if v is None else f"{v:.1f} s"
        print(f"{Path(r['notebook']).name:<28} {'ok' if r['ok'] else 'FAILED':<7} "
              f"{fmt(r['kernel_start_s']):>7} {fmt(r['first_cell_s']):>11} {fmt(r['notebook_s']):>9}"
              f"  {r['load_average_start']} / {r['load_average_end']}  {r['library_edited'] or ''}")
    failed = sum(not r["ok"] for r in results)
    if changed:
        print("FAILED: the run changed these notebooks on disk: " + ", ".join(p.name for p in changed))
    if refused:
        print("note: JupyterLab tried to save (refused): " + ", ".join(refused))
    if left:
        print(f"warning: {left} process(es) of this run could not be ended")
    print(f"== {len(results) - failed}/{len(paths)} notebooks ran clean in the browser in {total:.0f} s")
    report = {
        "mode": mode, "parallel": args.parallel, "timeout_s": timeout,
        "started": datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        "total_s": round(total, 1), "load_average_end": loadavg(),
        "timing": "first_cell_s / notebook_s: shell.execute_reply (kernel message header date, "
                  "recorded by JupyterLab's recordTiming into the cell metadata) minus the time "
                  "Run All Cells was clicked; kernel_s: shell.execute_reply - iopub.execute_input",
        "changed_on_disk": [p.name for p in changed], "refused_saves": refused,
        "notebooks": results,
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    if status:
        return status
    if failed or changed or len(results) < len(paths):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
