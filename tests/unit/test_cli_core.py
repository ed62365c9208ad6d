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
