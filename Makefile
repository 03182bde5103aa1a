.PHONY: up test lint bench bench-cluster chaos chaos-cluster scale-out scale-out-cluster scale-out-stop

up:  ## bring the whole system up (web, worker, beat, flower); Ctrl-C stops it
	deploy/up.sh

scale-out:  ## nginx + 2 uvicorns (HTTP) + 1 for /ws/ + PgBouncer + own Redis + worker + beat + Flower on this machine; Ctrl-C stops it
	deploy/scale-out.sh

scale-out-cluster:  ## the same with the engine on a Redis Cluster of 3 masters of its own (the plain Redis: broker, channels, cache)
	SCALE_OUT_REDIS_CLUSTER=1 deploy/scale-out.sh

scale-out-stop:  ## stop a scale-out started elsewhere
	deploy/scale-out.sh stop

test:  ## run the whole test suite
	deploy/test.sh

lint:
	.venv/bin/ruff check .

bench:  ## the benchmark suite (production configuration, loopback); ARGS="--record" appends to docs/PERFORMANCE.md
	deploy/bootstrap.sh requirements.txt
	deploy/debian-packages.sh wrk
	.venv/bin/python bench/run.py $(ARGS)

bench-cluster:  ## the scale-out figures (~2 min): the bid script under redis-benchmark, 1 vs 3 shards, persist with 1 vs 2 workers over 200 sessions
	deploy/bootstrap.sh requirements.txt
	.venv/bin/python bench/cluster.py $(ARGS)

chaos:  ## the chaos run (~3 min, loopback, as root): own PostgreSQL + Redis, faults injected during a session, durability checked; ARGS="--seed 1 --keep"
	deploy/bootstrap.sh requirements.txt
	.venv/bin/python bench/chaos.py $(ARGS)

chaos-cluster:  ## the chaos run with the engine on a Redis Cluster of 3 masters (Redis faults hit the session's master / every master)
	deploy/bootstrap.sh requirements.txt
	.venv/bin/python bench/chaos.py --cluster $(ARGS)
