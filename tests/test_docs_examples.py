"""Every example in README.md and docs/ runs as written against the stack of `make run` (issue 18,
item 5), `make demo` prints a clip URL that downloads the clip, and every URL `make run` prints
opens something in a browser.

**What runs.** Each fenced ```sh, ```bash and ```python block of README.md and docs/**/*.md, in the
order of its document, as a reader pastes them into one terminal in the checkout with `make run`
going and `make demo` done:

- the stack is scripts/devserver.py as `make run` starts it (RunStack of test_make_run_kill.py,
  Flower open as `make run` leaves it), and scripts/demo.py is run against it as `make demo` runs it;
- the stack listens on free ports, not on :8000, :9000 and :5555, which another `make run` or test
  on the machine may hold. Before a block runs, `http://127.0.0.1:8000`, `http://127.0.0.1:9000`
  and `http://127.0.0.1:5555` in its text are replaced by the stack's addresses: the only change
  made to an example;
- the shell's directory is a scratch directory that looks like the checkout (`.venv` and
  `manage.py` link to this one), so the files the examples write (request.json, frame1.jpg …) stay
  out of the work tree; RESOURCED_VAR_DIR names the stack's var dir, so `manage.py createsession`
  issues sessions of the running stack, as it does in a checkout running `make run`;
- every block runs in `bash -e -o pipefail`; the variables a block sets are set in the blocks of
  the same document after it (carried with `declare -p`).

**What is checked.**

- every command exits 0;
- an answer shown in a comment line after a command (`# {"code": 0, ...}`, `# 304`) is compared
  with what the command printed: the keys of a JSON answer must equal the real answer's at every
  level (with `...` in the comment, the keys shown must be among them) and its ErrorCode, errCode
  or code must be the real one; a single token (`# 304`, a SessionId) must be what was printed
  (a 3-digit status) or have its shape (length and kinds of characters). After a comment that says
  to post `again`, the command before is repeated until that answer comes;
- a ```json block is the answer of the runnable block before it, compared the same way, unless
  JSON_CHECKS names where its real counterpart comes from (a callback the service really sent, the
  OpenAPI schema, a log line);
- a ```python block runs, and PYTHON_CHECKS says what is done with what it defines.

**Not run**: a block with `<!-- example: not run (<reason>) -->` on the line before its fence and
an entry in NOT_RUN with the same reason. Any other block that does not run fails the test, so a
new example cannot rot unnoticed; a marker without an entry, or an entry without its marker, fails
test_every_example_is_run_or_marked_not_run, and so does an unmarked block that would change the
machine it runs on (sudo, systemctl, docker, apt-get …: HOST_COMMANDS), which is never run here.
"""

import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

from tests.servers import ROOT, wait_for
from tests.test_make_run_kill import PYTHON, RunStack

pytestmark = pytest.mark.slow

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
RUNNABLE = {"sh", "bash", "python"}
# other names of those languages: an example tagged so would be neither run nor caught
UNTESTED_TAGS = {"shell", "console", "zsh", "py", "python3", "pycon"}
# the addresses of `make run` in the examples, and which address of the test's stack replaces each
DOCUMENTED_ADDRESSES = {"http://127.0.0.1:8000": "web", "http://127.0.0.1:9000": "s3_url",
                        "http://127.0.0.1:5555": "flower"}
EMBEDDED_CALLBACK_SECRET = "embedded-callback-secret"  # CALLBACK_SECRET of resourced.settings.base
CODE_FIELDS = ("ErrorCode", "errCode", "code")
# commands that change the machine itself: a block with one is never run here, marked or not
HOST_COMMANDS = re.compile(r"(?m)(?:^|[;&|(]|\$\()\s*(?:\w+=\S*\s+)*(?P<command>sudo|su|systemctl|useradd|usermod|"
                           r"docker|apt-get|apt|dnf|yum|pip|install|shutdown|reboot)\b")
STEP_TIMEOUT = 240

