"""Rewrite the README's generated tables (settings, Redis keys) from their registries.

``make readme`` runs it after a setting or a key is added or changed;
``tests/test_contracts.py`` fails while the README and the registries disagree.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from threadline import keys, settings  # noqa: E402


def _block_end(text: str, start: int) -> int:
    """Where a generated block ends: after its last table row, before the next prose or heading."""
    position = end = start
    for line in text[start:].splitlines(keepends=True):
        group_title = line.startswith("**") and line.strip().endswith("**")
        if line.startswith("## ") or not (line.startswith("|") or group_title or not line.strip()):
            break
        position += len(line)
        if line.startswith("|"):
            end = position
    return end


def main() -> None:
    path = ROOT / "README.md"
    readme = path.read_text()
    for table in (settings.markdown_table(), keys.markdown_table()):
        first = table.splitlines()[0]
        if first not in readme:
            sys.exit(f"README.md has no generated block starting with {first!r}; paste the table once by hand")
        start = readme.index(first)
        readme = readme[:start] + table.rstrip("\n") + "\n" + readme[_block_end(readme, start):]
    path.write_text(readme)


if __name__ == "__main__":
    main()
