#!/usr/bin/env sh
# Print the path of a working Python 3.10 interpreter: PATH first, then pyenv.
# Exit 1 with a clear message when there is none (Rasa 3.6 needs 3.8-3.10).
works() { "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' >/dev/null 2>&1; }

for candidate in "${PYTHON310:-}" "$(command -v python3.10 2>/dev/null)"; do
  if [ -n "$candidate" ] && works "$candidate"; then echo "$candidate"; exit 0; fi
done
pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
for candidate in $(ls -d "$pyenv_root"/versions/3.10*/bin/python3.10 2>/dev/null | sort -rV); do
  if works "$candidate"; then echo "$candidate"; exit 0; fi
done
echo "error: Threadline needs Python 3.10 (Rasa 3.6 supports 3.8-3.10) and none was found." >&2
echo "       Looked for python3.10 on PATH and under $pyenv_root/versions/3.10*." >&2
echo "       Install it (e.g. 'pyenv install 3.10.13') or set PYTHON310=/path/to/python3.10." >&2
exit 1
