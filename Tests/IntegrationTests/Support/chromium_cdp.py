#!/usr/bin/env python3
"""Drives a headless Chromium through the DevTools protocol over --remote-debugging-pipe.

Standard library only. Usage:

    chromium_cdp.py [--chromium PATH] [--deadline SECONDS] URL

It starts Chromium, opens URL in a new tab and prints one JSON line {"ok": true, "ready": URL}.
Then it reads commands from stdin, one per line, and answers each with one JSON line on stdout:

    eval JS               {"ok": true, "value": V}  (V: the result, by value; promises awaited)
    wait SECONDS JS       polls JS every 100 ms until it is truthy: {"ok": true, "value": V, "seconds": S}
    screenshot PATH       writes a PNG of the tab: {"ok": true, "path": PATH}
    scheme light|dark     emulates prefers-color-scheme: {"ok": true}
    quit                  {"ok": true, "bye": true}, then exits 0

A failed command (a JS exception, a CDP error) answers {"ok": false, "error": ...} and the driver goes
on. A `wait` that times out, a page that does not load, or the overall deadline (default 90 s) prints
{"ok": false, "error": ..., "diagnostics": {...}} (the page's #state text, its body text, console
messages and exceptions) and exits non-zero. End of stdin, SIGTERM and SIGINT end the driver too.
Chromium is always killed at the end (its whole process group).
"""

import base64
import ctypes
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time


class DriverError(Exception):
    pass


class Fatal(Exception):
    """Ends the driver with exit status 2 after printing diagnostics."""


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Chromium:
    def __init__(self, executable):
        self.profile = tempfile.mkdtemp(prefix="cdp-profile-")
        self.log_path = os.path.join(self.profile, "chromium.log")
        # Pipes: Chromium reads commands on fd 3 and writes replies on fd 4. The ends the child gets are
        # first duplicated above 10, so that moving them to 3 and 4 cannot overwrite one another.
        cmd_read, self.cmd_write = os.pipe()
        self.reply_read, reply_write = os.pipe()
        child_cmd = fcntl.fcntl(cmd_read, fcntl.F_DUPFD_CLOEXEC, 10)
        child_reply = fcntl.fcntl(reply_write, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(cmd_read)
        os.close(reply_write)

        def in_child():
            os.dup2(child_cmd, 3)
            os.dup2(child_reply, 4)
            # PR_SET_PDEATHSIG: Chromium gets SIGKILL if this driver dies without cleaning up.
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)

        arguments = [
            executable,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-dev-shm-usage",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-background-timer-throttling",
            "--disable-renderer-backgrounding",
            "--disable-backgrounding-occluded-windows",
            "--mute-audio",
            "--window-size=1100,760",
            "--user-data-dir=" + self.profile,
            "--remote-debugging-pipe",
            "about:blank",
        ]
        try:
            with open(self.log_path, "wb") as log:
                self.process = subprocess.Popen(
                    arguments,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    pass_fds=(3, 4),
                    preexec_fn=in_child,
                    start_new_session=True,
                )
        except OSError as error:
            for fd in (self.cmd_write, self.reply_read):
                os.close(fd)
            shutil.rmtree(self.profile, ignore_errors=True)
            raise DriverError("cannot start %s: %s" % (executable, error))
        finally:
            os.close(child_cmd)
            os.close(child_reply)
        self.buffer = b""
        self.next_id = 0
        self.console = []

    def send(self, method, params=None, session=None, timeout=10.0):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            written = os.write(self.cmd_write, data)
            data = data[written:]
        deadline = time.monotonic() + timeout
        while True:
            reply = self.receive(deadline)
            if reply is None:
                raise DriverError("no reply to %s within %.0f s" % (method, timeout))
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise DriverError("%s: %s" % (method, reply["error"].get("message", reply["error"])))
                return reply.get("result", {})
            self.note_event(reply)

    def receive(self, deadline):
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.reply_read], [], [], left)
            if not ready:
                return None
            chunk = os.read(self.reply_read, 1 << 16)
            if not chunk:
                raise Fatal("Chromium closed the DevTools pipe (exited with %s)" % self.process.poll())
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def note_event(self, message):
        method = message.get("method", "")
        params = message.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", []))
            self.console.append("console.%s: %s" % (params.get("type"), text))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.console.append("exception: %s" % details.get("exception", {}).get("description", details.get("text")))
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            self.console.append("log %s: %s %s" % (entry.get("level"), entry.get("text"), entry.get("url", "")))
        del self.console[:-30]

    def log_tail(self, limit=2000):
        """The end of Chromium's own log, without the D-Bus complaints of a machine without D-Bus."""
        try:
            with open(self.log_path, "rb") as log:
                lines = log.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return "\n".join(line for line in lines if "dbus" not in line.lower())[-limit:]

    def stop(self):
        try:
            if self.process.poll() is None:
                try:
                    self.send("Browser.close", timeout=2)
                except (DriverError, Fatal, OSError, ValueError):
                    pass
                try:
                    self.process.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            # The whole group: the browser, its zygote, renderer and utility processes.
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            for fd in (self.cmd_write, self.reply_read):
                try:
                    os.close(fd)
                except OSError:
                    pass
            shutil.rmtree(self.profile, ignore_errors=True)


