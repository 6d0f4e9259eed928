import subprocess
import sys


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fluxrate", *args], capture_output=True, text=True, timeout=60)


def test_help_lists_every_subcommand() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("operator", "receiver", "sandbox", "demo"):
        assert command in result.stdout


def test_operator_help_describes_its_options() -> None:
    result = run("operator", "--help")
    assert result.returncode == 0, result.stderr
    assert "--public-base-url" in result.stdout


def test_unknown_command_fails_with_usage() -> None:
    result = run("frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