# (document, the start of the block's first line): the reason of its `not run` marker
NOT_RUN = {
    # the README's two commands: `make run` is the stack this module starts (its devserver.py), `make
    # test` the whole suite, this module included
    ("README.md", "make run    # the whole service"): "the stack and the suite themselves",
    # emptying the gunicorn counters' folder belongs before gunicorn starts (deploy/start/web and
    # devserver.py do it); pasted beside a running `make run` it would delete its live counters
    ("docs/operations-monitoring.md", 'rm -rf "$PROMETHEUS_MULTIPROC_DIR"'):
        "a start-script step before gunicorn starts",
    # promtool on /etc/prometheus and a Prometheus server's reload (tests/deploy/test_monitoring.py
    # runs promtool on the rules themselves)
    ("docs/operations-monitoring.md", "promtool check rules /etc/prometheus"): "production host",
    # jq over a production worker's JSON log file (`make run` logs plain lines to its terminal)
    ("docs/operations-monitoring.md", "jq -c 'select(.task_id"): "production host",
    # Docker Compose and systemd on the hosts of a deployment (tests/deploy/ checks those files)
    ("docs/deploy.md", "cp deploy/env.example deploy/env"): "production host",
    ("docs/deploy.md", "RESOURCED_WORKER_HOSTNAME=media-2 docker compose"): "production host",
    ("docs/deploy.md", "useradd --system"): "production host",
    ("docs/deploy.md", "systemctl enable --now"): "production host",
}

# (document, a piece of the block's text): where the real counterpart of a ```json block comes from
JSON_CHECKS = {
    ("docs/api.md", '"task_id": "optional client id'): "restore request fields",
    ("docs/api.md", '"type": 1, "task_id": "..."'): "restore result callback",
    ("docs/client/restore.md", '"type": 1, "task_id": "job-42"'): "restore result callback",
    ("docs/operations-monitoring.md", '"asctime"'): "json log line",
}
# (document, a piece of the block's text): what is done with what a ```python block defines
PYTHON_CHECKS = {
    ("docs/client/restore.md", "def verify("): "verify real deliveries",
}


# --- the examples ------------------------------------------------------------------------------


@dataclass
class Block:
    doc: str  # relative to the checkout
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    marker: str | None  # the text of `<!-- example: … -->` on the line before the fence

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0]

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def read_blocks(path: Path) -> list[Block]:
    lines = path.read_text().split("\n")
    blocks, i = [], 0
    while i < len(lines):
        fence = re.fullmatch(r"```(\S*)\s*", lines[i])
        if not fence:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        marker = re.fullmatch(r"<!--\s*example:\s*(.*?)\s*-->", lines[i - 1].strip()) if i else None
        blocks.append(Block(str(path.relative_to(ROOT)), i + 1, fence.group(1).lower(), "\n".join(lines[i + 1:end]),
                            marker.group(1) if marker else None))
        i = end + 1
    return blocks


def entry(block: Block, table: dict, *, by_first_line: bool = False):
    """The key of `table` naming `block`, or None."""
    keys = [(doc, piece) for doc, piece in table if doc == block.doc
            and (block.first_line.startswith(piece) if by_first_line else piece in block.text)]
    assert len(keys) <= 1, f"{block.where}: named by more than one entry: {keys}"
    return keys[0] if keys else None


def not_run_reason(block: Block) -> str | None:
    found = re.fullmatch(r"not run \((.+)\)", block.marker or "")
    return found.group(1) if found else None


ALL_BLOCKS = [block for path in DOCS for block in read_blocks(path)]


def checked(block: Block) -> bool:
    """Run (or compared) by this module: neither marked nor listed as not run, nor one that would
    change the machine (test_every_example_is_run_or_marked_not_run fails on those)."""
    return ((block.lang in RUNNABLE or block.lang == "json") and not_run_reason(block) is None
            and entry(block, NOT_RUN, by_first_line=True) is None
            and not (block.lang in ("sh", "bash") and HOST_COMMANDS.search(block.text)))


