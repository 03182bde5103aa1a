.PHONY: up test lint bench

up:  ## bring the whole system up (web, worker, beat, flower); Ctrl-C stops it
	deploy/up.sh

test:  ## run the whole test suite
	deploy/test.sh

lint:
	.venv/bin/ruff check .

bench:  ## the benchmark suite (production configuration, loopback); ARGS="--record" appends to docs/PERFORMANCE.md
	deploy/bootstrap.sh requirements.txt
	deploy/debian-packages.sh wrk
	.venv/bin/python bench/run.py $(ARGS)
