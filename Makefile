.PHONY: up test lint

up:  ## bring the whole system up (web, worker, beat, flower); Ctrl-C stops it
	deploy/up.sh

test:  ## run the whole test suite
	deploy/test.sh

lint:
	.venv/bin/ruff check .