CHECKED_DOCS = sorted({block.doc for block in ALL_BLOCKS if checked(block)})


# --- answers shown in the docs ------------------------------------------------------------------


def parse_answer(text: str) -> tuple[object, bool]:
    """A documented JSON answer, and whether it elides keys or items (`, ...}`, `[...]`; a "..."
    string is a value like any other)."""
    text, lists = re.subn(r"\[\s*\.\.\.\s*\]", "[]", text)
    text, tails = re.subn(r",\s*\.\.\.\s*([}\]])", r"\1", text)
    return json.loads(text), bool(lists or tails)


def parses(text: str) -> bool:
    try:
        parse_answer(text)
    except ValueError:
        return False
    return True


def shape_problems(documented, real, *, loose: bool, path: str = "answer") -> list[str]:
    """Where `real` has another shape than `documented`: the keys of every object (in lists too),
    and the ErrorCode / errCode / code of the top object."""
    if isinstance(documented, dict):
        if not isinstance(real, dict):
            return [f"{path}: documented an object, the real one is {json.dumps(real)[:300]}"]
        problems = []
        if path == "answer":
            problems += [f"{path}.{field}: documented {documented[field]!r}, the real one is {real[field]!r}"
                         for field in CODE_FIELDS if field in documented and field in real
                         and documented[field] != real[field]]
        if missing := sorted(documented.keys() - real.keys()):
            problems.append(f"{path}: documented keys the real one lacks: {missing}")
        if not loose and (extra := sorted(real.keys() - documented.keys())):
            problems.append(f"{path}: keys of the real one not documented: {extra}")
        for key in documented.keys() & real.keys():
            problems += shape_problems(documented[key], real[key], loose=loose, path=f"{path}.{key}")
        return problems
    if isinstance(documented, list) and any(isinstance(item, dict) for item in documented):
        if not isinstance(real, list):
            return [f"{path}: documented a list, the real one is {json.dumps(real)[:300]}"]
        # each object shown against the real one at its place (or the last, when fewer came)
        return [problem for i, item in enumerate(documented) if real
                for problem in shape_problems(item, real[min(i, len(real) - 1)], loose=loose, path=f"{path}[{i}]")]
    return []


def token_problems(sample: str, stdout: str) -> list[str]:
    """A documented output of one token against the last line printed."""
    printed = (stdout.strip().splitlines() or [""])[-1].strip()
    if re.fullmatch(r"\d{3}", sample):  # an HTTP status
        return [] if printed == sample else [f"printed {printed!r}, documented {sample!r}"]
    kinds = {"0-9" if c.isdigit() else "A-Z" if c.isupper() else "a-z" if c.islower() else re.escape(c)
             for c in sample}
    if re.fullmatch(f"[{''.join(sorted(kinds))}]{{{len(sample)}}}", printed):
        return []
    return [f"printed {printed[:300]!r}, which has not the shape of the documented {sample!r}"]