class Tab:
    def __init__(self, browser):
        self.browser = browser
        # The first command also waits for Chromium to start, which is slow on a loaded machine.
        target = browser.send("Target.createTarget", {"url": "about:blank"}, timeout=30)
        attached = browser.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(domain + ".enable")

    def send(self, method, params=None, timeout=10.0):
        return self.browser.send(method, params, session=self.session, timeout=timeout)

    def evaluate(self, expression, timeout=10.0):
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            timeout=timeout,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise DriverError(details.get("exception", {}).get("description", details.get("text", "exception")))
        return result.get("result", {}).get("value")

    def navigate(self, url, timeout):
        answer = self.send("Page.navigate", {"url": url}, timeout=timeout)
        if answer.get("errorText"):
            raise Fatal("cannot open %s: %s" % (url, answer["errorText"]))
        self.wait(timeout, "document.readyState === 'complete' && location.href !== 'about:blank'")

    def wait(self, seconds, expression):
        start = time.monotonic()
        last_error = None
        while True:
            try:
                value = self.evaluate(expression, timeout=5)
                if value:
                    return value, time.monotonic() - start
                last_error = None
            except DriverError as error:
                last_error = str(error)
            if time.monotonic() - start >= seconds:
                raise Fatal(
                    "timeout after %.1f s waiting for %s%s"
                    % (seconds, expression, " (last error: %s)" % last_error if last_error else "")
                )
            time.sleep(0.1)

    def diagnostics(self):
        found = {}
        try:
            found["page"] = self.evaluate(
                "({url: location.href,"
                " state: (document.getElementById('state') || {}).textContent,"
                " body: document.body ? document.body.innerText : null})",
                timeout=3,
            )
        except (DriverError, Fatal, OSError, ValueError) as error:
            found["page"] = "unavailable: %s" % error
        found["console"] = list(self.browser.console)
        return found


def main():
    arguments = sys.argv[1:]
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    deadline = 90.0
    while len(arguments) > 1 and arguments[0].startswith("--"):
        if arguments[0] == "--chromium":
            executable = arguments[1]
        elif arguments[0] == "--deadline":
            deadline = float(arguments[1])
        else:
            break
        arguments = arguments[2:]
    if len(arguments) != 1:
        sys.stderr.write(__doc__)
        return 64
    url = arguments[0]

    def on_signal(number, _frame):
        raise Fatal("ended by signal %d" % number)

    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM):
        signal.signal(number, on_signal)
    signal.setitimer(signal.ITIMER_REAL, deadline)

    browser = None
    tab = None
    status = 0
    try:
        browser = Chromium(executable)
        tab = Tab(browser)
        tab.navigate(url, timeout=20)
        emit({"ok": True, "ready": url})
        for line in sys.stdin:
            command, _, rest = line.strip().partition(" ")
            if not command:
                continue
            try:
                if command == "eval":
                    emit({"ok": True, "value": tab.evaluate(rest)})
                elif command == "wait":
                    seconds, _, expression = rest.partition(" ")
                    value, took = tab.wait(float(seconds), expression)
                    emit({"ok": True, "value": value, "seconds": round(took, 3)})
                elif command == "screenshot":
                    shot = tab.send("Page.captureScreenshot", {"format": "png"}, timeout=15)
                    with open(rest, "wb") as file:
                        file.write(base64.b64decode(shot["data"]))
                    emit({"ok": True, "path": rest})
                elif command == "scheme":
                    features = [{"name": "prefers-color-scheme", "value": rest}]
                    tab.send("Emulation.setEmulatedMedia", {"features": features})
                    emit({"ok": True})
                elif command == "quit":
                    emit({"ok": True, "bye": True})
                    break
                else:
                    emit({"ok": False, "error": "unknown command %r" % command})
            except (DriverError, ValueError, OSError) as error:
                emit({"ok": False, "error": str(error)})
    except Fatal as error:
        status = 2
        answer = {"ok": False, "error": str(error)}
        if tab is not None:
            signal.setitimer(signal.ITIMER_REAL, 10)
            try:
                answer["diagnostics"] = tab.diagnostics()
            except Fatal:
                pass
        if browser is not None:
            answer["chromiumLog"] = browser.log_tail()
        emit(answer)
    except DriverError as error:
        status = 2
        emit({"ok": False, "error": str(error), "chromiumLog": browser.log_tail() if browser else ""})
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(number, signal.SIG_IGN)
        if browser is not None:
            browser.stop()
    return status


if __name__ == "__main__":
    sys.exit(main())
