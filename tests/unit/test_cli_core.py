import subprocess
import sys

from ainative.cli import main as cli


def test_version(capsys):
    assert cli.main(["version"]) == 0
    assert "ainative 0.1.0" in capsys.readouterr().out


def test_no_command_prints_help_and_exits_2(capsys):
    assert cli.main([]) == 2
    assert "usage: ainative" in capsys.readouterr().out


def test_status_with_unreachable_address_exits_1():
    # a port nobody listens on, on loopback
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = subprocess.run([sys.executable, "-m", "ainative.cli.main", "status", "--address",
                          f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "ClusterConnectionError" in out.stderr and f"127.0.0.1:{port}" in out.stderr


def test_ctrl_c_works_even_when_started_with_sigint_ignored():
    # a non-interactive shell starts background jobs with SIGINT ignored; the CLI's "until
    # Ctrl-C" commands (demo --keep, dashboard, serve) must still stop on it
    code = ("import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "from ainative.cli import main; main.main([])\n"
            "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "True"
