"""Fixtures: unique segment names cleaned up after each test, unrelated peer
processes (fresh interpreters, never fork inheritance), and the C peer."""

from __future__ import annotations

import asyncio
import atexit
import itertools
import os
import platform
import time
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, Iterator, List, Optional, Sequence

import pytest

import shmlane

ROOT = Path(__file__).resolve().parents[2]
SHM_DIR = Path("/dev/shm")
_counter = itertools.count()


@pytest.fixture
def new_name() -> Iterator[Callable[[], str]]:
    """Makes names unique to this process and test; unlinks them afterwards."""
    made: List[str] = []

    def make() -> str:
        made.append(f"py{os.getpid()}-{next(_counter)}")
        return made[-1]

    yield make
    for name in made:
        try:
            shmlane.unlink(name)
        except FileNotFoundError:
            pass


@pytest.fixture
def name(new_name: Callable[[], str]) -> str:
    return new_name()


def _script(code: str) -> List[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


@pytest.fixture
def run_py() -> Callable[..., str]:
    """Runs Python code in a new interpreter with args in sys.argv[1:];
    returns its stdout, failing the test on a non-zero exit."""

    def run(code: str, *args: str, timeout: float = 60) -> str:
        proc = subprocess.run(
            _script(code) + list(args), capture_output=True, text=True, timeout=timeout
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    return run


def spawner(prefix: List[str]) -> Iterator[Callable[..., subprocess.Popen]]:
    """For fixtures: starts Python code in a new interpreter, its command line
    after `prefix` and the call's own `wrap` (stdin, stdout and stderr piped,
    text); the processes still running at the end of the test are killed."""
    procs: List[subprocess.Popen] = []

    def spawn(code: str, *args: str, wrap: tuple[str, ...] = ()) -> subprocess.Popen:
        procs.append(
            subprocess.Popen(
                prefix + list(wrap) + _script(code) + list(args),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        return procs[-1]

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


@pytest.fixture
def spawn_py() -> Iterator[Callable[..., subprocess.Popen]]:
    """Python code in a new interpreter: spawner() without a prefix."""
    yield from spawner([])


def read_line(proc: subprocess.Popen, timeout: float = 30) -> str:
    """The peer's next line, or "(nothing in time)" (and the peer is killed).
    readline() runs in a thread: a line already in the pipe's buffer is seen,
    where select() on the pipe would wait for more bytes."""
    assert proc.stdout is not None
    got: List[str] = []
    reader = threading.Thread(target=lambda: got.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        proc.kill()  # readline() then sees the end of the pipe
        reader.join()
        return "(nothing in time)"
    return got[0].strip()


def expect_line(proc: subprocess.Popen, want: str, timeout: float = 30) -> None:
    """Reads the peer's next line, which it prints before it blocks."""
    line = read_line(proc, timeout)
    if line != want:
        proc.kill()
        raise AssertionError(f"peer said {line!r}, expected {want!r}: {proc.communicate()[1]}")


_FUTEX = {"x86_64": 202, "aarch64": 98, "riscv64": 98, "i686": 240, "armv7l": 240}
_FUTEX_WAITV = 449  # every architecture: a stream reader sleeps on two words at once
_CLOCK_NANOSLEEP = {"x86_64": 230, "aarch64": 115, "riscv64": 115, "i686": 267, "armv7l": 265}


def _await_syscall(numbers: Dict[str, int], tid: int, pid: int, timeout: float,
                   flags_clear: int = 0, also: int = -1) -> bool:
    """Polls until thread tid of process pid (0: this one) is in the system
    call numbers[machine] (or `also`), its second argument without the bits
    flags_clear."""
    nr = numbers.get(platform.machine())
    if nr is None:
        pytest.skip(f"system call numbers unknown on {platform.machine()}")
    calls = {str(nr), str(also)}
    path = f"/proc/{pid or os.getpid()}/task/{tid}/syscall"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                call = f.read().split()
            if len(call) > 2 and call[0] in calls and not int(call[2], 16) & flags_clear:
                return True
        except OSError:
            pass
        time.sleep(0.001)
    return False


def blocked_in_futex(tid: int, pid: int = 0, timeout: float = 30) -> bool:
    """Waits until thread `tid` (of process `pid`, default this one; for a
    single-threaded peer, tid = its pid) sleeps in a shared futex: the moment a
    wake-up, a signal or a lock release really tests the blocked path. Only a
    shared futex counts (no FUTEX_PRIVATE_FLAG, 128): the library's, never the
    GIL's or a threading lock's, which are private."""
    return _await_syscall(_FUTEX, tid, pid, timeout, flags_clear=128, also=_FUTEX_WAITV)


def sleeping(tid: int, pid: int = 0, timeout: float = 30) -> bool:
    """Waits until thread `tid` sleeps in clock_nanosleep: for a thread in an
    open that polls for its object to appear, the moment to create it."""
    return _await_syscall(_CLOCK_NANOSLEEP, tid, pid, timeout)


def futex_waitv_expected() -> bool:
    """Readers sleep with futex_waitv here (Linux 5.16 and not turned off)."""
    release = tuple(int(x) for x in os.uname().release.split(".")[:2] if x.isdigit())
    return release >= (5, 16) and os.environ.get("SHMLANE_NO_FUTEX_WAITV", "0") == "0"


def fork_gets_fork_error(call: Callable[[], Any]) -> None:
    """Forks now: the child must get the fork error ("... before fork()")
    from call(), on a handle it inherited."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            call()
        except shmlane.Error as exc:
            code = 0 if "before fork()" in str(exc) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def blocked_in_thread(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple:
    """Starts call(*args, **kwargs) in a thread and returns once it sleeps in
    the futex: (thread, list that receives what it returned, or the exception
    it raised)."""
    result: list = []
    ready = threading.Event()
    tid: list = []

    def run() -> None:
        tid.append(threading.get_native_id())
        ready.set()
        try:
            result.append(call(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - handed to the test
            result.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert ready.wait(10)
    assert blocked_in_futex(tid[0])
    return thread, result


def sleeps(tid: Optional[int] = None) -> int:
    """Times thread `tid` of this process (None: the calling thread) has gone
    to sleep (its voluntary context switches)."""
    path = "/proc/thread-self/status" if tid is None else f"/proc/self/task/{tid}/status"
    with open(path) as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError(f"no voluntary_ctxt_switches in {path}")


def wakeups_in(thread: threading.Thread, seconds: float) -> int:
    """How many times `thread` went to sleep again during the next `seconds`:
    0 or 1 for a thread asleep all along, one per slice for one that sleeps
    in slices."""
    before = sleeps(thread.native_id)
    time.sleep(seconds)
    return sleeps(thread.native_id) - before


def wait_in_thread(seg: Any, **kwargs: Any) -> tuple:
    """seg.wait(**kwargs) in a thread, asleep in the futex (blocked_in_thread)."""
    return blocked_in_thread(seg.wait, **kwargs)


_core: List[Path] = []


def core_build() -> Path:
    """A meson build directory of this tree: the C core is compiled there and
    only there (libshmlane.a, and the CLI as tools/shmlane). $SHMLANE_BUILD
    when set (`make test-python` passes build/); otherwise this tree built
    once per session, static, in a temporary directory (pip-only installs
    have no build directory). Skips the test without meson, ninja or cc."""
    if _core:
        return _core[0]
    env = os.environ.get("SHMLANE_BUILD")
    if env:
        build = Path(env).resolve()
        if not (build / "libshmlane.a").is_file():
            pytest.fail(f"SHMLANE_BUILD={env} holds no libshmlane.a: build it first (make build)")
        _core.append(build)
        return build
    bindir = Path(sys.executable).parent
    meson = shutil.which("meson", path=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    if meson is None or shutil.which("cc") is None or not (ROOT / "meson.build").is_file():
        pytest.skip("needs meson, a C compiler and the repository (or SHMLANE_BUILD)")
    build = Path(tempfile.mkdtemp(prefix="shmlane-core-"))
    atexit.register(shutil.rmtree, build, True)
    env_path = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    for cmd in (
        [meson, "setup", str(build), str(ROOT), "-Dtests=false", "-Dbench=false",
         "-Ddefault_library=static"],
        [meson, "compile", "-C", str(build)],
    ):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env_path)
        if proc.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}")
    _core.append(build)
    return build


def built_cli() -> Path:
    """The command-line tool, from core_build()."""
    return core_build() / "tools" / "shmlane"


def build_c(program: Path, out_dir: Path, *more: Path, link: Sequence[str] = ()) -> Path:
    """Compiles one C program (its main file, then `more` files of it) and links it with the core that meson built
    (core_build(): the static library, so internals are there too), with
    the linker options `link` as well."""
    build = core_build()
    if shutil.which("cc") is None:
        pytest.skip("needs a C compiler")
    exe = out_dir / program.stem
    subprocess.run(
        [
            "cc",
            "-std=c11",
            "-D_GNU_SOURCE",
            "-O1",
            "-I",
            str(ROOT / "include"),
            "-I",
            str(build / "include"),
            "-o",
            str(exe),
            str(program),
            *map(str, more),
            str(build / "libshmlane.a"),
            *link,
            "-pthread",
            "-lrt",
            "-lm",
        ],
        check=True,
        timeout=120,
    )
    return exe


@pytest.fixture(scope="session")
def c_examples(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """examples/c/writer.c and reader.c, built: {"writer": path, "reader": path}."""
    out = tmp_path_factory.mktemp("c_examples")
    return {name: build_c(ROOT / "examples/c" / f"{name}.c", out) for name in ("writer", "reader")}


@pytest.fixture(scope="session")
def c_peer(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., str]:
    """tests/python/c_peer.c built against the core; runs it."""
    exe = build_c(ROOT / "tests/python/c_peer.c", tmp_path_factory.mktemp("c_peer"))

    def run(*args: str) -> str:
        proc = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    return run


def check_async_wait(wait: Callable[..., Awaitable[Any]], trigger: Callable[[], object]) -> Any:
    """Runs wait(timeout=...) in an event loop: it must return once trigger()
    (called after 0.3 s) lets it, while the loop keeps running; then time out
    on its own; then, waiting without limit, give way promptly when its task
    is cancelled. Returns what the first wait returned."""

    async def main() -> Any:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        tick_task = asyncio.create_task(ticker())
        asyncio.get_running_loop().call_later(0.3, trigger)
        result = await wait(timeout=30)
        assert ticks >= 5  # the loop kept running

        with pytest.raises(TimeoutError):
            await wait(timeout=0.2)

        waiting = asyncio.create_task(wait())
        await asyncio.sleep(0.1)
        start = time.monotonic()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert time.monotonic() - start < 2
        tick_task.cancel()
        return result

    return asyncio.run(main())
