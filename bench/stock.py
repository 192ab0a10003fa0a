"""The stock components the benchmarks compare against.

Threadline's own ``credentials.yml`` leaves Rasa's ``rest`` channel out (it
would pass a client's metadata into the conversation). The benchmarks still
measure against it, on a stack of their own: ``credentials_with_rest`` writes
the project's channels plus ``rest`` into a throwaway directory.
"""
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def credentials_with_rest(directory: str = "") -> str:
    """Path of a credentials file with every Threadline channel and the stock ``rest`` one."""
    target = Path(directory or tempfile.mkdtemp(prefix="threadline-bench-credentials-")) / "credentials.yml"
    target.write_text((ROOT / "credentials.yml").read_text() + "\n# Benchmarks only: the stock baseline.\nrest:\n")
    return str(target)
