# Sourced by scripts/setup and scripts/test: the CPython versions netrunner
# supports, where to find each, and which virtual environment tests it.

SUPPORTED_PYTHONS="3.10 3.11 3.12 3.13"

# The X.Y of the interpreter $1, or nothing if it does not run.
python_version() {
  "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true
}

# The path of a working CPython $1 (e.g. 3.12): pythonX.Y on PATH, else the
# newest of pyenv's versions X.Y.*, else /usr/local/bin or /usr/bin. Prints
# nothing and fails when there is none (a pyenv shim for a version that is not
# selected does not run, so it does not count).
find_python() {
  local v=$1 candidate
  local pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
  for candidate in "$(command -v "python$v" 2>/dev/null || true)" \
      $(ls -d "$pyenv_root"/versions/"$v".*/bin/python"$v" 2>/dev/null | sort -V -r) \
      "/usr/local/bin/python$v" "/usr/bin/python$v"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && [ "$(python_version "$candidate")" = "$v" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

# The X.Y of the default environment: .venv's interpreter, or the one that
# scripts/setup would create it with ($PYTHON, else python3).
default_version() {
  if [ -x .venv/bin/python ]; then
    python_version .venv/bin/python
  else
    python_version "${PYTHON:-python3}"
  fi
}

# The virtual environment of CPython $1: .venv for the default version (one
# environment per build directory, build/cpXY), else .venv-X.Y.
venv_for() {
  if [ "$1" = "$(default_version)" ]; then
    echo .venv
  else
    echo ".venv-$1"
  fi
}

is_supported() {
  case " $SUPPORTED_PYTHONS " in *" $1 "*) return 0 ;; *) return 1 ;; esac
}

# True when running in CI: $CI set to anything but empty, 0 or false.
in_ci() {
  case "${CI:-}" in ""|0|false|False|FALSE) return 1 ;; *) return 0 ;; esac
}