def printed_json(stdout: str):
    """The JSON a command printed: all of it, else its last line that is JSON."""
    try:
        return json.loads(stdout)
    except ValueError:
        pass
    for line in reversed(stdout.strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    raise ValueError(f"no JSON in what was printed: {stdout[-500:]!r}")


@dataclass
class Step:
    commands: str
    answer: str | None  # the documented answer of the commands: JSON, or a single token
    again: bool = False  # repeat the commands until that answer comes


def steps(block: Block) -> list[Step]:
    """A shell block cut after each answer shown in a comment line (`# {...}`, `# 304`)."""
    lines, found, commands, again, i = block.text.split("\n"), [], [], False, 0
    while i < len(lines):
        line = lines[i]
        text = line[2:].strip() if line.startswith("# ") else None
        if text is None or not (text.startswith(("{", "[")) or re.fullmatch(r"\S+", text)):
            if text is not None and re.search(r"\bagain\b", text):
                again = True  # "… post again after TimeWait ms:"
            else:
                commands.append(line)
            i += 1
            continue
        answer, i = text, i + 1
        while answer.startswith(("{", "[")) and not parses(answer) and i < len(lines) and lines[i].startswith("#"):
            answer += " " + lines[i][1:].strip()
            i += 1
        if again and found:
            found.append(Step(found[-1].commands, answer, again=True))
        else:
            found.append(Step("\n".join(commands), answer))
        commands, again = [], False
    if any(line.strip() for line in commands):
        found.append(Step("\n".join(commands), None))
    return found


def answer_problems(answer: str, stdout: str) -> list[str]:
    if not answer.startswith(("{", "[")):
        return token_problems(answer, stdout)
    documented, loose = parse_answer(answer)
    try:
        real = printed_json(stdout)
    except ValueError as exc:
        return [str(exc)]
    return shape_problems(documented, real, loose=loose)


# --- the live stack --------------------------------------------------------------------------


class Receiver:
    """A client's callback receiver on loopback: records each delivery's headers and raw body and
    answers {"code": 0} as the docs ask."""

    def __init__(self):
        self.deliveries: list[tuple[dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.deliveries.append((dict(self.headers), body))
                answer = b'{"code": 0, "message": "success"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/restore-done"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self) -> list[dict]:
        return [json.loads(body) for _, body in self.deliveries]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Live:
    """The stack, `make demo`'s output, the reader's directory, and what the JSON checks compare
    with (made when first asked for)."""

    def __init__(self, stack: RunStack, demo_output: str, reader_dir: Path):
        self.stack, self.demo_output, self.reader_dir = stack, demo_output, reader_dir
        self.env = dict(stack.env)
        self.http = requests.Session()
        self._receiver: Receiver | None = None

    def substitute(self, text: str) -> str:
        for documented, attribute in DOCUMENTED_ADDRESSES.items():
            text = text.replace(documented, getattr(self.stack, attribute))
        return text

    def manage(self, *args: str, **extra_env) -> subprocess.CompletedProcess:
        return subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env={**self.env, **extra_env},
                              capture_output=True, text=True, timeout=120, check=True)

    def receiver(self) -> Receiver:
        """A restore of two objects of the demo recording whose callbacks (type 0 and type 1) went to
        a receiver of ours: what the service really sends, raw."""
        if self._receiver is None:
            receiver = Receiver()
            session = self.manage("createsession", "--user", "docs-callbacks@example.com").stdout.strip()
            task_id = f"docs-{uuid.uuid4().hex[:12]}"
            answer = self.http.post(f"{self.stack.web}/resource/v1/i/restore", headers={"X-Session-Id": session},
                                    json={"task_id": task_id, "file_dir": f"restore/{task_id}",
                                          "callback_url": receiver.url,
                                          "files": ["mp4/DEMOPEER/demo-recording/1/manifest.mpd",
                                                    "mp4/DEMOPEER/demo-recording/1/init-0.m4s"]}, timeout=30)
            assert answer.status_code == 200 and answer.json()["message"] == "accepted", answer.text
            try:
                wait_for(lambda: {1, 0} <= {body.get("type") for body in receiver.bodies()}, 90,
                         "the type 0 and type 1 callbacks of the restore")
            except AssertionError:
                receiver.close()
                raise
            self._receiver = receiver
        return self._receiver

    def counterpart(self, check: str):
        """The real value a ```json block named in JSON_CHECKS is compared with."""
        if check == "restore result callback":
            return next(body for body in self.receiver().bodies() if body["type"] == 1)
        if check == "restore request fields":
            schema = self.http.get(f"{self.stack.web}/api/schema/", params={"format": "json"}, timeout=30).json()
            body = schema["paths"]["/resource/v1/i/restore"]["post"]["requestBody"]["content"]["application/json"]
            name = body["schema"]["$ref"].rsplit("/", 1)[-1]
            return dict.fromkeys(schema["components"]["schemas"][name]["properties"])
        if check == "json log line":
            logged = self.manage("shell", "-c", "import logging; logging.getLogger('exports.services').info('docs')",
                                 LOG_JSON="true")
            return printed_json(logged.stderr)
        raise AssertionError(f"no such JSON check: {check}")

    def close(self) -> None:
        if self._receiver is not None:
            self._receiver.close()


class Shell:
    """One reader's terminal for one document: bash runs each step in the reader's directory with
    the variables earlier steps set."""

    def __init__(self, live: Live, doc: str, blocks: list[Block]):
        self.live = live
        self.state = live.reader_dir / f".state-{re.sub(r'[^A-Za-z0-9]+', '-', doc)}.sh"
        self.state.write_text("")
        assigned = "\n".join(block.text for block in blocks if block.lang in ("sh", "bash"))
        self.names = sorted(set(re.findall(r"(?m)^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=", assigned)))

    def run(self, commands: str) -> subprocess.CompletedProcess:
        keep = f"{{ declare -p {' '.join(self.names)} 2>/dev/null || true; }} > '{self.state}'" if self.names else ""
        script = f"source '{self.state}'\n{self.live.substitute(commands)}\n{keep}\n"
        return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=self.live.reader_dir,
                              env=self.live.env, capture_output=True, text=True, timeout=STEP_TIMEOUT, check=False)


def failure(block: Block, commands: str, process: subprocess.CompletedProcess | None, problems: list[str]) -> str:
    shown = f"\n--- stdout\n{process.stdout[-2000:]}\n--- stderr\n{process.stderr[-2000:]}" if process else ""
    return f"{block.where} ({block.lang}):\n{commands}\n--- problems\n" + "\n".join(problems) + shown


def run_shell_block(shell: Shell, block: Block) -> tuple[list[str], str | None]:
    """What does not run as written, and what the block's last step printed (the answer a ```json
    block after it shows)."""
    failures, process = [], None
    for step in steps(block):
        process = shell.run(step.commands)
        if process.returncode != 0:
            failures.append(failure(block, step.commands, process, [f"exit status {process.returncode}"]))
            break  # the commands after a failed one would only fail with it
        if step.answer is None:
            continue
        problems = answer_problems(step.answer, process.stdout)
        deadline = time.monotonic() + 90
        while step.again and problems and process.returncode == 0 and time.monotonic() < deadline:
            time.sleep(1)  # the same request again, until the documented answer comes
            process = shell.run(step.commands)
            problems = answer_problems(step.answer, process.stdout)
        if problems:
            failures.append(failure(block, step.commands, process, problems))
    return failures, process.stdout if process is not None and process.returncode == 0 else None


def run_python_block(live: Live, block: Block) -> list[str]:
    process = subprocess.run([".venv/bin/python", "-c", live.substitute(block.text)], cwd=live.reader_dir,
                             env=live.env, capture_output=True, text=True, timeout=STEP_TIMEOUT, check=False)
    if process.returncode != 0:
        return [failure(block, block.text, process, [f"exit status {process.returncode}"])]
    check = entry(block, PYTHON_CHECKS)
    if check is None:
        return []
    assert PYTHON_CHECKS[check] == "verify real deliveries"
    defined: dict = {}
    exec(compile(block.text, block.where, "exec"), defined)  # noqa: S102 (the documented verifier)
    verify = defined["verify"]
    problems = []
    for headers, body in live.receiver().deliveries:
        signature, delivery = headers["X-Resourced-Signature"], headers["X-Resourced-Delivery"]
        if not verify(body, signature, delivery, EMBEDDED_CALLBACK_SECRET):
            problems.append(f"verify() refused a real delivery: {headers} {body[:300]!r}")
        if verify(body + b" ", signature, delivery, EMBEDDED_CALLBACK_SECRET):
            problems.append("verify() accepted a changed body")
        if verify(body, signature, delivery + "x", EMBEDDED_CALLBACK_SECRET):
            problems.append("verify() accepted another delivery id")
        if verify(body, signature, delivery, "another-secret"):
            problems.append("verify() accepted another secret")
    return [failure(block, block.text, None, problems)] if problems else []


def check_json_block(live: Live, block: Block, previous_output: str | None) -> list[str]:
    documented, loose = parse_answer(block.text)
    check = entry(block, JSON_CHECKS)
    if check is not None:
        real = live.counterpart(JSON_CHECKS[check])
    elif previous_output is None:
        return [failure(block, block.text, None, ["the example before it did not run: nothing to compare with"])]
    else:
        try:
            real = printed_json(previous_output)
        except ValueError as exc:
            return [failure(block, block.text, None, [str(exc)])]
    problems = shape_problems(documented, real, loose=loose)
    if problems:
        problems.append(f"the real one: {json.dumps(real)[:1500]}")
        return [failure(block, block.text, None, problems)]
    return []


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(log_dir):
    var_dir = Path(tempfile.mkdtemp(prefix="rs-docs-"))  # short: the broker's unix socket lives under it
    reader_dir = Path(tempfile.mkdtemp(prefix="rs-reader-"))
    (reader_dir / ".venv").symlink_to(ROOT / ".venv")
    (reader_dir / "manage.py").symlink_to(ROOT / "manage.py")
    stack = RunStack(var_dir, flower_auth=None)
    context = None
    try:
        stack.wait_running()
        wait_for(lambda: requests.get(f"{stack.web}/healthz", timeout=10).status_code == 200, 90, "healthz 200")
        # `make demo`: the Makefile's recipe, with the addresses of this stack
        demo = subprocess.run([PYTHON, "scripts/demo.py"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                              env={**stack.env, "RESOURCED_API": stack.web, "RESOURCED_S3_ENDPOINT_URL": stack.s3_url},
                              check=False)
        assert demo.returncode == 0, f"make demo failed:\n{demo.stdout[-3000:]}\n{demo.stderr[-3000:]}"
        context = Live(stack, demo.stdout, reader_dir)
        yield context
    finally:
        if context is not None:
            context.close()
        stack.stop()
        shutil.copy(stack.log_path, log_dir / f"make-run-{var_dir.name}.log")
        shutil.rmtree(var_dir, ignore_errors=True)
        shutil.rmtree(reader_dir, ignore_errors=True)


# --- tests ---------------------------------------------------------------------------------


def test_every_example_is_run_or_marked_not_run():
    problems = []
    for block in ALL_BLOCKS:
        if block.lang in UNTESTED_TAGS:
            problems.append(f"{block.where}: tag it ```sh, ```bash or ```python, not ```{block.lang}")
        reason, key = not_run_reason(block), entry(block, NOT_RUN, by_first_line=True)
        if block.marker is not None and reason is None:
            problems.append(f"{block.where}: unknown marker <!-- example: {block.marker} -->")
        if reason is not None and key is None:
            problems.append(f"{block.where}: marked `not run ({reason})` but not listed in NOT_RUN")
        if key is not None and reason != NOT_RUN[key]:
            problems.append(f"{block.where}: NOT_RUN says {NOT_RUN[key]!r}, its marker {block.marker!r}")
        if reason is None and block.lang in ("sh", "bash") and (found := HOST_COMMANDS.search(block.text)):
            problems.append(f"{block.where}: runs `{found.group('command')}` on the reader's machine: not run here, "
                            "so mark it <!-- example: not run (<reason>) --> and list it in NOT_RUN")
    for table, by_first_line in ((NOT_RUN, True), (JSON_CHECKS, False), (PYTHON_CHECKS, False)):
        for doc, piece in table:
            named = [b for b in ALL_BLOCKS if b.doc == doc
                     and (b.first_line.startswith(piece) if by_first_line else piece in b.text)]
            if len(named) != 1:
                problems.append(f"{(doc, piece)} names {len(named)} blocks, not one")
    for doc in sorted({block.doc for block in ALL_BLOCKS if checked(block)}):
        runnable_before = False
        for block in (b for b in ALL_BLOCKS if b.doc == doc):
            if block.lang == "json" and checked(block):
                if not runnable_before and entry(block, JSON_CHECKS) is None:
                    problems.append(f"{block.where}: a JSON example with no example before it: name it in JSON_CHECKS")
                try:
                    parse_answer(block.text)
                except ValueError as exc:
                    problems.append(f"{block.where}: not JSON: {exc}")
            if block.lang in ("sh", "bash") and checked(block):
                for step in steps(block):
                    if step.answer and step.answer.startswith(("{", "[")) and not parses(step.answer):
                        problems.append(f"{block.where}: the answer in a comment is not JSON: {step.answer}")
            runnable_before = runnable_before or (block.lang in RUNNABLE and checked(block))
    assert not problems, "\n".join(problems)
    assert len(CHECKED_DOCS) >= 4, CHECKED_DOCS  # the client guide, imgbed, restore, api at least


@pytest.mark.parametrize("doc", CHECKED_DOCS)
def test_the_examples_of_a_document_run_as_written(live, doc):
    blocks = [block for block in ALL_BLOCKS if block.doc == doc]
    shell = Shell(live, doc, blocks)
    failures, previous_output = [], None
    for block in blocks:
        if not checked(block):
            continue
        if block.lang in ("sh", "bash"):
            failed, previous_output = run_shell_block(shell, block)
            failures += failed
        elif block.lang == "python":
            failures += run_python_block(live, block)
        elif block.lang == "json":
            failures += check_json_block(live, block, previous_output)
    assert not failures, f"{len(failures)} examples of {doc} do not run as written:\n\n" + "\n\n".join(failures)


def test_make_demo_prints_a_clip_url_that_downloads_the_clip(live):
    """`make demo`'s clip URL is a presigned GET of the clip in the export bucket (a bare URL of
    the object answers 403), and its thumbnail URL is the image bed's."""
    output = live.demo_output
    bucket, key = re.search(r"^clip: +s3://([^/\s]+)/(\S+)$", output, re.MULTILINE).groups()
    url = re.search(r"^clip URL .*?: (http\S+)$", output, re.MULTILINE).group(1)
    assert url.startswith(f"{live.stack.s3_url}/{bucket}/{key}?"), url
    stored = live.stack.s3().get_object(Bucket=bucket, Key=key)["Body"].read()
    clip = requests.get(url, timeout=30)
    assert clip.status_code == 200, f"{url}: {clip.status_code} {clip.text[:500]}"
    assert clip.content == stored and len(stored) > 10_000
    assert clip.content[0] == 0x47  # an MPEG-TS sync byte: the demo exports a .ts clip
    thumbnail_url = re.search(r"^thumbnail: (http\S+)$", output, re.MULTILINE).group(1)
    thumbnail = requests.get(thumbnail_url, timeout=30)
    assert thumbnail.status_code == 200 and thumbnail.headers["Content-Type"] == "image/jpeg", thumbnail_url
    assert thumbnail.content[:3] == b"\xff\xd8\xff"


def test_every_url_make_run_prints_opens_in_a_browser(live):
    """Each URL of `make run`'s banner, and each link of the home page it names first, answers a
    browser's GET with 200 (or 302, the admin's redirect to its login)."""
    log = live.stack.read_log(tail=10**7)
    banner = log[log.index("resourced is running"):log.index("Ctrl-C stops everything.")]
    urls = re.findall(r"https?://[^\s)]+", banner)
    web, flower, s3 = live.stack.web, live.stack.flower, live.stack.s3_url
    assert urls[0] == f"{web}/", banner  # home first
    assert {f"{web}/api/docs/", f"{web}/api/schema/", f"{web}/admin/", f"{web}/healthz", f"{flower}/",
            s3} <= set(urls), banner
    home = requests.get(urls[0], timeout=30)
    links = [urljoin(urls[0], href) for href in re.findall(r'href="([^"]+)"', home.text)]
    assert f"{flower}/" in links, f"the home page links to this stack's Flower: {links}"
    answers = {url: requests.get(url, timeout=30, allow_redirects=False).status_code for url in urls + links}
    assert all(status in (200, 302) for status in answers.values()), answers
