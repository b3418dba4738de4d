"""Coverage-guided fuzzing of every parser that reads untrusted bytes (atheris / libFuzzer).

    make fuzz                      # every target, FUZZ_SECONDS each (default 600)
    python -m fuzz --seconds 30 --targets stun,hujson --json out.json

Targets: fuzz/targets.py. Seeds: fuzz/corpus/<target>/. Inputs that once crashed a target, kept
after the fix: fuzz/regressions/<target>/ (tests/fuzz/ replays both on every `make test`).
"""
