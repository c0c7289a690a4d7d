.PHONY: demo test test-all test-reliability bench
demo:
	bash scripts/demo.sh
test:
	bash scripts/test.sh
test-all:
	RAYDIST_TEST_ALL=1 bash scripts/test.sh
test-reliability:
	RAYDIST_TEST_ALL=1 bash scripts/test.sh tests/reliability
bench:
	.venv/bin/python benchmarks/bench_patchcore.py && .venv/bin/python benchmarks/bench_ttt4as.py
